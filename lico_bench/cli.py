"""``lico-bench`` command line. Parses arguments and calls one function of the layer below.

Every user error (unknown name, bad path, bad option) ends in one line on stderr,
``lico-bench: error: ...``, and exit status 2, with no traceback.
"""
from __future__ import annotations

import argparse
import sys
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
             f"models:   {', '.join(list_models())}"]
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
                        seed=args.seed)
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
    d.add_argument("--image-size", type=_positive_int, default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("-n", type=_positive_int, default=20, help="number of samples")
    d.set_defaults(func=cmd_dataset_show)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


# Subcommands defined in other modules add themselves here (train, run, report, ...).
_EXTRA_COMMANDS: list = []


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"lico-bench: error: {e}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("lico-bench: interrupted; finished work is kept.", file=sys.stderr)
        return 130



def cmd_train(args) -> int:
    from .train import make_config, train

    cfg = make_config(args.preset, model=args.model, dataset=args.dataset, root=args.root,
                      image_size=args.image_size, n_train=args.n_train, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      ema=args.ema, augment=args.augment, alpha=args.alpha, beta=args.beta,
                      n_ctx=args.n_ctx, text_encoder=args.text_encoder,
                      text_checkpoint=args.text_checkpoint,
                      ot_full_grad=True if args.ot_full_grad else None, seed=args.seed,
                      device=args.device, workers=args.workers, out=args.out)
    path = train(cfg, resume=args.resume, force=args.force, progress=not args.quiet)
    print(f"checkpoint: {path}")
    return 0


def _add_train(sub) -> None:
    s = sub.add_parser("train", help="train a baseline_* or lico_* classifier")
    s.add_argument("--model", default="lico_r18", help="registered model (see 'lico-bench info')")
    s.add_argument("--dataset", default="shapes")
    s.add_argument("--preset", default=None,
                   help="recipe: quick (shapes default), cifar10, cifar100, svhn, imagenet")
    s.add_argument("--root", default=None, help="data root for real datasets")
    s.add_argument("--image-size", type=_positive_int, default=None)
    s.add_argument("--n-train", type=_positive_int, default=None, help="shapes: training-split size")
    s.add_argument("--epochs", type=_positive_int, default=None)
    s.add_argument("--batch-size", type=_positive_int, default=None)
    s.add_argument("--lr", type=float, default=None)
    s.add_argument("--weight-decay", type=float, default=None)
    s.add_argument("--ema", type=float, default=None, help="EMA decay (0 = off)")
    s.add_argument("--augment", default=None, help="crop_flip, crop, flip, resized_crop_flip, none")
    s.add_argument("--alpha", type=float, default=None, help="LICO: weight of the MM loss")
    s.add_argument("--beta", type=float, default=None, help="LICO: weight of the OT loss")
    s.add_argument("--n-ctx", type=_positive_int, default=None, help="LICO: context tokens")
    s.add_argument("--text-encoder", default=None, help="LICO: minilm (default) or clip")
    s.add_argument("--text-checkpoint", default=None, help="LICO: local CLIP checkpoint file")
    s.add_argument("--ot-full-grad", action="store_true", help="LICO: gradient through Sinkhorn")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--device", default=None, help="auto (default), cpu, cuda")
    s.add_argument("--workers", type=int, default=None, help="data-loader worker processes")
    s.add_argument("--out", default=None, help="runs directory (default: runs)")
    s.add_argument("--resume", action="store_true", help="continue from the run's last.pt")
    s.add_argument("--force", action="store_true", help="train again although model.pt exists")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)


_EXTRA_COMMANDS.append(_add_train)


if __name__ == "__main__":
    sys.exit(main())
