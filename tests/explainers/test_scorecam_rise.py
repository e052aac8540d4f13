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

from ..tolerance import f32_tol
from .conftest import (LogitRecorder, accumulations, cam_f64_tol, double, f64_tol,
                       forward_magnitudes, prob_rel_tol, tiny_net)

# --------------------------------------------------------------------------------------
# Score-CAM


def official_scorecam(model, image, target, baseline_subtract=False):
    """haofanwang/Score-CAM ``ScoreCAM.forward``, one image, one channel at a time
    (weights loop verbatim, but the weights in the activations' dtype - float64 in the
    tests - where the official code has float32; the map as ours: ReLU at feature
    resolution, then upsampled)."""
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
    weights = torch.zeros(activations.shape[1], dtype=activations.dtype)
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


def scorecam_tol(model, images, targets, explainer, computations: int = 1):
    """(weights [B, C], bound on the weights [B, C], bound on the maps) of our Score-CAM
    (official variant) on a float64 model against a float64 computation (the official loop
    in float64; ``computations=2``: against another run of ours).

    The official weights are softmax probabilities of the masked forwards. Ours take the
    float64 logits rounded once to float32 (u |z|, z the largest logit of the masked
    forwards, recorded) and a float32 softmax over K classes; the masked inputs (float64
    masks) are within float64 rounding of the reference's and bounded by |x|, so the float64
    logits differ by f64_tol at the |weights| network's |z| (depth of the forward + 2 for
    the mask). Each probability p is then within rho·p (prob_rel_tol); a weight w = p, or
    p - base with baseline_subtract, within rho·(|w| + 2 base). The map: Σ_k dw_k A_k (A >= 0
    after the ReLU), plus the float64 sums (cam_f64_tol), the rounding of the float64
    low-resolution map to float32 (u·max) and our float32 bilinear upsampling (2 taps per
    axis, two passes, convex: f32_tol(2, max, depth 2)) against a float64 one.
    """
    with LogitRecorder(model) as rec:
        acts, _, t = explainer.feature_maps(model, images, targets)
        w = explainer.weights(model, images, t, acts, None).detach()
        low = explainer.low_res(model, images, t).detach()
    _, z_bar, _ = forward_magnitudes(model, images, model.cfg.cam_layer)
    n, depth = accumulations(model)
    d_z = (f32_tol(1, rec.max, computations=computations)
           + f64_tol(n, float(z_bar.max()), depth + 2))
    rho = prob_rel_tol(d_z, model.fc.out_features)
    base = torch.zeros(len(t), 1, dtype=torch.float64)
    if explainer.baseline_subtract:
        with torch.no_grad():
            base = F.softmax(model(torch.zeros_like(images[:1])), 1)[0, t][:, None]
    d_w = rho * (w.double().abs() + 2 * base)
    m = float(low.abs().max())
    d_map = (float((d_w[:, :, None, None] * acts.double()).sum(1).max())
             + cam_f64_tol(model, images, model.cfg.cam_layer, torch.ones_like(w))
             + f32_tol(1, m, computations=computations)
             + f32_tol(2, m, depth=2, computations=computations))
    return w, d_w, d_map


@pytest.mark.parametrize("baseline_subtract", [False, True])
def test_scorecam_equals_official_loop(baseline_subtract):
    # float64 model and images: the official loop runs in float64; ours keeps its own
    # float32 steps (scorecam_tol)
    model = double(tiny_net(constant=(0.0, 2.0)))
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5)).double()
    # with baseline_subtract only class 3's maps are not all zero for these images (class
    # 1's weights are partly negative, the map 0: the weights still compare)
    targets = torch.tensor([3, 3, 1] if baseline_subtract else [1, 4, 0])
    explainer = create_explainer("scorecam", baseline_subtract=baseline_subtract, batch_size=5)
    maps = explainer(model, images, targets)
    assert (maps.amax(dim=(1, 2)) > 0).sum() >= 2     # a zero map compares nothing
    # |w_k| <= 1 (probabilities, or differences of two): cam_f64_tol with w = 1
    w, d_w, d_map = scorecam_tol(model, images, targets, explainer)
    for b in range(3):
        ref_map, ref_w = official_scorecam(model, images[b:b + 1], int(targets[b]), baseline_subtract)
        assert ref_map.dtype == ref_w.dtype == torch.float64
        assert ((w[b].double() - ref_w).abs() <= d_w[b]).all()
        assert (maps[b].double() - ref_map).abs().max() <= d_map
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
    # float64 model: two computations that differ only in the batching of the masked
    # forwards, each with Score-CAM's float32 steps (scorecam_tol, both sides float32)
    model = double(tiny_net())
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7)).double()
    a = create_explainer("scorecam", batch_size=1)(model, images)
    b = create_explainer("scorecam", batch_size=100)(model, images)
    _, _, d_map = scorecam_tol(model, images, None, create_explainer("scorecam", batch_size=1),
                               computations=2)
    assert (a - b).abs().max() <= d_map


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
        ref = torch.from_numpy(up[sh[n]:sh[n] + H, sw[n]:sw[n] + W])          # float64
        # ours: Ry @ grid @ Rx^T in float32 with the float64 interpolation weights rounded
        # to float32 (relative u each, two factors per term): s terms per product, two
        # products, non-negative terms summing to <= 1 (each row's weights sum to 1, the
        # grid is 0/1); skimage's in float64
        tol = f32_tol(4, 1.0, depth=2, computations=1) + 2 * f32_tol(1, 1.0, computations=1)
        assert (masks[n].double() - ref).abs().max() <= tol
    # chunking does not change the masks
    other = torch.cat(list(create_explainer("rise", N=20, s=4, seed=3, batch_size=20).masks(H, W)))
    assert torch.equal(masks, other)


def test_rise_equals_its_formula():
    # float64 model: the reference sum in float64; RISE keeps its float32 steps
    model = double(tiny_net())
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8)).double()
    targets = torch.tensor([3, 1])
    rise = create_explainer("rise", N=40, s=3, p=0.3, seed=1, batch_size=16)
    with LogitRecorder(model) as rec:
        maps = rise(model, images, targets)
    masks = torch.cat(list(rise.masks(16, 16)))                          # [N, H, W] float32
    # RISE: float64 logits (the same masked inputs, chunks of 16 vs all 40: f64_tol at the
    # |weights| network's |z|) rounded once to float32 (u |z|, the largest logit recorded),
    # a float32 softmax over 5 classes: each probability within rho·p (prob_rel_tol), so
    # the map, a sum of p_n m_n >= 0, within rho·S; then Σ_n p_n m_n accumulated in float32
    # over N = 40 non-negative terms (f32_tol(40, S)) and one division.
    _, z_bar, _ = forward_magnitudes(model, images, model.cfg.cam_layer)
    n, depth = accumulations(model)
    rho = prob_rel_tol(f32_tol(1, rec.max, computations=1)
                       + f64_tol(n, float(z_bar.max()), depth + 1), 5)
    for b in range(2):  # S = Σ_n P(target | x ⊙ m_n) m_n / (N p)
        with torch.no_grad():
            probs = F.softmax(model(images[b] * masks[:, None].double()), dim=1)[:, targets[b]]
        ref = (probs[:, None, None] * masks.double()).sum(0) / (40 * 0.3)            # float64
        s = float(ref.max())
        tol = rho * s + f32_tol(40, s, computations=1) + f32_tol(1, s, computations=1)
        assert (maps[b].double() - ref).abs().max() <= tol


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
