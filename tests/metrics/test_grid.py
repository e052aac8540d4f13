"""The grid pointing game: composites (lico_bench.data.grid) against plain loops, the grid
score against a plain loop, and by construction with a model that sees only colour (a cell's
class is found in that cell and nowhere else: score 1 for every cell)."""
import pytest
import torch

import tests.colour as colour
from lico_bench.data import DatasetInfo, TensorImageDataset, create_dataset
from lico_bench.data.grid import (GridDataset, cell_box, cell_masks, max_composites,
                                  plan_composites, tile)
from lico_bench.errors import UserError
from lico_bench.explainers import create_explainer
from lico_bench.metrics import create_metric, grid_score
from tests.tolerance import EPS32, EPS64, gamma


@pytest.mark.parametrize("n", [2, 3])
def test_tile_and_cell_masks_against_a_plain_loop(n):
    g = torch.Generator().manual_seed(n)
    k, h, w = 2, 5, 7
    images = torch.randn(k * n * n, 3, h, w, generator=g)
    comp = tile(images, n)
    assert comp.shape == (k, 3, n * h, n * w)
    for j in range(k):
        for i in range(n * n):
            y0, y1, x0, x1 = i // n * h, (i // n + 1) * h, i % n * w, (i % n + 1) * w
            assert cell_box(i, n, h, w) == (y0, y1, x0, x1)
            assert torch.equal(comp[j, :, y0:y1, x0:x1], images[j * n * n + i])   # exact copy
    cells = torch.arange(n * n)
    masks = cell_masks(cells, n, h, w)
    for i in range(n * n):
        want = torch.zeros(n * h, n * w, dtype=torch.bool)
        y0, y1, x0, x1 = cell_box(i, n, h, w)
        want[y0:y1, x0:x1] = True
        assert torch.equal(masks[i], want)


def test_plan_draws_distinct_classes_never_reuses_an_image_and_is_seeded():
    labels = torch.arange(40) % 10                       # 4 images of each of 10 classes
    ids = torch.arange(100, 140)                         # ids in the split, not 0..M-1
    plan = plan_composites(ids, labels, 2, 9, seed=3)
    assert plan.shape == (9, 4)
    lab_of = dict(zip(ids.tolist(), labels.tolist()))
    for row in plan.tolist():
        assert len({lab_of[i] for i in row}) == 4        # distinct classes in a composite
    assert len(set(plan.flatten().tolist())) == 36       # no image twice
    assert torch.equal(plan, plan_composites(ids, labels, 2, 9, seed=3))
    assert not torch.equal(plan, plan_composites(ids, labels, 2, 9, seed=4))
    assert max_composites(labels, 2) == 10               # 40 images, 4 per composite
    assert max_composites(labels, 3) == 4                # 9 distinct of 10 classes, 4 each
    with pytest.raises(UserError, match="fill only"):
        plan_composites(ids, labels, 2, 11, seed=0)      # 44 images > 40
    with pytest.raises(UserError, match="fill only"):   # 3 classes cannot fill a 2 x 2 grid
        plan_composites(ids[:30], labels[:30] % 3, 2, 1, seed=0)


def test_grid_dataset_items_against_a_plain_loop():
    base = create_dataset("shapes", "test", image_size=16, n=16)
    n = 2
    plan = torch.tensor([[3, 0, 7, 12], [5, 9, 1, 2]])
    gd = GridDataset(base, plan, n, extra={"n": n})
    assert len(gd) == 8 and gd.info.image_size == 32 and gd.info.has_masks
    batch = gd.get_batch([6, 1, 4])
    for b, j in enumerate([6, 1, 4]):
        comp, cell = divmod(j, 4)
        for i in range(4):
            y0, y1, x0, x1 = cell_box(i, n, 16, 16)
            img, lab, _ = base[int(plan[comp, i])]
            assert torch.equal(batch.images[b, :, y0:y1, x0:x1], img)
        assert int(batch.labels[b]) == base[int(plan[comp, cell])][1]
        assert torch.equal(batch.masks[b], cell_masks(torch.tensor([cell]), n, 16, 16)[0])
    rows = gd.row_fields([6])
    assert rows == [{"grid_composite": 1, "grid_cell": 2, "grid_image_ids": [5, 9, 1, 2],
                     "grid_source_id": 1}]


def _reference_grid_score(m, mask):
    """Plain loop in Python floats (double): sum of max(A, 0) in the mask / in the map."""
    inside = total = 0.0
    for y in range(m.shape[0]):
        for x in range(m.shape[1]):
            v = max(float(m[y, x]), 0.0)
            total += v
            inside += v if mask[y, x] else 0.0
    return (inside / total if total > 0 else 0.0), total == 0


def test_grid_score_against_a_plain_loop_with_its_conventions():
    g = torch.Generator().manual_seed(0)
    n, h, w = 3, 4, 5
    maps = torch.randn(6, n * h, n * w, generator=g)
    maps[3] = -maps[3].abs()                              # no positive mass: 0, flagged
    maps[4] = 0.0                                         # all zero: 0, flagged
    cells = torch.tensor([0, 4, 8, 2, 5, 7])
    masks = cell_masks(cells, n, h, w)
    masks[5] = False                                      # an empty mask: NaN
    score, none = grid_score(maps, masks)
    # float64 sums of H*W terms of magnitude <= the total (each side: gamma_HW(EPS64) * total),
    # then one rounding to float32 (EPS32 / 2 relative): against a double loop
    for j in range(5):
        want, want_none = _reference_grid_score(maps[j], masks[j])
        tol = 2 * gamma(maps[j].numel(), EPS64) + EPS32 / 2 * want
        assert abs(float(score[j]) - want) <= tol, j
        assert bool(none[j]) == want_none
    assert score[3] == 0 and score[4] == 0 and none[3] and none[4]
    assert torch.isnan(score[5])
    res = create_metric("grid_score")(None, None, maps, masks=masks)
    torch.testing.assert_close(res.values, score, rtol=0, atol=0, equal_nan=True)   # same kernel
    assert torch.equal(res.columns["no_positive"][0], none.float())
    assert create_metric("grid_score").higher_is_better


def test_a_model_that_sees_one_colour_per_class_scores_1_on_every_cell():
    """Composite of 2 x 2 solid images of four palette colours; the colour model's Grad-CAM
    for class c is relu(scale/(hw) * A_c), exactly the cell of colour c: score 1 (exact: the
    other cells' values are exactly 0). A cell offset by one would give 0."""
    palette = colour.palette_normalised()
    classes = [7, 2, 5, 0]
    cells = palette[classes][:, :, None, None].expand(4, 3, 8, 8)   # [4, 3, 8, 8]
    comp = tile(cells.contiguous(), 2).expand(4, 3, 16, 16)         # the composite, 4 times
    model = colour.colour_model("baseline")
    targets = torch.tensor(classes)
    maps = create_explainer("gradcam")(model, comp, targets)
    score, none = grid_score(maps, cell_masks(torch.arange(4), 2, 8, 8))
    assert score.tolist() == [1.0, 1.0, 1.0, 1.0] and not none.any()
    pg = create_metric("pointing_game", tolerance=0)(None, None, maps,
                                                     masks=cell_masks(torch.arange(4), 2, 8, 8))
    assert pg.values.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_grid_dataset_works_on_any_in_memory_dataset():
    """A TensorImageDataset made here (not in the registry) composes as well."""
    info = DatasetInfo("toy", tuple("abcd"), (0.5,) * 3, (0.25,) * 3, 8, has_masks=False)
    imgs = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).remainder(256).to(torch.uint8).view(4, 3, 8, 8)
    ds = TensorImageDataset(info, "test", imgs, torch.tensor([0, 1, 2, 3]))
    gd = GridDataset(ds, torch.tensor([[2, 0, 3, 1]]), 2, extra={})
    b = gd.get_batch([0, 1, 2, 3])
    assert b.labels.tolist() == [2, 0, 3, 1]
    assert torch.equal(b.images[0, :, :8, :8], ds[2][0]) and torch.equal(b.images[0, :, 8:, 8:], ds[1][0])
