"""ROAD (Rong et al., ICML 2022; tleemann/road_evaluation): noisy linear imputation,
removal order, curves and AUC. Three kinds of checks: values computed by hand on tiny
images, cases known by construction (constant and linear images), and differential tests
against a plain per-pixel scipy reference (and Quantus 0.6.0's ROAD where it runs)."""
import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch
import torch.nn as nn

from lico_bench.errors import UserError
from lico_bench.metrics import (create_metric, linear_impute, list_metrics, noisy_linear_impute,
                                removal_masks, road_curves, trapezoid_auc)
from lico_bench.metrics.road import DEFAULT_PERCENTAGES
from tests.tolerance import f32_tol

from ..tolerance import EPS64, f32_tol
from .conftest import CountingModel, TinyConv, prob_tol, tiny_logit_tol

# The imputation's accuracy against scipy's direct solve, checked below
# (test_matches_scipy_direct_solve_to_1e5, METRICS.md): an input error the curves inherit.
SOLVE_TOL = 1e-5


def road_logit_tol(model, bound, imp_err=0.0, computations=2):
    """Bound on |logit - logit'| of TinyConv on two computations of ROAD's imputed images
    bounded pixelwise by ``bound`` [N, 3, H, W] (see road_bound): tiny_logit_tol there; plus
    the inputs' own difference imp_err (solver) and their float32 roundings (2 u |input|),
    carried to the logits by the |weights| network without biases (linear in its input)."""
    d_in = imp_err + f32_tol(1, 1.0) * bound
    with torch.no_grad():
        h = nn.functional.conv2d(d_in.double(), model.conv.weight.abs().double(), padding=1)
        p = nn.functional.adaptive_avg_pool2d(h, 2).flatten(1)
        carried = float((p @ model.fc.weight.abs().double().T).max())
    return tiny_logit_tol(model, bound, computations) + carried


def road_bound(x, maps, percentages, noise_bound, imp_err=0.0):
    """Pixelwise bound [2 * len(percentages) * N, C, H, W] on every image a ROAD curve
    forwards: the noise-free imputation (linear_impute, float64 direct) of each order and
    percentage, plus noise_bound (noise std times a bound on the draws) and imp_err."""
    out = []
    for order in ("morf", "lerf"):
        for removed in removal_masks(maps, percentages, order):
            imp = linear_impute(x.double(), removed, solver="direct")
            out.append(imp.abs() + noise_bound * removed[:, None] + imp_err)
    return torch.cat(out)


# (dy, dx) -> weight, as METRICS.md writes it: 1/6 edge neighbours, 1/12 diagonal ones.
NEIGHBOURS = [((dy, dx), (1 / 12 if dy and dx else 1 / 6))
              for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def reference_impute(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The ROAD system built pixel by pixel and solved with scipy's sparse direct solver,
    one image at a time, as the reference code does. img: [C, H, W] float64;
    removed: [H, W] bool -> [C, H, W] float64 (no noise)."""
    c, h, w = img.shape
    unknown = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    var = {yx: i for i, yx in enumerate(unknown)}
    a = sp.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), c))
    for i, (y, x) in enumerate(unknown):
        for (dy, dx), wt in NEIGHBOURS:
            yy, xx = y + dy, x + dx
            if not (0 <= yy < h and 0 <= xx < w):
                continue  # outside: dropped, and not counted in the pixel's own coefficient
            a[i, i] += wt
            if removed[yy, xx]:
                a[i, var[(yy, xx)]] -= wt
            else:
                b[i] += wt * img[:, yy, xx]
    out = img.copy()
    if unknown:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # singular matrix (all removed): NaN, kept
            sol = spl.spsolve(sp.csc_matrix(a), b).reshape(len(unknown), c)
        for i, (y, x) in enumerate(unknown):
            out[:, y, x] = sol[i]
    return out


def smooth_maps(b, h, w, seed):
    """[b, h, w] float32 maps with blobs (large removed regions, the hard case for CG)."""
    m = torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(seed))
    return nn.functional.avg_pool2d(m, 5, 1, 2)[:, 0] + 1e-4 * m[:, 0]


# ----------------------------------------------------------------------------- imputation

@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_single_removed_pixel_is_the_weighted_mean_of_its_neighbours(solver):
    img = torch.arange(9, dtype=torch.float64).view(1, 1, 3, 3) ** 2   # 0 1 4 / 9 16 25 / 36 49 64
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    out = linear_impute(img, removed, solver=solver)
    # (1 + 9 + 25 + 49) / 6 + (0 + 4 + 36 + 64) / 12 = 14 + 26/3, weights sum to 1
    # float64, one unknown: an 8-term weighted sum and a division (CG: one step), at most two
    # accumulations of 8 terms of |terms| <= 14 + 26/3, two computations (ours, Python's)
    tol = f32_tol(8, 14 + 26 / 3, depth=2, eps=EPS64)
    assert abs(out[0, 0, 1, 1].item() - (14 + 26 / 3)) <= tol
    keep = ~removed[0]
    assert torch.equal(out[0, 0][keep], img[0, 0][keep])
    # A corner: neighbours right (1/6), down (1/6), diagonal (1/12); coefficient 5/12.
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0] = True
    want = (1 / 6 * 1 + 1 / 6 * 9 + 1 / 12 * 16) / (5 / 12)
    tol = f32_tol(8, want, depth=2, eps=EPS64)                     # as above
    assert abs(linear_impute(img, removed, solver=solver)[0, 0, 0, 0].item() - want) <= tol


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_adjacent_removed_pixels_are_solved_jointly(solver):
    """A 1x4 row [a, x1, x2, b]: 2 x1 - x2 = a, 2 x2 - x1 = b -> linear interpolation."""
    a, b = 3.0, 12.0
    img = torch.tensor([[[[a, -100.0, 50.0, b]]]], dtype=torch.float64)
    removed = torch.tensor([[[False, True, True, False]]])
    out = linear_impute(img, removed, solver=solver)[0, 0, 0]
    # float64, a 2x2 system of condition number 3 (CG: two steps): accumulations of <= 8
    # terms, depth 2, at |x| <= b times the condition number, two computations
    tol = f32_tol(8, 3 * b, depth=2, eps=EPS64)
    assert out.tolist() == pytest.approx([a, (2 * a + b) / 3, (a + 2 * b) / 3, b], abs=tol)
    # At the end of a row only one neighbour remains, so the pixel copies it.
    removed = torch.tensor([[[True, False, False, False]]])
    tol = f32_tol(8, 100.0, depth=2, eps=EPS64)                    # one unknown, as above
    assert abs(linear_impute(img, removed, solver=solver)[0, 0, 0, 0].item() + 100.0) <= tol


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_constant_image_is_imputed_exactly(solver):
    img = torch.full((2, 3, 16, 16), 0.7, dtype=torch.float64)
    img[1] = -1.25
    maps = smooth_maps(2, 16, 16, seed=3)
    for p in (0.1, 0.5, 0.9, 0.99):
        removed = removal_masks(maps, [p], "morf")[0]
        assert removed.sum().item() == 2 * int(p * 256)
        assert (linear_impute(img, removed, solver=solver) - img).abs().max().item() < 1e-9


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_linear_image_is_imputed_exactly_inside(solver):
    """f(y, x) = a y + b x + c is harmonic under the symmetric stencil: a removed region
    away from the border is filled with the same plane."""
    ar = torch.arange(12, dtype=torch.float64)        # float64: a float32 plane is not exact
    yy, xx = torch.meshgrid(ar, ar, indexing="ij")
    img = torch.stack([0.3 * yy - 0.2 * xx + 1, -yy + 2 * xx])[None]             # [1, 2, 12, 12]
    removed = torch.zeros(1, 12, 12, dtype=torch.bool)
    removed[0, 2:10, 3:9] = True
    removed[0, 5, 1] = True
    assert (linear_impute(img, removed, solver=solver, tol=1e-14) - img).abs().max().item() < 1e-10
    # The default stop (relative residual 1e-9) is exact to well below METRICS.md's 1e-5.
    assert (linear_impute(img, removed, solver=solver) - img).abs().max().item() < 1e-6


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_matches_scipy_direct_solve_to_1e5(solver):
    """METRICS.md's known trap: the batched device solver against scipy's sparse solve,
    per image, no noise, MoRF and LeRF up to 90 % removed (large regions)."""
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 3, 20, 20, generator=g)
    maps = smooth_maps(3, 20, 20, seed=4)
    for order in ("morf", "lerf"):
        removed = removal_masks(maps, [0.1, 0.5, 0.9], order).reshape(-1, 20, 20)
        x = img.repeat(3, 1, 1, 1)
        ours = linear_impute(x, removed, solver=solver)
        ref = np.stack([reference_impute(x[i].double().numpy(), removed[i].numpy())
                        for i in range(len(x))])
        assert np.abs(ours.numpy() - ref).max() < 1e-5


def test_float32_images_and_tolerance_option():
    g = torch.Generator().manual_seed(1)
    img = torch.randn(2, 3, 10, 10, generator=g)
    removed = removal_masks(smooth_maps(2, 10, 10, seed=5), [0.7], "morf")[0]
    out = noisy_linear_impute(img, removed, noise=0.0, solver="cg")
    assert out.dtype == torch.float32
    ref = np.stack([reference_impute(img[i].double().numpy(), removed[i].numpy()) for i in range(2)])
    assert np.abs(out.double().numpy() - ref).max() < 1e-5
    loose = linear_impute(img, removed, solver="cg", tol=1e-2)      # a looser stop is measurably looser
    assert np.abs(loose.numpy() - ref).max() > 1e-6
    with pytest.raises(RuntimeError, match="did not reach"):
        linear_impute(img, removed, solver="cg", tol=1e-12, max_iter=2)
    with pytest.raises(UserError, match="solver"):
        linear_impute(img, removed, solver="lu")


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_all_pixels_removed_gives_zero_where_scipy_gives_nan(solver):
    img = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2)).double()
    removed = torch.ones(1, 4, 4, dtype=torch.bool)
    assert torch.equal(linear_impute(img, removed, solver=solver), torch.zeros_like(img))
    assert np.isnan(reference_impute(img[0].numpy(), removed[0].numpy())).all()


def test_noise_is_added_on_removed_pixels_only():
    g = torch.Generator().manual_seed(3)
    img = torch.randn(2, 3, 8, 8, generator=g)
    removed = removal_masks(torch.rand(2, 8, 8, generator=g), [0.5], "morf")[0]
    field = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    clean = noisy_linear_impute(img, removed, noise=0.0)
    noisy = noisy_linear_impute(img, removed, noise=0.25, noise_field=field)
    want = clean.double() + 0.25 * removed[:, None] * field
    # the same float64 imputation plus the noise, rounded to float32 on each side (clean,
    # noisy): 2 u of the larger magnitude
    mag = max(float(want.abs().max()), float(clean.abs().max()))
    assert (noisy.double() - want).abs().max().item() <= f32_tol(1, mag)
    assert torch.equal(noisy[~removed[:, None].expand_as(noisy)], img[~removed[:, None].expand_as(img)])
    # Drawn from a generator: the same seed gives the same images.
    a = noisy_linear_impute(img, removed, 0.01, generator=torch.Generator().manual_seed(7))
    b = noisy_linear_impute(img, removed, 0.01, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.equal(a, clean)


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_matches_quantus_noisy_linear_imputation(solver):
    quantus = pytest.importorskip("quantus")
    from quantus.functions.perturb_func import noisy_linear_imputation

    g = torch.Generator().manual_seed(4)
    img = torch.randn(3, 12, 12, generator=g).double()
    removed = removal_masks(smooth_maps(1, 12, 12, seed=6), [0.8], "morf")[0]
    idx = np.flatnonzero(removed[0].numpy())
    q = noisy_linear_imputation(img.numpy(), idx, noise=0.0)
    ours = linear_impute(img[None], removed, solver=solver)[0].numpy()
    assert np.abs(q - ours).max() < 1e-5


# ----------------------------------------------------------------------------- order, AUC

def test_removal_masks_order_counts_and_ties():
    maps = torch.tensor([[[0.9, 0.1, 0.5], [0.5, 0.3, 0.5]]])        # [1, 2, 3]; 0.5 three times
    m = removal_masks(maps, [0.0, 0.34, 0.5, 0.99, 1.0], "morf")       # int(p*6): 0, 2, 3, 5, 6
    assert m.shape == (5, 1, 2, 3)
    assert m.flatten(1).sum(1).tolist() == [0, 2, 3, 5, 6]
    # MoRF: 0.9 first, then the 0.5s by flat index (2, 3, 5), then 0.3, 0.1.
    assert m[1, 0].flatten().tolist() == [True, False, True, False, False, False]
    assert m[2, 0].flatten().tolist() == [True, False, True, True, False, False]
    lerf = removal_masks(maps, [0.34, 0.5], "lerf")                    # 0.1, 0.3, then 0.5 @ 2
    assert lerf[0, 0].flatten().tolist() == [False, True, False, False, True, False]
    assert lerf[1, 0].flatten().tolist() == [False, True, True, False, True, False]
    with pytest.raises(UserError):
        removal_masks(maps, [0.5], "random")


def test_trapezoid_auc_hand_computed():
    ps = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]
    ones = torch.ones(1, 7)
    # float64: 6 differences of decimals and a 6-term sum (|terms| 0.8), then one float32
    # rounding of 0.8
    tol = f32_tol(12, 0.8, computations=1, eps=EPS64) + f32_tol(1, 0.8, computations=1)
    assert abs(trapezoid_auc(ones, ps).item() - 0.8) <= tol
    c = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    # p = 0, 0.5, 1: 0.5*(1.5/2) + 0.5*(0.5/2) = 0.5 ; 0.5*0.5 + 0.5*1 = 0.75 (binary
    # fractions: exact)
    assert trapezoid_auc(c, [0.0, 0.5, 1.0]).tolist() == [0.5, 0.75]
    # Uneven spacing: p = 0.1, 0.2, 0.5: 0.1*0.75 + 0.3*0.25 (decimals: as above, |terms| 0.15)
    tol = f32_tol(4, 0.15, computations=1, eps=EPS64) + f32_tol(1, 0.15, computations=1)
    assert abs(trapezoid_auc(c[:1], [0.1, 0.2, 0.5]).item() - 0.15) <= tol
    assert trapezoid_auc(c, [0.0, 0.5, 1.0]).dtype == torch.float32
    with pytest.raises(UserError):
        trapezoid_auc(c, [0.0, 1.0])


# ----------------------------------------------------------------------------- curves

@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_curves_match_a_plain_per_image_loop(solver):
    """road_curves against: for each image and p, remove, impute with scipy, add the same
    noise field, forward alone, softmax of the target."""
    model = TinyConv().eval()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, 10, 10, generator=g)
    maps = smooth_maps(3, 10, 10, seed=7)
    targets = torch.tensor([0, 2, 4])
    ps = [0.2, 0.5, 0.9]
    out = road_curves(model, x, maps, targets, percentages=ps, noise=0.05, seed=11,
                      batch_size=4, solver=solver)
    field = torch.randn(2, len(ps), 3, 10, 10, generator=torch.Generator().manual_seed(11),
                        dtype=torch.float64)
    model64 = copy.deepcopy(model).double()
    for oi, order in enumerate(("morf", "lerf")):
        rem = removal_masks(maps, ps, order)
        want = torch.zeros(3, len(ps), dtype=torch.float64)
        for b in range(3):
            for k in range(len(ps)):
                imp = reference_impute(x[b].double().numpy(), rem[k, b].numpy())
                imp = torch.from_numpy(imp) + 0.05 * rem[k, b] * field[oi, k]
                with torch.no_grad():   # float64 forward of the float32 image
                    want[b, k] = model64(imp[None].float().double()).softmax(1)[0, targets[b]]
        assert out[order].shape == (3, len(ps)) and out[order].dtype == torch.float32
        # our float32 forwards vs a float64 one (one computation) of two imputations (ours
        # vs scipy: SOLVE_TOL for CG; float64 direct solves: 4 u64 of the image's scale) of
        # inputs bounded by max|x| + 0.05 max|field| (road_logit_tol), 5-class probabilities
        imp_err = SOLVE_TOL if solver == "cg" else 4 * EPS64 * float(x.abs().max())
        bound = road_bound(x, maps, ps, 0.05 * float(field.abs().max()), imp_err)
        tol = prob_tol(road_logit_tol(model, bound, imp_err, computations=1), 5)
        assert (out[order].double() - want).abs().max().item() <= tol


def test_value_does_not_depend_on_batch_mates_or_batch_size():
    model = CountingModel(TinyConv().eval()).eval()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3, 8, 8, generator=g)
    maps = torch.rand(4, 8, 8, generator=g)
    metric = create_metric("road", batch_size=5)
    full = metric(model, x, maps)
    assert max(model.batches) <= 5
    alone = create_metric("road", batch_size=128)(model, x[2:3], maps[2:3])
    # the same noise, the imputation of another batch (float64 direct solves: their float32
    # roundings), forwards in other batches: road_logit_tol at road_bound with the default
    # noise 0.01 of standard normal draws (bounded by 6: a stated bound, P(|z| > 6) ~ 2e-9
    # per draw); the curves are LeRF - MoRF probability differences (2 x), the values their
    # AUC over p in [0.1, 0.9] (weights summing to 0.8) and its float32 rounding
    bound = road_bound(x[2:3], maps[2:3], DEFAULT_PERCENTAGES, 0.06)
    tol = 2 * prob_tol(road_logit_tol(model.inner, bound, f32_tol(64, 1.0, eps=EPS64)), 5)
    assert (full.values[2] - alone.values[0]).abs().item() <= 0.8 * tol + f32_tol(1, 1.0)
    assert (full.curves[2] - alone.curves[0]).abs().max().item() <= tol


def test_road_is_lerf_minus_morf_and_directions():
    model = TinyConv().eval()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 3, 8, 8, generator=g)
    maps = torch.rand(3, 8, 8, generator=g)
    morf = create_metric("road_morf", seed=3)(model, x, maps)
    lerf = create_metric("road_lerf", seed=3)(model, x, maps)
    road = create_metric("road", seed=3)(model, x, maps)
    # the same images forwarded in other batches (one call for both orders vs one each):
    # each probability within prob_tol(road_logit_tol) (noise 0.01 of draws bounded by 6, a
    # stated bound; float64 solves), a difference of two; AUC weights sum to 0.8, and the
    # float32 roundings of three AUCs
    bound = road_bound(x, maps, DEFAULT_PERCENTAGES, 0.06)
    tol = 2 * prob_tol(road_logit_tol(model, bound, f32_tol(64, 1.0, eps=EPS64)), 5)
    assert (road.values - (lerf.values - morf.values)).abs().max() <= 0.8 * tol + f32_tol(1, 2.0, computations=3)
    assert (road.curves - (lerf.curves - morf.curves)).abs().max() <= tol
    assert morf.curves.shape == (3, len(DEFAULT_PERCENTAGES))
    assert torch.equal(morf.values, trapezoid_auc(morf.curves, DEFAULT_PERCENTAGES))   # the same function
    assert (create_metric("road_morf").higher_is_better, create_metric("road_lerf").higher_is_better,
            create_metric("road").higher_is_better) == (False, True, True)
    other = create_metric("road_morf", seed=4)(model, x, maps)
    assert not torch.equal(other.curves, morf.curves)   # the seed reaches the noise


def test_a_faithful_map_separates_morf_from_lerf():
    """Known by construction: class 1's logit is the sum of the image over a 4x4 patch, so a
    map that marks the patch removes the evidence first under MoRF (score falls) and last
    under LeRF (score stays)."""
    class Patch(nn.Module):
        def forward(self, x):
            z = x[:, :, 2:6, 2:6].sum(dim=(1, 2, 3))
            return torch.stack([torch.zeros_like(z), z], dim=1)

    x = -0.5 * torch.ones(2, 3, 12, 12)
    x[:, :, 2:6, 2:6] = 1.0                                   # clean logit 48: P(class 1) ~ 1
    maps = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(0))
    maps[:, 2:6, 2:6] += 1.0                                  # the patch ranks first
    t = torch.ones(2, dtype=torch.long)
    model = Patch().eval()
    # int(0.12 * 144) = 17 >= 16: the first point removes the whole patch (MoRF); the last,
    # int(0.88 * 144) = 126 <= 128, still keeps it (LeRF).
    ps = [0.12, 0.3, 0.5, 0.7, 0.88]
    morf = create_metric("road_morf", noise=0.0, percentages=ps)(model, x, maps, t)
    lerf = create_metric("road_lerf", noise=0.0, percentages=ps)(model, x, maps, t)
    # MoRF: every removed patch pixel is imputed from known pixels that are all -0.5, so
    # the patch becomes -0.5 (logit -24); LeRF never touches the patch (logit 48).
    # sigmoid(-24 + 48 SOLVE_TOL) < 4e-11 < 1e-9; sigmoid(48) = 1 - 1e-21 rounds to 1 exactly
    assert morf.curves.max().item() < 1e-9
    assert lerf.curves.min().item() == 1.0
    assert morf.values.tolist() == pytest.approx([0.0, 0.0], abs=1e-9)   # 0.76 * 4e-11
    # curves exactly 1: the AUC is the float64 sum of 4 decimal differences (|terms| 0.76),
    # rounded once to float32
    tol = f32_tol(8, 0.76, computations=1, eps=EPS64) + f32_tol(1, 0.76, computations=1)
    assert (lerf.values.double() - 0.76).abs().max() <= tol


def test_accuracy_and_logit_scores():
    model = TinyConv().eval()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 8, 8, generator=g)
    maps = torch.rand(2, 8, 8, generator=g)
    acc = create_metric("road_morf", score="accuracy")(model, x, maps)
    assert set(acc.curves.unique().tolist()) <= {0.0, 1.0}
    logit = road_curves(model, x, maps, orders=("morf",), score="logit")["morf"]
    prob = road_curves(model, x, maps, orders=("morf",), score="softmax")["morf"]
    assert not torch.allclose(logit, prob)


def test_matches_quantus_road_on_single_channel_images():
    """Quantus 0.6.0's ROAD runs only on single-channel images: it flattens the map
    broadcast to [C, H, W] and indexes an [H*W] mask with it (IndexError for C = 3). It
    reports MoRF accuracy per percentage averaged over the batch; with noise 0 ours must
    give the same accuracies."""
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(24, 4)).eval()
    g = torch.Generator().manual_seed(9)
    x = torch.randn(6, 1, 10, 10, generator=g)
    maps = torch.rand(6, 10, 10, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    pct = [10, 30, 50, 70, 90]
    q = quantus.ROAD(percentages=pct, noise=0.0, normalise=False, disable_warnings=True)
    got = q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
            channel_first=True, device="cpu")
    ours = road_curves(model, x, maps, y, orders=("morf",), percentages=[p / 100 for p in pct],
                       noise=0.0, score="accuracy")["morf"].mean(0)
    # accuracies: exact counts / 6; ours a float32 mean (one rounding of a value <= 1),
    # Quantus's in float64
    assert ours.tolist() == pytest.approx([got[p] for p in pct], abs=f32_tol(1, 1.0, computations=1))
    with pytest.raises(IndexError):   # the three-channel failure, so the doc stays true
        quantus.ROAD(percentages=[50], noise=0.0, normalise=False, disable_warnings=True)(
            model=TinyConv().eval(), x_batch=np.zeros((1, 3, 8, 8), np.float32),
            y_batch=np.zeros(1, int), a_batch=np.random.rand(1, 1, 8, 8).astype(np.float32),
            channel_first=True, device="cpu")


# ----------------------------------------------------------------------------- metric

def test_registered_options_and_describe():
    assert {"road", "road_morf", "road_lerf"} <= set(list_metrics())
    m = create_metric("road_lerf", percentages=[0.25, 0.5, 1], seed=2)
    d = m.describe((32, 32))
    assert d["options"]["percentages"] == [0.25, 0.5, 1.0]
    assert d["options"]["noise"] == 0.01 and d["options"]["seed"] == 2
    assert d["options"]["score"] == "softmax" and d["higher_is_better"] is True
    for bad in ({"percentages": [0.5]}, {"percentages": [0.5, 0.2]}, {"percentages": [0.1, 1.5]},
                {"percentages": [0.1, "x"]}, {"percentages": [True, 0.5]}, {"noise": -0.1},
                {"score": "prob"}, {"solver": "lu"}, {"seed": 1.5}, {"tol": 0}, {"max_iter": 0}, {"order": "morf"}):
        with pytest.raises(UserError):
            create_metric("road_morf", **bad)



# Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient Evaluation Strategy
# for Attribution Methods" (ICML 2022): the percentages of the no-retraining (ROAD) setting.
PAPER_PERCENTAGES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]


def test_default_percentages_are_the_papers():
    """Every ROAD metric built without options removes the paper's percentages (METRICS.md,
    docs/metrics.md), records them, and its AUC of a curve equal to 1 is their span, 0.9 - 0.1."""
    for name in ("road", "road_morf", "road_lerf"):
        d = create_metric(name).describe((32, 32))
        assert d["options"]["percentages"] == PAPER_PERCENTAGES, name
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    assert "at p = " + ", ".join(f"{p:g}" for p in PAPER_PERCENTAGES) in " ".join(doc.split())
    ps = create_metric("road_morf").describe((32, 32))["options"]["percentages"]
    auc = trapezoid_auc(torch.ones(1, len(ps)), ps)
    # 6 float64 trapezoids of width <= 0.2 summed, then rounded to float32
    assert auc.item() == pytest.approx(PAPER_PERCENTAGES[-1] - PAPER_PERCENTAGES[0],
                                       abs=f32_tol(6, 0.8, computations=1))


def test_auto_solver_is_direct_on_cpu_and_cg_elsewhere():
    from lico_bench.metrics.road import resolve_solver

    assert resolve_solver("auto", torch.device("cpu")) == "direct"
    assert resolve_solver("auto", torch.device("cuda", 0)) == "cg"
    assert resolve_solver("cg", torch.device("cpu")) == "cg"
    assert create_metric("road").options["solver"] == "auto"


def test_refuses_nan_maps_and_training_models(tiny):
    x = torch.randn(1, 3, 8, 8)
    maps = torch.rand(1, 8, 8)
    maps[0, 0, 0] = math.nan
    with pytest.raises(UserError, match="NaN"):
        create_metric("road_morf")(tiny, x, maps)
    with pytest.raises(UserError):
        create_metric("road_morf")(TinyConv().train(), x, torch.rand(1, 8, 8))
    empty = create_metric("road")(tiny, torch.zeros(0, 3, 8, 8), torch.zeros(0, 8, 8))
    assert empty.values.shape == (0,) and empty.curves.shape == (0, 7)


def test_bf16_autocast_keeps_the_imputation_in_float64():
    model = TinyConv().eval()
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 8, 8, generator=g)
    maps = torch.rand(2, 8, 8, generator=g)
    ref = create_metric("road_morf")(model, x, maps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = create_metric("road_morf")(model, x, maps)
        removed = removal_masks(maps, [0.9], "morf")[0]
        imp = linear_impute(x, removed)
    assert imp.dtype == torch.float64 and low.curves.dtype == torch.float32
    assert (low.values - ref.values).abs().max().item() < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = TinyConv().eval()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 3, 16, 16, generator=g)
    maps = smooth_maps(3, 16, 16, seed=8)
    # CG on the GPU (SOLVE_TOL) vs direct on the CPU, the same noise, two float32 forwards:
    # road_logit_tol at road_bound (noise 0.01 of draws bounded by 6, stated), probabilities
    tol = prob_tol(road_logit_tol(model, road_bound(x, maps, DEFAULT_PERCENTAGES, 0.06, SOLVE_TOL),
                                  SOLVE_TOL), 5)
    cpu = road_curves(model, x, maps)
    # the bound is float32's: TF32 convolutions off (the caller's setting), restored
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        gpu = road_curves(model.cuda(), x.cuda(), maps.cuda())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert gpu["morf"].device.type == "cuda"
    for o in cpu:
        assert (gpu[o].cpu() - cpu[o]).abs().max().item() <= tol
