"""The run manifest, ``<results>/manifest.json``: build, write, read, compare.

The one module that knows the manifest's layout. The runner builds and writes it and
compares it with the one already in a results directory (resuming); ``run --config`` and
``run --from-manifest`` read its ``spec`` back; the report reads it for the tables and
figures. Reading is pure Python and json (no torch, no model), so tables rebuild anywhere.

Layout (format 2)::

    format            MANIFEST_FORMAT
    spec              the RunSpec, every field (a valid ``run --config`` file by itself)
    methods           {method: {"class", "options"}}: each explainer's options as given
    methods_resolved  {model: {method: options}}: automatic options resolved per architecture
    rise_seed         how RISE's mask seed is chosen
    metrics           {metric: {"higher_is_better", "options", ["resolved_step"], ["stages"]}},
                      and {"<metric>_<suffix>": {"higher_is_better", "column_of"}} per
                      further row column of a metric (randomisation's "_ssim")
    models            {model: family, arch, variant (+ variant_settings; + epoch for a kept
                      epoch, "lico_wrn28_2@e5")}: what the registry says of the name (a
                      variant's settings are its defaults, not what a checkpoint trained with)
    trained           {"model@seedN": {"checkpoint", "family", "settings", "train_options"}}:
                      what each checkpoint the run used was trained with, read from the
                      checkpoint itself (:func:`trained_entry`); filled as checkpoints are
                      loaded or trained, kept across resumed runs (:func:`merge_trained`)
    dataset           the DatasetInfo
    checkpoints       {"model@seedN": path}
    row_checks        true: every rows file has its check file (false: a directory resumed
                      from results written before checks existed); absent in older manifests
    versions, device, cpu, world_size, threads, precision, git_commit, command
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import UserError
from ..schemas import MANIFEST, SPEC

# 2: "models" (family, arch, LICO variant of each model; lico_<arch> became the paper's
# per-token reading, format 1's was today's lico_rolled_<arch>), map_dependence in the rows.
MANIFEST_FORMAT = 2
NAME = "manifest.json"
# Whether every rows file has its check (rows/<exp>.check.json) is recorded in the manifest
# as "row_checks" (true from this version on); there a rows file without its check is
# damage, so verification cannot be switched off by deleting a file. Format-2 manifests
# written before the key existed: checks are required as soon as one check file is there
# (a lico-bench that writes checks writes one for every experiment it finishes); results
# with none at all (format 1, or format 2 written before checks existed, as two folders
# of results/ in the repository) are read unverified, as before.

# What is wrong with a manifest, in the words of whoever reads it: re-running a recorded
# run (``--from-manifest``/``--config``), resuming into its results directory, or reporting.
_FIX = {"rerun": "pass the manifest.json written by 'lico-bench run'",
        "resume": "this results directory is damaged, use another --out",
        "report": "the results directory is damaged"}


def manifest_path(path: Path) -> Path:
    """A results directory -> its manifest.json; a file path is returned as is."""
    path = Path(path)
    return path / NAME if path.is_dir() else path


def read_manifest(path: Path, purpose: str = "report") -> Dict[str, Any]:
    """The manifest of results directory ``path`` (for "rerun" also a manifest.json), checked: a JSON
    object whose ``spec`` and ``metrics`` are objects; for ``purpose`` "rerun" and "resume"
    also of this :data:`MANIFEST_FORMAT` (the report reads older formats too). Any problem is
    a one-line :class:`UserError` worded for ``purpose`` ("rerun": ``run --from-manifest`` or
    ``run --config``; "resume": the manifest of the results directory a run writes into;
    "report": ``report``/``figures``)."""
    given = Path(path)
    # the run and the report name a results directory; a re-run takes either
    path = manifest_path(given) if purpose == "rerun" else given / NAME
    fix = _FIX[purpose]
    if not path.is_file():
        if purpose == "report":
            raise UserError(f"{given} is not a results directory (no manifest.json); pass the "
                            "directory that 'lico-bench run' printed.")
        raise UserError(f"manifest {str(path)!r} does not exist; pass the manifest.json of a "
                        "results directory written by 'lico-bench run'.")
    from ..io import check_nesting, read_bounded_text

    try:
        # bounded: a regular file of at most 16 MiB nesting at most 32 deep (not a FIFO or
        # /dev/zero, read until killed; not 100 000 brackets, a RecursionError)
        man = check_nesting(json.loads(read_bounded_text(path, str(path))), str(path))
    except RecursionError:
        raise UserError(f"{path} nests too deeply to parse; {fix}.") from None
    except (OSError, ValueError) as e:
        if purpose == "report" and isinstance(e, OSError):
            raise  # no permission and the like: the CLI names the path and the fix
        if purpose == "resume":
            raise UserError(f"{path} is unreadable; {fix}.") from None
        if purpose == "report":
            raise UserError(f"{path} is not valid JSON; {fix}.") from None
        raise UserError(f"manifest {str(path)!r} is not readable JSON ({type(e).__name__}); "
                        f"{fix}.") from None
    if not (isinstance(man, dict) and isinstance(man.get("spec", {}), dict)
            and isinstance(man.get("metrics", {}), dict)):
        if purpose == "report":
            raise UserError(f"{path} is not a lico-bench manifest (not the JSON object 'lico-bench "
                            f"run' writes); {fix}.")
        if purpose == "resume":
            raise UserError(f"{path} is not a lico-bench manifest; {fix}.")
    if purpose == "report":
        fmt = man.get("format")
        if type(fmt) is not int or fmt < 1 or not man.get("spec") or not man.get("metrics"):
            what = ("'format'" if type(fmt) is not int or fmt < 1
                    else "'spec'" if not man.get("spec") else "'metrics'")
            raise UserError(f"{path} cannot say what was run (no {what}: every manifest "
                            f"'lico-bench run' writes has format, spec and metrics); {fix}, so "
                            f"its tables were left as they are.")
    if purpose == "resume" and man.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path.parent} was written by an incompatible lico-bench (manifest format "
                        f"{man.get('format')}, this one reads {MANIFEST_FORMAT}); use another --out.")
    if purpose == "rerun":
        fmt = man.get("format") if isinstance(man, dict) else None
        if fmt == MANIFEST_FORMAT and not isinstance(man.get("spec"), dict):
            raise UserError(f"manifest {str(path)!r} has no 'spec' (the run's options), so it "
                            f"cannot be re-run; {fix}.")
        if fmt != MANIFEST_FORMAT:
            wrote = (man.get("versions") or {}).get("lico-bench") if isinstance(man, dict) else None
            raise UserError(f"manifest {str(path)!r} has format {fmt!r}; this lico-bench reads "
                            f"format {MANIFEST_FORMAT}; re-run it with the lico-bench that wrote it"
                            + (f" ({wrote})." if wrote else "."))
    return MANIFEST.check(man, str(path), fix)   # the fields' types (checkpoints: 5 ...)


def rows_need_checks(man: Dict[str, Any], rows_dir: Path) -> bool:
    """Whether every rows file under ``rows_dir`` must have its check file, by what
    manifest ``man`` records: its ``row_checks`` (anything but ``false`` means yes); for a
    manifest written before that key, yes if it records the host ``cpu`` (added after check
    files, so deleting all of them in such a directory cannot switch verification off),
    else whether any check file is there."""
    if "row_checks" in man:
        return man["row_checks"] is not False
    if "cpu" in man:   # recorded only by versions that write check files (since 2026-11-30)
        return True
    return any(Path(rows_dir).glob("*.check.json"))


def experiment_keys(man: Dict[str, Any]) -> List[str]:
    """The experiments (``rows/<key>.jsonl`` names) the manifest's ``spec`` records, in the
    runner's order; a one-line UserError if the spec cannot say (models, methods, seeds,
    dataset missing or of the wrong type)."""
    from .spec import Experiment

    spec = SPEC.check(man.get("spec"), "the manifest's spec",
                      "it cannot say what was run, so the results directory is damaged and "
                      "its tables were left as they are")
    return [Experiment(m, meth, spec["dataset"], s).key
            for s in spec["seeds"] for m in spec["models"] for meth in spec["methods"]]


def is_manifest(data: Any) -> bool:
    """Whether ``data`` (a parsed config file) is a whole manifest rather than a spec."""
    return isinstance(data, dict) and "format" in data and "spec" in data


# ---------------------------------------------------------------------------- build, write
# Options whose change makes old rows incomparable; the rest (device, paths) may change.
IDENTITY = ("models", "methods", "metrics", "dataset", "split", "image_size", "n_images",
            "seeds", "target", "batch_size", "method_options", "metric_options", "precision",
            "grid", "grid_threshold", "grid_seed", "grid_variant")
# Format 2 records how RISE's masks are seeded under this key, whatever the run's methods;
# kept verbatim so that manifests stay comparable (the rule itself: Explainer.seed_option).
_RISE_SEED = "each experiment's seed unless rise.seed is given"


def cpu_name() -> str:
    """The host CPU's model name and logical core count, e.g. ``"AMD EPYC 7B13 (2 cores)"``
    (Linux: /proc/cpuinfo; elsewhere :func:`platform.processor`)."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name or platform.processor() or 'unknown CPU'} ({os.cpu_count()} cores)"


def versions() -> Dict[str, Optional[str]]:
    """Python's and the relevant packages' versions (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for pkg in ("lico-bench", "torch", "torchvision", "numpy", "scipy", "grad-cam", "captum",
                "quantus", "pot", "transformers", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> Optional[str]:
    """HEAD of the checkout lico_bench runs from (+ "-dirty" with uncommitted changes to
    tracked files); None outside a git checkout."""
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                           timeout=10)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def build_manifest(spec, explainers: Dict[str, Any], metrics: list, info, *,
                   checkpoints: Dict[str, str], device, world_size: int, precision: str,
                   command: Optional[str] = None) -> Dict[str, Any]:
    """The manifest of a run of ``spec`` (a RunSpec).

    explainers: {method: Explainer} as the run builds them; metrics: [Metric];
    info: the dataset's DatasetInfo; checkpoints: {"model@seedN": path};
    device: the torch.device the run computes on; precision: "fp32" or "bf16".
    Each explainer and metric describes itself (``describe``; automatic options resolved on
    an untrained copy of each architecture at the dataset's image size: they depend on the
    architecture and image size only)."""
    import torch

    from ..lico.variants import VARIANTS
    from ..metrics import dependence
    from ..models import create_model, parse_model_ref

    size = (info.image_size, info.image_size)
    resolved, models, protos = {}, {}, {}
    for name in spec.models:
        registered, epoch = parse_model_ref(name)   # "lico_wrn28_2@e5": its kept epoch 5
        proto = protos[name] = create_model(registered, info.num_classes,
                                            image_size=info.image_size).eval()
        resolved[name] = {m: e.resolved_options(proto, size) for m, e in explainers.items()}
        models[name] = proto.cfg.describe()     # family, arch, variant: how tables pair
        if proto.cfg.variant is not None:
            models[name]["variant_settings"] = VARIANTS[proto.cfg.variant].settings()
        if epoch is not None:
            models[name]["epoch"] = epoch       # tables pair models of the same epoch
    metric_entries = {}
    for m in metrics:   # a metric's further row columns get entries of their own
        metric_entries[m.name] = {**m.describe(size), **m.describe_models(protos)}
        for suffix, hib in m.extra_columns.items():
            metric_entries[f"{m.name}_{suffix}"] = {"higher_is_better": hib, "column_of": m.name}
    metric_entries[dependence.NAME] = dependence.describe()
    return {
        "format": MANIFEST_FORMAT,
        "spec": spec.to_dict(),
        "methods": {name: e.describe() for name, e in explainers.items()},
        "methods_resolved": resolved,
        "rise_seed": _RISE_SEED,
        "metrics": metric_entries,
        "models": models,
        "dataset": info.to_dict(),
        "checkpoints": dict(checkpoints),
        "row_checks": True,
        "versions": versions(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                 if device.type == "cuda" else ""),
        "cpu": cpu_name(),  # CPU float results differ across CPU models, so say which
        "world_size": world_size,
        "threads": torch.get_num_threads(),  # CPU results are bitwise reproducible per thread count
        "precision": precision,
        "git_commit": git_commit(),
        "command": command,
    }


def write_manifest(out: Path, manifest: Dict[str, Any]) -> Path:
    """Write ``out/manifest.json`` atomically (lico_bench.io); returns its path."""
    from ..io import write_json

    return write_json(Path(out) / NAME, manifest)


# ---------------------------------------------------------------------------- trained
def _not_recipe() -> frozenset:
    """Training options that are not the recipe: paths and machine, and every family's
    hyper-parameters (a checkpoint's own are its ``settings``; the others' are defaults it
    never used, e.g. a baseline's ``guided_lambda``)."""
    from ..guidance import FAMILIES
    from ..train.config import TrainConfig

    return frozenset({"out", "device", "workers", "root", "download", "text_checkpoint",
                      *TrainConfig().lico_settings(), *(f for fam in FAMILIES.values()
                                                        for f in fam.fields)})


def trained_entry(model, checkpoint: str) -> Dict[str, Any]:
    """What a loaded checkpoint was trained with, from the checkpoint (the manifest's
    ``trained``): ``family``; ``settings``, its family's hyper-parameters as its ModelCfg
    holds them (a peer's ``guidance_settings``, e.g. ``{"guided_lambda": 0.01, ...}``, a LICO
    model's ``lico_settings``; ``{}`` for a baseline); ``train_options``, the recipe saved
    with it (``model.train_cfg`` less paths, machine and family hyper-parameters; None when
    it saved none, as a model saved by hand). JSON types (a round trip), so that an entry
    compares equal to the same entry read back from a manifest."""
    cfg, saved = model.cfg, getattr(model, "train_cfg", None) or {}
    skip = _not_recipe()
    entry = {"checkpoint": str(checkpoint), "family": cfg.family,
             "settings": dict(cfg.guidance_settings or cfg.lico_settings or {}),
             "train_options": {k: v for k, v in sorted(saved.items()) if k not in skip}
             if saved else None}
    return json.loads(json.dumps(entry))


def trained_options(entry: Any) -> tuple:
    """(settings, train_options) of one ``trained`` entry as dicts (train_options None when
    the checkpoint recorded none); anything else a damaged manifest may hold reads as
    ``({}, None)``."""
    entry = entry if isinstance(entry, dict) else {}
    settings, opts = entry.get("settings"), entry.get("train_options")
    return (settings if isinstance(settings, dict) else {},
            opts if isinstance(opts, dict) and opts else None)


def read_trained(out: Path) -> Dict[str, Any]:
    """The ``trained`` of the manifest in results directory ``out`` ({} when there is none,
    or it was written before manifests had it)."""
    if not (Path(out) / NAME).exists():
        return {}
    return dict(read_manifest(out, "resume").get("trained") or {})


def merge_trained(old: Dict[str, Any], new: Dict[str, Any], out: Path) -> Dict[str, Any]:
    """``old`` (the ``trained`` of the manifest already in ``out``) updated with ``new``
    (this run's entries). A checkpoint whose settings or recipe differ (in an option both
    record; ``keep_epochs`` apart, which changes no weight) from what ``old`` records for
    the same model and seed is a one-line :class:`UserError`: the rows already in ``out``
    were made with a model trained otherwise, and the two must not be mixed."""
    for key, e in sorted(new.items()):
        o = old.get(key)
        if o is None:
            continue
        (s0, t0), (s1, t1) = trained_options(o), trained_options(e)
        was, now = {**s0, **(t0 or {})}, {**s1, **(t1 or {})}
        # options both record (an option one of them lacks, e.g. one a later lico-bench
        # counts as a family's, says nothing about a difference)
        diff = sorted(k for k in set(was) & set(now) - {"keep_epochs"} if was[k] != now[k])
        if diff:
            show = lambda d: ", ".join(f"{k} {d[k]}" for k in diff[:4])  # noqa: E731
            raise UserError(f"{out} holds results of {key} made with a checkpoint trained with "
                            f"{show(was)}, but {e['checkpoint']} was trained with {show(now)}; "
                            "use another --out, or the checkpoint those results were made with.")
    return {**old, **new}


# ---------------------------------------------------------------------------- compare
def differences(old: Dict[str, Any], new: Dict[str, Any]) -> list:
    """What makes the rows of manifest ``old`` incomparable with those of run ``new``:
    the :data:`IDENTITY` spec options that differ (precision from the manifest's resolved
    one), and "method/metric options" when the explainers or metrics describe themselves
    differently. Empty: the same run (device, paths, versions may differ), or the same run
    with seeds appended (``--seeds 0 1`` then ``--seeds 0 1 2``: the new seeds' experiments
    run, the finished ones are kept)."""
    from .spec import RunSpec

    # options added later: a manifest written before them ran with their defaults
    added = {k: getattr(RunSpec(), k) for k in ("grid", "grid_threshold", "grid_seed", "grid_variant")}
    old_spec = {**added, **old.get("spec", {}), "precision": old.get("precision", "fp32")}
    new_spec = {**added, **new["spec"], "precision": new["precision"]}
    # More seeds appended to the old list: the same run grown (its rows stay comparable; a
    # grid trained seed by seed across sessions, issue 25). Fewer or reordered seeds: not.
    o, n = old_spec.get("seeds"), new_spec.get("seeds")
    grown = isinstance(o, list) and isinstance(n, list) and len(n) > len(o) and n[:len(o)] == o
    diff = [k for k in IDENTITY if old_spec.get(k) != new_spec.get(k)
            and not (k == "seeds" and grown)]
    if old.get("grid") != new.get("grid"):   # the composites (lico_bench.bench.grid)
        diff.append("grid composites")
    if old.get("methods") != new["methods"] or old.get("metrics") != new["metrics"]:
        diff.append("method/metric options")
    return diff


def check_out_folder(out: Path) -> None:
    """``run`` writes only into a new or empty folder or into a results directory of its
    own (one with a manifest.json): anything else - a folder of the user's files, whose
    summary.md, summary.csv, methods.* a run would replace, or a file - is a one-line
    :class:`UserError`, before anything is written. What a run writes before its manifest
    (the lock, the write probe) counts as empty, so a run stopped that early can start
    again."""
    from ..lock import LOCK_NAME

    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is not a folder; pass a new or empty folder, or a "
                        "results directory of 'lico-bench run'.")
    if (out / NAME).is_file():
        return
    try:
        entries = [e.name for e in os.scandir(out)]
    except OSError:
        return  # unreadable: the write probe that follows names the problem
    others = sorted(e for e in entries if e != LOCK_NAME and not e.startswith(".write-test-"))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise UserError(f"--out {out} is a folder that is neither empty nor a lico-bench "
                        f"results directory (no {NAME}; it holds {shown}), whose files a run "
                        f"could replace; pass a new or empty folder.")


def check_resumable(out: Path, new: Dict[str, Any]) -> bool:
    """Before run ``new`` writes into results directory ``out``: the manifest already there
    (if any) must be readable, of this format, and of the same run (:func:`differences`);
    otherwise a one-line :class:`UserError`. Returns whether the rows already there must
    each have a check file (:func:`rows_need_checks`; True for a new directory); where they
    need not (results written before checks existed), ``new["row_checks"]`` is set False so
    that the manifest keeps saying so."""
    if not (Path(out) / NAME).exists():
        return True
    old = read_manifest(out, "resume")
    diff = differences(old, new)
    if diff:
        raise UserError(f"{out} holds a run with other settings ({', '.join(diff)}); "
                        "use another --out or the same options.")
    need = rows_need_checks(old, Path(out) / "rows")
    if not need:
        new["row_checks"] = False
    return need
