"""``lico-bench`` command line. Parses arguments and calls one function of the layer below.

Every user error (unknown name, bad path, bad option) ends in one line on stderr,
``lico-bench: error: ...``, and exit status 2, with no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints the usage too: keep one line
        raise UserError(f"{message} (see '{self.prog} --help').")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def cmd_info(args) -> int:
    import platform

    import torch

    from . import __version__
    from .data import list_datasets
    from .models import list_models

    lines = [f"lico-bench {__version__}",
             f"python {platform.python_version()}, torch {torch.__version__}",
             f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if torch.cuda.is_available() else 'cpu'}"
             f", {torch.get_num_threads()} threads",
             f"datasets: {', '.join(list_datasets())}",
             f"models:   {', '.join(list_models())}",
             "LICO variants (lico_<arch> = paper; lico_<variant>_<arch>; each paired with "
             "baseline_<arch>):"]
    from .lico.variants import VARIANTS, model_name

    lines += [f"  {model_name(v.name, 'r18'):<18} {v.summary}" for v in VARIANTS.values()]
    try:
        from .explainers import list_explainers

        lines.append(f"methods:  {', '.join(list_explainers())} (+ gradcam:<Name>, captum:<Name>)")
    except ImportError:
        pass
    try:
        from .metrics import list_metrics

        lines.append(f"metrics:  {', '.join(list_metrics())} (+ quantus:<Name>)")
    except ImportError:
        pass
    print("\n".join(lines))
    return 0


def cmd_dataset_show(args) -> int:
    from .data import create_dataset
    from .data.show import show_grid

    ds = create_dataset(args.name, args.split, root=args.root, image_size=args.image_size,
                        seed=args.seed, download=args.download)
    out = show_grid(ds, args.out, n=args.n)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lico-bench", description="Train baseline and LICO classifiers, explain "
                "them, score the explanations, and report with confidence intervals.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("info", help="versions, device and everything registered")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("dataset", help="dataset utilities")
    dsub = s.add_subparsers(dest="dataset_command", metavar="ACTION", parser_class=_Parser)
    d = dsub.add_parser("show", help="write a grid of samples with mask contours")
    d.add_argument("name", help="dataset name (see 'lico-bench info')")
    d.add_argument("--out", required=True, help="output image file (.png or .pdf)")
    d.add_argument("--split", default="test")
    d.add_argument("--root", default=None, help="data root for real datasets")
    d.add_argument("--download", action="store_true", help="fetch CIFAR/SVHN files into --root")
    d.add_argument("--image-size", type=_positive_int, default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("-n", type=_positive_int, default=20, help="number of samples")
    d.set_defaults(func=cmd_dataset_show)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


# Subcommands defined in other modules add themselves here (train, run, report, ...).
_EXTRA_COMMANDS: list = []


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what job schedulers and ``kill`` send), raised where the program is, so it
    unwinds like Ctrl-C: ``finally`` blocks run, locks are released, temporary files go."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: Optional[List[str]] = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = None
    # Only the main thread may set a handler (main() called from a thread keeps the default).
    prev = (signal.signal(signal.SIGTERM, _on_sigterm)
            if threading.current_thread() is threading.main_thread() else None)
    try:
        args = parser.parse_args(argv)
        args._argv = argv
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"lico-bench: error: {e}", file=sys.stderr)
        return UserError.exit_code
    except OSError as e:
        # Disk full, no permission, a file where a folder should be: one line naming the
        # path and the fix, here rather than at every write (writes are atomic, so nothing
        # is half-written).
        from .errors import os_error_message

        print(f"lico-bench: error: {os_error_message(e)}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt as e:
        # Every file is written atomically, so what is there is whole: finished epochs
        # (last.pt), finished batches (parts/) and experiments (rows/).
        again = {"train": "run it again with --resume to continue",
                 "run": "run the same command again to continue"}.get(getattr(args, "command", None),
                                                                     "nothing was left half-written")
        what = "terminated (SIGTERM)" if isinstance(e, _Terminated) else "interrupted"
        print(f"lico-bench: {what}; finished work is kept ({again}).", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130  # 128 + the signal, as the shell's
    finally:
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)



def cmd_train(args) -> int:
    from .train import make_config, train

    cfg = make_config(args.preset, model=args.model, dataset=args.dataset, root=args.root,
                      download=True if args.download else None,
                      image_size=args.image_size, n_train=args.n_train, epochs=args.epochs,
                      batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay,
                      ema=args.ema, augment=args.augment, alpha=args.alpha, beta=args.beta,
                      n_ctx=args.n_ctx, text_encoder=args.text_encoder,
                      text_checkpoint=args.text_checkpoint,
                      ot_grad=args.ot_grad, text_targets=args.text_targets,
                      sync_bn=True if args.sync_bn else None, max_loss=args.max_loss, seed=args.seed,
                      device=args.device, workers=args.workers, out=args.out)
    from .train.distributed import info

    path = train(cfg, resume=args.resume, force=args.force, progress=not args.quiet)
    if info().is_main:
        print(f"checkpoint: {path}")
    return 0


def _add_train(sub) -> None:
    s = sub.add_parser("train", help="train a baseline_* or lico_* classifier")
    s.add_argument("--model", default="lico_r18", help="registered model (see 'lico-bench info')")
    s.add_argument("--dataset", default="shapes")
    s.add_argument("--preset", default=None,
                   help="recipe: quick (shapes default), cifar10, cifar100, svhn, imagenet")
    s.add_argument("--root", default=None, help="data root for real datasets")
    s.add_argument("--download", action="store_true", help="fetch CIFAR/SVHN files into --root")
    s.add_argument("--image-size", type=_positive_int, default=None)
    s.add_argument("--n-train", type=_positive_int, default=None, help="shapes: training-split size")
    s.add_argument("--epochs", type=_positive_int, default=None)
    s.add_argument("--batch-size", type=_positive_int, default=None)
    s.add_argument("--optimizer", default=None, choices=["sgd", "adamw"])
    s.add_argument("--lr", type=float, default=None)
    s.add_argument("--weight-decay", type=float, default=None)
    s.add_argument("--ema", type=float, default=None, help="EMA decay (0 = off)")
    s.add_argument("--augment", default=None, help="crop_flip, crop, flip, resized_crop_flip, none")
    s.add_argument("--alpha", type=float, default=None,
                   help="LICO: weight of the MM loss (default: the model variant's)")
    s.add_argument("--beta", type=float, default=None,
                   help="LICO: weight of the OT loss (default: the model variant's)")
    s.add_argument("--ot-grad", default=None, choices=["cost", "full", "none"],
                   help="LICO: OT gradient through the cost (paper reading), also through "
                        "Sinkhorn (full), or none (released code); default: the variant's")
    s.add_argument("--text-targets", default=None, choices=["tokens", "rolled"],
                   help="LICO: OT text targets, per-token outputs (paper) or rolled copies")
    s.add_argument("--n-ctx", type=_positive_int, default=None, help="LICO: context tokens")
    s.add_argument("--text-encoder", default=None, help="LICO: minilm (default) or clip")
    s.add_argument("--text-checkpoint", default=None, help="LICO: local CLIP checkpoint file")
    s.add_argument("--max-loss", type=float, default=None,
                   help="stop when the loss exceeds this (default 1000; 0 = only NaN/inf stop)")
    s.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: BatchNorm statistics over the global batch")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--device", default=None, help="auto (default), cpu, cuda")
    s.add_argument("--workers", type=int, default=None, help="data-loader worker processes")
    s.add_argument("--out", default=None, help="runs directory (default: runs)")
    s.add_argument("--resume", action="store_true", help="continue from the run's last.pt")
    s.add_argument("--force", action="store_true", help="train again although model.pt exists")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)


_EXTRA_COMMANDS.append(_add_train)



def _parse_kv_options(items, what: str) -> dict:
    """``NAME.KEY=VALUE`` items -> {NAME: {KEY: value}}; values parsed as JSON when they can be."""
    import json

    out: dict = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UserError(f"{what} option {item!r} is not NAME.KEY=VALUE (e.g. rise.N=2000).")
        lhs, value = item.split("=", 1)
        name, key = lhs.rsplit(".", 1)
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if key in out.get(name, {}):  # the last one would win unseen
            raise UserError(f"{what} option {name}.{key} is given twice; give it once.")
        out.setdefault(name, {})[key] = parsed
    return out


def _parse_flat_options(items, flag: str) -> dict:
    """``KEY=VALUE`` items -> {KEY: value}; values parsed as JSON when they can be."""
    import json

    out: dict = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UserError(f"{flag} {item!r} is not KEY=VALUE (e.g. n_train=256).")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _spec_from_manifest(args):
    """The RunSpec recorded in a run's manifest.json (``--from-manifest``), ``--out`` applied."""
    import json

    from .bench import RunSpec
    from .bench.runner import MANIFEST_FORMAT

    given = [flag for dest, (flag, default) in args._run_options.items()
             if dest not in ("from_manifest", "out", "quiet") and getattr(args, dest) != default]
    if given:
        raise UserError(f"--from-manifest takes every option from the manifest; drop "
                        f"{', '.join(given)} (only --out and --quiet go with it).")
    path = Path(args.from_manifest)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise UserError(f"manifest {str(path)!r} does not exist; pass the manifest.json of a "
                        "results directory written by 'lico-bench run'.")
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"manifest {str(path)!r} is not readable JSON ({type(e).__name__}); pass "
                        "the manifest.json written by 'lico-bench run'.") from None
    fmt = man.get("format") if isinstance(man, dict) else None
    if fmt != MANIFEST_FORMAT or not isinstance(man.get("spec"), dict):
        wrote = (man.get("versions") or {}).get("lico-bench") if isinstance(man, dict) else None
        raise UserError(f"manifest {str(path)!r} has format {fmt!r}; this lico-bench reads format "
                        f"{MANIFEST_FORMAT}; re-run it with the lico-bench that wrote it"
                        + (f" ({wrote})." if wrote else "."))
    try:
        spec = RunSpec.from_dict(man["spec"])
    except (UserError, TypeError) as e:
        raise UserError(f"manifest {str(path)!r}: {e}") from None
    if args.out is not None:
        spec.out = args.out
    return spec


def cmd_run(args) -> int:
    from .bench import RunSpec

    if args.from_manifest:
        return _run_spec(args, _spec_from_manifest(args))
    checkpoints = {}
    for item in args.checkpoint or []:
        if "=" in item:
            name, path = item.split("=", 1)
        elif len(args.model or []) <= 1:
            name, path = (args.model or ["lico_r18"])[0], item
        else:
            raise UserError(f"--checkpoint {item!r}: with several models write MODEL=PATH.")
        checkpoints[name] = path
    metrics = None
    if args.metrics:
        metrics = [m for part in args.metrics for m in part.split(",") if m]
    spec = RunSpec(models=args.model or ["lico_r18"], methods=args.method or ["gradcam"],
                   metrics=metrics, dataset=args.dataset, split=args.split, root=args.root,
                   image_size=args.image_size, n_images=args.n_images,
                   seeds=args.seeds or [0], checkpoints=checkpoints, runs=args.runs, out=args.out,
                   train=not args.no_train, target=args.target, batch_size=args.batch_size,
                   save_maps=args.save_maps, device=args.device, precision=args.precision,
                   method_options=_parse_kv_options(args.method_option, "method"),
                   metric_options=_parse_kv_options(args.metric_option, "metric"),
                   train_options=_parse_flat_options(args.train_option, "--train-option"))
    return _run_spec(args, spec)


def _run_spec(args, spec) -> int:
    import shlex

    from .bench import run

    command = "lico-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if args._argv is None \
        else "lico-bench " + " ".join(shlex.quote(a) for a in args._argv)
    from .train.distributed import info

    out = run(spec, progress=not args.quiet, command=command)
    if info().is_main:
        print(f"tables: {out / 'summary.md'} (also summary.csv, summary.tex)")
    return 0


def cmd_report(args) -> int:
    from .report import build_report

    from .results import unverified

    paths = build_report(args.results)
    print(Path(paths["md"]).read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    files = sorted((Path(args.results) / "rows").glob("*.jsonl"))
    old = unverified(files)
    if old:  # results written before rows carried a checksum
        print(f"note: {len(old)} of {len(files)} rows files have no checksum (written by an older "
              "lico-bench); their lines, image ids and row counts were checked.")
    return 0


def _add_run(sub) -> None:
    s = sub.add_parser("run", help="explain and score models x methods x metrics, then report")
    s.add_argument("--model", action="append", help="model (repeatable; default lico_r18)")
    s.add_argument("--method", action="append", help="attribution method (repeatable; default gradcam)")
    s.add_argument("--metrics", action="append", help="comma-separated metrics (default: insertion, "
                   "deletion, pointing_game, energy_pointing_game where the dataset has masks)")
    s.add_argument("--dataset", default="shapes")
    s.add_argument("--split", default="test")
    s.add_argument("--root", default=None, help="data root for real datasets")
    s.add_argument("--image-size", type=_positive_int, default=None)
    s.add_argument("--n-images", type=_positive_int, default=200, help="first N images of the split")
    s.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0)")
    s.add_argument("--checkpoint", action="append", help="PATH or MODEL=PATH (default: runs/...)")
    s.add_argument("--runs", default="runs", help="where trained checkpoints are found/made")
    s.add_argument("--out", default=None, help="results directory (default results/<grid name>)")
    s.add_argument("--no-train", action="store_true", help="error instead of training a missing checkpoint")
    s.add_argument("--target", default="pred", choices=["pred", "label"], help="explained class")
    s.add_argument("--batch-size", type=_positive_int, default=50, help="images per batch")
    s.add_argument("--save-maps", type=int, default=8, help="maps kept per experiment for figures")
    s.add_argument("--device", default="auto")
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="forward passes of explainers and metrics: auto = bf16 on CUDA, else fp32")
    s.add_argument("--method-option", action="append", metavar="METHOD.KEY=VALUE",
                   help="e.g. rise.N=2000 or scorecam.variant=grad-cam")
    s.add_argument("--metric-option", action="append", metavar="METRIC.KEY=VALUE",
                   help="e.g. insertion.step=64")
    s.add_argument("--train-option", action="append", metavar="KEY=VALUE",
                   help="training option for a checkpoint the run trains, e.g. n_train=256")
    s.add_argument("--from-manifest", metavar="MANIFEST",
                   help="re-run exactly the run a manifest.json records (with --out: elsewhere)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_run, _argv=None,
                   _run_options={a.dest: (a.option_strings[0], a.default) for a in s._actions
                                 if a.option_strings and a.dest != "help"})

    r = sub.add_parser("report", help="rebuild the tables of a results directory")
    r.add_argument("results", help="results directory written by 'lico-bench run'")
    r.set_defaults(func=cmd_report)


_EXTRA_COMMANDS.append(_add_run)



def cmd_figures(args) -> int:
    from .report.figures import build_figures

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    figs = build_figures(args.results, out=args.out, formats=formats)
    for name, paths in figs.items():
        if name != "notes":
            print(f"{name}: {', '.join(str(p) for p in paths)}")
    for note in figs.get("notes", []):
        print(f"skipped {note}")
    return 0


def _add_figures(sub) -> None:
    s = sub.add_parser("figures", help="draw the paper figures of a results directory")
    s.add_argument("results", help="results directory written by 'lico-bench run'")
    s.add_argument("--out", default=None, help="output directory (default RESULTS/figures)")
    s.add_argument("--format", default="png,pdf", help="comma-separated: png, pdf, svg")
    s.set_defaults(func=cmd_figures)


_EXTRA_COMMANDS.append(_add_figures)


if __name__ == "__main__":
    sys.exit(main())
