"""compute_summary and the report files on hand-built rows with 1-3 seeds whose answers are
known: every column checked against a computation written here (plain means, scipy's
Wilcoxon, a Holm loop, the crossed bootstrap on a matrix laid out here)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lico_bench.errors import UserError
from lico_bench.report.figures import model_groups
from lico_bench.report.stats import crossed_bootstrap_ci, holm
from lico_bench.report.tables import (build_report, compute_summary, load_manifest, load_rows,
                                      metric_directions, pair_models, to_markdown)
from tests.tolerance import EPS64

from .conftest import close64, signed_ranks_stable, tol64

LICO, BASE, NONE = "LICO better", "baseline better", "no clear difference"
# image ids out of order, and rows shuffled below: the tables must align images by id
IDS = np.array([7, 2, 11, 0, 5, 9, 3, 1, 10, 4, 8, 6])
COLS = np.argsort(IDS)          # column order of the seeds x images matrix (by image id)


def add_rows(out, model, method, seeds, metrics, label=None, pred=None, status=None, skip=()):
    """One row per (seed, image); metrics: name -> [S, N] array; skip: (seed index, image index)."""
    S, N = next(iter(metrics.values())).shape
    for si, seed in enumerate(seeds):
        for i in range(N):
            if (si, i) in skip:
                continue
            r = dict(dataset="shapes", model=model, method=method, seed=seed, image_id=int(IDS[i]),
                     label=0 if label is None else int(label[si, i]),
                     pred=0 if pred is None else int(pred[si, i]),
                     map_status="ok" if status is None else status[si][i])
            r.update({m: float(v[si, i]) for m, v in metrics.items()})
            out.append(r)
    return out


def frame(recs, seed=0):
    df = pd.DataFrame.from_records(recs)
    return df.iloc[np.random.default_rng(seed).permutation(len(df))].reset_index(drop=True)


def plain_mean(x):
    """Mean over seeds of each seed's mean over its non-NaN images, as a loop."""
    means = [np.mean(row[~np.isnan(row)]) for row in x if (~np.isnan(row)).any()]
    return sum(means) / len(means)


def mean_close(got, want, x):
    """Two float64 computations of the crossed mean of ``x`` (seeds x images): per-seed means
    of <= N terms, their mean over S, the anchored mean's shift and return (depth 4);
    magnitude: the largest |cell| (a mean's sum |x_i| / n is at most that)."""
    return close64(got, want, x.shape[1], np.nanmax(np.abs(x)), depth=4)


def holm_loop(p):
    order = sorted(range(len(p)), key=lambda k: p[k])
    out, running = [0.0] * len(p), 0.0
    for j, k in enumerate(order):
        running = max(running, min(1.0, (len(p) - j) * p[k]))
        out[k] = running
    return out


def row(summary, kind, model, method, metric):
    r = summary[(summary["kind"] == kind) & (summary["model"] == model)
                & (summary["method"] == method) & (summary["metric"] == metric)]
    assert len(r) == 1, (kind, model, method, metric)
    return r.iloc[0]


# ----------------------------------------------------------------------------- three seeds
S, N = 3, 12
DIRS = {"insertion": True, "deletion": False, "overall": True, "pointing_game": True}


@pytest.fixture(scope="module")
def three_seeds():
    """baseline_r18 and lico_r18, 3 seeds x 12 images, one method. LICO: insertion +0.25 and
    deletion -0.25 (LICO better on both, whatever the noise), the same pointing game as the
    baseline (no difference). One LICO row is missing and one LICO insertion is NaN."""
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.1, (1, N))
    seed_fx = np.array([[0.0], [0.03], [-0.02]])
    base = {"insertion": 0.5 + image + seed_fx + rng.normal(0, 0.02, (S, N)),
            "deletion": 0.4 - image + rng.normal(0, 0.02, (S, N)),
            "pointing_game": (rng.random((S, N)) < 0.6).astype(float)}
    lico = {"insertion": base["insertion"] + 0.25 + rng.normal(0, 0.03, (S, N)),
            "deletion": base["deletion"] - 0.25 + rng.normal(0, 0.03, (S, N)),
            "pointing_game": base["pointing_game"].copy()}
    lico["insertion"][1, 4] = np.nan
    label = np.zeros((S, N), int)
    # baseline right on 10, 9, 12 images of the seeds; LICO on 12, 12, 11
    pred_b = np.zeros((S, N), int)
    pred_b[0, :2] = 1
    pred_b[1, 5:8] = 3
    pred_l = np.zeros((S, N), int)
    pred_l[2, 0] = 4
    status_b = [["ok"] * N, ["ok"] * (N - 1) + ["constant"], ["ok"] * N]
    status_l = [["ok"] * N, ["ok"] * 4 + ["nan"] + ["ok"] * (N - 5), ["zero"] + ["ok"] * (N - 1)]
    recs = add_rows([], "baseline_r18", "gradcam", [0, 1, 2], base, label, pred_b, status_b)
    recs = add_rows(recs, "lico_r18", "gradcam", [0, 1, 2], lico, label, pred_l, status_l,
                    skip={(2, 6)})
    rows = frame(recs)
    lico_m = {k: v.copy() for k, v in lico.items()}
    for v in lico_m.values():
        v[2, 6] = np.nan                       # the missing row, as the matrix sees it
    mats = {"baseline_r18": {k: v[:, COLS] for k, v in base.items()},
            "lico_r18": {k: v[:, COLS] for k, v in lico_m.items()}}
    for m in mats.values():
        m["overall"] = m["insertion"] - m["deletion"]
    acc = {"baseline_r18": (pred_b == label).astype(float)[:, COLS],
           "lico_r18": (pred_l == label).astype(float)[:, COLS]}
    return rows, mats, acc, compute_summary(rows, DIRS)


def test_score_rows_three_seeds(three_seeds):
    rows, mats, _, summary = three_seeds
    assert len(summary[summary["kind"] == "score"]) == 2 * len(DIRS)
    for model, by_metric in mats.items():
        for metric, x in by_metric.items():
            r = row(summary, "score", model, "gradcam", metric)
            assert mean_close(r["mean"], plain_mean(x), x)
            assert (r["ci_low"], r["ci_high"]) == crossed_bootstrap_ci(x)
            assert r["ci_low"] < r["mean"] < r["ci_high"] or metric == "pointing_game"
            assert r["n"] == N and r["n_seeds"] == S
            assert bool(r["higher_is_better"]) == DIRS[metric]
    assert (summary.loc[(summary["kind"] == "score") & (summary["model"] == "baseline_r18"), "n_flagged"] == 1).all()
    assert (summary.loc[(summary["kind"] == "score") & (summary["model"] == "lico_r18"), "n_flagged"] == 2).all()


def test_accuracy_rows_three_seeds(three_seeds):
    _, _, acc, summary = three_seeds
    b = row(summary, "accuracy", "baseline_r18", "", "accuracy")
    assert mean_close(b["mean"], (10 + 9 + 12) / 36, acc["baseline_r18"])   # hand count
    assert (b["ci_low"], b["ci_high"]) == crossed_bootstrap_ci(acc["baseline_r18"])
    lico = row(summary, "accuracy", "lico_r18", "", "accuracy")
    # the missing LICO row (seed 2) leaves 11 images there, one of them wrong
    assert mean_close(lico["mean"], (12 / 12 + 12 / 12 + 10 / 11) / 3, acc["lico_r18"])
    assert b["n"] == lico["n"] == N and b["n_seeds"] == 3


def test_paired_rows_three_seeds(three_seeds):
    _, mats, _, summary = three_seeds
    paired = summary[summary["kind"] == "paired"]
    assert list(paired["metric"]) == list(DIRS) and set(paired["model"]) == {"lico_r18 - baseline_r18"}
    for metric in DIRS:
        r = row(summary, "paired", "lico_r18 - baseline_r18", "gradcam", metric)
        lico, base = mats["lico_r18"][metric], mats["baseline_r18"][metric]
        d = lico - base
        both = ~np.isnan(d)
        # (the cells' differences: one more rounding of |lico| + |base|)
        mag = np.nanmax(np.abs(lico) + np.abs(base))
        assert close64(r["mean"], plain_mean(d), N + 1, mag, depth=4)
        assert (r["ci_low"], r["ci_high"]) == crossed_bootstrap_ci(d)
        # baseline / LICO columns over the cells where both exist: they subtract to the mean
        assert mean_close(r["baseline"], plain_mean(np.where(both, base, np.nan)), base)
        assert mean_close(r["lico"], plain_mean(np.where(both, lico, np.nan)), lico)
        # three means (each within the bound above) and one subtraction
        assert close64(r["lico"] - r["baseline"], r["mean"], N + 1, 3 * mag, depth=5)
        # the test is over the 12 images (differences averaged over the seeds), not 36 cells
        per_image = np.array([np.mean(c[~np.isnan(c)]) for c in d.T])
        nz = per_image[per_image != 0]
        ref = stats.wilcoxon(nz).pvalue if len(nz) else 1.0
        # Wilcoxon's p is a function of the signs and positive rank sum: exact when rounding
        # (means over S seeds of differences: n_terms S + 1, depth 2) cannot move them
        assert signed_ranks_stable(nz, tol64(S + 1, mag, depth=2))
        assert r["p_wilcoxon"] == ref
        assert r["n"] == N and r["n_seeds"] == S
    # (m - j) p_(j) rounded once on both sides, then max / min: exact
    assert list(paired["p_holm"]) == holm_loop(list(paired["p_wilcoxon"]))
    verdicts = dict(zip(paired["metric"], paired["verdict"]))
    # deletion is lower-is-better: LICO's lower deletion is a negative difference = LICO better
    assert row(summary, "paired", "lico_r18 - baseline_r18", "gradcam", "deletion")["ci_high"] < 0
    assert verdicts == {"insertion": LICO, "deletion": LICO, "overall": LICO, "pointing_game": NONE}
    pg = row(summary, "paired", "lico_r18 - baseline_r18", "gradcam", "pointing_game")
    assert (pg["mean"], pg["ci_low"], pg["ci_high"], pg["p_wilcoxon"]) == (0.0, 0.0, 0.0, 1.0)



def test_paired_rows_count_the_pairs_with_a_flag_on_either_side():
    """A paired row's n_flagged (compute_summary's docstring): the (seed, image) pairs of the
    comparison where the LICO map, the baseline map or both were flagged; a flagged map
    with no partner row is no pair. Score rows count each model's own flagged rows."""
    n_img = 6
    ok = lambda: [["ok"] * n_img for _ in range(2)]                  # noqa: E731  [seed][image]
    status_b, status_l = ok(), ok()
    only_base, both, only_lico, unpaired = (0, 1), (1, 3), (1, 4), (0, 5)
    for si, i in (only_base, both):
        status_b[si][i] = "constant"
    for si, i in (both, only_lico, unpaired):
        status_l[si][i] = "zero"
    ins = {"insertion": np.random.default_rng(3).random((2, n_img))}
    recs = add_rows([], "baseline_r18", "gradcam", [0, 1], ins, status=status_b, skip={unpaired})
    recs = add_rows(recs, "lico_r18", "gradcam", [0, 1], ins, status=status_l)
    s = compute_summary(frame(recs), {"insertion": True})
    flagged_b = {(si, i) for si in range(2) for i in range(n_img) if status_b[si][i] != "ok"}
    flagged_l = {(si, i) for si in range(2) for i in range(n_img) if status_l[si][i] != "ok"}
    assert row(s, "score", "baseline_r18", "gradcam", "insertion")["n_flagged"] == len(flagged_b)
    assert row(s, "score", "lico_r18", "gradcam", "insertion")["n_flagged"] == len(flagged_l)
    pairs = (flagged_b | flagged_l) - {unpaired}                      # the union, paired cells only
    assert row(s, "paired", "lico_r18 - baseline_r18", "gradcam", "insertion")["n_flagged"] == len(pairs)


def test_baseline_better_direction_for_both_metric_kinds():
    """Swap the roles: the model called LICO is now the worse one on both metrics."""
    rng = np.random.default_rng(5)
    good = {"insertion": 0.8 + rng.normal(0, 0.05, (2, N)), "deletion": 0.1 + rng.normal(0, 0.03, (2, N))}
    bad = {"insertion": good["insertion"] - 0.3, "deletion": good["deletion"] + 0.3}
    recs = add_rows([], "baseline_r18", "rise", [0, 1], good)
    recs = add_rows(recs, "lico_r18", "rise", [0, 1], bad)
    s = compute_summary(frame(recs), {"insertion": True, "deletion": False})
    p = s[s["kind"] == "paired"].set_index("metric")
    assert p.loc["insertion", "ci_high"] < 0 and p.loc["deletion", "ci_low"] > 0
    assert list(p["verdict"]) == [BASE, BASE]


# ----------------------------------------------------------------------------- verdict rule
def _six_images(directions, n_extra_seeds=0):
    """6 images; LICO's per-image difference is +0.01 ... +0.06 on insertion and deletion:
    all positive and distinct, so the exact two-sided Wilcoxon p is 2 / 2^6 = 0.03125 and
    every bootstrap resample mean is > 0 (CI excludes 0)."""
    ids = np.arange(6)
    recs = []
    for seed in range(1 + n_extra_seeds):
        for i in ids:
            for model, shift in (("baseline_r18", 0.0), ("lico_r18", 0.01 * (i + 1))):
                recs.append(dict(dataset="shapes", model=model, method="gradcam", seed=seed,
                                 image_id=int(i), label=0, pred=0, map_status="ok",
                                 insertion=0.5 + 0.05 * (i % 3) + shift,
                                 deletion=0.2 + 0.03 * (i % 2) + shift))
    s = compute_summary(pd.DataFrame(recs), directions)
    return s[s["kind"] == "paired"].set_index("metric")


def test_verdict_needs_the_ci_and_the_holm_p():
    one = _six_images({"insertion": True})
    # the exact null distribution: counts / 2^6, dyadic, so computed exactly
    assert one.loc["insertion", "p_wilcoxon"] == 2 / 64
    assert one.loc["insertion", "p_holm"] == one.loc["insertion", "p_wilcoxon"]      # m = 1
    assert one.loc["insertion", "ci_low"] > 0 and one.loc["insertion", "verdict"] == LICO
    assert _six_images({"deletion": False}).loc["deletion", "verdict"] == BASE
    # two comparisons in the table: Holm doubles the smaller p to 0.0625 >= 0.05, so neither
    # side is named although both CIs exclude 0 (the old CI-only rule named both)
    two = _six_images({"insertion": True, "deletion": False})
    assert list(two["p_holm"]) == [2 * 2 / 64, 2 * 2 / 64]          # dyadic: exact
    assert (two["ci_low"] > 0).all() and list(two["verdict"]) == [NONE, NONE]
    # two more copies of the seed add no information: the same answer, not n = 18
    three = _six_images({"insertion": True, "deletion": False}, n_extra_seeds=2)
    cols = ["mean", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "n", "verdict"]
    pd.testing.assert_frame_equal(three[cols], two[cols])


def test_seed_copies_give_the_one_seed_summary_exactly():
    """The issue's check: seed-0 rows copied unchanged as seeds 1 and 2."""
    rng = np.random.default_rng(9)
    recs = []
    for model, bonus in (("baseline_r18", 0.0), ("lico_r18", 0.04)):
        for method in ("gradcam", "rise"):
            m = {"insertion": rng.beta(5, 2, (1, 40)) + bonus, "deletion": rng.beta(2, 5, (1, 40)),
                 "pointing_game": (rng.random((1, 40)) < 0.7).astype(float)}
            m["deletion"][0, 3] = np.nan
            ids = np.arange(40)
            for i in ids:
                recs.append(dict(dataset="shapes", model=model, method=method, seed=0,
                                 image_id=int(i), label=int(i % 10), pred=int(i % 10 if i % 7 else 0),
                                 map_status="ok", **{k: float(v[0, i]) for k, v in m.items()}))
    one = pd.DataFrame(recs)
    three = pd.concat([one.assign(seed=s) for s in (0, 1, 2)], ignore_index=True)
    s1, s3 = compute_summary(one, DIRS), compute_summary(three, DIRS)
    assert (s1["n_seeds"] == 1).all() and (s3["n_seeds"] == 3).all()
    cols = [c for c in s1.columns if c not in ("n_seeds", "n_flagged", "seed_diffs")]
    pd.testing.assert_frame_equal(s1[cols], s3[cols])
    # copies have no spread over seeds: no seed-level test, as with one seed
    paired = s3[s3["kind"] == "paired"]
    assert paired[["seed_ci_low", "seed_ci_high", "p_seed", "p_seed_holm"]].isna().all().all()
    assert (paired["seed_verdict"] == NONE).all()
    assert ((s3["n_flagged"] == 3 * s1["n_flagged"]).all())       # rows, counted per seed


def test_generic_metric_lower_is_better(tmp_path):
    """A metric the tables have never heard of (map_dependence, lower is better) is scored,
    compared and named with the manifest's direction."""
    rng = np.random.default_rng(2)
    dep = rng.uniform(0.3, 0.6, (2, N))
    recs = add_rows([], "baseline_r18", "gradcam", [0, 1], {"insertion": rng.random((2, N)), "map_dependence": dep})
    recs = add_rows(recs, "lico_r18", "gradcam", [0, 1], {"insertion": rng.random((2, N)), "map_dependence": dep - 0.2})
    rows = frame(recs)
    manifest = {"metrics": {"map_dependence": {"higher_is_better": False}, "insertion": {"higher_is_better": True},
                            "deletion": {"higher_is_better": False}}, "spec": {"seeds": [0, 1]}}
    dirs = metric_directions(manifest, rows)
    assert dirs == {"insertion": True, "map_dependence": False}              # no deletion column
    s = compute_summary(rows, dirs, manifest)
    r = row(s, "paired", "lico_r18 - baseline_r18", "gradcam", "map_dependence")
    # the cells (dep - 0.2) - dep: 2 roundings of <= 0.6 + 0.2 + 0.4 each, then the crossed
    # mean of 2 x N of them (depth 4), vs the decimal -0.2 (rounded too)
    assert close64(r["mean"], -0.2, N + 2, 1.2, depth=4) and r["verdict"] == LICO
    md = to_markdown(s, dirs, manifest)
    assert "Map dependence ↓" in md


# ----------------------------------------------------------------------------- pairing
ALL_R18 = ["baseline_r18", "lico_r18", "lico_rolled_r18", "lico_released_r18", "lico_mmonly_r18",
           "lico_otonly_r18"]


def test_pair_models_by_name():
    models = ALL_R18 + ["baseline_wrn28_2", "lico_wrn28_2", "lico_rolled_wrn28_2", "baseline_2",
                        "lico_wrn28_8", "lico_r50"]
    pairs = dict(pair_models(models))
    assert {m: pairs[m] for m in ALL_R18[1:]} == {m: "baseline_r18" for m in ALL_R18[1:]}
    # the longest suffix wins: "_wrn28_2" over "_2"
    assert pairs["lico_wrn28_2"] == pairs["lico_rolled_wrn28_2"] == "baseline_wrn28_2"
    # no baseline of its suffix: left out; baselines are never the LICO side
    assert "lico_wrn28_8" not in pairs and "lico_r50" not in pairs
    assert not any(m.startswith("baseline") for m in pairs)
    assert pair_models(["lico_r18"]) == [] and pair_models([]) == []


def test_pair_models_from_the_manifest():
    info = {"base_a": {"family": "baseline", "arch": "resnet18", "variant": None},
            "mine": {"family": "lico", "arch": "resnet18", "variant": "paper"},
            "mine_rolled": {"family": "lico", "arch": "resnet18", "variant": "rolled"},
            "big": {"family": "lico", "arch": "resnet50", "variant": "paper"},
            "base_big": {"family": "baseline", "arch": "resnet50", "variant": None},
            "lico_odd_r18": {"family": "baseline", "arch": "resnet18", "variant": None}}
    manifest = {"models": info}
    present = ["base_a", "mine", "mine_rolled", "big", "lico_r18x"]
    # families and arch, not names; base_big is described but absent from the rows: big has
    # no partner; lico_r18x is not described: the name rule (no baseline_ suffix fits)
    assert pair_models(present, manifest) == [("mine", "base_a"), ("mine_rolled", "base_a")]
    assert pair_models(present + ["base_big"], manifest)[0] == ("big", "base_big")
    # described as a baseline: never paired as LICO, even with a lico_ name
    assert pair_models(["lico_odd_r18", "baseline_r18"], manifest) == []
    # the runner's manifest for old-style names gives the same pairs as the names
    runner = {"models": {m: {"family": "baseline" if m.startswith("baseline") else "lico",
                             "arch": "resnet18" if m.endswith("_r18") else "wide_resnet28_2",
                             "variant": None} for m in ALL_R18 + ["baseline_wrn28_2", "lico_wrn28_2"]}}
    models = ALL_R18 + ["baseline_wrn28_2", "lico_wrn28_2"]
    assert pair_models(models, runner) == pair_models(models)


def test_variants_are_compared_with_their_baseline_in_tables_and_figures():
    rng = np.random.default_rng(4)
    recs = []
    for m in ["baseline_r18", "lico_r18", "lico_rolled_r18", "baseline_r50", "lico_r50"]:
        recs = add_rows(recs, m, "gradcam", [0], {"insertion": rng.random((1, N))})
    s = compute_summary(frame(recs), {"insertion": True})
    comps = list(s.loc[s["kind"] == "paired", "model"])
    assert comps == ["lico_r18 - baseline_r18", "lico_r50 - baseline_r50", "lico_rolled_r18 - baseline_r18"]
    assert model_groups(["baseline_r18", "lico_r18", "lico_rolled_r18"]) == [
        ("r18", ["baseline_r18", "lico_r18"]), ("rolled_r18", ["baseline_r18", "lico_rolled_r18"])]
    info = {"models": {"b": {"family": "baseline", "arch": "resnet18"}, "l": {"family": "lico", "arch": "resnet18"}}}
    assert model_groups(["b", "l", "x"], info) == [("l", ["b", "l"]), ("x", ["x"])]


def test_duplicate_rows_are_a_clear_error():
    recs = add_rows([], "baseline_r18", "gradcam", [0], {"insertion": np.full((1, N), 0.5)})
    rows = frame(recs + recs[:1])
    with pytest.raises(UserError, match="same image twice"):
        compute_summary(rows, {"insertion": True})


# ----------------------------------------------------------------------------- files
def _results_dir(root, seeds):
    rng = np.random.default_rng(8)
    res = root / "res"
    (res / "rows").mkdir(parents=True)
    manifest = {"format": 1, "spec": {"dataset": "shapes", "split": "test", "n_images": N, "seeds": seeds,
                                      "models": ["baseline_r18", "lico_r18"],
                                      "methods": ["gradcam", "rise"]},
                "metrics": {k: {"higher_is_better": v} for k, v in
                            {"insertion": True, "deletion": False, "pointing_game": True}.items()},
                "models": {"baseline_r18": {"family": "baseline", "arch": "resnet18", "variant": None},
                           "lico_r18": {"family": "lico", "arch": "resnet18", "variant": "paper"}},
                "command": None}
    (res / "manifest.json").write_text(json.dumps(manifest))
    for model, bonus in (("baseline_r18", 0.0), ("lico_r18", 0.3)):
        for method in ("gradcam", "rise"):
            for seed in seeds:
                m = {"insertion": rng.uniform(0.3, 0.6, (1, N)) + bonus,
                     "deletion": rng.uniform(0.1, 0.3, (1, N)),
                     "pointing_game": (rng.random((1, N)) < 0.5).astype(float)}
                recs = add_rows([], model, method, [seed], m)
                (res / "rows" / f"shapes__{model}__{method}__seed{seed}.jsonl").write_text(
                    "".join(json.dumps(r) + "\n" for r in recs))
    return res


def test_report_files_three_seeds(tmp_path):
    res = _results_dir(tmp_path, [0, 1, 2])
    build_report(res)
    csv = pd.read_csv(res / "summary.csv")
    paired = csv[csv["kind"] == "paired"]
    assert len(paired) == 2 * 4                                     # methods x (3 metrics + overall)
    # both columns printed with 6 significant digits (relative error <= 5e-6 each), and Holm's
    # one product per value (EPS64)
    assert list(paired["p_holm"]) == pytest.approx(list(holm(paired["p_wilcoxon"].to_numpy())),
                                                   rel=2 * 5e-6 + EPS64)
    # ... and exactly the 6 digits of the unrounded table's Holm p-values
    rows = load_rows(res)
    manifest = load_manifest(res)
    mem = compute_summary(rows, metric_directions(manifest, rows), manifest)
    mem = mem[mem["kind"] == "paired"]
    assert list(paired["p_holm"]) == [float(f"{v:.6g}") for v in mem["p_holm"]]
    assert (paired["p_holm"] >= paired["p_wilcoxon"]).all() and (paired["n"] == N).all()
    ins = paired[paired["metric"] == "insertion"]
    assert (ins["verdict"] == LICO).all()
    md = (res / "summary.md").read_text()
    header = next(l for l in md.splitlines() if l.startswith("| comparison"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[-9:] == ["Wilcoxon p", "Holm p", "n", "verdict (images)", "seeds",
                          "95% t-CI over seeds", "t-test p", "Holm p (seeds)", "verdict (seeds)"]
    assert "Holm over the 8 seed-level tests of this table" in md
    assert "resampling seeds and images crossed" in md
    assert "Holm over the 8 comparisons of this table) is below 0.05" in md
    assert "on the per-image differences averaged over seeds" in md
    table = [l for l in md.splitlines() if l.startswith("| lico_r18 - baseline_r18")]
    assert len(table) == 8 and all(l.count("|") == header.count("|") for l in table)
    tex = (res / "summary.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 3 and "Holm p" in tex


def test_report_files_one_seed(tmp_path):
    res = _results_dir(tmp_path, [0])
    build_report(res)
    md = (res / "summary.md").read_text()
    assert "(mean over images, 95% bootstrap CI in brackets)" in md
    assert "crossed" not in md and "averaged over seeds" not in md
    # one seed: no seed-level columns or note
    header = next(l for l in md.splitlines() if l.startswith("| comparison"))
    assert [c.strip() for c in header.strip("|").split("|")][-2:] == ["n", "verdict"]
    assert "seed-level" not in md and "t-test" not in md
    assert "Holm over the 8 comparisons" in md


def test_pair_models_pairs_the_peer_families_with_their_baseline():
    peers = ["guided_r18", "rrr_r18", "sgt_r18"]
    info = {m: {"family": m.split("_")[0], "arch": "resnet18", "variant": None}
            for m in ["baseline_r18", "lico_r18"] + peers}
    info["lico_r18"]["variant"] = "paper"
    info["baseline_wrn28_2"] = {"family": "baseline", "arch": "wrn28_2", "variant": None}
    info["plugin_r18"] = {"family": None, "arch": None, "variant": None}
    present = list(info)
    want = sorted([("guided_r18", "baseline_r18"), ("lico_r18", "baseline_r18"),
                   ("rrr_r18", "baseline_r18"), ("sgt_r18", "baseline_r18")])
    # by family and arch; a model without a family (a plugin's) is left out, as before
    assert pair_models(present, {"models": info}) == want
    # results without "models" in the manifest: the same pairs by name
    assert pair_models(["baseline_r18", "lico_r18"] + peers) == want


def test_a_peer_comparison_names_its_family_not_lico(tmp_path):
    """The guided model is better on insertion by construction (+0.3 on every image): its
    verdicts say "guided better" at both levels, LICO's comparison in the same table still
    says "LICO better", and the paired table heads its trained side "model"; a table of LICO
    comparisons alone keeps "LICO" (test_report_files_three_seeds)."""
    rng = np.random.default_rng(5)
    recs = []
    for model, bonus in (("baseline_r18", 0.0), ("lico_r18", 0.3), ("guided_r18", 0.3)):
        recs = add_rows(recs, model, "gradcam", [0, 1, 2],
                        {"insertion": rng.uniform(0.3, 0.6, (3, N)) + bonus})
    info = {m: {"family": m.split("_")[0], "arch": "resnet18", "variant": None}
            for m in ("baseline_r18", "lico_r18", "guided_r18")}
    s = compute_summary(frame(recs), {"insertion": True}, {"models": info})
    p = s[s["kind"] == "paired"].set_index("model")
    assert p.loc["guided_r18 - baseline_r18", ["verdict", "seed_verdict"]].tolist() == ["guided better"] * 2
    assert p.loc["lico_r18 - baseline_r18", ["verdict", "seed_verdict"]].tolist() == [LICO] * 2
    # without the manifest's families the names say the same
    s2 = compute_summary(frame(recs), {"insertion": True})
    assert s2.loc[s2["kind"] == "paired", "verdict"].tolist() == p["verdict"].tolist()
    md = to_markdown(s, {"insertion": True}, {"spec": {}, "models": info})
    assert "## Paired difference model − baseline (same images)" in md
    header = [c.strip() for c in next(l for l in md.splitlines() if l.startswith("| comparison")).strip("|").split("|")]
    assert header[4:6] == ["model", "Δ model − baseline [95% CI]"]
    lico_only = s[~s["model"].str.startswith("guided")]
    assert "## Paired difference LICO − baseline" in to_markdown(lico_only, {"insertion": True}, {"spec": {}})
