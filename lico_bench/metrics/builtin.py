"""The built-in metrics behind the registry: insertion, deletion, ROAD (MoRF, LeRF and
LeRF - MoRF), (energy) pointing game, model-parameter randomisation (cascading and
independent)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from .base import Metric, MetricResult, register_metric
from .causal import (BLUR_KERNELS, DEFAULT_BATCH_SIZE, SCORES, SUBSTRATES, auc,
                     causal_curves, default_step)
from .pointing import energy_pointing_game, pointing_game
from .road import (DEFAULT_NOISE, DEFAULT_PERCENTAGES, DEFAULT_TOL, ROAD_SCORES, SOLVERS,
                   check_percentages, road_curves, trapezoid_auc)
from .randomisation import (BATCHNORM, StageRandomiser, _fingerprint, model_stages,
                            randomisation_similarities)
from .similarity import DEFAULT_WINDOW
from ..errors import UserError
from ..options import Range

PositiveInt = Annotated[int, Range(1)]


class _Causal(Metric):
    """values = AUC of the curve (:func:`~lico_bench.metrics.causal.auc`); curves returned."""

    mode = ""
    defaults = {"step": None, "substrate": "", "score": "softmax",
                "batch_size": DEFAULT_BATCH_SIZE, "blur_size": 11, "blur_sigma": 5.0,
                "blur_kernel": "rise"}
    option_types = {"step": Optional[PositiveInt], "substrate": Literal[SUBSTRATES],
                    "score": Literal[SCORES], "batch_size": PositiveInt,
                    "blur_size": PositiveInt, "blur_sigma": Annotated[float, Range(0, lo_open=True)],
                    "blur_kernel": Literal[BLUR_KERNELS]}

    def validate(self) -> None:
        if self.options["blur_size"] % 2 == 0:  # a centred kernel; the type cannot say "odd"
            raise UserError(f"option blur_size of metric {self.name!r} must be odd, got "
                            f"{self.options['blur_size']}.")

    def describe(self, image_size):
        """The manifest's entry; an automatic step is recorded as ``resolved_step``, the
        pixels per step images of ``image_size = (H, W)`` get (causal.default_step)."""
        out = super().describe(image_size)
        if self.options["step"] is None:
            out["resolved_step"] = default_step(*image_size)
        return out

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        o = dict(self.options)
        sub = o.pop("substrate")
        curves = causal_curves(model, images, maps, targets, modes=(self.mode,),
                               **{f"{self.mode}_substrate": sub}, **o)[self.mode]
        return MetricResult(auc(curves), curves)


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
    conjugate-gradient solve; None = automatic, 4*H*W + 100).
    """

    orders: tuple = ()
    defaults = {"percentages": list(DEFAULT_PERCENTAGES), "noise": DEFAULT_NOISE, "seed": 0,
                "score": "softmax", "batch_size": DEFAULT_BATCH_SIZE, "solver": "auto",
                "tol": DEFAULT_TOL, "max_iter": None}
    option_types = {"percentages": list, "noise": Annotated[float, Range(0)], "seed": int,
                    "score": Literal[ROAD_SCORES], "batch_size": PositiveInt,
                    "solver": Literal[SOLVERS], "tol": Annotated[float, Range(0, lo_open=True)],
                    "max_iter": Optional[PositiveInt]}

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

    def _curves(self, model, images, maps, targets):
        o = self.options
        return road_curves(model, images, maps, targets, orders=self.orders,
                           percentages=o["percentages"], noise=o["noise"], seed=o["seed"],
                           score=o["score"], batch_size=o["batch_size"], solver=o["solver"],
                           tol=o["tol"], max_iter=o["max_iter"])

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        curves = self._curves(model, images, maps, targets)[self.orders[0]]
        return MetricResult(trapezoid_auc(curves, self.options["percentages"]), curves)


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

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
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
