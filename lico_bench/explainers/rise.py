"""RISE: Randomized Input Sampling for Explanation (Petsiuk et al. 2018), batched.

Saliency (paper eq. 6, reference code eclique/RISE ``explanations.py``)::

    S(x)[target] = 1 / (N · p) · Σ_n P(target | x ⊙ m_n) · m_n

Masks as the reference ``generate_masks``: N binary s x s grids, each cell kept with
probability p; cell = ceil(H / s); each grid is upsampled bilinearly to (s + 1) · cell and
cropped to H x W at a random shift in [0, cell). The reference upsamples with
``skimage.transform.resize(order=1, mode='reflect', anti_aliasing=False)``: half-pixel
centres and mirror padding at the border. Here that is the same separable linear map,
written as two small interpolation matrices, and only the cropped rows and columns are
built: ``mask_n = Ry_n @ grid_n @ Rx_n^T`` (equal to skimage's to float32 precision; see
the tests).

The random numbers (N·s·s grid values, then N row shifts and N column shifts) come from a
CPU ``torch.Generator`` seeded with ``seed``: they are small, and drawing them on the CPU
makes the masks the same on every device; they are copied to the images' device once. The
masks themselves are built there, in float32 (also under autocast), ``batch_size`` at a
time, so memory stays bounded whatever N is. Every image of a batch gets the same masks,
so a batch gives the same maps as its images one by one. The masks do not depend on the
explained class either: an image that appears several times in a batch (``run --grid N``
explains a composite once per cell) is forwarded once per mask, and each of its items reads
its own target's probability from those outputs (``same_images``: exact equality of the
images), n^2 times fewer forwards for an n x n composite, the same numbers.

The reference computes ``probs^T @ masks`` for all K classes and then picks the target row;
here only the target column of the probabilities enters the product, ``[B, n] @ [n, H·W]``
for the whole batch: the same dot products without a K x H x W buffer per image (1000
classes at 224 px would be 200 MB per image).

Defaults scale with the image size (``N``/``s`` = None):

* min(H, W) >= 64: s = 7, N = 4000, p = 0.5 (reference ImageNet settings).
* smaller images (CIFAR-size, 32 px): s = 4, N = 500, p = 0.5. With s = 7 a cell would be
  5 px, close to single pixels; s = 4 gives 8 px cells. N keeps the reference
  noise-to-signal ratio: one cell's effect on the score shrinks about as 1/s^2 and the Monte
  Carlo noise as 1/sqrt(N), so N ∝ s^4: 4000 · (4/7)^4 ≈ 430, rounded up to 500. RISE costs
  N forward passes per image, the dominant cost of a CPU run.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Dict, Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..options import Range, typed_options
from ..precision import float32_ops
from .base import Explainer, ceil_div, same_images

SMALL_IMAGE = 64  # below this size (min(H, W)) the small-image defaults apply


def default_grid(height: int, width: int) -> Tuple[int, int]:
    """(N, s) for images of ``height`` x ``width`` (module docstring)."""
    if min(height, width) >= SMALL_IMAGE:
        return 4000, 7
    return 500, 4


def interpolation_matrix(s: int, length: int) -> torch.Tensor:
    """[length, s] float64: 1-D linear resize of s samples to ``length`` samples.

    As ``skimage.transform.resize(order=1, mode='reflect')``: output sample o reads input
    position c = (o + 0.5) · s / length - 0.5, interpolated linearly between floor(c) and
    floor(c) + 1, indices outside [0, s) mirrored about the edge samples (d c b | a b c d).
    """
    o = torch.arange(length, dtype=torch.float64)
    c = (o + 0.5) * s / length - 0.5
    i0 = torch.floor(c)
    frac = c - i0
    i0 = i0.long()

    def mirror(i: torch.Tensor) -> torch.Tensor:
        if s == 1:
            return torch.zeros_like(i)
        period = 2 * (s - 1)
        i = torch.remainder(i, period)
        return torch.where(i > s - 1, period - i, i)

    rows = torch.arange(length)
    m = torch.zeros(length, s, dtype=torch.float64)
    m.index_put_((rows, mirror(i0)), 1 - frac, accumulate=True)
    m.index_put_((rows, mirror(i0 + 1)), frac, accumulate=True)
    return m


class RISE(Explainer):
    """RISE saliency (Petsiuk et al. 2018).

    Options:
      N: number of masks (None = by image size, see module docstring).
      s: grid size, cells per side (None = by image size).
      p: probability of keeping a cell (0.5).
      seed: seed of the mask generator (0). Same seed -> same masks -> same maps.
      batch_size: masked images per forward pass, and masks built at a time (64).

    Example (N and s by image size unless given; the same seed gives the same masks)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> from lico_bench.explainers import RISE
        >>> rise = RISE(N=200, seed=1)
        >>> maps = rise(model, images)
        >>> maps.shape, torch.equal(maps, RISE(N=200, seed=1)(model, images))
        (torch.Size([2, 32, 32]), True)
        >>> rise.resolved_options(model, (32, 32))["s"]  # the grid chosen for 32 px
        4
    """

    name = "rise"
    needs_grad = False
    seed_option = "seed"

    @typed_options
    def __init__(self, N: Optional[Annotated[int, Range(1)]] = None,
                 s: Optional[Annotated[int, Range(1)]] = None,
                 p: Annotated[float, Range(0, 1, lo_open=True)] = 0.5,
                 seed: int = 0, batch_size: Annotated[int, Range(1)] = 64):
        super().__init__(N=N, s=s, p=p, seed=seed, batch_size=batch_size)
        self.N, self.s, self.p, self.seed, self.batch_size = N, s, p, seed, batch_size

    def grid(self, height: int, width: int) -> Tuple[int, int]:
        """(N, s) used for images of ``height`` x ``width``."""
        n_def, s_def = default_grid(height, width)
        return (self.N or n_def), (self.s or s_def)

    def resolved_options(self, model: nn.Module, image_size: tuple) -> Dict[str, Any]:
        N, s = self.grid(*image_size)
        return {**self.options, "N": N, "s": s}

    def masks(self, height: int, width: int,
              device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """The N masks, ``batch_size`` at a time: chunks [n, H, W] float32 in [0, 1]."""
        N, s = self.grid(height, width)
        cell_h, cell_w = ceil_div(height, s), ceil_div(width, s)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        grids = (torch.rand(N, s, s, generator=gen) < self.p).float()  # cell kept w.p. p
        shift_h = torch.randint(0, cell_h, (N,), generator=gen)
        shift_w = torch.randint(0, cell_w, (N,), generator=gen)
        # All random numbers cross to the device once, before the loop (N·s² + 2N values,
        # < 1 MB at N = 4000): a copy per chunk would wait for the device every time.
        device = torch.device(device)
        grids, shift_h, shift_w = (t.to(device) for t in (grids, shift_h, shift_w))
        # Upsample to (s+1)·cell, then crop [shift, shift + H): keep only those rows.
        my = interpolation_matrix(s, (s + 1) * cell_h).float().to(device)   # [(s+1)cell_h, s]
        mx = interpolation_matrix(s, (s + 1) * cell_w).float().to(device)   # [(s+1)cell_w, s]
        ar_h = torch.arange(height, device=device)
        ar_w = torch.arange(width, device=device)
        for i in range(0, N, self.batch_size):
            g = grids[i:i + self.batch_size]                                     # [n, s, s]
            ry = my[shift_h[i:i + self.batch_size, None] + ar_h]                 # [n, H, s]
            rx = mx[shift_w[i:i + self.batch_size, None] + ar_w]                 # [n, W, s]
            with float32_ops(device):  # masks in float32 even under the caller's autocast
                chunk = ry @ g @ rx.transpose(1, 2)                              # [n, H, W]
            yield chunk

    def explain(self, model, images, targets):
        B, _, H, W = images.shape
        N, _ = self.grid(H, W)
        if targets is None:
            targets = model(images).argmax(dim=1)
        # the masks do not depend on the target: an image that appears several times in the
        # batch (a grid composite, one item per cell) is forwarded once per chunk and each of
        # its items reads its own target's probability (same_images)
        items, _ = same_images(images)                                           # [G, M]
        first = items[:, 0].tolist()
        sal = torch.zeros(B, H * W, device=images.device, dtype=torch.float32)
        for m in self.masks(H, W, images.device):
            n = m.shape[0]
            probs = torch.empty(B, n, device=images.device, dtype=torch.float32)
            for g, b in enumerate(first):  # one forward per distinct image and chunk
                logits = model(images[b:b + 1] * m[:, None])                     # [n, K]
                # softmax in float32 (logits are bf16 under autocast); the targets indexed
                # on the device (reading them on the host would wait for it every chunk)
                prob = F.softmax(logits.float(), dim=1)
                probs[items[g]] = prob.index_select(1, targets[items[g]]).T      # [M, n]
            with float32_ops(images.device):  # accumulate in float32 under autocast too
                sal += probs @ m.view(n, H * W)      # Σ_n P(target | x ⊙ m_n) m_n (eq. 6)
        return (sal / (N * self.p)).view(B, H, W)
