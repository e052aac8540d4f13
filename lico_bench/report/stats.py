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
  Ties stay ties: the differences are rounded to 1e-9 of their largest magnitude before
  ranking (:func:`tie_quantise`), so 1/3 computed two ways is one value and float noise
  around 0 is a zero. Zeros are dropped (Wilcoxon's "wilcox" zero handling); with at most
  :data:`EXACT_MAX_N` non-zero differences the p-value is exact, from the permutation
  (sign-flip) distribution of the statistic over the actual mid-ranks
  (:func:`exact_signed_rank_p`), otherwise the normal approximation with the tie-corrected
  variance.
* Seed-level test (:func:`seed_t_test`): the image-level test holds each seed's trained model
  fixed; a claim about *training runs* needs the seeds as the unit. With S >= 2 seeds, the
  per-seed mean differences d_s get a one-sample Student t-test (S - 1 df) and its
  t-interval (see the function for why t and not a sign-flip permutation test).
* Multiplicity (:func:`holm`): Holm's step-down adjustment (Holm 1979, "A simple sequentially
  rejective multiple test procedure", Scand. J. Statist. 6:65-70) over all comparisons of a
  table; it controls the family-wise error rate with no assumption on their dependence.
* Verdict (:func:`verdict`): a side is named only when the CI excludes 0 *and* the
  Holm-adjusted p is below 0.05. The image-level verdict uses the crossed bootstrap CI and
  the Wilcoxon p; the seed-level verdict the t-interval and the t-test's p (Holm over the
  table's seed-level tests).
"""
from __future__ import annotations

import warnings
from typing import List, Sequence, Tuple

import numpy as np
from scipy import stats

# Bootstrap draws of every CI: 20000, not the usual 2000, so that a verdict does not hang on
# the bootstrap's seed: over 20 bootstrap seeds, 6 of the 506 committed comparisons changed
# verdict at 2000 draws, 1 at 20000 (a bound 0.03 % points from 0), the Monte Carlo sd of a
# bound being sqrt(10) smaller (benchmarks/bootstrap_flips.py, docs/statistics.md).
N_RESAMPLES = 20000
CONFIDENCE = 0.95
# Differences are compared for ties on a grid of this fraction of their largest magnitude
# (tie_quantise).
TIE_PRECISION = 1e-9
# Up to this many non-zero differences the signed-rank p is exact (exact_signed_rank_p);
# above it, the normal approximation (at n = 25 its p differs from the exact one by at most
# 0.0031 where p is in [0.01, 0.1]: 2000 normal samples without ties, docs/statistics.md).
EXACT_MAX_N = 25
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


def tie_quantise(diff) -> np.ndarray:
    """Differences as integers on a grid of :data:`TIE_PRECISION` x their largest magnitude.

    ``diff``: [n] float64 without NaN -> [n] int64 ``k`` with ``diff ~ k * q``,
    ``q = TIE_PRECISION * max|diff|`` (k = round(diff / q), so |k| <= 1e9). Ranking is then
    done on exact integers: values that agree to within q/2 are one value. This is what keeps
    ties ties: a per-image mean over seeds of a discrete metric (a pointing-game hit averaged
    over 3 seeds is 0, 1/3, 2/3 or 1) comes out of floating-point sums in the last bits
    differently for different images (1/3 as 0.333...33 or 0.333...37), and a rank test on
    the raw floats would rank equal values apart; likewise a difference that is 0 up to
    rounding (1e-17) is a zero, not the smallest positive difference. Two genuinely distinct
    differences closer than 1e-9 of the largest one are treated as tied (immaterial at the
    precision of the metrics: sums of <= 1e4 float32 terms carry relative errors ~1e-4);
    a value within one rounding error of a half-grid point may fall on either side
    (probability ~1e-7 per value). All zero -> all 0.
    """
    d = np.asarray(diff, dtype=np.float64)
    scale = float(np.max(np.abs(d))) if d.size else 0.0
    if scale == 0.0:
        return np.zeros(d.shape, dtype=np.int64)
    return np.rint(d / (TIE_PRECISION * scale)).astype(np.int64)


def exact_signed_rank_p(k) -> float:
    """Exact two-sided p of the Wilcoxon signed-rank statistic, ties included.

    ``k``: [n] non-zero integers (from :func:`tie_quantise`, zeros already dropped), n >= 1.
    The |k| get mid-ranks (ties share the mean of the ranks they span), doubled to integers
    ``r_j``; the statistic is T = sum of the doubled ranks of the positive k. Under H0 (the
    differences are symmetric about 0) every sign pattern of the n observed |k| is equally
    likely (the permutation distribution, Wilcoxon 1945; with ties it is the conditional
    distribution given the observed mid-ranks, Pratt & Gibbons 1981, "Concepts of
    nonparametric theory", Sec. 3.5): the 2^n counts c[t] = #{sign patterns with T = t} come
    from the recurrence c_j[t] = c_{j-1}[t] + c_{j-1}[t - r_j] (each rank either counts or
    not), in int64 (2^n <= 2^25 for the n this is used for, sums <= n (n + 1) <= 650). The
    distribution is symmetric about sum(r) / 2, and p = min(1, 2 min(P(T <= t), P(T >= t))).
    Every count is an integer and 2^n a power of two, so p is exact in float64.
    scipy's ``method="exact"`` tabulates the no-ties distribution and rounds a tied
    statistic; its ``method="auto"`` switches to a sign-flip permutation test (n <= 13) or
    the normal approximation with ties: hence our own recurrence.
    """
    k = np.asarray(k, dtype=np.int64)
    n = len(k)
    r2 = np.rint(2 * stats.rankdata(np.abs(k), method="average")).astype(np.int64)
    t = int(r2[k > 0].sum())
    counts = np.zeros(int(r2.sum()) + 1, dtype=np.int64)
    counts[0] = 1
    for r in r2:
        counts[r:] = counts[r:] + counts[:-r].copy()
    low, high = int(counts[:t + 1].sum()), int(counts[t:].sum())
    return float(min(1.0, 2 * min(low, high) / 2 ** n))


def wilcoxon_p(diff: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences ``diff`` [n] (NaN dropped).

    The differences are put on the grid of :func:`tie_quantise` (ties stay ties, float noise
    around 0 is 0), zeros are dropped (Wilcoxon's "wilcox" zero handling: a zero difference
    says nothing about the sign; the test is over the m non-zero differences). m <=
    :data:`EXACT_MAX_N`: the exact permutation p with mid-ranks (:func:`exact_signed_rank_p`;
    e.g. 5 differences of +1 and any number of zeros: p = 2 / 2^5 = 0.0625). Larger m: the
    normal approximation with the tie-corrected variance and no continuity correction
    (``scipy.stats.wilcoxon(..., method="asymptotic")`` on the integers, whose ranks are the
    differences' ranks). No finite difference -> NaN (no test was made); all differences
    zero -> 1.0 (a test with no evidence of a difference).
    """
    d = np.asarray(diff, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan")
    k = tie_quantise(d)
    k = k[k != 0]
    if len(k) == 0:
        return 1.0
    if len(k) <= EXACT_MAX_N:
        return exact_signed_rank_p(k)
    return float(stats.wilcoxon(k.astype(np.float64), zero_method="wilcox", correction=False,
                                method="asymptotic", alternative="two-sided").pvalue)


def t_test(values, confidence: float = CONFIDENCE, axis: int = -1):
    """One-sample Student t-test of mean 0 and t-interval, along ``axis`` (vectorised).

    ``values``: [..., S] float64 (S >= 2, no NaN) -> (mean, ci_low, ci_high, p), each [...]:
    mean m (:func:`anchored_mean`), sd s (S - 1 in the denominator),
    t = m / (s / sqrt(S)), p = 2 P(T_{S-1} >= |t|), interval m +- t_{S-1, (1+confidence)/2}
    s / sqrt(S) (Student 1908; the interval ``scipy.stats.ttest_1samp(...).confidence_interval``
    gives). s = 0 (every value equal) -> NaN for the interval and p: with no spread at all the
    t statistic is 0/0 or +-inf, and identical values (copies of one seed) carry no
    information about the spread; S < 2 -> NaN likewise.
    """
    v = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    S = v.shape[-1]
    m = anchored_mean(v, axis=-1)
    if S < 2:
        nan = np.full(m.shape, np.nan)
        return m, nan, nan.copy(), nan.copy()
    # the spread of v - v_0 (the same sd): exactly 0 when every value is equal, which the
    # spread of v itself is not ((0.1 + 0.1 + 0.1) / 3 != 0.1)
    se = np.std(v - v[..., :1], axis=-1, ddof=1) / np.sqrt(S)
    ok = se > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(ok, m / np.where(ok, se, 1.0), np.nan)
    p = np.where(ok, 2 * stats.t.sf(np.abs(t), S - 1), np.nan)
    half = np.where(ok, stats.t.ppf((1 + confidence) / 2, S - 1) * se, np.nan)
    return m, m - half, m + half, p


def seed_means(x) -> np.ndarray:
    """Per-seed means over images of a seeds x images matrix: [S'] float64 (d_s).

    All-NaN seeds and images dropped first (:func:`_clean`), NaN cells skipped; their mean is
    :func:`crossed_mean`.
    """
    x = _clean(x)
    return _row_means(x) if x.size else np.empty(0)


def seed_t_test(x, confidence: float = CONFIDENCE) -> Tuple[float, float, float, int]:
    """Seed-level test of a seeds x images matrix of paired differences: (ci_low, ci_high, p, S).

    The unit is the training seed: d_s = mean over images of seed s's differences
    (:func:`seed_means`), S of them; one-sample t-test of mean 0 with S - 1 df and its
    t-interval (:func:`t_test`). The interval is centred on :func:`crossed_mean`.

    Why t and not a sign-flip permutation test over the d_s: the permutation test's smallest
    two-sided p is 2 / 2^S (0.25 at 3 seeds, 0.0625 at 5, 0.002 at 10), so after Holm over a
    table of 24 comparisons (first threshold 0.05 / 24 = 0.0021) it can name nothing below 11
    seeds, and its interval is as coarse; each d_s is a mean over N >= 50 images, close to
    normal by the central limit theorem whatever the per-image distribution, which is the
    t-test's assumption (the seed effect itself is assumed normal; the coverage simulation in
    tests/report/test_stats.py and docs/statistics.md measures it). The target is the mean
    difference over training runs *for these test images*: the image-to-image variation is
    the image-level test's business (the interval does not cover the population-of-images
    mean when images vary more than seeds; docs/statistics.md).

    Fewer than 2 seeds, or every d_s equal: (nan, nan, nan, S) -- no seed-level claim.
    """
    d = seed_means(x)
    S = len(d)
    if S < 2:
        return float("nan"), float("nan"), float("nan"), S
    _, lo, hi, p = t_test(d, confidence)
    return float(lo), float(hi), float(p), S


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


def seed_level(d: np.ndarray) -> dict:
    """The seed-level columns of a seeds x images matrix of paired differences ``d``:
    seed_ci_low, seed_ci_high (t-interval over seeds), p_seed (one-sample t-test of the
    per-seed mean differences, S - 1 df; :func:`seed_t_test`) and
    seed_diffs (the d_s, ';'-joined, 6 significant digits). NaN with fewer than 2 seeds."""
    lo, hi, p, _ = seed_t_test(d)
    return dict(seed_ci_low=lo, seed_ci_high=hi, p_seed=p,
                seed_diffs=";".join(f"{v:.6g}" for v in seed_means(d)))


def add_verdicts(rows: List[dict], verdict_of=None) -> None:
    """Holm over ``rows`` (every comparison of one table), in place, at both levels.

    Image level: p_holm from p_wilcoxon, ``verdict`` from the bootstrap CI; seed level:
    p_seed_holm from p_seed (Holm over the table's seed-level tests; rows with one seed have
    no test and are not counted), ``seed_verdict`` from the t-interval. ``verdict_of(row,
    lo, hi, p_adjusted)`` names the side (default: :func:`verdict`).
    """
    if verdict_of is None:
        def verdict_of(r, lo, hi, q):
            return verdict(lo, hi, q, r["higher_is_better"])
    for r, q in zip(rows, holm([r["p_wilcoxon"] for r in rows])):
        r["p_holm"] = float(q)
        r["verdict"] = verdict_of(r, r["ci_low"], r["ci_high"], q)
    for r, q in zip(rows, holm([r["p_seed"] for r in rows])):
        r["p_seed_holm"] = float(q)
        r["seed_verdict"] = verdict_of(r, r["seed_ci_low"], r["seed_ci_high"], q)
