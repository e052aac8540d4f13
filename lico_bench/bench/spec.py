"""What a benchmark run is: a grid of experiments (model, method, dataset, seed)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Dict, List, Literal, NamedTuple, Optional

from ..config import option, strict_from_dict
from ..errors import UserError
from ..options import IMAGE_SIZE, Range

DEFAULT_METRICS = ("insertion", "deletion", "pointing_game", "energy_pointing_game")
MASK_METRICS = ("pointing_game", "energy_pointing_game")
# With --grid N (the grid pointing game, lico_bench.data.grid): the cell is the mask.
GRID_METRICS = ("pointing_game", "energy_pointing_game", "grid_score")
# TrainConfig fields a run sets itself when it trains a missing checkpoint.
RUN_DECIDES = frozenset({"model", "dataset", "root", "image_size", "seed", "out", "device",
                         "download"})


class Experiment(NamedTuple):
    """One cell of the grid; it writes one row per image to ``rows/<key>.jsonl``."""

    model: str
    method: str
    dataset: str
    seed: int

    @property
    def key(self) -> str:
        method = self.method.replace(":", "-")
        return f"{self.dataset}__{self.model}__{method}__seed{self.seed}"


@dataclass
class RunSpec:
    """A benchmark run; each field is one option: its ``run`` flag (``--field-name``, or
    the exception in cli.py's table), its key in a ``run --config`` file, and its key in the
    manifest's ``spec`` (so a manifest is itself a config file)."""

    models: List[str] = option(default_factory=lambda: ["lico_r18"],
                               help="model (repeatable; default lico_r18); MODEL@eN: the "
                                    "weights 'train --keep-epochs' kept after epoch N")
    methods: List[str] = option(default_factory=lambda: ["gradcam"],
                                help="attribution method (repeatable; default gradcam)")
    metrics: Optional[List[str]] = option(  # None: DEFAULT_METRICS (mask metrics if masks)
        None, help="comma-separated metrics (default: insertion, deletion, pointing_game, "
                   "energy_pointing_game where the dataset has masks)")
    dataset: str = option("shapes", help="dataset (see 'lico-bench info')")
    split: str = option("test", help="dataset split whose images are explained")
    root: Optional[str] = option(None, help="data root for real datasets")
    image_size: Optional[Annotated[int, IMAGE_SIZE]] = option(
        None, help="image size in pixels (default: the dataset's)")
    n_images: Annotated[int, Range(1)] = option(200, help="first N images of the split")
    seeds: List[int] = option(default_factory=lambda: [0], help="training seeds (default 0)")
    checkpoints: Dict[str, str] = option(default_factory=dict,  # model name -> checkpoint path
                                         help="PATH or MODEL=PATH (default: runs/...)")
    runs: str = option("runs", help="where trained checkpoints are found/made")
    out: Optional[str] = option(None, help="results directory (default results/<grid name>)")
    train: bool = option(True, help="train a missing checkpoint (--no-train: error instead)")
    target: Literal["pred", "label"] = option("pred", help="explained class")
    batch_size: Annotated[int, Range(1)] = option(  # also the images of one part file
        50, help="images per batch (with --grid N: rounded down to a multiple of N*N)")
    save_maps: Annotated[int, Range(0)] = option(8, help="maps kept per experiment for figures")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", help="forward passes of explainers and metrics: auto = bf16 on CUDA, else fp32")
    method_options: Dict[str, Dict[str, Any]] = option(
        default_factory=dict, help="e.g. rise.N=2000 or scorecam.variant=grad-cam")
    metric_options: Dict[str, Dict[str, Any]] = option(
        default_factory=dict, help="e.g. insertion.step=64")
    grid: Optional[Annotated[int, Range(2)]] = option(
        None, help="grid pointing game: explain each cell of N x N composites of confidently "
                   "classified test images of distinct classes (lico_bench.data.grid); "
                   "--n-images then counts composite cells, a multiple of N*N")
    grid_threshold: Annotated[float, Range(0, 1)] = option(
        0.99, help="with --grid: the softmax probability of its class every model must give "
                   "an image for it to enter a composite")
    grid_seed: int = option(0, help="with --grid: seed of the composites' draw")
    grid_variant: Literal["gridpg", "difull"] = option(
        "gridpg", help="with --grid: gridpg runs the model on the whole composite; difull "
                       "runs each cell through the features alone (lico_bench.bench.grid)")
    # TrainConfig fields for a checkpoint the run has to train (e.g. {"n_train": 256}); the
    # run itself decides the model, dataset, root, image size, seed, runs dir and device.
    # "preset" picks the recipe the other fields override (default: the dataset's; e.g.
    # {"preset": "paper", "epochs": 20, "keep_epochs": [1, 2, 5, 10]}: issue 25's grid).
    train_options: Dict[str, Any] = option(
        default_factory=dict, help="training option for a checkpoint the run trains, e.g. n_train=256")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunSpec":
        return strict_from_dict(cls, d, "run")

    def default_out(self) -> str:
        seeds = "" if self.seeds == [0] else "_seeds" + "-".join(map(str, self.seeds))
        split = "" if self.split == "test" else f"_{self.split}"  # e.g. shapes-cue_swap_...
        if self.grid:
            split += f"_grid{self.grid}"
        name = f"{self.dataset}{split}_{'+'.join(self.models)}_{'+'.join(m.replace(':', '-') for m in self.methods)}{seeds}"
        return f"results/{name}"

    def explain_batch(self) -> int:
        """Images (items) per explainer call and per part file: ``batch_size``; with
        ``--grid N`` rounded down to a multiple of N² (at least N²), so that a composite's N²
        cells are explained in one call and Score-CAM and RISE forward their masked copies of
        it once for all its cells (:func:`lico_bench.explainers.base.same_images`)."""
        if not self.grid:
            return self.batch_size
        k = self.grid * self.grid
        return max(k, self.batch_size // k * k)

    def resolved_precision(self, device) -> str:
        """"fp32" or "bf16" for ``device`` (a torch.device)."""
        if self.precision == "auto":
            return "bf16" if device.type == "cuda" else "fp32"
        return self.precision

    def validate(self) -> None:
        if not self.models or not self.methods:
            raise UserError("give at least one --model and one --method.")
        if self.n_images < 1:
            raise UserError(f"--n-images must be >= 1, got {self.n_images}.")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"--precision must be auto, fp32 or bf16, got {self.precision!r}.")
        if self.target not in ("pred", "label"):
            raise UserError(f"--target must be 'pred' or 'label', got {self.target!r}.")
        if not self.seeds:
            raise UserError("give at least one seed.")
        check_grid_options(self)
        from ..models import parse_model_ref

        for m in self.models:   # registered, or a kept epoch of one (lico_wrn28_2@e5)
            parse_model_ref(m)
        if self.metrics is not None and not self.metrics:   # [] read as the defaults before
            raise UserError("--metrics names no metric; name at least one, or leave --metrics "
                            "out for the defaults.")
        for lst, what in ((self.models, "model"), (self.methods, "method"), (self.seeds, "seed"),
                          (self.metrics or [], "metric")):
            if len(set(lst)) != len(lst):
                raise UserError(f"a {what} is given twice: {lst}.")
        unknown = set(self.checkpoints) - set(self.models)
        if unknown:
            raise UserError(f"--checkpoint given for {sorted(unknown)}, which is not a --model of this run.")
        check_option_targets(self.method_options, self.methods, "method")
        from ..train.config import TrainConfig

        allowed = {f.name for f in dataclasses.fields(TrainConfig)} - RUN_DECIDES
        bad = sorted(set(self.train_options) - allowed)
        if bad:
            raise UserError(f"unknown or fixed training option(s) {', '.join(bad)} in --train-option; "
                            f"allowed: {', '.join(sorted(allowed))}.")
        # typed as the TrainConfig field (n_train=true would train on one image)
        import typing

        from ..options import check_value

        hints = typing.get_type_hints(TrainConfig, include_extras=True)   # with the ranges
        for k, v in self.train_options.items():
            self.train_options[k] = check_value(hints[k], v, f"--train-option {k}")
        from ..train.config import PRESETS

        if self.train_options.get("preset", next(iter(PRESETS))) not in PRESETS:
            raise UserError(f"--train-option preset={self.train_options['preset']!r} is not a "
                            f"recipe; choose one of {', '.join(PRESETS)}.")


GRID_OPTIONS = ("grid_threshold", "grid_seed", "grid_variant")


def check_grid_options(spec: RunSpec, given=()) -> None:
    """``--grid-threshold``, ``--grid-seed`` and ``--grid-variant`` only act with ``--grid N``:
    without it, one given on the command line (``given``: the names of the fields set by
    flags) or set to a value other than its default (a config file, the Python API) would be
    silently ignored, so it is a one-line :class:`UserError`."""
    if spec.grid:
        return
    default = RunSpec.__dataclass_fields__
    for name in GRID_OPTIONS:
        if name in given or getattr(spec, name) != default[name].default:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {getattr(spec, name)} acts only in the grid pointing game, "
                            f"and this run has no --grid; add --grid N (e.g. --grid 2) or drop "
                            f"{flag}.")


def check_option_targets(given: Dict[str, Any], names: List[str], kind: str) -> None:
    """Every ``--{kind}-option NAME.KEY=VALUE`` must name a {kind} of this run: an option
    for one that is not run (a typo, a forgotten ``--{kind}``) would be silently ignored.
    The error names the closest valid name."""
    import difflib

    for target in given:
        if target in names:
            continue
        close = difflib.get_close_matches(target, names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        add = "--metrics" if kind == "metric" else "--method"
        raise UserError(f"--{kind}-option {target}.{next(iter(given[target]), 'KEY')}=...: "
                        f"{target!r} is not a {kind} of this run{hint} This run's {kind}s: "
                        f"{', '.join(names)}; fix the name, or add it with {add}.")


def expand(spec: RunSpec) -> List[Experiment]:
    """The grid in a fixed order: seed, then model, then method."""
    return [Experiment(model, method, spec.dataset, seed)
            for seed in spec.seeds for model in spec.models for method in spec.methods]
