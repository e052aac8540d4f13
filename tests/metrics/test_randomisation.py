"""Model-parameter randomisation (Adebayo et al. 2018): kernels against scipy / skimage,
stages, which weights each step randomises, seeds, the caller's model untouched, maps that
cannot change (similarity 1) and Grad-CAM that must, and Quantus's MPRT on the same weights."""
from collections import OrderedDict

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn as nn
import torch.nn.functional as F

import tests.tiny  # noqa: F401  (registers baseline_tiny)
from lico_bench import UserError, create_model
from lico_bench.explainers import create_explainer
from lico_bench.metrics import create_metric, spearman, ssim
from lico_bench.metrics import randomisation as R
from lico_bench.metrics import similarity as S
from lico_bench.models import Classifier

from ..tolerance import EPS64, f32_tol


def rank_tol(*rows: torch.Tensor) -> float:
    """Bound on |spearman - scipy's| for rows [N, P] (of both arguments).

    Ours: exact integer rank sums, then a product, a sqrt and a division in float64 (3
    roundings of |rho| <= 1). scipy: Pearson of the float64 average ranks, 3 accumulations in
    sequence (mean, squares, dot) of P terms at |rho|'s scale times max rank / sd (computed).
    """
    cond = max(float((r.amax(1) / r.std(1, unbiased=False)).max())
               for r in (S.average_ranks(x.flatten(1)) for x in rows))
    p = rows[0].flatten(1).shape[1]
    return f32_tol(3, 1.0, computations=1, eps=EPS64) + f32_tol(p, cond, depth=3, computations=1,
                                                                eps=EPS64)


def ssim_tol(a: torch.Tensor, b: torch.Tensor, window: int) -> float:
    """Bound on |ssim - another float64 SSIM (skimage's, or the exact value)| of maps [N, H, W]
    in [0, 1] (Wang et al. 2004, eq. 13, data range 1).

    The window moments come from running sums of <= W then <= H terms of values <= 1, i.e. at
    most H W / w^2 at the moment's scale (depth 2, H + W terms). Each SSIM pixel N / D with
    |N / D| <= 1 moves by <= (|dN| + |dD|) / D; N and D are products of two factors <= 2
    built of <= 4 moments, so |dN|, |dD| <= 16 moment errors: magnitude 32 H W / w^2 / D_min,
    with D_min the smallest denominator over the pixels (computed here in float64).
    """
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x, y = a.double()[:, None], b.double()[:, None]
    mean = lambda t: F.avg_pool2d(t, window, stride=1)          # noqa: E731
    cov = window * window / (window * window - 1.0)
    ux, uy = mean(x), mean(y)
    vx, vy = (mean(x * x) - ux * ux) * cov, (mean(y * y) - uy * uy) * cov
    d_min = float(((ux * ux + uy * uy + c1) * (vx + vy + c2)).min())
    h, w = a.shape[-2:]
    return f32_tol(h + w, 32 * h * w / window ** 2 / d_min, depth=2, eps=EPS64)


def small_classifier(seed: int = 0, bn: bool = True) -> Classifier:
    """conv1(+bn1) -> relu -> conv2(+bn2) -> relu -> GAP -> fc, every weight random (the
    batch-norm affine parameters and running statistics too, so a reset shows)."""
    torch.manual_seed(seed)
    layers = [("conv1", nn.Conv2d(3, 6, 3, padding=1))]
    layers += [("bn1", nn.BatchNorm2d(6))] if bn else []
    layers += [("relu1", nn.ReLU()), ("conv2", nn.Conv2d(6, 8, 3, padding=1))]
    layers += [("bn2", nn.BatchNorm2d(8))] if bn else []
    layers += [("relu2", nn.ReLU())]
    m = Classifier(nn.Sequential(OrderedDict(layers)), 8, 5)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_()
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture
def clf():
    return small_classifier()


@pytest.fixture
def x():
    return torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(3))


# ----------------------------------------------------------------------------- kernels
def test_spearman_hand_computed_and_constant_conventions():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 3.0, 2.0, 4.0]])
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    # exact: integer sums 16 / sqrt(20 * 20), sqrt of a square exact, one correctly rounded
    # division = the double nearest 0.8; -20 / sqrt(20 * 20) = -1
    assert spearman(a, b).item() == 0.8
    assert spearman(a, -a).item() == -1.0
    # ties get their average rank: [1, 1, 2] -> ranks [1.5, 1.5, 3]
    assert S.average_ranks(torch.tensor([[1.0, 1.0, 2.0]])).tolist() == [[1.5, 1.5, 3.0]]
    c = torch.zeros(1, 4)
    assert spearman(c, a).item() == 0.0 and spearman(a, c).item() == 0.0
    assert spearman(c, c + 3).item() == 1.0


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 9, 11, generator=g).round(decimals=1)   # many ties
    b = torch.rand(6, 9, 11, generator=g)
    a[0, :4] = 0.0                                               # a ReLU-like block of zeros
    b[2] = a[2] * 2 + 1                                          # monotone: rho = 1
    got = spearman(a, b)
    for i in range(6):
        want = scipy.stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy())[0]
        assert abs(got[i].item() - want) <= rank_tol(a[i:i + 1], b[i:i + 1])
    # exact: dot = |a|^2 = |b|^2 integers, sqrt of the square (< 2**53) exact
    assert got[2].item() == 1.0


def test_cpu_argsort_sorts_every_float32_including_signed_zeros_and_infinities():
    x = torch.tensor([[0.5, -0.0, 0.0, -2.0, float("inf"), -float("inf"), 1e-40, -1e-40, 0.5]])
    x = torch.cat([x, torch.randn(3, 9, generator=torch.Generator().manual_seed(0))])
    order = S._argsort_rows(x)
    assert torch.equal(x.gather(1, order), x.sort(dim=1).values)
    assert torch.equal(order.sort(dim=1).values, torch.arange(9).expand(4, 9))   # a permutation
    d = S._argsort_rows(x.double())                                             # numpy's argsort
    assert torch.equal(x.gather(1, d), x.sort(dim=1).values)


def test_spearman_float_fallback_for_huge_maps_agrees(monkeypatch):
    """Past _EXACT_MAX_PIXELS the rank sums run in float64 instead of exact int64."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(4, 50, generator=g).round(decimals=1), torch.rand(4, 50, generator=g)
    exact = spearman(a, b)
    monkeypatch.setattr(S, "_EXACT_MAX_PIXELS", 10)
    # exact too: integer ranks (|2 rank - P - 1| < 50) whose products and sums stay integers
    # far below 2**53, exact in float64 in any order
    assert torch.equal(spearman(a, b), exact)


@pytest.mark.parametrize("chunk", [2 ** 15, 1])           # all 4 pairs in one pass; one pair a pass
@pytest.mark.parametrize("window,shape", [(7, (16, 16)), (3, (9, 13)), (5, (7, 20))])
def test_ssim_matches_skimage(window, shape, chunk, monkeypatch):
    skm = pytest.importorskip("skimage.metrics")
    monkeypatch.setattr(S, "SSIM_CHUNK_PIXELS", chunk)
    g = torch.Generator().manual_seed(window)
    a = S.minmax(torch.rand(4, *shape, generator=g))
    b = S.minmax(a + 0.3 * torch.rand(4, *shape, generator=g))
    got = ssim(a, b, window)
    for i in range(4):
        want = skm.structural_similarity(a[i].numpy(), b[i].numpy(), win_size=window, data_range=1.0)
        # two float64 computations (ssim_tol each)
        assert abs(got[i].item() - want) <= 2 * ssim_tol(a[i:i + 1], b[i:i + 1], window)
    assert (ssim(a, a, window) - 1).abs().max() <= ssim_tol(a, a, window)
    zeros = S.minmax(torch.full((1, *shape), 2.0))               # constant -> zeros
    # exact: every moment is an exact 0, so N = D = c1 c2
    assert zeros.abs().sum() == 0 and ssim(zeros, zeros, window).item() == 1.0
    with pytest.raises(UserError, match="at least"):
        ssim(a[:, :2], b[:, :2], window)


# ----------------------------------------------------------------------------- stages
def test_stages_of_the_registered_architectures():
    r18 = create_model("baseline_r18", 10, image_size=32)
    st = R.model_stages(r18)
    assert [s for s, _ in st] == ["fc", "layer4", "layer3", "layer2", "layer1", "conv1"]
    assert st[-1][1] == ["features.conv1", "features.bn1"]           # the stem
    wrn = create_model("lico_wrn28_2", 10)
    st = R.model_stages(wrn)
    assert [s for s, _ in st] == ["fc", "block3", "block2", "block1", "conv1"]
    assert st[1][1] == ["features.block3", "features.bn"]            # the final BN joins block3
    every = {n for n, p in wrn.named_parameters()}
    covered = {n for _, paths in st for n in every if any(n.startswith(p + ".") for p in paths)}
    assert covered == every                                          # nothing left trained
    assert [s for s, _ in R.model_stages(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)))] == ["2", "0"]


def _changed(model, other, keys=None):
    a, b = model.state_dict(), other.state_dict()
    return {k for k in (keys or a) if not torch.equal(a[k], b[k])}


def _stage_keys(model, paths):
    return {k for k in model.state_dict() if any(k.startswith(p + ".") for p in paths)}


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_each_step_randomises_exactly_its_stages(clf, mode):
    stages = R.model_stages(clf)
    assert [s for s, _ in stages] == ["fc", "conv2", "conv1"]
    r = R.StageRandomiser(clf, stages, seed=0, batchnorm="affine")
    for k, chosen in enumerate(R.stage_sets(mode, len(stages))):
        assert list(chosen) == (list(range(k + 1)) if mode == "cascading" else [k])
        copy = r.randomised(chosen)
        want = set().union(*(_stage_keys(clf, stages[i][1]) for i in chosen))
        stats = {k for k in want if "running" in k or "num_batches" in k}
        assert _changed(clf, copy) == want - stats                   # running stats kept
        # an independent step restored the previous stage: never two at once
    assert r.randomised([]) is r.copy and not _changed(clf, r.copy)


def test_batchnorm_options(clf):
    stages = R.model_stages(clf)
    keys = _stage_keys(clf, stages[-1][1])                           # conv1 + bn1
    stats = {"features.bn1.running_mean", "features.bn1.running_var"}
    affine = {"features.bn1.weight", "features.bn1.bias"}
    for bn, changed in (("affine", keys - stats - {"features.bn1.num_batches_tracked"}),
                        ("all", keys - {"features.bn1.num_batches_tracked"}),
                        ("keep", keys - stats - affine - {"features.bn1.num_batches_tracked"})):
        copy = R.StageRandomiser(clf, stages, 0, bn).randomised([len(stages) - 1])
        assert _changed(clf, copy) == changed, bn
    reset = R.StageRandomiser(clf, stages, 0, "all").randomised([2]).features.bn1
    assert torch.equal(reset.running_var, torch.ones(6)) and torch.equal(reset.weight, torch.ones(6))


def test_reinit_is_the_layers_own_and_seeded():
    """Stage weights = the module's reset_parameters() under the stage's seed, on the CPU."""
    clf = small_classifier(bn=False)
    seeds = R.stage_seeds(5, 3)
    assert seeds == R.stage_seeds(5, 3) and seeds != R.stage_seeds(6, 3) and len(set(seeds)) == 3
    state = R.random_stage_state(clf, ["fc"], seeds[0])
    torch.manual_seed(seeds[0])
    fresh = nn.Linear(8, 5)                      # __init__ calls reset_parameters() once
    assert torch.equal(state["fc.weight"], fresh.weight.detach())
    assert torch.equal(state["fc.bias"], fresh.bias.detach())


def test_same_seed_same_values_other_seed_other_values(clf, x):
    cam = create_explainer("gradcam", layer="features.relu1")
    maps = cam(clf, x)
    run = lambda **o: create_metric("randomisation_cascading", **o)(clf, x, maps, explain=cam)  # noqa: E731
    a, b, c = run(seed=1), run(seed=1), run(seed=2)
    assert torch.equal(a.curves, b.curves) and torch.equal(a.columns["ssim"][1], b.columns["ssim"][1])
    assert not torch.equal(a.curves, c.curves)


def test_callers_model_and_rng_untouched(clf, x):
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    rng = torch.get_rng_state()
    cam = create_explainer("gradcam", layer="features.relu2")
    for mode in ("cascading", "independent"):
        for bn in ("affine", "all"):
            m = create_metric(f"randomisation_{mode}", batchnorm=bn)
            m(clf, x, cam(clf, x), explain=cam)
    after = clf.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng) and not clf.training


# ----------------------------------------------------------------------------- the check
@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_a_map_independent_of_the_weights_has_similarity_one(clf, x, mode):
    explain = lambda model, images, targets: images.abs().sum(1)    # noqa: E731  the image itself
    res = create_metric(f"randomisation_{mode}")(clf, x, explain(clf, x, None), explain=explain)
    assert res.curves.shape == (3, 3) and res.columns["ssim"][1].shape == (3, 3)
    # Spearman of equal maps is exactly 1 (equal integer sums, sqrt of a square), so is their
    # mean; SSIM within ssim_tol of 1 (the metric's min-max normalised maps)
    assert torch.equal(res.curves, torch.ones(3, 3)) and torch.equal(res.values, torch.ones(3))
    m = S.minmax(explain(clf, x, None))
    assert (res.columns["ssim"][1].double() - 1).abs().max() <= ssim_tol(m, m, 7) + f32_tol(1, 1.0, computations=1)
    assert res.maps.shape == (3, 3, 12, 12)


def test_gradcam_changes_when_the_top_layer_is_randomised(clf, x):
    """Grad-CAM's channel weights are fc.weight[target] / (h w) here (GAP then fc): a new fc
    gives another map."""
    cam = create_explainer("gradcam", layer="features.relu2")
    targets = clf(x).argmax(1)
    res = create_metric("randomisation_cascading")(clf, x, cam(clf, x, targets), targets, explain=cam)
    assert (res.curves[:, 0] < 0.99).all() and (res.columns["ssim"][1][:, 0] < 0.99).all()
    # the explained class stays the trained model's: the same as passing targets=None
    again = create_metric("randomisation_cascading")(clf, x, cam(clf, x, targets), None, explain=cam)
    assert torch.equal(again.curves, res.curves)
    # the values are the mean over stages
    assert torch.equal(res.values, res.curves.mean(1))          # the same reduction


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_working_copy_is_reused_and_rebuilt_when_the_model_changes(clf, x, mode):
    cam = create_explainer("gradcam", layer="features.relu2")
    m = create_metric(f"randomisation_{mode}")
    first = m(clf, x, cam(clf, x), explain=cam)
    r = m._randomiser
    # the second batch starts where the first ended and walks the steps back
    assert r.state == frozenset(R.stage_sets(mode, len(r.stages))[-1])
    second = m(clf, x, cam(clf, x), explain=cam)
    assert m._randomiser is r and torch.equal(first.curves, second.curves)
    assert torch.equal(first.columns["ssim"][1], second.columns["ssim"][1])
    assert torch.equal(first.maps, second.maps)
    assert r.state == frozenset(R.stage_sets(mode, len(r.stages))[0])
    with torch.no_grad():
        clf.fc.weight.mul_(-1.0)                                     # edited in place
    third = m(clf, x, cam(clf, x), explain=cam)
    fresh = create_metric(f"randomisation_{mode}")(clf, x, cam(clf, x), explain=cam)
    assert m._randomiser is not r and torch.equal(third.curves, fresh.curves)


def test_options_and_missing_explainer(clf, x):
    with pytest.raises(UserError, match="odd"):
        create_metric("randomisation_cascading", ssim_window=6)
    with pytest.raises(UserError, match="batchnorm"):
        create_metric("randomisation_cascading", batchnorm="none")
    with pytest.raises(UserError, match="explain="):
        create_metric("randomisation_cascading")(clf, x, torch.rand(3, 12, 12))


def test_absolute_option(clf, x):
    """A signed "explanation" whose sign the randomised model flips, magnitude kept: the
    absolute comparison (default) sees no change, the signed one sees the flip."""
    sign = lambda model: torch.sign(model.fc.weight.sum())          # noqa: E731
    explain = lambda model, images, t: images[:, 0] * sign(model)   # noqa: E731
    rand = R.random_stage_state(clf, ["fc"], R.stage_seeds(0, 3)[0])["fc.weight"]
    with torch.no_grad():                        # trained fc = -(the random fc of seed 0)
        clf.fc.weight.copy_(-rand)
    maps = explain(clf, x, None)
    absolute = create_metric("randomisation_independent")(clf, x, maps, explain=explain)
    signed = create_metric("randomisation_independent", absolute=False)(clf, x, maps, explain=explain)
    # exact: dot = +-|a|^2 with |a|^2 = |b|^2, integers
    assert torch.equal(absolute.curves[:, 0], torch.ones(3))
    assert torch.equal(signed.curves[:, 0], -torch.ones(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_weights_and_values(clf, x):
    cam = create_explainer("gradcam", layer="features.relu2")
    cpu = create_metric("randomisation_cascading")(clf, x, cam(clf, x), explain=cam)
    g, xg = small_classifier().cuda(), x.cuda()
    res = create_metric("randomisation_cascading")(g, xg, cam(g, xg), explain=cam)
    assert res.curves.device.type == "cuda"
    torch.testing.assert_close(res.curves.cpu(), cpu.curves, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- Quantus
@pytest.mark.parametrize("order", ["top_down", "independent"])
def test_spearman_curves_equal_quantus_mprt_on_the_same_weights(monkeypatch, order, x):
    """Quantus's MPRT resets one module per step with torch.manual_seed(seed + 1); with every
    stage seeded seed + 1 (one module per stage, no batch norm) the randomised models are the
    same, so the Spearman correlations must be too. (Quantus's SSIM in MPRT runs on the
    flattened maps and its batched form returns a list MPRT cannot use: SSIM is checked
    against skimage instead.)"""
    quantus = pytest.importorskip("quantus")
    clf = small_classifier(bn=False)
    cam = create_explainer("gradcam", layer="features.relu1")
    y = clf(x).argmax(1)
    maps = cam(clf, x, y)
    monkeypatch.setattr(R, "stage_seeds", lambda seed, n: [seed + 1] * n)

    def explain_func(model, inputs, targets, **kw):
        return cam(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()[:, None]

    q = quantus.MPRT(layer_order=order, seed=11, abs=True, normalise=True, disable_warnings=True)
    want = q(clf, x.numpy(), y.numpy(), a_batch=maps.numpy()[:, None], explain_func=explain_func,
             batch_size=8)
    mode = "cascading" if order == "top_down" else "independent"
    res = create_metric(f"randomisation_{mode}", seed=11)(clf, x, maps, y, explain=cam)
    for k, (name, paths) in enumerate(R.model_stages(clf)):
        # the same maps, so the same ranks: ours vs scipy's Spearman (rank_tol), then ours
        # rounded to float32 once
        tol = rank_tol(res.maps[:, k]) + f32_tol(1, 1.0, computations=1)
        assert np.abs(res.curves[:, k].double().numpy() - want[paths[0]]).max() <= tol
