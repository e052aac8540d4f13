"""Precision and device-copy helpers shared by the layers that run a model (lico losses,
explainers, metrics, trainer, runner). Only torch; nothing here imports the package."""
from __future__ import annotations

import contextlib

import torch


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or as it is when already float32/float64 (bf16/fp16 are upcast)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def float32_ops(device: torch.device):
    """A context where autocast is off for ``device``'s type (a no-op when it is not on):
    under autocast a matmul, einsum or convolution runs in bf16 even on float32 inputs."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host tensor -> ``device``; on CUDA through pinned memory, so the copy does not block."""
    if device.type == "cuda" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)
