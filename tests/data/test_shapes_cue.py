"""shapes-cue / shapes-cue-clean: exact cue masks, unchanged objects, splits that are what
they say (counted), a probe that reads the label from the cue only where it should, and
scenes re-rendered without each part."""
import pytest
import torch

from lico_bench import UserError, create_dataset
from lico_bench.data.shapes import ShapesDataset, generate
from lico_bench.data.shapes_cue import CUE_COLOURS, CUE_SIZE, cue_painter
from tests.tolerance import f32_tol

N = 300  # images per split in these tests (one chunk)


@pytest.fixture(scope="module")
def cue_splits():
    return {s: create_dataset("shapes-cue", s, n=N) for s in ("train", "agree", "swap", "absent")}


def test_cue_mask_is_exactly_the_cue_pixels():
    # Without pixel noise, the image with the cue differs from the same scene without it
    # exactly on the cue mask, and there it is the cue's colour.
    record, masks = [], []
    paint = cue_painter("swap", 1.0, record)

    def keep(img, scene, drop, g):
        out = paint(img, scene, drop, g)
        masks.append(out["cue"])
        return out

    with_cue, labels, obj = generate("test", N, 32, 0, noise=0.0, extra=keep)
    plain, labels0, obj0 = generate("test", N, 32, 0, noise=0.0)
    cue_mask, cls = torch.cat(masks), torch.cat(record)
    assert torch.equal(labels, labels0) and torch.equal(obj, obj0)
    assert torch.equal((with_cue != plain).any(1), cue_mask)
    colours = (torch.tensor(CUE_COLOURS) * 255).round().to(torch.uint8)       # [10, 3]
    for i in range(0, N, 37):
        px = with_cue[i].permute(1, 2, 0)[cue_mask[i]]                            # [k*k, 3]
        assert len(px) == 36 and torch.equal(px, colours[cls[i]].expand_as(px))
        ys, xs = cue_mask[i].nonzero().unbind(1)                                 # a 6x6 square
        assert (ys.max() - ys.min(), xs.max() - xs.min()) == (5, 5)



@pytest.mark.parametrize("mode,split,size", [("swap", "test", 32), ("p", "train", 32),
                                             ("agree", "test", 64)])
def test_the_cue_keeps_a_one_pixel_gap_to_the_objects_bounding_circle(mode, split, size):
    """The module docstring's rule, on generated scenes: the cue square (its pixels
    [x0, x0 + k) x [y0, y0 + k), pixel i spanning [i, i + 1]) lies at least r + 1 from the
    object's centre (cx, cy), r the bounding circle's radius, for every image (the fallback
    corner included). Consequence on the masks: every object pixel centre lies within r of
    the centre and every cue pixel centre at least r + 1.5 from it, so no object pixel is
    among the 8 neighbours of a cue pixel (with no gap, they may touch)."""
    scenes, masks = [], []
    paint = cue_painter(mode, 1.0)

    def keep(img, scene, drop, g):
        out = paint(img, scene, drop, g)
        scenes.append(scene)
        masks.append(out["cue"])
        return out

    _, _, obj = generate(split, 1100, size, 0, noise=0.0, extra=keep)   # two chunks
    cue = torch.cat(masks)
    cx, cy, r = (torch.cat([s[k] for s in scenes]).double() for k in ("cx", "cy", "r"))
    k = max(2, round(CUE_SIZE * size))
    assert (cue.flatten(1).sum(1) == k * k).all()
    ys, xs = cue.any(2).double(), cue.any(1).double()                 # [N, S] rows / columns
    ar = torch.arange(size, dtype=torch.float64)
    y0 = (ar + size * (1 - ys)).amin(1)                               # first row of the square
    x0 = (ar + size * (1 - xs)).amin(1)
    gap = torch.hypot(cx - cx.clamp(x0, x0 + k), cy - cy.clamp(y0, y0 + k)) - r
    # the generator decides in float32 on values below 2 S: allow its rounding of the
    # distance (a hypot of two differences, 3 operations on magnitudes <= 2 S) and of r + 1
    assert gap.min().item() >= 1 - f32_tol(3, 2 * size, computations=1)
    near = torch.nn.functional.max_pool2d(cue[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0
    assert not (near & obj).any()


@pytest.mark.parametrize("split,scene", [("train", "train"), ("test", "test"), ("agree", "test"),
                                         ("swap", "test"), ("absent", "test")])
def test_object_mask_and_labels_unchanged_from_shapes(split, scene):
    d = create_dataset("shapes-cue", split, n=N, object_drop=0.0)
    base = ShapesDataset(scene, n=N)
    assert torch.equal(d.masks, base.masks) and torch.equal(d.labels, base.labels)
    assert not (d.cue_masks & d.masks).any()                  # the cue never touches the object
    # everything but the cue is the shapes image, noise included
    assert not ((d.images != base.images).any(1) & ~d.cue_masks).any()


def test_absent_split_is_shapes_and_splits_are_what_they_say(cue_splits):
    absent, agree, swap = cue_splits["absent"], cue_splits["agree"], cue_splits["swap"]
    assert torch.equal(absent.images, ShapesDataset("test", n=N).images)
    assert (absent.cue_labels == -1).all() and not absent.cue_masks.any()
    assert (agree.cue_labels == agree.labels).all()
    assert (swap.cue_labels != swap.labels).all() and (swap.cue_labels >= 0).all()
    # the swapped class is uniform over the nine others: every offset occurs, none dominates
    offsets = torch.bincount((swap.cue_labels - swap.labels) % 10, minlength=10)
    assert offsets[0] == 0 and (offsets[1:] > N / 9 / 3).all()
    # same scene, same cue position in the three splits
    assert torch.equal(agree.cue_masks, swap.cue_masks)
    assert (agree.cue_masks.flatten(1).sum(1) == 36).all()


def test_training_splits_agree_with_the_set_probability(cue_splits):
    assert (cue_splits["train"].cue_labels == cue_splits["train"].labels).all()   # shortcut: 100 %
    clean = create_dataset("shapes-cue-clean", "train")                           # 3200 images
    rate = (clean.cue_labels == clean.labels).float().mean().item()
    # independent of the label: agrees 1 time in 10 by chance (binomial sd 0.5 points)
    assert abs(rate - 0.1) < 0.02
    assert torch.equal(clean.masks, ShapesDataset("train").masks)
    half = create_dataset("shapes-cue", "train", n=2000, cue_p=0.5)
    rate = (half.cue_labels == half.labels).float().mean().item()
    assert abs(rate - (0.5 + 0.5 * 0.1)) < 0.04


def _cue_colour_features(ds):
    """Mean colour of each image's cue pixels: [N, 3] numpy."""
    x = ds.images.float() / 255                                        # [N, 3, H, W]
    m = ds.cue_masks.unsqueeze(1).float()
    return ((x * m).flatten(2).sum(2) / m.flatten(2).sum(2)).numpy()


def test_probe_on_the_cue_alone_reads_the_label_only_in_the_shortcut_split():
    from sklearn.linear_model import LogisticRegression

    accs = {}
    for name in ("shapes-cue", "shapes-cue-clean"):
        ds = create_dataset(name, "train", n=2000)
        x, y = _cue_colour_features(ds), ds.labels.numpy()
        probe = LogisticRegression(max_iter=2000).fit(x[:1500], y[:1500])
        accs[name] = float((probe.predict(x[1500:]) == y[1500:]).mean())
    assert accs["shapes-cue"] > 0.95
    assert accs["shapes-cue-clean"] < 0.1 + 0.06      # chance (500 test images: sd 1.3 points)


def test_same_seed_same_images_other_seed_other_images():
    a = create_dataset("shapes-cue", "swap", n=64, seed=3)
    b = create_dataset("shapes-cue", "swap", n=64, seed=3)
    c = create_dataset("shapes-cue", "swap", n=64, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.cue_masks, b.cue_masks)
    assert not torch.equal(a.images, c.images)


def test_bad_split_and_probability_are_one_line_errors():
    with pytest.raises(UserError, match="unknown split 'swapped' of shapes-cue; use one of"):
        create_dataset("shapes-cue", "swapped")
    with pytest.raises(UserError, match="cue_p must be a probability"):
        create_dataset("shapes-cue", "train", n=8, cue_p=1.5)


@pytest.mark.parametrize("name", ["shapes", "shapes-cue"])
def test_scene_parts_remove_exactly_one_part(name):
    ds = create_dataset(name, "test" if name == "shapes" else "swap", n=N)
    idx = [0, 5, 17, 299]
    sp = ds.scene_parts(idx)
    assert sp.names == (("object", "distractor0", "distractor1")
                        + (("cue",) if name == "shapes-cue" else ()))
    full = ds.get_batch(idx).images
    assert torch.equal(sp.masks[:, 0], ds.masks[idx])              # the object's own mask
    if name == "shapes-cue":
        assert torch.equal(sp.masks[:, 3], ds.cue_masks[idx])
    assert (sp.masks.sum(1) <= 1).all()                             # visible pixels: disjoint
    for p in range(len(sp.names)):
        changed = (sp.removed[:, p] != full).any(1)                 # [B, H, W]
        assert not (changed & ~sp.masks[:, p]).any()                # only the part's pixels move
        present = sp.masks[:, p].flatten(1).any(1)
        # and (almost) all of them do: a removed pixel keeps its value only by coincidence
        moved = (changed & sp.masks[:, p]).flatten(1).sum(1).float()
        size = sp.masks[:, p].flatten(1).sum(1).float()
        assert (moved[present] >= 0.9 * size[present]).all()
    # the object gone, its pixels show the grey background (saturation of a class colour
    # is ~0.7, of the background below 0.25 with tint, gratings and noise)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (ds.info.mean, ds.info.std))
    rgb = sp.removed[:, 0] * std + mean
    sat = (rgb.amax(1) - rgb.amin(1))[sp.masks[:, 0]]
    assert sat.mean() < 0.25 and sat.max() < 0.4
    sat_full = ((full * std + mean).amax(1) - (full * std + mean).amin(1))[sp.masks[:, 0]]
    assert sat_full.mean() > 0.5


def test_object_drop_removes_the_object_from_a_share_of_the_training_images():
    d = create_dataset("shapes-cue", "train", n=N)                   # object_drop 0.5
    keep = create_dataset("shapes-cue", "train", n=N, object_drop=0.0)
    gone = d.object_dropped
    assert 0.4 < gone.float().mean() < 0.6
    assert torch.equal(d.masks[~gone], keep.masks[~gone]) and not d.masks[gone].any()
    assert torch.equal(d.images[~gone], keep.images[~gone])
    assert torch.equal(d.cue_masks, keep.cue_masks) and torch.equal(d.labels, keep.labels)
    # a dropped image is the same scene without the object: it differs only on the object
    changed = (d.images[gone] != keep.images[gone]).any(1)
    assert not (changed & ~keep.masks[gone]).any() and changed.any()
    # only the training split drops objects, and only shapes-cue by default
    assert not create_dataset("shapes-cue", "test", n=N).object_dropped.any()
    assert not create_dataset("shapes-cue-clean", "train", n=N).object_dropped.any()
    with pytest.raises(UserError, match="needs an evaluation split"):
        d.scene_parts([0, 1])
