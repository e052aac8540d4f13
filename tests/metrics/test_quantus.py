"""quantus:<Name> adapters: each checked against an independent computation (or our own
metric, for the differential tests), plus the guards for Quantus 0.6.0's known bugs."""
import copy
import json
import math

import numpy as np
import pytest
import torch

from lico_bench.errors import UserError
from lico_bench.metrics import create_metric, deletion_curve, pointing_game

from ..tolerance import EPS64, f32_tol
from .conftest import TinyConv, prob_tol, tiny_logit_magnitude, tiny_terms

H = W = 12                                       # 144 px: 12 divides it (Quantus's assert)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, H, W, generator=g)
    maps = torch.rand(3, H, W, generator=g)      # distinct values, unique maximum
    masks = torch.zeros(3, H, W, dtype=torch.bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 7:12, 0:5] = True
    masks[2, 0:4, 8:12] = True
    return TinyConv().eval(), x, maps, masks


def curve_tol64(model: "Float64", x) -> float:
    """Bound on |p - p'| of two computations of a probability of Float64(TinyConv) on inputs
    bounded pixelwise by |x|: float64 logits within f32_tol(tiny_terms, the |weights|
    network's M, depth 3) at float64 eps, each possibly rounded once to float32 (our
    class_scores takes float32 logits, |z| <= M); prob_tol of that; then the float32
    rounding of the probability."""
    m = tiny_logit_magnitude(model.inner, x)
    d = f32_tol(tiny_terms(x), m, depth=3, eps=EPS64) + f32_tol(1, m)
    return prob_tol(d, 5) + f32_tol(1, 1.0)


def trapz_tol(n_points: int) -> float:
    """|Quantus's dx=1 trapezoid AUC - ours (float64)| on the same curve of n points in
    [0, 1] (or [-1, 1]): a float32 accumulation of n terms whose |terms| sum to <= n - 1 on
    one side; two computations is a safe count."""
    return f32_tol(n_points, n_points - 1)


def corr_tol(u, v, du: float, dv: float) -> float:
    """Bound on |pearson(u, v) - pearson(u', v')| with |u_i - u'_i| <= du, |v_i - v'_i| <= dv.

    Centred, sqrt(n) du bounds the perturbation of u whose norm is sqrt(n) sd(u), so the angle
    between u and u' (and Pearson's r = cos of the angle to v) moves by <= asin(du / sd(u));
    the same for v. Plus both correlations' own rounding: float32 (Quantus) accumulations of n
    terms, depth 3 (mean, squares, dot), at |r|'s scale times max|u| / sd(u) (and v).
    """
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    su, sv = u.std(), v.std()
    cond = max(np.abs(u).max() / su, np.abs(v).max() / sv)
    return (math.asin(min(1.0, du / su)) + math.asin(min(1.0, dv / sv))
            + f32_tol(len(u), cond, depth=3))


class Float64(torch.nn.Module):
    """TinyConv run in float64 (float32 inputs, float64 logits): the correlation tests
    compare the adapter's arithmetic, not the model's float32 rounding, whose worst-case
    bound (curve_tol ~ 9e-4 per probability) is a sizeable part of the drops' spread."""

    def __init__(self, inner):
        super().__init__()
        self.inner = copy.deepcopy(inner).double()

    def forward(self, x):
        return self.inner(x.double())


def probs(model, x, t):
    with torch.no_grad():
        return model(x).softmax(1)[torch.arange(len(t)), t]


def predicted(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


# ----------------------------------------------------------------------------- faithfulness

def test_pixel_flipping_equals_our_deletion(data):
    """Equal work: Quantus flips features_in_step *elements* of the flattened [C, H, W]
    array per step, ordered by argsort(-a) with a broadcast over channels. With distinct map
    values the 3 copies of a pixel are adjacent in that order, so 3*step elements = step
    whole pixels. baseline 0.0 = our zero substrate; its curve has no clean point."""
    model, x, maps, _ = data
    model = Float64(model).eval()           # float64 forwards: a bound well below 1e-3
    step = 4
    m = create_metric("quantus:PixelFlipping", features_in_step=3 * step,
                      perturb_baseline=0.0, normalise=False)
    assert m.higher_is_better is False
    r = m(model, x, maps, None)
    ours = deletion_curve(model, x, maps, step=step)
    assert r.curves.shape == (3, H * W // step) == (3, ours.shape[1] - 1)
    # Quantus's forwards vs ours: two computations of each probability (curve_tol64)
    assert (r.curves - ours[:, 1:]).abs().max() <= curve_tol64(model, x)
    # values: Quantus's AUC, the trapezoid rule with dx=1 (not normalised to [0, 1]), of the
    # curve (just checked to be ours): sum of the points minus half the two ends
    assert (r.values.double() - _trapz_dx1(r.curves)).abs().max() <= trapz_tol(r.curves.shape[1])


def _trapz_dx1(curves):
    """Trapezoid rule with unit spacing over the last axis: [B, n] -> [B] float64."""
    c = curves.double()
    return c.sum(1) - (c[:, 0] + c[:, -1]) / 2


def _patch_curve(model, x, maps, t, patch, morf=True):
    """Zero whole patches, cumulatively, in descending order of their saliency sum."""
    b = x.shape[0]
    sums = maps.view(b, H // patch, patch, W // patch, patch).sum((2, 4)).flatten(1)
    order = sums.argsort(1, descending=morf)
    out = []
    cur = x.clone()
    for j in range(order.shape[1]):
        for i in range(b):
            py, px = divmod(int(order[i, j]), W // patch)
            cur[i, :, py * patch:(py + 1) * patch, px * patch:(px + 1) * patch] = 0
        out.append(probs(model, cur, t))
    return torch.stack(out, 1)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation(data, order):
    model, x, maps, _ = data
    model = Float64(model).eval()           # float64 forwards: a bound well below 1e-3
    m = create_metric("quantus:RegionPerturbation", patch_size=4, order=order,
                      perturb_baseline=0.0, regions_evaluation=9)
    assert m.higher_is_better is (order == "morf")  # AOPC drop: larger is better under MoRF
    r = m(model, x, maps, None)
    t = predicted(model, x)
    ref = probs(model, x, t)[:, None] - _patch_curve(model, x, maps, t, 4, order == "morf")
    assert r.curves.shape == (3, 9)
    # differences of two probabilities, each two computations (curve_tol64)
    assert (r.curves - ref).abs().max() <= 2 * curve_tol64(model, x)
    # AUC (dx=1) of the curve just checked
    want = torch.from_numpy(np.trapz(r.curves.double().numpy(), axis=1))
    assert (r.values.double() - want).abs().max() <= trapz_tol(9)


def test_selectivity(data):
    model, x, maps, _ = data
    model = Float64(model).eval()           # float64 forwards: a bound well below 1e-3
    r = create_metric("quantus:Selectivity", patch_size=4, perturb_baseline=0.0)(model, x, maps, None)
    t = predicted(model, x)
    ref = _patch_curve(model, x, maps, t, 4)
    assert r.curves.shape == (3, 9)
    assert (r.curves - ref).abs().max() <= curve_tol64(model, x)      # two forwards
    assert (r.values.double() - _trapz_dx1(r.curves)).abs().max() <= trapz_tol(9)   # AUC, dx=1


def test_faithfulness_estimate(data):
    """Pearson correlation between the saliency of each removed group and the score drop;
    groups are consecutive chunks of argsort(-a), each removed from the clean image alone."""
    model, x, maps, _ = data
    model = Float64(model).eval()
    r = create_metric("quantus:FaithfulnessEstimate", features_in_step=3 * 8,
                      perturb_baseline=0.0, softmax=True)(model, x, maps, None)
    t = predicted(model, x)
    p0 = probs(model, x, t)
    order = maps.flatten(1).argsort(1, descending=True)
    for i in range(3):
        drops, sal = [], []
        for j in range(0, H * W, 8):
            px = order[i, j:j + 8]
            xi = x[i:i + 1].clone().flatten(2)
            xi[:, :, px] = 0
            drops.append(float(p0[i] - probs(model, xi.view(1, 3, H, W), t[i:i + 1])[0]))
            sal.append(3 * float(maps[i].flatten()[px].sum()))
        ref = np.corrcoef(sal, drops)[0, 1]
        # drops: two probabilities of a float64 forward each side (f32_tol at float64 eps
        # of the |weights| network, then prob_tol); saliency sums of 24 float32 values in
        # [0, 1] (Quantus) vs ours (8 values, times 3), two computations
        d_logit = f32_tol(tiny_terms(x), tiny_logit_magnitude(model.inner, x), depth=3, eps=EPS64)
        tol = corr_tol(sal, drops, f32_tol(24, max(sal)), 2 * prob_tol(d_logit, 5, eps=EPS64))
        assert abs(r.values[i].item() - ref) <= tol


def test_faithfulness_correlation_seeded(data):
    """Pearson correlation, over nr_runs random subsets of subset_size elements of the
    flattened [C, H, W] input (the map broadcast over channels), between the saliency sum of
    the subset and the drop of the target logit (softmax=False) when it is set to 0. The
    subsets are drawn as Quantus 0.6.0 does: NumPy's global generator seeded with ``seed``,
    run by run, image by image, ``np.random.choice(C*H*W, subset_size, replace=False)``."""
    model, x, maps, _ = data
    model = Float64(model).eval()
    nr_runs, subset = 20, 30
    opts = dict(nr_runs=nr_runs, subset_size=subset, perturb_baseline=0.0)
    m = create_metric("quantus:FaithfulnessCorrelation", seed=7, **opts)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = m(model, x, maps, None).values
    assert np.array_equal(np.random.get_state()[1], before)          # caller's RNG untouched
    assert torch.equal(a, m(model, x, maps, None).values)            # same seed, same values
    assert a.shape == (3,)
    # independent computation
    t = predicted(model, x)
    with torch.no_grad():
        logit0 = model(x)[torch.arange(3), t]
    rng = np.random.RandomState(7)
    n = 3 * H * W
    sal = maps[:, None].expand(3, 3, H, W).reshape(3, n).double()
    sums, drops = (torch.zeros(3, nr_runs, dtype=torch.float64),
                   torch.zeros(3, nr_runs, dtype=torch.float64))
    for run in range(nr_runs):
        idx = torch.from_numpy(np.stack([rng.choice(n, subset, replace=False) for _ in range(3)]))
        xp = x.reshape(3, n).clone()
        xp[torch.arange(3)[:, None], idx] = 0.0
        with torch.no_grad():
            drops[:, run] = logit0 - model(xp.view_as(x))[torch.arange(3), t]
        sums[:, run] = sal.gather(1, idx).sum(1)
    ref = [np.corrcoef(sums[i].numpy(), drops[i].double().numpy())[0, 1] for i in range(3)]
    # drops: two logits, each two float64 forwards (f32_tol at float64 eps of the |weights|
    # network); saliency sums of 30 values in [0, 1], float32 (Quantus) vs float64
    d_logit = f32_tol(tiny_terms(x), tiny_logit_magnitude(model.inner, x), depth=3, eps=EPS64)
    for i in range(3):
        tol = corr_tol(sums[i], drops[i], f32_tol(30, float(sums[i].max()), computations=1),
                       2 * d_logit)
        assert abs(a[i].item() - ref[i]) <= tol, i
    b = create_metric("quantus:FaithfulnessCorrelation", seed=8, **opts)(model, x, maps, None).values
    assert not torch.equal(a, b)


# ----------------------------------------------------------------------------- complexity

def test_sparseness_is_the_gini_index(data):
    model, x, maps, _ = data
    sal = maps - 0.3                                                # abs=True by default
    r = create_metric("quantus:Sparseness")(None, x, sal, None)
    a = sal.abs().flatten(1).double()
    a = a / a.amax(1, keepdim=True) + 1e-7                          # per-image max, Quantus's eps
    a, n = a.sort(1).values, a.shape[1]
    k = torch.arange(1, n + 1, dtype=torch.float64)
    gini = ((2 * k - n - 1) * a).sum(1) / (n * a.sum(1))
    # Quantus in float32: normalisation then the two n-term sums (depth 2); magnitude at the
    # Gini's scale: sum |(2k - n - 1) a| / (n sum a), plus |gini| <= 1 for the denominator
    mag = float((((2 * k - n - 1).abs() * a).sum(1) / (n * a.sum(1))).max()) + 1
    assert (r.values.double() - gini).abs().max() <= f32_tol(n + 1, mag, depth=2)


def test_complexity_is_the_entropy(data):
    _, x, maps, _ = data
    r = create_metric("quantus:Complexity")(None, x, maps, None)
    p = maps.flatten(1).double()
    p = p / p.sum(1, keepdim=True)
    want = -(p * (p + 1e-12).log()).sum(1)
    # float32 (Quantus): p from an n-term sum and a division (relative error gamma_{n+1}, so
    # log p within that and p log p within gamma (p + |p log p|)), then the n-term entropy
    # sum of terms of one sign: magnitude 1 + entropy, depth 2; plus the two eps (<= 1e-12
    # per p / p: n * 1e-12)
    n = p.shape[1]
    tol = f32_tol(n + 1, 1 + float(want.max()), depth=2) + n * 1e-12
    assert (r.values.double() - want).abs().max() <= tol


def test_effective_complexity_counts_and_ignores_batch_mates(data):
    _, x, _, _ = data
    sal = torch.zeros(3, H, W)
    sal[0, :2] = 1.0                                               # 24 pixels
    sal[1, 0, :5] = 1e-3                                           # 5 pixels, tiny scale
    sal[2, 3, 3] = 100.0                                           # 1 pixel, huge scale
    r = create_metric("quantus:EffectiveComplexity")(None, x, sal, None)
    # per-image normalisation: image 1 is not wiped out by image 2's max
    assert r.values.tolist() == [24.0, 5.0, 1.0]
    assert create_metric("quantus:EffectiveComplexity").options["normalise_func_kwargs"] == \
        {"normalise_axes": [1, 2, 3]}


# ----------------------------------------------------------------------------- localisation

def test_pointing_game_equals_ours_at_zero_tolerance(data):
    model, x, maps, masks = data
    maps = maps.clone()
    for i, (y, xx) in enumerate([(3, 3), (0, 0), (1, 9)]):          # hit, miss, hit
        maps[i, y, xx] = 2.0
    r = create_metric("quantus:PointingGame")(model, x, maps, None, masks)
    ours = pointing_game(maps, masks, tolerance=0)
    assert r.values.tolist() == ours.tolist() == [1.0, 0.0, 1.0]


def test_pointing_game_empty_mask_is_nan_not_a_hit(data):
    import quantus

    _, x, maps, masks = data
    masks = masks.clone()
    masks[1] = False
    r = create_metric("quantus:PointingGame")(None, x, maps, None, masks)
    assert math.isnan(r.values[1].item())
    # the bug being guarded: Quantus itself scores the empty mask as a hit
    raw = quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=x[1:2].numpy(), y_batch=np.zeros(1, dtype=int),
        a_batch=maps[1:2, None].numpy().copy(), s_batch=masks[1:2, None].numpy().astype(np.float32),
        channel_first=True)
    assert bool(raw[0]) is True


def test_weighted_variants_are_refused():
    for n in ("quantus:PointingGame", "quantus:AttributionLocalisation"):
        with pytest.raises(UserError, match="weighted=True"):
            create_metric(n, weighted=True)


@pytest.mark.parametrize("name, ref", [
    ("quantus:RelevanceMassAccuracy",
     lambda a, s: (a * s).flatten(1).sum(1) / a.flatten(1).sum(1)),
    ("quantus:AttributionLocalisation",
     lambda a, s: (a * s).flatten(1).sum(1) / (a.flatten(1).sum(1) + 1e-9)),
    ("quantus:RelevanceRankAccuracy",
     lambda a, s: torch.stack([s[i].flatten()[a[i].flatten().argsort(descending=True)[:int(s[i].sum())]]
                               .float().mean() for i in range(len(a))])),
    ("quantus:TopKIntersection",
     lambda a, s: torch.stack([s[i].flatten()[a[i].flatten().argsort(descending=True)[:10]]
                               .float().mean() for i in range(len(a))])),
])
def test_mask_metrics_by_hand_and_nan_for_empty_masks(data, name, ref):
    _, x, maps, masks = data
    opts = {"k": 10} if name.endswith("TopKIntersection") else {}
    m = create_metric(name, **opts)
    assert m.needs_masks and m.higher_is_better
    a = maps / maps.flatten(1).amax(1)[:, None, None]              # per-image normalisation
    r = m(None, x, maps, None, masks)
    # float32 both: a ratio <= 1 of sums of n = 144 positive terms of the normalised map
    # (normalisation, then the sums: depth 2); the rank metrics are exact counts / k, one
    # rounding each
    assert (r.values - ref(a, masks).float()).abs().max() <= f32_tol(H * W + 1, 1.0, depth=2)
    masks = masks.clone()
    masks[2] = False
    r2 = m(None, x, maps, None, masks)
    # image by image: the others are computed exactly as before
    assert torch.isnan(r2.values[2]) and torch.equal(r2.values[:2], r.values[:2])
    with pytest.raises(UserError, match="masks"):
        m(None, x, maps, None)


# ----------------------------------------------------------------------------- edge guards

def test_options_json_and_fixed_settings():
    m = create_metric("quantus:PixelFlipping", features_in_step=12)
    json.dumps(m.options, allow_nan=False)
    assert m.options["features_in_step"] == 12 and m.options["seed"] == 0
    assert m.options["softmax"] is True and "return_aggregate" not in m.options
    with pytest.raises(UserError, match="return_aggregate"):
        create_metric("quantus:Sparseness", return_aggregate=True)
    with pytest.raises(UserError, match="JSON"):
        create_metric("quantus:Sparseness", normalise_func=np.abs)


def test_missing_np_trapz_is_a_clear_error(monkeypatch):
    monkeypatch.delattr(np, "trapz")
    for n in ("quantus:PixelFlipping", "quantus:RegionPerturbation", "quantus:Selectivity"):
        with pytest.raises(UserError, match="numpy<2.4"):
            create_metric(n)
    create_metric("quantus:Sparseness")                            # no AUC, still fine


def test_train_mode_refused_and_quantus_errors_are_user_errors(data):
    model, x, maps, _ = data
    model.train()
    with pytest.raises(UserError, match="training mode"):
        create_metric("quantus:PixelFlipping", features_in_step=12)(model, x, maps, None)
    model.eval()
    with pytest.raises(UserError, match="Quantus"):
        create_metric("quantus:PixelFlipping", features_in_step=7)(model, x, maps, None)
