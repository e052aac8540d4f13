"""Explainers under bf16 autocast and with channels-last inputs (issue 8, the fast GPU path).

The runner may call an explainer inside ``torch.autocast(device_type, dtype=torch.bfloat16)``
and with a channels-last model and images. Three checks, on the CPU (and on CUDA where
there is one):

* an autocast-immune model (pooling and elementwise ops only, which autocast leaves in
  float32): its forward is the same with and without autocast, so any difference under
  autocast is bf16 arithmetic of the explainer's own (a matmul, an einsum, a mask) - there
  must be none: the maps are compared exactly (same device, same channels-last input);
* a small convolutional net: bf16 + channels-last maps agree with the float32 maps within
  the tolerances below (measured, then documented in ``lico_bench/explainers/base.py``): a
  regression guard, not a derived bound;
* channels-last alone gives the contiguous maps, on a float64 model, within the derived
  bound of the explainer's own float32 steps (``contract_tol`` in conftest.py).
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from lico_bench.data import create_dataset
from lico_bench.explainers import create_explainer, normalize_maps
from lico_bench.models import create_model

from .. import tiny  # noqa: F401  (registers baseline_tiny)
from .conftest import contract_tol, double, leftover_hooks

FAST = {"scorecam": {"batch_size": 32}, "rise": {"N": 64, "batch_size": 32}}
SPECS = [("gradcam", {}), ("gradcampp", {}), ("scorecam", FAST["scorecam"]),
         ("scorecam", {"variant": "grad-cam", "batch_size": 32}), ("rise", FAST["rise"]),
         ("gradcam:GradCAM", {}), ("captum:IntegratedGradients", {"attribute": {"n_steps": 8}}),
         ("captum:LayerGradCam", {})]
IDS = [n + ("-grad-cam" if o.get("variant") == "grad-cam" else "") for n, o in SPECS]
CASES = [(n, o, k) for (n, o), k in zip(SPECS, IDS)]

# bf16 + channels-last vs float32 on baseline_tiny (``tiny_conv``) and 4 shapes images:
# (min Pearson correlation of a map with its float32 map, max |difference| of the min-max
# normalised maps). Measured on the CPU: core methods >= 0.99998 and <= 0.0061 (RISE 0.0018),
# pytorch-grad-cam identical (it runs in float32), captum IntegratedGradients 0.99956 and
# 0.027 (its input gradients sum 8 bf16 backward passes). The bounds leave 3x room.
TOLERANCE = {
    "gradcam": (0.9995, 0.02),
    "gradcampp": (0.9995, 0.02),
    "scorecam": (0.9995, 0.02),
    "scorecam-grad-cam": (0.9995, 0.02),
    "rise": (0.9995, 0.02),
    "gradcam:GradCAM": (0.99999, 1e-5),
    "captum:IntegratedGradients": (0.998, 0.08),
    "captum:LayerGradCam": (0.9995, 0.02),
}

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]


class Immune(nn.Module):
    """A classifier made only of ops that autocast runs in float32 (indexing, elementwise
    arithmetic, ReLU, 2-D average pooling, means): the same forward with or without autocast.

    16 px in; CAM layer ``features.pool``: A = avgpool4(ReLU(a_c x_{ch(c)} + b_c)),
    [B, 8, 4, 4]; logits_k = sum_c W_kc mean_ij A_c(ij)^2 + bias_k (non-linear in A, so
    the gradients vary over the map).
    """

    class Expand(nn.Module):
        def __init__(self, g: torch.Generator, channels: int):
            super().__init__()
            self.register_buffer("src", torch.arange(channels) % 3)
            self.scale = nn.Parameter(torch.randn(channels, 1, 1, generator=g))
            self.shift = nn.Parameter(torch.randn(channels, 1, 1, generator=g) * 0.3)

        def forward(self, x):
            return torch.relu(x[:, self.src] * self.scale + self.shift)

    def __init__(self, classes: int = 5, channels: int = 8, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential()
        self.features.add_module("expand", self.Expand(g, channels))
        self.features.add_module("pool", nn.AvgPool2d(4))
        self.w = nn.Parameter(torch.randn(classes, channels, generator=g))
        self.b = nn.Parameter(torch.randn(classes, generator=g) * 0.1)
        self.cfg = SimpleNamespace(cam_layer="features.pool")

    def forward(self, x):
        a = self.features(x)
        return (a.pow(2).mean(dim=(2, 3))[:, None, :] * self.w).sum(-1) + self.b


@pytest.fixture(autouse=True)
def no_tf32():
    """On CUDA, float32 convolutions and matmuls in full float32 (TF32 is the caller's
    setting, and it would blur the comparison with the CPU), restored after the test."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def bf16(device: str):
    return torch.autocast(device, dtype=torch.bfloat16)


def channels_last(t):
    return t.contiguous(memory_format=torch.channels_last)


def corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-map Pearson correlation: [B, H, W] x2 -> [B]."""
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def tiny_conv():
    """baseline_tiny (conv-BN-ReLU x 2, CAM layer [B, 32, 8, 8]), random weights, seed 0; fc
    scaled x20 so that it is decisive (top probabilities 0.4-0.6) like a trained model."""
    torch.manual_seed(0)
    model = create_model("baseline_tiny", 10, image_size=32).eval()
    with torch.no_grad():
        model.fc.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def shapes():
    """4 test images of the shapes dataset, 32 px, and targets: twice the predicted class
    (3), twice another class."""
    batch = create_dataset("shapes", "test", image_size=32, n=4).get_batch(range(4))
    return batch.images, torch.tensor([3, 3, 0, 6])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,options", SPECS, ids=IDS)
def test_no_bf16_arithmetic_of_its_own(name, options, device):
    # Immune's forward is float32 under autocast: the maps must be the float32 maps.
    model = Immune().eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 3, 4])
    e = create_explainer(name, **options)
    model, xd = model.to(device), channels_last(x.to(device))
    ref = e(model, xd, targets.to(device))
    with bf16(device):
        out = e(model, xd, targets.to(device))
    assert out.dtype == torch.float32 and out.device.type == device
    # exact: the same float32 operations on the same (channels-last) input and device, with
    # and without the autocast; any bf16 operation of the explainer's own would differ by
    # ~1e-3 of the map (channels-last against contiguous: test_channels_last_equals_contiguous)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,options,key", CASES, ids=IDS)
def test_bf16_channels_last_close_to_float32(name, options, key, device, shapes):
    """Regression guard: compares each explainer with itself in two precisions (bf16 +
    channels-last vs float32); the TOLERANCE bounds come from measurement (3x room), not
    from an independent reference."""
    model, (x, targets) = tiny_conv(), shapes
    e = create_explainer(name, **options)
    ref = e(model, x, targets)
    fast = copy.deepcopy(model).to(device).to(memory_format=torch.channels_last)
    with bf16(device):
        out = e(fast, channels_last(x.to(device)), targets.to(device))
        assert torch.is_autocast_enabled(device)  # left as it was
    assert leftover_hooks(fast) == []
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert out.device.type == device and torch.isfinite(out).all()
    out = out.cpu()
    # measured regression guard (bf16 vs float32, TOLERANCE above, 3x room over the
    # measurement), not a derived bound: bf16's rounding of whole forwards has no useful
    # worst case; the float32 steps are checked exactly in test_no_bf16_arithmetic_of_its_own
    min_corr, max_diff = TOLERANCE[key]
    r = corr(out, ref)
    d = (normalize_maps(out) - normalize_maps(ref)).abs().amax(dim=(1, 2))
    assert r.min() >= min_corr, r
    assert d.max() <= max_diff, d


@pytest.mark.parametrize("name,options,key", CASES, ids=IDS)
def test_channels_last_equals_contiguous(name, options, key, shapes):
    # float64 model and images (the float32 bound of whole maps is too loose to catch a
    # 1e-3 error): channels-last and contiguous are two summation orders of the same float64
    # forward, plus the explainer's own float32 steps (contract_tol; baseline_tiny: 145-term
    # conv windows, depth 6 with the BatchNorms, at the |weights| network)
    model, (x, targets) = double(tiny_conv()), shapes
    x = x.double()
    e = create_explainer(name, **options)
    ref = e(model, x, targets)
    out = e(copy.deepcopy(model).to(memory_format=torch.channels_last), channels_last(x), targets)
    assert out.dtype == torch.float32 and out.is_contiguous()
    tol = contract_tol(name, options, model, x, targets)
    assert (out.double() - ref.double()).abs().max() <= tol


def test_rise_masks_are_float32_under_autocast():
    rise = create_explainer("rise", N=40, s=4, batch_size=16)
    ref = torch.cat(list(rise.masks(16, 16)))
    with bf16("cpu"):
        out = torch.cat(list(rise.masks(16, 16)))
    assert out.dtype == torch.float32 and torch.equal(out, ref)


def count_syncs(fn) -> int:
    """How many synchronising CUDA operations (device-to-host reads, blocking copies)
    ``fn()`` makes, from torch's sync debug mode."""
    import warnings

    fn()  # warm-up: lazy initialisation (cuDNN, cuBLAS handles) is not the call's
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,options", [("scorecam", {}), ("rise", {"N": 64})],
                         ids=["scorecam", "rise"])
def test_no_host_round_trip_per_chunk(name, options, shapes):
    # The syncs of a call happen before or after its loop: their number does not grow
    # with the number of chunks (batch_size 4 -> 8-16 chunks, batch_size 64 -> 1-2).
    model = tiny_conv().cuda().to(memory_format=torch.channels_last)
    x, targets = channels_last(shapes[0].cuda()), shapes[1].cuda()
    counts = []
    for batch_size in (4, 64):
        e = create_explainer(name, batch_size=batch_size, **options)
        with bf16("cuda"):
            counts.append(count_syncs(lambda: e(model, x, targets)))
    assert counts[0] == counts[1], counts
