"""Method-vs-method tables, ranks and metric reliability (lico_bench.report.methods) on
hand-made rows whose answers are known: hand-computed tiny cases, cases known by construction
(a method better on every image, metrics that order methods identically, random scores), and
differential checks against scipy.stats.kendalltau, scipy's Wilcoxon, a Holm loop and a plain
loop of Krippendorff's ordinal alpha written here."""
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lico_bench.report.methods import (alpha_bootstrap_ci, build_method_report, cell_ranks,
                                       compute_method_summary, kendall_tau_b, krippendorff_alpha,
                                       method_order, pair_verdict, score_cube)
from lico_bench.report.stats import crossed_bootstrap_ci

from tests.tolerance import EPS64

from .conftest import close64, tol64

METHODS = ["gradcam", "gradcampp", "scorecam", "rise"]
DIRS = {"insertion": True, "deletion": False, "overall": True}


def make_rows(scores, model="baseline_r18", ids=None):
    """scores: method -> metric -> [S, N] array; one row per (method, seed, image), shuffled."""
    recs = []
    for method, ms in scores.items():
        S, N = next(iter(ms.values())).shape
        for s in range(S):
            for i in range(N):
                r = dict(dataset="shapes", model=model, method=method, seed=10 + s,
                         image_id=int(ids[i]) if ids is not None else i, map_status="ok",
                         label=0, pred=0)
                r.update({m: float(v[s, i]) for m, v in ms.items()})
                if all(np.isnan(v) for k, v in r.items() if k in ms):
                    continue
                recs.append(r)
    df = pd.DataFrame.from_records(recs)
    return df.iloc[np.random.default_rng(1).permutation(len(df))].reset_index(drop=True)


def pick(ms, kind, **kw):
    g = ms[ms["kind"] == kind]
    for k, v in kw.items():
        g = g[g[k] == v]
    assert len(g) == 1, (kind, kw, len(g))
    return g.iloc[0]


# ----------------------------------------------------------------------------- building blocks
def test_cell_ranks_by_hand():
    # 3 methods x 3 cells: distinct scores; all tied; a pair tied at the top; one NaN cell
    x = np.array([[3.0, 1.0, 5.0, 1.0],
                  [1.0, 1.0, 5.0, np.nan],
                  [2.0, 1.0, 4.0, 2.0]])
    r = cell_ranks(x)
    np.testing.assert_array_equal(r[:, 0], [1, 3, 2])
    np.testing.assert_array_equal(r[:, 1], [2, 2, 2])
    np.testing.assert_array_equal(r[:, 2], [1.5, 1.5, 3])
    assert np.isnan(r[:, 3]).all()
    # lower is better: negate first (deletion), the order flips
    from lico_bench.report.methods import oriented
    np.testing.assert_array_equal(cell_ranks(oriented(x[:, :1], False))[:, 0], [3, 1, 2])


def test_kendall_tau_b_by_hand_and_against_scipy():
    # concordant pairs (0,1), (0,2); discordant (1,2): (2 - 1) / 3
    # (tau-b from exact integer pair counts: a product, a sqrt and a division, 3 roundings of
    # values <= 1 on each side)
    assert close64(kendall_tau_b(np.array([3.0, 2, 1]), np.array([3.0, 1, 2])), 1 / 3, 3, 1.0)
    # a tie in x: 2 of 3 pairs untied in x, 3 in y, both untied pairs concordant: 2 / sqrt(6)
    assert close64(kendall_tau_b(np.array([1.0, 1, 2]), np.array([1.0, 2, 3])), 2 / np.sqrt(6),
                   3, 1.0)
    assert np.isnan(kendall_tau_b(np.array([1.0, 1, 1]), np.array([1.0, 2, 3])))
    assert np.isnan(kendall_tau_b(np.array([1.0, np.nan, 1]), np.array([1.0, 2, 3])))
    # vectorised over cells vs scipy.stats.kendalltau (tau-b) one cell at a time, with ties
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (4, 300)).astype(float)
    y = rng.integers(0, 4, (4, 300)).astype(float)
    got = kendall_tau_b(x, y)
    for c in range(300):
        if len(np.unique(x[:, c])) < 2 or len(np.unique(y[:, c])) < 2:
            assert np.isnan(got[c])
        else:
            # exact pair counts on both sides, then <= 4 roundings (products, sqrt, division)
            assert close64(got[c], stats.kendalltau(x[:, c], y[:, c]).statistic, 4, 1.0)


def alpha_loop(ranks):
    """Krippendorff's ordinal alpha as a plain loop: units = methods (axis 0), raters = cells.

    Coincidences o_ck = sum over units u of (pairs of values c, k from different raters) /
    (m_u - 1); n_c = sum_k o_ck; delta^2_ck = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2 (values in
    sorted order); alpha = 1 - D_o / D_e, D_o = sum o_ck delta^2 / n, D_e = sum n_c n_k delta^2
    / (n (n - 1)) (Krippendorff 2011).
    """
    units = [[v for v in np.ravel(u) if not np.isnan(v)] for u in ranks]
    values = sorted({v for u in units for v in u})
    idx = {v: i for i, v in enumerate(values)}
    V = len(values)
    o = [[0.0] * V for _ in range(V)]
    for u in units:
        m = len(u)
        if m < 2:
            continue
        for a in range(m):
            for b in range(m):
                if a != b:
                    o[idx[u[a]]][idx[u[b]]] += 1.0 / (m - 1)
    nc = [sum(row) for row in o]
    n = sum(nc)

    def d2(c, k):
        lo, hi = min(c, k), max(c, k)
        return (sum(nc[lo:hi + 1]) - (nc[c] + nc[k]) / 2) ** 2

    do = sum(o[c][k] * d2(c, k) for c in range(V) for k in range(V)) / n
    de = sum(nc[c] * nc[k] * d2(c, k) for c in range(V) for k in range(V)) / (n * (n - 1))
    return 1 - do / de


def test_krippendorff_alpha_by_hand_and_loop():
    # two images rank two methods oppositely. Coincidences o_12 = o_21 = 2, n_1 = n_2 = 2,
    # n = 4; delta^2_12 = (2 + 2 - (2 + 2)/2)^2 = 4; D_o = (2*4 + 2*4)/4 = 4;
    # D_e = (2*2*4 + 2*2*4)/12 = 8/3; alpha = 1 - 4/(8/3) = -0.5
    opposite = np.array([[1.0, 2.0], [2.0, 1.0]]).reshape(2, 1, 2)     # methods x seeds x images
    # vs the exact -0.5: sums of 4 coincidence terms, D_o / D_e = 1.5 and 1 - 1.5: depth 3,
    # magnitude 1 + 1.5
    assert close64(krippendorff_alpha(opposite), -0.5, 4, 2.5, depth=3, computations=1)
    assert close64(alpha_loop(opposite), -0.5, 4, 2.5, depth=3, computations=1)
    # every image ranks the methods alike -> 1
    same = np.tile(np.array([1.0, 3.0, 2.0, 4.0])[:, None, None], (1, 2, 7))
    assert krippendorff_alpha(same) == 1.0
    # everything tied: no disagreement to expect, alpha undefined
    assert np.isnan(krippendorff_alpha(np.full((3, 1, 5), 2.0)))
    # random ranks with ties and missing cells: the library (via our layout) == the loop
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (4, 2, 25)).astype(float)
    x[:, 1, 3] = np.nan
    r = cell_ranks(x)
    assert krippendorff_alpha(r) == pytest.approx(alpha_loop(r), abs=_alpha_tol(r, alpha_loop(r)))


def _alpha_tol(r, alpha):
    """Two float64 computations of Krippendorff's alpha on ranks ``r`` [units, raters...]:
    the coincidences sum the pairs of every unit (n_terms = sum m_u (m_u - 1)), then n_c, the
    cumulative sums of delta, D_o and D_e (depth 4) of non-negative terms, so each of D_o,
    D_e is off by <= gamma * itself; alpha = 1 - D_o / D_e: magnitude 1 + 2 |D_o / D_e|."""
    m = (~np.isnan(r.reshape(r.shape[0], -1))).sum(1)
    return tol64(int((m * (m - 1)).sum()), 1 + 2 * abs(1 - alpha), depth=4)


def test_alpha_bootstrap_ci_draws():
    """Same seed, same interval; the resamples are the crossed draws (checked by a loop)."""
    rng = np.random.default_rng(4)
    r = cell_ranks(rng.normal(size=(4, 2, 30)) + np.arange(4)[:, None, None] * 0.5)
    lo, hi = alpha_bootstrap_ci(r, seed=7, n_resamples=200)
    assert (lo, hi) == alpha_bootstrap_ci(r, seed=7, n_resamples=200)
    g = np.random.default_rng(7)
    images = g.integers(0, 30, (200, 30))
    seeds = g.integers(0, 2, (200, 2))
    vals = [alpha_loop(r[:, seeds[b]][:, :, images[b]]) for b in range(200)]
    # each resample's alpha within _alpha_tol; a quantile is 1-Lipschitz in the values (max
    # norm) and interpolates with 3 roundings of values <= 1
    tol = max(_alpha_tol(r, v) for v in vals) + tol64(3, 1.0)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(vals, [0.025, 0.975])), abs=tol)
    assert lo < krippendorff_alpha(r) < hi


def test_pair_verdict_names_methods():
    assert pair_verdict("a", "b", 0.1, 0.2, 0.01, True) == "a better"
    assert pair_verdict("a", "b", 0.1, 0.2, 0.01, False) == "b better"      # deletion: A higher
    assert pair_verdict("a", "b", -0.2, -0.1, 0.01, True) == "b better"
    assert pair_verdict("a", "b", 0.1, 0.2, 0.06, True) == "no clear difference"
    assert pair_verdict("a", "b", 0.0, 0.2, 0.001, True) == "no clear difference"


def test_method_order_and_cube():
    rows = make_rows({m: {"insertion": np.arange(6.0).reshape(2, 3) + j}
                      for j, m in enumerate(["rise", "gradcam"])}, ids=[9, 2, 5])
    assert method_order(rows, {"spec": {"methods": ["rise", "scorecam", "gradcam"]}}) == ["rise", "gradcam"]
    assert method_order(rows) == ["gradcam", "rise"]
    x = score_cube(rows, "insertion", ["gradcam", "rise"])
    # images sorted by id (2, 5, 9): columns of ids [9, 2, 5] -> order 1, 2, 0
    np.testing.assert_array_equal(x[1], np.arange(6.0).reshape(2, 3)[:, [1, 2, 0]])
    np.testing.assert_array_equal(x[0], x[1] + 1)


# ----------------------------------------------------------------------------- known answers
def _scores_best_first(rng, S=2, N=30):
    """rise beats every other method on every image and metric; the others are noise."""
    out = {}
    for m in METHODS[:3]:
        out[m] = {"insertion": rng.uniform(0.3, 0.7, (S, N)), "deletion": rng.uniform(0.2, 0.5, (S, N))}
    out["rise"] = {"insertion": np.max([v["insertion"] for v in out.values()], axis=0) + 0.05,
                   "deletion": np.min([v["deletion"] for v in out.values()], axis=0) - 0.05}
    return out


def test_method_better_on_every_image_ranks_first():
    rng = np.random.default_rng(0)
    scores = _scores_best_first(rng)
    rows = make_rows(scores)
    manifest = {"spec": {"methods": METHODS}}
    ms = compute_method_summary(rows, DIRS, manifest)
    for metric in DIRS:
        best = pick(ms, "rank", method="rise", metric=metric)
        assert (best["mean"], best["ci_low"], best["ci_high"]) == (1.0, 1.0, 1.0)
        for m in METHODS[:3]:
            other = pick(ms, "rank", method=m, metric=metric)
            assert other["ci_low"] > best["ci_high"]                 # the CI excludes rank 1
            assert other["mean"] >= 2
        # mean ranks of the four methods sum to 1 + 2 + 3 + 4 in every cell
        total = sum(pick(ms, "rank", method=m, metric=metric)["mean"] for m in METHODS)
        # vs the exact 10: each mean rank sums exact half-integers and divides once, then 4
        # terms of total 10 are added: depth 2
        assert close64(total, 10.0, 4, 10.0, depth=2, computations=1)
        for m in METHODS[:3]:
            p = pick(ms, "method_pair", method=f"{m} - rise", metric=metric)
            assert p["verdict"] == "rise better"
    # the pair rows against plain computations: mean of A - B, Wilcoxon on per-image means
    # over seeds, Holm by a loop over every pair row
    pairs = ms[ms["kind"] == "method_pair"]
    assert len(pairs) == 6 * len(DIRS)
    assert list(dict.fromkeys(pairs["method"])) == [f"{a} - {b}" for a, b in itertools.combinations(METHODS, 2)]
    for _, p in pairs.iterrows():
        a, b, metric = p["method_a"], p["method_b"], p["metric"]
        va = scores[a]["insertion"] - scores[a]["deletion"] if metric == "overall" else scores[a][metric]
        vb = scores[b]["insertion"] - scores[b]["deletion"] if metric == "overall" else scores[b][metric]
        d = va - vb
        # Float64 means of the S N = 60 cells (the summary may form the differences in another
        # order: <= 3 subtractions, then per-seed means and their mean: depth 3); magnitude:
        # the largest cell's |terms| (a mean's sum |x_i| / n is at most that).
        parts = [scores[m][k] for m in (a, b)
                 for k in (("insertion", "deletion") if metric == "overall" else (metric,))]
        mag = np.sum(np.abs(parts), axis=0).max()
        assert close64(p["mean"], d.mean(), 60 + 3, mag, depth=3)
        assert close64(p["mean_a"] - p["mean_b"], p["mean"], 60 + 3, mag, depth=3)
        # 30 images: more than EXACT_MAX_N = 25, the normal approximation. rise = max + 0.05,
        # so an image where A is the max under both seeds has d = -0.05 exactly in the
        # intended values, but m - (m + 0.05) in float differs by image in the last bits:
        # rounded to 1e-12 (a grid independent of the report's 1e-9 x max|d|) they tie again.
        # z comes from integer rank sums (exact on both sides); then a sqrt, a division and
        # erfc, each within a few ulps, amplified by erfc's conditioning (2 z^2 < 32 at
        # |z| < 4): 64 float64 eps relative.
        ref = stats.wilcoxon(np.round(d.mean(axis=0), 12), method="asymptotic").pvalue
        assert p["p_wilcoxon"] == pytest.approx(ref, rel=64 * EPS64)
        # every resampled statistic is such a mean; the quantiles are 1-Lipschitz, plus the
        # interpolation's 3 roundings
        assert close64((p["ci_low"], p["ci_high"]), crossed_bootstrap_ci(d), 60 + 3 + 3, mag,
                       depth=4)
        assert p["n"] == 30 and p["n_seeds"] == 2
    p = list(pairs["p_wilcoxon"])
    order = sorted(range(len(p)), key=lambda k: p[k])
    running, holm_loop = 0.0, [0.0] * len(p)
    for j, k in enumerate(order):
        running = max(running, min(1.0, (len(p) - j) * p[k]))
        holm_loop[k] = running
    # (m - j) p_(j) rounded once on both sides, then max / min: exact
    assert list(pairs["p_holm"]) == holm_loop


def test_identical_orderings_agree_and_alpha_is_one():
    """Insertion and deletion order the methods identically on every image -> tau = 1; every
    image orders them the same way -> alpha = 1; a metric that reverses the order -> tau = -1."""
    rng = np.random.default_rng(2)
    S, N = 1, 40
    quality = np.array([0.2, 0.1, 0.4, 0.3])              # scorecam > rise > gradcam > gradcampp
    scores = {}
    for j, m in enumerate(METHODS):
        base = 0.5 + quality[j] + rng.uniform(0, 0.02, (S, N))   # noise far smaller than the gaps
        scores[m] = {"insertion": base, "deletion": 1.0 - base ** 2,        # lower is better
                     "pointing_game": -base}                                  # reversed on purpose
    dirs = {"insertion": True, "deletion": False, "pointing_game": True}
    ms = compute_method_summary(make_rows(scores), dirs, {"spec": {"methods": METHODS}})
    t = pick(ms, "tau", metric="insertion", metric_b="deletion")
    assert (t["mean"], t["ci_low"], t["ci_high"], t["tau_overall"]) == (1.0, 1.0, 1.0, 1.0)
    assert t["n"] == N
    rev = pick(ms, "tau", metric="insertion", metric_b="pointing_game")
    assert (rev["mean"], rev["tau_overall"]) == (-1.0, -1.0)
    for metric in dirs:
        a = pick(ms, "alpha", metric=metric)
        assert (a["mean"], a["ci_low"], a["ci_high"]) == (1.0, 1.0, 1.0)
        assert a["n_cells"] == N
    expected = {"scorecam": 1, "rise": 2, "gradcam": 3, "gradcampp": 4}
    for m, rank in expected.items():
        assert pick(ms, "rank", method=m, metric="insertion")["mean"] == rank
        assert pick(ms, "rank", method=m, metric="pointing_game")["mean"] == 5 - rank


def test_random_scores_alpha_near_zero_and_no_agreement():
    rng = np.random.default_rng(5)
    S, N = 1, 400
    scores = {m: {"insertion": rng.random((S, N)), "deletion": rng.random((S, N))} for m in METHODS}
    dirs = {"insertion": True, "deletion": False}
    ms = compute_method_summary(make_rows(scores), dirs, {"spec": {"methods": METHODS}})
    for metric in dirs:
        a = pick(ms, "alpha", metric=metric)
        assert abs(a["mean"]) < 0.03 and a["ci_low"] < 0 < a["ci_high"], a
        for m in METHODS:                                # no method separates: ranks near 2.5
            r = pick(ms, "rank", method=m, metric=metric)
            assert r["ci_low"] < 2.5 < r["ci_high"] or abs(r["mean"] - 2.5) < 0.2
    t = pick(ms, "tau", metric="insertion", metric_b="deletion")
    # independent metrics: E tau = 0, Var tau = 2(2k + 5) / (9k(k - 1)) for k = 4 objects
    # (Kendall 1938); the mean over N images lies within 4 standard errors
    se = np.sqrt(2 * (2 * 4 + 5) / (9 * 4 * 3) / N)
    assert abs(t["mean"]) < 4 * se and t["ci_low"] < t["mean"] < t["ci_high"]
    # a plain check of the per-image mean tau: scipy over every image
    taus = [stats.kendalltau([scores[m]["insertion"][0, i] for m in METHODS],
                             [-scores[m]["deletion"][0, i] for m in METHODS]).statistic
            for i in range(N)]
    # N = 400 taus (each within 4 roundings of a value <= 1, as above) averaged: n_terms
    # 400, magnitude 1, depth 2
    assert close64(t["mean"], np.mean(taus), N, 1.0, depth=2)
    # same seed, same numbers
    again = compute_method_summary(make_rows(scores), dirs, {"spec": {"methods": METHODS}})
    pd.testing.assert_frame_equal(ms, again)


def test_missing_cells_and_ties():
    """A method missing an image drops that cell for every method's rank; ties share ranks;
    the pair rows use the cells both methods have."""
    ins = {"a": np.array([[0.9, 0.5, 0.5, 0.1]]), "b": np.array([[0.1, 0.5, np.nan, 0.9]]),
           "c": np.array([[0.5, 0.5, 0.3, 0.5]])}
    rows = make_rows({m: {"insertion": v} for m, v in ins.items()})
    ms = compute_method_summary(rows, {"insertion": True}, {"spec": {"methods": ["a", "b", "c"]}})
    # cells 0, 1, 3 ranked (cell 2 lacks b): a: 1, 2, 3; b: 3, 2, 1; c: 2, 2, 2
    for m, mean in (("a", 2.0), ("b", 2.0), ("c", 2.0)):
        r = pick(ms, "rank", method=m, metric="insertion")
        assert r["mean"] == mean and r["n"] == 3
    p = pick(ms, "method_pair", method="a - b", metric="insertion")
    # means of 3 differences of values <= 0.9 (each a rounding) vs the decimal values
    # (rounded themselves): n_terms 3, magnitude 3 * 1.8 / 3, depth 2
    assert close64(p["mean"], np.mean([0.8, 0.0, -0.8]), 3, 1.8, depth=2) and p["n"] == 3
    assert close64(p["mean_a"], 0.5, 3, 0.9, depth=2) and close64(p["mean_b"], 0.5, 3, 0.9, depth=2)
    assert pick(ms, "method_pair", method="a - c", metric="insertion")["n"] == 4
    # alpha by the loop on the same ranks (c tied in every cell)
    r = np.array([[1, 2, np.nan, 3], [3, 2, np.nan, 1], [2, 2, np.nan, 2]], float).reshape(3, 1, 4)
    assert pick(ms, "alpha", metric="insertion")["mean"] == pytest.approx(
        alpha_loop(r), abs=_alpha_tol(r, alpha_loop(r)))


def test_one_method_gives_nothing():
    rows = make_rows({"gradcam": {"insertion": np.ones((1, 3))}})
    assert compute_method_summary(rows, {"insertion": True}).empty


# ----------------------------------------------------------------------------- report files
def test_report_files(tmp_path):
    from lico_bench.report.tables import build_report

    res = tmp_path / "res"
    (res / "rows").mkdir(parents=True)
    manifest = {"format": 1,
                "spec": {"dataset": "shapes", "split": "test", "n_images": 30, "seeds": [10, 11],
                         "methods": METHODS, "models": ["baseline_r18", "lico_r18"]},
                "metrics": {"insertion": {"higher_is_better": True},
                            "deletion": {"higher_is_better": False}}}
    (res / "manifest.json").write_text(json.dumps(manifest))
    rng = np.random.default_rng(0)
    for model in ("baseline_r18", "lico_r18"):
        df = make_rows(_scores_best_first(rng), model=model)
        for (method, seed), g in df.groupby(["method", "seed"]):
            (res / "rows" / f"shapes__{model}__{method}__seed{seed}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in g.to_dict("records")))
    paths = build_report(res)
    assert {"csv", "md", "tex", "methods_csv", "methods_md", "methods_tex"} <= set(paths)
    csv = pd.read_csv(res / "methods.csv")
    assert set(csv["kind"]) == {"method_pair", "rank", "alpha", "tau"}
    assert len(csv[csv["kind"] == "method_pair"]) == 2 * 6 * 3          # models x pairs x metrics
    assert len(csv[csv["kind"] == "tau"]) == 2 * 3                      # models x metric pairs
    md = (res / "methods.md").read_text()
    for model in ("baseline_r18", "lico_r18"):
        assert f"## {model}" in md
    assert "Holm over the 36 method comparisons" in md
    assert "seeds and images resampled crossed" in md
    # one rank table per model: 4 methods, then alpha and its reading
    lines = md.splitlines()
    start = lines.index("| method                        | Insertion ↑       | Deletion ↓        | Overall (ins-del) ↑ |")
    assert [l.split("|")[1].strip() for l in lines[start + 2:start + 8]] == \
        METHODS + ["Krippendorff α (ordinal) [CI]", "images rank methods alike?"]
    assert lines[start + 5].split("|")[2].strip() == "1.00 [1.00, 1.00]"     # rise
    pair_rows = [l for l in lines if l.startswith("| gradcam − rise")]
    assert len(pair_rows) == 2 and all(l.count("rise") == 4 for l in pair_rows)  # named 3 times
    tex = (res / "methods.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 6 and r"$\alpha$" in tex
    # same rows, same files
    first = (res / "methods.csv").read_text()
    build_method_report(res)
    assert (res / "methods.csv").read_text() == first


def test_seed_copies_give_the_one_seed_pairs_and_ranks():
    """Three identical seeds carry no new information: pair and rank rows equal one seed's
    exactly (the crossed bootstrap's contract); alpha counts every (seed, image) cell as a
    rater, so it is only checked to stay a number in [-1, 1]."""
    rng = np.random.default_rng(8)
    one = {m: {"insertion": rng.random((1, 20)), "deletion": rng.random((1, 20))} for m in METHODS}
    three = {m: {k: np.repeat(v, 3, axis=0) for k, v in d.items()} for m, d in one.items()}
    dirs = {"insertion": True, "deletion": False}
    a = compute_method_summary(make_rows(one), dirs, {"spec": {"methods": METHODS}})
    b = compute_method_summary(make_rows(three), dirs, {"spec": {"methods": METHODS}})
    for kind in ("method_pair", "rank", "tau"):
        x, y = a[a["kind"] == kind], b[b["kind"] == kind]
        for col in ("mean", "ci_low", "ci_high"):
            np.testing.assert_array_equal(x[col].to_numpy(), y[col].to_numpy(), err_msg=(kind, col))
    np.testing.assert_array_equal(a.loc[a["kind"] == "method_pair", "p_wilcoxon"].to_numpy(),
                                  b.loc[b["kind"] == "method_pair", "p_wilcoxon"].to_numpy())
    assert (b["n_seeds"] == 3).all() and (a["n_seeds"] == 1).all()
    al = b[b["kind"] == "alpha"]["mean"]
    assert ((al >= -1) & (al <= 1)).all()
