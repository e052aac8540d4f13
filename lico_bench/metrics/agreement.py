"""Cross-seed agreement: does a training method give the same explanation when trained again
with another seed? (METRICS.md, "Verdicts over seeds"; the idea of xplique's MeGe, Fel et al.
2022, applied to training runs rather than to data splits.)

For one model family (e.g. ``lico_r18``), one method and one image ``i``, with the maps
``m_s(i)`` of the models of seeds ``s = 1..S`` (S >= 2), explaining the same class (the
runner's target; with ``--target pred`` the seeds' predictions may differ, and each map
explains its own model's prediction)::

    agreement_i = 2 / (S (S - 1)) * sum_{s < t} sim(m_s(i), m_t(i))

over every unordered pair of seeds, for two similarities (:mod:`.similarity`):

- ``spearman``: Spearman rank correlation of the two maps (ties: average ranks; a constant
  map against a non-constant one 0, two constant maps 1);
- ``ssim``: SSIM of the min-max normalised maps (Wang et al. 2004, eq. 13; skimage's
  defaults, a 7 x 7 window; NaN when the maps are smaller than the window).

The maps are the pooled maps the runner keeps (:func:`lico_bench.metrics.dependence.pool_maps`,
at most 32 x 32 area averages): no forward pass. Higher is better: 1 = every seed's model
gives the same map (up to a monotone change for Spearman). A map that does not depend on the
image (a fixed template per class or per model) can agree perfectly across seeds; agreement
alone cannot tell it from a faithful explanation, which is why the report shows it beside map
dependence (1 for a template). The dataset value is the mean over images, with a bootstrap
CI over images (:mod:`lico_bench.report.agreement`).
"""
from __future__ import annotations

from itertools import combinations
from typing import Dict

import torch

from .similarity import DEFAULT_WINDOW, minmax, spearman, ssim

NAMES = ("spearman", "ssim")


def seed_agreement(maps: torch.Tensor, window: int = DEFAULT_WINDOW) -> Dict[str, torch.Tensor]:
    """maps: [S, N, h, w] float, the maps of N images under S >= 2 seeds (same image order).

    Returns {"spearman": [N] float64, "ssim": [N] float64}: each image's mean similarity over
    the S (S - 1) / 2 unordered pairs of seeds (module docstring)."""
    if maps.dim() != 4 or maps.shape[0] < 2:
        raise ValueError(f"seed_agreement: expected maps [S >= 2, N, h, w], got {tuple(maps.shape)}")
    s, n, h, w = maps.shape
    pairs = list(combinations(range(s), 2))
    rho = torch.zeros(n, dtype=torch.float64)
    ss = torch.zeros(n, dtype=torch.float64)
    small = h < window or w < window
    norm = None if small else minmax(maps.reshape(s * n, h, w)).view(s, n, h, w)
    for a, b in pairs:
        rho += spearman(maps[a], maps[b])
        if not small:
            ss += ssim(norm[a], norm[b], window)
    ss = torch.full_like(ss, float("nan")) if small else ss / len(pairs)
    return {"spearman": rho / len(pairs), "ssim": ss}
