"""Pointing game (Zhang et al. 2016/2018, TorchRay's benchmark) and its energy-based variant.

Pure functions in TorchRay's style: one value per image, accumulation left to the caller
(:func:`pointing_accuracy` for the class-averaged accuracy).

- Point: the first maximum of the map in flattened (row-major) order, at input resolution.
- Hit: some ground-truth pixel lies at Euclidean distance strictly below ``tolerance``
  pixels from the point (TorchRay's rule). ``tolerance=0`` cannot be met with a strict "<",
  so it is *defined* as "the point lies inside the mask".
- The rule is exact on every CPU: pixel offsets are integers, so a distance is ``sqrt(q)``
  for an integer ``q = dy**2 + dx**2``. The host finds once the largest ``q`` with
  ``math.sqrt(q) < tolerance`` (IEEE 754 correctly rounded, so the same on every machine) and
  the device compares integers, ``q <= q_max``. A vectorised float sqrt is not correctly
  rounded on every CPU (it gave √2 ≥ √2 on one machine and < on another). For a tolerance
  given as the float nearest √q (``math.sqrt(2)``) the pixel at √q is exactly at the
  tolerance: a miss. For every default tolerance (15·H/224, H ≤ 8192) this equals the
  exact rational rule ``q < tolerance**2`` (checked in the tests).
- Several instances of a class: pass the union of their masks.
- An empty mask gives NaN (the pair is skipped), never a hit.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import UserError


def default_tolerance(height: int) -> float:
    """15 px at 224 px (TorchRay), scaled with the image height: ``15 * H / 224``."""
    return 15.0 * int(height) / 224.0


def _check(maps: torch.Tensor, masks: torch.Tensor):
    if not torch.is_tensor(maps) or not torch.is_tensor(masks):
        raise UserError("maps and masks must be tensors [B, H, W].")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise UserError(f"maps {list(maps.shape)} and masks {list(masks.shape)} must both be "
                        "[B, H, W] at input resolution; upsample the maps first.")
    # both pointing games refuse the same maps: NaN has no maximum, and an infinite value
    # has no share of the energy (inf / inf)
    if not bool(torch.isfinite(maps).all()):
        raise UserError("maps contain NaN or infinite values; fix the explainer output before "
                        "scoring it.")
    if masks.dtype != torch.bool and not bool(((masks == 0) | (masks == 1)).all()):
        # a soft or random mask would become all True in the cast below, silently
        raise UserError(f"masks must be bool (or hold only 0 and 1), got {masks.dtype} values "
                        "other than 0 and 1; pass the object masks as a bool tensor.")
    return maps, masks.to(device=maps.device, dtype=torch.bool)


def max_squared_distance(tolerance: float, q_limit: int) -> int:
    """The largest integer ``q`` in [0, q_limit] with ``math.sqrt(q) < tolerance``; -1 if none.

    ``math.sqrt`` is correctly rounded (IEEE 754) and so monotone: a bisection over the
    integers finds the boundary exactly. ``q_limit`` is the largest squared distance the
    image can hold, so a huge tolerance never needs its square.
    """
    tolerance = float(tolerance)
    if math.sqrt(q_limit) < tolerance:
        return int(q_limit)
    lo, hi = -1, int(q_limit)            # sqrt(lo) < tolerance (lo = -1: none), sqrt(hi) >= it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if math.sqrt(mid) < tolerance:
            lo = mid
        else:
            hi = mid
    return lo


def pointing_points(maps: torch.Tensor) -> torch.Tensor:
    """The pointed pixel of each map: [B, 2] int64 (y, x), first maximum in row-major order.

    maps: [B, H, W] float. ``torch.argmax`` returns the first maximal index.
    """
    w = maps.shape[-1]
    flat = maps.flatten(1).argmax(1)
    return torch.stack([flat // w, flat % w], dim=1)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor,
                  tolerance: Optional[float] = None) -> torch.Tensor:
    """Pointing-game hit per image: [B] float32, 1 hit, 0 miss, NaN for an empty mask.

    maps: [B, H, W] float (or [B, 1, H, W]); masks: [B, H, W] bool, the union of the
    explained class's instances, same size as the maps.
    Maps holding NaN or inf are refused (a UserError), as by :func:`energy_pointing_game`.
    tolerance: pixels; hit iff ``min over mask pixels of ||p - point||_2 < tolerance``;
    None = :func:`default_tolerance` (H); 0 = the point must lie inside the mask.
    """
    maps, masks = _check(maps, masks)
    b, h, w = maps.shape
    if tolerance is None:
        tolerance = default_tolerance(h)
    tolerance = float(tolerance)
    if not tolerance >= 0 or math.isinf(tolerance):
        raise UserError(f"tolerance must be a finite number of pixels >= 0, got {tolerance}.")
    pt = pointing_points(maps)                                           # [B, 2]
    if tolerance == 0:
        hit = masks[torch.arange(b, device=maps.device), pt[:, 0], pt[:, 1]]
    else:
        q_max = max_squared_distance(tolerance, (h - 1) ** 2 + (w - 1) ** 2)
        ys = torch.arange(h, device=maps.device)
        xs = torch.arange(w, device=maps.device)
        dy2 = (ys[None, :] - pt[:, :1]).pow(2)                           # [B, H] int64
        dx2 = (xs[None, :] - pt[:, 1:]).pow(2)                           # [B, W] int64
        q = dy2[:, :, None] + dx2[:, None, :]                            # [B, H, W] int64, exact
        hit = (masks & (q <= q_max)).flatten(1).any(1)
    # masked_fill rather than out[mask] = nan, which may count the mask on the host (a sync).
    return hit.float().masked_fill(~masks.flatten(1).any(1), float("nan"))


def pointing_accuracy(hits: torch.Tensor, classes: torch.Tensor) -> float:
    """Class-averaged pointing accuracy: mean over classes of hits / (hits + misses).

    hits: [N] float (1, 0 or NaN; NaN rows are skipped); classes: [N] int64, the class of
    each image-class pair. Classes without a non-NaN row are left out; NaN if none is left.
    """
    # A per-dataset aggregate: a host-side reduction is fine here.
    hits = torch.as_tensor(hits).detach().cpu().double().flatten()
    classes = torch.as_tensor(classes).detach().cpu().flatten()
    if hits.shape != classes.shape:
        raise UserError(f"hits {list(hits.shape)} and classes {list(classes.shape)} must have "
                        "the same length.")
    ok = ~torch.isnan(hits)
    hits, classes = hits[ok], classes[ok].long()
    if hits.numel() == 0:
        return float("nan")
    uniq, inv = torch.unique(classes, return_inverse=True)
    n = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.ones_like(hits))
    s = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, hits)
    return float((s / n).mean())


def energy_pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM, localisation evaluation): [B] float32.

    ``sum(relu(map) * mask) / sum(relu(map))``: the share of the non-negative saliency that
    falls inside the mask. NaN where the mask is empty (skipped, as in the pointing game) or
    where the map has no positive value (0/0: nothing to point with).
    maps: [B, H, W] float; masks: [B, H, W] bool, same size. Maps holding NaN or inf are
    refused (a UserError), as by :func:`pointing_game`.
    """
    maps, masks = _check(maps, masks)
    m = maps.double().clamp(min=0).flatten(1)
    total = m.sum(1)
    inside = (m * masks.flatten(1)).sum(1)
    out = (inside / total).float()
    return out.masked_fill((total == 0) | ~masks.flatten(1).any(1), float("nan"))
