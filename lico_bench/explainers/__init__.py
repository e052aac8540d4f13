"""Saliency explainers: one interface for every attribution method.

::

    explainer = create_explainer("gradcam")              # or "gradcampp", "scorecam", "rise"
    maps = explainer(model, images, targets)             # maps: [B, H, W] float32, raw

``images: [B, 3, H, W] float32`` (normalised, on the model's device), ``targets: [B] int64``
or None (the predicted class). Maps are at input resolution, on the images' device and raw
(not min-max normalised; :func:`normalize_maps` is for display only). ``explainer.options``
holds every option with its value for the run manifest; ``None`` values are chosen at call
time from the model (CAM layer = ``model.cfg.cam_layer``) or the image size (RISE N and s),
and ``explainer.resolved_options(model, (H, W))`` says what they become.

Core methods (``list_explainers()``): ``gradcam``, ``gradcampp``, ``scorecam``, ``rise``, and
the input-gradient methods ``saliency``, ``inputxgrad``, ``intgrad`` (captum's, with their
settings fixed: :mod:`.gradients`).
Adapters, not listed, reached by prefix (see :mod:`.adapters`):

* ``gradcam:<Name>``: any CAM class of pytorch-grad-cam (EigenCAM, LayerCAM, XGradCAM,
  HiResCAM, AblationCAM, ...); its output is pytorch-grad-cam's min-max normalised map.
* ``captum:<Name>``: any captum attribution (IntegratedGradients, Occlusion,
  GuidedBackprop, Saliency, LayerGradCam, ...), summed over channels.

Adding a method: a subclass of :class:`Explainer` (or :class:`BaseCAM` overriding only
``weights``) and one ``register_explainer`` line.
"""
from __future__ import annotations

from typing import Any, Callable, List

from ..errors import UserError
from ..registry import Registry
from .adapters import CaptumAdapter, PytorchGradCamAdapter
from .base import Explainer, normalize_maps
from .cam import BaseCAM, GradCAM, GradCAMPlusPlus, ScoreCAM
from .gradients import GradientSaliency, InputXGradient, IntegratedGradients
from .rise import RISE

_EXPLAINERS: Registry[Callable[..., Explainer]] = Registry("explainer")

#: name prefix -> adapter factory(suffix, **options)
ADAPTER_PREFIXES = {
    "gradcam:": lambda suffix, **o: PytorchGradCamAdapter(cam=suffix, **o),
    "captum:": lambda suffix, **o: CaptumAdapter(method=suffix, **o),
}


def register_explainer(name: str, cls: Callable[..., Explainer] | None = None):
    """Register explainer class (or factory) ``cls`` under ``name``; a decorator without
    ``cls``. A duplicate name raises ValueError."""
    if ":" in name:
        raise ValueError(f"explainer names may not contain ':' (reserved for adapters): {name!r}")
    return _EXPLAINERS.register(name, cls)


def list_explainers() -> List[str]:
    """Registered explainer names (the core ones). Adapters are reached by the prefixes
    ``gradcam:<Name>`` and ``captum:<Name>`` and are not listed."""
    return _EXPLAINERS.names()


def create_explainer(name: str, **options: Any) -> Explainer:
    """Explainer ``name`` with ``options`` (unknown name or option: UserError)."""
    for prefix, factory in ADAPTER_PREFIXES.items():
        if name.startswith(prefix):
            return _construct(name, lambda **o: factory(name[len(prefix):], **o), options)
    if name not in _EXPLAINERS:
        msg = _EXPLAINERS.unknown_message(name)
        raise UserError(msg[:-1] + ", or an adapter 'gradcam:<Name>' / 'captum:<Name>'.")
    return _construct(name, _EXPLAINERS.get(name), options)


def create_explainer_for_seed(name: str, options: dict, seed: int) -> Explainer:
    """Explainer ``name`` with ``options`` for an experiment of training seed ``seed``: an
    explainer with randomness (its ``seed_option``, e.g. RISE's ``seed``) draws it from
    ``seed`` unless ``options`` give it, so each seed's maps are independent draws."""
    explainer = create_explainer(name, **options)
    key = explainer.seed_option
    if key is None or key in options:
        return explainer
    return create_explainer(name, **options, **{key: seed})


def _construct(name: str, factory: Callable[..., Explainer], options: dict) -> Explainer:
    try:
        return factory(**options)
    except TypeError as e:  # unknown or missing keyword
        raise UserError(f"bad options for explainer {name!r}: {e}.") from None


register_explainer("gradcam", GradCAM)
register_explainer("gradcampp", GradCAMPlusPlus)
register_explainer("scorecam", ScoreCAM)
register_explainer("rise", RISE)
register_explainer("saliency", GradientSaliency)
register_explainer("inputxgrad", InputXGradient)
register_explainer("intgrad", IntegratedGradients)

__all__ = ["ADAPTER_PREFIXES", "BaseCAM", "CaptumAdapter", "Explainer", "GradCAM",
           "GradCAMPlusPlus", "GradientSaliency", "InputXGradient", "IntegratedGradients",
           "PytorchGradCamAdapter", "RISE", "ScoreCAM", "create_explainer",
           "create_explainer_for_seed",
           "list_explainers", "normalize_maps", "register_explainer"]
