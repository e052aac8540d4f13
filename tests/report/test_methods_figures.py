"""The method figures plot the numbers of the method table: methods_rank shows every mean
rank and CI of compute_method_summary and each metric's alpha; metric_agreement shows the
per-image Kendall tau and the tau of the mean-rank orderings for every pair of metrics."""
import numpy as np
import pytest

from lico_bench.report.methods import compute_method_summary, method_order
from lico_bench.report.tables import load_manifest, load_rows, metric_directions
from tests.report.test_figures import check_pdf, check_png, make_results

from .conftest import close64

METHODS = ("gradcam", "gradcampp", "rise")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    import lico_bench.report.figures as figures

    res = make_results(tmp_path_factory.mktemp("mfigs"), methods=METHODS, logs=False)
    out, save = {}, figures._save

    def keep(fig, o, name, formats):
        out[name] = fig
        return save(fig, o, name, formats)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "_save", keep)
        paths = figures.build_figures(res)
    rows, manifest = load_rows(res), load_manifest(res)
    directions = metric_directions(manifest, rows)
    ms = compute_method_summary(rows, directions, manifest)
    return paths, out, ms, directions, method_order(rows, manifest)


def test_files_written(drawn):
    paths = drawn[0]
    for name in ("methods_rank", "metric_agreement"):
        png, pdf = paths[name]
        check_png(png)
        check_pdf(pdf)


def test_rank_heat_map_shows_the_table(drawn):
    _, figs, ms, directions, methods = drawn
    fig = figs["methods_rank"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["baseline (r18)", "LICO (r18)"]
    assert list(methods) == list(METHODS)
    # the y axis is shared: the labels are on the first panel
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list(METHODS)
    for ax, model in zip(panels, ("baseline_r18", "lico_r18")):
        (im,) = ax.get_images()
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
        for j, metric in enumerate(directions):
            a = ms[(ms["kind"] == "alpha") & (ms["model"] == model) & (ms["metric"] == metric)].iloc[0]
            assert ax.get_xticklabels()[j].get_text().endswith(f"α {a['mean']:.2f}")
            for i, method in enumerate(METHODS):
                r = ms[(ms["kind"] == "rank") & (ms["model"] == model) & (ms["metric"] == metric)
                       & (ms["method"] == method)].iloc[0]
                assert im.get_array()[i, j] == r["mean"]          # the value itself, copied
                assert texts[(i, j)] == f"{r['mean']:.2f}\n[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        # every column's mean ranks sum to 1 + 2 + 3 (vs the exact 6: each mean sums exact
        # half-integers and divides once, then 3 terms of total 6 are added: depth 2)
        assert close64(np.asarray(im.get_array()).sum(axis=0), 6.0, 3, 6.0, depth=2,
                       computations=1)


def test_agreement_matrix_shows_the_taus(drawn):
    _, figs, ms, directions, _ = drawn
    fig = figs["metric_agreement"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    metrics = list(directions)
    for ax, model in zip(panels, ("baseline_r18", "lico_r18")):
        (im,) = ax.get_images()
        arr = np.asarray(im.get_array())
        np.testing.assert_array_equal(np.diag(arr), 1.0)
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
        t = ms[(ms["kind"] == "tau") & (ms["model"] == model)]
        assert len(t) == len(metrics) * (len(metrics) - 1) // 2
        for _, r in t.iterrows():
            i, j = metrics.index(r["metric"]), metrics.index(r["metric_b"])
            if np.isfinite(r["mean"]):
                assert arr[i, j] == arr[j, i] == r["mean"]        # the value itself, copied
                assert texts[(i, j)].split("\n")[0] == f"{r['mean']:.2f}"
            assert texts[(j, i)].split("\n")[1] == (f"({r['tau_overall']:.2f})"
                                                   if np.isfinite(r["tau_overall"]) else "(n/a)")
