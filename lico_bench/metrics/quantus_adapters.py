"""Quantus 0.6.0 metrics through the uniform interface, as ``quantus:<MetricName>``.

Numpy appears only at this edge: tensors are copied to numpy (copies, because some Quantus
metrics edit their inputs in place, e.g. ``Sparseness`` does ``a_batch += 1e-7``), Quantus
runs, and its per-image results come back as a [B] float32 tensor.

Settings are explicit and recorded: ``metric.options`` holds every ``__init__`` option of
the Quantus class with its Quantus default, plus ``softmax`` and ``batch_size`` (the
``__call__`` arguments, with that metric's own defaults) and ``seed``. Quantus draws from
NumPy's global generator (``FaithfulnessCorrelation`` subsets, ``RegionPerturbation``
random order); each call seeds it with ``seed`` and restores the caller's state after.
One default differs from Quantus: ``normalise_func_kwargs={"normalise_axes": [1, 2, 3]}``,
i.e. maps are normalised by their own max |a| rather than the batch-wide max Quantus uses
by default, so a per-image value does not depend on the rest of the batch.
Quantus runs in float32 even under an ambient bf16 autocast (it converts the model's
outputs to numpy, which has no bfloat16); only the target prediction uses the autocast.
Quantus's warnings and progress bars are off (``disable_warnings=True``,
``display_progressbar=False``); ``return_aggregate`` is fixed to False (one value per image).

Only metrics that run from precomputed maps are adapted. Those that need an ``explain_func``
to re-explain perturbed inputs or models (RandomLogit, MPRT, MaxSensitivity, AvgSensitivity,
Continuity, LocalLipschitzEstimate, InputInvariance, Relative*Stability) cannot, and some
are broken in 0.6.0 with image inputs (ROAD, IROF, BatchSufficiency, Focus without mosaics).

Guards for known Quantus 0.6.0 bugs (see /work/shared/METRICS.md):

- ``PointingGame`` writes NaN into a bool array, so an empty mask counts as a *hit*; every
  mask-based adapter calls Quantus only on the images with a non-empty mask and returns NaN
  for the others.
- ``PointingGame(weighted=True)`` fails (broadcasting a keepdims array into a bool
  selection) and ``AttributionLocalisation(weighted=True)`` computes the image size as
  ``x_batch[2:].size`` (a slice of the batch, not of the shape): both are refused.
- Curve metrics (PixelFlipping, RegionPerturbation, Selectivity) report the AUC through
  ``quantus.helpers.utils.calculate_auc``, i.e. ``np.trapz`` with dx=1 (not normalised to
  [0, 1]); NumPy 2.4 removed ``np.trapz``, so these adapters refuse to be created without it.
- ``PixelFlipping`` broadcasts the map over channels and flips ``features_in_step``
  *elements* of the flattened [C, H, W] array per step (``argsort(-a)``, unstable); its
  curve has no clean-image point. ``features_in_step`` must divide H*W (Quantus's assert).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from typing import Annotated, Any, Dict

import numpy as np
import torch

from ..errors import UserError
from ..options import Range
from .base import Metric, MetricResult, register_metric
from ..precision import float32_ops
from .causal import check_eval, model_device, predict

# name -> (kind, needs a model). kind: "curve" (values = Quantus AUC of the curve),
# "value" (one number per image), "mask" (one number per image, needs masks).
ADAPTED: Dict[str, tuple] = {
    "PixelFlipping": ("curve", True),
    "RegionPerturbation": ("curve", True),
    "Selectivity": ("curve", True),
    "FaithfulnessCorrelation": ("value", True),
    "FaithfulnessEstimate": ("value", True),
    "Sparseness": ("value", False),
    "Complexity": ("value", False),
    "EffectiveComplexity": ("value", False),
    "PointingGame": ("mask", False),
    "RelevanceMassAccuracy": ("mask", False),
    "RelevanceRankAccuracy": ("mask", False),
    "AttributionLocalisation": ("mask", False),
    "TopKIntersection": ("mask", False),
}

# Fixed by the adapter, not options: they would change the shape of the result or print.
_FIXED = {"return_aggregate": False, "aggregate_func": None, "default_plot_func": None,
          "disable_warnings": True, "display_progressbar": False,
          "return_auc_per_sample": False}


def _quantus():
    try:
        import quantus
    except ImportError as e:  # pragma: no cover - quantus is a dependency
        raise UserError(f"the quantus:* metrics need the 'quantus' package ({e}); "
                        "pip install quantus==0.6.0.") from None
    return quantus


def _require_trapz(name: str) -> None:
    if not hasattr(np, "trapz"):
        raise UserError(f"quantus:{name} computes its AUC with np.trapz, which NumPy "
                        f"{np.__version__} no longer has (removed in 2.4); install numpy<2.4.")


@contextlib.contextmanager
def _quiet_seeded(seed: int):
    """Seed NumPy's global generator (Quantus's only RNG) and silence Quantus's chatter."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        np.random.set_state(state)


class QuantusMetric(Metric):
    """Adapter for one Quantus metric class; see the module docstring for the rules.

    Example (usually reached by name: ``create_metric("quantus:<Name>")``)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0; maps[:, 0, 0] = 0.5   # [B, H, W] saliency
        >>> from lico_bench.metrics import create_metric
        >>> sparse = create_metric("quantus:Sparseness")       # Gini index of the map
        >>> sparse.name, sparse.higher_is_better
        ('quantus:Sparseness', True)
        >>> sparse(model, images, maps, torch.tensor([0, 1])).values.shape
        torch.Size([2])
    """

    def __init__(self, quantus_name: str, **options: Any):
        if quantus_name not in ADAPTED:
            raise UserError(f"quantus metric {quantus_name!r} is not adapted; choose one of "
                            f"{', '.join(sorted(ADAPTED))}.")
        q = _quantus()
        self.quantus_name = quantus_name
        self.kind, self.needs_model = ADAPTED[quantus_name]
        self.cls = getattr(q, quantus_name)
        self.name = f"quantus:{quantus_name}"
        self.needs_masks = self.kind == "mask"
        init = {k: p.default for k, p in inspect.signature(self.cls.__init__).parameters.items()
                if k not in ("self", "kwargs", "args") and k not in _FIXED}
        call = inspect.signature(self.cls.__call__).parameters
        if "normalise_func_kwargs" in init:
            # Quantus's normalise_by_max divides by the max over *all* axes, batch included,
            # so an image's value would depend on its batch mates (e.g. EffectiveComplexity's
            # eps threshold). Per-image max instead: rows stay independent of batching.
            init["normalise_func_kwargs"] = {"normalise_axes": [1, 2, 3]}
        self.defaults = {**init, "softmax": call["softmax"].default,
                         "batch_size": call["batch_size"].default, "seed": 0}
        # Quantus's own options keep Quantus's checks (_build); ours are typed, and so is
        # every switch Quantus defaults to true/false (a count or a string there is a typo).
        self.option_types = {**{k: bool for k, v in self.defaults.items() if type(v) is bool},
                             "batch_size": Annotated[int, Range(1)],
                             "seed": Annotated[int, Range(0)]}
        super().__init__(**options)
        direction = self.cls.score_direction.value
        self.higher_is_better = direction == "higher"
        if quantus_name == "RegionPerturbation":
            # Quantus marks it LOWER, but its curve is the score *drop* y(x) - y(x_k): under
            # MoRF a larger area (AOPC, Samek et al. 2017, eq. 12) is the better explanation.
            self.higher_is_better = self.options["order"] == "morf"
        if self.kind == "curve":
            _require_trapz(quantus_name)
        self._build()  # let Quantus check the options now, not at the first batch

    def validate(self) -> None:
        o = self.options
        if o.get("weighted") and self.quantus_name in ("PointingGame", "AttributionLocalisation"):
            raise UserError(f"quantus:{self.quantus_name} with weighted=True is broken in "
                            "Quantus 0.6.0; use weighted=False.")

    def _build(self):
        init = {k: v for k, v in self.options.items() if k not in ("softmax", "batch_size", "seed")}
        init.update({k: v for k, v in _FIXED.items() if k in inspect.signature(self.cls.__init__).parameters})
        try:
            with _quiet_seeded(self.options["seed"]):
                return self.cls(**init)
        except (ValueError, AssertionError, TypeError, KeyError) as e:
            raise UserError(f"{self.name}: Quantus refused the options: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}.") from None

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        if maps.ndim == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        if images.ndim != 4 or maps.ndim != 3 or maps.shape != images.shape[:1] + images.shape[2:]:
            raise UserError(f"{self.name}: images must be [B, C, H, W] and maps [B, H, W] at the "
                            f"same size, got {list(images.shape)} and {list(maps.shape)}.")
        B = images.shape[0]
        dev = images.device
        if self.needs_model:
            if model is None:
                raise UserError(f"{self.name} needs the model.")
            check_eval(model)
            dev = model_device(model, images.device)
            if targets is None:
                targets = predict(model, images, self.options["batch_size"])
        else:
            model = None  # map-only metric: no forward, no wrapping by Quantus
        if targets is None:
            targets = torch.zeros(B, dtype=torch.long)
        rows = torch.arange(B)
        if self.kind == "mask":
            if masks.ndim == 4 and masks.shape[1] == 1:
                masks = masks[:, 0]
            if masks.shape != maps.shape:
                raise UserError(f"{self.name}: masks {list(masks.shape)} must match maps "
                                f"{list(maps.shape)}.")
            # Quantus counts an empty mask as a hit (PointingGame): never show it one.
            rows = masks.flatten(1).any(1).nonzero()[:, 0].cpu()
        values = torch.full((B,), float("nan"), dtype=torch.float32)
        curves = None
        if len(rows):
            r = rows.to(images.device)
            x = images[r].detach().float().cpu().numpy().copy()
            y = torch.as_tensor(targets).detach().cpu()[rows].numpy().astype(np.int64)
            a = maps[r.to(maps.device)].detach().float().cpu().numpy()[:, None].copy()
            s = None
            if self.kind == "mask":
                s = masks[r.to(masks.device)].detach().cpu().numpy()[:, None].astype(np.float32)
            metric = self._build()
            try:
                # float32: Quantus turns the model's outputs into numpy arrays, and numpy
                # has no bfloat16 (an ambient bf16 autocast would make it fail).
                with _quiet_seeded(self.options["seed"]), float32_ops(torch.device(dev)):
                    out = metric(model=model, x_batch=x, y_batch=y, a_batch=a, s_batch=s,
                                 channel_first=True, softmax=self.options["softmax"],
                                 device=str(dev), batch_size=self.options["batch_size"])
            except (ValueError, AssertionError, IndexError) as e:
                raise UserError(f"{self.name} failed inside Quantus: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}.") from None
            if self.kind == "curve":
                from quantus.helpers.utils import calculate_auc
                c = np.asarray(out, dtype=np.float64).reshape(len(rows), -1)
                curves = torch.from_numpy(c).float()
                values[rows] = torch.from_numpy(
                    np.asarray(calculate_auc(c, batched=True), dtype=np.float64)).float()
            else:
                values[rows] = torch.from_numpy(np.asarray(out, dtype=np.float64).reshape(-1)).float()
        return MetricResult(values.to(dev), None if curves is None else curves.to(dev))


def _factory(quantus_name: str):
    def make(**options: Any) -> QuantusMetric:
        return QuantusMetric(quantus_name, **options)

    make.__doc__ = f"Quantus 0.6.0 {quantus_name} through the uniform metric interface."
    return make


for _n in ADAPTED:
    register_metric(f"quantus:{_n}", _factory(_n))
