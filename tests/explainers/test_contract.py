"""The explainer contract, for every core explainer and a few adapters.

Shape, dtype, device; no hooks left (after success and after an exception); model state
and inputs unchanged; grad mode restored; batch == one by one; one-line errors.
"""
from __future__ import annotations

import inspect
import json

import pytest
import torch

from lico_bench.errors import UserError
from lico_bench.explainers import create_explainer, list_explainers, normalize_maps

from .conftest import Exploding, contract_tol, double, leftover_hooks, tiny_net

# Options that keep the tests fast (default values are exercised elsewhere).
FAST = {"scorecam": {"batch_size": 8}, "rise": {"N": 48, "batch_size": 16},
        "intgrad": {"n_steps": 8}}
CORE = [(name, FAST.get(name, {})) for name in list_explainers()]
VARIANTS = [("scorecam", {"variant": "grad-cam", "batch_size": 32}),
            ("scorecam", {"baseline_subtract": True})]
ADAPTERS = [("gradcam:GradCAMPlusPlus", {}), ("gradcam:AblationCAM", {"batch_size": 8}),
            ("captum:IntegratedGradients", {"attribute": {"n_steps": 8}}),
            ("captum:LayerGradCam", {})]
SPECS = CORE + VARIANTS + ADAPTERS
IDS = [f"{n}{'-' + '-'.join(map(str, o.values())) if o and n == 'scorecam' else ''}"
       for n, o in SPECS]


def snapshot(model):
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [p.grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [id(m) for m in model.modules()],
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(g is None for g in after["grad"])
    assert after["modules"] == before["modules"]
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k


def close(a, b, tol: float):
    assert a.shape == b.shape
    assert (a.double() - b.double()).abs().max() <= tol


@pytest.mark.parametrize("name,options", SPECS, ids=IDS)
def test_contract(name, options, model, images):
    explainer = create_explainer(name, **options)
    before = snapshot(model)
    x0 = images.clone()
    targets = torch.tensor([0, 3, 4])
    with torch.no_grad():  # gradient methods must work under the caller's no_grad ...
        maps = explainer(model, images, targets)
        assert not torch.is_grad_enabled()  # ... and leave it in place
    assert torch.is_grad_enabled()
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32
    assert maps.device == images.device and torch.isfinite(maps).all()
    assert not maps.requires_grad
    assert leftover_hooks(model) == []
    assert_unchanged(model, before)
    assert torch.equal(images, x0) and not images.requires_grad and images.grad is None
    # targets=None explains the predicted class; a batch gives the same maps as its images
    # one by one. Compared on the float64 model (module doc of tests/explainers/conftest.py:
    # the float32 bound of whole maps is too loose to catch a 1e-3 error), within
    # contract_tol: the float64 forwards' bound plus each explainer's own float32 steps.
    m64, x64 = double(model), images.double()
    pred = m64(x64).argmax(dim=1)
    tol = contract_tol(name, options, m64, x64, pred)
    close(explainer(m64, x64), explainer(m64, x64, pred), tol)
    maps64 = explainer(m64, x64, targets)
    single = torch.cat([explainer(m64, x64[i:i + 1], targets[i:i + 1]) for i in range(3)])
    close(maps64, single, contract_tol(name, options, m64, x64, targets))
    # options: JSON-serialisable, every option present with its value
    json.dumps(explainer.options)
    json.dumps(explainer.resolved_options(model, (16, 16)))
    if ":" not in name:
        params = set(inspect.signature(type(explainer).__init__).parameters) - {"self"}
        assert set(explainer.options) == params


@pytest.mark.parametrize("name,options", SPECS, ids=IDS)
def test_no_hooks_after_exception(name, options, images):
    model = Exploding(tiny_net(), explode_at=1)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        create_explainer(name, **options)(model, images, torch.tensor([0, 1, 2]))
    assert leftover_hooks(model) == []
    assert_unchanged(model, before)
    assert torch.is_grad_enabled()


def test_ablationcam_layer_restored_after_exception(images):
    # pytorch-grad-cam's AblationCAM swaps the target layer for an AblationLayer and swaps
    # it back only on success; its 3rd forward runs with the swapped layer.
    model = Exploding(tiny_net(), explode_at=3)
    block = model.features.block
    with pytest.raises(RuntimeError, match="boom"):
        create_explainer("gradcam:AblationCAM", batch_size=8)(model, images)
    assert model.features.block is block
    assert leftover_hooks(model) == []


@pytest.mark.parametrize("name,options", CORE, ids=[n for n, _ in CORE])
def test_frozen_parameters(name, options, model, images):
    for p in model.parameters():
        p.requires_grad_(False)
    maps = create_explainer(name, **options)(model, images)
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name,options", CORE, ids=[n for n, _ in CORE])
def test_train_mode_is_an_error(name, options, model, images):
    model.train()
    with pytest.raises(UserError, match="model.eval()"):
        create_explainer(name, **options)(model, images)
    assert model.training  # it was not switched behind our back
    model.eval()
    model.features.block[0].train()  # one submodule in training mode is enough
    with pytest.raises(UserError, match="model.eval()"):
        create_explainer(name, **options)(model, images)


def test_device_mismatch_is_an_error(model, images):
    with pytest.raises(UserError, match="images.to"):
        create_explainer("gradcam")(model, images.to("meta"))


def test_bad_inputs_are_errors(model, images):
    e = create_explainer("gradcam")
    with pytest.raises(UserError, match=r"\[B, 3, H, W\]"):
        e(model, images[0])
    with pytest.raises(UserError, match="targets"):
        e(model, images, torch.tensor([0, 1]))
    with pytest.raises(UserError, match="targets"):
        e(model, images, torch.tensor([0.0, 1.0, 2.0]))


def test_missing_layer_is_an_error(images):
    model = tiny_net()
    del model.cfg
    with pytest.raises(UserError, match="layer="):
        create_explainer("gradcam")(model, images)
    with pytest.raises(UserError, match="no layer"):
        create_explainer("gradcam", layer="features.nope")(tiny_net(), images)
    maps = create_explainer("gradcam", layer="features.stem")(model, images)
    assert maps.shape == (3, 16, 16)


@pytest.mark.parametrize("name", ["gradcamm", "gradcam:NoSuchCAM", "captum:NoSuchMethod", "lime"])
def test_unknown_name_is_an_error(name):
    with pytest.raises(UserError) as e:
        create_explainer(name)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name,options", [
    ("gradcam", {"colour": 1}), ("scorecam", {"variant": "paper"}),
    ("scorecam", {"variant": "grad-cam", "baseline_subtract": True}), ("rise", {"N": 0}),
    ("rise", {"p": 1.5}), ("captum:Occlusion", {"reduce": "max"}),
    ("gradcam:EigenCAM", {"batch_size": 2, "nope": 1})])
def test_bad_option_is_an_error(name, options):
    with pytest.raises(UserError):
        create_explainer(name, **options)


def test_list_explainers():
    assert {"gradcam", "gradcampp", "scorecam", "rise"} <= set(list_explainers())
    assert all(":" not in n for n in list_explainers())


def test_rise_seed():
    model, images = tiny_net(), torch.randn(2, 3, 16, 16)
    a = create_explainer("rise", N=32, seed=7)(model, images)
    b = create_explainer("rise", N=32, seed=7)(model, images)
    c = create_explainer("rise", N=32, seed=8)(model, images)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_normalize_maps():
    maps = torch.stack([torch.full((4, 4), 3.0), torch.arange(16.0).view(4, 4) - 5])
    out = normalize_maps(maps)
    assert out.dtype == torch.float32 and not torch.isnan(out).any()
    assert torch.equal(out[0], torch.zeros(4, 4))
    assert out[1].min() == 0 and out[1].max() == 1
    # exact: (m - min) is an exact integer, then one correctly rounded division by 15
    assert torch.equal(out[1], torch.arange(16.0).view(4, 4) / 15)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,options", SPECS, ids=IDS)
def test_cuda_matches_cpu(name, options, images):
    explainer = create_explainer(name, **options)
    targets = torch.tensor([0, 3, 4])
    model64, x64 = double(tiny_net()), images.double()
    cpu = explainer(model64, x64, targets)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        model = double(tiny_net()).cuda()
        gpu = explainer(model, x64.cuda(), targets.cuda())
        assert leftover_hooks(model) == []
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    # float64 model on both devices (as test_contract): contract_tol's bound (the float64
    # forwards plus the explainer's own float32 steps; CUDA's reductions are another
    # summation order, covered by the same worst-case bound)
    close(gpu.cpu(), cpu, contract_tol(name, options, model64, x64, targets))
