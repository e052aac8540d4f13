"""Confidence intervals, paired tests, multiplicity correction and the verdict rule.

Every number of the report comes from a matrix ``X[s, i]`` of per-image values: one row per
training seed ``s``, one column per test image ``i``. Seeds and images are *crossed*, not
nested: the same test images are explained under every seed's model, so column ``i`` is the
same image in every row. Treating the S x N cells as S x N independent images (or resampling
images independently within each seed) makes intervals about sqrt(S) too narrow when the
image-to-image variation dominates, and a paired test over S x N "images" wildly overstates
the evidence.

* Point estimate (:func:`crossed_mean`): the mean over seeds of each seed's mean over its
  images (NaN cells skipped); with no NaN it is the grand mean of the matrix.
* Interval (:func:`crossed_bootstrap_ci`): percentile bootstrap of the crossed design
  (Brennan, Harris & Hanson 1987, "The bootstrap and other procedures for examining the
  variability of estimated variance components"; Owen 2007, "The pigeonhole bootstrap",
  Ann. Appl. Stat. 1(2)): one resample draws S seed indices and N image indices with
  replacement, the *same* image indices for every drawn seed, and recomputes the point
  estimate on the resampled matrix.
* Paired test (:func:`paired_wilcoxon_p`): Wilcoxon signed-rank test (Wilcoxon 1945) on the
  per-image differences averaged over seeds, so n = number of images, not images x seeds.
* Multiplicity (:func:`holm`): Holm's step-down adjustment (Holm 1979, "A simple sequentially
  rejective multiple test procedure", Scand. J. Statist. 6:65-70) over all comparisons of a
  table; it controls the family-wise error rate with no assumption on their dependence.
* Verdict (:func:`verdict`): a side is named only when the CI excludes 0 *and* the
  Holm-adjusted p is below 0.05.
"""
from __future__ import annotations

import warnings
from typing import Sequence, Tuple

import numpy as np
from scipy import stats

N_RESAMPLES = 2000
CONFIDENCE = 0.95
ALPHA = 0.05
NO_DIFFERENCE = "no clear difference"
# Largest number of gathered cells held at once while resampling (memory bound, ~32 MB).
_CHUNK_CELLS = 4_000_000


def _quiet_nanmean(a: np.ndarray, axis) -> np.ndarray:
    # All-NaN slices are expected here (a resample that drew only missing cells) and give NaN.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def anchored_mean(a, axis: int = -1) -> np.ndarray:
    """Mean along ``axis`` skipping NaN, computed as ``a0 + mean(a - a0)``.

    ``a0`` is the first non-NaN entry of each slice. Mathematically this is the plain
    (nan)mean; numerically it returns ``a0`` *exactly* when every entry of the slice is equal,
    which a plain mean does not ((0.1 + 0.1 + 0.1) / 3 != 0.1 in floating point). That is what
    makes S identical seeds reproduce the single-seed numbers bit for bit. All-NaN slice -> NaN.
    """
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    if a.shape[-1] == 0:
        return np.full(a.shape[:-1], np.nan)
    first = np.argmax(~np.isnan(a), axis=-1)[..., None]
    ref = np.take_along_axis(a, first, axis=-1)          # NaN where the slice is all NaN
    return ref[..., 0] + _quiet_nanmean(a - ref, axis=-1)


def _clean(x) -> np.ndarray:
    """2-D float matrix (a 1-D input is one seed) without all-NaN seeds and all-NaN images.

    A seed with no value carries no information; an image with no value under any seed is
    not part of the sample. The remaining NaN cells (an image missing under some seeds only)
    are skipped inside the per-seed means.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected a seeds x images matrix, got shape {x.shape}")
    ok = ~np.isnan(x)
    # C order: column fancy-indexing can return a Fortran-ordered copy, whose row sums are
    # accumulated in another order than a 1-D vector's (last-bit differences between the
    # one-seed and the identical-seeds answers)
    return np.ascontiguousarray(x[ok.any(axis=1)][:, ok.any(axis=0)])


def _row_means(x: np.ndarray) -> np.ndarray:
    """Mean of each row (last axis); NaN-skipping only when there is a NaN.

    np.mean is what scipy.stats.bootstrap applies to a resample, so the one-seed interval
    stays bit-identical to scipy's; np.nanmean may sum in another order.
    """
    return _quiet_nanmean(x, -1) if np.isnan(x).any() else x.mean(axis=-1)


def crossed_mean(x) -> float:
    """Point estimate: mean over seeds of each seed's mean over its non-NaN images.

    ``x``: seeds x images (or a 1-D vector for one seed). Seeds are weighted equally, as the
    bootstrap in :func:`crossed_bootstrap_ci` resamples them; no value at all -> NaN.
    """
    x = _clean(x)
    if x.size == 0:
        return float("nan")
    return float(anchored_mean(_row_means(x)))


def crossed_bootstrap_ci(x, seed: int = 0, n_resamples: int = N_RESAMPLES,
                         confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Percentile bootstrap CI of :func:`crossed_mean` for a crossed seeds x images design.

    One resample draws N image indices and S seed indices with replacement (Owen 2007, the
    "pigeonhole" bootstrap of a crossed random-effects design); the same image indices are
    used under every drawn seed, because column i is the same image for every seed. The
    statistic is :func:`crossed_mean` of the resampled matrix; the interval is the
    (1 - confidence)/2 and (1 + confidence)/2 quantiles (linear interpolation) of the
    resampled statistics.

    Draw order, part of the contract: ``rng = np.random.default_rng(seed)``; first the image
    indices ``rng.integers(0, N, (n_resamples, N))`` -- the very call ``scipy.stats.bootstrap``
    makes, so one seed gives scipy's percentile interval exactly -- then the seed indices
    ``rng.integers(0, S, (n_resamples, S))``. S identical seeds therefore give exactly the
    one-seed interval (the seed average is :func:`anchored_mean`).

    NaN: all-NaN seeds and images are dropped first (:func:`_clean`); other NaN cells are
    skipped in the per-seed means; a resample whose drawn cells are all NaN is left out.
    Fewer than 2 images -> (nan, nan): image-to-image variation cannot be estimated. Every
    value equal -> (value, value) (the bootstrap of a constant, without rounding noise).

    With few seeds (3) the seed part of the interval is the bootstrap of 3 numbers, whose
    variance is (S-1)/S of the truth and whose percentiles are coarse: when seed-to-seed
    variation matters the interval under-covers (measured in tests/report/test_stats.py).
    """
    x = _clean(x)
    S, N = x.shape
    if N < 2:
        return float("nan"), float("nan")
    vals = x[~np.isnan(x)]
    if np.all(vals == vals[0]):
        return float(vals[0]), float(vals[0])
    rng = np.random.default_rng(seed)
    images = rng.integers(0, N, (n_resamples, N))
    seeds = rng.integers(0, S, (n_resamples, S))
    per_seed = np.empty((n_resamples, S))             # resampled mean of seed s, every resample
    step = max(1, _CHUNK_CELLS // N)
    for s in range(S):
        for lo in range(0, n_resamples, step):
            per_seed[lo:lo + step, s] = _row_means(x[s][images[lo:lo + step]])
    stat = anchored_mean(np.take_along_axis(per_seed, seeds, axis=1), axis=1)
    return percentile_interval(stat, confidence)


def percentile_interval(values: np.ndarray, confidence: float) -> Tuple[float, float]:
    """The percentile interval of bootstrap ``values`` [R] (NaN draws left out; all NaN ->
    (nan, nan)). scipy.stats.quantile (linear interpolation, as np.quantile) is the function
    scipy.stats.bootstrap uses; np.quantile can differ from it in the last bit."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    a = (1 - confidence) / 2
    lo, hi = stats.quantile(values, np.array([a, 1 - a]))
    return float(lo), float(hi)


def bootstrap_ci(x: Sequence[float], seed: int = 0, n_resamples: int = N_RESAMPLES,
                 confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Percentile bootstrap CI of the mean of one sample (NaN dropped).

    The one-seed case of :func:`crossed_bootstrap_ci`; identical to
    ``scipy.stats.bootstrap(..., method="percentile", rng=np.random.default_rng(seed))``.
    Percentile rather than BCa: BCa is undefined for the constant samples a saturated metric
    gives (all 1.0 pointing hits). Fewer than 2 values -> (nan, nan).
    """
    return crossed_bootstrap_ci(np.asarray(x, dtype=np.float64).reshape(1, -1), seed,
                                n_resamples, confidence)


def wilcoxon_p(diff: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (scipy), zeros dropped.

    No finite difference -> NaN (no test was made); all differences zero -> 1.0 (a test with
    no evidence of a difference).
    """
    d = np.asarray(diff, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan")
    if np.count_nonzero(d) == 0:
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def per_image_means(x) -> np.ndarray:
    """Per-image value averaged over seeds (NaN cells skipped; all-NaN images dropped).

    Uses :func:`anchored_mean`, so identical seeds give the one-seed values exactly.
    """
    x = _clean(x)
    return anchored_mean(x, axis=0) if x.size else np.empty(0)


def paired_wilcoxon_p(diff) -> float:
    """Wilcoxon signed-rank p of a seeds x images matrix of paired differences.

    Seeds and images are crossed, so the test is made on the per-image differences averaged
    over seeds (:func:`per_image_means`): n = number of images. Treating the S x N cells as
    independent pairs would count every image S times.
    """
    return wilcoxon_p(per_image_means(diff))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and are not counted.

    With the m finite p sorted ascending, p_(1) <= ... <= p_(m):
    adj_(k) = min(1, max_{j <= k} (m - j + 1) p_(j)). The running max keeps the adjusted
    values in the order of the raw ones (the "step-down" monotonicity); rejecting
    adj < alpha is Holm's procedure at family-wise error rate alpha.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def verdict(ci_low: float, ci_high: float, p_adjusted: float, higher_is_better: bool,
            alpha: float = ALPHA) -> str:
    """"LICO better", "baseline better" or "no clear difference" for a difference LICO - baseline.

    A side is named only when both tests agree: the CI excludes 0 strictly (a bound equal to 0
    does not exclude it) *and* the adjusted p is strictly below ``alpha``. The side is the one
    the CI lies on, read through the metric's direction: for a lower-is-better metric
    (deletion) a CI below 0 means LICO is better. Anything undefined -> no clear difference.
    """
    if not (np.isfinite(ci_low) and np.isfinite(ci_high) and np.isfinite(p_adjusted)):
        return NO_DIFFERENCE
    if not p_adjusted < alpha:
        return NO_DIFFERENCE
    if ci_low > 0:
        lico_higher = True
    elif ci_high < 0:
        lico_higher = False
    else:
        return NO_DIFFERENCE
    return "LICO better" if lico_higher == bool(higher_is_better) else "baseline better"
