"""Confidence intervals and paired tests for per-image results."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import stats

N_RESAMPLES = 2000
CONFIDENCE = 0.95


def bootstrap_ci(x: Sequence[float], seed: int = 0, n_resamples: int = N_RESAMPLES,
                 confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Percentile bootstrap CI of the mean over images (scipy.stats.bootstrap).

    Percentile rather than BCa: BCa is undefined for the constant samples a saturated metric
    gives (all 1.0 pointing hits). NaNs are dropped first; fewer than 2 values -> (nan, nan).
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def hierarchical_bootstrap_ci(groups: Sequence[Sequence[float]], seed: int = 0,
                              n_resamples: int = N_RESAMPLES,
                              confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Two-stage percentile bootstrap over seeds, then images within each seed.

    groups: one array of per-image values per seed. The statistic is the mean of the
    per-seed means, so the interval covers both seed-to-seed and image-to-image variation.
    """
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    groups = [g[~np.isnan(g)] for g in groups]
    groups = [g for g in groups if len(g)]
    if len(groups) < 2:
        return bootstrap_ci(groups[0] if groups else [], seed, n_resamples, confidence)
    rng = np.random.default_rng(seed)
    S = len(groups)
    picks = rng.integers(0, S, size=(n_resamples, S))
    # the mean of a resample of group s, for every (resample, slot)
    means = np.empty((n_resamples, S))
    for s, g in enumerate(groups):
        idx = rng.integers(0, len(g), size=(n_resamples, S, len(g)))
        m = g[idx].mean(axis=2)                       # [R, S] resampled means of group s
        means = np.where(picks == s, m, means)
    stat = means.mean(axis=1)
    a = (1 - confidence) / 2
    return float(np.quantile(stat, a)), float(np.quantile(stat, 1 - a))


def wilcoxon_p(diff: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (scipy), zeros dropped.

    All differences zero (or fewer than one non-zero) -> 1.0: no evidence of a difference.
    """
    d = np.asarray(diff, dtype=np.float64)
    d = d[~np.isnan(d)]
    if np.count_nonzero(d) == 0:
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
