"""``lico-bench run --metrics randomisation_cascading,randomisation_independent`` on the tiny
setup: rows (Spearman and SSIM, values and per-stage curves), manifest (stages), tables,
the randomised maps kept for figures, and the figures drawn from those files alone."""
import json

import pytest
import torch

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench import create_dataset
from lico_bench.cli import main
from lico_bench.explainers import create_explainer
from lico_bench.metrics import create_metric
from lico_bench.models import load_checkpoint
from tests.bench.test_runner import checkpoints  # noqa: F401  (the tiny baseline/LICO pair)
from tests.report.test_figures import check_png
from tests.tolerance import f32_tol

METRICS = ("randomisation_cascading", "randomisation_independent")


@pytest.fixture(scope="module")
def results(tmp_path_factory, checkpoints):
    d = tmp_path_factory.mktemp("rand")
    ckpts = checkpoints
    out = d / "res"
    argv = ["run", "--model", "baseline_tiny", "--model", "lico_tiny", "--method", "gradcam",
            "--metrics", ",".join(METRICS), "--metric-option", "randomisation_cascading.seed=3",
            "--n-images", "8", "--batch-size", "5", "--no-train", "--device", "cpu",
            "--out", str(out), "--quiet"]
    argv += [a for n, p in ckpts.items() for a in ("--checkpoint", f"{n}={p}")]
    assert main(argv) == 0
    return out, ckpts


def _rows(out, model):
    path = out / "rows" / f"shapes__{model}__gradcam__seed0.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_manifest_and_tables(results):
    out, ckpts = results
    man = json.loads((out / "manifest.json").read_text())
    for name in METRICS:
        assert man["metrics"][name]["higher_is_better"] is False
        assert man["metrics"][name]["stages"]["lico_tiny"] == ["fc", "conv2", "conv1"]
        assert man["metrics"][f"{name}_ssim"] == {"higher_is_better": False, "column_of": name}
    assert man["metrics"]["randomisation_cascading"]["options"]["seed"] == 3
    rows = _rows(out, "lico_tiny")
    assert [r["image_id"] for r in rows] == list(range(8))
    for r in rows:
        for name in METRICS:
            for col in (name, f"{name}_ssim"):
                assert len(r[f"curve_{col}"]) == 3
                # a mean of 3 values in [-1, 1]: ours rounded to float32 from float64, the
                # test's from the float32 curve points (3 terms, magnitude 1, two computations)
                assert abs(r[col] - sum(r[f"curve_{col}"]) / 3) <= f32_tol(3, 1.0)
    # the rows are the metric applied to the explainer's maps of the same images
    batch = create_dataset("shapes", "test").get_batch(list(range(5)))
    model = load_checkpoint(ckpts["lico_tiny"])
    targets = torch.tensor([r["target"] for r in rows[:5]])
    cam = create_explainer("gradcam")
    res = create_metric("randomisation_cascading", seed=3)(
        model, batch.images, cam(model, batch.images, targets), targets, explain=cam)
    got = torch.tensor([r["curve_randomisation_cascading"] for r in rows[:5]])
    # the run's first batch is these 5 images: the same computations, exactly
    assert torch.equal(got, res.curves)
    md = (out / "summary.md").read_text()
    for nice in ("Rand. cascading (Spearman)", "Rand. cascading (SSIM)",
                 "Rand. independent (Spearman)", "Rand. independent (SSIM)"):
        assert md.count(nice) == 2, nice          # the scores table and the paired table


def test_randomised_maps_kept_and_figures_from_files(results, tmp_path):
    out, _ = results
    saved = torch.load(out / "maps" / "shapes__baseline_tiny__gradcam__seed0.pt", weights_only=True)
    assert saved["maps"].shape == (5, 32, 32)
    for name in METRICS:
        assert saved["metric_maps"][name].shape == (4, 3, 32, 32)   # the first 4 images
    from lico_bench.report.figures import build_figures

    figs = build_figures(out, out=tmp_path / "figs", formats=("png",))
    for name in ("randomisation_cascading", "randomisation_independent",
                 "randomisation_maps_cascading", "randomisation_maps_independent"):
        check_png(figs[name][0], min_px=100)
