"""Tiny models for the explainer tests: fast on two CPU cores, with a ``cfg.cam_layer``."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from lico_bench.models import ModelCfg
from lico_bench.models.backbones import Classifier

from lico_bench.explainers import create_explainer
from lico_bench.explainers.base import upsample

from ..tolerance import EPS32, EPS64, f32_tol

ALL_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                  "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
                  "_backward_pre_hooks")


def tiny_net(num_classes: int = 5, seed: int = 0, constant=()) -> Classifier:
    """16 px in, F = block(x): [B, 16, 4, 4] (cam layer ``features.block``), fc 16 -> K.

    ``constant=(c_0, c_1, ...)``: channel i of F is the constant c_i >= 0 for every input
    (zero conv weights, bias c_i, or -1 for a dead ReLU channel when c_i = 0).
    """
    g = torch.Generator().manual_seed(seed)
    features = nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU()),
        block=nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())))
    model = Classifier(features, 16, num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        conv = features.block[0]
        for i, c in enumerate(constant):
            conv.weight[i].zero_()
            conv.bias[i] = c if c > 0 else -1.0
    model.cfg = ModelCfg(name="tiny", arch="tiny", num_classes=num_classes, image_size=16,
                         cam_layer="features.block")
    return model.eval()


def per_item(images):
    """``same_images`` as if no two images were equal: the computation before sharing."""
    B = images.shape[0]
    ar = torch.arange(B, device=images.device)
    return ar[:, None], ar


class Exploding(Classifier):
    """A tiny net whose ``explode_at``-th forward call raises after the CAM layer ran."""

    def __init__(self, base: Classifier, explode_at: int = 1):
        super().__init__(base.features, base.num_features, base.fc.out_features)
        self.fc, self.cfg = base.fc, base.cfg
        self.calls, self.explode_at = 0, explode_at
        self.eval()

    def head(self, feats):
        self.calls += 1
        if self.calls == self.explode_at:
            raise RuntimeError("boom")
        return super().head(feats)


def leftover_hooks(model: nn.Module):
    """(module name, hook dict) pairs that are not empty."""
    return [(n, d) for n, m in model.named_modules() for d in ALL_HOOK_DICTS
            if len(getattr(m, d, {}))]


@pytest.fixture
def model():
    return tiny_net()


@pytest.fixture
def images():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------------------
# float64 references and the float tolerances of the comparisons (tests/tolerance.py)
#
# Two float32 computations of a whole CAM map differ by a worst-case bound of a few percent
# of the map (the forward's |terms| are large next to the map), too loose to catch a 1e-3
# error. So the comparisons run the model (and the peer library) in float64: the float64
# forwards differ by ~1e-16 of their |terms| (f64_tol), and what is left is the float32
# arithmetic each explainer does on purpose after the forward (casts, softmax, upsampling),
# whose terms and magnitudes are few and known at each call site.


def double(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` (its ``cfg`` kept)."""
    return copy.deepcopy(model).double()


def abs_network(model: nn.Module) -> nn.Module:
    """The float64 network with every weight, bias and BatchNorm affine term replaced by its
    absolute value (BatchNorm's running mean by -|mean|, so x - mean -> x + |mean|).

    On |x| every intermediate value is >= 0 and each accumulation's sum of |terms| is at
    most this network's value there (ReLU, max/average pooling and residual sums do not
    increase it): the magnitude of f32_tol at every layer (first order, tests/tolerance.py).
    """
    net = double(model)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                for name in ("weight", "bias"):
                    p = getattr(m, name, None)
                    if p is not None:
                        p.abs_()
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.abs_().neg_()
    return net


def accumulations(model: nn.Module):
    """(n_terms, depth) of the model's forward: the longest accumulation (a convolution
    window or dot product plus its bias, a BatchNorm's 3 operations) and an upper bound on
    the accumulations in sequence (every conv, linear and BatchNorm, plus the global
    average pool)."""
    n, depth = 3, 1
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = max(n, m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] + 1)
            depth += 1
        elif isinstance(m, nn.Linear):
            n, depth = max(n, m.in_features + 1), depth + 1
        elif isinstance(m, nn.BatchNorm2d):
            depth += 1
    return n, depth


def forward_magnitudes(model: nn.Module, images: torch.Tensor, layer: str):
    """The |weights| network on |images|: (A_bar [B, C, h, w] at ``layer``, logits z_bar
    [B, K]), float64 - the sums of |terms| of a float forward at the CAM layer and the logits."""
    net = abs_network(model)
    store = []
    h = net.get_submodule(layer).register_forward_hook(lambda m, i, o: store.append(o))
    try:
        with torch.no_grad():
            z = net(images.detach().abs().double().cpu())
    finally:
        h.remove()
    n_gap = store[0].shape[-2] * store[0].shape[-1] + 1     # the head's global average pool
    return store[0], z, n_gap


def f64_tol(n_terms: int, magnitude: float, depth: int = 1, computations: int = 2) -> float:
    """f32_tol at float64 eps: two float64 computations of one value."""
    return f32_tol(n_terms, magnitude, depth=depth, computations=computations, eps=EPS64)


def cam_f64_tol(model: nn.Module, images: torch.Tensor, layer: str, w: torch.Tensor) -> float:
    """Bound on |L - L'| of two float64 computations of a CAM map L = ReLU(Σ_k w_k A_k)
    (feature or input resolution) with channel weights ``w`` [B, C].

    First order: A carries the forward's error, 2 gamma_n per accumulation at A's |terms|
    (the |weights| network A_bar), w a relative error of the same order (gradients through
    the head's average pool and fc, or scores of masked forwards), and the weights' mean,
    the weighted sum and the upsampling add three accumulations: f32_tol at float64 eps,
    n = the longest accumulation (conv window, the C-term sum, the h·w mean), depth = the
    forward's + 3, magnitude max_ij Σ_k |w_k| A_bar_k(ij).
    """
    a_bar, _, n_gap = forward_magnitudes(model, images, layer)
    n, depth = accumulations(model)
    mag = float((w.detach().abs().double().cpu()[:, :, None, None] * a_bar).sum(1).max())
    return f64_tol(max(n, n_gap, a_bar.shape[1]), mag, depth=depth + 3)


def head_f64_tol(acts: torch.Tensor, w: torch.Tensor) -> float:
    """Bound on |L - L'| of two float64 computations of L = ReLU(Σ_k w_k A_k) from the same
    activations A [B, C, h, w] and gradients (bitwise the same float64 forward, asserted
    where it is used): the channel weights (at most 4 operations in sequence, one of them
    the h·w-term mean or sum of Grad-CAM(++)), then the C-term weighted sum, at the
    magnitude max_ij Σ_k |w_k| |A_k(ij)| (f32_tol at float64 eps, depth 4 + 1)."""
    wa = w.detach().abs().double()[:, :, None, None] * acts.detach().abs().double()
    mag = float(wa.sum(1).max())
    h, wd = acts.shape[-2:]
    return f64_tol(max(h * wd, acts.shape[1]) + 1, mag, depth=5)


def pg_minmax(x: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's scale_cam_image normalisation, per map: [B, h, w]."""
    x = x - x.amin(dim=(1, 2), keepdim=True)
    return x / (1e-7 + x.amax(dim=(1, 2), keepdim=True))


U32 = EPS32 / 2   # float32 unit roundoff


def pg_pipeline_tol(low: torch.Tensor, d_raw: float, size) -> float:
    """Bound on |a - b| of two runs of pytorch-grad-cam's output pipeline (min-max
    normalisation, bilinear resize, min-max again; at most one of them in float32 before
    the resize) on raw maps within ``d_raw`` of ``low`` [B, h, w].

    Normalisation 1, (x - min) / (1e-7 + range1): numerator and denominator each move by
    <= 2 d_raw, so the normalised value (<= 1) by <= 4 d_raw / range1; plus its rounding,
    <= 3 float32 operations on one side and one cast to float32 on the other (4u). The
    resize is a convex combination (2 taps per axis, two passes) of values in [0, 1]: the
    difference carries over, plus f32_tol(2, 1, depth 2) for both computations.
    Normalisation 2 the same with range2 (the range of the resized map, measured here in
    float64) and 3 float32 operations on each side (6u).
    """
    lo = low.double()
    assert (lo.amax(dim=(1, 2)) > lo.amin(dim=(1, 2))).all(), "a constant map compares nothing"
    range1 = float((lo.amax(dim=(1, 2)) - lo.amin(dim=(1, 2))).min())
    up = upsample(pg_minmax(lo), size)
    range2 = float((up.amax(dim=(1, 2)) - up.amin(dim=(1, 2))).min())
    d1 = 4 * d_raw / range1 + 4 * U32
    d2 = d1 + f32_tol(2, 1.0, depth=2)
    return 4 * d2 / range2 + 6 * U32


def prob_rel_tol(logit_tol: float, n_classes: int) -> float:
    """Relative bound on a softmax probability p_k whose logits move by <= ``logit_tol``:
    p'_k / p_k in [exp(-2 d), exp(2 d)] (tests/tolerance.py, softmax_tol), and the softmax's
    own rounding is relative too (one exp, a sum of n positive terms, one division):
    |p'_k - p_k| <= (expm1(2 d) + 2 gamma_{n+2}) p_k. Relative bounds keep Score-CAM's and
    RISE's maps, sums of probabilities times non-negative activations or masks, within a
    relative ~1e-5 (an absolute bound per weight times Σ_k A_k is ~1e-3 of the map)."""
    import math

    from ..tolerance import gamma
    return math.expm1(2 * float(logit_tol)) + 2 * gamma(n_classes + 2)


class LogitRecorder:
    """Records max |logit| over every forward of ``model`` inside the ``with`` block: the
    magnitude at which a float64 logit is rounded to float32 (u |z|), measured on the
    actual logits rather than bounded by the |weights| network's (~100x larger) ones."""

    def __init__(self, model: nn.Module):
        self.model, self.max = model, 0.0

    def __enter__(self):
        def hook(m, i, o):
            self.max = max(self.max, float(o.detach().abs().max()))
        self.handle = self.model.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


CAMS = {"gradcam": "gradcam", "gradcampp": "gradcampp", "scorecam": "scorecam",
        "captum:LayerGradCam": "gradcam"}     # captum's LayerGradCam: Grad-CAM's weights


def contract_tol(name, options, model, images, targets) -> float:
    """Bound on |a - b| of two computations of the maps of explainer ``name`` on the
    float64 ``model`` and ``images`` (batched vs one image, CUDA vs CPU, channels-last vs
    contiguous): the float64 forwards differ by f64_tol at the |weights| network
    (accumulations(): tiny_net 73-term conv windows, depth 4; baseline_tiny 145 terms,
    depth 6), and what is left is each explainer's own float32 arithmetic after them.
    """
    layer = model.cfg.cam_layer
    _, z_bar, _ = forward_magnitudes(model, images, layer)
    n, depth = accumulations(model)
    z_max = float(z_bar.max())
    K = model.fc.out_features
    # float64 logits of two computations (+2 accumulations: masking, or the head twice)
    d_z64 = f64_tol(n, z_max, depth + 2)
    if name in CAMS:
        core = {k: v for k, v in options.items() if name == "scorecam"}
        e = create_explainer(CAMS[name], **core)
        with LogitRecorder(model) as rec:
            acts, grads, t = e.feature_maps(model, images, targets)
            w = e.weights(model, images, t, acts, grads).detach()
        # max |map| at feature resolution (captum's LayerGradCam: without the ReLU)
        m = float((w[:, :, None, None] * acts).sum(1).abs().max())
        # the map at feature resolution in float64, rounded to float32, upsampled in float32
        # (2 taps per axis, two passes, convex: |terms| <= m)
        d = cam_f64_tol(model, images, layer, w) + f32_tol(1, m) + f32_tol(2, m, depth=2)
        if name == "scorecam":
            # float64 logits rounded to float32 (u |z| each, z the largest recorded) and a
            # float32 softmax over K classes (official) or C channels (grad-cam variant):
            # each probability within rho·p (prob_rel_tol); a weight w = p (or p - base with
            # baseline_subtract, or the channel softmax) within rho·(|w| + 2 base). Σ_k dw A_k.
            grad_cam = options.get("variant") == "grad-cam"
            rho = prob_rel_tol(f32_tol(1, rec.max) + d_z64, acts.shape[1] if grad_cam else K)
            base = torch.zeros(len(t), 1, dtype=torch.float64)
            if options.get("baseline_subtract"):
                with torch.no_grad():
                    base = torch.softmax(model(torch.zeros_like(images[:1])), 1)[0, t][:, None]
            d_w = rho * (w.double().abs() + 2 * base)
            d += float((d_w[:, :, None, None] * acts.double()).sum(1).max())
        return d
    if name == "rise":
        # the same float32 masks; float64 logits rounded to float32 (u |z|, recorded) and a
        # float32 softmax over K: each probability within rho·p (prob_rel_tol), so the map,
        # Σ_n p_n m_n / (N p) >= 0, within rho·S; the sum in float32 over N non-negative
        # terms at the map itself (f32_tol(N, max S)), and one division
        rise = create_explainer(name, **options)
        N = rise.resolved_options(model, images.shape[-2:])["N"]
        with LogitRecorder(model) as rec:
            s_max = float(rise(model, images, targets).abs().max())
        rho = prob_rel_tol(f32_tol(1, rec.max) + d_z64, K)
        return rho * s_max + f32_tol(N, s_max) + f32_tol(1, s_max)
    if name in ("captum:IntegratedGradients", "intgrad", "inputxgrad", "saliency"):
        # attr_c = x_c · (Gauss-Legendre mean over 8 steps of d logit / dx_c) in float64:
        # bounded by |x_c| G_c, G the input gradient of the |weights| network (all its ReLUs
        # pass on |x|: the product of |W|^T); a forward and a backward per step (depth
        # 2·forward + 1; backward windows of out_channels·9 terms). Then cast to float32
        # and summed over 3 channels in float32. inputxgrad: the same product from one
        # forward and backward; saliency: |d logit / dx_c|, bounded by G_c alone.
        net = abs_network(model)
        xa = images.detach().abs().double().clone().requires_grad_(True)
        net(xa).max(1).values.sum().backward()
        per_c = xa.grad if name == "saliency" else xa.detach() * xa.grad
        a_max = float(per_c.sum(1).max())
        n_bw = max(n, max(c.out_channels * 9 for c in net.modules() if isinstance(c, nn.Conv2d)))
        return f64_tol(n_bw, a_max, 2 * depth + 1) + f32_tol(1, a_max) + f32_tol(3, a_max)
    # pytorch-grad-cam: raw map (float64 A, float32 weights), then its pipeline
    if name in ("gradcam:GradCAM", "gradcam:GradCAMPlusPlus"):
        e = create_explainer("gradcam" if name == "gradcam:GradCAM" else "gradcampp")
        acts, grads, t = e.feature_maps(model, images, targets)
        w = e.weights(model, images, t, acts, grads).detach()
        d_raw = cam_f64_tol(model, images, layer, w)
        low = e.low_res(model, images, t).detach()
    else:
        assert name == "gradcam:AblationCAM"
        # w_k = (o - n_k) / o from float32-rounded logits o (the target's) and n_k (the
        # target's with channel k ablated, -1e7 - min A), subtraction and division in
        # float32: dw_k <= |n_k| do / o^2 + dn / |o| + u |w_k| (subtraction) + u |w_k|
        # (division), do, dn = u |.| + the float64 forwards' (at the ablated network's
        # logits, |n_k| + z_bar); two computations
        from pytorch_grad_cam import AblationCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        acts = create_explainer("gradcam").feature_maps(model, images, targets)[0]
        with torch.no_grad():
            o = model(images).gather(1, targets[:, None]).double().cpu()           # [B, 1]
        cam = AblationCAM(model=model, target_layers=[model.get_submodule(layer)],
                          batch_size=options.get("batch_size", 32))
        try:
            tg = [ClassifierOutputTarget(int(i)) for i in targets]
            w = torch.from_numpy(cam.get_cam_weights(
                images, model.get_submodule(layer), tg, acts.numpy(), None)).double()
        finally:
            cam.activations_and_grads.release()
        nk = o * (1 - w)
        d_o = U32 * o.abs() + f64_tol(n, z_max, depth + 1)
        d_n = U32 * nk.abs() + f64_tol(n, float(nk.abs().max()) + z_max, depth + 1)
        d_w = 2 * (nk.abs() * d_o / o ** 2 + d_n / o.abs() + 2 * U32 * w.abs())
        low = torch.relu((w[:, :, None, None] * acts).sum(1)).float()
        d_raw = (float((d_w[:, :, None, None] * acts.abs()).sum(1).max())
                 + cam_f64_tol(model, images, layer, w))
    return pg_pipeline_tol(low, d_raw, images.shape[-2:])
