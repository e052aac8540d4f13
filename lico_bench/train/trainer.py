"""Baseline and LICO training (torchvision-references style: train_one_epoch, evaluate, train).

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

import copy
import csv
import io
import math
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Batch, create_dataset
from ..errors import UserError
from ..io import safe_torch_load, torch_save, write_text
from ..lock import hold_lock, releases_locks
from ..precision import to_device
from ..models import create_model, read_checkpoint, save_checkpoint
from . import distributed as dist_
from .config import TrainConfig
from .distributed import DistInfo, resolve_device  # noqa: F401  (resolve_device: public here)

STATE_FORMAT = 1


def run_dir(out: str | Path, dataset: str, model: str, seed: int) -> Path:
    """The stable directory of one trained model: ``<out>/<dataset>/<model>/seed<seed>``."""
    return Path(out) / dataset / model / f"seed{seed}"


def checkpoint_path(out: str | Path, dataset: str, model: str, seed: int = 0) -> Path:
    """Where :func:`train` leaves the inference checkpoint, found later by names alone."""
    return run_dir(out, dataset, model, seed) / "model.pt"


def _seed_for(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 101 + stream) % (2**63)


class EMA:
    """Exponential moving average of a model's weights (buffers copied), with the usual
    warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so that short runs are usable."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, m in zip(self.model.parameters(), model.parameters()):
            e.lerp_(m.detach(), 1.0 - d)
        for e, m in zip(self.model.buffers(), model.buffers()):
            e.copy_(m)


def augment_params(kind: str, n: int, h: int, w: int, g: torch.Generator, pad: int = 4) -> Dict[str, torch.Tensor]:
    """The random numbers of :func:`apply_augment` for ``n`` images of ``h x w``, drawn from
    ``g`` (a CPU generator): each value is [n]. Ranks draw them for the whole global batch
    and keep their slice, so a distributed step augments exactly as one process would."""
    p: Dict[str, torch.Tensor] = {}
    if kind in ("crop_flip", "crop"):
        p["oy"] = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        p["ox"] = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    elif kind == "resized_crop_flip":
        area = h * w * (0.35 + 0.65 * torch.rand(n, generator=g))
        logr = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(n, generator=g)
        ratio = torch.exp(logr)
        p["cw"] = torch.sqrt(area * ratio).clamp(8, w)
        p["ch"] = torch.sqrt(area / ratio).clamp(8, h)
        p["x0"] = torch.rand(n, generator=g) * (w - p["cw"])
        p["y0"] = torch.rand(n, generator=g) * (h - p["ch"])
    if kind in ("crop_flip", "flip", "resized_crop_flip"):
        p["flip"] = torch.rand(n, generator=g) < 0.5
    return p


def apply_augment(x: torch.Tensor, kind: str, p: Dict[str, torch.Tensor], pad: int = 4) -> torch.Tensor:
    """Batched augmentation on the device. x: [B, 3, H, W] float32 normalised -> same shape;
    p: :func:`augment_params` for these B images.

    crop: RandomCrop(H, padding=pad) with reflect padding (as FixMatch); flip: horizontal
    flip with p = 0.5; resized_crop_flip: RandomResizedCrop(scale 0.35-1, ratio 3/4-4/3)
    then flip.
    """
    B, _, H, W = x.shape
    if kind in ("crop_flip", "crop"):
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        oy, ox = p["oy"].to(x.device), p["ox"].to(x.device)
        rows = (oy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]  # [B,1,H,1]
        cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, None, :]  # [B,1,1,W]
        bidx = torch.arange(B, device=x.device)[:, None, None, None]
        cidx = torch.arange(3, device=x.device)[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    elif kind == "resized_crop_flip":
        w, h, x0, y0 = p["cw"], p["ch"], p["x0"], p["y0"]
        # affine grid that maps the output to the crop box (normalised coordinates)
        theta = torch.zeros(B, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = w / W, h / H
        theta[:, 0, 2] = (2 * x0 + w) / W - 1
        theta[:, 1, 2] = (2 * y0 + h) / H - 1
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if "flip" in p:
        flip = p["flip"].to(x.device).view(B, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    return x


def augment_batch(x: torch.Tensor, kind: str, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """:func:`apply_augment` with numbers drawn from ``g``. x: [B, 3, H, W] -> same shape."""
    if kind == "none":
        return x
    return apply_augment(x, kind, augment_params(kind, x.shape[0], x.shape[2], x.shape[3], g, pad), pad)


def _chunks(order: torch.Tensor, batch_size: int, drop_last: bool) -> List[torch.Tensor]:
    chunks = list(torch.split(order, batch_size))
    if drop_last and len(chunks) > 1 and len(chunks[-1]) < batch_size:
        chunks = chunks[:-1]
    return chunks


def _batches(ds, chunks: List[torch.Tensor], workers: int) -> Iterator[Batch]:
    """The batches of ``ds`` at the index lists ``chunks`` (this rank's), in order."""
    if workers <= 0:
        for idx in chunks:
            yield ds.get_batch(idx.tolist())
        return
    from ..data import collate

    loader = torch.utils.data.DataLoader(ds, batch_sampler=[c.tolist() for c in chunks],
                                         collate_fn=collate, num_workers=workers,
                                         pin_memory=torch.cuda.is_available())
    yield from loader


@torch.no_grad()
def evaluate(model: nn.Module, ds, device: torch.device, batch_size: int = 250,
             workers: int = 0) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on dataset ``ds``; under a process group
    each rank scores its shard and the counts are summed."""
    d = dist_.info()
    was_training = model.training
    model.eval()
    mine = torch.arange(len(ds))[d.shard(len(ds))]
    counts = torch.zeros(2, dtype=torch.float64, device=device)   # correct, seen
    for b in _batches(ds, list(torch.split(mine, batch_size)), workers):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(to_device(b.images, device).contiguous(memory_format=torch.channels_last))
        counts[0] += (logits.argmax(1) == to_device(b.labels, device)).sum()
        counts[1] += len(b.labels)
    dist_.all_reduce_sum(counts)
    model.train(was_training)
    return float(counts[0] / counts[1].clamp_min(1))


class TrainNet(nn.Module):
    """What one training step runs, and what DDP wraps: the classifier (its feature map and
    logits, both needed) and the LICO head, so that one gradient all-reduce covers both.

    forward(x [B, 3, H, W], y [B] int64) -> (logits [B, K], {"mm", "ot"} scalars or {}).
    The LICO losses run in float32 with autocast off (see lico/losses.py).
    """

    def __init__(self, model: nn.Module, head: Optional[nn.Module] = None, gather=None):
        super().__init__()
        self.model, self.head, self.gather = model, head, gather

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        feats = self.model.forward_features(x)
        logits = self.model.head(feats)
        parts: Dict[str, torch.Tensor] = {}
        if self.head is not None:
            with torch.autocast(x.device.type, enabled=False):
                parts = self.head.losses(feats.float(), y, gather=self.gather)
        return logits, parts


def train_one_epoch(model, head, optimizer, scheduler, ema, ds, cfg: TrainConfig, epoch: int,
                    device: torch.device, progress: bool = True,
                    net: Optional[nn.Module] = None) -> Dict[str, float]:
    """One pass over ``ds``; returns the epoch means of loss, ce, mm, ot and train accuracy
    (over the global batch when distributed).

    net: the module to step (a :class:`TrainNet` of ``model`` and ``head``, DDP-wrapped
    under a process group); built here when None.
    """
    from tqdm import tqdm

    d = dist_.info()
    net = net if net is not None else TrainNet(model, head)
    net.train()
    # Dropout in the head: per rank (rank 0 keeps the single-process stream).
    torch.manual_seed(_seed_for(cfg.seed, epoch, 0 if d.rank == 0 else 10 + d.rank))
    g_order = torch.Generator().manual_seed(_seed_for(cfg.seed, epoch, 1))
    g_aug = torch.Generator().manual_seed(_seed_for(cfg.seed, epoch, 2))
    order = torch.randperm(len(ds), generator=g_order)
    chunks = _chunks(order, cfg.batch_size, drop_last=True)            # global batches
    mine = [c[d.shard(len(c))] for c in chunks]                         # this rank's slices
    # sums on the device, read back every `sync_every` steps: the finiteness check and the
    # progress bar need the host, the other steps need not wait for it.
    sums = torch.zeros(6, dtype=torch.float64, device=device)         # loss ce mm ot correct n
    sync_every = 10
    bar = tqdm(zip(chunks, _batches(ds, mine, cfg.workers)), total=len(chunks),
               desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=not (progress and d.is_main), dynamic_ncols=True)
    for step, (chunk, b) in enumerate(bar):
        x, y = to_device(b.images, device), to_device(b.labels, device)
        if cfg.augment != "none":
            p = augment_params(cfg.augment, len(chunk), x.shape[2], x.shape[3], g_aug)
            x = apply_augment(x, cfg.augment, {k: v[d.shard(len(chunk))] for k, v in p.items()})
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, parts = net(x, y)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce + (head.combine(parts) if parts else 0.0)   # the head owns alpha, beta
        n = len(y)
        zero = ce.new_zeros(())
        step_sums = torch.stack([loss.detach() * n, ce.detach() * n,
                                 parts.get("mm", zero).detach() * n, parts.get("ot", zero).detach() * n,
                                 (logits.argmax(1) == y).sum().to(ce.dtype),
                                 ce.new_tensor(float(n))]).double()
        # One collective per step: every rank must see a non-finite loss anywhere, or the
        # others would wait for it forever in the next all-reduce.
        dist_.all_reduce_sum(step_sums)
        if (step + 1) % sync_every == 0 or step + 1 == len(chunks):
            step_loss = step_sums[0].item() / step_sums[5].item()
            if not math.isfinite(step_loss) or (cfg.max_loss > 0 and step_loss > cfg.max_loss):
                raise _diverged(cfg, epoch, step_loss)
            bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        sums += step_sums
    bar.close()
    loss_s, ce_s, mm_s, ot_s, correct, n = sums.tolist()
    if not math.isfinite(loss_s) or (cfg.max_loss > 0 and loss_s / max(1, n) > cfg.max_loss):
        raise _diverged(cfg, epoch, loss_s / max(1, n))
    n = max(1.0, n)
    out = {"loss": loss_s / n, "ce": ce_s / n, "mm": mm_s / n, "ot": ot_s / n, "train_acc": correct / n}
    if head is None:
        out["mm"] = out["ot"] = float("nan")
    return out


@torch.no_grad()
def recalibrate_bn(model: nn.Module, ds, cfg: TrainConfig, epoch: int, device: torch.device) -> None:
    """Re-estimate BatchNorm running statistics of ``model`` for its current weights.

    Running statistics lag behind the weights in short runs (and an EMA model's copied
    buffers belong to other weights): ``cfg.bn_recalibrate`` batches of augmented training
    images, cumulative average ("precise BN", Wu & Johnson 2021). The model stays in eval
    mode. Distributed: each rank takes its slice of every batch; with synchronised
    BatchNorm the statistics are the global batch's, otherwise the per-rank statistics are
    averaged over ranks afterwards (so every rank holds the same model).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if cfg.bn_recalibrate <= 0 or not bns:
        return
    d = dist_.info()
    g = torch.Generator().manual_seed(_seed_for(cfg.seed, epoch, 3))
    order = torch.randperm(len(ds), generator=g)[: cfg.bn_recalibrate * cfg.batch_size]
    chunks = _chunks(order, cfg.batch_size, drop_last=False)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
        m.train()
    try:
        for chunk, b in zip(chunks, _batches(ds, [c[d.shard(len(c))] for c in chunks], cfg.workers)):
            x = to_device(b.images, device)
            if cfg.augment != "none":
                p = augment_params(cfg.augment, len(chunk), x.shape[2], x.shape[3], g)
                x = apply_augment(x, cfg.augment, {k: v[d.shard(len(chunk))] for k, v in p.items()})
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                model(x.contiguous(memory_format=torch.channels_last))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
            m.eval()
    if not (cfg.sync_bn and d.enabled):
        dist_.average_buffers(model)


def _diverged(cfg: TrainConfig, epoch: int, loss: float) -> UserError:
    """The error that stops a run whose loss is not finite or above ``cfg.max_loss``
    (an exploding loss; see TrainConfig.max_loss). It is raised before the epoch's state is
    saved, so last.pt still holds the last good epoch."""
    why = f"loss {loss:.4g}" + (f" > max_loss {cfg.max_loss:g}" if math.isfinite(loss) else "")
    kept = (f"the state after epoch {epoch} (last.pt) is kept" if epoch > 0
            else "no checkpoint was written")
    return UserError(f"training diverged at epoch {epoch + 1} ({why}); {kept}; lower --lr or "
                     "check the data.")


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
    import functools

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


def _write_log(path: Path, rows: List[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def _comparable(d: dict) -> dict:
    # Fields that may change between a run and its resumption.
    return {k: v for k, v in d.items()
            if k not in ("device", "workers", "out", "epochs", "download", "max_loss")}


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
    torch.manual_seed(_seed_for(cfg.seed, -1, 0))                # weight init
    model = create_model(cfg.model, info.num_classes, image_size=info.image_size,
                         dataset_info=info,
                         text_encoder=cfg.text_encoder if cfg.is_lico else None,
                         lico_settings=cfg.lico_settings() if cfg.is_lico else {})
    if cfg.sync_bn:
        model = dist_.convert_sync_batchnorm(model, device)
    model = model.to(device).to(memory_format=torch.channels_last)

    head = None
    if cfg.is_lico:
        from ..lico import LicoHead, create_text_encoder

        with torch.no_grad():
            fh, fw = model.forward_features(torch.zeros(1, 3, info.image_size, info.image_size,
                                                        device=device)).shape[2:]
        encoder = create_text_encoder(cfg.text_encoder, checkpoint=cfg.text_checkpoint)
        head = LicoHead(encoder, info.class_names, feat_hw=fh * fw, n_ctx=cfg.n_ctx,
                        alpha=cfg.alpha, beta=cfg.beta, ot_grad=cfg.ot_grad,
                        targets=cfg.text_targets,
                        generator=torch.Generator().manual_seed(_seed_for(cfg.seed, -1, 1)))
        head = head.to(device)

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
        state = _read_state(last)
        if _comparable(state["train_cfg"]) != _comparable(cfg.to_dict()):
            raise UserError(f"{last} was written with other options; rerun with the same options "
                            "or without --resume (use --force to start over).")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.model.load_state_dict(state["ema"])
            ema.updates = state["ema_updates"]
        if head is not None:
            head.load_trainable_state_dict(state["head"])
        start_epoch, history = state["epoch"], state["history"]
        log(f"resuming {cfg.model} on {cfg.dataset} after epoch {start_epoch}")
    elif resume:
        log(f"no training state at {last}; starting from scratch")

    # Created only now: a bad option found above leaves no empty run directory behind.
    try:
        rdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {rdir} ({e.strerror}); pass a writable --out.") from None
    hold_lock(rdir, "training into", "use another runs folder (train --out, run --runs)")  # one trainer each

    net = TrainNet(model, head, gather=dist_.gather_cat if d.enabled else None)
    if d.enabled:
        # After loading the state: DDP broadcasts rank 0's parameters and buffers once here.
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)

    t_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        stats = train_one_epoch(model, head, optimizer, scheduler, ema, train_ds, cfg, epoch,
                                device, progress, net=net)
        eval_model = ema.model if ema is not None else model
        recalibrate_bn(eval_model, train_ds, cfg, epoch, device)
        acc = evaluate(eval_model, test_ds, device, workers=cfg.workers)
        row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
               "lr": optimizer.param_groups[0]["lr"], **{k: round(v, 6) for k, v in stats.items()},
               "test_acc": round(acc, 6), "epoch_s": round(time.perf_counter() - t0, 2)}
        history.append(row)
        state = {"format": STATE_FORMAT, "train_cfg": cfg.to_dict(), "epoch": epoch + 1,
                 "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(),
                 "ema": ema.model.state_dict() if ema is not None else None,
                 "ema_updates": ema.updates if ema is not None else 0,
                 "head": head.trainable_state_dict() if head is not None else None,
                 "history": history}
        if d.is_main:
            torch_save(state, last)
            _write_log(rdir / "log.csv", history)
        dist_.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
        log(f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.4f} "
            f"(ce {stats['ce']:.4f}" + (f", mm {stats['mm']:.4f}, ot {stats['ot']:.4f}" if head else "")
            + f"), train acc {stats['train_acc']:.3f}, test acc {acc:.3f}, {row['epoch_s']:.0f}s")

    final_model = (ema.model if ema is not None else model).to(memory_format=torch.contiguous_format)
    extra = {"train_cfg": cfg.to_dict(), "history": history,
             "test_acc": history[-1]["test_acc"] if history else None,
             "train_seconds": round(time.perf_counter() - t_start, 1),
             "world_size": d.world_size}
    if d.is_main:
        save_checkpoint(final, final_model, extra=extra)
    dist_.barrier()
    return final


def _read_state(path: Path) -> dict:
    state = safe_torch_load(path, f"training state {path}", "delete it and rerun without --resume",
                            kind="training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path} is not a lico-bench training state; delete it or rerun without --resume.")
    return state
