"""``lico-bench`` command line. Parses arguments and calls one function of the layer below.

Every user error (unknown name, bad path, bad option) ends in one line on stderr,
``lico-bench: error: ...``, and exit status 2, with no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .cli_options import _RUN_FLAGS, _TRAIN_FLAGS, config_flag, run_spec, train_config  # noqa: F401
from .config import add_field_flags
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # on every (sub)command, before or after it; absent unless given
        self.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="print the libraries' warnings (torch, numpy, PIL) in full "
                               "instead of a one-line count")

    def error(self, message: str):  # argparse's default prints the usage too: keep one line
        raise UserError(f"{message} (see '{self.prog} --help').")


def _report_warnings(caught: list, verbose: bool, failed: bool) -> None:
    """The warnings libraries raised during a command: in full with ``--verbose``; else one
    stderr line counting them (none after an error, whose line is then the only one)."""
    import warnings

    if verbose:
        for w in caught:
            sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    elif caught and not failed:
        first = " ".join(f"{caught[0].category.__name__}: {caught[0].message}".split())
        print(f"lico-bench: note: {len(caught)} library warning(s) not shown (first: "
              f"{first[:120]}); add --verbose to see them.", file=sys.stderr)


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
    from .guidance import FAMILIES

    lines.append("LICO's peers (<family>_<arch>; each paired with baseline_<arch>):")
    lines += [f"  {f.name + '_r18':<18} {f.summary}" for f in FAMILIES.values()]
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
    import warnings

    caught, code = [], 2
    try:
        # kept for one summary line (_report_warnings): torch's and PIL's warnings run over
        # several lines of their own. The filters in force (-W, PYTHONWARNINGS, Python's
        # defaults: each warning once per place) still decide which are raised at all.
        with warnings.catch_warnings(record=True) as caught:
            args = parser.parse_args(argv)
            args._argv = argv
            if not getattr(args, "func", None):
                parser.print_help()
                code = 0 if not argv else 2
                return code
            code = int(args.func(args) or 0)
            return code
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
        _report_warnings(caught, getattr(args, "verbose", False), failed=code != 0)
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def cmd_train(args) -> int:
    from .train import train

    cfg = train_config(args)
    from .distributed import info

    path = train(cfg, resume=args.resume, force=args.force, progress=not args.quiet)
    if info().is_main:
        print(f"checkpoint: {path}")
    return 0


def _add_train(sub) -> None:
    from .train.config import PRESETS, TrainConfig

    s = sub.add_parser("train", help="train a baseline_* or lico_* classifier")
    config_flag(s, "train")
    preset_sets = {k for fields in PRESETS.values() for k in fields}
    fields = add_field_flags(s, TrainConfig, _TRAIN_FLAGS, default_note=lambda name, d: (
        f"default: the preset's, else {d}" if name in preset_sets else f"default: {d}"))
    s.add_argument("--resume", action="store_true", help="continue from the run's last.pt")
    s.add_argument("--force", action="store_true", help="train again although model.pt exists")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train, _fields=fields)


_EXTRA_COMMANDS.append(_add_train)


def cmd_run(args) -> int:
    return _run_spec(args, run_spec(args))


def _run_spec(args, spec) -> int:
    import shlex

    from .bench import run

    command = "lico-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if args._argv is None \
        else "lico-bench " + " ".join(shlex.quote(a) for a in args._argv)
    from .distributed import info

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
    from .bench.spec import RunSpec

    s = sub.add_parser("run", help="explain and score models x methods x metrics, then report")
    config_flag(s, "run")
    fields = add_field_flags(s, RunSpec, _RUN_FLAGS)
    s.add_argument("--from-manifest", metavar="MANIFEST",
                   help="re-run exactly the run a manifest.json records (with --out: elsewhere)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_run, _argv=None, _fields=fields)

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
    from .report.browser import build_page

    print(f"results browser: {build_page(args.results)}")   # shows the new figures
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
