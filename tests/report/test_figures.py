"""Figures from a hand-made results directory (no training, no runner)."""
import json

import numpy as np
import pytest
import torch

from lico_bench.report.figures import build_figures, model_groups

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
            torch.save({"image_ids": list(range(N_IMAGES)), "maps": maps,
                        "targets": [r["target"] for r in rows]}, res / "maps" / f"{key}.pt")
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
def paired_figures(paired_dir):
    return build_figures(paired_dir)


def test_every_figure_rendered(paired_dir, paired_figures):
    figs = paired_figures
    assert set(figs) == {"maps", "curves", "paired", "training"}, figs.get("notes")
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


def test_maps_without_dataset(tmp_path, monkeypatch):
    import lico_bench.report.figures as figures

    def gone(spec, ids):
        raise FileNotFoundError("data root missing")

    monkeypatch.setattr(figures, "_load_images", gone)
    res = make_results(tmp_path, methods=("gradcam",))
    figs = build_figures(res, formats=("png",))
    check_png(figs["maps"][0], min_px=100)
    assert any("drawn alone" in n for n in figs["notes"])
