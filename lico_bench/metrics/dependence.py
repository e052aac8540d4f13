"""Map dependence: how much an explanation depends on the image rather than on the class.

A method that draws the same map for every image of a class (a fixed template, as LICO's
CAMs on ``shapes`` were found to) explains the class, not the image. This diagnostic needs
only the maps already computed (no forward pass):

    z_i          = (m_i - mean(m_i)) / std(m_i)          each map standardised over its pixels
    zbar_{-i}    = mean of z_j over the other images j != i with the same explained class
    dependence_i = pearson(m_i, zbar_{-i})                 (= pearson(z_i, zbar_{-i}))

so ``dependence_i = 1`` when every image of the class has the same map (up to scale and
offset), about 0 when the maps follow something that moves from image to image (the
object), and negative when a map avoids where the others point. Standardising first gives
every image the same weight in the leave-one-out mean whatever its map's scale (raw
Grad-CAM magnitudes differ by orders of magnitude between images). NaN for an image whose
class has no other evaluated image, or whose map (or the others' mean) is constant.
Lower is better: a good explanation depends on the image.

Maps are average-pooled to at most ``grid x grid`` cells first (the runner keeps these
pooled maps, not full-resolution ones); the value of a map already that small is exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "map_dependence"
HIGHER_IS_BETTER = False
DEFAULT_GRID = 32


def describe() -> dict:
    """What a run manifest records of map dependence (the runner adds it to every row):
    ``{"higher_is_better": bool, "options": dict}``, as a metric's ``describe`` does."""
    return {"higher_is_better": HIGHER_IS_BETTER,
            "options": {"grid": DEFAULT_GRID, "similarity": "pearson",
                        "reference": "leave-one-out mean of the standardised maps of the "
                                     "other evaluated images with the same explained class"}}


def pool_maps(maps: torch.Tensor, grid: int = DEFAULT_GRID) -> torch.Tensor:
    """maps: [B, H, W] float -> [B, min(H, grid), min(W, grid)] float32 (area average)."""
    h, w = maps.shape[-2:]
    size = (min(h, grid), min(w, grid))
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if size == (h, w):
        return maps.clone()
    return F.adaptive_avg_pool2d(maps[:, None], size)[:, 0]


def map_dependence(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Per-image map dependence (module docstring), computed in float64.

    maps: [N, h, w] float (all evaluated images, pooled); classes: [N] int64, the class
    each map explains. Returns [N] float32, NaN where undefined.
    """
    if maps.dim() != 3 or classes.shape != maps.shape[:1]:
        raise ValueError(f"map_dependence: expected maps [N, h, w] and classes [N], got "
                         f"{tuple(maps.shape)} and {tuple(classes.shape)}")
    x = maps.double().flatten(1)                                    # [N, P]
    x = x - x.mean(1, keepdim=True)
    sd = x.norm(dim=1, keepdim=True)
    ok = sd[:, 0] > 1e-12 * (1 + x.abs().amax(1))                   # not a constant map
    z = torch.where(ok[:, None], x / sd.clamp_min(1e-300), torch.zeros_like(x))
    out = torch.full((len(x),), float("nan"), dtype=torch.float64)
    for c in classes.unique():
        idx = (classes == c).nonzero()[:, 0]
        zc, okc = z[idx], ok[idx]
        n_ok = okc.sum()
        total = zc.sum(0, keepdim=True)                             # constant maps add 0
        others = total - zc                                         # [n, P], sum over j != i
        n_others = n_ok - okc.long()                                # non-constant others
        o = others - others.mean(1, keepdim=True)                   # already ~0-mean; exact
        r = (zc * o).sum(1) / (zc.norm(dim=1) * o.norm(dim=1))
        valid = okc & (n_others >= 1) & (o.norm(dim=1) > 1e-12)
        out[idx] = torch.where(valid, r, torch.full_like(r, float("nan")))
    return out.float()
