"""map_dependence in a run's rows: computed over the whole experiment at merge time, equal
to the kernel applied to the maps the explainer gives, with no extra model forwards."""
import json

import torch

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench import create_dataset, create_model
from lico_bench.bench import RunSpec, run
from lico_bench.bench.thumbs import map_tiles
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
    # the same numbers from the explainer's maps of the 12 images, computed in the run's
    # batches (0-4, 5-9, 10-11), pooled and compared all at once: exactly the run's (the
    # same float computations; the rows' JSON floats round-trip)
    ds = create_dataset("shapes", "test")
    batch = ds.get_batch(list(range(12)))
    model = load_checkpoint(ckpt)
    targets = torch.tensor([r["target"] for r in rows])
    cam = create_explainer("gradcam")
    maps = torch.cat([cam(model, batch.images[i:i + 5], targets[i:i + 5]) for i in (0, 5, 10)])
    want = map_dependence(pool_maps(maps), targets)
    got = torch.tensor([r["map_dependence"] for r in rows], dtype=torch.float32)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert torch.isfinite(got).sum() >= 2                       # some classes repeat in 12
    summary = (out / "summary.csv").read_text()
    assert "map_dependence" in summary


def test_a_damaged_pooled_maps_part_is_one_line_and_only_its_batch_is_redone(tmp_path, capsys):
    """A killed run leaves parts/<exp>/NNNNNN.jsonl + .maps.pt + .thumbs.pt; if a .maps.pt is damaged the
    merge stops with one line naming it, and deleting it recomputes only that batch, ending
    with the rows of an uninterrupted run."""
    from lico_bench.cli import main

    info = create_dataset("shapes", "val", n=4).info
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "b.pt", create_model("baseline_tiny", 10, dataset_info=info).eval())
    out = tmp_path / "res"
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "10",
            "--batch-size", "5", "--checkpoint", f"baseline_tiny={ckpt}", "--no-train",
            "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    key = "shapes__baseline_tiny__gradcam__seed0"
    want = (out / "rows" / f"{key}.jsonl").read_text()
    # Rebuild the state a run killed just before merging leaves: both parts, no rows file.
    lines = want.splitlines(keepends=True)
    parts = out / "parts" / key
    parts.mkdir(parents=True)
    for start in (0, 5):
        rows = [json.loads(line) for line in lines[start:start + 5]]
        for r in rows:
            del r["map_dependence"]                          # the merge adds it
        (parts / f"{start:06d}.jsonl").write_text(
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    model = load_checkpoint(ckpt)
    ds = create_dataset("shapes", "test")
    for start in (0, 5):
        batch = ds.get_batch(list(range(start, start + 5)))
        targets = torch.tensor([json.loads(line)["target"] for line in lines[start:start + 5]])
        maps = create_explainer("gradcam")(model, batch.images, targets)
        torch.save(pool_maps(maps), parts / f"{start:06d}.maps.pt")
        torch.save(map_tiles(maps, 32), parts / f"{start:06d}.thumbs.pt")   # the browser's
    for f in (out / "rows").glob(f"{key}*"):
        f.unlink()
    (parts / "000005.maps.pt").write_bytes(b"not a torch file")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "000005.maps.pt is damaged" in err and "delete it" in err
    (parts / "000005.maps.pt").unlink()
    assert main(argv) == 0
    assert (out / "rows" / f"{key}.jsonl").read_text() == want
