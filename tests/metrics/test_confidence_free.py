"""Scores freed from the model's confidence (issue 25 item 4; lico_bench.metrics.causal):
gain over random pixel orders and the AUC normalised by the clean image's probability.

Hand-made model families whose probability of the explained class is known in closed form
(ProbModel: p(x) = c * <w, x> + d, handed to the softmax as log-probabilities), a hand-computed
4-pixel case, the expectation of a random map's gain, and a plain per-image reference loop.
"""
import itertools
import math

import pytest
import torch
import torch.nn as nn

from lico_bench.errors import UserError
from lico_bench.metrics import auc, causal_curves, create_metric
from lico_bench.metrics.causal import image_seed, random_ranks
from tests.tolerance import EPS32, f32_tol, softmax_tol

from .conftest import TinyConv
from .test_causal import reference_curve


class ProbModel(nn.Module):
    """Two classes with P(class 0 | x) = c * <w, x> + d exactly (computed in float64).

    The logits are (log p, log(1 - p)), so the softmax the metrics take gives back p up to
    rounding. x: [B, C, H, W] float32 with values in [0, 1]; w >= 0 with sum(w) <= 1 keeps
    <w, x> in [0, 1], and (c, d) keep p in [0, 1).
    """

    def __init__(self, w: torch.Tensor, c: float, d: float = 0.0):
        super().__init__()
        self.register_buffer("w", w.double().flatten())
        self.c, self.d = c, d

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * (x.double().flatten(1) @ self.w) + self.d

    def forward(self, x):
        p = self.prob(x)
        return torch.stack([torch.log(p), torch.log1p(-p)], 1).float()


def prob_rel_tol(max_abs_logit: float) -> float:
    """Relative error of a probability read back from ProbModel: the float64 logits are
    rounded to float32 (|error| <= EPS32/2 * |logit|), then softmaxed over 2 classes
    (softmax_tol: a relative bound, p' / p in [exp(-2d), exp(2d)] plus the softmax's own
    rounding); the float64 log and dot product add ~1e-16, far below."""
    return softmax_tol(EPS32 / 2 * max_abs_logit, 2)


# ----------------------------------------------------------------------------- hand case

def test_hand_computed_four_pixels(monkeypatch):
    """One channel, 2x2 image of ones, w = (0.4, 0.3, 0.2, 0.1), c = 0.8: p(full) = 0.8.
    Map = w: order pixel 0, 1, 2, 3; step 1 pixel, zero substrate for both curves (n = 4).

    deletion  p_k = 0.8 * (1, .6, .3, .1, 0)  = (.8, .48, .24, .08, 0)
              AUC = (.8 + .48 + .24 + .08 + 0 - .8/2 - 0/2) / 4 = 1.2 / 4 = 0.3
    insertion p_k = 0.8 * (0, .4, .7, .9, 1)  = (0, .32, .56, .72, .8)
              AUC = (0 + .32 + .56 + .72 + .8 - 0/2 - .8/2) / 4 = 2.0 / 4 = 0.5
    Random orders given as ranks: reverse (ranks 3, 2, 1, 0: pixel 3 first) and identity.
      reverse deletion  .8 * (1, .9, .7, .4, 0): AUC = (2.4 - .4) / 4 = 0.5
      reverse insertion .8 * (0, .1, .3, .6, 1): AUC = (1.6 - .4) / 4 = 0.3
      identity = the map's order: 0.3 and 0.5.
    gain: deletion (0.5 + 0.3)/2 - 0.3 = 0.1; insertion 0.5 - (0.3 + 0.5)/2 = 0.1.
    normalised: deletion 0.3 / 0.8 = 0.375; insertion 0.5 / 0.8 = 0.625.
    Over all 24 orders E[p after k pixels changed] = 0.8 * k/4 (insertion), so the mean
    random AUC is 0.8 * 1/2 = 0.4 for both curves and the expected gain is 0.1 for both.
    """
    w = torch.tensor([0.4, 0.3, 0.2, 0.1])
    model = ProbModel(w, 0.8).eval()
    x = torch.ones(1, 1, 2, 2)
    sal = w.view(1, 2, 2)
    t = torch.zeros(1, dtype=torch.long)
    ranks = torch.tensor([[[3, 2, 1, 0], [0, 1, 2, 3]]])
    out = causal_curves(model, x, sal, t, step=1, insertion_substrate="zero",
                        deletion_substrate="zero", random_ranks=ranks)
    # |logit| <= |log 0.08| < 3 (log 0 = -inf is exact: exp gives 0); the AUC is a weighted
    # mean of points, so it keeps their relative error; + the float32 cast of the AUC.
    tol = prob_rel_tol(3.0) + EPS32
    expect = {"deletion": ([0.8, 0.48, 0.24, 0.08, 0.0], 0.3, [0.5, 0.3]),
              "insertion": ([0.0, 0.32, 0.56, 0.72, 0.8], 0.5, [0.3, 0.5])}
    for mode, (curve, a, rand) in expect.items():
        assert torch.allclose(out[mode][0].double(), torch.tensor(curve, dtype=torch.float64),
                              rtol=tol, atol=0), mode
        assert abs(auc(out[mode]).item() - a) <= tol * a, mode
        got = auc(out[f"{mode}_random"][0]).double()
        assert torch.allclose(got, torch.tensor(rand, dtype=torch.float64), rtol=tol, atol=0)
    # the metrics' columns from the same numbers, with these two orders drawn in their place
    for name, a, norm in (("deletion", 0.3, 0.375), ("insertion", 0.5, 0.625)):
        m = create_metric(name, step=1, substrate="zero", random_orders=2)
        monkeypatch.setattr("lico_bench.metrics.builtin.random_ranks",
                            lambda ids, seed, k, hw: ranks.clone())
        res = m(model, x, sal, t, image_ids=[7], seed=0)
        assert abs(res.values.item() - a) <= tol * a
        # gain = difference of two AUCs of size <= 0.5, each within tol relative
        assert abs(res.columns["gain"][0].item() - 0.1) <= 2 * tol * 0.5 + EPS32
        # ratio of two values each within tol relative: 2 tol relative, + the cast
        assert abs(res.columns["norm"][0].item() - norm) <= (2 * tol + EPS32) * norm
    # all 24 orders as random orders: mean random AUC 0.4 exactly, for both curves
    perms = torch.tensor(list(itertools.permutations(range(4))))[None]       # [1, 24, 4]
    out = causal_curves(model, x, sal, t, step=1, insertion_substrate="zero",
                        deletion_substrate="zero", random_ranks=perms)
    for mode in ("insertion", "deletion"):
        mean = auc(out[f"{mode}_random"][0]).double().mean().item()
        assert abs(mean - 0.4) <= tol * 0.8, mode   # a mean of AUCs <= 0.8 within tol each


# ----------------------------------------------------------------------------- confidence

@pytest.fixture
def scene():
    """[3, 1, 8, 8] images in [0, 1], w >= 0 summing to 0.9, distinct-valued maps."""
    g = torch.Generator().manual_seed(5)
    w = torch.rand(64, generator=g, dtype=torch.float64)
    w = w / w.sum() * 0.9
    x = torch.rand(3, 1, 8, 8, generator=g)
    maps = torch.rand(3, 8, 8, generator=g)
    return w, x, maps


def _scores(model, x, maps, name, k=6):
    """(AUC, gain, normalised AUC, smallest non-zero curve point) per image, class 0."""
    m = create_metric(name, step=4, random_orders=k)     # blur (insertion) / zero (deletion)
    r = m(model, x, maps, torch.zeros(x.shape[0], dtype=torch.long), image_ids=[3, 9, 27], seed=11)
    c = r.curves.double()
    return (r.values.double(), r.columns["gain"][0].double(), r.columns["norm"][0].double(),
            float(c[c > 0].min()))


@pytest.mark.parametrize("name", ["insertion", "deletion"])
def test_twice_as_confident_by_scaling(scene, name):
    """p = c * <w, x> with c = 0.4 and 0.8: every curve point doubles, so the normalised AUC
    is the same and the gain doubles (the same random orders: same seed and image ids).
    The raw AUC doubles too: the raw score alone would call the confident model better."""
    w, x, maps = scene
    a1, g1, n1, lo = _scores(ProbModel(w, 0.4).eval(), x, maps, name)
    a2, g2, n2, _ = _scores(ProbModel(w, 0.8).eval(), x, maps, name)
    # |logit| <= max(|log p|, |log(1 - p)|) with 0 < p <= 0.72 (log 0 = -inf is exact): the
    # smallest non-zero point of the less confident model's curves bounds |log p| (a factor
    # 2 for rounding is the + 1); the random curves' points lie between the same images.
    tol = prob_rel_tol(abs(math.log(lo)) + 1.0) + EPS32
    # each AUC within tol relative: |a2 - 2 a1| <= tol a2 + 2 tol a1 = 2 tol (2 a1)
    assert torch.allclose(a2, 2 * a1, rtol=2 * tol, atol=0)
    # AUC and clean probability each within tol relative, for each model: 4 tol, + casts
    assert torch.allclose(n2, n1, rtol=4 * tol + 2 * EPS32, atol=0)
    # gain = AUC(map) - mean AUC(random): both terms <= 0.72, each within tol relative, +
    # the cast: err(g) <= 2 tol 0.8 + EPS32, and g2 - 2 g1 carries err(g2) + 2 err(g1)
    assert torch.allclose(g2, 2 * g1, rtol=0, atol=3 * (2 * tol * 0.8 + EPS32))


@pytest.mark.parametrize("name", ["insertion", "deletion"])
def test_twice_as_confident_by_shifting(scene, name):
    """p = 0.3 <w, x> + d with d = 0.05 and 0.35 (a confidence that moves every point alike):
    every AUC moves by d, the gain stays the same; the normalised AUC does not (what each
    score is free of: see lico_bench.metrics.causal)."""
    w, x, maps = scene
    a1, g1, n1, _ = _scores(ProbModel(w, 0.3, 0.05).eval(), x, maps, name)
    a2, g2, n2, _ = _scores(ProbModel(w, 0.3, 0.35).eval(), x, maps, name)
    tol = prob_rel_tol(abs(math.log(0.05)) + 1.0) + EPS32   # p >= 0.05, 1 - p >= 0.35
    assert torch.allclose(a2 - a1, torch.full_like(a1, 0.3), rtol=0, atol=2 * tol * 0.7)
    assert torch.allclose(g2, g1, rtol=0, atol=2 * (2 * tol * 0.7 + EPS32))
    assert ((n2 - n1).abs() > 0.01).all()


# ----------------------------------------------------------------------------- chance

def test_random_maps_gain_zero_in_expectation():
    """A map drawn uniformly at random orders pixels like each random order, so its gain has
    mean 0. M = 256 random maps on copies of one image (distinct image ids: independent
    random orders), k = 4: the gains are i.i.d. with variance s^2 (1 + 1/k); their mean must
    lie within 4 standard errors of 0 (the sample's own standard deviation / sqrt(M);
    a normal tail of 6e-5, and the draws are seeded, so the test is deterministic)."""
    model = TinyConv().eval()
    g = torch.Generator().manual_seed(3)
    M = 256
    x = torch.randn(1, 3, 8, 8, generator=g).expand(M, -1, -1, -1).contiguous()
    maps = torch.rand(M, 8, 8, generator=g)
    for name in ("insertion", "deletion"):
        r = create_metric(name, step=8, random_orders=4)(model, x, maps, None,
                                                         image_ids=range(M), seed=0)
        gain = r.columns["gain"][0].double()
        se = gain.std().item() / math.sqrt(M)
        assert se > 0 and abs(gain.mean().item()) <= 4 * se, name
    # exactly: every order of a 4-pixel image as the map, every order as the random orders;
    # the mean gain over the 24 maps is 0 (the same 24 AUCs on both sides)
    perms = torch.tensor(list(itertools.permutations(range(4))))
    model2 = ProbModel(torch.tensor([0.4, 0.3, 0.2, 0.1]), 0.8).eval()
    x2 = torch.ones(24, 1, 2, 2)
    out = causal_curves(model2, x2, (4 - perms).float().view(24, 2, 2), None, step=1,
                        insertion_substrate="zero", random_ranks=perms[None].expand(24, -1, -1))
    tol = prob_rel_tol(3.0) + EPS32
    for mode in ("insertion", "deletion"):
        a_map = auc(out[mode]).double()
        a_rand = auc(out[f"{mode}_random"].flatten(0, 1)).double().view(24, 24).mean(1)
        assert abs((a_map - a_rand).mean().item()) <= 2 * tol * 0.8, mode


# ----------------------------------------------------------------------------- reference

def _abs_logit_bound(model: TinyConv, x: torch.Tensor) -> float:
    """Sum of |terms| at the logits: the network with |weights|, |biases| and |inputs| (ReLU
    and average pooling are monotone, so this bounds every accumulation's sum |x_i|)."""
    with torch.no_grad():
        h = torch.nn.functional.conv2d(x.abs(), model.conv.weight.abs(), model.conv.bias.abs(),
                                       padding=1)
        h = model.pool(h).flatten(1)
        return float((h @ model.fc.weight.abs().t() + model.fc.bias.abs()).max())


def _envelope(x: torch.Tensor) -> torch.Tensor:
    """max(|x|, |blur(x)|) per pixel: every perturbed image's pixels are x, blur(x) or 0."""
    from lico_bench.metrics import gaussian_blur
    return torch.maximum(x.abs(), gaussian_blur(x).abs())


@pytest.mark.parametrize("name", ["insertion", "deletion"])
def test_equals_plain_per_image_reference_loop(images, maps, name):
    """Gain and normalised AUC against the definition computed one image and one order at a
    time (test_causal.reference_curve: sort, change pixels step by step, forward one image),
    with the random orders of random_ranks(ids, seed) turned into maps -rank."""
    model = TinyConv().eval()
    ids, seed, k, step = [5, 17, 2, 40], 3, 3, 5
    res = create_metric(name, step=step, random_orders=k)(model, images, maps, None,
                                                          image_ids=ids, seed=seed)
    with torch.no_grad():
        pred = model(images).argmax(1)
    ranks = random_ranks(ids, seed, k, 64)
    for b in range(4):
        ref = reference_curve(model, images[b], maps[b], int(pred[b]), step, name).double()
        a_map = auc(ref[None]).double().item()
        a_rand = [auc(reference_curve(model, images[b], -ranks[b, j].view(8, 8).float(),
                                      int(pred[b]), step, name)[None]).double().item()
                  for j in range(k)]
        mean_rand = sum(a_rand) / k
        gain = a_map - mean_rand if name == "insertion" else mean_rand - a_map
        clean = float(ref[-1] if name == "insertion" else ref[0])
        # batched vs one-image forwards: logits within f32_tol (27-term conv windows, depth
        # 3: conv, pool, fc; magnitude from the absolute network on max(|x|, |blur x|), which
        # bounds every pixel of every perturbed image), probabilities within softmax_tol
        # (5 classes; relative, and p <= 1); AUCs (weighted means) and gains inherit it.
        p_tol = softmax_tol(f32_tol(27, _abs_logit_bound(model, _envelope(images[b:b + 1])),
                                    depth=3), 5)
        assert abs(res.values[b].item() - a_map) <= p_tol + EPS32
        assert abs(res.columns["gain"][0][b].item() - gain) <= 2 * p_tol + 2 * EPS32
        norm = a_map / clean
        assert abs(res.columns["norm"][0][b].item() - norm) <= (p_tol / clean) * (1 + norm) + EPS32


# ----------------------------------------------------------------------------- draws

def test_random_orders_per_image_not_per_batch():
    """Each row is a permutation (a rank); an image's orders depend on (seed, id) only, the
    first k' of k orders are the orders of k'; other seeds or ids give other orders."""
    r = random_ranks([4, 9, 4], 1, 5, 64)
    assert r.dtype == torch.long and r.shape == (3, 5, 64)
    assert torch.equal(r.sort(-1).values, torch.arange(64).expand(3, 5, 64))
    assert torch.equal(r[0], r[2])
    assert torch.equal(random_ranks([9], 1, 5, 64)[0], r[1])
    assert torch.equal(random_ranks([9], 1, 2, 64)[0], r[1, :2])
    assert not torch.equal(random_ranks([9], 2, 5, 64)[0], r[1])
    assert not torch.equal(r[0], r[1])
    assert image_seed(0, 1) != image_seed(1, 0) and image_seed(-1, 3) == image_seed(-1, 3)


def test_metric_gain_independent_of_batch(images, maps):
    """The same image scored alone or in a batch, at another position: the same gain."""
    model = TinyConv().eval()
    m = create_metric("deletion", step=7, random_orders=3)
    full = m(model, images, maps, None, image_ids=[10, 11, 12, 13], seed=2)
    one = m(model, images[2:3], maps[2:3], None, image_ids=[12], seed=2)
    # the same forwards up to batch composition: the curves agree to rounding (TinyConv:
    # 27-term windows, depth 3, logits of size <= the absolute network's)
    tol = softmax_tol(f32_tol(27, _abs_logit_bound(model, _envelope(images[2:3])), depth=3), 5)
    assert abs(full.columns["gain"][0][2].item() - one.columns["gain"][0][0].item()) <= 2 * tol + 2 * EPS32


def test_options_columns_and_bad_input(images, maps):
    model = TinyConv().eval()
    assert create_metric("insertion").extra_columns == {"gain": True, "norm": True}
    assert create_metric("deletion").extra_columns == {"gain": True, "norm": False}
    assert create_metric("deletion", random_orders=0).extra_columns == {"norm": False}
    assert create_metric("insertion", score="logit").extra_columns == {"gain": True}
    assert create_metric("road_morf").extra_columns == {"gain": True}
    assert create_metric("road").extra_columns == {}
    r = create_metric("insertion", random_orders=0, score="logit", step=9)(model, images, maps)
    assert r.columns is None
    with pytest.raises(UserError, match="random_ranks"):
        causal_curves(model, images, maps, step=9, random_ranks=torch.zeros(4, 2, 63, dtype=torch.long))
    with pytest.raises(UserError, match="image ids"):
        create_metric("insertion", step=9)(model, images, maps, image_ids=[1, 2])
