"""Comparing attribution methods, the statistics: method-vs-method differences, ranks, and
metric reliability (:func:`compute_method_summary`); :mod:`lico_bench.report.methods` writes
them as tables.

Written by ``lico-bench report`` next to ``summary.*`` as ``methods.csv`` (long format, every
number), ``methods.md`` and ``methods.tex``; drawn by ``lico-bench figures`` as
``methods_rank`` and ``metric_agreement``. Everything is per model: the methods explain the
same images of the same model, so every comparison is paired.

Notation: for one model and one metric, ``X[j, s, i]`` is the score of method j (k methods)
on image i (N images) under training seed s (S seeds); seeds and images are crossed, as in
:mod:`lico_bench.report.stats`. Scores are *oriented* before ranking: a lower-is-better
metric (deletion) is negated, so that rank 1 is always the best method.

1. Paired differences (``kind == "method_pair"``): for every pair (A, B) of methods, in the
   order the run lists them, the matrix ``X[A] - X[B]`` (seeds x images) gets the statistics
   of the LICO - baseline table: :func:`~lico_bench.report.stats.crossed_mean`, the crossed
   bootstrap CI, the Wilcoxon signed-rank p on the per-image differences averaged over seeds,
   Holm's adjustment over every method pair x metric x model of this table, and the verdict
   rule of :func:`~lico_bench.report.stats.verdict` (a method is named only when the CI
   excludes 0 and the Holm p < 0.05); with >= 2 seeds also the seed-level verdict (t-test
   and t-interval over the per-seed mean differences, Holm over the table's seed-level
   tests; :func:`~lico_bench.report.stats.seed_t_test`).
2. Ranks (``kind == "rank"``): in each (seed, image) cell the k methods are ranked by their
   oriented scores, 1 = best, ties get the average of the ranks they span (1, 2.5, 2.5, 4;
   ``scipy.stats.rankdata(method="average")``); a cell where any method lacks a value is left
   out for every method. The mean rank of a method is the crossed mean of its rank matrix and
   its CI the crossed bootstrap (the same image and seed draws for every method, as the NaN
   pattern is shared).
3. Inter-rater reliability (``kind == "alpha"``), after Tomsett et al., "Sanity checks for
   saliency metrics", AAAI 2020 (Sec. "Reliability measures", inter-rater reliability):
   each image is a *rater* that rates the *units* -- the k methods -- with the rank the
   metric's score gives them on that image; Krippendorff's alpha with the ordinal difference
   function measures whether the images rank the methods the same way. Here a rater is one
   (seed, image) cell (with one seed: one image), the units are the k methods, the values
   the average ranks of 2.; computed by the ``krippendorff`` package
   (``alpha(reliability_data=[cells x methods], level_of_measurement="ordinal")``), i.e.
   alpha = 1 - D_o / D_e (Krippendorff 2011, "Computing Krippendorff's alpha-reliability",
   eq. for the coincidence matrix with the ordinal metric
   delta^2_ck = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2). alpha = 1: every image ranks the
   methods identically; alpha ~ 0: the ranking is no more consistent across images than
   chance, so a table of means cannot be trusted to order the methods; Krippendorff's
   guideline asks alpha >= 0.8 (>= 0.667 for tentative conclusions). CI: percentile bootstrap
   resampling the raters with the crossed draws of :func:`crossed_bootstrap_ci` (images, then
   seeds). A metric that ties every method on every cell (one value in all) -> NaN.
4. Agreement between metrics (``kind == "tau"``), the "internal consistency" question of
   Tomsett et al. (do metrics meant to measure the same property order methods alike?),
   measured with Kendall's tau-b (Kendall 1945, "The treatment of ties in ranking problems"):
   per image, tau_b = sum_{j<l} sgn(x_j - x_l) sgn(y_j - y_l) /
   sqrt(#pairs untied in x * #pairs untied in y) between the oriented scores x, y of two
   metrics over the k methods (undefined -> NaN when a metric ties all methods on that
   image); the table gives the crossed mean of these per-image values with its bootstrap CI
   and ``tau_overall``: ``scipy.stats.kendalltau`` between the two metrics' mean-rank
   orderings (the ordering a reader takes from the rank table). "overall" = insertion -
   deletion is built from two of the metrics, so its agreement with them is partly by
   construction.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import UserError
from .stats import (ALPHA, CONFIDENCE, N_RESAMPLES, add_verdicts, crossed_bootstrap_ci,  # noqa: F401
                    crossed_mean, paired_wilcoxon_p, percentile_interval, seed_level, verdict)

NO_DIFFERENCE = "no clear difference"
KINDS = ("method_pair", "rank", "alpha", "tau")
RELIABLE_ALPHA = 0.8      # Krippendorff's guideline for drawing conclusions
TENTATIVE_ALPHA = 0.667   # ... and for tentative ones


# ----------------------------------------------------------------------------- data layout
def method_order(rows: pd.DataFrame, manifest: Optional[dict] = None) -> List[str]:
    """Methods present in the rows, in the order the run's spec lists them, then by name."""
    present = set(rows["method"].unique())
    spec = [m for m in ((manifest or {}).get("spec") or {}).get("methods", []) or [] if m in present]
    return list(dict.fromkeys(spec)) + sorted(present - set(spec))


def score_cube(df: pd.DataFrame, col: str, methods: Sequence[str]) -> np.ndarray:
    """``X[j, s, i]``: ``col`` of method j, seed s, image i -- [k, S, N] float64, NaN if missing.

    Seeds sorted, images sorted by (dataset, image_id) -- the column order of
    :func:`lico_bench.report.common.seeds_by_images`, so the bootstrap draws are the same images.
    """
    if df.duplicated(["method", "seed", "dataset", "image_id"]).any():
        raise UserError(f"the rows hold the same image twice for one seed and method "
                        f"({df['model'].iloc[0]}); the results directory mixes two runs: "
                        "rebuild it with 'lico-bench run'.")
    seeds = sorted(df["seed"].unique())
    images = sorted(set(zip(df["dataset"], df["image_id"])))
    mi = {m: j for j, m in enumerate(methods)}
    si = {s: j for j, s in enumerate(seeds)}
    ii = {im: j for j, im in enumerate(images)}
    x = np.full((len(methods), len(seeds), len(images)), np.nan)
    keep = df["method"].isin(mi)
    d = df[keep]
    x[d["method"].map(mi).to_numpy(), d["seed"].map(si).to_numpy(),
      [ii[k] for k in zip(d["dataset"], d["image_id"])]] = d[col].to_numpy(dtype=np.float64)
    return x


def oriented(x: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Scores with higher = better (a lower-is-better metric negated)."""
    return x if higher_is_better else -x


def cell_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of the methods in every cell: ``x`` [k, ...] oriented scores -> [k, ...] float64.

    1 = best (highest oriented score); ties get the average rank they span (fractional
    ranking, ``scipy.stats.rankdata(-x, method="average")`` along axis 0). A cell with a NaN
    for any method is NaN for every method.
    """
    x = np.asarray(x, dtype=np.float64)
    bad = np.isnan(x).any(axis=0)
    r = stats.rankdata(-np.where(np.isnan(x), 0.0, x), method="average", axis=0)
    r[:, bad] = np.nan
    return r


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between ``x`` and ``y`` along axis 0, for every cell of the other axes.

    ``x``, ``y``: [k, ...] float64 (k ranked objects). tau_b = sum_{j<l} sgn(x_j - x_l)
    sgn(y_j - y_l) / sqrt(n_x n_y), n_x = number of pairs j<l with x_j != x_l (Kendall 1945),
    the statistic ``scipy.stats.kendalltau`` computes (variant "b"). NaN where a value is
    missing or where either side ties every object (n_x or n_y = 0).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    j, l = np.triu_indices(x.shape[0], k=1)
    sx = np.sign(x[j] - x[l])
    sy = np.sign(y[j] - y[l])
    num = (sx * sy).sum(axis=0)
    den = np.sqrt((sx != 0).sum(axis=0) * (sy != 0).sum(axis=0).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = num / den
    tau = np.where(den > 0, tau, np.nan)
    return np.where(np.isnan(sx).any(axis=0) | np.isnan(sy).any(axis=0), np.nan, tau)


def krippendorff_alpha(ranks: np.ndarray) -> float:
    """Ordinal Krippendorff's alpha of rank data; images (cells) rate methods (Tomsett et al.).

    ``ranks``: [k, S, N] (methods x seeds x images) from :func:`cell_ranks`; reshaped into the
    reliability matrix [S*N raters, k units] that ``krippendorff.alpha`` takes. NaN cells are
    missing ratings. Fewer than 2 distinct values (every method tied everywhere) or fewer
    than 2 rated cells -> NaN (alpha is 0/0).
    """
    import krippendorff

    data = np.asarray(ranks, dtype=np.float64).reshape(ranks.shape[0], -1).T
    data = data[~np.isnan(data).all(axis=1)]
    vals = data[~np.isnan(data)]
    if len(data) < 2 or len(np.unique(vals)) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))


# Krippendorff's alpha is recomputed per resample by a Python call (~1 ms): 2000 draws. It
# names no side (no verdict hangs on its bounds), unlike the CIs of the paired differences.
ALPHA_RESAMPLES = 2000


def alpha_bootstrap_ci(ranks: np.ndarray, seed: int = 0, n_resamples: int = ALPHA_RESAMPLES,
                       confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Percentile bootstrap CI of :func:`krippendorff_alpha`, resampling raters crossed.

    ``ranks``: [k, S, N]. Draw order as :func:`crossed_bootstrap_ci`: ``rng =
    np.random.default_rng(seed)``, image indices ``rng.integers(0, N, (n_resamples, N))``,
    then seed indices ``rng.integers(0, S, (n_resamples, S))``; a resample keeps the cells
    (drawn seed, drawn image). Images without any rated cell are dropped first. Resamples
    where alpha is undefined are left out; fewer than 2 images -> (nan, nan).
    """
    r = np.asarray(ranks, dtype=np.float64)
    r = r[:, :, ~np.isnan(r).all(axis=(0, 1))]
    r = r[:, ~np.isnan(r).all(axis=(0, 2)), :]
    k, S, N = r.shape
    if N < 2 or S < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    images = rng.integers(0, N, (n_resamples, N))
    seeds = rng.integers(0, S, (n_resamples, S))
    vals = np.array([krippendorff_alpha(r[:, seeds[b]][:, :, images[b]]) for b in range(n_resamples)])
    return percentile_interval(vals, confidence)


def _n_images(x: np.ndarray) -> int:
    """Images with a value under at least one seed; ``x`` [..., S, N]."""
    x = x.reshape(-1, x.shape[-1])
    return int((~np.isnan(x)).any(axis=0).sum())


def _estimate(x: np.ndarray) -> dict:
    lo, hi = crossed_bootstrap_ci(x)
    return dict(mean=crossed_mean(x), ci_low=lo, ci_high=hi, n=_n_images(x))


def pair_verdict(a: str, b: str, ci_low: float, ci_high: float, p_adjusted: float,
                 higher_is_better: bool) -> str:
    """"A better", "B better" or "no clear difference" for the difference A - B.

    The rule of :func:`lico_bench.report.stats.verdict` (CI excludes 0 and Holm p < 0.05,
    side read through the metric's direction) with A in the role of LICO.
    """
    v = verdict(ci_low, ci_high, p_adjusted, higher_is_better)
    return {"LICO better": f"{a} better", "baseline better": f"{b} better"}.get(v, NO_DIFFERENCE)


# ----------------------------------------------------------------------------- the table
def compute_method_summary(rows: pd.DataFrame, directions: Dict[str, bool],
                           manifest: Optional[dict] = None,
                           matrices: Optional[List[np.ndarray]] = None) -> pd.DataFrame:
    """Long table of method comparisons per model (kinds: method_pair, rank, alpha, tau).

    Columns: kind, model, method ("A - B" for a pair, the method for a rank, "" otherwise),
    metric, metric_b (tau: the second metric), mean, ci_low, ci_high, n (images), n_seeds,
    higher_is_better, and for pairs method_a, method_b, mean_a, mean_b (their means over the
    cells where both are defined, so mean_a - mean_b = mean), p_wilcoxon, p_holm (Holm over
    every pair row), verdict, and the seed-level seed_ci_low, seed_ci_high, p_seed,
    p_seed_holm, seed_verdict, seed_diffs (NaN / "no clear difference" with one seed);
    for tau also tau_overall; n_cells for alpha (rated cells).
    Empty with fewer than 2 methods. See the module docstring for each definition.
    ``matrices``: if a list is given, the seeds x images difference matrix of every pair row
    is appended to it, in row order (for diagnostics: benchmarks/bootstrap_flips.py).
    """
    rows = rows.copy()
    if "overall" in directions and "overall" not in rows.columns:
        rows["overall"] = rows["insertion"] - rows["deletion"]
    methods = method_order(rows, manifest)
    if len(methods) < 2:
        return pd.DataFrame(columns=["kind", "model", "method", "metric"])
    pairs: List[dict] = []
    out: List[dict] = []
    for model, g in rows.groupby("model", sort=True):
        n_seeds = int(g["seed"].nunique())
        cubes = {m: score_cube(g, m, methods) for m in directions}
        ranks = {m: cell_ranks(oriented(cubes[m], h)) for m, h in directions.items()}
        base = dict(model=model, n_seeds=n_seeds)
        for metric, hib in directions.items():
            x = cubes[metric]
            for a, b in itertools.combinations(range(len(methods)), 2):
                both = ~np.isnan(x[a]) & ~np.isnan(x[b])
                d = x[a] - x[b]
                if matrices is not None:
                    matrices.append(d)
                pairs.append(dict(kind="method_pair", **base, method=f"{methods[a]} - {methods[b]}",
                                  metric=metric, **_estimate(d), higher_is_better=hib,
                                  method_a=methods[a], method_b=methods[b],
                                  mean_a=crossed_mean(np.where(both, x[a], np.nan)),
                                  mean_b=crossed_mean(np.where(both, x[b], np.nan)),
                                  p_wilcoxon=paired_wilcoxon_p(d), **seed_level(d)))
        for metric, hib in directions.items():
            r = ranks[metric]
            for j, m in enumerate(methods):
                out.append(dict(kind="rank", **base, method=m, metric=metric, **_estimate(r[j]),
                                higher_is_better=hib))
        for metric, hib in directions.items():
            r = ranks[metric]
            lo, hi = alpha_bootstrap_ci(r)
            out.append(dict(kind="alpha", **base, method="", metric=metric,
                            mean=krippendorff_alpha(r), ci_low=lo, ci_high=hi, n=_n_images(r),
                            n_cells=int((~np.isnan(r).all(axis=0)).sum()), higher_is_better=hib))
        mean_rank = {m: np.array([crossed_mean(ranks[m][j]) for j in range(len(methods))])
                     for m in directions}
        for m1, m2 in itertools.combinations(directions, 2):
            t = kendall_tau_b(oriented(cubes[m1], directions[m1]), oriented(cubes[m2], directions[m2]))
            r1, r2 = mean_rank[m1], mean_rank[m2]
            ok = np.isfinite(r1) & np.isfinite(r2)
            if ok.sum() >= 2 and len(np.unique(r1[ok])) > 1 and len(np.unique(r2[ok])) > 1:
                overall = float(stats.kendalltau(-r1[ok], -r2[ok]).statistic)
            else:
                overall = float("nan")
            out.append(dict(kind="tau", **base, method="", metric=m1, metric_b=m2, **_estimate(t),
                            tau_overall=overall))
    add_verdicts(pairs, lambda r, lo, hi, q: pair_verdict(r["method_a"], r["method_b"], lo, hi,
                                                           q, r["higher_is_better"]))
    df = pd.DataFrame(pairs + out)
    order = {k: i for i, k in enumerate(KINDS)}
    return df.sort_values("kind", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- formatting
