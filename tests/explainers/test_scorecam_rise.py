"""Score-CAM against a transcription of the official code; RISE masks and saliency."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lico_bench.explainers import create_explainer
from lico_bench.explainers.base import upsample
from lico_bench.explainers.rise import default_grid

from .conftest import tiny_net

# --------------------------------------------------------------------------------------
# Score-CAM


def official_scorecam(model, image, target, baseline_subtract=False):
    """haofanwang/Score-CAM ``ScoreCAM.forward``, one image, one channel at a time
    (weights loop verbatim; the map as ours: ReLU at feature resolution, then upsampled)."""
    _, _, h, w = image.shape
    store = []
    handle = model.features.block.register_forward_hook(lambda m, i, o: store.append(o))
    try:
        with torch.no_grad():
            model(image)
    finally:
        handle.remove()
    activations = store[0]
    base = 0.0
    if baseline_subtract:
        base = F.softmax(model(torch.zeros_like(image)), dim=1)[0][target]
    weights = torch.zeros(activations.shape[1])
    with torch.no_grad():
        for i in range(activations.shape[1]):
            saliency_map = torch.unsqueeze(activations[:, i, :, :], 1)
            saliency_map = F.interpolate(saliency_map, size=(h, w), mode="bilinear", align_corners=False)
            if saliency_map.max() == saliency_map.min():
                continue
            norm_saliency_map = (saliency_map - saliency_map.min()) / (saliency_map.max() - saliency_map.min())
            output = model(image * norm_saliency_map)
            score = F.softmax(output, dim=1)[0][target]
            weights[i] = score - base
    cam = F.relu((weights[:, None, None] * activations[0]).sum(0))
    return upsample(cam[None], (h, w))[0], weights


@pytest.mark.parametrize("baseline_subtract", [False, True])
def test_scorecam_equals_official_loop(baseline_subtract):
    model = tiny_net(constant=(0.0, 2.0))
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    targets = torch.tensor([1, 4, 0])
    explainer = create_explainer("scorecam", baseline_subtract=baseline_subtract, batch_size=5)
    maps = explainer(model, images, targets)
    acts, _, _ = explainer.feature_maps(model, images, targets)
    w = explainer.weights(model, images, targets, acts, None)
    for b in range(3):
        ref_map, ref_w = official_scorecam(model, images[b:b + 1], int(targets[b]), baseline_subtract)
        torch.testing.assert_close(w[b], ref_w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(maps[b], ref_map, rtol=1e-5, atol=1e-6)
    assert (w[:, :2] == 0).all()  # constant channels are skipped
    if baseline_subtract:
        assert (w[:, 2:] < 1).all() and (w < 0).any()


@pytest.mark.parametrize("options", [{}, {"baseline_subtract": True}, {"variant": "grad-cam"},
                                     {"variant": "grad-cam", "mask_align_corners": True}])
def test_scorecam_constant_channels_no_nan(options):
    model = tiny_net(constant=(0.0, 1.0, 3.0))
    images = torch.randn(2, 3, 16, 16)
    explainer = create_explainer("scorecam", **options)
    maps = explainer(model, images)
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    acts, _, targets = explainer.feature_maps(model, images, None)
    w = explainer.weights(model, images, targets, acts, None)
    assert torch.isfinite(w).all()
    if options.get("variant") == "grad-cam":  # all constant channels scored on the zero image
        assert torch.equal(w[:, 0], w[:, 1]) and torch.equal(w[:, 0], w[:, 2])


def test_scorecam_batch_size_does_not_change_maps():
    model, images = tiny_net(), torch.randn(2, 3, 16, 16)
    a = create_explainer("scorecam", batch_size=1)(model, images)
    b = create_explainer("scorecam", batch_size=100)(model, images)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------
# RISE


def test_rise_masks_equal_reference_generate_masks():
    """eclique/RISE generate_masks: skimage resize(order=1, mode='reflect') then crop."""
    from skimage.transform import resize

    rise = create_explainer("rise", N=20, s=4, p=0.5, seed=3, batch_size=7)
    H, W = 30, 32                       # not a multiple of s: cell = ceil(H / s)
    masks = torch.cat(list(rise.masks(H, W)))
    assert masks.shape == (20, H, W) and masks.min() >= 0 and masks.max() <= 1
    # the documented draw order: grids, then row shifts, then column shifts
    gen = torch.Generator().manual_seed(3)
    grids = (torch.rand(20, 4, 4, generator=gen) < 0.5).float().numpy()
    ch, cw = math.ceil(H / 4), math.ceil(W / 4)
    sh = torch.randint(0, ch, (20,), generator=gen)
    sw = torch.randint(0, cw, (20,), generator=gen)
    for n in range(20):
        up = resize(grids[n], (5 * ch, 5 * cw), order=1, mode="reflect", anti_aliasing=False)
        ref = torch.from_numpy(up[sh[n]:sh[n] + H, sw[n]:sw[n] + W]).float()
        torch.testing.assert_close(masks[n], ref, rtol=0, atol=1e-6)
    # chunking does not change the masks
    other = torch.cat(list(create_explainer("rise", N=20, s=4, seed=3, batch_size=20).masks(H, W)))
    assert torch.equal(masks, other)


def test_rise_equals_its_formula():
    model, images = tiny_net(), torch.randn(2, 3, 16, 16)
    targets = torch.tensor([3, 1])
    rise = create_explainer("rise", N=40, s=3, p=0.3, seed=1, batch_size=16)
    maps = rise(model, images, targets)
    masks = torch.cat(list(rise.masks(16, 16)))                          # [N, H, W]
    for b in range(2):  # S = Σ_n P(target | x ⊙ m_n) m_n / (N p)
        with torch.no_grad():
            probs = F.softmax(model(images[b] * masks[:, None]), dim=1)[:, targets[b]]
        ref = (probs[:, None, None] * masks).sum(0) / (40 * 0.3)
        torch.testing.assert_close(maps[b], ref, rtol=1e-5, atol=1e-6)


class RegionModel(nn.Module):
    """Class 0's logit is 10 x the mean of the top-left 8x8 region; class 1's is 0."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        s = self.scale * x[:, :, :8, :8].mean(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_rise_finds_the_region():
    model = RegionModel().eval()
    images = torch.ones(1, 3, 32, 32)
    maps = create_explainer("rise")(model, images, torch.tensor([0]))   # defaults: N=500, s=4
    flat = int(maps[0].argmax())
    assert flat // 32 < 8 and flat % 32 < 8
    inside = maps[0, :8, :8].mean()
    outside = torch.cat([maps[0, 8:].flatten(), maps[0, :8, 8:].flatten()])
    assert inside > outside.max()


def test_rise_defaults_scale_with_image_size():
    assert default_grid(32, 32) == (500, 4)
    assert default_grid(224, 224) == (4000, 7)
    rise = create_explainer("rise")
    assert rise.options == {"N": None, "s": None, "p": 0.5, "seed": 0, "batch_size": 64}
    assert rise.resolved_options(None, (32, 32))["N"] == 500
    assert create_explainer("rise", N=10).resolved_options(None, (224, 224))["N"] == 10


def test_captum_occlusion_defaults_scale_with_image_size():
    occ = create_explainer("captum:Occlusion")
    at32 = occ.resolved_options(tiny_net(), (32, 32))["attribute"]
    at224 = occ.resolved_options(tiny_net(), (224, 224))["attribute"]
    assert at32["sliding_window_shapes"] == [3, 3, 3] and at32["strides"] == [3, 2, 2]
    assert at224["sliding_window_shapes"] == [3, 15, 15] and at224["strides"] == [3, 8, 8]
