"""The explainer interface and the checks every explainer shares.

An explainer is a small object holding its options; calling it explains a batch::

    maps = explainer(model, images, targets)   # maps: [B, H, W] float32, raw, images' device

Rules (DESIGN.md, "Rules"): an explainer never calls ``model.eval()`` or ``.to()``, never
flips ``requires_grad``, never edits the caller's tensors, and leaves no hooks behind. It
checks the model instead and raises a one-line :class:`~lico_bench.errors.UserError`.

Precision. An explainer may be called under an ambient ``torch.autocast(device_type,
dtype=torch.bfloat16)`` (the runner's bf16 mode) and with a channels-last model and images.
Only the model's forward and backward passes then run in bf16: activations, gradients and
logits are cast to float32 before anything is computed from them (softmax, channel weights,
weighted sums, Score-CAM masks, RISE masks and accumulation, upsampling), with autocast
switched off locally (``lico_bench.precision.float32_ops``) where it would lower a matmul or einsum to bf16
again. Maps are float32, so the metrics' pixel order never sees bf16 values. pytorch-grad-cam
(``gradcam:<Name>``) converts to numpy, which has no bfloat16: it always runs in float32.
captum runs under the autocast and its output is cast before the channel sum and upsampling
(its Layer* methods weight and sum inside captum, in bf16). bf16 only: fp16 autocast would
underflow the gradients of Grad-CAM(++) without loss scaling. With ``targets=None`` the
explained class comes from bf16 logits; pass targets to pin it.

Documented tolerance, bf16 + channels-last against float32, per map (measured on the trained
shapes models baseline_r18 and lico_r18, 32 px, 8 test images, Score-CAM and RISE 2, CPU
autocast): Pearson correlation >= 0.99999 and max |difference| of min-max normalised maps
<= 0.0025 for gradcam, gradcampp, scorecam, rise (measured <= 0.0022; before the float32
casts Grad-CAM(++) reached 0.0073); captum:LayerGradCam <= 0.0075, captum:IntegratedGradients
<= 0.031 (correlation >= 0.9996); pytorch-grad-cam identical. No pointed pixel (pointing
game) changed. Channels-last alone: the float32 maps to 1e-5 of their maximum (measured
<= 1.3e-6; captum:IntegratedGradients 1.4e-4, a sum of 16 backward passes through other
convolution kernels). ``tests/explainers/test_precision.py`` checks looser bounds on a tiny
net, that an autocast-immune model gives the float32 maps exactly (no bf16 arithmetic of
the explainers' own), and, on CUDA, that no host round trip happens per chunk.
"""
from __future__ import annotations

import abc
import contextlib
import json
import math
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arguments import check_images, check_targets, model_errors
from ..errors import UserError


class Explainer(abc.ABC):
    """Base class: option bookkeeping, input checks, grad-mode handling.

    Subclasses set ``name``, call ``super().__init__(**all_their_options)`` and implement
    :meth:`explain`. ``options`` holds every option with its value (defaults included) and
    is JSON-serialisable, for the run manifest; ``None`` means "chosen from the model or the
    image size at call time" and :meth:`resolved_options` says what it became.

    Example (a new method: its options and :meth:`explain`; ``register_explainer("centre",
    Centre)`` makes it ``--method centre``)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> from lico_bench.explainers import Explainer
        >>> class Centre(Explainer):
        ...     name = "centre"
        ...     def __init__(self, sigma: float = 0.25):
        ...         super().__init__(sigma=sigma)
        ...     def explain(self, model, images, targets):
        ...         B, _, H, W = images.shape
        ...         y = torch.linspace(-0.5, 0.5, H)[:, None]
        ...         x = torch.linspace(-0.5, 0.5, W)[None, :]
        ...         bump = torch.exp(-(x ** 2 + y ** 2) / (2 * self.options["sigma"] ** 2))
        ...         return bump.expand(B, H, W)
        >>> maps = Centre(sigma=0.2)(model, images)          # targets None: the predicted class
        >>> maps.shape, maps.dtype
        (torch.Size([2, 32, 32]), torch.float32)
        >>> Centre().describe()
        {'class': 'Centre', 'options': {'sigma': 0.25}}
    """

    name: str = ""
    #: True when :meth:`explain` needs autograd (run under ``torch.enable_grad()``).
    needs_grad: bool = False
    #: The option that seeds the explainer's randomness (RISE: "seed"), None if it has none.
    #: A benchmark run sets it to each experiment's (training) seed unless the user gives it
    #: (:func:`lico_bench.explainers.create_explainer_for_seed`).
    seed_option: Optional[str] = None

    def __init__(self, **options: Any):
        try:
            json.dumps(options, allow_nan=False)  # NaN/inf are no option value (nor JSON)
        except (TypeError, ValueError):
            raise UserError(f"options of explainer {self.name!r} must be plain values "
                            f"(finite numbers, strings, lists); got {options!r}.") from None
        self.options: Dict[str, Any] = dict(options)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"

    def describe(self) -> Dict[str, Any]:
        """What a run manifest records of this explainer: ``{"class": str, "options":
        dict}`` (every option as given, ``None`` = automatic; :meth:`resolved_options` says
        what an automatic one becomes for a model and image size)."""
        return {"class": type(self).__name__, "options": self.options}

    def resolved_options(self, model: nn.Module, image_size: tuple) -> Dict[str, Any]:
        """``options`` with every automatic (``None``) value replaced by what a call on
        ``model`` with images of ``image_size = (H, W)`` uses."""
        return dict(self.options)

    def __call__(self, model: nn.Module, images: torch.Tensor,
                 targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Explain ``images`` for ``targets``.

        images:  [B, 3, H, W] float32 (normalised, as the model expects); left untouched.
        targets: [B] int64 class indices, or None for the class the model predicts.
        returns: maps [B, H, W] float32 at input resolution, raw (not normalised), on the
                 images' device. Use :func:`normalize_maps` for display only.
        """
        images, targets = check_call(model, images, targets)
        grad_ctx = torch.enable_grad() if self.needs_grad else torch.no_grad()
        with grad_ctx, model_errors(model, images):  # grad modes restore the caller's on exit
            maps = self.explain(model, images.detach(), targets)
        maps = maps.detach().to(device=images.device, dtype=torch.float32)
        B, _, H, W = images.shape
        if maps.shape != (B, H, W):
            raise RuntimeError(f"explainer {self.name!r} returned maps of shape "
                               f"{tuple(maps.shape)}, expected {(B, H, W)}")
        return maps

    @abc.abstractmethod
    def explain(self, model: nn.Module, images: torch.Tensor,
                targets: Optional[torch.Tensor]) -> torch.Tensor:
        """images: [B, 3, H, W] float32 (detached); targets: [B] int64 or None (predicted).
        Returns maps [B, H, W]."""


# --------------------------------------------------------------------------------------
# checks


def check_call(model: nn.Module, images: Any, targets: Any):
    """Validate an explainer call; return ``(images, targets)`` (targets [B] int64 or None).

    Raises UserError (one line, says what to do) for a model in training mode, a model and
    images on different devices, half/bf16 ones (use autocast), images holding NaN or inf,
    badly shaped images/targets, or targets outside the model's classes
    (:mod:`lico_bench.arguments`; a dtype or channel count the model does not take is named
    when its forward pass refuses it, :func:`lico_bench.arguments.model_errors`).
    """
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if any(m.training for m in model.modules()):
        raise UserError("the model (or one of its modules) is in training mode (BatchNorm/"
                        "Dropout would change the maps); call model.eval() before explaining.")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserError(f"images must be a [B, 3, H, W] float tensor, got {shape}.")
    if not images.is_floating_point():
        raise UserError(f"images must be a float tensor (normalised), got {images.dtype}.")
    if images.shape[0] == 0:
        raise UserError("images is an empty batch; pass at least one image.")
    check_images(model, images)   # device and dtype against the model's, finite
    if targets is not None:
        targets = check_targets(targets, images.shape[0], model, images.device)
    return images, targets


def layer_path(model: nn.Module, layer: Optional[str]) -> str:
    """The dotted CAM layer path: the ``layer`` option, else ``model.cfg.cam_layer``."""
    if layer is not None:
        return layer
    cfg = getattr(model, "cfg", None)
    path = getattr(cfg, "cam_layer", None)
    if not path:
        raise UserError("the model has no cfg.cam_layer; pass the target layer as an option, "
                        "e.g. create_explainer('gradcam', layer='features.layer4').")
    return path


def checked_layer_path(model: nn.Module, layer: Optional[str]) -> str:
    """:func:`layer_path`, after checking that ``model`` has that layer (a one-line
    UserError otherwise): what ``resolved_options`` records, so that a run refuses a wrong
    ``layer`` option while it builds its manifest, before it writes anything."""
    resolve_layer(model, layer)
    return layer_path(model, layer)


def resolve_layer(model: nn.Module, layer: Optional[str]) -> nn.Module:
    from ..models import get_module  # models does not import explainers: no cycle

    return get_module(model, layer_path(model, layer))


# --------------------------------------------------------------------------------------
# hooks


@contextlib.contextmanager
def capture_activations(layer: nn.Module, name: str, grad: bool) -> Iterator[List[torch.Tensor]]:
    """Record the output ``A: [B, C, h, w]`` of ``layer`` during the forward pass inside.

    The list yielded receives one tensor per call of the layer, a copy that in-place
    operations further down the model (``out += identity``, ``ReLU(inplace=True)``) cannot
    change.

    With ``grad=True`` the forward pass runs without autograd up to the layer; the hook
    turns autograd on and feeds the rest of the model a copy of a leaf A that requires
    grad. So ``torch.autograd.grad(score, A)`` gives d score / d A while no graph (and no
    memory) is spent on the layers before it, the parameters' ``requires_grad`` and
    ``.grad`` are never touched, and frozen models work alike. The caller's grad mode is
    restored on exit.

    The hook exists only inside this context and is removed in ``finally``.
    """
    store: List[torch.Tensor] = []

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise UserError(f"CAM layer {name!r} outputs {shape}, not a [B, C, h, w] feature "
                            "map; pass a convolutional layer as layer=...")
        if not grad:
            store.append(output.detach().clone())
            return None
        leaf = output.detach().requires_grad_(True)
        store.append(leaf)
        torch.set_grad_enabled(True)  # record the graph from A to the logits only
        return leaf.clone()           # a hook's return value replaces the layer's output

    prev = torch.is_grad_enabled()
    handle = layer.register_forward_hook(hook)
    torch.set_grad_enabled(False)
    try:
        yield store
    finally:
        handle.remove()
        torch.set_grad_enabled(prev)


def single_activation(store: List[torch.Tensor], name: str) -> torch.Tensor:
    if len(store) != 1:
        raise UserError(f"CAM layer {name!r} ran {len(store)} times in one forward pass; pass "
                        "a layer that runs exactly once (e.g. a block, not a shared ReLU).")
    return store[0]


# --------------------------------------------------------------------------------------
# tensor helpers


def upsample(maps: torch.Tensor, size: tuple) -> torch.Tensor:
    """[B, h, w] -> [B, H, W], bilinear with align_corners=False.

    For upsampling this equals cv2.resize(INTER_LINEAR), which pytorch-grad-cam uses, and
    captum's LayerAttribution.interpolate(..., 'bilinear') (checked in the tests).
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear",
                         align_corners=False)[:, 0]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation, for display only.

    maps: [B, H, W] float -> [B, H, W] float32 in [0, 1]. A constant map becomes zeros
    (never NaN). Metrics use the raw maps, not these (METRICS.md).
    """
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise UserError("normalize_maps expects a [B, H, W] tensor.")
    m = maps.detach().float()
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    rng = hi - lo
    out = (m - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
    return torch.where(rng > 0, out, torch.zeros_like(out))


def same_images(images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The batch's items grouped by image: exact equality of every value (``torch.unique``
    over the flattened images), so two images that differ anywhere are never merged.

    images: [B, 3, H, W] float. Returns ``(items, group)`` on the images' device:
    items [G, M] int64, row g the items that show the g-th distinct image (groups in order of
    first appearance, items in batch order), padded to the largest group M by repeating its
    first item; group [B] int64, each item's row. With no two images equal: items =
    ``arange(B)[:, None]``, group = ``arange(B)``. Under ``run --grid N`` a composite's n^2
    cells are one image with n^2 targets: Score-CAM's and RISE's masked forwards do not
    depend on the explained class, so they run once per row and each item reads its own
    target from them. One device-to-host read (the groups).
    """
    B = images.shape[0]
    _, inverse = torch.unique(images.reshape(B, -1), dim=0, return_inverse=True)
    groups: Dict[int, List[int]] = {}
    for b, u in enumerate(inverse.tolist()):           # dict order = first appearance
        groups.setdefault(u, []).append(b)
    members = list(groups.values())
    width = max(len(v) for v in members)
    items = [v + v[:1] * (width - len(v)) for v in members]
    group = [0] * B
    for g, v in enumerate(members):
        for b in v:
            group[b] = g
    return (torch.tensor(items, dtype=torch.long, device=images.device),
            torch.tensor(group, dtype=torch.long, device=images.device))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def scaled(value_at_224: float, size: int) -> int:
    """A pixel length given at 224 px, scaled to ``size`` px (rounded up, at least 1)."""
    return max(1, math.ceil(value_at_224 * size / 224))


# --------------------------------------------------------------------------------------
# guarding third-party code

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks")


@contextlib.contextmanager
def model_guard(model: nn.Module) -> Iterator[None]:
    """Undo what third-party explainers leave on ``model``, even when they raise.

    Restores, in ``finally``: every module's hook dicts (hooks added inside are removed),
    every module's children (pytorch-grad-cam's AblationCAM swaps the target layer for an
    ablation layer and swaps it back only on success), and the parameters' ``.grad``
    (pytorch-grad-cam calls ``model.zero_grad()`` and ``loss.backward()``).
    """
    modules = list(model.modules())
    hooks = [{d: set(getattr(m, d, {}).keys()) for d in _HOOK_DICTS} for m in modules]
    children = [dict(m._modules) for m in modules]
    full_bw = [getattr(m, "_is_full_backward_hook", None) for m in modules]
    params = list(model.parameters())
    grads = [p.grad for p in params]
    try:
        yield
    finally:
        for m, before, kids, fb in zip(modules, hooks, children, full_bw):
            for d, keys in before.items():
                table = getattr(m, d, None)
                if table is not None:
                    for k in [k for k in table if k not in keys]:
                        del table[k]
            if dict(m._modules) != kids:
                m._modules.clear()
                m._modules.update(kids)
            if hasattr(m, "_is_full_backward_hook"):
                m._is_full_backward_hook = fb
        for p, g in zip(params, grads):
            p.grad = g
