"""The uniform metric interface the runner builds on, and the metric registry.

::

    metric = create_metric("insertion", step=32)
    metric.name, metric.higher_is_better, metric.needs_masks, metric.options
    result = metric(model, images, maps, targets, masks=None)   # -> MetricResult
    result.values   # [B] float32, one value per image (NaN = skipped, e.g. empty mask)
    result.curves   # [B, n+1] float32 or None
    result.columns  # {suffix: (values [B], curves [B, n] or None)}: more row columns, or None
    result.maps     # [b, S, h, w] float32 maps it drew for the first b <= B images, or None

A metric that explains again (model-parameter randomisation) sets ``needs_explainer = True``
and is called with ``explain=`` the run's explainer, ``explain(model, images, targets) ->
maps``; it names further row columns ``<name>_<suffix>`` in ``extra_columns``. A metric that
draws random numbers per image (insertion/deletion's random orders) sets
``needs_image_ids = True`` and is called with ``image_ids=`` (the images' ids in the
dataset, [B]) and ``seed=`` (the experiment's seed), so an image's draw does not depend on
its batch; called without them it uses the images' positions in the batch and seed 0.

``metric.options`` holds every option, defaults included, JSON-serialisable, so a run
manifest records exactly what was computed.

Precision. Every metric may be called under an ambient bf16 ``torch.autocast`` and with a
channels-last model and images: only the model's forwards run in bf16, values and curves
are float32 whatever the precision. Insertion/deletion: see :mod:`.causal` for what stays
float32 and the documented tolerance (AUC within 0.0035 of float32 on the same maps). The
pointing games use no model; with the explainers' float32 maps they are the same in both
precisions (with bf16-computed maps: no hit changed, energy share within 0.001). Quantus
adapters run with autocast off (Quantus converts to numpy, which has no bfloat16).
"""
from __future__ import annotations

import json
from typing import Any, Callable, ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..arguments import check_images, check_targets, model_errors
from ..errors import UserError
from ..options import check_value, unknown_option_message
from ..registry import Registry


class MetricResult(NamedTuple):
    """values: [B] float32 (NaN where the image is skipped); curves: [B, n+1] float32 or None;
    columns: {suffix: (values [B], curves or None)}, the row columns ``<metric>_<suffix>``
    the metric declares in ``extra_columns``, or None; maps: [b, S, h, w] float32 maps the
    metric made for the first b <= B images (the runner keeps the first batch's, for
    figures), or None.

    Example::

        >>> import torch
        >>> from lico_bench.metrics import MetricResult
        >>> res = MetricResult(values=torch.tensor([0.5, 0.25]), curves=None)
        >>> res.values.mean().item(), res.curves is None
        (0.375, True)
    """

    values: torch.Tensor
    curves: Optional[torch.Tensor] = None
    columns: Optional[Dict[str, Tuple[torch.Tensor, Optional[torch.Tensor]]]] = None
    maps: Optional[torch.Tensor] = None


class Metric:
    """Base class: subclasses set ``name``, ``higher_is_better``, ``needs_masks``,
    ``defaults`` (every option and its default), ``option_types`` beside it (each option's
    type and range as a type hint, see :mod:`lico_bench.options`) and implement
    :meth:`compute`.

    Options are checked when the metric is created: an unknown name, a value of the wrong
    type or out of range (``true`` for a count, ``2.5`` for an integer, NaN), or a value
    that is not JSON-serialisable is a :class:`UserError`; :meth:`validate` checks what
    types cannot say (e.g. an odd kernel size).

    Example (a new metric: ``register_metric("map_mean", MapMean)`` makes it
    ``--metrics map_mean``)::

        >>> import torch
        >>> from lico_bench.metrics import Metric, MetricResult
        >>> class MapMean(Metric):
        ...     name = "map_mean"
        ...     higher_is_better = False
        ...     defaults = {"absolute": True}
        ...     option_types = {"absolute": bool}
        ...     def compute(self, model, images, maps, targets, masks):
        ...         m = maps.abs() if self.options["absolute"] else maps
        ...         return MetricResult(m.flatten(1).mean(dim=1), None)
        >>> maps = torch.tensor([[[1.0, -1.0]], [[2.0, 2.0]]])   # [B=2, H=1, W=2]
        >>> MapMean()(None, None, maps).values
        tensor([1., 2.])
        >>> MapMean(absolute=False)(None, None, maps).values
        tensor([0., 2.])
        >>> MapMean(absolute=1)
        Traceback (most recent call last):
        lico_bench.errors.UserError: option absolute of metric 'map_mean' must be true or false, got 1.
    """

    name: str = ""
    higher_is_better: bool = True
    needs_masks: bool = False
    needs_parts: bool = False  # True: scored by compute_parts(..., parts) (metrics.parts)
    #: True: called with ``explain=`` (the run's explainer), to explain other models.
    needs_explainer: bool = False
    #: True: called with ``image_ids=`` and ``seed=`` (per-image random draws).
    needs_image_ids: bool = False
    #: {suffix: higher_is_better} of the further row columns ``<name>_<suffix>``.
    extra_columns: ClassVar[Dict[str, bool]] = {}
    defaults: ClassVar[Dict[str, Any]] = {}
    option_types: ClassVar[Dict[str, Any]] = {}

    def __init__(self, **options: Any):
        for key in options:
            if key not in self.defaults:
                raise UserError(unknown_option_message(f"metric {self.name!r}", key, self.defaults))
        options = {k: (check_value(self.option_types[k], v, f"option {k} of metric {self.name!r}")
                       if k in self.option_types else v) for k, v in options.items()}
        self.options: Dict[str, Any] = {**self.defaults, **options}
        for k, v in self.options.items():
            try:
                json.dumps(v, allow_nan=False)
            except (TypeError, ValueError):
                raise UserError(f"option {k}={v!r} of metric {self.name!r} must be a plain "
                                "JSON value (number, string, bool, null, list, dict).") from None
        self.validate()

    def validate(self) -> None:
        """Check option values; raise :class:`UserError` on a bad one."""

    def describe(self, image_size: Tuple[int, int]) -> Dict[str, Any]:
        """What a run manifest records of this metric for images of ``image_size = (H, W)``:
        ``{"higher_is_better": bool, "options": dict}``, plus what an automatic (``None``)
        option resolves to, where the metric has one (insertion/deletion: ``resolved_step``)."""
        return {"higher_is_better": self.higher_is_better, "options": self.options}

    def describe_models(self, models: Dict[str, nn.Module]) -> Dict[str, Any]:
        """What the manifest adds to this metric's entry about the run's models ({name:
        untrained model}); nothing by default (randomisation: each model's stages)."""
        return {}

    def __call__(self, model: Optional[nn.Module], images: torch.Tensor, maps: torch.Tensor,
                 targets: Optional[torch.Tensor] = None,
                 masks: Optional[torch.Tensor] = None, parts: Any = None,
                 explain: Optional[Callable] = None,
                 image_ids: Optional[Sequence[int]] = None, seed: int = 0) -> MetricResult:
        """model: eval-mode classifier; images: [B, C, H, W] float32 normalised;
        maps: [B, H, W] float at input resolution; targets: [B] int64 or None (predicted
        class); masks: [B, H, W] bool (the explained class's union mask) or None;
        parts: a :class:`lico_bench.metrics.parts.PartScenes` for a metric that
        ``needs_parts``, else ignored; explain: the explainer that made ``maps`` (for
        metrics with ``needs_explainer``); image_ids: the images' ids in the dataset ([B]
        ints; None = 0..B-1) and seed: the experiment's seed, for metrics with
        ``needs_image_ids`` (else ignored). Half/bf16 models or images, images holding NaN
        or inf, targets outside the model's classes, and images of a dtype or channel count
        the model refuses are a one-line UserError (:mod:`lico_bench.arguments`)."""
        if model is not None and isinstance(images, torch.Tensor) and images.ndim == 4:
            check_images(model, images, same_device=False)   # half/bf16, finite
            if targets is not None:
                targets = check_targets(targets, images.shape[0], model, images.device)
            with model_errors(model, images):   # a dtype or channel count the model refuses
                return self._dispatch(model, images, maps, targets, masks, parts, explain,
                                      image_ids, seed)
        return self._dispatch(model, images, maps, targets, masks, parts, explain, image_ids, seed)

    def _dispatch(self, model, images, maps, targets, masks, parts, explain, image_ids, seed):
        """:meth:`compute` (or :meth:`compute_parts`) with what this metric needs."""
        if self.needs_masks and masks is None:
            raise UserError(f"metric {self.name!r} needs ground-truth masks; use a dataset with "
                            "masks (e.g. 'shapes') or drop this metric.")
        if self.needs_parts and parts is not None:
            return self.compute_parts(model, images, maps, targets, parts)
        if self.needs_explainer:
            if explain is None:
                raise UserError(f"metric {self.name!r} explains randomised models: pass the "
                                "explainer that made the maps as explain=.")
            return self.compute(model, images, maps, targets, masks, explain=explain)
        if self.needs_image_ids:
            ids = list(range(images.shape[0])) if image_ids is None else [int(i) for i in image_ids]
            if len(ids) != images.shape[0]:
                raise UserError(f"metric {self.name!r}: {len(ids)} image ids for "
                                f"{images.shape[0]} images.")
            return self.compute(model, images, maps, targets, masks, image_ids=ids, seed=int(seed))
        return self.compute(model, images, maps, targets, masks)

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({self.name!r}, {opts})"


_METRICS: Registry[Callable[..., Metric]] = Registry("metric")


def register_metric(name: str, factory: Optional[Callable[..., Metric]] = None):
    """Register ``factory(**options) -> Metric`` under ``name`` (usable as a decorator)."""
    return _METRICS.register(name, factory)


def list_metrics() -> List[str]:
    """Registered metric names, sorted (built-ins and ``quantus:<Name>`` adapters)."""
    return _METRICS.names()


def create_metric(name: str, **options: Any) -> Metric:
    """Build metric ``name`` with ``options`` (unknown names/options: :class:`UserError`)."""
    return _METRICS.get(name)(**options)


def overall(insertion_values: torch.Tensor, deletion_values: torch.Tensor) -> torch.Tensor:
    """Per-image "overall" score = insertion AUC - deletion AUC: [B] float32 (higher is better)."""
    return (insertion_values.float() - deletion_values.float())
