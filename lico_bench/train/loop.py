"""The epoch loop: one training epoch, evaluation, BatchNorm recalibration, the EMA model,
and the loss, assembled in :func:`training_loss` alone.

Loss (LICO.md): ``CE`` for a baseline, ``CE + alpha*L_MM + beta*L_OT`` for a LICO model; the
LICO head owns alpha and beta (:meth:`lico_bench.lico.LicoHead.combine`). LICO's peers
(guided, rrr, sgt): ``CE + lambda * guide``, the family's term and weight owned by
:class:`lico_bench.guidance.GuidanceLoss`.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Batch
from ..errors import UserError
from ..precision import to_device
from .. import distributed as dist_
from .augment import apply_augment, apply_augment_masks, augment_params
from .config import TrainConfig
from .state import seed_for


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


@torch.no_grad()
def train_mode_accuracy(model: nn.Module, ds, device: torch.device, batch_size: int = 250,
                        workers: int = 0) -> float:
    """Top-1 accuracy of ``model`` on ``ds`` with BatchNorm in train mode (each batch of
    ``batch_size`` normalised with its own statistics), on a copy: ``model`` and its running
    statistics are untouched. Beside :func:`evaluate` (eval mode, running statistics) it
    tells whether the running statistics are usable: a loss with a second forward or
    backward pass (LICO's peers) can leave them describing other inputs, and the network
    is then right in train mode and near chance in eval mode (issue 26)."""
    probe = copy.deepcopy(model).train()
    return evaluate_as_is(probe, ds, device, batch_size, workers)


@torch.no_grad()
def evaluate_as_is(model: nn.Module, ds, device: torch.device, batch_size: int = 250,
                   workers: int = 0) -> float:
    """Top-1 accuracy of ``model`` in the mode it is in (single process)."""
    correct = seen = 0
    for b in _batches(ds, list(torch.split(torch.arange(len(ds)), batch_size)), workers):
        logits = model(to_device(b.images, device).contiguous(memory_format=torch.channels_last))
        correct += int((logits.argmax(1).cpu() == b.labels).sum())
        seen += len(b.labels)
    return correct / max(1, seen)


class TrainNet(nn.Module):
    """What one training step runs, and what DDP wraps: the classifier (its feature map and
    logits, both needed) and the LICO head, so that one gradient all-reduce covers both.

    forward(x [B, 3, H, W], y [B] int64) -> (logits [B, K], {"mm", "ot"} scalars or {}).
    The LICO losses run in float32 with autocast off (see lico/losses.py).
    With a ``guidance`` (a peer family, :class:`lico_bench.guidance.GuidanceLoss`) the step
    is the family's: forward(x, y, masks [B, H, W] bool, use [B] bool or None, generator)
    -> (logits, {"guide": scalar}).
    """

    def __init__(self, model: nn.Module, head: Optional[nn.Module] = None, gather=None,
                 guidance=None):
        super().__init__()
        self.model, self.head, self.gather, self.guidance = model, head, gather, guidance

    def forward(self, x: torch.Tensor, y: torch.Tensor, masks: Optional[torch.Tensor] = None,
                use: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None):
        if self.guidance is not None:
            return self.guidance.forward(self.model, x, y, masks, use, generator)
        feats = self.model.forward_features(x)
        logits = self.model.head(feats)
        parts: Dict[str, torch.Tensor] = {}
        if self.head is not None:
            with torch.autocast(x.device.type, enabled=False):
                parts = self.head.losses(feats.float(), y, gather=self.gather)
        return logits, parts


def training_loss(logits: torch.Tensor, y: torch.Tensor, head: Optional[nn.Module],
                  parts: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The training loss and its CE term: ``(CE + head.combine(parts), CE)``, scalars.

    logits: [B, K] (any float dtype; CE in float32); y: [B] int64; parts: the head's
    ``{"mm", "ot"}`` losses, ``{}`` for a baseline (loss = CE). The head owns the weights
    alpha, beta (LICO.md, "Losses": ``L = CE + alpha*L_MM + beta*L_OT``). For a peer family
    ``head`` is its :class:`~lico_bench.guidance.GuidanceLoss` and parts ``{"guide"}``
    (``L = CE + lambda * guide``).
    """
    ce = F.cross_entropy(logits.float(), y)
    return ce + (head.combine(parts) if parts else 0.0), ce


def train_one_epoch(model, head, optimizer, scheduler, ema, ds, cfg: TrainConfig, epoch: int,
                    device: torch.device, progress: bool = True,
                    net: Optional[nn.Module] = None, guidance=None) -> Dict[str, float]:
    """One pass over ``ds``; returns the epoch means of loss, ce, mm, ot and train accuracy
    (over the global batch when distributed), and ``guide`` (the unweighted extra term) for
    a peer family.

    net: the module to step (a :class:`TrainNet` of ``model`` and ``head``, DDP-wrapped
    under a process group); built here when None. guidance: a peer family's
    :class:`~lico_bench.guidance.GuidanceLoss` (then ``head`` is None): the batches' masks
    are augmented with their images, and saliency-guided training draws its random values
    from a generator seeded from (seed, epoch).
    """
    from tqdm import tqdm

    d = dist_.info()
    net = net if net is not None else TrainNet(model, head, guidance=guidance)
    net.train()
    # Dropout in the head: per rank (rank 0 keeps the single-process stream).
    torch.manual_seed(seed_for(cfg.seed, epoch, 0 if d.rank == 0 else 10 + d.rank))
    g_order = torch.Generator().manual_seed(seed_for(cfg.seed, epoch, 1))
    g_aug = torch.Generator().manual_seed(seed_for(cfg.seed, epoch, 2))
    g_guide = torch.Generator().manual_seed(seed_for(cfg.seed, epoch, 4))   # sgt's masking
    order = torch.randperm(len(ds), generator=g_order)
    chunks = _chunks(order, cfg.batch_size, drop_last=True)            # global batches
    mine = [c[d.shard(len(c))] for c in chunks]                         # this rank's slices
    # sums on the device, read back every `sync_every` steps: the finiteness check and the
    # progress bar need the host, the other steps need not wait for it.
    sums = torch.zeros(7, dtype=torch.float64, device=device)   # loss ce mm ot correct n guide
    sync_every = 10
    bar = tqdm(zip(chunks, _batches(ds, mine, cfg.workers)), total=len(chunks),
               desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=not (progress and d.is_main), dynamic_ncols=True)
    for step, (chunk, b) in enumerate(bar):
        x, y = to_device(b.images, device), to_device(b.labels, device)
        masks = None
        if guidance is not None and guidance.needs_masks:
            masks = to_device(b.masks, device)
        if cfg.augment != "none":
            p = augment_params(cfg.augment, len(chunk), x.shape[2], x.shape[3], g_aug)
            p = {k: v[d.shard(len(chunk))] for k, v in p.items()}
            x = apply_augment(x, cfg.augment, p)
            if masks is not None:
                masks = apply_augment_masks(masks, cfg.augment, p)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if guidance is None:
                logits, parts = net(x, y)
            else:
                logits, parts = net(x, y, masks, guidance.use(b.index, device), g_guide)
        loss, ce = training_loss(logits, y, head if guidance is None else guidance, parts)
        n = len(y)
        zero = ce.new_zeros(())
        step_sums = torch.stack([loss.detach() * n, ce.detach() * n,
                                 parts.get("mm", zero).detach() * n, parts.get("ot", zero).detach() * n,
                                 (logits.argmax(1) == y).sum().to(ce.dtype),
                                 ce.new_tensor(float(n)),
                                 parts.get("guide", zero).detach() * n]).double()
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
    loss_s, ce_s, mm_s, ot_s, correct, n, guide_s = sums.tolist()
    if not math.isfinite(loss_s) or (cfg.max_loss > 0 and loss_s / max(1, n) > cfg.max_loss):
        raise _diverged(cfg, epoch, loss_s / max(1, n))
    n = max(1.0, n)
    out = {"loss": loss_s / n, "ce": ce_s / n, "mm": mm_s / n, "ot": ot_s / n, "train_acc": correct / n}
    if head is None:
        out["mm"] = out["ot"] = float("nan")
    if guidance is not None:
        out["guide"] = guide_s / n
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
    g = torch.Generator().manual_seed(seed_for(cfg.seed, epoch, 3))
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
