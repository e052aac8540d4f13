"""Baseline and LICO training (torchvision-references style: train_one_epoch, evaluate, train).

This module builds a run (model, LICO head, optimizer, schedule) and drives it; the rest of
train/ is split by job: :mod:`.augment` (augmentation), :mod:`.state` (paths, resume state,
log), :mod:`.loop` (the epoch loop, evaluation, the loss).

Loss: ``CE`` for ``baseline_*`` models, ``CE + alpha*L_MM + beta*L_OT`` for ``lico_*``
(LICO.md), with alpha, beta, the OT text targets and the OT gradient taken from the model's
variant (:mod:`lico_bench.lico.variants`) unless the config sets them; the head owns the
weights (:meth:`LicoHead.combine`). SGD with momentum, the FixMatch cosine schedule ``lr0 * cos(7*pi*k / (16*K))``
over ``K`` steps, weight decay on the classifier, EMA of the weights for evaluation.

Files, under ``<out>/<dataset>/<model>/seed<seed>/``:

* ``last.pt``: the full training state after each epoch (``--resume`` continues from it);
* ``log.csv``: one row per epoch with every loss term, the learning rate and accuracies;
* ``model.pt``: the final inference model (EMA weights, a :func:`save_checkpoint` file).
  For ``lico_*`` it is the bare classifier: the text branch is not in it.
* ``model_e<E>.pt`` for each E of ``keep_epochs``: the same kind of file with the weights
  evaluated after epoch E (EMA, BatchNorm recalibrated: those of that epoch's ``test_acc``),
  ``extra["epoch"] = E`` and the log up to E; ``run`` explains it as ``<model>@e<E>``.
  After the last epoch it holds the same weights as ``model.pt``. Note that epoch E of a
  run of ``epochs`` > E is not a run trained for E epochs: the learning rate follows the
  cosine over all ``epochs`` (at E = epochs/2 it is still cos(7*pi/32) = 0.77 of its peak).

Randomness: the data order, the augmentation and dropout of epoch ``e`` come from seeds
derived from ``(seed, e)``, so a run resumed after epoch ``k`` gives the same weights as
an uninterrupted one.

Distributed (``torchrun --nproc_per_node N -m lico_bench.cli train ...``): ``batch_size`` is
the *global* batch. Every rank draws the same data order and augmentation numbers and takes
its contiguous slice of each global batch, DDP averages the gradients, LICO's manifold
matching runs over the all-gathered global batch, ``sync_bn`` computes BatchNorm statistics
over the global batch; so N ranks follow the single-process run on the same global batches
(tested on CPU with gloo), apart from dropout masks, which are drawn per rank. Rank 0 writes
every file; evaluation is sharded.
"""
from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..data import create_dataset
from ..errors import UserError
from ..io import torch_save
from ..lock import hold_lock, releases_locks
from ..models import create_model, save_checkpoint
from .. import distributed as dist_
from .augment import apply_augment, augment_batch, augment_params  # noqa: F401  (public here)
from .config import TrainConfig
from ..distributed import DistInfo, resolve_device  # noqa: F401  (resolve_device: public here)
from .loop import (EMA, TrainNet, evaluate, recalibrate_bn, train_mode_accuracy,  # noqa: F401
                   train_one_epoch, training_loss)
from .state import (STATE_FORMAT, checkpoint_path, kept_epochs, kept_path,  # noqa: F401
                    restore_state, run_dir, seed_for, training_state, write_log)


def _deterministic_on_cpu(fn):
    """Run ``fn(cfg, ...)`` with ``torch.use_deterministic_algorithms(True)`` when training on
    the CPU, and restore the previous setting after.

    Why: the same command with the same seed must give the same weights, bit for bit, in
    any process. It did not on CPU (epoch losses differed in the 4th decimal): the backward
    of advanced indexing - LICO's ``T[y]`` gathers of the class text features, ``ctx[roll]``
    - is ``index_put_(accumulate=True)``, which PyTorch's CPU kernel runs with unordered
    atomic float adds over threads once the tensor has >= 32768 elements and more than one
    thread is used, so the context vectors' gradient changed in the last bits from run to
    run, and everything else after one step. Deterministic mode makes that kernel serial;
    the other CPU kernels are already deterministic for a given thread count (results do
    depend on the thread count, which the run manifest records). warn_only: a kernel
    without a deterministic version warns instead of stopping training. Not on CUDA, where
    determinism would also need CUBLAS_WORKSPACE_CONFIG and slower kernels.
    """
    @functools.wraps(fn)
    def wrapper(cfg: TrainConfig, *args, **kwargs):
        cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
        if not cpu:
            return fn(cfg, *args, **kwargs)
        prev = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return fn(cfg, *args, **kwargs)
        finally:
            torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
    return wrapper


def _fixmatch_cosine(total_steps: int):
    # LICO.md / FixMatch: eta_k = eta_0 * cos(7*pi*k / (16*K))
    return lambda k: math.cos(7 * math.pi * min(k, total_steps) / (16 * max(1, total_steps)))


def build_model_and_head(cfg: TrainConfig, info, device: torch.device):
    """The classifier ``cfg`` trains, on ``device``, and its LICO head (None for a baseline).

    info: the dataset's DatasetInfo. The model's ModelCfg records the LICO settings
    (``cfg.lico_settings()``: the variant's unless the config changed one) and the head
    trains with the same alpha, beta, ot_grad and text targets. Seeded from ``cfg.seed``.
    """
    torch.manual_seed(seed_for(cfg.seed, -1, 0))                # weight init
    model = create_model(cfg.model, info.num_classes, image_size=info.image_size,
                         dataset_info=info,
                         text_encoder=cfg.text_encoder if cfg.is_lico else None,
                         lico_settings=cfg.lico_settings() if cfg.is_lico else {},
                         guidance_settings=cfg.guidance_settings())
    if cfg.sync_bn:
        model = dist_.convert_sync_batchnorm(model, device)
    model = model.to(device).to(memory_format=torch.channels_last)
    if not cfg.is_lico:
        return model, None
    from ..lico import LicoHead, create_text_encoder

    with torch.no_grad():
        fh, fw = model.forward_features(torch.zeros(1, 3, info.image_size, info.image_size,
                                                    device=device)).shape[2:]
    encoder = create_text_encoder(cfg.text_encoder, checkpoint=cfg.text_checkpoint)
    head = LicoHead(encoder, info.class_names, feat_hw=fh * fw, n_ctx=cfg.n_ctx,
                    alpha=cfg.alpha, beta=cfg.beta, ot_grad=cfg.ot_grad,
                    targets=cfg.text_targets,
                    generator=torch.Generator().manual_seed(seed_for(cfg.seed, -1, 1)))
    return model, head.to(device)


def build_guidance(cfg: TrainConfig, train_ds):
    """The peer family's :class:`~lico_bench.guidance.GuidanceLoss` of ``cfg`` (None for a
    baseline or LICO model), after checking that ``train_ds`` has the object masks the family
    needs. ``guided_share`` < 1: the images whose mask is used are a fixed random subset of
    round(share * N) >= 1 training images, drawn from the run's seed."""
    fam = cfg.guidance_family
    if fam is None:
        return None
    from ..guidance import FAMILIES, GuidanceLoss

    if FAMILIES[fam].needs_masks and train_ds.get_batch([0]).masks is None:
        raise UserError(f"{cfg.model} trains on object masks and dataset {cfg.dataset!r} has "
                        "none; train it on shapes (or shapes-cue), or train sgt_* or lico_* here.")
    annotated = None
    if fam == "guided" and cfg.guided_share < 1:
        n = len(train_ds)
        g = torch.Generator().manual_seed(seed_for(cfg.seed, -1, 4))
        annotated = torch.zeros(n, dtype=torch.bool)
        annotated[torch.randperm(n, generator=g)[:max(1, round(cfg.guided_share * n))]] = True
    return GuidanceLoss(fam, cfg.guidance_settings(), annotated)


@releases_locks
@_deterministic_on_cpu
def train(cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True,
          log=print, on_epoch_end=None) -> Path:
    """Train ``cfg.model`` on ``cfg.dataset``; return the path of the inference checkpoint.

    ``on_epoch_end(epoch)`` is called after each epoch's state is saved (tests use it to
    interrupt a run). Under ``torchrun`` every rank calls this; rank 0 writes the files and
    every rank returns once they are written.
    """
    d, device = dist_.setup(cfg.device)
    if not d.is_main:
        log = lambda *a, **k: None  # noqa: E731  (one voice: rank 0's)
    if d.enabled and cfg.batch_size % d.world_size:
        raise UserError(f"--batch-size {cfg.batch_size} is the global batch and must be a multiple "
                        f"of the {d.world_size} processes; use e.g. {cfg.batch_size // d.world_size * d.world_size or d.world_size}.")
    rdir = run_dir(cfg.out, cfg.dataset, cfg.model, cfg.seed)
    final, last = rdir / "model.pt", rdir / "last.pt"
    if final.exists() and not (force or resume):
        raise UserError(f"{final} already exists; pass --force to train again (it will be "
                        "replaced only when the new run finishes) or --resume to extend it.")
    opts = {"n": cfg.n_train} if cfg.n_train else {}
    train_ds = create_dataset(cfg.dataset, "train", root=cfg.root, image_size=cfg.image_size,
                              seed=cfg.seed, download=cfg.download, **opts)
    test_ds = create_dataset(cfg.dataset, "test", root=cfg.root, image_size=cfg.image_size, seed=0,
                             download=cfg.download)
    info = train_ds.info
    guidance = build_guidance(cfg, train_ds)
    if guidance is not None and d.enabled:
        raise UserError(f"{cfg.model}: the peer families (guided, rrr, sgt) train in one "
                        "process only for now (their second backward pass is not tested "
                        "under DDP); run without torchrun.")
    model, head = build_model_and_head(cfg, info, device)

    # Weight decay on the classifier; none on the text branch, whose context vectors start
    # at N(0, 0.02^2) and would only be pulled to zero.
    groups = [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
    if head is not None:
        groups.append({"params": head.trainable_parameters(), "weight_decay": 0.0})
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    steps_per_epoch = max(1, len(train_ds) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _fixmatch_cosine(cfg.epochs * steps_per_epoch))
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None

    start_epoch, history = 0, []
    if resume and last.exists():
        start_epoch, history = restore_state(last, cfg.to_dict(), model, optimizer, scheduler,
                                             ema, head)
        log(f"resuming {cfg.model} on {cfg.dataset} after epoch {start_epoch}")
    elif resume:
        log(f"no training state at {last}; starting from scratch")
    lost = [e for e in cfg.keep_epochs if e <= start_epoch
            and not kept_path(cfg.out, cfg.dataset, cfg.model, cfg.seed, e).exists()]
    if lost:
        log(f"note: epochs {', '.join(map(str, lost))} of --keep-epochs were trained before this "
            "resumed run without being kept; they cannot be kept now (only later ones).")

    # Created only now: a bad option found above leaves no empty run directory behind.
    try:
        rdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {rdir} ({e.strerror}); pass a writable "
                        f"runs folder (train --out, run --runs).") from None
    hold_lock(rdir, "training into", "use another runs folder (train --out, run --runs)")  # one trainer each

    net = TrainNet(model, head, gather=dist_.gather_cat if d.enabled else None, guidance=guidance)
    if d.enabled:
        # After loading the state: DDP broadcasts rank 0's parameters and buffers once here.
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)

    t_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        stats = train_one_epoch(model, head, optimizer, scheduler, ema, train_ds, cfg, epoch,
                                device, progress, net=net, guidance=guidance)
        eval_model = ema.model if ema is not None else model
        recalibrate_bn(eval_model, train_ds, cfg, epoch, device)
        acc = evaluate(eval_model, test_ds, device, workers=cfg.workers)
        row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
               "lr": optimizer.param_groups[0]["lr"], **{k: round(v, 6) for k, v in stats.items()},
               "test_acc": round(acc, 6)}
        if guidance is not None:
            # The peers' second pass can leave BatchNorm's running statistics unusable
            # (right in train mode, chance in eval mode); recalibrate_bn above re-estimates
            # them, and this column shows whether it did: the same test images with the
            # batches' own statistics.
            row["test_acc_trainmode"] = round(train_mode_accuracy(eval_model, test_ds, device,
                                                                  workers=cfg.workers), 6)
            if row["test_acc_trainmode"] - acc > 0.2:
                log(f"warning: {cfg.model} epoch {epoch + 1}: test accuracy {acc:.3f} in eval "
                    f"mode but {row['test_acc_trainmode']:.3f} in train mode: BatchNorm's running "
                    "statistics do not fit the weights; raise --bn-recalibrate.")
        row["epoch_s"] = round(time.perf_counter() - t0, 2)
        history.append(row)
        if epoch == 0 and d.is_main:
            # a run from scratch replaces an earlier one's state (last.pt) now: its kept
            # epochs go with it, or `run` would take them for this run's
            stale = kept_epochs(cfg.out, cfg.dataset, cfg.model, cfg.seed)
            for e in stale:
                kept_path(cfg.out, cfg.dataset, cfg.model, cfg.seed, e).unlink(missing_ok=True)
            if stale:
                log(f"removed the kept epochs {', '.join(map(str, stale))} of the earlier run in {rdir}")
        if epoch + 1 in cfg.keep_epochs and d.is_main:
            # before last.pt: a run killed in between redoes this epoch and writes the same file
            save_checkpoint(kept_path(cfg.out, cfg.dataset, cfg.model, cfg.seed, epoch + 1),
                            eval_model, extra=_checkpoint_extra(cfg, history, t_start, d.world_size,
                                                                epoch=epoch + 1))
        state = training_state(cfg.to_dict(), epoch + 1, model, optimizer, scheduler, ema,
                               head, history)
        if d.is_main:
            torch_save(state, last)
            write_log(rdir / "log.csv", history)
        dist_.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
        log(f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.4f} "
            f"(ce {stats['ce']:.4f}" + (f", mm {stats['mm']:.4f}, ot {stats['ot']:.4f}" if head else "")
            + (f", guide {stats['guide']:.4f}" if guidance is not None else "")
            + f"), train acc {stats['train_acc']:.3f}, test acc {acc:.3f}, {row['epoch_s']:.0f}s")

    final_model = (ema.model if ema is not None else model).to(memory_format=torch.contiguous_format)
    if d.is_main:
        save_checkpoint(final, final_model, extra=_checkpoint_extra(cfg, history, t_start,
                                                                    d.world_size))
    dist_.barrier()
    return final


def _checkpoint_extra(cfg: TrainConfig, history: list, t_start: float, world_size: int,
                      epoch: Optional[int] = None) -> dict:
    """``extra`` of an inference checkpoint: the options, the epoch log so far, its last
    test accuracy, the seconds this process trained; a kept epoch's (``epoch`` given) also
    ``epoch``."""
    extra = {"train_cfg": cfg.to_dict(), "history": list(history),
             "test_acc": history[-1]["test_acc"] if history else None,
             "train_seconds": round(time.perf_counter() - t_start, 1),
             "world_size": world_size}
    if epoch is not None:
        extra["epoch"] = epoch
    return extra
