"""Batched, seeded training augmentation on the device (crop, flip, resized crop).

The random numbers (:func:`augment_params`) are drawn apart from their use
(:func:`apply_augment`): ranks draw them for the whole global batch and keep their slice,
so a distributed step augments exactly as one process would.
"""
from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F


def augment_params(kind: str, n: int, h: int, w: int, g: torch.Generator, pad: int = 4) -> Dict[str, torch.Tensor]:
    """The random numbers of :func:`apply_augment` for ``n`` images of ``h x w``, drawn from
    ``g`` (a CPU generator): each value is [n]. Ranks draw them for the whole global batch
    and keep their slice, so a distributed step augments exactly as one process would."""
    p: Dict[str, torch.Tensor] = {}
    if kind in ("crop_flip", "crop"):
        p["oy"] = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        p["ox"] = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    elif kind == "resized_crop_flip":
        area = h * w * (0.35 + 0.65 * torch.rand(n, generator=g))
        logr = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(n, generator=g)
        ratio = torch.exp(logr)
        p["cw"] = torch.sqrt(area * ratio).clamp(8, w)
        p["ch"] = torch.sqrt(area / ratio).clamp(8, h)
        p["x0"] = torch.rand(n, generator=g) * (w - p["cw"])
        p["y0"] = torch.rand(n, generator=g) * (h - p["ch"])
    if kind in ("crop_flip", "flip", "resized_crop_flip"):
        p["flip"] = torch.rand(n, generator=g) < 0.5
    return p


def apply_augment(x: torch.Tensor, kind: str, p: Dict[str, torch.Tensor], pad: int = 4) -> torch.Tensor:
    """Batched augmentation on the device. x: [B, 3, H, W] float32 normalised -> same shape;
    p: :func:`augment_params` for these B images.

    crop: RandomCrop(H, padding=pad) with reflect padding (as FixMatch); flip: horizontal
    flip with p = 0.5; resized_crop_flip: RandomResizedCrop(scale 0.35-1, ratio 3/4-4/3)
    then flip.
    """
    B, _, H, W = x.shape
    if kind in ("crop_flip", "crop"):
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        oy, ox = p["oy"].to(x.device), p["ox"].to(x.device)
        rows = (oy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]  # [B,1,H,1]
        cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, None, :]  # [B,1,1,W]
        bidx = torch.arange(B, device=x.device)[:, None, None, None]
        cidx = torch.arange(3, device=x.device)[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    elif kind == "resized_crop_flip":
        w, h, x0, y0 = p["cw"], p["ch"], p["x0"], p["y0"]
        # affine grid that maps the output to the crop box (normalised coordinates)
        theta = torch.zeros(B, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = w / W, h / H
        theta[:, 0, 2] = (2 * x0 + w) / W - 1
        theta[:, 1, 2] = (2 * y0 + h) / H - 1
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if "flip" in p:
        flip = p["flip"].to(x.device).view(B, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    return x


def apply_augment_masks(masks: torch.Tensor, kind: str, p: Dict[str, torch.Tensor],
                        pad: int = 4) -> torch.Tensor:
    """The same geometric augmentation as :func:`apply_augment` with the same numbers ``p``,
    on object masks: masks [B, H, W] bool -> [B, H, W] bool. Crop and flip move pixels
    exactly (reflect padding reflects the mask as it reflects the image); the resized crop
    interpolates bilinearly and keeps what is above one half."""
    if kind == "none":
        return masks
    m = masks[:, None].to(torch.float32).expand(-1, 3, -1, -1)
    return apply_augment(m, kind, p, pad)[:, 0] > 0.5


def augment_batch(x: torch.Tensor, kind: str, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """:func:`apply_augment` with numbers drawn from ``g``. x: [B, 3, H, W] -> same shape."""
    if kind == "none":
        return x
    return apply_augment(x, kind, augment_params(kind, x.shape[0], x.shape[2], x.shape[3], g, pad), pad)
