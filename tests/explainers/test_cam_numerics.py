"""CAM numerics: hand-computed maps, and agreement with captum and pytorch-grad-cam.

Where the definitions agree, the maps must be equal within a bound derived from the
computation: the comparisons run the model in float64 (ours and the peer library's
forwards; captum's and pytorch-grad-cam's recorded A and gradients are asserted bitwise
equal to ours), so only the float32 steps of each side remain (conftest.py):

* captum LayerGradCam(relu_attributions=True) + LayerAttribution.interpolate('bilinear') is
  Grad-CAM by the same definition, raw: compared directly at input resolution.
* pytorch-grad-cam returns ReLU'd maps min-max normalised at feature resolution, resized
  with cv2 (= bilinear, align_corners=False, for upsampling; checked below) and min-max
  normalised again, with eps 1e-7. Its raw map at feature resolution comes from its
  ``get_cam_image`` on the activations and gradients it recorded: compared with our
  ``low_res`` (raw). Its final output is compared with ours after applying the same two
  normalisations to our raw map.
"""
from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lico_bench.explainers import create_explainer
from lico_bench.explainers.base import upsample
from lico_bench.models import ModelCfg, create_model
from lico_bench.models.backbones import Classifier

from ..tolerance import f32_tol
from .conftest import (LogitRecorder, accumulations, cam_f64_tol, double, f64_tol,
                       forward_magnitudes, head_f64_tol, pg_minmax, pg_pipeline_tol,
                       prob_rel_tol, tiny_net)


def pg_equivalent(low_res: torch.Tensor, size) -> torch.Tensor:
    """Our raw feature-resolution map taken through pytorch-grad-cam's output pipeline."""
    return pg_minmax(upsample(pg_minmax(low_res), size))


# --------------------------------------------------------------------------------------
# hand-computed


def hand_net() -> Classifier:
    """x: [1, 3, 4, 4] -> A = conv(x): [1, 2, 2, 2] -> logits = W · GAP(A), W = [[1, -1], [.5, 2]].

    The conv (2x2, stride 2, no bias) sums input channel 0 over each 2x2 patch into A_0 and
    input channel 1 into A_1.
    """
    conv = nn.Conv2d(3, 2, kernel_size=2, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 1] = 1.0
    model = Classifier(nn.Sequential(OrderedDict(conv=conv)), 2, 2)
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        model.fc.bias.zero_()
    model.cfg = ModelCfg(name="hand", arch="hand", num_classes=2, image_size=4, cam_layer="features.conv")
    return model.eval()


def hand_image() -> torch.Tensor:
    """Channel 0 = 1 on the top-left 2x2 patch, channel 1 = 2 on the bottom-right patch:
    A_0 = [[4, 0], [0, 0]], A_1 = [[0, 0], [0, 8]]; GAP(A) = (1, 2); logits = (-1, 4.5)."""
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, :2, :2] = 1.0
    x[0, 1, 2:, 2:] = 2.0
    return x


# Bilinear 2 -> 4 upsampling (align_corners=False): output o reads input o/2 - 1/4, clamped
# to [0, 1]: o = 0, 1, 2, 3 -> weights on (a_0, a_1): (1, 0), (.75, .25), (.25, .75), (0, 1).
U = torch.tensor([1.0, 0.75, 0.25, 0.0])   # weights of the first cell along an axis
V = torch.tensor([0.0, 0.25, 0.75, 1.0])   # weights of the second cell


def test_gradcam_by_hand():
    # d logit_c / d A_k(i, j) = W[c, k] / 4 everywhere (GAP over 4 cells): w_k = W[c, k] / 4.
    # class 0: w = (1/4, -1/4): Σ w A = [[1, 0], [0, -2]], ReLU -> [[1, 0], [0, 0]]
    # class 1: w = (1/8, 1/2):  Σ w A = [[.5, 0], [0, 4]]
    model, x = hand_net(), hand_image()
    explainer = create_explainer("gradcam")
    maps = explainer(model, x.expand(2, -1, -1, -1), torch.tensor([0, 1]))
    expected0 = torch.outer(U, U)
    expected1 = 0.5 * torch.outer(U, U) + 4.0 * torch.outer(V, V)
    # exact: every value here (inputs, weights, W / 4, the sums, the upsampling weights 1/4,
    # 3/4) is a dyadic fraction of a few bits, so every float32 operation is exact
    assert torch.equal(maps[0], expected0)
    assert torch.equal(maps[1], expected1)
    # written out, class 0:
    assert torch.equal(maps[0], torch.tensor([
        [1.0, 0.75, 0.25, 0.0], [0.75, 0.5625, 0.1875, 0.0],
        [0.25, 0.1875, 0.0625, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    # targets=None: the predicted class, 1 (logits (-1, 4.5))
    assert torch.equal(explainer(model, x)[0], expected1)


def test_gradcampp_by_hand():
    # g = W[c, k] / 4 constant over the 4 cells; alpha = g^2 / (2 g^2 + ΣA g^3) (eq. 19);
    # w_k = Σ_ij alpha · ReLU(g) = 4 · alpha · ReLU(g).
    # class 1: k=0: g = 1/8, ΣA_0 = 4: alpha = (1/64) / (2/64 + 4/512) = 0.4, w_0 = 4·.4/8 = 0.2
    #          k=1: g = 1/2, ΣA_1 = 8: alpha = (1/4) / (1/2 + 1) = 1/6,    w_1 = 4/(6·2) = 1/3
    #          Σ w A = [[0.8, 0], [0, 8/3]]
    # class 0: k=1 has g = -1/4 < 0: ReLU(g) = 0, w_1 = 0;
    #          k=0: g = 1/4, ΣA_0 = 4: alpha = (1/16) / (2/16 + 4/64) = 1/3, w_0 = 4·(1/3)/4 = 1/3
    #          Σ w A = [[4/3, 0], [0, 0]]
    model, x = hand_net(), hand_image()
    maps = create_explainer("gradcampp")(model, x.expand(2, -1, -1, -1), torch.tensor([0, 1]))
    # eps = 1e-6 in alpha's denominator (as pytorch-grad-cam) moves each alpha, so each map
    # value, by a relative <= 1e-6 / (smallest denominator, 2/64 + 4/512); plus float32
    # rounding of the non-dyadic 1/3, 0.4, 1/6 (a few operations of 4-term sums, depth 3)
    # against the exact maps, at the map's scale
    want0 = 4 / 3 * torch.outer(U, U)
    want1 = 0.8 * torch.outer(U, U) + 8 / 3 * torch.outer(V, V)
    for got, want in ((maps[0], want0), (maps[1], want1)):
        scale = float(want.abs().max())
        tol = 1e-6 / (2 / 64 + 4 / 512) * scale + f32_tol(4, scale, depth=3)
        assert (got - want).abs().max() <= tol


# --------------------------------------------------------------------------------------
# captum


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return create_model("baseline_r18", 10).eval()


@pytest.fixture(scope="module")
def r18_images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def test_gradcam_equals_captum_layergradcam(r18, r18_images):
    from captum._utils.gradient import compute_layer_gradients_and_eval
    from captum.attr import LayerAttribution, LayerGradCam

    # float64 model and images: only our own float32 steps remain (module docstring)
    model, images = double(r18), r18_images.double()
    targets = torch.tensor([3, 7])          # classes whose maps are not all zero here
    explainer = create_explainer("gradcam")
    ours = explainer(model, images, targets)
    attr = LayerGradCam(model, model.features.layer4).attribute(
        images.clone(), target=targets, relu_attributions=True)          # [B, 1, 4, 4]
    ref = LayerAttribution.interpolate(attr, (32, 32), "bilinear")[:, 0].detach()  # float64
    assert ours.dtype == torch.float32 and ref.dtype == torch.float64
    assert (ref.amax(dim=(1, 2)) > 0).all()
    # captum's forward is ours: the same float64 forward on the same input gives bitwise the
    # same A and d logit / dA (what LayerGradCam computes its map from)
    acts, grads, _ = explainer.feature_maps(model, images, targets)
    c_grads, c_acts = compute_layer_gradients_and_eval(
        model, model.features.layer4, images.clone().requires_grad_(True), target_ind=targets)
    assert torch.equal(c_acts[0], acts) and torch.equal(c_grads[0], grads)
    # ours: the float64 map at feature resolution rounded once to float32 (low_res), then a
    # float32 bilinear upsampling (2 taps per axis, two passes, weights summing to 1, |terms|
    # <= m); captum's: float64 throughout, upsampled in float64. Plus the two float64 heads
    # from the same A and gradients (head_f64_tol: 16-term means, 512-term channel sums).
    m = float(ref.abs().max())
    w = explainer.weights(model, images, targets, acts, grads)
    tol = (f32_tol(1, m, computations=1) + f32_tol(2, m, depth=2, computations=1)
           + head_f64_tol(acts, w))
    assert (ours.double() - ref).abs().max() <= tol
    # the captum adapter, reduced and upsampled by our rule, gives the same map: captum's
    # float64 map (its own run of the same forward) cast to float32 (a one-channel sum adds
    # nothing) and upsampled in float32, against the same float64 ref: the same bound
    via_adapter = create_explainer("captum:LayerGradCam", attribute={"relu_attributions": True})(
        model, images, targets)
    assert (via_adapter.double() - ref).abs().max() <= tol


# --------------------------------------------------------------------------------------
# pytorch-grad-cam


def test_bilinear_upsampling_equals_cv2_resize():
    g = torch.Generator().manual_seed(0)
    for h, size in [(4, 32), (2, 16), (7, 224), (5, 32)]:
        a = torch.rand(1, h, h, generator=g)
        ref = cv2.resize(a[0].numpy(), (size, size))      # INTER_LINEAR
        # float32 both: 2 taps per axis, two passes, weights summing to 1 of values in [0, 1]
        assert np.abs(upsample(a, (size, size))[0].numpy() - ref).max() <= f32_tol(2, 1.0, depth=2)


def _pg_run(cam_cls, model, images, targets, recorded=False, **attrs):
    """pytorch-grad-cam's output and its raw feature-resolution CAM (hooks released); with
    ``recorded``, also the activations and gradients it recorded (torch tensors)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = model.get_submodule(model.cfg.cam_layer)
    cam = cam_cls(model=model, target_layers=[layer])
    for k, v in attrs.items():
        setattr(cam, k, v)
    try:
        tg = [ClassifierOutputTarget(int(t)) for t in targets]
        out = cam(input_tensor=images.clone(), targets=tg)
        t_acts = cam.activations_and_grads.activations[0]
        t_grads = (cam.activations_and_grads.gradients[0]
                   if cam.activations_and_grads.gradients else None)
        acts, grads = t_acts.numpy(), None if t_grads is None else t_grads.numpy()
        raw = None
        if grads is not None:  # get_cam_image recomputes the weights: gradient methods only
            raw = np.maximum(cam.get_cam_image(images, layer, tg, acts, grads), 0)
    finally:
        cam.activations_and_grads.release()
    for p in model.parameters():  # pytorch-grad-cam's loss.backward() fills .grad
        p.grad = None
    result = torch.from_numpy(out), None if raw is None else torch.from_numpy(raw)
    return (*result, (t_acts, t_grads)) if recorded else result


@pytest.mark.parametrize("name,cls_name", [("gradcam", "GradCAM"), ("gradcampp", "GradCAMPlusPlus")])
@pytest.mark.parametrize("which", ["tiny", "r18"])
def test_cam_equals_pytorch_grad_cam(name, cls_name, which, r18, r18_images):
    import pytorch_grad_cam

    if which == "tiny":
        g = torch.Generator().manual_seed(4)
        model, images = tiny_net(), torch.randn(3, 3, 16, 16, generator=g)
        targets = torch.tensor([1, 2, 3])
    else:                                   # classes whose Grad-CAM maps are not all zero
        model, images, targets = r18, r18_images, torch.tensor([3, 1])
    # float64 forwards (ours and pytorch-grad-cam's, which keeps the dtype in numpy up to
    # its np.float32 before the resize): only the float32 steps written below remain
    model, images = double(model), images.double()
    explainer = create_explainer(name)
    low = explainer.low_res(model, images, targets)                   # float32
    pg_out, pg_raw, (pg_acts, pg_grads) = _pg_run(
        getattr(pytorch_grad_cam, cls_name), model, images, targets, recorded=True)
    assert (low.amax(dim=(1, 2)) > 0).all() and pg_raw.dtype == torch.float64
    # its recorded A and gradients are ours: the same float64 forward, bitwise
    acts, grads, _ = explainer.feature_maps(model, images, targets)
    assert torch.equal(pg_acts, acts) and torch.equal(pg_grads, grads)
    # raw, at feature resolution: our float64 map rounded once to float32 against theirs in
    # float64, plus the two float64 heads on the same A and gradients (head_f64_tol)
    m = float(pg_raw.abs().max())
    d_raw = f32_tol(1, m, computations=1) + head_f64_tol(
        acts, explainer.weights(model, images, targets, acts, grads))
    assert (low.double() - pg_raw).abs().max() <= d_raw
    # final output: theirs vs ours through the same normalisation (pg_pipeline_tol)
    tol = pg_pipeline_tol(low, d_raw, images.shape[-2:])
    assert (pg_equivalent(low, images.shape[-2:]) - pg_out).abs().max() <= tol
    # the adapter is pytorch-grad-cam's own code on the same float64 forward (bitwise the
    # same A and gradients, above) and the same input: exactly its output
    adapter = create_explainer(f"gradcam:{cls_name}")(model, images, targets)
    assert torch.equal(adapter, pg_out)


def test_scorecam_gradcam_variant_equals_pytorch_grad_cam():
    from pytorch_grad_cam import ScoreCAM as PGScoreCAM

    # Two dead (constant 0) channels: their masks are 0, both score them on the zero image.
    # (A constant channel c != 0 differs: nn.UpsamplingBilinear2d (align_corners=True) turns
    # it into a map with float-rounding ripples of ~1e-7·c, which pytorch-grad-cam's
    # normalisation (eps 1e-8) blows up to a [0, 1] noise mask; ours is 0 as defined.)
    model = double(tiny_net(constant=(0.0, 0.0)))
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(6)).double()
    targets = torch.tensor([4, 0, 2])
    ours = create_explainer("scorecam", variant="grad-cam", mask_align_corners=True, batch_size=7)
    # the weights themselves, from pytorch-grad-cam's get_cam_weights on our activations
    # (float64 masks and forwards there; scores collected into a float32 tensor)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    with LogitRecorder(model) as rec:
        acts, _, _ = ours.feature_maps(model, images, targets)
        pg = PGScoreCAM(model=model, target_layers=[model.features.block])
        try:
            tg = [ClassifierOutputTarget(int(t)) for t in targets]
            pg_w = pg.get_cam_weights(images, None, tg, acts.numpy(), None)
        finally:
            pg.activations_and_grads.release()
        w = ours.weights(model, images, targets, acts, None).detach()
    pg_w = torch.from_numpy(pg_w)
    # Both: float64 logits rounded once to float32 (u |z| each, z the largest of the masked
    # forwards, recorded) and softmaxed over C = 16 channels in float32. The masked inputs
    # (float64 masks, batches of 7 vs 5) are within float64 rounding of each other and
    # bounded by |x| (masks in [0, 1]): the float64 logits within f64_tol at the |weights|
    # network's |z| (tiny_net: 73-term conv windows, depth of the forward + 2 for the mask).
    # Each weight, a softmax probability, within rho·w of the other (prob_rel_tol).
    _, z_bar, _ = forward_magnitudes(model, images, model.cfg.cam_layer)
    n, depth = accumulations(model)
    d_z = f32_tol(1, rec.max) + f64_tol(n, float(z_bar.max()), depth + 2)
    rho = prob_rel_tol(d_z, acts.shape[1])
    d_w = rho * w.double()
    assert ((w.double() - pg_w.double()).abs() <= d_w).all()
    # the final output: our raw map (float64 sum with our float32 weights, rounded to
    # float32) and theirs (its own weights, within d_w of ours): Σ_k d_w A_k, plus the
    # rounding u·max and the float64 sums (cam_f64_tol: the |weights| network's A); then
    # the pipeline (pg_pipeline_tol)
    low = ours.low_res(model, images, targets).detach()
    pg_out, _ = _pg_run(PGScoreCAM, model, images, targets, batch_size=5)
    d_raw = (float((d_w[:, :, None, None] * acts).sum(1).max())
             + f32_tol(1, float(low.max()), computations=1)
             + cam_f64_tol(model, images, model.cfg.cam_layer, w))
    tol = pg_pipeline_tol(low, d_raw, (16, 16))
    assert (pg_equivalent(low, (16, 16)) - pg_out).abs().max() <= tol


@pytest.mark.parametrize("name", ["gradcam", "gradcampp", "scorecam"])
def test_inplace_op_after_the_cam_layer(name, r18, r18_images):
    """The CAM layer's output is modified in place downstream: the recorded A must be the
    layer's output, not the modified tensor. The same net with out-of-place ops is the
    reference.

    (pytorch-grad-cam on CPU records ``output.cpu().detach()``, which aliases the output on
    CPU, so there it sees the in-place result; on CUDA ``.cpu()`` copies.)
    """
    def net(inplace):
        model = tiny_net()
        model.features.block[1] = nn.ReLU(inplace=inplace)
        return model.eval()

    images = r18_images[:, :, :16, :16]
    options = {"layer": "features.block.0"}
    if name == "scorecam":
        options["batch_size"] = 16
    a = create_explainer(name, **options)(net(True), images)
    b = create_explainer(name, **options)(net(False), images)
    assert a.abs().max() > 0
    assert torch.equal(a, b)          # the same arithmetic, only the ReLU's storage differs
