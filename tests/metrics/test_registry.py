"""The uniform metric interface used by the runner."""
import json

import pytest
import torch

from lico_bench.errors import UserError
from lico_bench.metrics.builtin import DEFAULT_RANDOM_ORDERS
from lico_bench.metrics import (Metric, MetricResult, auc, causal_curves, create_metric,
                                list_metrics, overall, pointing_game, register_metric)

from ..tolerance import f32_tol
from .conftest import curve_tol


def test_names_and_flags():
    names = list_metrics()
    for n in ("insertion", "deletion", "pointing_game", "energy_pointing_game",
              "quantus:PixelFlipping", "quantus:PointingGame"):
        assert n in names
    expect = {"insertion": (True, False), "deletion": (False, False),
              "pointing_game": (True, True), "energy_pointing_game": (True, True)}
    for n, (hib, masks) in expect.items():
        m = create_metric(n)
        assert m.name == n and m.higher_is_better is hib and m.needs_masks is masks
        json.dumps(m.options, allow_nan=False)


def test_options_record_every_default():
    m = create_metric("insertion", step=16)
    assert m.options == {"step": 16, "substrate": "blur", "score": "softmax", "batch_size": 128,
                         "blur_size": 11, "blur_sigma": 5.0, "blur_kernel": "rise",
                         "random_orders": DEFAULT_RANDOM_ORDERS}
    assert create_metric("deletion").options["substrate"] == "zero"
    assert create_metric("pointing_game").options == {"tolerance": None}


@pytest.mark.parametrize("name, opts, match", [
    ("insertoin", {}, "Did you mean 'insertion'"),
    ("insertion", {"stepp": 3}, "no option 'stepp'"),
    ("insertion", {"step": 0}, "step"),
    ("deletion", {"substrate": "noise"}, "substrate"),
    ("insertion", {"score": "prob"}, "score"),
    ("insertion", {"random_orders": -1}, "random_orders"),
    ("deletion", {"random_orders": 1025}, "random_orders"),
    ("road", {"random_orders": 4}, "no option 'random_orders'"),
    ("pointing_game", {"tolerance": -2}, "tolerance"),
    ("insertion", {"blur_sigma": float("nan")}, "blur_sigma of metric .insertion. must be a finite number"),
])
def test_bad_names_and_options(name, opts, match):
    with pytest.raises(UserError, match=match):
        create_metric(name, **opts)


def test_call_contract(tiny, images, maps):
    ins, dele = create_metric("insertion", step=5), create_metric("deletion", step=5)
    r_i, r_d = ins(tiny, images, maps, None), dele(tiny, images, maps, None)
    assert isinstance(r_i, MetricResult)
    ref = causal_curves(tiny, images, maps, step=5)
    tol = curve_tol(tiny, images, "softmax")
    for r, k in ((r_i, "insertion"), (r_d, "deletion")):
        assert r.values.shape == (4,) and r.values.dtype == torch.float32
        assert r.curves.shape == (4, 14) and r.curves.dtype == torch.float32
        # one mode per call here, both modes in ref: other forward batches, two float32
        # computations of each point (curve_tol: 28-term conv window, depth 3, |weights|
        # network magnitude); the AUC weights sum to 1, plus each float32 AUC's rounding
        assert (r.curves - ref[k]).abs().max() <= tol
        assert (r.values - auc(ref[k])).abs().max() <= tol + f32_tol(1, 1.0)
    assert torch.equal(overall(r_i.values, r_d.values), r_i.values - r_d.values)   # one subtraction


def test_mask_metrics_need_masks(tiny, images, maps):
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 2:5] = True
    masks[3] = False
    for n in ("pointing_game", "energy_pointing_game"):
        m = create_metric(n)
        with pytest.raises(UserError, match="needs ground-truth masks"):
            m(tiny, images, maps, None)
        r = m(tiny, images, maps, None, masks=masks)
        assert r.curves is None and r.values.shape == (4,) and torch.isnan(r.values[3])
    r = create_metric("pointing_game", tolerance=0)(None, images, maps, None, masks)
    # hits are 0, 1 or NaN: exactly equal
    torch.testing.assert_close(r.values, pointing_game(maps, masks, 0), rtol=0, atol=0, equal_nan=True)


def test_register_metric():
    class Mean(Metric):
        name = "test_metrics_mean_map"
        higher_is_better = True
        defaults = {"scale": 1.0}

        def compute(self, model, images, maps, targets, masks):
            return MetricResult(maps.flatten(1).mean(1) * self.options["scale"], None)

    if Mean.name not in list_metrics():
        register_metric(Mean.name, Mean)
    with pytest.raises(ValueError):
        register_metric(Mean.name, Mean)
    m = create_metric(Mean.name, scale=2.0)
    r = m(None, torch.zeros(2, 3, 4, 4), torch.ones(2, 4, 4))
    assert r.values.tolist() == [2.0, 2.0]
