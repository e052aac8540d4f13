"""map_dependence in a run's rows: computed over the whole experiment at merge time, equal
to the kernel applied to the maps the explainer gives, with no extra model forwards."""
import json

import torch

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench import create_dataset, create_model
from lico_bench.bench import RunSpec, run
from lico_bench.explainers import create_explainer
from lico_bench.metrics.dependence import map_dependence, pool_maps
from lico_bench.models import load_checkpoint, save_checkpoint


def test_rows_carry_map_dependence_of_the_whole_experiment(tmp_path):
    info = create_dataset("shapes", "val", n=4).info
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "b.pt", create_model("baseline_tiny", 10, dataset_info=info).eval())
    spec = RunSpec(models=["baseline_tiny"], methods=["gradcam"], n_images=12, batch_size=5,
                   checkpoints={"baseline_tiny": str(ckpt)}, out=str(tmp_path / "res"),
                   train=False, device="cpu")
    out = run(spec, log=lambda *a: None, progress=False)
    rows = [json.loads(line) for line in
            (out / "rows" / "shapes__baseline_tiny__gradcam__seed0.jsonl").read_text().splitlines()]
    assert [r["image_id"] for r in rows] == list(range(12))
    assert not (out / "parts").exists()                        # pooled-map parts cleaned up
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["map_dependence"]["higher_is_better"] is False
    assert manifest["models"]["baseline_tiny"]["family"] == "baseline"
    # the same numbers from the explainer's maps of all 12 images at once (3 batches of 5)
    ds = create_dataset("shapes", "test")
    batch = ds.get_batch(list(range(12)))
    model = load_checkpoint(ckpt)
    targets = torch.tensor([r["target"] for r in rows])
    maps = create_explainer("gradcam")(model, batch.images, targets)
    want = map_dependence(pool_maps(maps), targets)
    got = torch.tensor([r["map_dependence"] for r in rows], dtype=torch.float32)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert torch.isfinite(got).sum() >= 2                       # some classes repeat in 12
    summary = (out / "summary.csv").read_text()
    assert "map_dependence" in summary
