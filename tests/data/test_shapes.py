"""The built-in ``shapes`` dataset: determinism, exact masks, no class evidence outside."""
import numpy as np
import pytest
import torch
from scipy import stats

from lico_bench import UserError, create_dataset, list_datasets
from lico_bench.data.shapes import CLASS_NAMES, boxes_from_masks, generate


def test_class_list_fixed_and_documented_order():
    assert CLASS_NAMES == ("red circle", "red square", "red triangle", "red cross", "red star",
                           "blue circle", "blue square", "blue triangle", "blue cross", "blue star")
    ds = create_dataset("shapes", "val", n=50)
    assert ds.info.class_names == CLASS_NAMES and ds.info.has_masks and ds.info.num_classes == 10
    assert "shapes" in list_datasets()


def test_same_seed_same_data():
    a = generate("train", 1100, 32, seed=3)  # two chunks
    b = generate("train", 1100, 32, seed=3)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    d = generate("train", 300, 32, seed=4)
    assert not torch.equal(d[0], a[0])
    e = generate("test", 300, 32, seed=3)
    assert not torch.equal(e[0], a[0])


@pytest.mark.parametrize("size", [32, 64, 128, 224])
def test_item_format_at_every_size(size):
    ds = create_dataset("shapes", "test", image_size=size, n=8)
    img, label, mask = ds[0]
    assert img.shape == (3, size, size) and img.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10
    assert mask.shape == (size, size) and mask.dtype == torch.bool and mask.any()
    batch = ds.get_batch([0, 1, 2])
    assert batch.images.shape == (3, 3, size, size) and batch.masks.shape == (3, size, size)
    assert torch.equal(batch.images[0], img)       # the same elementwise normalisation


def test_normalisation_uses_dataset_statistics():
    ds = create_dataset("shapes", "train", n=1024)
    x = ds.get_batch(range(1024)).images
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.02
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.02


def test_mask_is_exactly_the_painted_object():
    # Without pixel noise the object is one flat colour: the pixels of exactly that colour
    # are the mask, no more (no anti-aliased rim) and no fewer.
    images, labels, masks = generate("test", 400, 32, seed=0, noise=0.0)
    for i in range(len(images)):
        px = images[i].flatten(1).T  # [H*W, 3]
        inside = px[masks[i].flatten()]
        assert len(inside) > 0
        colour = inside[0]
        assert (inside == colour).all(), f"image {i}: object is not one flat colour"
        same = (px == colour).all(dim=1).view_as(masks[i])
        assert torch.equal(same, masks[i]), f"image {i}: mask differs from painted pixels"


def test_boxes_bound_the_masks():
    ds = create_dataset("shapes", "test", n=64)
    for i in range(64):
        ys, xs = ds.masks[i].nonzero(as_tuple=True)
        assert ds.boxes[i].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1,
                                        ys.max().item() + 1]
    m = torch.zeros(1, 5, 6, dtype=torch.bool)
    m[0, 1:3, 2:5] = True
    assert boxes_from_masks(m).tolist() == [[2, 1, 5, 3]]


def _colour_features(images, region):
    """Per-image normalised 4x4x4 colour histogram + mean/std of the pixels in ``region``."""
    x = (images.float() / 255.0)
    q = (x * 3.999).long()  # 4 levels per channel
    codes = q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]
    feats = []
    for i in range(len(images)):
        sel = region[i]
        h = torch.bincount(codes[i][sel], minlength=64).float()
        px = x[i][:, sel]
        feats.append(torch.cat([h / h.sum(), px.mean(1), px.std(1)]))
    return torch.stack(feats)


def _probe_accuracy(feats, labels, n_train, n_classes):
    """Held-out accuracy of a multinomial logistic regression on standardised features."""
    mu, sd = feats[:n_train].mean(0), feats[:n_train].std(0) + 1e-6
    z = (feats - mu) / sd
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(z.shape[1], n_classes)
    torch.nn.init.normal_(lin.weight, std=0.01, generator=g)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(z[:n_train]), labels[:n_train]) \
            + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (lin(z[n_train:]).argmax(1) == labels[n_train:]).float().mean().item()


def test_no_class_evidence_outside_the_mask():
    images, labels, masks = generate("train", 3000, 32, seed=11)
    outside = _colour_features(images, ~masks)
    inside = _colour_features(images, masks)
    colour = labels // 5
    # Control: the same colour statistics read the object's colour from inside the mask ...
    assert _probe_accuracy(inside, colour, 2000, 2) > 0.95
    # ... but outside it neither the colour (chance 0.5) nor the class (chance 0.1) can be
    # read better than chance (1000 held-out images: SE 0.016 and 0.0095).
    assert _probe_accuracy(outside, colour, 2000, 2) < 0.56
    assert _probe_accuracy(outside, labels, 2000, 10) < 0.14
    # And no single statistic differs between classes (one-way ANOVA, Bonferroni).
    f = outside.numpy()
    pvals = [stats.f_oneway(*[f[labels.numpy() == k, j] for k in range(10)]).pvalue
             for j in range(f.shape[1]) if np.std(f[:, j]) > 0]
    assert min(pvals) > 0.001 / len(pvals)


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="split"):
        create_dataset("shapes", "bogus")
    with pytest.raises(UserError, match="positive"):
        create_dataset("shapes", "test", n=0)
    with pytest.raises(UserError, match="unknown dataset"):
        create_dataset("shapez", "test")


def test_large_images_are_cached_to_disk_once(tmp_path, monkeypatch):
    from lico_bench.data import shapes

    monkeypatch.setenv("LICO_BENCH_CACHE", str(tmp_path))
    a = shapes.generate_cached("val", 6, 96, seed=2)
    files = list(tmp_path.glob("shapes-*-val-6-96px-seed2.pt"))
    assert len(files) == 1
    b = shapes.generate_cached("val", 6, 96, seed=2)  # read back
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    files[0].write_bytes(b"garbage")                  # a damaged cache file is regenerated
    c = shapes.generate_cached("val", 6, 96, seed=2)
    assert torch.equal(c[0], a[0])
    assert not list(tmp_path.glob("shapes-*-val-6-32px*"))  # small images are not cached
    shapes.generate_cached("val", 6, 32, seed=2)
    assert not list(tmp_path.glob("shapes-*-val-6-32px*"))
