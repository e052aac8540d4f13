"""Adapters: every CAM of pytorch-grad-cam and every attribution of captum, one interface.

* ``gradcam:<Name>`` (e.g. ``gradcam:EigenCAM``, ``gradcam:LayerCAM``, ``gradcam:XGradCAM``,
  ``gradcam:HiResCAM``, ``gradcam:AblationCAM``): a CAM class of pytorch-grad-cam on the
  target layer. Its maps are **pytorch-grad-cam's own output**: ReLU, per-image min-max
  normalisation to [0, 1] and cv2 resizing, in numpy, converted to a tensor on the images'
  device. They are therefore not raw maps like those of the core explainers.
* ``captum:<Name>`` (e.g. ``captum:IntegratedGradients``, ``captum:Occlusion``,
  ``captum:GuidedBackprop``, ``captum:Saliency``, ``captum:LayerGradCam``): a captum
  attribution method. Channel rule: the map of a pixel is the **sum over its channels**
  (``reduce="sum"``, signed; captum's Saliency already returns |gradient|, so there it is
  the sum of absolute values), or ``reduce="abs_sum"``. Layer methods (``Layer*``) are
  reduced the same way and upsampled bilinearly (align_corners=False) to the input size.
  Raw, not normalised.

Both run inside :func:`~lico_bench.explainers.base.model_guard`, which removes any hook
they leave, restores swapped modules and the parameters' ``.grad``.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Annotated, Any, Dict, Literal, Optional

import torch
import torch.nn as nn

from ..errors import UserError
from ..options import Range, typed_options
from ..precision import float32_ops
from .base import (Explainer, checked_layer_path, model_guard, resolve_layer, scaled,
                   upsample)

# ----------------------------------------------------------------------------------------
# pytorch-grad-cam


def _gradcam_classes() -> Dict[str, type]:
    import pytorch_grad_cam
    from pytorch_grad_cam.base_cam import BaseCAM

    return {n: c for n, c in vars(pytorch_grad_cam).items()
            if isinstance(c, type) and issubclass(c, BaseCAM) and c is not BaseCAM}


CAPTUM_REDUCE = ("sum", "abs_sum")


class PytorchGradCamAdapter(Explainer):
    """``gradcam:<cam>``: pytorch-grad-cam's CAM class ``cam`` behind the common interface.

    Options: ``cam`` (class name), ``layer`` (None = model.cfg.cam_layer), ``aug_smooth``,
    ``eigen_smooth`` (pytorch-grad-cam's call options), and any plain-valued keyword of the
    class's constructor (e.g. ``batch_size`` of AblationCAM/ScoreCAM).

    Returns pytorch-grad-cam's min-max normalised maps (module docstring). Its targets are
    ClassifierOutputTarget (the target logit); targets=None is the predicted class.
    Progress bars of ScoreCAM/AblationCAM (tqdm) are silenced with TQDM_DISABLE=1.

    Example (usually reached by name: ``create_explainer("gradcam:EigenCAM", layer=...)``)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> from lico_bench.explainers import create_explainer
        >>> eigen = create_explainer("gradcam:EigenCAM", layer="0")
        >>> maps = eigen(model, images)
        >>> maps.shape, bool(maps.min() >= 0 and maps.max() <= 1)   # min-max normalised
        (torch.Size([2, 32, 32]), True)
    """

    name = "gradcam:<Name>"  # the instance's: gradcam:<cam>
    needs_grad = True

    @typed_options
    def __init__(self, cam: str, layer: Optional[str] = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False, **cam_options: Any):
        classes = _gradcam_classes()
        if cam not in classes:
            raise UserError(f"pytorch-grad-cam has no CAM class {cam!r}; choose one of "
                            f"{', '.join(sorted(classes))} (as 'gradcam:<Name>').")
        params = inspect.signature(classes[cam].__init__).parameters
        # batch_size is a constructor argument of AblationCAM and an attribute of ScoreCAM.
        allowed = (set(params) | {"batch_size"}) - {"self", "model", "target_layers"}
        unknown = sorted(set(cam_options) - allowed)
        if unknown:
            raise UserError(f"gradcam:{cam} takes no option(s) {unknown}; it takes "
                            f"{', '.join(sorted(allowed))}.")
        self._ctor_options = {k: v for k, v in cam_options.items() if k in params}
        self.name = f"gradcam:{cam}"
        super().__init__(cam=cam, layer=layer, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth, **cam_options)
        self.cam_class, self.layer, self.cam_options = classes[cam], layer, cam_options

    def resolved_options(self, model, image_size):
        return {**self.options, "layer": checked_layer_path(model, self.layer)}

    def explain(self, model, images, targets):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        layer = resolve_layer(model, self.layer)
        tg = None if targets is None else [ClassifierOutputTarget(t) for t in targets.tolist()]
        cam = None
        # float32: pytorch-grad-cam turns activations and gradients into numpy arrays, and
        # numpy has no bfloat16 (an ambient bf16 autocast would make it fail).
        with model_guard(model), float32_ops(images.device):
            try:
                cam = self.cam_class(model=model, target_layers=[layer], **self._ctor_options)
                if "batch_size" in self.cam_options and "batch_size" not in self._ctor_options:
                    cam.batch_size = self.cam_options["batch_size"]
                # A copy: pytorch-grad-cam may wrap the input for input gradients (FullGrad).
                out = cam(input_tensor=images.clone(), targets=tg,
                          aug_smooth=self.options["aug_smooth"],
                          eigen_smooth=self.options["eigen_smooth"])
            finally:
                if cam is not None:
                    cam.activations_and_grads.release()
        return torch.from_numpy(out).to(device=images.device, dtype=torch.float32)


# ----------------------------------------------------------------------------------------
# captum

_CAPTUM_EXCLUDED = {"Attribution", "GradientAttribution", "PerturbationAttribution",
                    "LayerAttribution", "NoiseTunnel", "LimeBase"}


def _captum_classes() -> Dict[str, type]:
    import captum.attr as ca

    return {n: c for n, c in vars(ca).items()
            if isinstance(c, type) and issubclass(c, ca.Attribution)
            and n not in _CAPTUM_EXCLUDED and not n.startswith(("Neuron", "LLM", "RemoteLLM"))}


class CaptumAdapter(Explainer):
    """``captum:<method>``: captum attribution ``method`` behind the common interface.

    Options:
      method: captum.attr class name.
      reduce: "sum" (signed sum over channels) or "abs_sum" (sum of absolute values).
      layer: for Layer* methods and GuidedGradCam; None = model.cfg.cam_layer.
      batch_size: bounds images per forward where captum allows it: ``internal_batch_size``
        (IntegratedGradients, Layer/Conductance ...) and ``perturbations_per_eval`` =
        max(1, batch_size // B) (Occlusion, FeatureAblation, ShapleyValueSampling ...).
      attribute: dict of extra keyword arguments to ``.attribute`` (lists become tuples).

    Defaults filled in when not given in ``attribute``: Occlusion's sliding window (3, w, w)
    and strides (3, t, t) scale captum's ImageNet tutorial values 15 and 8 at 224 px to the
    image size (w = ceil(15 H / 224), t = ceil(8 H / 224): 3 and 2 at 32 px); baselines = 0
    (the dataset mean colour in normalised space) where a method requires them.

    Example (usually reached by name: ``create_explainer("captum:IntegratedGradients")``)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> from lico_bench.explainers import create_explainer
        >>> ig = create_explainer("captum:IntegratedGradients", batch_size=16,
        ...                       attribute={"n_steps": 8})
        >>> ig(model, images, torch.tensor([0, 1])).shape    # signed sum over channels
        torch.Size([2, 32, 32])
    """

    name = "captum:<Name>"  # the instance's: captum:<method>
    needs_grad = True
    REDUCE = CAPTUM_REDUCE

    @typed_options
    def __init__(self, method: str, reduce: Literal[CAPTUM_REDUCE] = "sum",
                 layer: Optional[str] = None, batch_size: Annotated[int, Range(1)] = 64,
                 attribute: Optional[dict] = None):
        classes = _captum_classes()
        if method not in classes:
            raise UserError(f"captum has no supported attribution method {method!r}; choose "
                            f"one of {', '.join(sorted(classes))} (as 'captum:<Name>').")
        self.name = f"captum:{method}"
        super().__init__(method=method, reduce=reduce, layer=layer, batch_size=batch_size,
                         attribute=dict(attribute or {}))
        self.cls = classes[method]
        self.layer, self.reduce, self.batch_size = layer, reduce, batch_size
        self.method, self.attribute = method, dict(attribute or {})
        self._init_params = inspect.signature(self.cls.__init__).parameters
        self._attr_params = inspect.signature(self.cls.attribute).parameters

    @property
    def uses_layer(self) -> bool:
        return "layer" in self._init_params

    def attribute_kwargs(self, batch: int, height: int, width: int) -> Dict[str, Any]:
        """Keyword arguments passed to ``.attribute`` for a batch of ``batch`` images."""
        kw: Dict[str, Any] = {}
        params = self._attr_params
        if self.method == "Occlusion":
            w, t = scaled(15, height), scaled(8, height)
            kw["sliding_window_shapes"] = (3, w, scaled(15, width))
            kw["strides"] = (3, t, scaled(8, width))
        if "internal_batch_size" in params:
            kw["internal_batch_size"] = self.batch_size
        if "perturbations_per_eval" in params:
            kw["perturbations_per_eval"] = max(1, self.batch_size // batch)
        for k, v in self.attribute.items():
            kw[k] = tuple(v) if isinstance(v, list) else v
        return kw

    def resolved_options(self, model, image_size):
        kw = self.attribute_kwargs(1, *image_size)
        kw.pop("perturbations_per_eval", None)  # depends on the batch size at call time
        out = {**self.options, "attribute": {k: list(v) if isinstance(v, tuple) else v
                                             for k, v in kw.items()}}
        if self.uses_layer:
            out["layer"] = checked_layer_path(model, self.layer)
        return out

    def explain(self, model, images, targets):
        B, _, H, W = images.shape
        if targets is None:
            with torch.no_grad():
                targets = model(images).argmax(dim=1)
        args = [model]
        if self.uses_layer:
            args.append(resolve_layer(model, self.layer))
        kw = self.attribute_kwargs(B, H, W)
        baselines = self._attr_params.get("baselines")
        if (baselines is not None and baselines.default is inspect.Parameter.empty
                and "baselines" not in kw):
            # Required baselines (GradientShap, DeepLiftShap): zero images, two of them since
            # the *Shap methods sample from a baseline distribution of more than one.
            kw["baselines"] = torch.zeros_like(images[:1]).expand(2, -1, -1, -1).contiguous()
        with model_guard(model), warnings.catch_warnings():
            # We give captum a copy on purpose: it sets requires_grad on its input (and says so).
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
            attr = self.cls(*args).attribute(images.clone(), target=targets, **kw)
        if isinstance(attr, tuple):
            attr = attr[0]
        attr = attr.detach().float()
        if attr.ndim == 4:
            attr = attr.abs().sum(dim=1) if self.reduce == "abs_sum" else attr.sum(dim=1)
        elif attr.ndim != 3:
            raise UserError(f"captum:{self.method} returned attributions of shape "
                            f"{tuple(attr.shape)}, not an image map; use an image method.")
        return upsample(attr, (H, W))
