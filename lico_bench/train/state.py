"""A training run's files: where they live, the resumable state's format, the epoch log.

Under ``<out>/<dataset>/<model>/seed<seed>/``: ``last.pt`` (the state after each epoch,
:func:`training_state`), ``log.csv`` (one row per epoch, :func:`write_log`),
``model.pt`` (the inference checkpoint, written by :func:`lico_bench.models.save_checkpoint`)
and ``model_e<E>.pt`` (the one kept after epoch E, :func:`kept_path`).
Seeds of every random stream of a run come from :func:`seed_for`.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import List, Optional

import torch.nn as nn

from ..errors import UserError
from ..io import safe_torch_load, write_text
from ..schemas import TRAIN_STATE

STATE_FORMAT = 1

# Fields of TrainConfig that may change between a run and its resumption.
RESUMABLE_CHANGES = ("device", "workers", "out", "epochs", "download", "max_loss", "keep_epochs")


def run_dir(out: str | Path, dataset: str, model: str, seed: int) -> Path:
    """The stable directory of one trained model: ``<out>/<dataset>/<model>/seed<seed>``."""
    return Path(out) / dataset / model / f"seed{seed}"


def checkpoint_path(out: str | Path, dataset: str, model: str, seed: int = 0) -> Path:
    """Where :func:`~lico_bench.train.train` leaves the inference checkpoint, found later by
    names alone. ``model`` may name a kept epoch (``lico_wrn28_2@e5``,
    :func:`lico_bench.models.parse_model_ref`): then that epoch's :func:`kept_path`."""
    if "@" in model:
        from ..models import parse_model_ref

        name, epoch = parse_model_ref(model)
        return kept_path(out, dataset, name, seed, epoch)
    return run_dir(out, dataset, model, seed) / "model.pt"


def kept_path(out: str | Path, dataset: str, model: str, seed: int, epoch: int) -> Path:
    """The inference checkpoint kept after ``epoch`` (``train --keep-epochs``):
    ``<run dir>/model_e<epoch>.pt``."""
    return run_dir(out, dataset, model, seed) / f"model_e{epoch}.pt"


def kept_epochs(out: str | Path, dataset: str, model: str, seed: int) -> List[int]:
    """The epochs whose checkpoints a run directory holds, ascending."""
    found = []
    for p in run_dir(out, dataset, model, seed).glob("model_e*.pt"):
        e = p.stem[len("model_e"):]
        if e.isdigit():
            found.append(int(e))
    return sorted(found)


def seed_for(seed: int, epoch: int, stream: int) -> int:
    """The seed of one random stream of epoch ``epoch`` (-1: before training) of a run:
    streams 0 dropout (rank 0; 10 + r for rank r) or weight init, 1 data order or the LICO
    head's init, 2 augmentation, 3 BatchNorm recalibration, 4 a peer family's draws (sgt's
    masking; at -1, guided_share's annotated images). A resumed run therefore draws
    the same numbers as an uninterrupted one."""
    return (seed * 1_000_003 + epoch * 101 + stream) % (2**63)


def comparable(train_cfg: dict) -> dict:
    """``TrainConfig.to_dict()`` without the fields a resumed run may change."""
    return {k: v for k, v in train_cfg.items() if k not in RESUMABLE_CHANGES}


def training_state(cfg_dict: dict, epoch: int, model: nn.Module, optimizer, scheduler,
                   ema, head: Optional[nn.Module], history: List[dict]) -> dict:
    """What ``last.pt`` holds after ``epoch`` epochs: model, optimizer, scheduler, EMA,
    the LICO head's trainable part, the epoch log so far, and the options."""
    return {"format": STATE_FORMAT, "train_cfg": cfg_dict, "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": ema.model.state_dict() if ema is not None else None,
            "ema_updates": ema.updates if ema is not None else 0,
            "head": head.trainable_state_dict() if head is not None else None,
            "history": history}


def restore_state(path: Path, cfg_dict: dict, model: nn.Module, optimizer, scheduler, ema,
                  head: Optional[nn.Module]) -> tuple:
    """Load ``last.pt`` at ``path`` into the run's objects; return ``(epoch, history)``.
    Written with other options (:func:`comparable`): a one-line error."""
    state = read_state(path)
    if comparable(_with_new_defaults(state["train_cfg"], cfg_dict)) != comparable(cfg_dict):
        raise UserError(f"{path} was written with other options; rerun with the same options "
                        "or without --resume (use --force to start over).")
    try:  # typed by TRAIN_STATE; a tensor of the wrong shape or a missing key is caught here
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.model.load_state_dict(state["ema"] if state["ema"] is not None else {})
            ema.updates = state["ema_updates"]
        if head is not None:
            head.load_trainable_state_dict(state["head"] if state["head"] is not None else {})
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        first = " ".join(str(e).split())[:160] or type(e).__name__
        raise UserError(f"{path} does not fit the model and optimizer it resumes ({first}); "
                        "delete it or rerun without --resume.") from None
    return state["epoch"], state["history"]


def _with_new_defaults(saved: dict, current: dict) -> dict:
    """``saved`` (a last.pt's options) plus every option it lacks that ``current`` holds at
    its default: options added to TrainConfig after the state was written (the peers'
    guided_lambda, ...) do not change how that run trains, so it still resumes."""
    import dataclasses

    from .config import TrainConfig

    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    out = dict(saved)
    for k, v in current.items():
        if k not in out and k in defaults and defaults[k] == v:
            out[k] = v
    return out


def read_state(path: Path) -> dict:
    """A ``last.pt`` file, loaded as data (weights_only); not one: a one-line error."""
    what, fix = f"training state {path}", "delete it or rerun without --resume"
    state = TRAIN_STATE.check(safe_torch_load(path, what, fix, kind="training state"), what, fix)
    if state["format"] != STATE_FORMAT:
        raise UserError(f"{what} has format {state['format']}, this lico-bench reads "
                        f"{STATE_FORMAT}; {fix}.")
    return state


def write_log(path: Path, rows: List[dict]) -> None:
    """``log.csv``: one row per epoch (the keys of the first row as header), atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())
