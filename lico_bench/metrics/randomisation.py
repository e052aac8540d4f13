"""Model-parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim; NeurIPS
2018, "Sanity Checks for Saliency Maps", Sec. 3.1): does the explanation change when the
model it explains is destroyed? A map that stays the same explains nothing about the model.

Stages (:func:`model_stages`): the model's blocks from the logits down. For a
:class:`~lico_bench.models.Classifier` (``logits = fc(GAP(features(x)))``): ``fc``, then
the children of ``features`` that hold parameters, last first; a normalisation layer
(anything with ``reset_running_stats``) belongs to the stage of the block before it.
ResNet-18/50: fc, layer4, layer3, layer2, layer1, conv1 (= conv1 + bn1, the stem);
WRN-28-k: fc, block3 (+ the final bn), block2, block1, conv1. Any other model: its own
children with parameters, last first, grouped the same way. A LICO model is the same
classifier: its text branch (prompt learner, mapping net) is used only in training and is
not part of the model an explainer sees, so only the classifier path is randomised.

Cascading: stage k's maps come from the model with stages 1..k randomised (the top k);
independent: with stage k alone randomised, the others trained. Both compare with the
trained model's maps for the same images and the same explained class (``targets``, or the
trained model's prediction), which the runner has already computed (not recomputed here).

Re-initialisation: each module of a stage is reset by its own ``reset_parameters()`` (the
layer's default initialiser, as Adebayo re-initialise from the initialisation
distribution). ``reset_parameters()`` takes no generator, so it runs on a CPU copy of the
stage inside ``torch.random.fork_rng`` with the CPU generator seeded by the stage's seed
(drawn from ``torch.Generator().manual_seed(seed)``; the caller's RNG state is restored),
then the values are copied to the model's device: the same seed gives the same weights on
every device and memory format, and stage k gets the same weights in both modes.
Batch norm (``batchnorm``): "affine" (default) re-initialises the trainable affine
parameters (gamma = 1, beta = 0) and keeps the running statistics: Adebayo randomise
"network weights (and other trainable variables)" (Fig. 2 caption), and running
statistics are not trainable; "all" also resets the running statistics (mean 0, var 1:
``reset_parameters()`` in full, what Quantus does); "keep" leaves batch norm trained.

Similarity, per image and stage (METRICS.md): the Spearman rank correlation of the two maps
(ties get their average rank, as ``scipy.stats.spearmanr``), and SSIM of the min-max
normalised maps (Wang et al. 2004, eq. 13, as ``skimage.metrics.structural_similarity``
with its defaults: a 7 x 7 uniform window, sample covariances, K1 = 0.01, K2 = 0.03, data
range 1, the mean over the windows inside the image). ``absolute=True`` (default) compares
``|map|``, Adebayo's "absolute" rank correlation and Quantus's default (``abs=True``): a
method whose sign flips while its magnitude stays would otherwise pass for a changed map.
The built-in methods' maps are non-negative, so for them both readings agree.
Conventions where scipy gives NaN: Spearman of a constant map with a non-constant one is 0
(a constant map shares no ranking), of two constant maps 1 (nothing changed). SSIM of
constant maps is defined (a constant map normalises to zeros).

Cost: ``n_stages`` explainer calls per batch and little else. The working copy of the
model and every stage's random weights are built once per (model, options) and kept by the
metric (:class:`StageRandomiser`; rebuilt when the model's weights change), so a batch
costs the explainer calls, the copies of the stages that change (a batch walks the steps
back from where the last one ended, one stage a step) and the similarity kernels, after
all the explainer calls of the batch: one SIMD sort per map (:func:`_argsort_rows`), ranks
and their sums in exact integers, running-sum window means for SSIM, a few maps per pass.
Measured with ``benchmarks/bench_randomisation.py`` (figures in benchmarks/README.md).
"""
from __future__ import annotations

import copy
import itertools
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from ..precision import float32_ops
from .causal import _check_inputs, _check_targets, check_eval, model_device

MODES = ("cascading", "independent")
BATCHNORM = ("affine", "all", "keep")
DEFAULT_WINDOW = 7            # skimage's default SSIM window
K1, K2 = 0.01, 0.03           # Wang et al. 2004; skimage's defaults
STAGE_MAP_GRID = 64           # stage maps kept for figures are pooled to <= 64 x 64 ...
KEPT_MAPS = 4                 # ... for the first 4 images of a batch (the figures draw one)

Stages = List[Tuple[str, List[str]]]   # [(stage name, [module paths])], top stage first


# ----------------------------------------------------------------------------- stages
def _is_norm(m: nn.Module) -> bool:
    return hasattr(m, "reset_running_stats")


def _has_params(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None


def _group(children: Sequence[Tuple[str, nn.Module]], prefix: str) -> Stages:
    """Children (in forward order) -> stages, last first; a norm layer joins the block before."""
    groups: Stages = []
    for name, m in children:
        if not _has_params(m):
            continue
        if _is_norm(m) and groups:
            groups[-1][1].append(prefix + name)
        else:
            groups.append((name, [prefix + name]))
    return groups[::-1]


def model_stages(model: nn.Module) -> Stages:
    """The randomisation stages of ``model``, top (logits) first: [(name, [module paths])].

    A model with ``features`` (nn.Sequential) and ``fc``: ``fc`` then the groups of
    ``features``' children; any other: the groups of its own children (module docstring).
    """
    feats, fc = getattr(model, "features", None), getattr(model, "fc", None)
    if isinstance(feats, nn.Sequential) and isinstance(fc, nn.Module):
        stages = [("fc", ["fc"])] + _group(list(feats.named_children()), "features.")
    else:
        stages = _group(list(model.named_children()), "")
    if not stages:
        raise UserError("the model has no parameters to randomise.")
    return stages


def stage_seeds(seed: int, n: int) -> List[int]:
    """One seed per stage, drawn from ``torch.Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2 ** 62, (n,), generator=g).tolist()


def _reset(m: nn.Module, batchnorm: str) -> None:
    """Re-initialise ``m``'s own parameters with its ``reset_parameters()``."""
    if _is_norm(m):
        if batchnorm == "keep":
            return
        kept = {k: b.clone() for k, b in m.named_buffers(recurse=False)}
        m.reset_parameters()
        if batchnorm == "affine":   # running statistics are not trainable: keep them
            for k, b in m.named_buffers(recurse=False):
                b.copy_(kept[k])
    elif next(m.parameters(recurse=False), None) is not None:
        if not hasattr(m, "reset_parameters"):
            raise UserError(f"module {type(m).__name__} has parameters but no reset_parameters(); "
                            "it cannot be re-initialised with its own initialiser.")
        m.reset_parameters()


@torch.no_grad()
def random_stage_state(model: nn.Module, paths: Sequence[str], seed: int,
                       batchnorm: str = "affine") -> Dict[str, torch.Tensor]:
    """The re-initialised state of the modules at ``paths``: {state_dict key: tensor}, on
    the CPU, contiguous. ``model`` is not modified (each module is copied first)."""
    out: Dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        for path in paths:
            mod = copy.deepcopy(model.get_submodule(path)).cpu()
            mod = mod.to(memory_format=torch.contiguous_format)   # init fills in memory order
            for sub in mod.modules():
                _reset(sub, batchnorm)
            out.update({f"{path}.{k}": v for k, v in mod.state_dict().items()})
    return out


def _fingerprint(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``model`` is replaced or edited in place."""
    return (id(model),) + tuple((t.data_ptr(), t._version)
                                for t in itertools.chain(model.parameters(), model.buffers()))


class StageRandomiser:
    """A working copy of ``model`` whose stages switch between trained and random weights.

    ``randomised({0, 1})`` returns the copy with stages 0 and 1 random and every other one
    trained; only the stages that change are copied. The caller's model is only read.
    """

    def __init__(self, model: nn.Module, stages: Stages, seed: int, batchnorm: str):
        self.key = _fingerprint(model)
        self.stages = stages
        self.copy = copy.deepcopy(model)
        self.trained = model.state_dict()          # references, read only
        live = self.copy.state_dict()
        self.random = [{k: v.to(live[k].device, live[k].dtype)
                        for k, v in random_stage_state(model, paths, s, batchnorm).items()}
                       for (_, paths), s in zip(stages, stage_seeds(seed, len(stages)))]
        self.state: frozenset = frozenset()

    @torch.no_grad()
    def randomised(self, stages) -> nn.Module:
        """The copy with exactly the stage indices ``stages`` randomised."""
        want = frozenset(stages)
        live = self.copy.state_dict()
        for k in self.state - want:
            for key in self.random[k]:
                live[key].copy_(self.trained[key])
        for k in want - self.state:
            for key, v in self.random[k].items():
                live[key].copy_(v)
        self.state = want
        return self.copy


# ----------------------------------------------------------------------------- similarity
def _argsort_rows(x: torch.Tensor) -> torch.Tensor:
    """Row-wise argsort [N, P] -> [N, P] int64; ties may come in any order (ranks average
    them). On the CPU, float32 rows are sorted as 64-bit words ``key << 32 | index`` with
    numpy's SIMD sort, ``key`` = the float's bits mapped to an unsigned integer of the same
    order (sign bit set for x >= 0, all bits flipped for x < 0; -0.0 sorts next to +0.0):
    measured 2.6x faster than numpy's argsort, itself 4x faster than torch.sort, on 128 px
    maps (sorting is the check's largest cost after the explainer). Other dtypes: numpy's
    argsort; other devices: torch.sort."""
    if x.device.type != "cpu":
        return x.sort(dim=1).indices
    import numpy as np

    a = x.detach().contiguous().numpy()
    n, p = a.shape
    if a.dtype != np.float32 or p >= 2 ** 32 or sys.byteorder != "little":
        return torch.from_numpy(np.argsort(a, axis=1))
    bits = a.view(np.uint32)
    key = bits ^ ((bits.view(np.int32) >> 31).view(np.uint32) | np.uint32(0x80000000))
    words = np.empty((n, p), dtype=np.uint64)
    halves = words.view(np.uint32).reshape(n, p, 2)          # little-endian: [low, high]
    halves[..., 0] = np.arange(p, dtype=np.uint32)
    halves[..., 1] = key
    words.sort(axis=1)
    return torch.from_numpy(halves[..., 0].astype(np.int64))


def _doubled_centred_ranks(x: torch.Tensor):
    """(d [N, P] int64, order [N, P] int64): ``d[:, j] = 2 * (rank - (P + 1) / 2)`` of pixel
    ``order[:, j]``, rank = its average rank 1..P (scipy's "average" for ties). Integers, so
    the correlation's sums are exact; the correlation does not see the factor 2.

    Runs of equal values are found on the flattened sorted rows (a run never crosses a row:
    each row's first value starts one): a run's first and last flat positions give its
    average rank without a scan per row (cummax/cummin measured 2x slower)."""
    n, p = x.shape
    order = _argsort_rows(x)
    s = x.gather(1, order)
    start = torch.ones_like(s, dtype=torch.bool)
    torch.ne(s[:, 1:], s[:, :-1], out=start[:, 1:])          # first of a run of equal values
    flat = start.view(-1)
    first = flat.nonzero().squeeze(1)                         # flat position of each run's first
    last = torch.cat([first[1:] - 1, first.new_tensor([n * p - 1])])
    run = flat.cumsum(0) - 1                                  # each position's run
    # 2 rank - (P + 1) = (first + last - 2 row P + 2) - (P + 1)
    offset = torch.arange(0, 2 * n * p, 2 * p, device=x.device)[:, None] + (p - 1)
    return (first + last)[run].view(n, p) - offset, order


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..P along the last dim, ties averaged (scipy.stats.rankdata 'average').
    x: [N, P] float -> [N, P] float64."""
    d, order = _doubled_centred_ranks(x)
    ranks = (d + (x.shape[1] + 1)).double() / 2
    return torch.empty_like(ranks).scatter_(1, order, ranks)


# Above this many pixels the integer sums of squared ranks (< P^3) could overflow int64.
_EXACT_MAX_PIXELS = 2_000_000


def _rank_correlation(ref_d: torch.Tensor, new_d: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of centred ranks (``ref_d`` in pixel order, ``new_d`` in the
    sorted order ``order``, both from :func:`_doubled_centred_ranks`), with the
    constant-map conventions of the module docstring. -> [N] float64."""
    if ref_d.shape[1] > _EXACT_MAX_PIXELS:
        ref_d, new_d = ref_d.double(), new_d.double()
    dot = (ref_d.gather(1, order) * new_d).sum(1).double()
    na2, nb2 = (ref_d * ref_d).sum(1).double(), (new_d * new_d).sum(1).double()  # 0 <=> constant
    r = dot / (na2 * nb2).sqrt().clamp_min(1e-300)
    r = torch.where((na2 == 0) | (nb2 == 0), torch.zeros_like(r), r.clamp(-1, 1))
    return torch.where((na2 == 0) & (nb2 == 0), torch.ones_like(r), r)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per row: a, b: [N, ...] -> [N] float64 (module docstring;
    = scipy.stats.spearmanr of each pair where neither row is constant)."""
    a, b = a.flatten(1), b.flatten(1)
    d, order = _doubled_centred_ranks(a)
    return _rank_correlation(torch.empty_like(d).scatter_(1, order, d), *_doubled_centred_ranks(b))


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max normalisation to [0, 1]; a constant map -> zeros. [N, H, W] float64."""
    m = maps.double()
    lo = m.amin(dim=(1, 2), keepdim=True)
    rng = m.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(rng > 0, (m - lo) / torch.where(rng > 0, rng, 1.0), 0.0)


def _box_mean(t: torch.Tensor, w: int) -> torch.Tensor:
    """Mean of every w x w window inside the image: [..., H, W] -> [..., H-w+1, W-w+1], by
    running sums along each axis (float64; 5x faster than avg_pool2d on a CPU; window sums
    as ``c[j + w - 1] - c[j - 1]`` in place, no padded copy)."""
    c = t.cumsum(-1)
    o = c[..., w - 1:].clone()
    o[..., 1:] -= c[..., :-w]
    c = o.cumsum(-2)
    o = c[..., w - 1:, :].clone()
    o[..., 1:, :] -= c[..., :-w, :]
    return o.div_(w * w)


def _ssim_ref(a: torch.Tensor, window: int, data_range: float = 1.0):
    """What SSIM needs of the first map of each pair, computed once:
    (x, mean, mean^2 + c1, variance + c2, (c1, c2))."""
    if a.shape[-2] < window or a.shape[-1] < window:
        raise UserError(f"SSIM needs maps of at least {window} x {window} pixels, got "
                        f"{list(a.shape[-2:])}; use a smaller ssim_window (odd, >= 3).")
    x = a.detach().double()
    ux = _box_mean(x, window)
    cov = window * window / (window * window - 1.0)                    # sample covariance
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    vx = cov * (_box_mean(x * x, window) - ux * ux)
    return x, ux, ux * ux + c1, vx + c2, (c1, c2)


# Images per SSIM pass: the float64 temporaries of a pass stay near 1 MB at 128 px (large
# ones made the allocator hand memory back and the next explainer call fault it in again).
SSIM_CHUNK_PIXELS = 2 ** 15


def _ssim_with(ref, b: torch.Tensor, window: int) -> torch.Tensor:
    """Mean SSIM of each pair (``ref`` from :func:`_ssim_ref`) -> [N] float64; in place, a
    few images per pass (``SSIM_CHUNK_PIXELS``), as the check calls it for every stage."""
    x, ux, uxx_c1, vx_c2, (c1, c2) = ref
    y = b.detach().double()
    step = max(1, SSIM_CHUNK_PIXELS // (y.shape[-1] * y.shape[-2]))
    out = []
    for i in range(0, y.shape[0], step):
        sl = slice(i, i + step)
        out.append(_ssim_chunk(x[sl], ux[sl], uxx_c1[sl], vx_c2[sl], y[sl], window, c1, c2))
    return torch.cat(out)


def _ssim_chunk(x, ux, uxx_c1, vx_c2, y, window: int, c1: float, c2: float) -> torch.Tensor:
    st = torch.empty((3,) + tuple(y.shape), dtype=y.dtype, device=y.device)
    st[0] = y
    torch.mul(y, y, out=st[1])
    torch.mul(x, y, out=st[2])
    uy, uyy, uxy = _box_mean(st, window)                               # one pass for the three
    cov = window * window / (window * window - 1.0)
    uy2 = uy * uy
    vy = uyy.sub_(uy2).mul_(cov)
    vxy2 = uxy.sub_(ux * uy).mul_(2 * cov).add_(c2)                    # 2 cov_xy + c2
    num = torch.addcmul(torch.full_like(uy, c1), ux, uy, value=2).mul_(vxy2)  # (2 ux uy + c1)(2 vxy + c2)
    den = uy2.add_(uxx_c1).mul_(vy.add_(vx_c2))                         # (ux^2 + uy^2 + c1)(vx + vy + c2)
    return num.div_(den).flatten(1).mean(1)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = DEFAULT_WINDOW,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of each pair of maps (Wang et al. 2004, eq. 13; skimage's defaults, see the
    module docstring). a, b: [N, H, W] float (H, W >= window) -> [N] float64."""
    return _ssim_with(_ssim_ref(a, window, data_range), b, window)


# ----------------------------------------------------------------------------- the check
def stage_sets(mode: str, n: int) -> List[range]:
    """The stages randomised at each step: cascading {0..k}, independent {k}."""
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    return [range(k + 1) if mode == "cascading" else range(k, k + 1) for k in range(n)]


def randomisation_similarities(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                               targets: Optional[torch.Tensor],
                               explain: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                               mode: str = "cascading", seed: int = 0, batchnorm: str = "affine",
                               absolute: bool = True, window: int = DEFAULT_WINDOW,
                               randomiser: Optional[StageRandomiser] = None) -> Dict[str, torch.Tensor]:
    """The check on one batch (module docstring).

    model: eval-mode classifier (never modified); images: [B, C, H, W] float, normalised;
    maps: [B, H, W] float, the trained model's maps of ``explain`` (reused, not recomputed);
    targets: [B] int64 or None (the trained model's prediction); explain(model, images,
    targets) -> [B, H, W] float; randomiser: a :class:`StageRandomiser` of ``model`` built
    with the same seed and batchnorm (built here when None).
    Returns {"spearman": [B, S] float32, "ssim": [B, S] float32, "stage_maps":
    [min(B, 4), S, h, w] float32 (the first images' randomised maps pooled to <= 64 x 64,
    for figures)}.
    """
    from .dependence import pool_maps

    maps = _check_inputs(images, maps)
    check_eval(model)
    dev = model_device(model, images.device)
    targets = _check_targets(targets, images.shape[0], dev)
    x = images.to(dev)
    if targets is None:
        with torch.no_grad():
            targets = model(x).argmax(1)
    if randomiser is None:
        randomiser = StageRandomiser(model, model_stages(model), seed, batchnorm)
    prep = (lambda m: m.abs()) if absolute else (lambda m: m)          # noqa: E731
    sets = stage_sets(mode, len(randomiser.stages))
    steps = list(range(len(sets)))
    if randomiser.state == frozenset(sets[-1]):
        steps.reverse()   # the last batch ended on the last step: walk back, one stage a step
    # The explainer calls back to back, then the similarities: the kernels' large
    # temporaries in between made the allocator hand memory back and the next explainer
    # call fault it in again (measured 5-10 % of the check on a CPU).
    news: List[Optional[torch.Tensor]] = [None] * len(sets)
    for i in steps:
        new = explain(randomiser.randomised(sets[i]), x, targets).float()
        news[i] = torch.nan_to_num(new, nan=0.0, posinf=0.0, neginf=0.0)
    rho, ss, kept = [], [], []
    with float32_ops(dev):
        ref = prep(maps.to(dev).float())   # the reference's ranks and SSIM statistics, once
        d, order = _doubled_centred_ranks(ref.flatten(1))
        ref_ranks = torch.empty_like(d).scatter_(1, order, d)
        ref_ssim = _ssim_ref(minmax(ref), window)
        for new in news:
            m = prep(new)
            rho.append(_rank_correlation(ref_ranks, *_doubled_centred_ranks(m.flatten(1))))
            ss.append(_ssim_with(ref_ssim, minmax(m), window))
            kept.append(pool_maps(new[:KEPT_MAPS], STAGE_MAP_GRID))
    return {"spearman": torch.stack(rho, 1).float(), "ssim": torch.stack(ss, 1).float(),
            "stage_maps": torch.stack(kept, 1)}
