"""The runner: ``run(spec) -> results dir``.

Layout of ``<out>/``::

    manifest.json                  every option of every method and metric, versions, seeds,
                                   device, git commit, checkpoints, and what each checkpoint
                                   was trained with (read from it: "trained")
    rows/<experiment>.jsonl        one row per image; present = the experiment is complete
    rows/<experiment>.check.json   its row count and sha256, written just before it; run and
                                   report verify both (lico_bench.results)
    .lock                          locked by the one run writing here (lico_bench.lock)
    parts/<experiment>/NNNNNN.jsonl  rows of one batch of images, while an experiment runs
    parts/<experiment>/NNNNNN.maps.pt  that batch's maps, pooled (for map dependence)
    parts/<experiment>/NNNNNN.thumbs.pt  that batch's maps as small 8-bit tiles
    thumbs/...                     every image's input, mask and maps, small (PNG sheets), for
                                   the results browser (lico_bench.bench.thumbs)
    wall_time.json                 the last run command's wall time
    pooled/<experiment>.pt         the experiment's pooled maps, kept when its rows are merged
                                   (runs with >= 2 seeds; 4 KB per image at 32 x 32)
    agreement.jsonl                cross-seed agreement per model x method x image, for every
                                   model run with >= 2 seeds (lico_bench.bench.agreement)
    maps/<experiment>.pt           the first ``save_maps`` maps and their pointing-game points,
                                   for the figures (lico_bench.report.figure_files), and under
                                   "metric_maps" the maps a metric drew (randomisation's)
    inputs.pt                      those maps' input images, masks and class names
    logs/<model>@seed<s>.csv       each checkpoint's training log (copied), for the figures
    summary.{csv,md,tex}           the tables (lico_bench.report)

Resumability: a batch's rows are written atomically as one part file named by its first
image index (after its pooled maps); a rerun skips finished parts and finished experiments,
then merges parts in index order. Merging adds ``map_dependence`` to every row
(:mod:`lico_bench.metrics.dependence`: it compares each map with the other images' maps of
the same class, so it needs the whole experiment). A run killed at any moment and started again therefore ends with exactly the
rows of an uninterrupted run: none lost, none twice.

Grid pointing game (``grid=N``, :mod:`lico_bench.bench.grid`): every model is loaded (or
trained) first, the images every model classifies confidently are found, and the dataset is
replaced by its composites (:class:`lico_bench.data.grid.GridDataset`); each row is one cell
of one composite, explained for the cell's class whatever ``target`` says, and records the
composite's source image ids. The default metrics are then ``GRID_METRICS``. A batch holds
whole composites (``RunSpec.explain_batch``: ``batch_size`` rounded down to a multiple of
N²), so Score-CAM and RISE forward a composite's masked copies once for its N² cells. With
``grid_variant="difull"`` each experiment's model is seen through
:func:`lico_bench.bench.grid.difull` (cells through the features separately).

Distributed (``torchrun --nproc_per_node N -m lico_bench.cli run ...``): batch ``k`` of an
experiment belongs to rank ``k mod N``, which writes its part file; after each experiment
rank 0 merges the parts, once. The parts are the same files as in a single-process run, so
the rows are too, and a rerun (with any number of ranks) resumes every shard.

Precision: ``precision="bf16"`` (the default on CUDA) runs the model's forward passes of
the explainers and metrics under bf16 autocast, with channels-last weights and images;
maps, orderings, curves and AUCs are float32 (the explainers and metrics cast).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..data import create_dataset
from ..errors import UserError
from ..io import torch_save, write_text
from ..lock import hold_lock, releases_locks
from ..metrics import PartScenes, dependence
from ..models import load_checkpoint
from ..precision import to_device
from ..results import part_is_whole, write_rows
from ..schemas import POOLED_MAPS
from .. import distributed as dist_
from . import agreement, cue, figure_inputs, grid as grid_, manifest as manifest_, thumbs
from .scoring import apply_metrics, map_status  # noqa: F401  (map_status: public here too)
from .spec import DEFAULT_METRICS, GRID_METRICS, MASK_METRICS, Experiment, RunSpec, expand

# The manifest's layout, reading, writing and comparison: lico_bench.bench.manifest.
MANIFEST_FORMAT = manifest_.MANIFEST_FORMAT


class Runner:
    """Runs a :class:`RunSpec`; see the module docstring for what it writes."""

    def __init__(self, spec: RunSpec, log: Callable[[str], None] = print, progress: bool = True):
        spec.validate()
        self.spec = spec
        self.out = Path(spec.out or spec.default_out())
        self.dist, self.device = dist_.setup(spec.device)
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        self.progress = progress and self.dist.is_main
        self.precision = spec.resolved_precision(self.device)
        self._models: Dict[Tuple[str, int], torch.nn.Module] = {}
        self.image_size: Optional[int] = None  # the dataset's, set by run(); checkpoints must match
        self._reliance: Dict[Tuple[str, int], dict] = {}  # cue datasets only (bench/cue.py)
        # what each loaded checkpoint was trained with ("model@seedN": manifest "trained"),
        # and what the manifest already in the results directory recorded
        self._trained: Dict[str, dict] = {}
        self._trained_before: Dict[str, dict] = {}

    # ------------------------------------------------------------------ setup
    def _metrics(self, has_masks: bool, has_parts: bool = False):
        from ..metrics import create_metric

        names = list(self.spec.metrics) if self.spec.metrics else list(GRID_METRICS) if self.spec.grid else [
            m for m in DEFAULT_METRICS if has_masks or m not in MASK_METRICS]
        from .spec import check_option_targets

        check_option_targets(self.spec.metric_options, names, "metric")
        metrics = [create_metric(n, **self.spec.metric_options.get(n, {})) for n in names]
        for m in metrics:
            if m.needs_masks and not has_masks:
                raise UserError(f"metric {m.name!r} needs ground-truth masks, which dataset "
                                f"{self.spec.dataset!r} does not have; drop it from --metrics.")
            if m.needs_parts and not has_parts:
                raise UserError(f"metric {m.name!r} needs images re-rendered without each part, "
                                f"which dataset {self.spec.dataset!r} cannot make; use shapes or "
                                "shapes-cue, or drop it from --metrics.")
        return metrics

    def _explainer(self, method: str, seed: int):
        from ..explainers import create_explainer_for_seed

        # an explainer with randomness (RISE's masks) draws it from the experiment's seed
        return create_explainer_for_seed(method, self.spec.method_options.get(method, {}), seed)

    def checkpoint_for(self, model: str, seed: int) -> Path:
        from ..train import checkpoint_path

        if model in self.spec.checkpoints:
            return Path(self.spec.checkpoints[model])
        return checkpoint_path(self.spec.runs, self.spec.dataset, model, seed)

    def _load_model(self, model: str, seed: int, num_classes: int):
        from ..models import parse_model_ref

        key = (model, seed)
        if key not in self._models:
            path = self.checkpoint_for(model, seed)
            name, epoch = parse_model_ref(model)
            if epoch is not None and not path.exists() and model not in self.spec.checkpoints:
                from ..train.state import kept_epochs

                have = kept_epochs(self.spec.runs, self.spec.dataset, name, seed)
                raise UserError(f"no kept epoch {epoch} of {name} on {self.spec.dataset} (seed {seed}) "
                                f"at {path}; " + (f"kept there: {', '.join(f'{name}@e{e}' for e in have)}"
                                                  if have else "none kept there")
                                + f"; train with --keep-epochs {epoch} to keep it.")
            if not path.exists() and model not in self.spec.checkpoints:
                if not self.spec.train:
                    raise UserError(f"no checkpoint for {model} on {self.spec.dataset} (seed {seed}) "
                                    f"at {path}; train it with 'lico-bench train --model {model} "
                                    f"--dataset {self.spec.dataset} --seed {seed}' or drop --no-train.")
                from ..train import make_config, train

                self.log(f"no checkpoint for {model} on {self.spec.dataset} (seed {seed}): training "
                         f"one with the {self.spec.train_options.get('preset', 'default')} recipe "
                         f"-> {path}")
                opts = dict(self.spec.train_options)
                cfg = make_config(opts.pop("preset", None), model=model, dataset=self.spec.dataset,
                                  root=self.spec.root, image_size=self.spec.image_size, seed=seed,
                                  out=self.spec.runs, device=self.spec.device, **opts)
                # a run interrupted while training continues from its last finished epoch
                from ..train import run_dir

                last = run_dir(self.spec.runs, self.spec.dataset, model, seed) / "last.pt"
                train(cfg, resume=last.exists(), progress=self.progress, log=self.log)
            m = load_checkpoint(path, name=name, num_classes=num_classes, dataset=self.spec.dataset,
                                image_size=self.image_size, epoch=epoch)
            self._trained[f"{model}@seed{seed}"] = manifest_.trained_entry(m, str(path))
            m = m.to(self.device).eval()
            if self.device.type == "cuda":
                m = m.to(memory_format=torch.channels_last)
            self._models[key] = m
        return self._models[key]

    def _manifest(self, explainers, metrics, info, command: Optional[str]) -> dict:
        ckpts = {f"{m}@seed{s}": str(self.checkpoint_for(m, s))
                 for s in self.spec.seeds for m in self.spec.models}
        return manifest_.build_manifest(self.spec, explainers, metrics, info, checkpoints=ckpts,
                                        device=self.device, world_size=self.dist.world_size,
                                        precision=self.precision, command=command)

    def _set_aside_damaged_rows(self, experiments: List[Experiment], need_checks: bool) -> None:
        """Verify every finished experiment's rows (lico_bench.results); a damaged rows
        file is renamed ``<file>.damaged`` with one line saying so, and that experiment
        alone runs again. ``need_checks``: the manifest says every rows file has its check
        (manifest.rows_need_checks), so a missing one is damage too."""
        from ..io import MAX_ROWS_BYTES, check_regular_file
        from ..results import DamagedRows, check_path, read_rows

        for e in experiments:
            path = self.out / "rows" / f"{e.key}.jsonl"
            if not path.exists():
                continue
            try:  # bytes against the checksum, then lines and ids against n_images
                check_regular_file(path, f"rows file {path}", MAX_ROWS_BYTES)  # not /dev/zero
                read_rows(path, self.spec.n_images, fix="", require_check=need_checks)
            except DamagedRows as d:
                path.replace(path.with_name(path.name + ".damaged"))
                check_path(path).unlink(missing_ok=True)
                self.log(f"rows file {path} is damaged: {d.why}; it is kept as "
                         f"{path.name}.damaged and this experiment is computed again.")

    # ------------------------------------------------------------------ run
    def run(self, command: Optional[str] = None) -> Path:
        spec = self.spec
        ds = create_dataset(spec.dataset, spec.split, root=spec.root, image_size=spec.image_size, seed=0)
        self.image_size = ds.info.image_size   # the checkpoints', also under --grid
        if spec.grid:   # every model first: the composites are those all models classify
            models = [self._load_model(m, s, ds.info.num_classes)
                      for s in spec.seeds for m in spec.models]
            ds = grid_.make_grid(ds, models, spec.grid, spec.n_images, spec.grid_threshold,
                                 spec.grid_seed, self.device, spec.batch_size, self.log)
            if spec.grid_variant == "difull":   # checked before anything is written
                grid_.check_difull(models, spec.grid, spec.method_options)
        if spec.n_images > len(ds):
            raise UserError(f"--n-images {spec.n_images} is larger than the {spec.split} split of "
                            f"{spec.dataset} ({len(ds)} images); use at most {len(ds)}.")
        info = ds.info
        metrics = self._metrics(info.has_masks, hasattr(ds, "scene_parts"))
        experiments = expand(spec)
        explainers = {m: self._explainer(m, spec.seeds[0]) for m in spec.methods}
        manifest = self._manifest(explainers, metrics, info, command)
        if spec.grid:
            manifest["grid"] = info.extra["grid"]
        # Every checkpoint given by path, and every one already in the runs folder that an
        # unfinished experiment needs, is loaded (and checked) before anything is written: a
        # wrong or damaged one is an error that leaves the results directory as it was. A
        # finished experiment needs none from the runs folder: a grid continued in another
        # session may hold its finished part's rows without their checkpoints.
        needed = {(e.model, e.seed) for e in experiments
                  if not (self.out / "rows" / f"{e.key}.jsonl").exists()}
        for seed in spec.seeds:
            for name in spec.models:
                if name in spec.checkpoints or (name, seed) in needed and (
                        not spec.train or "@" in name or self.checkpoint_for(name, seed).exists()):
                    self._load_model(name, seed, info.num_classes)   # kept epochs: never trained here
        manifest_.check_out_folder(self.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / f".write-test-{self.dist.rank}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise UserError(f"cannot write to results directory {self.out} ({e.strerror}); pass a writable --out.") from None
        # One writer per results directory, from before the old manifest is read.
        hold_lock(self.out, "writing results to", "pass another --out")
        need_checks = manifest_.check_resumable(self.out, manifest)
        self._trained_before = manifest_.read_trained(self.out)
        manifest["trained"] = manifest_.merge_trained(self._trained_before, self._trained, self.out)
        if self.dist.is_main:
            self._set_aside_damaged_rows(experiments, need_checks)
        dist_.barrier()  # every rank has read the old manifest before rank 0 replaces it
        if self.dist.is_main:
            manifest_.write_manifest(self.out, manifest)
            figure_inputs.save_inputs(self.out, ds, min(spec.save_maps, spec.n_images))
            thumbs.save_input_thumbs(self.out, ds, spec.n_images, spec.batch_size)

        from tqdm import tqdm

        todo = [e for e in experiments if not (self.out / "rows" / f"{e.key}.jsonl").exists()]
        if self.dist.is_main:  # parts a killed run left of an experiment it had merged
            for e in experiments:
                if e not in todo:
                    shutil.rmtree(self.out / "parts" / e.key, ignore_errors=True)
        if len(todo) < len(experiments):
            self.log(f"{len(experiments) - len(todo)} of {len(experiments)} experiments already complete")
        bar = tqdm(todo, desc="experiments", disable=not self.progress, dynamic_ncols=True)
        for exp in bar:
            bar.set_postfix_str(f"{exp.model} {exp.method} seed {exp.seed}", refresh=True)
            loaded = len(self._trained)
            model = self._load_model(exp.model, exp.seed, info.num_classes)
            if len(self._trained) > loaded:   # trained or loaded only now: recorded now
                manifest["trained"] = manifest_.merge_trained(self._trained_before,
                                                              self._trained, self.out)
                if self.dist.is_main:
                    manifest_.write_manifest(self.out, manifest)
            if cue.is_cue_dataset(ds) and (exp.model, exp.seed) not in self._reliance:
                self._reliance[(exp.model, exp.seed)] = cue.reliance_for(
                    self.out, exp.model, exp.seed, str(self.checkpoint_for(exp.model, exp.seed)),
                    lambda: cue.measure_reliance(model, spec.dataset, info.image_size, self.device,
                                                 spec.batch_size), self.dist.is_main)
            if spec.grid and spec.grid_variant == "difull":   # cells through the features alone
                model = grid_.difull(model, spec.grid)
            self.run_experiment(exp, model, ds, metrics)
        bar.close()
        if self.dist.is_main:
            agreement.write_agreement(self.out, experiments, spec.n_images, self.log)
            figure_inputs.copy_training_logs(self.out, {f"{m}@seed{s}": self.checkpoint_for(m, s)
                                                        for s in spec.seeds for m in spec.models})
            try:
                (self.out / "parts").rmdir()  # empty once every experiment is merged
            except OSError:
                pass
        return self.out

    def run_experiment(self, exp: Experiment, model, ds, metrics) -> Path:
        from tqdm import tqdm

        spec = self.spec
        size = spec.explain_batch()   # under --grid: whole composites per call
        explainer = self._explainer(exp.method, exp.seed)
        parts = self.out / "parts" / exp.key
        parts.mkdir(parents=True, exist_ok=True)
        starts = list(range(0, spec.n_images, size))
        mine = starts[self.dist.rank::self.dist.world_size]
        for start in tqdm(mine, desc=f"{exp.model} {exp.method}", leave=False,
                          disable=not self.progress, dynamic_ncols=True, unit="batch"):
            part = parts / f"{start:06d}.jsonl"
            idx = list(range(start, min(start + size, spec.n_images)))
            if (part.exists() and _maps_part(part).exists() and _thumbs_part(part).exists()
                    and part_is_whole(part, idx)):
                continue
            rows, maps, metric_maps = self.score_batch(exp, model, ds, idx, explainer, metrics)
            if start == 0 and spec.save_maps > 0:
                k = min(spec.save_maps, len(idx))
                rec = figure_inputs.maps_record(idx[:k], maps[:k], [r["target"] for r in rows[:k]])
                if metric_maps:
                    rec["metric_maps"] = {n: m[:k].float().cpu() for n, m in metric_maps.items()}
                torch_save(rec, self.out / "maps" / f"{exp.key}.pt")
            # maps first: a rows part on disk means its batch is complete
            torch_save(thumbs.map_tiles(maps, thumbs.tile_size(maps.shape[-1])), _thumbs_part(part))
            torch_save(dependence.pool_maps(maps).cpu(), _maps_part(part))
            write_text(part, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        dist_.barrier()  # every rank's parts are written
        if self.dist.is_main:
            rows = [json.loads(line) for s in starts
                    for line in parts.joinpath(f"{s:06d}.jsonl").read_text().splitlines()]
            pooled = torch.cat([_read_maps_part(_maps_part(parts / f"{s:06d}.jsonl"),
                                                min(size, spec.n_images - s))
                                for s in starts])
            dep = dependence.map_dependence(pooled, torch.tensor([r["target"] for r in rows]))
            for r, v in zip(rows, dep.tolist()):
                r[dependence.NAME] = v
            thumbs.write_sheets(self.out, exp.key, torch.cat(
                [_read_thumbs_part(_thumbs_part(parts / f"{s:06d}.jsonl"),
                                   min(size, spec.n_images - s)) for s in starts]))
            # for the cross-seed agreement (also with one seed: a run may grow by seeds);
            # before the rows
            torch_save(pooled, agreement.pooled_path(self.out, exp.key))
            write_rows(self.out / "rows" / f"{exp.key}.jsonl",
                       "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), spec.n_images)
            shutil.rmtree(parts, ignore_errors=True)
        dist_.barrier()  # the rows exist before any rank looks for the next experiment
        return self.out / "rows" / f"{exp.key}.jsonl"

    def score_batch(self, exp: Experiment, model, ds, idx: List[int], explainer, metrics):
        """Explain and score images ``idx``; maps are computed once and reused by every metric.
        Returns (rows, maps [B, H, W], {metric: the maps it drew, [B, S, h, w]})."""
        batch = ds.get_batch(idx)
        cuda = self.device.type == "cuda"

        images = to_device(batch.images, self.device)
        masks = to_device(batch.masks, self.device) if batch.masks is not None else None
        labels = to_device(batch.labels, self.device)
        if not torch.isfinite(images).all():
            bad = [i for i, ok in zip(idx, torch.isfinite(images).flatten(1).all(1).tolist()) if not ok]
            raise UserError(f"images {bad[:5]} of {ds.info.name} contain NaN or infinite values; "
                            "fix the data files.")
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        amp = self._amp()
        with torch.no_grad(), amp:
            probs = torch.softmax(model(images).float(), dim=1)
        pred = probs.argmax(dim=1)
        # under --grid the explained class is the cell's, the label
        targets = pred if self.spec.target == "pred" and not self.spec.grid else labels
        with amp:
            maps = explainer(model, images, targets).float()
        # a model that outputs NaN or inf for an image flags its map too: its scores
        # (probabilities of NaN logits) are no numbers to average
        status = [s if ok else "nan" for s, ok in
                  zip(map_status(maps), torch.isfinite(probs).all(dim=1).tolist())]
        safe_maps = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
        rows = [{"dataset": exp.dataset, "model": exp.model, "method": exp.method, "seed": exp.seed,
                 "image_id": int(i), "label": int(labels[j]), "pred": int(pred[j]),
                 "prob": float(probs[j, pred[j]]), "target": int(targets[j]),
                 "target_prob": float(probs[j, targets[j]]), "map_status": status[j]}
                for j, i in enumerate(idx)]
        if hasattr(ds, "row_fields"):   # the grid's composite, cell and source ids
            for r, extra in zip(rows, ds.row_fields(idx)):
                r.update(extra)
        rel = self._reliance.get((exp.model, exp.seed))
        if rel is not None:  # a cue dataset: masks = the evidence the model measurably uses
            both = (masks, to_device(ds.cue_masks[idx], self.device))
            masks = cue.evidence_masks(rel, self.spec.split, ds, idx, both, rows)
        parts = None
        if any(m.needs_parts for m in metrics):
            sp = ds.scene_parts(idx)
            parts = PartScenes(to_device(sp.masks, self.device), to_device(sp.removed, self.device))
        metric_maps = apply_metrics(metrics, model, images, safe_maps, targets, masks, status, rows,
                                    explainer=explainer, amp=amp, parts=parts,
                                    both_masks=both if rel is not None else None,
                                    image_ids=list(idx), seed=exp.seed)
        return rows, maps, metric_maps

    def _amp(self):
        """bf16 autocast for the model's forwards when the run's precision says so."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


def _read_maps_part(path: Path, n: int) -> torch.Tensor:
    """A batch's pooled maps, [n, h, w] float32; a damaged file is a one-line error saying
    how to recompute just that batch."""
    try:
        maps = torch.load(path, map_location="cpu", weights_only=True)
        ok = POOLED_MAPS.ok(maps) and maps.shape[0] == n
    except Exception:  # truncated, not a torch file, or holding more than a tensor
        ok = False
    if not ok:
        raise UserError(f"{path} is damaged (not the pooled maps of its {n} images); delete it "
                        "and run the same command again: only that batch is recomputed.")
    return maps.float()


def _read_thumbs_part(path: Path, n: int) -> torch.Tensor:
    """A batch's map tiles, [n, t, t] uint8; a damaged file is a one-line error as for
    :func:`_read_maps_part`."""
    try:
        tiles = torch.load(path, map_location="cpu", weights_only=True)
        ok = isinstance(tiles, torch.Tensor) and tiles.dtype == torch.uint8 and tiles.dim() == 3 \
            and tiles.shape[0] == n
    except Exception:  # truncated, not a torch file, or holding more than a tensor
        ok = False
    if not ok:
        raise UserError(f"{path} is damaged (not the small maps of its {n} images); delete it "
                        "and run the same command again: only that batch is recomputed.")
    return tiles


def _thumbs_part(part: Path) -> Path:
    """``parts/<exp>/NNNNNN.jsonl`` -> its small 8-bit maps, ``parts/<exp>/NNNNNN.thumbs.pt``."""
    return part.with_name(part.stem + ".thumbs.pt")


def _maps_part(part: Path) -> Path:
    """``parts/<exp>/NNNNNN.jsonl`` -> its pooled maps, ``parts/<exp>/NNNNNN.maps.pt``."""
    return part.with_name(part.stem + ".maps.pt")


@releases_locks
def run(spec: RunSpec, log: Callable[[str], None] = print, progress: bool = True,
        command: Optional[str] = None, report: bool = True) -> Path:
    """Run every experiment of ``spec`` (skipping finished work), then build the tables.
    The results directory is locked (lico_bench.lock) until the tables are written."""
    t0 = time.perf_counter()
    runner = Runner(spec, log=log, progress=progress)
    out = runner.run(command=command)
    if runner.dist.is_main:
        from ..io import write_json
        from ..report.figure_files import WALL_TIME

        write_json(out / WALL_TIME, {"command": command,
                                     "wall_s": round(time.perf_counter() - t0, 1)})
    if report and runner.dist.is_main:
        from ..report import build_report

        build_report(out)
    runner.log(f"done in {time.perf_counter() - t0:.0f}s; results in {out}")
    return out
