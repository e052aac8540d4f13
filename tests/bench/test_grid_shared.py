"""``run --grid N`` with Score-CAM and RISE: a composite's N² cells reach the explainer in one
call, which forwards the composite's masked copies once for all its cells
(lico_bench.explainers.base.same_images); the rows are those of the per-item computation."""
import json

import pytest

import tests.colour as colour
import lico_bench.explainers.cam as cam_module
import lico_bench.explainers.rise as rise_module
from lico_bench.bench import RunSpec, run
from lico_bench.explainers.base import same_images
from lico_bench.models import save_checkpoint
from tests.explainers.conftest import per_item

LABELS = [i % 10 for i in range(40)]          # 4 images of each class


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return colour.write_colour_cifar10(tmp_path_factory.mktemp("c10"), LABELS)


def _spec(root, tmp_path, out, **kw):
    ck = {"baseline_colour": str(save_checkpoint(tmp_path / "b.pt", colour.colour_model())),
          "lico_colour": str(save_checkpoint(tmp_path / "l.pt", colour.colour_model("lico")))}
    args = dict(models=list(ck), methods=["scorecam", "rise"], dataset="cifar10",
                root=str(root), n_images=12, batch_size=8, grid=2, checkpoints=ck,
                method_options={"scorecam": {"batch_size": 1}, "rise": {"N": 100}},
                out=str(tmp_path / out), train=False, device="cpu")
    args.update(kw)
    args["checkpoints"] = {m: ck[m] for m in args["models"]}
    return RunSpec(**args)


def test_shared_forwards_give_the_rows_of_the_per_item_computation(root, tmp_path, monkeypatch):
    """The same run with sharing switched off (every item its own group: what Score-CAM and
    RISE computed before) writes the same rows files, byte for byte. Exact, because the two
    make the same operations on the same operands: scorecam.batch_size=1 makes every masked
    forward a one-image forward in both, RISE forwards the same chunks of masked copies of
    the same image in both, and a composite's cells are bitwise the same image (as are their
    activations: the colour model is elementwise)."""
    shared = run(_spec(root, tmp_path, "shared"), log=lambda *a: None, progress=False)
    monkeypatch.setattr(cam_module, "same_images", per_item)
    monkeypatch.setattr(rise_module, "same_images", per_item)
    ref = run(_spec(root, tmp_path, "per_item"), log=lambda *a: None, progress=False)
    files = sorted(p.name for p in (shared / "rows").glob("*.jsonl"))
    assert len(files) == 4 and files == sorted(p.name for p in (ref / "rows").glob("*.jsonl"))
    for name in files:
        assert (shared / "rows" / name).read_bytes() == (ref / "rows" / name).read_bytes(), name
    rows = [json.loads(x) for x in (shared / "rows" / files[0]).read_text().splitlines()]
    assert [r["image_id"] for r in rows] == list(range(12))
    assert len({r["target"] for r in rows[:4]}) == 4                   # 4 classes per composite


def test_a_composites_cells_are_explained_in_one_call(root, tmp_path, monkeypatch):
    """--batch-size 10 under --grid 2 explains 8 then 4 items per call (whole composites),
    not 10 then 2 (a composite split between calls would be forwarded twice)."""
    calls = []

    def spy(images):
        items, group = same_images(images)
        calls.append(tuple(items.shape))
        return items, group

    monkeypatch.setattr(rise_module, "same_images", spy)
    spec = _spec(root, tmp_path, "b10", batch_size=10, methods=["rise"], models=["baseline_colour"],
                 method_options={"rise": {"N": 8}})
    assert spec.explain_batch() == 8
    run(spec, log=lambda *a: None, progress=False)
    assert calls == [(2, 4), (1, 4)]                                   # [composites, cells]
    assert RunSpec(grid=3, batch_size=50).explain_batch() == 45
    assert RunSpec(grid=2, batch_size=3).explain_batch() == 4          # at least one composite
    assert RunSpec(batch_size=50).explain_batch() == 50                # no grid: unchanged
