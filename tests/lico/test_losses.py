"""L_MM, batched log-domain Sinkhorn and L_OT against hand-computed values and POT."""
import math

import numpy as np
import ot
import pytest
import torch

from lico_bench.lico import manifold_matching_loss, ot_cost, ot_loss, sinkhorn, sinkhorn_log
from lico_bench.lico.losses import EXP_DOMAIN_MAX_RANGE
from tests.tolerance import EPS32, EPS64, f32_tol


def _kl_rows_by_hand(e, t, tau, sign=-1.0):
    """sum_i sum_j A^G_ij log(A^G_ij / A^F_ij) / B with scalar Python loops (LICO.md)."""
    def dist(a, b):
        return math.sqrt(max(sum(x * x for x in a) + sum(y * y for y in b)
                             - 2 * sum(x * y for x, y in zip(a, b)), 1e-4))

    def norm(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    e, t = [norm(v) for v in e], [norm(v) for v in t]
    total = 0.0
    for i in range(len(e)):
        zf = [math.exp(sign * dist(e[i], e[j]) / tau) for j in range(len(e))]
        zg = [math.exp(sign * dist(t[i], t[j]) / tau) for j in range(len(t))]
        af = [z / sum(zf) for z in zf]
        ag = [z / sum(zg) for z in zg]
        total += sum(g * math.log(g / f) for f, g in zip(af, ag))
    return total / len(e)


def _kl_tol(width, batch, tau, dmin, eps=EPS64):
    """Bound on |a - b| for two computations of L_MM (float64 unless ``eps`` says otherwise).

    Distances: Gram entries of unit vectors (n_terms = width, |terms| <= 4 in sum; depth 3:
    normalisation, Gram, the expansion) through a sqrt, whose absolute error is the Gram's
    divided by 2 D >= 2 ``dmin`` (the closest distinct pair; the diagonal clamps to 0.01
    exactly); divided by tau they are the logits (|logit| <= 2 / tau). The log-softmax adds a
    sum of ``batch`` exps (|lse| <= 2 / tau + log B) and moves each log-probability by <= 2 x
    its logits' error; L_MM = sum_ij A^G_ij (log A^G_ij - log A^F_ij) / B with rows of A^G
    summing to 1 is off by <= the largest log-probability error of both sides, plus its own
    sum of B^2 terms of that size.
    """
    logit = f32_tol(width, 4.0, depth=3, eps=eps) / (2 * dmin) / tau
    lse = f32_tol(batch, 4 / tau + math.log(batch), depth=2, eps=eps)
    return 2 * (2 * logit + lse) + f32_tol(batch * batch, 2 * (4 / tau + math.log(batch)), eps=eps)


def _dmin(x):
    """Smallest distance between distinct L2-normalised rows of x [B, D]."""
    u = torch.nn.functional.normalize(x.double(), dim=-1)
    d = torch.cdist(u, u)
    return (d + torch.eye(len(u), dtype=d.dtype) * 9).min().item()


# ----------------------------------------------------------------------------- MM

def test_mm_zero_when_structures_equal():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(16, 8, generator=g, dtype=torch.float64)
    # Text side: the same points rotated into a wider space and rescaled per row.
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    txt = (img @ q[:8]) * torch.rand(16, 1, generator=g, dtype=torch.float64).add(0.5)
    tau = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    # 0 exactly in exact arithmetic: both sides are computations of the same distances
    # (_kl_tol: width 20 >= 8, batch 16, the closest pair of images)
    tol = _kl_tol(20, 16, tau.item(), _dmin(img))
    assert manifold_matching_loss(img, txt, tau).abs().item() <= tol
    assert manifold_matching_loss(img, 3 * img, 0.5).abs().item() <= _kl_tol(8, 16, 0.5, _dmin(img))
    assert manifold_matching_loss(img, torch.randn(16, 5, generator=g, dtype=torch.float64),
                                  tau).item() > tol                       # clearly not 0


def test_mm_hand_computed_two_samples():
    # Orthogonal images, identical texts: A^G = 1/2 everywhere, A^F = softmax(-[0.01, sqrt 2]/tau).
    tau = 2.0
    got = manifold_matching_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
                                 torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64), tau)
    af = [math.exp(-0.01 / tau), math.exp(-math.sqrt(2) / tau)]
    af = [a / sum(af) for a in af]
    want = sum(0.5 * math.log(0.5 / a) for a in af)        # both rows are equal
    # float64 both; the images' only distinct pair is sqrt(2) apart, the texts' none
    assert abs(got.item() - want) <= _kl_tol(2, 2, tau, math.sqrt(2))


def test_mm_hand_computed_three_samples_uses_minus_distance():
    e = [[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 2.0]]
    t = [[0.0, 1.0], [1.0, 1.0], [1.0, -0.5]]
    tau = 0.7
    want = _kl_rows_by_hand(e, t, tau)
    assert abs(want - _kl_rows_by_hand(e, t, tau, sign=+1.0)) > 1e-3   # the case tells -D from +D
    got = manifold_matching_loss(torch.tensor(e, dtype=torch.float64),
                                 torch.tensor(t, dtype=torch.float64), tau)
    dmin = min(_dmin(torch.tensor(e)), _dmin(torch.tensor(t)))
    assert abs(got.item() - want) <= _kl_tol(3, 3, tau, dmin)


def test_mm_temperature_is_differentiable():
    g = torch.Generator().manual_seed(1)
    tau = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    img = torch.randn(8, 6, generator=g, requires_grad=True)
    loss = manifold_matching_loss(img, torch.randn(8, 4, generator=g), tau)
    loss.backward()
    assert tau.grad is not None and tau.grad.abs() > 0 and img.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- Sinkhorn

@pytest.mark.parametrize("solver", [sinkhorn_log, sinkhorn])
@pytest.mark.parametrize("uniform", [True, False])
def test_sinkhorn_matches_pot(uniform, solver):
    g = torch.Generator().manual_seed(2)
    bsz, n, m, eps = 4, 7, 5, 0.1
    cost = torch.rand(bsz, n, m, generator=g, dtype=torch.float64) * 2
    if uniform:
        a = b = None
    else:
        a = torch.rand(bsz, n, generator=g, dtype=torch.float64) + 0.2
        b = torch.rand(bsz, m, generator=g, dtype=torch.float64) + 0.2
        a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    plan = solver(cost, a, b, eps=eps, max_iter=20000, tol=1e-14)
    for i in range(bsz):
        ai = np.full(n, 1 / n) if uniform else a[i].numpy()
        bi = np.full(m, 1 / m) if uniform else b[i].numpy()
        ref = ot.bregman.sinkhorn_log(ai, bi, cost[i].numpy(), reg=eps, numItermax=20000,
                                      stopThr=1e-14)
        ref = torch.from_numpy(ref)
        rel = ((plan[i] - ref).abs() / ref.abs()).max().item()
        assert rel < 1e-5, rel
        assert torch.allclose(plan[i].sum(1), torch.from_numpy(ai), rtol=1e-9)
        assert torch.allclose(plan[i].sum(0), torch.from_numpy(bi), rtol=1e-9)


@pytest.mark.parametrize("solver", [sinkhorn_log, sinkhorn])
def test_sinkhorn_stops_on_dual_change(solver):
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(3, 30, 6, generator=g) * 4
    plan = solver(cost, eps=0.1, max_iter=100, tol=1e-3)
    # Per problem, the early stop equals a fixed number k_b of full iterations, well below
    # 100, and the batched plan is the plan each problem gets alone (batch-independent).
    for b in range(3):
        alone = solver(cost[b:b + 1], eps=0.1, max_iter=100, tol=1e-3)
        assert torch.equal(plan[b:b + 1], alone)
        # the first such k, found by trying k = 1, 2, ... up to 59 (was: every k up to 100,
        # then ks[0] < 60, the same check; 5050 iterations per problem took 3 min on the
        # perturbed float path's 2 threads)
        k_b = next((k for k in range(1, 60) if torch.equal(
            alone, solver(cost[b:b + 1], eps=0.1, max_iter=k, tol=0))), None)
        assert k_b is not None
    # At convergence both marginals hold; the last g-update makes the columns exact but for
    # float32 rounding: each entry exp((f + g - C) / eps) has an exponent of magnitude
    # <= 3 max C / eps + 2 log(N M) (|f|, |g| <= max C + eps log(N M)), rounded in a
    # logsumexp over N = 30 and the exp: relative error <= gamma(N + 2) (magnitude + 1) per
    # step, 2 steps; then the column's sum of N positive terms (depth 3 in all).
    xi = 3 * cost.max().item() / 0.1 + 2 * math.log(30 * 6)
    assert torch.allclose(plan.sum(1), torch.full((3, 6), 1 / 6), rtol=0,
                          atol=f32_tol(30 + 2, (xi + 1) / 6, depth=3, computations=1))
    # The rows only to the stopping rule's accuracy (mean |f change| < tol = 1e-3, eps = 0.1):
    # a convergence tolerance, not rounding.
    assert torch.allclose(plan.sum(2), torch.full((3, 30), 1 / 30), rtol=0.05)


def test_scaling_domain_equals_log_domain_iteration_by_iteration():
    """Same iteration, same stopping rule: equal plans after any number of iterations,
    with and without early stopping, on L_OT-shaped problems (costs in [0, 4])."""
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(16, 64, 4, 4, generator=g).relu()
    cost = ot_cost(feats, torch.randn(16, 13, 16, generator=g))
    # Relative error per iteration of a plan entry: the log domain rounds exponents of
    # magnitude <= xi = 3 max C / eps + 2 log(N M) in logsumexps over <= 64 terms, the scaling
    # domain sums positive terms (gamma_64 relative); Sinkhorn's map is non-expansive in
    # Hilbert's projective metric, so the iterations' errors add: depth 2 k + 1. Loose in
    # float32 (~0.2 at k = 100), tight on the float64 copy of the same costs (~4e-10).
    xi = 3 * cost.max().item() / 0.1 + 2 * math.log(64 * 13)
    for c, eps in ((cost, EPS32), (cost.double(), EPS64)):
        for tol in (0.0, 1e-3):
            for it in (1, 2, 7, 100):
                a = sinkhorn_log(c, eps=0.1, max_iter=it, tol=tol)
                b = sinkhorn(c, eps=0.1, max_iter=it, tol=tol)
                torch.testing.assert_close(b, a, atol=0, rtol=f32_tol(
                    64 + 2, xi + 1, depth=2 * it + 1, eps=eps))


def test_scaling_domain_falls_back_to_log_domain_on_wide_costs():
    g = torch.Generator().manual_seed(6)
    cost = torch.rand(2, 5, 4, generator=g)
    cost[1, 0, 0] = 0.1 * (EXP_DOMAIN_MAX_RANGE + 30)            # exp(-80): would underflow
    assert torch.equal(sinkhorn(cost, eps=0.1), sinkhorn_log(cost, eps=0.1))
    assert torch.isfinite(sinkhorn(cost * 100, eps=0.1)).all()


@pytest.mark.parametrize("solver", [sinkhorn_log, sinkhorn])
def test_sinkhorn_gradcheck_float64(solver):
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(2, 3, 4, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: solver(c, eps=0.5, max_iter=40, tol=0),
                                    (cost,))


# ----------------------------------------------------------------------------- OT loss

def _orthonormal_feats(scale=1.0):
    """feats [1, 2, 1, 2] with channels e1, e2; txt_maps [1, 2, 2] = (e1, e2) * scale."""
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64).reshape(1, 2, 1, 2)
    return feats, torch.eye(2, dtype=torch.float64)[None] * scale


def test_ot_two_by_two_closed_form():
    # Cost [[0, 2], [2, 0]], marginals 1/2: the entropic plan is proportional to exp(-C/eps),
    # so pi_offdiag = 1 / (2 (1 + e^{2/eps})) and L_OT = 4 pi_offdiag = 2 / (1 + e^{2/eps}).
    feats, txt = _orthonormal_feats(scale=5.0)     # scale: txt rows get L2-normalised
    for eps in (1.0, 0.5):
        got = ot_loss(feats, txt, eps=eps, max_iter=1000, tol=1e-12)
        assert got.item() == pytest.approx(2 / (1 + math.exp(2 / eps)), rel=1e-8)
    # eps -> 0: the plan becomes the identity matching, whose cost is 0.
    assert ot_loss(feats, txt, eps=0.05).item() < 1e-12


def test_ot_constant_cost_and_dead_channel():
    # Channels in span(e1, e2), text in span(e3, e4): every |x - y|^2 = 2, so L_OT = 2.
    feats = torch.tensor([[1.0, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 3.0, 0, 0]]).reshape(1, 3, 2, 2)
    txt = torch.tensor([[[0, 0, 1.0, 0], [0, 0, 0.6, -0.8]]])
    # float32 vs exact: costs |x|^2 + |y|^2 - 2 x.y of unit vectors (4 terms, magnitude <= 4,
    # after normalising: depth 2), a constant cost makes the plan uniform, and the loss sums
    # C M = 6 entries: n_terms 6, depth 3
    assert abs(ot_loss(feats, txt).item() - 2.0) <= f32_tol(6, 4.0, depth=3, computations=1)
    # An all-zero channel (dead ReLU) is at distance |y|^2 = 1 from every text vector.
    dead = torch.zeros(1, 1, 2, 2)
    assert all(abs(c - 1.0) <= f32_tol(4, 1.0, depth=2, computations=1)
               for c in ot_cost(dead, txt).flatten().tolist())
    assert abs(ot_loss(dead, txt).item() - 1.0) <= f32_tol(4, 1.0, depth=3, computations=1)


def test_ot_batch_is_mean_of_singles():
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(3, 8, 2, 3, generator=g, dtype=torch.float64).relu()
    txt = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    batched = ot_loss(feats, txt, tol=1e-12, max_iter=5000)
    singles = [ot_loss(feats[i:i + 1], txt[i:i + 1], tol=1e-12, max_iter=5000) for i in range(3)]
    # Each problem's plan is the one it gets alone (sinkhorn's contract; test above): only
    # the final sums differ, C M = 32 entries pi C (sum <= max C <= 4 per image), then the
    # mean over 3 images: depth 2, float64.
    assert abs(batched.item() - torch.stack(singles).mean().item()) <= f32_tol(
        32, 4.0, depth=2, eps=EPS64)


def test_ot_detached_plan_vs_full_gradient():
    g = torch.Generator().manual_seed(6)
    feats = torch.randn(2, 5, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    # Default: pi is a constant, so the gradient is that of sum(pi * C) with pi fixed.
    ot_loss(feats, txt, tol=1e-10, max_iter=2000).backward()
    gf, gt = feats.grad.clone(), txt.grad.clone()
    feats.grad = txt.grad = None
    cost = ot_cost(feats, txt).detach()
    plan = sinkhorn_log(cost, tol=1e-10, max_iter=2000)
    (plan * ot_cost(feats, txt)).sum(dim=(1, 2)).mean().backward()
    # ot_loss's plan comes from the scaling domain, this one from the log domain: relative
    # plan error as in test_scaling_domain_equals_log_domain_iteration_by_iteration (float64,
    # k <= 2000 iterations); the gradient sum_nm pi_nm dC_nm / dx has |dC / dx| <= 4 / |x|
    # for unit-normalised channels x (text rows: 4 / |y|), sum pi = 1 per image and 1 / B of it
    # per image in the mean, plus the backward's own sums (<= C M terms, depth 3).
    xi = 3 * cost.max().item() / 0.1 + 2 * math.log(5 * 3)
    rel = f32_tol(5 + 2, xi + 1, depth=2 * 2000 + 1, eps=EPS64)
    norms = torch.cat([feats.detach().flatten(2).norm(dim=2).flatten(), txt.detach().norm(dim=2).flatten()])
    tol = (rel + f32_tol(15, 1.0, depth=3, eps=EPS64)) * 4 / norms.min().item()
    torch.testing.assert_close(gf, feats.grad, rtol=0, atol=tol)
    torch.testing.assert_close(gt, txt.grad, rtol=0, atol=tol)
    assert gf.abs().sum() > 0 and gt.abs().sum() > 0
    feats.grad = txt.grad = None
    ot_loss(feats, txt, tol=1e-10, max_iter=2000, full_grad=True).backward()
    assert (gf - feats.grad).abs().max() > tol             # the plan's own gradient counts


def test_ot_full_grad_gradcheck_float64():
    g = torch.Generator().manual_seed(7)
    feats = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64).requires_grad_()
    txt = torch.randn(2, 4, 4, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f, t: ot_loss(f, t, eps=0.5, max_iter=30, tol=0, full_grad=True), (feats, txt))


def test_losses_compute_in_float32_under_low_precision():
    g = torch.Generator().manual_seed(8)
    feats = torch.randn(4, 6, 2, 2, generator=g).bfloat16()
    txt = torch.randn(4, 3, 4, generator=g).bfloat16()
    assert ot_loss(feats, txt).dtype == torch.float32
    assert manifold_matching_loss(feats.mean((2, 3)), txt[:, 0], 2.0).dtype == torch.float32
