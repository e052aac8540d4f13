"""The Python API checks what it is given (``lico_bench/arguments.py``, shared by every
explainer and metric): a target outside the model's classes, a model and images of
different dtypes (float64 against float32; half and bf16 are refused with the autocast
advice), images holding NaN or inf end in one UserError naming the argument, instead of a
raw torch RuntimeError ("index 10 is out of bounds", "Input type (float) and bias type
(double) should be the same") or NaN maps and scores. Both pointing games refuse the same
maps. A model that outputs NaN in a run has its rows flagged (map status "nan", scores NaN
and counted as flagged), never scored as numbers."""
import json
import math

import pytest
import torch
import torch.nn as nn

from lico_bench.errors import UserError
from lico_bench.explainers import create_explainer
from lico_bench.metrics import create_metric
from tests.reliability.common import cli_ok

EXPLAINERS = [("gradcam", dict(layer="0")), ("gradcampp", dict(layer="0")),
              ("scorecam", dict(layer="0")), ("rise", dict(N=8))]
METRICS = ["insertion", "deletion"]


def _net(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10)).eval().to(dtype)


def _images(dtype=torch.float32):
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)


def _one_line_error(call, *needles) -> str:
    with pytest.raises(UserError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def _calls(model, images, targets):
    """Each explainer and metric called on (model, images, targets)."""
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))
    out = [(f"explainer {n}", lambda n=n, kw=kw: create_explainer(n, **kw)(model, images, targets))
           for n, kw in EXPLAINERS]
    out += [(f"metric {n}", lambda n=n: create_metric(n)(model, images, maps, targets))
            for n in METRICS]
    return out


@pytest.mark.parametrize("target", [10, -1])
def test_target_outside_the_models_classes(target):
    for who, call in _calls(_net(), _images(), torch.tensor([target, 1])):
        _one_line_error(call, "targets must be class indices in 0..9 (the model has 10 classes)",
                        f"got {target}")


@pytest.mark.parametrize("targets,needle", [
    (torch.tensor([1.0, 2.0]), "torch.float32"), (torch.tensor([True, False]), "torch.bool"),
    (torch.tensor([1, 2, 3]), "of shape (3,)"), ("ab", "targets must be"),
], ids=["float", "bool", "three-for-two", "text"])
def test_targets_that_are_no_class_indices(targets, needle):
    for who, call in _calls(_net(), _images(), targets):
        _one_line_error(call, "targets must be", needle)


@pytest.mark.parametrize("model_dtype,images_dtype,needle", [
    (torch.float64, torch.float32, "images are torch.float32 but the model computes in "
                                   "torch.float64 (torch: Input type"),
    (torch.float32, torch.float64, "images are torch.float64 but the model computes in "
                                   "torch.float32"),
    (torch.float16, torch.float16, "the model's parameters are torch.float16"),
    (torch.bfloat16, torch.float32, "the model's parameters are torch.bfloat16"),
    (torch.float32, torch.bfloat16, "images are torch.bfloat16"),
], ids=["f64-model", "f64-images", "half", "bf16-model", "bf16-images"])
def test_dtype_mismatch(model_dtype, images_dtype, needle):
    for who, call in _calls(_net(model_dtype), _images(images_dtype), torch.tensor([1, 2])):
        _one_line_error(call, needle)


class _CastsItsInput(nn.Module):
    """float64 weights that take float32 images (it casts them itself)."""

    def __init__(self):
        super().__init__()
        self.inner = _net(torch.float64)

    def forward(self, x):
        return self.inner(x.double())


def test_float64_models_still_work():
    """The controls: float64 throughout (the numerics tests' reference) and a float64 model
    that casts float32 images itself are supported, so only what the forward pass refuses
    is an error."""
    maps = create_explainer("gradcam", layer="0")(_net(torch.float64), _images(torch.float64),
                                                  torch.tensor([1, 2]))
    assert maps.dtype == torch.float32 and bool(torch.isfinite(maps).all())
    model, images = _CastsItsInput().eval(), _images()
    maps = create_explainer("gradcam", layer="inner.0")(model, images, torch.tensor([1, 2]))
    assert bool(torch.isfinite(maps).all())
    assert create_metric("insertion")(model, images, maps, torch.tensor([1, 2])).values.shape == (2,)


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_images(value):
    images = _images()
    images[1, 2, 3, 4] = value
    for who, call in _calls(_net(), images, torch.tensor([1, 2])):
        _one_line_error(call, "images [1] (of 2) hold NaN or infinite values")


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), -float("inf")],
                         ids=["nan", "inf", "-inf"])
def test_both_pointing_games_refuse_the_same_maps(fill):
    """Before, pointing_game refused a NaN map and energy_pointing_game returned NaN for
    it; an infinite map was a hit or miss for one and NaN for the other."""
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True
    maps = torch.rand(2, 8, 8)
    maps[0, 5, 5] = fill
    for name in ("pointing_game", "energy_pointing_game"):
        _one_line_error(lambda: create_metric(name)(None, None, maps, masks=masks),
                        "maps contain NaN or infinite values")


def test_a_model_that_outputs_nan_is_flagged_not_scored(capsys, ckpts, tmp_path):
    """A checkpoint whose classifier bias is NaN (valid in every other way): the run ends,
    every row's map status is "nan" and its scores are NaN, and the report counts them as
    flagged rather than averaging numbers."""
    obj = torch.load(ckpts["baseline_tiny"], weights_only=True)
    obj["state_dict"]["fc.bias"] = torch.full_like(obj["state_dict"]["fc.bias"], float("nan"))
    bad = tmp_path / "nan_output.pt"
    torch.save(obj, bad)
    out = tmp_path / "res"
    cli_ok(capsys, ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
                    "--batch-size", "4", "--device", "cpu", "--quiet", "--no-train", "--out",
                    str(out), "--checkpoint", f"baseline_tiny={bad}"])
    rows = [json.loads(line) for f in (out / "rows").glob("*.jsonl")
            for line in f.read_text().splitlines()]
    assert len(rows) == 4
    assert {r["map_status"] for r in rows} == {"nan"}
    assert all(math.isnan(r["insertion"]) and math.isnan(r["deletion"]) for r in rows)
    csv = (out / "summary.csv").read_text()
    assert "n_flagged" in csv.splitlines()[0]


def test_images_with_other_channels_than_the_model_takes():
    """[B, 1, H, W] images for a 3-channel model: the metrics (which take any C) ended in
    torch's "expected input ... to have 3 channels"; explainers ask for [B, 3, H, W]."""
    images = _images()[:, :1]
    maps = torch.rand(2, 8, 8)
    for n in METRICS:
        _one_line_error(lambda: create_metric(n)(_net(), images, maps, torch.tensor([1, 2])),
                        "images have 1 channels but the model's first convolution takes 3")
    _one_line_error(lambda: create_explainer("gradcam", layer="0")(_net(), images),
                    "images must be a [B, 3, H, W] float tensor")


@pytest.mark.parametrize("name", ["pointing_game", "energy_pointing_game"])
def test_soft_masks_are_refused(name):
    """Float masks of values other than 0 and 1 were cast to bool: every pixel True, so
    every map was a hit (pointing) or scored 1 (energy). 0/1 floats still work."""
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
    soft = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(3))
    _one_line_error(lambda: create_metric(name)(None, None, maps, masks=soft),
                    "masks must be bool (or hold only 0 and 1)")
    hard = soft > 0.5
    assert torch.equal(create_metric(name)(None, None, maps, masks=hard.float()).values,
                       create_metric(name)(None, None, maps, masks=hard).values)


def test_numpy_targets_are_checked_too():
    import numpy as np

    _one_line_error(lambda: create_explainer("gradcam", layer="0")(_net(), _images(),
                                                                   np.array([1, 11])),
                    "targets must be class indices in 0..9", "got 11")


def test_what_the_api_takes():
    """Held: a zero-image batch to a metric (no values), bool maps (cast), a parameter-free
    model (no dtype or device to compare); ``rise N=0`` and a Linear CAM layer are one
    line each."""
    net, images = _net(), _images()
    assert create_metric("insertion")(net, images[:0], torch.zeros(0, 8, 8)).values.numel() == 0
    v = create_metric("insertion")(net, images, torch.zeros(2, 8, 8, dtype=torch.bool)).values
    assert v.shape == (2,) and bool(torch.isfinite(v).all())
    free = nn.Sequential(nn.Flatten(), nn.Softmax(1)).eval()
    assert create_explainer("rise", N=4)(free, images).shape == (2, 8, 8)
    _one_line_error(lambda: create_explainer("rise", N=0), "option N of method 'rise'")
    _one_line_error(lambda: create_explainer("gradcam", layer="4")(net, images),
                    "CAM layer '4' outputs (2, 10), not a [B, C, h, w] feature map")
