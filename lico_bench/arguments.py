"""Checks of what the Python API is given: explainers (``explainers.base.check_call``) and
metrics (``metrics.base.Metric.__call__``) share them, so that a bad argument ends in one
:class:`UserError` naming it and saying what to do, not in a torch RuntimeError from deep
inside a forward pass ("index 10 is out of bounds", "Input type (float) and bias type
(double) should be the same") or in NaN maps and scores.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn

from .errors import UserError

#: dtypes the explainers and metrics compute in (their own steps are float32; a float64
#: model and images run in float64). half/bf16 weights: use torch.autocast instead.
_LOW = (torch.float16, torch.bfloat16)


def model_dtype(model: nn.Module) -> Optional[torch.dtype]:
    """The dtype of the model's first floating parameter (or buffer); None if it has none."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def model_classes(model: nn.Module) -> Optional[int]:
    """How many classes ``model`` outputs, where it says so without a forward pass: its
    ``cfg.num_classes`` (lico-bench's models), else the ``out_features`` of its last
    ``nn.Linear`` (torchvision's classifiers); None if neither."""
    k = getattr(getattr(model, "cfg", None), "num_classes", None)
    if type(k) is int:
        return k
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last.out_features if last is not None else None


def check_images(model: Optional[nn.Module], images: torch.Tensor,
                 same_device: bool = True) -> None:
    """``images`` [B, C, H, W] against ``model``: on its device (``same_device``; metrics
    move the images themselves), neither of them half or bf16 (explainers and metrics
    compute in float32 or float64; autocast is the way to bf16), and every value finite (NaN
    or inf in an input gives NaN maps and scores). A dtype or channel count the model does
    not take is named by :func:`model_errors` (a model may cast its input itself)."""
    dev = next((t.device for t in list(model.parameters()) + list(model.buffers())), None) \
        if model is not None and same_device else None
    if dev is not None and dev != images.device:
        raise UserError(f"the model is on {dev} but the images are on {images.device}; "
                        f"move the images with images.to('{dev}').")
    mdt = model_dtype(model) if model is not None else None
    for who, dt in (("the model's parameters are", mdt), ("images are", images.dtype)):
        if dt in _LOW:
            raise UserError(f"{who} {dt}; explainers and metrics compute in float32 (or "
                            "float64): pass model.float() and images.float(), and wrap the call "
                            "in torch.autocast(device_type, dtype=torch.bfloat16) for bf16 speed.")
    bad = ~torch.isfinite(images.detach()).flatten(1).all(1)
    if bool(bad.any()):
        idx = bad.nonzero().flatten().tolist()
        raise UserError(f"images {idx[:5]} (of {images.shape[0]}) hold NaN or infinite values; "
                        "pass finite, normalised images.")


# What torch says when the images do not fit the model's first layer (CPU and CUDA wording).
_DTYPE = re.compile(r"Input type \(.*\) and (bias|weight) type \(.*\) should be the same|"
                    r"expected scalar type|must have the same dtype|expected .* to have the same dtype")
_CHANNELS = re.compile(r"expected input\[.*\] to have (\d+) channels, but got (\d+) channels")


@contextlib.contextmanager
def model_errors(model: Optional[nn.Module], images: torch.Tensor) -> Iterator[None]:
    """Turn torch's RuntimeError for images the model does not take (another dtype than its
    weights, another channel count than its first convolution) into one UserError naming
    the images and the model; any other error passes through. Checked by what the forward
    pass says, not up front: a model may cast or convert its input itself."""
    try:
        yield
    except RuntimeError as e:
        said = " ".join(str(e).split())
        ch = _CHANNELS.search(said)
        if ch:
            raise UserError(f"images have {ch.group(2)} channels but the model's first "
                            f"convolution takes {ch.group(1)}; pass [B, {ch.group(1)}, H, W] "
                            "images, normalised as the model expects.") from None
        if _DTYPE.search(said):
            mdt = model_dtype(model) if model is not None else None
            raise UserError(f"images are {images.dtype} but the model computes in {mdt} "
                            f"(torch: {said[:120]}); pass images.to({mdt}) or convert the "
                            f"model to {images.dtype}.") from None
        raise


def check_targets(targets: Any, batch: int, model: Optional[nn.Module],
                  device: torch.device) -> torch.Tensor:
    """``targets`` as [B] int64 on ``device``: a 1-d integer tensor (or list) of ``batch``
    class indices, each in 0..K-1 where the model says its K (:func:`model_classes`)."""
    if not isinstance(targets, torch.Tensor):
        try:
            targets = torch.as_tensor(targets)
        except (TypeError, ValueError, RuntimeError):
            raise UserError(f"targets must be a [B] integer tensor of class indices, got "
                            f"{type(targets).__name__}.") from None
    if targets.ndim != 1 or targets.shape[0] != batch or targets.is_floating_point() \
            or targets.is_complex() or targets.dtype == torch.bool:
        raise UserError(f"targets must be a [B] integer tensor with B = {batch}, "
                        f"got {targets.dtype} of shape {tuple(targets.shape)}.")
    k = model_classes(model) if model is not None else None
    if k is not None and batch:
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= k:
            raise UserError(f"targets must be class indices in 0..{k - 1} (the model has {k} "
                            f"classes), got {lo if lo < 0 else hi}.")
    return targets.to(device=device, dtype=torch.long)
