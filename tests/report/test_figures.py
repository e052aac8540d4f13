"""Figures from a hand-made results directory (no training, no runner): the files are written,
and what each figure plots (models, methods, metrics, values) is checked against the rows,
maps and logs it was drawn from."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lico_bench.bench.figure_inputs import copy_training_logs, maps_record, save_inputs
from lico_bench.data import create_dataset
from lico_bench.report.figures import build_figures, model_groups
from tests.tolerance import f32_tol

from .conftest import close64, tol64

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRICS = {"insertion": True, "deletion": False, "pointing_game": True,
           "energy_pointing_game": True}
N_IMAGES, N_POINTS, SIZE = 6, 33, 32


def _log_csv(path, lico: bool, rng) -> None:
    lines = ["epoch,step,lr,loss,ce,mm,ot,train_acc,test_acc,epoch_s"]
    for e in range(1, 6):
        ce = 2.0 / e + rng.uniform(0, 0.05)
        mm, ot = (0.01 / e, 0.5 / e) if lico else (float("nan"), float("nan"))
        loss = ce + (mm + ot if lico else 0.0)
        lines.append(f"{e},{50 * e},0.001,{loss:.6f},{ce:.6f},{mm},{ot},"
                     f"{min(1, 0.2 * e):.4f},{min(1, 0.18 * e):.4f},1.0")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _curve(kind: str, auc_hint: float, rng) -> list:
    x = np.linspace(0, 1, N_POINTS)
    if kind == "insertion":
        c = 1 / (1 + np.exp(-(x - (1 - auc_hint)) * 12))
    else:
        c = np.exp(-x / max(auc_hint, 0.02))
    return np.clip(c + rng.normal(0, 0.03, N_POINTS), 0, 1).tolist()


def make_results(root, models=("baseline_r18", "lico_r18"), methods=("gradcam", "rise"),
                 logs=True):
    rng = np.random.default_rng(0)
    res = root / "results"
    (res / "rows").mkdir(parents=True)
    (res / "maps").mkdir()
    ckpts = {}
    for m in models:
        ck = root / "runs" / "shapes" / m / "seed0" / "model.pt"
        ckpts[f"{m}@seed0"] = str(ck)
        if logs:
            _log_csv(ck.parent / "log.csv", m.startswith("lico_"), rng)
    manifest = {"format": 1,
                "spec": {"dataset": "shapes", "split": "test", "image_size": None, "root": None,
                         "n_images": N_IMAGES, "seeds": [0], "models": list(models),
                         "methods": list(methods), "target": "pred"},
                "metrics": {k: {"higher_is_better": v, "options": {}} for k, v in METRICS.items()},
                "checkpoints": ckpts, "command": None}
    (res / "manifest.json").write_text(json.dumps(manifest))
    for m in models:
        bonus = 0.08 if m.startswith("lico_") else 0.0
        for meth in methods:
            rows = []
            for i in range(N_IMAGES):
                ins = float(np.clip(rng.normal(0.6 + bonus, 0.1), 0, 1))
                dele = float(np.clip(rng.normal(0.2 - bonus / 2, 0.05), 0, 1))
                label = int(rng.integers(10))
                rows.append({"dataset": "shapes", "model": m, "method": meth, "seed": 0,
                             "image_id": i, "label": label,
                             "pred": label if rng.random() < 0.9 else (label + 1) % 10,
                             "prob": float(rng.uniform(0.5, 1)), "target": label,
                             "target_prob": 0.8, "map_status": "ok",
                             "insertion": ins, "deletion": dele,
                             "pointing_game": float(rng.random() < 0.7 + bonus),
                             "energy_pointing_game": float(rng.uniform(0.3, 0.6) + bonus),
                             "curve_insertion": _curve("insertion", ins, rng),
                             "curve_deletion": _curve("deletion", dele, rng)})
            key = f"shapes__{m}__{meth}__seed0"
            (res / "rows" / f"{key}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows))
            maps = torch.from_numpy(rng.random((N_IMAGES, SIZE, SIZE)).astype(np.float32))
            torch.save(maps_record(list(range(N_IMAGES)), maps, [r["target"] for r in rows]),
                       res / "maps" / f"{key}.pt")
    # what the runner saves for the figures besides the maps
    save_inputs(res, create_dataset("shapes", "test", seed=0), N_IMAGES)
    copy_training_logs(res, {k: Path(v) for k, v in ckpts.items()})
    return res


def check_png(path, min_px=250, max_px=1500):
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    with Image.open(path) as im:
        im.load()
        w, h = im.size
        arr = np.asarray(im.convert("L"), dtype=float)
    # 200 dpi at <= 7 in wide (bbox "tight" may trim or add a little)
    assert min_px <= w <= max_px and 100 <= h <= 2000, (path.name, w, h)
    assert arr.std() > 10, f"{path.name} looks blank (std {arr.std():.1f})"


def check_pdf(path):
    data = path.read_bytes()
    assert data.startswith(b"%PDF"), path
    assert len(data) > 2000


@pytest.fixture(scope="module")
def paired_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return make_results(tmp_path_factory.mktemp("figs"))


@pytest.fixture(scope="module")
def built(paired_dir):
    """build_figures(paired_dir): its paths, and the matplotlib Figures it saved (by name)."""
    import lico_bench.report.figures as figures

    drawn, save = {}, figures._save

    def keep(fig, out, name, formats):
        drawn[name] = fig
        return save(fig, out, name, formats)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "_save", keep)
        paths = build_figures(paired_dir)
    return paths, drawn


@pytest.fixture(scope="module")
def paired_figures(built):
    return built[0]


@pytest.fixture(scope="module")
def drawn(built):
    return built[1]


@pytest.fixture(scope="module")
def rows(paired_dir):
    """(model, method) -> the rows of make_results, read back from the files."""
    out = {}
    for p in sorted((paired_dir / "rows").glob("*.jsonl")):
        recs = [json.loads(l) for l in p.read_text().splitlines()]
        out[(recs[0]["model"], recs[0]["method"])] = recs
    return out


def test_every_figure_rendered(paired_dir, paired_figures):
    figs = paired_figures
    assert set(figs) == {"maps", "curves", "paired", "methods_rank", "metric_agreement",
                         "training"}, figs.get("notes")
    for name, paths in figs.items():
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        for p in paths:
            assert p.parent == paired_dir / "figures" and p.exists()
            (check_png if p.suffix == ".png" else check_pdf)(p)
    # no temporary files left behind by the atomic writes
    assert not [p for p in (paired_dir / "figures").iterdir() if p.name.startswith(".")]


def test_out_and_formats(paired_dir, tmp_path):
    figs = build_figures(paired_dir, out=tmp_path / "o", formats=("png",))
    assert all(p.suffix == ".png" and p.parent == tmp_path / "o"
               for k, ps in figs.items() if k != "notes" for p in ps)


def test_bad_format(paired_dir, tmp_path):
    from lico_bench.errors import UserError

    with pytest.raises(UserError):
        build_figures(paired_dir, out=tmp_path, formats=("bmp",))


def test_single_model_no_pairs_no_logs(tmp_path):
    res = make_results(tmp_path, models=("lico_r18",), methods=("gradcam",), logs=False)
    figs = build_figures(res)
    assert "maps" in figs and "curves" in figs
    assert "paired" not in figs and "training" not in figs
    assert any(n.startswith("training") for n in figs["notes"])
    assert any(n.startswith("paired") for n in figs["notes"])
    for p in figs["maps"] + figs["curves"]:
        check_png(p, min_px=100) if p.suffix == ".png" else check_pdf(p)


def test_model_groups():
    assert model_groups(["baseline_r18", "lico_r18"]) == [("r18", ["baseline_r18", "lico_r18"])]
    assert model_groups(["lico_r18"]) == [("", ["lico_r18"])]
    g = model_groups(["lico_r18", "baseline_r18", "lico_r50", "baseline_vit"])
    assert g == [("r18", ["baseline_r18", "lico_r18"]),
                 ("baseline_vit_lico_r50", ["baseline_vit", "lico_r50"])]


def test_maps_without_dataset(tmp_path):
    res = make_results(tmp_path, methods=("gradcam",))
    (res / "inputs.pt").unlink()        # results written before inputs were saved
    figs = build_figures(res, formats=("png",))
    check_png(figs["maps"][0], min_px=100)
    assert any("drawn alone" in n for n in figs["notes"])


# ----------------------------------------------------------------------------- what is plotted
MODELS = ("baseline_r18", "lico_r18")
METHODS = ("gradcam", "rise")


def _by_label(ax):
    return {l.get_label(): l for l in ax.get_lines() if not l.get_label().startswith("_")}


def test_curves_plot_the_mean_curves_and_aucs_of_the_rows(drawn, rows):
    from lico_bench.report.figures import BASELINE_COLOUR, LICO_COLOUR

    fig = drawn["curves"]
    assert len(fig.axes) == 4                                    # (insertion, deletion) x methods
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == list(METHODS)
    assert [ax.get_ylabel().split("\n")[0] for ax in axes[:, 0]] == ["Insertion", "Deletion"]
    x = np.linspace(0, 1, N_POINTS)
    for r, kind in enumerate(("insertion", "deletion")):
        for c, method in enumerate(METHODS):
            lines = _by_label(axes[r, c])
            assert len(lines) == 2
            for model, short, colour in zip(MODELS, ("baseline", "LICO"), (BASELINE_COLOUR, LICO_COLOUR)):
                recs = rows[(model, method)]
                curves = np.array([rec[f"curve_{kind}"] for rec in recs])
                mean_auc = np.mean([rec[kind] for rec in recs])
                line = lines[f"{short} AUC {mean_auc:.3f}"]
                assert line.get_color() == colour
                np.testing.assert_array_equal(line.get_xdata(), x)      # the same linspace
                # a mean over the curves (another order maybe): n_terms len(curves),
                # magnitude the largest |point|
                assert close64(line.get_ydata(), curves.mean(0), len(curves),
                               np.abs(curves).max())
            # the bands: mean +- 1.96 SD / sqrt(n) at every x
            for band, model in zip(axes[r, c].collections, MODELS):
                curves = np.array([rec[f"curve_{kind}"] for rec in rows[(model, method)]])
                half = 1.96 * curves.std(0, ddof=1) / np.sqrt(len(curves))
                y = band.get_paths()[0].vertices[:, 1]
                # mean, then the SD (sum of squared deviations, sqrt, two products) and
                # mean +- half: depth 5, magnitude |mean| + |half| <= 3 max |point|
                tol = tol64(len(curves), 3 * np.abs(curves).max(), depth=5)
                for lo in curves.mean(0) - half, curves.mean(0) + half:
                    assert np.abs(y[:, None] - lo[None, :]).min(0).max() <= tol
    assert "(r18)" in fig.get_suptitle()


def test_paired_plots_the_mean_paired_differences(drawn, rows, paired_dir):
    from lico_bench.report.figures import BASELINE_COLOUR, LICO_COLOUR
    from lico_bench.report.tables import compute_summary, load_manifest, load_rows, metric_directions

    fig = drawn["paired"]
    metrics = ["insertion", "deletion", "overall", "pointing_game", "energy_pointing_game"]
    titles = ["Insertion ↑", "Deletion ↓", "Overall (ins-del) ↑", "Pointing game ↑", "Energy PG ↑"]
    assert [ax.get_title() for ax in fig.axes] == titles
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(METHODS)
    summary = compute_summary(load_rows(paired_dir),
                              metric_directions(load_manifest(paired_dir), load_rows(paired_dir)))
    for ax, metric in zip(fig.axes, metrics):
        points = {int(round(l.get_ydata()[0])): l for l in ax.get_lines() if l.get_marker() == "o"}
        bars = {int(round(l.get_ydata()[0])): l for l in ax.get_lines()
                if l.get_marker() in ("None", "", None) and len(l.get_xdata()) == 2
                and l.get_ydata()[0] == l.get_ydata()[1]}
        assert sorted(points) == sorted(bars) == [0, 1]
        for y, method in enumerate(METHODS):
            # independent: the mean over images of LICO - baseline on the same image
            value = {m: {rec["image_id"]: (rec["insertion"] - rec["deletion"] if metric == "overall"
                                           else rec[metric]) for rec in rows[(m, method)]}
                     for m in MODELS}
            diff = np.mean([value["lico_r18"][i] - value["baseline_r18"][i] for i in range(N_IMAGES)])
            # the crossed mean of N_IMAGES differences (<= 3 subtractions of scores in [0, 1]:
            # magnitude 4 per image) times 100: depth 4
            assert close64(points[y].get_xdata()[0], 100 * diff, N_IMAGES + 3, 400.0, depth=4), \
                (metric, method)
            # the CI bar and the colour: compute_summary's interval (the figure's data)
            s = summary[(summary["kind"] == "paired") & (summary["metric"] == metric)
                        & (summary["method"] == method)].iloc[0]
            lo, hi = 100 * s["ci_low"], 100 * s["ci_high"]
            np.testing.assert_array_equal(bars[y].get_xdata(), [lo, hi])   # the same products
            assert lo <= 100 * diff <= hi
            hib = metric != "deletion"
            # the table's verdict: CI excluding 0 and Holm p < 0.05
            named = (not lo <= 0 <= hi) and s["p_holm"] < 0.05
            assert named == (s["verdict"] != "no clear difference")
            colour = ("0.3" if not named else LICO_COLOUR if (lo > 0) == hib else BASELINE_COLOUR)
            assert points[y].get_color() == bars[y].get_color() == colour, (metric, method)


def test_maps_show_the_saved_maps_and_their_maxima(drawn, paired_dir):
    fig = drawn["maps"]
    assert len(fig.axes) == N_IMAGES * 5 + 1                     # images x (input + 4), colour bar
    axes = np.array(fig.axes[:-1]).reshape(N_IMAGES, 5)
    columns = [(m, meth) for meth in METHODS for m in MODELS]
    assert [ax.get_title() for ax in axes[0]] == ["input", "gradcam\nbaseline (r18)",
                                                  "gradcam\nLICO (r18)", "rise\nbaseline (r18)",
                                                  "rise\nLICO (r18)"]
    for c, (model, method) in enumerate(columns, start=1):
        saved = torch.load(paired_dir / "maps" / f"shapes__{model}__{method}__seed0.pt")
        maps = saved["maps"].double().numpy()
        assert saved["image_ids"] == list(range(N_IMAGES))
        for r in range(N_IMAGES):
            ax = axes[r, c]
            inp, overlay = ax.get_images()
            np.testing.assert_array_equal(inp.get_array(), axes[r, 0].get_images()[0].get_array())
            m = maps[r]
            # the figure min-max scales the float32 map in float32: 2 subtractions and a
            # division, <= gamma(3) relative on a value <= 1; vs float64 here (computations=1)
            np.testing.assert_allclose(overlay.get_array(), (m - m.min()) / (m.max() - m.min()),
                                       rtol=0, atol=f32_tol(3, 1.0, computations=1))
            (point,) = ax.get_lines()
            y, x = np.unravel_index(np.argmax(m), m.shape)
            assert (point.get_xdata()[0], point.get_ydata()[0]) == (x, y)


def test_training_plots_the_logs(drawn, paired_dir):
    import csv

    fig = drawn["training"]
    assert [ax.get_title() for ax in fig.axes] == ["cross-entropy loss", "LICO terms: MM (--), OT (··)",
                                                   "accuracy (test —, train --)"]
    ce, lico, acc = (_by_label(ax) for ax in fig.axes)
    logs = {}
    for m in MODELS:
        path = paired_dir.parent / "runs" / "shapes" / m / "seed0" / "log.csv"
        logs[m] = {k: np.array([float(r[k]) for r in csv.DictReader(open(path))])
                   for k in ("epoch", "ce", "mm", "ot", "train_acc", "test_acc")}
    names = {"baseline_r18": "baseline (r18)", "lico_r18": "LICO (r18)"}
    assert set(ce) == set(names.values())
    assert set(lico) == {"LICO (r18) MM", "LICO (r18) OT"}            # no NaN baseline terms
    assert set(acc) == {f"{n} {k}" for n in names.values() for k in ("test", "train")}
    for m, n in names.items():
        np.testing.assert_array_equal(ce[n].get_xdata(), logs[m]["epoch"])
        # the log's numbers parsed by float() as here, and the same 100 * y: exact
        np.testing.assert_array_equal(ce[n].get_ydata(), logs[m]["ce"])
        for k in ("test", "train"):
            np.testing.assert_array_equal(acc[f"{n} {k}"].get_ydata(), 100 * logs[m][f"{k}_acc"])
    for term in ("mm", "ot"):
        np.testing.assert_array_equal(lico[f"LICO (r18) {term.upper()}"].get_ydata(),
                                      logs["lico_r18"][term])


def test_old_results_degrade_then_backfill_restores_every_panel(tmp_path):
    """Results written before the runner saved the figures' inputs: the maps are drawn alone
    and without points, the training figure is skipped, each with a note; the backfill step
    writes exactly what a current run writes, and the figures are whole again."""
    from lico_bench.bench.figure_inputs import backfill

    new = make_results(tmp_path / "new", methods=("gradcam",))
    old = make_results(tmp_path / "old", methods=("gradcam",))
    (old / "inputs.pt").unlink()
    for p in (old / "logs").iterdir():
        p.unlink()
    for p in (old / "maps").glob("*.pt"):
        d = torch.load(p)
        torch.save({k: v for k, v in d.items() if k != "points"}, p)
    figs = build_figures(old, formats=("png",))
    assert "maps" in figs and "training" not in figs
    assert any("drawn alone" in n for n in figs["notes"])
    assert any("markers left out" in n for n in figs["notes"])
    assert any(n.startswith("training") for n in figs["notes"])

    backfill(old, log=lambda *a: None)
    a, b = torch.load(new / "inputs.pt"), torch.load(old / "inputs.pt")
    assert a["image_ids"] == b["image_ids"] and a["labels"] == b["labels"]
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["masks"], b["masks"])
    for p in (new / "maps").glob("*.pt"):
        assert torch.equal(torch.load(p)["points"], torch.load(old / "maps" / p.name)["points"])
    for p in (new / "logs").iterdir():
        assert (old / "logs" / p.name).read_text() == p.read_text()
    figs = build_figures(old, formats=("png",))
    assert {"maps", "training"} <= set(figs)
    assert not any(n.startswith(("maps", "training")) for n in figs.get("notes", []))
