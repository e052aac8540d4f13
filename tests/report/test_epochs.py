"""Saliency along training (lico_bench.report.epochs): epochs read from names and logs, means and
bands against an independent computation (numpy / scipy), the section's Δ from the paired
table, the figure's lines; a run without kept epochs gets none of it."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lico_bench.report.common import NICE
from lico_bench.report.epochs import epoch_table, epochs_section, model_epochs, plot_epochs
from lico_bench.report.tables import compute_summary

from .conftest import close64

DIRECTIONS = {"pointing_game": True, "insertion": True}
N_IMG = 12


def _rows(models_seeds, rng):
    out = []
    for m, seeds in models_seeds.items():
        for s in seeds:
            for i in range(N_IMG):
                out.append(dict(dataset="shapes", model=m, method="gradcam", seed=s, image_id=i,
                                label=i % 3, pred=i % 3, map_status="ok",
                                pointing_game=float(rng.random() < 0.6),
                                insertion=float(rng.uniform(0.2, 0.9))))
    return pd.DataFrame(out)


def _log(path, epochs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("epoch,loss\n" + "".join(f"{e},1.0\n" for e in range(1, epochs + 1)))


@pytest.fixture()
def case(tmp_path):
    rng = np.random.default_rng(3)
    seeds = [0, 1, 2]
    models = {"baseline_r18@e1": seeds, "baseline_r18@e5": seeds, "baseline_r18": seeds,
              "lico_r18@e1": seeds, "lico_r18@e5": seeds, "lico_r18": seeds}
    rows = _rows(models, rng)
    manifest = {"models": {m: {"family": m.split("_")[0], "arch": "r18",
                               **({"epoch": int(m.rpartition("@e")[2])} if "@e" in m else {})}
                           for m in models},
                "checkpoints": {f"{m}@seed{s}": "x" for m in models for s in seeds}}
    for s in seeds:   # the final weights: 8 epochs (their logs, as the runner copies them)
        for m in ("baseline_r18", "lico_r18"):
            _log(tmp_path / "logs" / f"{m}@seed{s}.csv", 8)
    return tmp_path, rows, manifest


def test_epochs_of_models(case):
    results, rows, manifest = case
    ep = model_epochs(sorted(rows["model"].unique()), manifest, results)
    assert ep == {"baseline_r18": ("baseline_r18", 8), "baseline_r18@e1": ("baseline_r18", 1),
                  "baseline_r18@e5": ("baseline_r18", 5), "lico_r18": ("lico_r18", 8),
                  "lico_r18@e1": ("lico_r18", 1), "lico_r18@e5": ("lico_r18", 5)}
    # no log for the final weights: epoch unknown
    for f in (results / "logs").glob("lico_r18@*"):
        f.unlink()
    assert model_epochs(["lico_r18"], manifest, results) == {"lico_r18": ("lico_r18", None)}


def test_table_means_and_bands_against_scipy(case):
    results, rows, manifest = case
    t = epoch_table(rows, DIRECTIONS, manifest, results)
    assert len(t) == 2 * 3 * len(DIRECTIONS)                 # 2 models x 3 epochs x metrics
    assert sorted(set(t["epoch"])) == [1.0, 5.0, 8.0] and set(t["band"]) == {"seeds"}
    for _, r in t.iterrows():
        g = rows[rows["model"] == r["run_name"]]
        per_seed = g.groupby("seed")[r["metric"]].mean().to_numpy()
        ref = stats.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
        # 3 seeds x 12 images, values in [0, 1]: float64 sums of 36 terms, two computations
        assert close64(r["mean"], per_seed.mean(), 36, 1.0, depth=2)
        # the interval m +- t_{2,.975} s/sqrt(3): magnitude <= 1 + 4.31 * 0.5 / sqrt(3) < 3;
        # mean, sd (sqrt) and the product: depth 4
        assert close64([r["band_low"], r["band_high"]], [ref.low, ref.high], 36, 3.0, depth=4)
        assert r["n_seeds"] == 3


def test_one_seed_band_is_over_images(case):
    results, rows, manifest = case
    one = rows[rows["seed"] == 0]
    t = epoch_table(one, DIRECTIONS, manifest, results)
    assert set(t["band"]) == {"images"} and (t["n_seeds"] == 1).all()
    assert (t["band_low"] <= t["mean"]).all() and (t["mean"] <= t["band_high"]).all()


def test_section_takes_delta_from_the_paired_table(case):
    results, rows, manifest = case
    t = epoch_table(rows, DIRECTIONS, manifest, results)
    summary = compute_summary(rows, DIRECTIONS, manifest)
    text = epochs_section(t, summary)
    assert text.startswith("## Along training")
    p = summary[(summary["kind"] == "paired") & (summary["model"] == "lico_r18@e5 - baseline_r18@e5")
                & (summary["metric"] == "insertion")].iloc[0]
    line = next(li for li in text.splitlines() if li.startswith("| Insertion") and "| 5 " in li)
    assert f"{100 * p['mean']:+.1f} [{100 * p['seed_ci_low']:.1f}, {100 * p['seed_ci_high']:.1f}]" in line
    assert p["seed_verdict"] in line
    # the epoch 8 line is the final weights' pair
    p8 = summary[(summary["kind"] == "paired") & (summary["model"] == "lico_r18 - baseline_r18")
                 & (summary["metric"] == "insertion")].iloc[0]
    line8 = next(li for li in text.splitlines() if li.startswith("| Insertion") and "| 8 " in li)
    assert f"{100 * p8['mean']:+.1f}" in line8


def test_figure_draws_one_line_per_model(case):
    results, rows, manifest = case
    t = epoch_table(rows, DIRECTIONS, manifest, results)
    fig = plot_epochs(t)
    ax = next(a for a in fig.axes if a.get_title() == "Pointing game")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"baseline (r18)", "LICO (r18)"}
    x, y = lines["LICO (r18)"].get_data()
    g = t[(t["model"] == "lico_r18") & (t["metric"] == "pointing_game")].sort_values("epoch")
    assert list(x) == [1.0, 5.0, 8.0] and np.array_equal(y, 100 * g["mean"].to_numpy())


def test_figure_wraps_panels_and_ticks_the_epochs(case):
    results, rows, manifest = case
    t = epoch_table(rows, DIRECTIONS, manifest, results)
    n = len(t.groupby(["method", "metric"]))          # one panel per (method, metric)
    fig = plot_epochs(t, ncols=2)
    shown = [a for a in fig.axes if a.get_visible()]
    assert len(shown) == n and len(fig.axes) == 2 * -(-n // 2)   # ceil(n / 2) rows of 2
    assert sorted({a.get_title() for a in shown}) == sorted(
        {NICE.get(m, m) for m in t["metric"]})       # one method: titles are the metrics
    ticks = {float(x) for x in shown[0].get_xticks()}
    assert ticks == {1.0, 5.0, 8.0}                   # the evaluated epochs, nothing else


def test_no_kept_epochs_no_section(case):
    results, rows, manifest = case
    plain = rows[~rows["model"].str.contains("@")]
    t = epoch_table(plain, DIRECTIONS, manifest, results)
    assert t.empty and epochs_section(t, compute_summary(plain, DIRECTIONS, manifest)) == ""
