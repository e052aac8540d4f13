"""Metrics under bf16 autocast and with channels-last inputs (issue 8, the fast GPU path).

As in ``tests/explainers/test_precision.py``: an autocast-immune model shows that a metric
adds no bf16 arithmetic of its own (blur, blending, scores, AUC stay float32); a small
convolutional net gives the measured bf16 tolerances documented in
``lico_bench/metrics/causal.py``; channels-last alone changes nothing beyond 1e-5.
"""
from __future__ import annotations

import copy

import pytest
import torch

from lico_bench.data import create_dataset
from lico_bench.explainers import create_explainer
from lico_bench.metrics import auc, causal_curves, create_metric, gaussian_blur

from ..explainers.test_precision import (DEVICES, bf16, channels_last, count_syncs,  # noqa: F401
                                         no_tf32, tiny_conv)
from ..tolerance import f32_tol
from .conftest import Linear2

CAUSAL = [("insertion", {}), ("deletion", {}), ("insertion", {"substrate": "zero"}),
          ("deletion", {"substrate": "blur", "score": "logit"})]
CAUSAL_IDS = [n + "".join(f"-{v}" for v in o.values()) for n, o in CAUSAL]


@pytest.fixture(scope="module")
def shapes():
    """4 shapes test images (32 px), their masks, targets (twice the tiny net's predicted
    class 3, twice another) and float32 Grad-CAM maps of the tiny net."""
    batch = create_dataset("shapes", "test", image_size=32, n=4).get_batch(range(4))
    targets = torch.tensor([3, 3, 0, 6])
    maps = create_explainer("gradcam")(tiny_conv(), batch.images, targets)
    return batch.images, batch.masks, targets, maps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,options", CAUSAL, ids=CAUSAL_IDS)
def test_causal_no_bf16_arithmetic_of_its_own(name, options, device):
    # Linear2 is elementwise (logit = <w, x>), so its forward is float32 under autocast:
    # the curves must be the float32 curves (a bf16 blur or blend would change them).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 16, 16, generator=g)
    maps = torch.rand(3, 16, 16, generator=g)
    model = Linear2(torch.randn(3, 16, 16, generator=g) * 0.05).eval()
    metric = create_metric(name, step=16, **options)
    ref = metric(model, x, maps, torch.tensor([1, 0, 1]))
    model = model.to(device)
    with bf16(device):
        out = metric(model, channels_last(x.to(device)), maps.to(device),
                     torch.tensor([1, 0, 1], device=device))
    assert out.values.dtype == out.curves.dtype == torch.float32
    assert out.values.device.type == device
    torch.testing.assert_close(out.curves.cpu(), ref.curves, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.values.cpu(), ref.values, rtol=1e-5, atol=1e-6)


def test_blur_and_auc_are_float32_under_autocast():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    curves = torch.rand(2, 17, generator=torch.Generator().manual_seed(1))
    with bf16("cpu"):
        blurred, area = gaussian_blur(channels_last(x)), auc(curves)
    assert blurred.dtype == area.dtype == torch.float32
    # two float32 convolutions (channels-last vs contiguous): 121 taps of a positive kernel,
    # |terms| summing to blur(|x|)
    assert (blurred - gaussian_blur(x)).abs().max() <= f32_tol(121, float(gaussian_blur(x.abs()).max()))
    assert torch.equal(area, auc(curves))


# Insertion/deletion AUC, bf16 + channels-last vs float32, same float32 maps (so the same
# pixel order; the difference is the bf16 forward alone). Measured max |dAUC| on tiny_conv
# and 4 shapes images: 0.0011 (insertion, blur or zero substrate), 0.0005 (deletion); on
# the trained baseline_r18/lico_r18, 8 images: 0.0034 and 0.0011. Bound: 0.005 (AUC of
# probabilities, 0-1); with score="logit" 0.005 per unit of the largest |logit| (measured
# 0.0046 on AUCs up to 2.1).
AUC_TOL = 0.005


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,options", CAUSAL, ids=CAUSAL_IDS)
def test_causal_bf16_channels_last_close_to_float32(name, options, device, shapes):
    """Regression guard: compares the metric with itself in two precisions (bf16 +
    channels-last vs float32, same maps); AUC_TOL comes from measurement, not from an
    independent reference."""
    x, _, targets, maps = shapes
    model = tiny_conv()
    metric = create_metric(name, **options)
    ref = metric(model, x, maps, targets)
    fast = copy.deepcopy(model).to(device).to(memory_format=torch.channels_last)
    with bf16(device):
        out = metric(fast, channels_last(x.to(device)), maps.to(device), targets.to(device))
    assert out.values.dtype == out.curves.dtype == torch.float32
    assert out.curves.shape == ref.curves.shape and torch.isfinite(out.curves).all()
    tol = AUC_TOL * max(1.0, float(ref.curves.abs().max()))
    d_auc = (out.values.cpu() - ref.values).abs().max()
    assert d_auc <= tol, d_auc
    assert (out.curves.cpu() - ref.curves).abs().max() <= 4 * tol


@pytest.mark.parametrize("name,options", CAUSAL, ids=CAUSAL_IDS)
def test_causal_channels_last_equals_contiguous(name, options, shapes):
    x, _, targets, maps = shapes
    model = tiny_conv()
    metric = create_metric(name, **options)
    ref = metric(model, x, maps, targets)
    out = metric(copy.deepcopy(model).to(memory_format=torch.channels_last), channels_last(x),
                 maps, targets)
    torch.testing.assert_close(out.curves, ref.curves, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.values, ref.values, rtol=1e-5, atol=1e-5)


def test_causal_curves_with_bf16_maps():
    # bf16 maps are accepted; their order is the order of their float32 values.
    g = torch.Generator().manual_seed(0)
    x, maps = torch.randn(2, 3, 8, 8, generator=g), torch.rand(2, 8, 8, generator=g)
    model = Linear2(torch.randn(3, 8, 8, generator=g) * 0.1).eval()
    a = causal_curves(model, x, maps.bfloat16(), step=8)
    b = causal_curves(model, x, maps.bfloat16().float(), step=8)
    for m in a:
        assert a[m].dtype == torch.float32 and torch.equal(a[m], b[m])


@pytest.mark.parametrize("device", DEVICES)
def test_pointing_games_under_autocast(device, shapes):
    """Float32 maps under autocast: exactly the float32 values. bf16 maps: a regression
    guard (the code against itself in two precisions) whose 1e-3 energy bound comes from
    measurement (1e-5)."""
    x, masks, targets, maps = shapes
    pg, epg = create_metric("pointing_game"), create_metric("energy_pointing_game")
    ref_pg, ref_epg = pg(None, x, maps, targets, masks).values, epg(None, x, maps, targets, masks).values
    with bf16(device):
        args = (channels_last(x.to(device)), maps.to(device), targets.to(device), masks.to(device))
        out_pg, out_epg = pg(None, *args).values, epg(None, *args).values
        # bf16 maps: the same point where the maximum is clear (every map here) and an
        # energy share within bf16 rounding (measured 1e-5).
        lo = (channels_last(x.to(device)), maps.to(device).bfloat16(), targets.to(device),
              masks.to(device))
        lo_pg, lo_epg = pg(None, *lo).values, epg(None, *lo).values
    for v in (out_pg, out_epg, lo_pg, lo_epg):
        assert v.dtype == torch.float32 and v.device.type == device
    assert torch.equal(out_pg.cpu(), ref_pg) and torch.equal(out_epg.cpu(), ref_epg)
    assert torch.equal(lo_pg.cpu(), ref_pg)
    assert (lo_epg.cpu() - ref_epg).abs().max() <= 1e-3


@pytest.mark.parametrize("name,options", [
    ("quantus:PixelFlipping", {"features_in_step": 64, "perturb_baseline": 0.0}),
    ("quantus:Sparseness", {}), ("quantus:PointingGame", {})])
def test_quantus_runs_in_float32_under_autocast(name, options, shapes):
    # Quantus turns outputs into numpy (no bfloat16): it runs with autocast off, so the
    # values are the float32 ones.
    x, masks, targets, maps = shapes
    model = tiny_conv()
    metric = create_metric(name, **options)
    ref = metric(model, x, maps, targets, masks)
    with bf16("cpu"):
        out = metric(copy.deepcopy(model).to(memory_format=torch.channels_last),
                     channels_last(x), maps, targets, masks)
    assert out.values.dtype == torch.float32
    torch.testing.assert_close(out.values, ref.values, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_round_trip_per_step(shapes):
    # Syncs of causal_curves happen before its forward loop (the NaN check, the blur
    # kernel's copy): their number does not grow with the number of forward chunks.
    x, _, targets, maps = shapes
    model = tiny_conv().cuda().to(memory_format=torch.channels_last)
    args = (model, channels_last(x.cuda()), maps.cuda(), targets.cuda())
    counts = []
    for batch_size in (8, 1024):  # 33 chunks vs 1
        with bf16("cuda"):
            counts.append(count_syncs(lambda: causal_curves(*args, batch_size=batch_size)))
    assert counts[0] == counts[1], counts
