"""Insertion / deletion curves and AUC (Petsiuk et al. 2018)."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lico_bench.errors import UserError
from lico_bench.metrics import (auc, causal_curves, default_step, deletion_curve,
                                gaussian_blur, gaussian_kernel1d, insertion_curve, num_steps,
                                pixel_order, pixel_rank)

from ..tolerance import EPS64, f32_tol, gamma
from .conftest import (CountingModel, Linear2, TinyConv, curve_tol, prob_tol, tiny_logit_magnitude,
                       tiny_logit_tol)


# ----------------------------------------------------------------------------- AUC

def test_auc_hand_computed():
    curves = torch.tensor([[0.0, 1.0, 0.5],                 # (1.5 - 0 - 0.25) / 2 = 0.625
                           [1.0, 1.0, 1.0],                 # 1
                           [0.0, 0.0, 0.0]])                # 0
    # exact: binary fractions, summed in float64
    assert torch.equal(auc(curves), torch.tensor([0.625, 1.0, 0.0]))
    five = torch.tensor([[0.2, 0.4, 0.6, 0.8, 1.0]])       # (3.0 - 0.1 - 0.5) / 4 = 0.6
    # the 5 inputs each rounded once to float32 (exact float64 sum), the result once:
    # within gamma_5 of the |terms| (0.1 + 0.4 + 0.6 + 0.8 + 0.5) / 4 = 0.6, one computation
    assert abs(auc(five).item() - 0.6) <= f32_tol(5, 0.6, computations=1)
    assert auc(five).dtype == torch.float32
    with pytest.raises(UserError):
        auc(torch.tensor([[1.0]]))


# ----------------------------------------------------------------------------- defaults

def test_default_step_and_points():
    assert default_step(224, 224) == 224 * 8 and num_steps(224, 224, 224 * 8) == 28
    assert default_step(32, 32) == 32 and num_steps(32, 32, 32) == 32
    assert default_step(64, 64) == 128 and num_steps(64, 64, 128) == 32
    assert num_steps(8, 8, 5) == 13                        # last step partial: ceil(64 / 5)
    m = TinyConv().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sal = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0))
    assert deletion_curve(m, x, sal, step=None).shape == (2, 33)


# ----------------------------------------------------------------------------- blur

def test_blur_is_the_rise_gkern():
    """RISE: gkern = scipy gaussian_filter of a centred delta; conv2d, padding klen//2."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    k = gaussian_filter(delta, 5)
    k1 = gaussian_kernel1d(11, 5.0, "rise")
    # float64 both: scipy's two 41-tap passes (radius 20) vs our folded sums, kernel values
    # of total 1 (positive terms): f32_tol(41, 1, depth 2) at float64 eps, two computations
    assert np.abs(np.outer(k1.numpy(), k1.numpy()) - k).max() <= f32_tol(41, 1.0, depth=2,
                                                                           eps=EPS64)
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    kern = torch.zeros(3, 3, 11, 11)
    for c in range(3):
        kern[c, c] = torch.from_numpy(k).float()
    # two float32 convolutions: 121 non-zero taps (the cross-channel zeros add exactly 0)
    # plus the kernel's own float32 rounding (our outer product vs scipy's 2-D kernel): 122
    # terms; positive kernel, so the |terms| sum to blur(|x|)
    tol = f32_tol(122, float(gaussian_blur(x.abs()).max()))
    assert (gaussian_blur(x) - F.conv2d(x, kern, padding=5)).abs().max() <= tol
    s = gaussian_kernel1d(11, 5.0, "sampled")
    # symmetric exactly (the same squares), sums to 1 within float64 rounding of the 11-term
    # normaliser, 11 divisions and the 11-term sum (depth 2, one computation vs exact 1)
    assert torch.equal(s, s.flip(0))
    assert abs(float(s.sum()) - 1) <= f32_tol(12, 1.0, depth=2, computations=1, eps=EPS64)


# ----------------------------------------------------------------------------- order

def test_ties_follow_flat_index():
    const = torch.full((1, 3, 4), 0.5)
    assert pixel_order(const)[0].tolist() == list(range(12))
    m = torch.tensor([[[0.0, 2.0, 1.0], [2.0, 1.0, 0.0]]])  # flat: 0 2 1 | 2 1 0
    assert pixel_order(m)[0].tolist() == [1, 3, 2, 4, 0, 5]
    assert pixel_rank(m)[0].tolist() == [4, 0, 2, 1, 3, 5]


def test_constant_map_deletes_in_flat_order(tiny, images):
    const = torch.zeros(4, 8, 8)
    by_index = -torch.arange(64.0).view(1, 8, 8).expand(4, 8, 8)  # strictly lower later
    a = deletion_curve(tiny, images, const, step=5)
    b = deletion_curve(tiny, images, by_index, step=5)
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- reference loop

def reference_curve(model, image, sal, target, step, mode, score="softmax"):
    """The definition, one image at a time: sort pixels, set them step by step, forward.
    Computed in float64 (model, image and blur): [n+1] float64."""
    model = copy.deepcopy(model).double()
    image = image.double()
    c, h, w = image.shape
    order = sorted(range(h * w), key=lambda p: (-float(sal.flatten()[p]), p))
    if mode == "deletion":
        cur, end = image.clone(), torch.zeros_like(image)
    else:
        cur, end = gaussian_blur(image[None])[0], image.clone()
    n = math.ceil(h * w / step)
    out = []
    for k in range(n + 1):
        with torch.no_grad():
            z = model(cur[None])[0]
        out.append(float((z.softmax(0) if score == "softmax" else z)[target]))
        for p in order[k * step:(k + 1) * step]:
            cur[:, p // w, p % w] = end[:, p // w, p % w]
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("score", ["softmax", "logit"])
def test_equals_per_image_reference_loop(tiny, images, maps, score):
    step = 5                                               # 64 px: 13 steps, last one partial
    with torch.no_grad():
        pred = tiny(images).argmax(1)
    got = causal_curves(tiny, images, maps, None, step=step, score=score, batch_size=16)
    # batched float32 forwards vs a float64 one-image reference: one float32 computation,
    # plus the float32 blur for insertion (curve_tol: 28-term conv window, depth 3, the
    # |weights| network's logit ~64 on these images: <= 5.5e-4 on logits)
    tol = {"deletion": curve_tol(tiny, images, score, computations=1),
           "insertion": curve_tol(tiny, images, score, computations=1, blur=True)}
    for mode in ("insertion", "deletion"):
        assert got[mode].shape == (4, 14) and got[mode].dtype == torch.float32
        ref = torch.stack([reference_curve(tiny, images[i], maps[i], int(pred[i]), step, mode, score)
                           for i in range(4)])
        assert (got[mode].double() - ref).abs().max() <= tol[mode], mode
    targets = torch.tensor([4, 3, 2, 1])
    ins = insertion_curve(tiny, images, maps, targets, step=step, score=score)
    ref = torch.stack([reference_curve(tiny, images[i], maps[i], int(targets[i]), step,
                                       "insertion", score) for i in range(4)])
    assert (ins.double() - ref).abs().max() <= tol["insertion"]


def test_endpoints_are_clean_and_substrate(tiny, images, maps):
    with torch.no_grad():
        p_clean = tiny(images).softmax(1)
        t = p_clean.argmax(1)
        p_zero = tiny(torch.zeros_like(images)).softmax(1)[torch.arange(4), t]
        p_blur = tiny(gaussian_blur(images)).softmax(1)[torch.arange(4), t]
    p_clean = p_clean[torch.arange(4), t]
    d = deletion_curve(tiny, images, maps, step=7)
    i = insertion_curve(tiny, images, maps, step=7)
    # the same images (the blur computed by the same call on the same batch) forwarded in
    # other batches: two float32 computations of the logits (curve_tol, probabilities)
    tol = curve_tol(tiny, images, "softmax")

    def close(a, b):
        return bool((a - b).abs().max() <= tol)

    assert close(d[:, 0], p_clean) and close(d[:, -1], p_zero)
    assert close(i[:, 0], p_blur) and close(i[:, -1], p_clean)
    # the other substrate for each
    d_blur = deletion_curve(tiny, images, maps, step=7, substrate="blur")
    i_zero = insertion_curve(tiny, images, maps, step=7, substrate="zero")
    assert close(d_blur[:, -1], p_blur)
    assert close(i_zero[:, 0], p_zero)


def test_batch_size_does_not_change_results(tiny, images, maps):
    ref = causal_curves(tiny, images, maps, step=3, batch_size=1000)
    # the same inputs (one blur call on the whole batch either way) forwarded in other
    # batches: two float32 computations of each point (curve_tol, probabilities)
    tol = curve_tol(tiny, images, "softmax")
    for bs in (1, 7, 64):
        got = causal_curves(tiny, images, maps, step=3, batch_size=bs)
        for k in ref:
            assert (got[k] - ref[k]).abs().max() <= tol, (bs, k)


def test_known_forwards_run_once_and_batches_are_bounded(images, maps):
    model = CountingModel(TinyConv()).eval()
    B, n, bs = 4, num_steps(8, 8, 5), 10
    causal_curves(model, images, maps, step=5, batch_size=bs)
    # clean (shared by both curves and the prediction) + one zero image + deletion's
    # interior points + insertion's points 0..n-1 (its last point is the clean image)
    assert sum(model.batches) == B + 1 + B * (n - 1) + B * n
    assert max(model.batches) <= bs
    model.batches.clear()
    deletion_curve(model, images, maps, step=5, batch_size=bs)
    assert sum(model.batches) == B + 1 + B * (n - 1)


# ----------------------------------------------------------------------------- faithfulness

def test_exact_attribution_beats_random_on_a_linear_model():
    """P(1|x) = sigmoid(<w, x>). Zeroing a pixel set S leaves logit sum_{p not in S} a_p with
    a_p = sum_c w_cp x_cp, so removing the k largest a_p first gives the smallest logit at
    every k: the deletion curve of map a lies pointwise below that of any other map.
    Insertion from the blur b: logit = <w, b> + sum_{p in S} a'_p with a' = w (x - b), so
    inserting by a' gives the largest logit at every k."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 3, 8, 8, generator=g)
    model = Linear2(w).eval()
    x = torch.randn(6, 3, 8, 8, generator=g)
    t = torch.ones(6, dtype=torch.long)
    a_del = (w * x).sum(1)
    a_ins = (w * (x - gaussian_blur(x))).sum(1)
    d_exact = deletion_curve(model, x, a_del, t, step=4)
    i_exact = insertion_curve(model, x, a_ins, t, step=4)
    # The inequality holds for the exact logits of the float32 inputs (the blur is the same
    # float32 tensor in both curves); each computed logit is a 192-term dot product of |terms|
    # <|w|, max(|x|, |b|)> (every curve input is pixelwise x, 0 or b): two computations.
    # Logit 0 is exactly 0, so P = sigmoid(logit 1), slope <= 1/4, plus the softmax's own
    # rounding over 2 classes (2 gamma_4).
    mag = float((w.abs() * torch.maximum(x.abs(), gaussian_blur(x).abs())).flatten(1).sum(1).max())
    slack = f32_tol(192, mag) / 4 + 2 * gamma(4)
    for seed in range(5):
        r = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(100 + seed))
        d_rand = deletion_curve(model, x, r, t, step=4)
        i_rand = insertion_curve(model, x, r, t, step=4)
        assert (d_exact <= d_rand + slack).all() and (i_exact >= i_rand - slack).all()
        assert (auc(d_exact) < auc(d_rand)).all() and (auc(i_exact) > auc(i_rand)).all()


# ----------------------------------------------------------------------------- hygiene

def test_inputs_untouched_and_train_mode_refused(images, maps):
    model = TinyConv().eval()
    x0, m0 = images.clone(), maps.clone()
    causal_curves(model, images, maps, step=9)
    assert torch.equal(images, x0) and torch.equal(maps, m0)
    model.train()
    with pytest.raises(UserError, match="training mode"):
        deletion_curve(model, images, maps, step=9)
    assert model.training  # checked, never switched
    model.eval()
    model.pool.train()     # a single submodule in train mode is caught too
    with pytest.raises(UserError, match="training mode"):
        insertion_curve(model, images, maps, step=9)


def test_bad_inputs(tiny, images, maps):
    with pytest.raises(UserError, match="input resolution"):
        deletion_curve(tiny, images, maps[:, :4], step=3)
    with pytest.raises(UserError, match="NaN"):
        deletion_curve(tiny, images, torch.full_like(maps, float("nan")), step=3)
    with pytest.raises(UserError, match="step"):
        deletion_curve(tiny, images, maps, step=0)
    with pytest.raises(UserError, match="substrate"):
        deletion_curve(tiny, images, maps, step=3, substrate="mean")
    with pytest.raises(UserError, match="targets"):
        deletion_curve(tiny, images, maps, torch.zeros(3, dtype=torch.long), step=3)
    assert deletion_curve(tiny, images[:0], maps[:0], step=3).shape == (0, 23)
    # [B, 1, H, W] maps are accepted
    assert torch.equal(deletion_curve(tiny, images, maps[:, None], step=9),
                       deletion_curve(tiny, images, maps, step=9))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(images, maps):
    """The RISE reference edits pixels through .cpu().numpy(), a no-op on CUDA tensors."""
    cpu = TinyConv().eval()
    gpu = TinyConv().eval().cuda()
    ref = causal_curves(cpu, images, maps, step=5)
    # the bound below is float32's: TF32 convolutions off (the caller's setting), restored
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        got = causal_curves(gpu, images.cuda(), maps.cuda(), step=5)
        got2 = causal_curves(gpu, images, maps, step=5)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    # two float32 logit computations, each blurring on its device (blur errors both ways)
    tol = prob_tol(tiny_logit_tol(cpu, torch.maximum(images.abs(), gaussian_blur(images.abs())))
                   + 2 * f32_tol(122, tiny_logit_magnitude(cpu, gaussian_blur(images.abs())),
                                 computations=1), 5)
    for k in ref:
        assert got[k].device.type == "cuda"
        # two float32 computations (curve_tol); both blur in float32 on their own device
        assert (got[k].cpu() - ref[k]).abs().max() <= tol, k
    # CPU inputs with a CUDA model run on the model's device
    assert got2["deletion"].device.type == "cuda"
    assert (got2["deletion"].cpu() - ref["deletion"]).abs().max() <= tol
