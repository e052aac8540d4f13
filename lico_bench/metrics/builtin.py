"""The built-in metrics behind the registry: insertion, deletion, ROAD (MoRF, LeRF and
LeRF - MoRF), (energy) pointing game, model-parameter randomisation (cascading and
independent).

Insertion, deletion, ROAD MoRF and ROAD LeRF also give scores freed from the model's
confidence (METRICS.md; :mod:`.causal` has the definitions) as further row columns:
``<name>_gain`` (the gain over ``random_orders`` uniformly random pixel orders, higher is
better, 0 = chance) and, for insertion and deletion with ``score="softmax"``,
``<name>_norm`` (the AUC divided by the explained class's probability on the unperturbed
image; insertion higher, deletion lower is better). ``random_orders=0`` drops the gain.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import torch

from .base import Metric, MetricResult, register_metric
from .causal import (BLUR_KERNELS, DEFAULT_BATCH_SIZE, SCORES, SUBSTRATES, auc,
                     causal_curves, default_step, predict, random_ranks)
from .pointing import energy_pointing_game, pointing_game
from .road import (DEFAULT_NOISE, DEFAULT_PERCENTAGES, DEFAULT_TOL, ROAD_SCORES, SOLVERS,
                   check_percentages, road_curves, trapezoid_auc)
from .randomisation import (BATCHNORM, StageRandomiser, _fingerprint, model_stages,
                            randomisation_similarities)
from .similarity import DEFAULT_WINDOW
from ..errors import UserError
from ..options import Range

PositiveInt = Annotated[int, Range(1)]
# Random pixel orders per image for the gain over random; each costs what the map's own
# curve costs (63 forwards per image for insertion + deletion at 32 px). Chosen by
# measurement (lico_r18 after one quick-recipe epoch, Grad-CAM, 10 shapes test images, 4
# orders each): one random AUC has a per-image sd of 0.054 (insertion) / 0.038 (deletion)
# against a between-image sd of the gain of 0.118 / 0.171, so k orders widen the CI of a
# dataset mean by sqrt(1 + sd_w^2 / (k sd_b^2)): k = 1, 2, 4, 8 -> 9.9, 5.1, 2.6, 1.3 %
# (insertion; deletion 2.4, 1.2, 0.6, 0.3 %). k = 4 keeps that under 3 % at 4x the raw
# curves' forwards; k = 8 would halve it for twice the cost.
DEFAULT_RANDOM_ORDERS = 4
RandomOrders = Annotated[int, Range(0, 1024)]


def _gain(auc_map, auc_random, higher_is_better: bool):
    """Gain over random per image: [B] float32 from AUC(map) [B] and AUC(random) [B, k].

    ``AUC(map) - mean_j AUC(random_j)`` for a higher-is-better curve (insertion, ROAD LeRF),
    ``mean_j AUC(random_j) - AUC(map)`` for a lower-is-better one (deletion, ROAD MoRF);
    the mean in float64.
    """
    rand = auc_random.double().mean(1)
    d = auc_map.double() - rand if higher_is_better else rand - auc_map.double()
    return d.float()


class _Causal(Metric):
    """values = AUC of the curve (:func:`~lico_bench.metrics.causal.auc`); curves returned.

    Further columns (:mod:`.causal`, "Scores freed from the model's confidence"):
    ``<name>_gain`` = the gain over ``random_orders`` random orders per image (its curve: the
    map's curve minus the mean random curve, or the reverse for deletion, whose AUC is the
    gain), when ``random_orders > 0``; ``<name>_norm`` = AUC / the clean image's probability
    of the explained class (no curve), when ``score="softmax"``. The random orders come from
    :func:`~lico_bench.metrics.causal.random_ranks` (the run's seed and each image's id) and
    share the map's forward batches.
    """

    mode = ""
    needs_image_ids = True
    defaults = {"step": None, "substrate": "", "score": "softmax",
                "batch_size": DEFAULT_BATCH_SIZE, "blur_size": 11, "blur_sigma": 5.0,
                "blur_kernel": "rise", "random_orders": DEFAULT_RANDOM_ORDERS}
    option_types = {"step": Optional[PositiveInt], "substrate": Literal[SUBSTRATES],
                    "score": Literal[SCORES], "batch_size": PositiveInt,
                    "blur_size": PositiveInt, "blur_sigma": Annotated[float, Range(0, lo_open=True)],
                    "blur_kernel": Literal[BLUR_KERNELS], "random_orders": RandomOrders}

    def validate(self) -> None:
        if self.options["blur_size"] % 2 == 0:  # a centred kernel; the type cannot say "odd"
            raise UserError(f"option blur_size of metric {self.name!r} must be odd, got "
                            f"{self.options['blur_size']}.")
        # the further columns this instance writes (the manifest lists them)
        cols = {}
        if self.options["random_orders"] > 0:
            cols["gain"] = True
        if self.options["score"] == "softmax":
            cols["norm"] = self.higher_is_better
        self.extra_columns = cols

    def describe(self, image_size):
        """The manifest's entry; an automatic step is recorded as ``resolved_step``, the
        pixels per step images of ``image_size = (H, W)`` get (causal.default_step)."""
        out = super().describe(image_size)
        if self.options["step"] is None:
            out["resolved_step"] = default_step(*image_size)
        return out

    def compute(self, model, images, maps, targets, masks, image_ids=(), seed=0) -> MetricResult:
        o = dict(self.options)
        sub = o.pop("substrate")
        k = o.pop("random_orders")
        B, _, H, W = images.shape
        ranks = random_ranks(image_ids, seed, k, H * W) if k > 0 and B > 0 else None
        out = causal_curves(model, images, maps, targets, modes=(self.mode,),
                            **{f"{self.mode}_substrate": sub}, random_ranks=ranks, **o)
        curves = out[self.mode]
        values = auc(curves)
        cols = {}
        if "gain" in self.extra_columns:
            if ranks is None:   # no images: nothing to average
                cols["gain"] = (values.clone(), curves.clone())
            else:
                rc = out[f"{self.mode}_random"]                              # [B, k, n+1]
                rand_auc = auc(rc.flatten(0, 1)).view(B, k)
                sign = 1.0 if self.higher_is_better else -1.0
                gcurve = (sign * (curves.double() - rc.double().mean(1))).float()
                cols["gain"] = (_gain(values, rand_auc, self.higher_is_better), gcurve)
        if "norm" in self.extra_columns:
            clean = curves[:, -1] if self.mode == "insertion" else curves[:, 0]
            # a probability that underflowed to 0 has no ratio: NaN (skipped), never inf
            ratio = values.double() / clean.double()
            cols["norm"] = (torch.where(clean > 0, ratio, torch.nan).float(), None)
        return MetricResult(values, curves, columns=cols or None)


class Insertion(_Causal):
    """Insertion AUC (Petsiuk et al. 2018): higher is better.

    Pixels are inserted into a blurred copy of the image in the order of the map, ``step``
    at a time; the value is the AUC of the target class's softmax along the way.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> from lico_bench.metrics import create_metric
        >>> ins = create_metric("insertion", step=64)         # or Insertion(step=64)
        >>> res = ins(model, images, maps, torch.tensor([0, 1]))
        >>> res.values.shape, res.curves.shape                 # AUC per image, 1024/64 + 1 points
        (torch.Size([2]), torch.Size([2, 17]))
        >>> bool(((res.values >= 0) & (res.values <= 1)).all())
        True
    """

    name = "insertion"
    mode = "insertion"
    higher_is_better = True
    defaults = {**_Causal.defaults, "substrate": "blur"}


class Deletion(_Causal):
    """Deletion AUC (Petsiuk et al. 2018): lower is better.

    Pixels are set to zero (the mean colour, in normalised space) in the order of the map.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> from lico_bench.metrics import create_metric
        >>> dele = create_metric("deletion", step=64, score="logit")
        >>> dele(model, images, maps).values.shape            # targets None: predicted class
        torch.Size([2])
    """

    name = "deletion"
    mode = "deletion"
    higher_is_better = False
    defaults = {**_Causal.defaults, "substrate": "zero"}


class PointingGame(Metric):
    """Pointing-game hit per image (1/0, NaN for an empty mask); tolerance None = 15*H/224.

    Example (the model is not needed: pass None)::

        >>> import torch
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> masks = torch.zeros(2, 32, 32, dtype=torch.bool)              # [B, H, W] object masks
        >>> masks[0, 4:20, 4:20] = True; masks[1, 20:30, 20:30] = True
        >>> from lico_bench.metrics import create_metric
        >>> create_metric("pointing_game", tolerance=0)(None, None, maps, masks=masks).values
        tensor([1., 0.])
    """

    name = "pointing_game"
    higher_is_better = True
    needs_masks = True
    defaults = {"tolerance": None}
    option_types = {"tolerance": Optional[Annotated[float, Range(0)]]}  # pixels

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        return MetricResult(pointing_game(maps, masks, self.options["tolerance"]), None)


class EnergyPointingGame(Metric):
    """Share of the non-negative saliency inside the mask (NaN: empty mask or all-zero map).

    Example::

        >>> import torch
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> masks = torch.zeros(2, 32, 32, dtype=torch.bool)              # [B, H, W] object masks
        >>> masks[0, 4:20, 4:20] = True; masks[1, 20:30, 20:30] = True
        >>> from lico_bench.metrics import create_metric
        >>> create_metric("energy_pointing_game")(None, None, maps, masks=masks).values
        tensor([1., 0.])
    """

    name = "energy_pointing_game"
    higher_is_better = True
    needs_masks = True
    defaults = {}

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        return MetricResult(energy_pointing_game(maps, masks), None)


class _Road(Metric):
    """ROAD (Rong et al., ICML 2022; tleemann/road_evaluation): see :mod:`.road`.

    values: [B] float32, the trapezoid AUC of the curve over the percentages (p on the x
    axis); curves: [B, n] float32, the score at each percentage (n = len(percentages)).
    Options: ``percentages`` (fractions removed, strictly increasing in [0, 1]; the paper's
    no-retraining setting by default), ``noise`` (std of the imputation noise in normalised
    space), ``seed`` (of the noise generator), ``score`` ("softmax", "logit" or
    "accuracy"), ``batch_size`` (imputed images per solve and forward), ``solver``
    ("auto" = sparse direct on a CPU model, batched conjugate gradient on a GPU; "cg";
    "direct": both give the same images to < 1e-5), ``tol`` and ``max_iter`` (of the
    conjugate-gradient solve; None = automatic, 4*H*W + 100), ``random_orders`` (k).

    ``road_morf`` and ``road_lerf`` also write ``<name>_gain``, the gain over ``random_orders``
    uniformly random pixel orders per image (:func:`~lico_bench.metrics.causal.random_ranks`,
    from the run's seed and the image id; same percentages, noise field, score and explained
    class): MoRF ``mean AUC(random) - AUC(map)``, LeRF ``AUC(map) - mean AUC(random)``, both
    higher is better, 0 = chance (a random order is as likely MoRF as LeRF, so both share one
    random AUC per order). ``road`` (LeRF - MoRF) has none: its gain would equal its value.
    """

    orders: tuple = ()
    needs_image_ids = True
    defaults = {"percentages": list(DEFAULT_PERCENTAGES), "noise": DEFAULT_NOISE, "seed": 0,
                "score": "softmax", "batch_size": DEFAULT_BATCH_SIZE, "solver": "auto",
                "tol": DEFAULT_TOL, "max_iter": None, "random_orders": DEFAULT_RANDOM_ORDERS}
    option_types = {"percentages": list, "noise": Annotated[float, Range(0)], "seed": int,
                    "score": Literal[ROAD_SCORES], "batch_size": PositiveInt,
                    "solver": Literal[SOLVERS], "tol": Annotated[float, Range(0, lo_open=True)],
                    "max_iter": Optional[PositiveInt], "random_orders": RandomOrders}

    def validate(self) -> None:
        ps = self.options["percentages"]
        if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in ps):
            raise UserError(f"option percentages of metric {self.name!r} must be a list of "
                            f"numbers, got {ps!r}.")
        self.options["percentages"] = [float(p) for p in ps]
        try:
            check_percentages(self.options["percentages"])
        except UserError as e:
            raise UserError(f"option percentages of metric {self.name!r}: {e}") from None
        self.extra_columns = ({"gain": True} if len(self.orders) == 1
                              and self.options.get("random_orders", 0) > 0 else {})

    def _curves(self, model, images, maps, targets, orders=None):
        o = self.options
        return road_curves(model, images, maps, targets, orders=orders or self.orders,
                           percentages=o["percentages"], noise=o["noise"], seed=o["seed"],
                           score=o["score"], batch_size=o["batch_size"], solver=o["solver"],
                           tol=o["tol"], max_iter=o["max_iter"])

    def _random_auc(self, model, images, targets, image_ids, seed):
        """AUCs of ``random_orders`` random orders per image: [B, k] float32.

        Each random rank ``r`` becomes the map ``H*W - r`` (distinct values, exact in
        float32 below 2**24 pixels), whose MoRF order is ``r``'s order; all B*k curves go
        through one :func:`road_curves` call (batched solves and forwards)."""
        k = self.options["random_orders"]
        B, _, H, W = images.shape
        ranks = random_ranks(image_ids, seed, k, H * W)                      # [B, k, HW] CPU
        if targets is None:
            targets = predict(model, images, self.options["batch_size"])
        fake = (H * W - ranks).to(images.device, torch.float32).view(B * k, H, W)
        curves = self._curves(model, images.repeat_interleave(k, 0), fake,
                              torch.as_tensor(targets).to(images.device).repeat_interleave(k, 0),
                              orders=("morf",))["morf"]
        return trapezoid_auc(curves, self.options["percentages"]).view(B, k)

    def compute(self, model, images, maps, targets, masks, image_ids=(), seed=0) -> MetricResult:
        curves = self._curves(model, images, maps, targets)[self.orders[0]]
        values = trapezoid_auc(curves, self.options["percentages"])
        cols = None
        if "gain" in self.extra_columns and images.shape[0] > 0:
            rand = self._random_auc(model, images, targets, image_ids, seed).to(values.device)
            cols = {"gain": (_gain(values, rand, self.higher_is_better), None)}
        return MetricResult(values, curves, columns=cols)


class RoadMorf(_Road):
    """ROAD, most relevant first (Rong et al. 2022): lower is better.

    The pixels the map ranks highest are removed first and imputed by noisy linear
    imputation; the value is the AUC of the explained class's score over the percentages.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> from lico_bench.metrics import create_metric
        >>> morf = create_metric("road_morf", seed=1)
        >>> res = morf(model, images, maps, torch.tensor([0, 1]))
        >>> res.values.shape, res.curves.shape             # AUC per image, 7 percentages
        (torch.Size([2]), torch.Size([2, 7]))
        >>> bool(((res.values >= 0) & (res.values <= 0.8)).all())   # p from 0.1 to 0.9
        True
    """

    name = "road_morf"
    orders = ("morf",)
    higher_is_better = False


class RoadLerf(_Road):
    """ROAD, least relevant first (Rong et al. 2022): higher is better.

    Example::

        >>> import torch
        >>> from lico_bench.metrics import create_metric
        >>> lerf = create_metric("road_lerf", percentages=[0.25, 0.5, 0.75], score="accuracy")
        >>> lerf.higher_is_better, lerf.options["noise"]
        (True, 0.01)
    """

    name = "road_lerf"
    orders = ("lerf",)
    higher_is_better = True


class Road(_Road):
    """ROAD LeRF - MoRF per image (Rong et al. 2022): higher is better.

    values = AUC(LeRF) - AUC(MoRF) per image; curves = LeRF curve - MoRF curve at each
    percentage (the AUC is linear, so the value is also the AUC of that curve). Same
    options, noise and seed as ``road_morf`` and ``road_lerf``, so with equal options
    ``road = road_lerf - road_morf`` exactly.

    Example::

        >>> from lico_bench.metrics import create_metric
        >>> create_metric("road").higher_is_better
        True
    """

    name = "road"
    orders = ("morf", "lerf")
    higher_is_better = True
    needs_image_ids = False
    defaults = {k: v for k, v in _Road.defaults.items() if k != "random_orders"}

    def compute(self, model, images, maps, targets, masks, image_ids=(), seed=0) -> MetricResult:
        c = self._curves(model, images, maps, targets)
        ps = self.options["percentages"]
        values = trapezoid_auc(c["lerf"], ps) - trapezoid_auc(c["morf"], ps)
        return MetricResult(values, c["lerf"] - c["morf"])


class _Randomisation(Metric):
    """Model-parameter randomisation (Adebayo et al. 2018, Sec. 3.1): see :mod:`.randomisation`.

    Row columns: ``<name>`` = the mean over stages of the Spearman rank correlation between
    the trained model's map and the randomised model's (Quantus's per-sample summary,
    ``return_average_correlation``; for cascading, the area under the classic curve), its
    curve = the Spearman correlation at each stage, top stage first ([B, S]); and
    ``<name>_ssim``, the same for SSIM of the min-max normalised maps. Lower is better: a
    map that depends on the model changes when the model is destroyed. The value after full
    randomisation is the cascading curve's last point. Options: ``seed`` (of the random
    weights), ``batchnorm`` ("affine", "all", "keep"), ``absolute`` (compare ``|map|``),
    ``ssim_window`` (odd). The manifest records each model's stages.
    """

    mode = ""
    higher_is_better = False
    needs_explainer = True
    extra_columns = {"ssim": False}
    defaults = {"seed": 0, "batchnorm": "affine", "absolute": True, "ssim_window": DEFAULT_WINDOW}
    option_types = {"seed": int, "batchnorm": Literal[BATCHNORM], "absolute": bool,
                    "ssim_window": Annotated[int, Range(3)]}

    def __init__(self, **options):
        super().__init__(**options)
        self._randomiser = None   # the working copy and random weights of the last model

    def validate(self) -> None:
        if self.options["ssim_window"] % 2 == 0:
            raise UserError(f"option ssim_window of metric {self.name!r} must be odd, got "
                            f"{self.options['ssim_window']}.")

    def describe_models(self, models):
        return {"stages": {n: [s for s, _ in model_stages(m)] for n, m in models.items()}}

    def compute(self, model, images, maps, targets, masks, explain=None) -> MetricResult:
        o = self.options
        if self._randomiser is None or self._randomiser.key != _fingerprint(model):
            self._randomiser = None   # free the old copy first; built once per model, not per batch
            self._randomiser = StageRandomiser(model, model_stages(model), o["seed"], o["batchnorm"])
        out = randomisation_similarities(model, images, maps, targets, explain, mode=self.mode,
                                         absolute=o["absolute"], window=o["ssim_window"],
                                         randomiser=self._randomiser)
        rho, ss = out["spearman"], out["ssim"]
        return MetricResult(rho.mean(1), rho, columns={"ssim": (ss.mean(1), ss)},
                            maps=out["stage_maps"])


class RandomisationCascading(_Randomisation):
    """Cascading randomisation: stage k = the top k stages randomised (fc, layer4, ...).

    Example (an "explainer" that ignores the model passes as unchanged: similarity 1)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
        >>> images = torch.randn(2, 3, 16, 16)
        >>> explain = lambda m, x, t: x.abs().sum(1)          # the image itself, not the model
        >>> from lico_bench.metrics import create_metric
        >>> res = create_metric("randomisation_cascading", seed=1)(
        ...     model, images, explain(model, images, None), explain=explain)
        >>> res.curves.shape, res.values.tolist(), res.columns["ssim"][0].tolist()
        (torch.Size([2, 2]), [1.0, 1.0], [1.0, 1.0])
    """

    name = "randomisation_cascading"
    mode = "cascading"


class RandomisationIndependent(_Randomisation):
    """Independent randomisation: stage k alone randomised, every other stage trained.

    Example::

        >>> from lico_bench.metrics import create_metric
        >>> create_metric("randomisation_independent", batchnorm="all").extra_columns
        {'ssim': False}
    """

    name = "randomisation_independent"
    mode = "independent"


for _cls in (Insertion, Deletion, RoadMorf, RoadLerf, Road, PointingGame, EnergyPointingGame,
             RandomisationCascading, RandomisationIndependent):
    register_metric(_cls.name, _cls)
