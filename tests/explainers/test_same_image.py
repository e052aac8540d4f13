"""Score-CAM and RISE forward an image that appears several times in a batch (a grid
composite, one item per cell) once, and read every item's target from those outputs.

Differential: a batch holding one image with four targets (and another image) gives the
maps of separate one-image calls; two different images with the same target are never
merged; the model sees one set of masked copies per distinct image (the cost claim)."""
from __future__ import annotations

import pytest
import torch

from lico_bench.explainers import create_explainer
from lico_bench.explainers.base import same_images

from .conftest import contract_tol, double, per_item, tiny_net

SPECS = [("scorecam", {"batch_size": 7}), ("scorecam", {"baseline_subtract": True}),
         ("scorecam", {"variant": "grad-cam", "batch_size": 32}),
         ("rise", {"N": 40, "batch_size": 16})]
IDS = ["scorecam", "scorecam-cic", "scorecam-grad-cam", "rise"]


class ImagesSeen:
    """Counts the images pushed through ``model`` (a forward pre-hook) inside ``with``."""

    def __init__(self, model):
        self.model, self.n = model, 0

    def __enter__(self):
        def hook(m, args):
            self.n += args[0].shape[0]
        self.handle = self.model.register_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _images(seed: int, n: int = 2):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)).double()


def test_same_images_groups_by_exact_equality():
    x = _images(0, 3).float()
    y = x[1].clone()
    y[2, 5, 7] = torch.nextafter(y[2, 5, 7], torch.tensor(10.0))   # one value, one ulp away
    batch = torch.stack([x[0], x[1], x[0], y, x[0], x[2], x[1]])
    items, group = same_images(batch)
    # groups in order of first appearance, padded by repeating their first item
    assert items.tolist() == [[0, 2, 4], [1, 6, 1], [3, 3, 3], [5, 5, 5]]
    assert group.tolist() == [0, 1, 0, 2, 0, 3, 1]
    items, group = same_images(x)
    assert items.tolist() == [[0], [1], [2]] and group.tolist() == [0, 1, 2]


@pytest.mark.parametrize("name,options", SPECS, ids=IDS)
def test_one_image_with_four_targets_equals_four_separate_calls(name, options):
    # float64 model (tests/explainers/conftest.py): the shared and the separate calls differ
    # by the float64 forwards' rounding plus each explainer's float32 steps (contract_tol, the
    # bound of "a batch equals its images one by one"): the shared call forwards the same
    # masked inputs, in other batches, and reads the same outputs
    model = double(tiny_net())
    x, y = _images(3)
    batch = torch.stack([x, x, x, x, y])                            # a composite's 4 cells + another image
    targets = torch.tensor([0, 1, 2, 3, 1])
    explainer = create_explainer(name, **options)
    with ImagesSeen(model) as seen:
        shared = explainer(model, batch, targets)
    separate = torch.cat([explainer(model, batch[i:i + 1], targets[i:i + 1]) for i in range(5)])
    tol = contract_tol(name, options, model, batch, targets)
    assert (shared.double() - separate.double()).abs().max() <= tol
    # each item read its own class (with CIC only class 3's map is not zero for this image)
    assert shared[3].amax() > 0 and not torch.equal(shared[0], shared[3])
    # the cost: masked copies of x once (not 4 times) and of y once, exactly
    assert seen.n == masked_images(name, options, model, batch[[0, 4]], targets[[0, 4]]) + extra(
        name, options, len(batch))


def test_two_different_images_with_one_target_are_not_merged():
    # y is x with one value one ulp away: its maps are nearly x's, so only the forwards can
    # tell a merge; z is far from x: its maps must be its own (as a separate call's, within
    # contract_tol as above)
    model = double(tiny_net())
    x, z = _images(4)
    y = x.clone()
    y[0, 3, 3] = torch.nextafter(y[0, 3, 3], torch.tensor(10.0, dtype=torch.float64))
    batch = torch.stack([x, y, z])
    targets = torch.tensor([3, 3, 3])
    for name, options in SPECS:
        explainer = create_explainer(name, **options)
        with ImagesSeen(model) as seen:
            maps = explainer(model, batch, targets)
        assert seen.n == masked_images(name, options, model, batch, targets) + extra(
            name, options, len(batch)), name
        for i in range(3):
            one = explainer(model, batch[i:i + 1], targets[i:i + 1])
            tol = contract_tol(name, options, model, batch[i:i + 1], targets[i:i + 1])
            assert (maps[i].double() - one[0].double()).abs().max() <= tol, name
        # merged, z would carry x's map (the same outputs read for the same class): farther
        # from x's than the bound of two computations of one map
        assert (maps[2] - maps[0]).abs().max() > tol, name


def test_rise_shared_is_bitwise_the_per_item_computation(monkeypatch):
    # RISE's per-item path forwards each item's masked copies in the same chunks as the
    # shared path forwards its image's, and the saliency sum is the same [B, n] @ [n, H·W]
    # product: the same operations on the same operands, so the same bits
    model = tiny_net()
    x, y = _images(5)
    batch = torch.stack([x, x, y, x, x]).float()
    targets = torch.tensor([4, 0, 1, 2, 3])
    rise = create_explainer("rise", N=40, batch_size=16, seed=3)
    shared = rise(model, batch, targets)
    import lico_bench.explainers.rise as rise_module

    monkeypatch.setattr(rise_module, "same_images", per_item)
    assert torch.equal(shared, rise(model, batch, targets))


def masked_images(name, options, model, images, targets) -> int:
    """Images one pass per distinct image of ``images`` forwards besides the batch itself.
    RISE: N masked copies each. Score-CAM: one per non-constant channel of each image's CAM
    layer (counted here from the activations), plus one zero image for the baseline (CIC) or
    for constant channels (grad-cam variant)."""
    explainer = create_explainer(name, **options)
    if name == "rise":
        return explainer.resolved_options(model, images.shape[-2:])["N"] * len(images)
    acts, _, _ = explainer.feature_maps(model, images, targets)
    flat = acts.flatten(2)
    varying = flat.amax(dim=2) != flat.amin(dim=2)                  # [B, C]
    zero = options.get("baseline_subtract") or (
        options.get("variant") == "grad-cam" and not bool(varying.all()))
    return int(varying.sum()) + int(zero)


def extra(name, options, batch: int) -> int:
    """Score-CAM's one forward of the whole batch for the activations; RISE with given
    targets: none."""
    return 0 if name == "rise" else batch
