"""Confidence intervals and paired tests, checked against scipy and known answers."""
import numpy as np
import pytest
from scipy import stats

from lico_bench.report import bootstrap_ci, hierarchical_bootstrap_ci, wilcoxon_p


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    x = np.array([0.12, 0.55, 0.31, 0.78, 0.44, 0.29, 0.91, 0.05, 0.63, 0.37])
    lo, hi = bootstrap_ci(x, seed=3)
    ref = stats.bootstrap((x,), np.mean, n_resamples=2000, method="percentile",
                          rng=np.random.default_rng(3)).confidence_interval
    assert (lo, hi) == (ref.low, ref.high)
    assert lo < x.mean() < hi


def test_bootstrap_ci_known_cases():
    assert bootstrap_ci([0.7] * 20) == (0.7, 0.7)           # constant: the value itself
    assert all(np.isnan(bootstrap_ci([0.5])))               # one value: undefined
    assert bootstrap_ci([1.0, np.nan, 1.0]) == (1.0, 1.0)   # NaN rows are skipped
    # large normal sample: close to the normal-theory interval mean +- 1.96 sd / sqrt(n)
    x = np.random.default_rng(0).normal(0.3, 0.1, size=4000)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=2e-4) and hi == pytest.approx(x.mean() + half, abs=2e-4)


def test_hierarchical_bootstrap_widens_with_seed_variation():
    rng = np.random.default_rng(1)
    same = [rng.normal(0.5, 0.05, 200) for _ in range(3)]
    apart = [rng.normal(m, 0.05, 200) for m in (0.3, 0.5, 0.7)]
    w_same = np.diff(hierarchical_bootstrap_ci(same))[0]
    w_apart = np.diff(hierarchical_bootstrap_ci(apart))[0]
    assert w_apart > 5 * w_same
    lo, hi = hierarchical_bootstrap_ci(apart)
    assert lo < 0.5 < hi
    # one group falls back to the plain bootstrap
    assert hierarchical_bootstrap_ci([same[0]]) == bootstrap_ci(same[0])


def test_wilcoxon_matches_scipy_and_handles_ties_at_zero():
    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, -0.02, 0.33, 0.12, 0.0, 0.21])
    assert wilcoxon_p(d) == stats.wilcoxon(d[d != 0]).pvalue
    # exact small-sample value: 5 positive differences, no ties -> p = 2 / 2^5
    assert wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
