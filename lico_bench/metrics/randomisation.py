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
and SSIM of the min-max normalised maps, :mod:`.similarity`. ``absolute=True`` (default)
compares ``|map|``, Adebayo's "absolute" rank correlation and Quantus's default
(``abs=True``): a method whose sign flips while its magnitude stays would otherwise pass for
a changed map. The built-in methods' maps are non-negative, so for them both readings agree.

Cost: ``n_stages`` explainer calls per batch and little else. The working copy of the
model and every stage's random weights are built once per (model, options) and kept by the
metric (:class:`StageRandomiser`; rebuilt when the model's weights change), so a batch
costs the explainer calls, the copies of the stages that change (a batch walks the steps
back from where the last one ended, one stage a step) and the similarity kernels, after
all the explainer calls of the batch (:mod:`.similarity`: one SIMD sort per map, ranks and
their sums in exact integers, running-sum window means for SSIM, a few maps per pass).
Measured with ``benchmarks/bench_randomisation.py`` (figures in benchmarks/README.md).
"""
from __future__ import annotations

import copy
import itertools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import UserError
from ..precision import float32_ops
from .causal import _check_inputs, _check_targets, check_eval, model_device
from .similarity import (DEFAULT_WINDOW, _doubled_centred_ranks, _pixel_order,
                         _rank_correlation, _ssim_ref, _ssim_with, minmax)

MODES = ("cascading", "independent")
BATCHNORM = ("affine", "all", "keep")
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
        ref_ranks = _pixel_order(*_doubled_centred_ranks(ref.flatten(1)))
        ref_ssim = _ssim_ref(minmax(ref), window)
        for new in news:
            m = prep(new)
            rho.append(_rank_correlation(ref_ranks, *_doubled_centred_ranks(m.flatten(1))))
            ss.append(_ssim_with(ref_ssim, minmax(m), window))
            kept.append(pool_maps(new[:KEPT_MAPS], STAGE_MAP_GRID))
    return {"spearman": torch.stack(rho, 1).float(), "ssim": torch.stack(ss, 1).float(),
            "stage_maps": torch.stack(kept, 1)}
