"""torch.distributed for training and evaluation, launched by ``torchrun``.

One process per device. ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous variables; :func:`setup` turns them into a process group (``nccl`` on CUDA,
``gloo`` on CPU) and the device of this rank. Without ``torchrun`` (``WORLD_SIZE`` unset
or 1) everything here is a no-op and single-process code runs unchanged.

The pieces the trainer and the runner need:

* :class:`DistInfo` - rank, world size, local rank;
* :func:`setup` - process group (once) and this rank's device;
* :func:`barrier`, :func:`all_reduce_sum`, :func:`broadcast_object` - plain collectives;
* :func:`gather_cat` - all-gather along dim 0 *with* autograd, for losses over the global
  batch (LICO's manifold matching);
* :class:`GlobalBatchNorm2d` / :func:`convert_sync_batchnorm` - batch statistics over the
  global batch (torch's ``SyncBatchNorm`` on CUDA; ours, built on autograd all-reduce, where
  torch's has no kernel, e.g. on CPU with gloo).
"""
from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``; ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """Contiguous slice of ``n`` items for this rank (sizes differ by at most one)."""
        base, extra = divmod(n, self.world_size)
        lo = self.rank * base + min(self.rank, extra)
        return slice(lo, lo + base + (1 if self.rank < extra else 0))


def info() -> DistInfo:
    """The current process group's view (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is there, else ``cpu``; names are checked."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N].") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu.")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def setup(device: str = "auto") -> Tuple[DistInfo, torch.device]:
    """Join the ``torchrun`` process group if launched by it (idempotent); return this rank's
    :class:`DistInfo` and device. Backend: ``nccl`` for CUDA devices, ``gloo`` otherwise;
    ``LICO_BENCH_DIST_BACKEND`` overrides it."""
    if not launched_by_torchrun():
        return DistInfo(), resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = os.environ.get("LICO_BENCH_DIST_BACKEND") or ("nccl" if dev.type == "cuda" else "gloo")
        # A rank that dies leaves the others waiting in a collective; torchrun then stops
        # the whole group, and this timeout bounds the wait when it cannot.
        timeout = datetime.timedelta(minutes=float(os.environ.get("LICO_BENCH_DIST_TIMEOUT_MIN", "30")))
        dist.init_process_group(backend, timeout=timeout,
                                device_id=dev if dev.type == "cuda" else None)
        atexit.register(_shutdown)
    return info(), dev


def _shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place; returns ``t``). No gradient."""
    if info().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    if not info().enabled:
        return obj
    box: List[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """``cat`` over ranks of ``t`` [n_r, ...] along dim 0, differentiable.

    Equal ``n_r`` on every rank. The backward sums, on each rank, the gradients all ranks
    computed for its slice; with every rank evaluating the same global loss and DDP
    averaging gradients, the result is exactly the gradient of that loss (W * dL/dx_r on
    rank r, divided by W in DDP's average).
    """
    if not info().enabled:
        return t
    if not t.requires_grad:
        out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(out, t.contiguous())
        return torch.cat(out, dim=0)
    return _AllGather.apply(t)


class _AllGather(torch.autograd.Function):
    # Backward: an all-reduce of the whole gathered gradient, then this rank's slice (the
    # tensors gathered here are small; gloo has no reduce-scatter).
    @staticmethod
    def forward(ctx, t):
        out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(out, t.contiguous())
        ctx.n = t.shape[0]
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        r = dist.get_rank()
        return g[r * ctx.n:(r + 1) * ctx.n]


class _AllReduceSum(torch.autograd.Function):
    # d(sum_k x_k)/dx_r = 1 for the sum every rank holds: the gradient is the sum over ranks.
    @staticmethod
    def forward(ctx, t):
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


class GlobalBatchNorm2d(nn.modules.batchnorm._BatchNorm):
    """BatchNorm2d whose training statistics are those of the global batch.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d`` (a checkpoint loads
    into the plain layer). In training mode under a process group the per-channel
    ``[sum x, sum x^2, count]`` are summed over ranks with a differentiable all-reduce, so
    forward and backward equal BatchNorm over the concatenated batch (Ioffe & Szegedy 2015,
    Alg. 1); the running variance uses the unbiased global estimate, as BatchNorm does.
    Used where torch's ``SyncBatchNorm`` has no kernel (CPU / gloo); on CUDA we use torch's.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input [B, C, H, W], got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and info().enabled):
            return super().forward(x)
        xf = x.float()
        n_local = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=torch.float32,
                               device=x.device)
        stats = torch.cat([xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3)), n_local])
        stats = _AllReduceSum.apply(stats)                          # [2C + 1], summed over ranks
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)      # biased, for normalising
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var.detach() * (n / (n - 1).clamp_min(1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean), m)
                self.running_var.lerp_(unbiased.to(self.running_var), m)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every ``BatchNorm2d`` of ``model`` computes its statistics over the global batch:
    torch's ``SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm2d` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.BatchNorm2d):
            g = GlobalBatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            g.load_state_dict(m.state_dict())
            g.train(m.training)
            return g.to(m.weight.device if m.affine else device)
        for name, child in m.named_children():
            setattr(m, name, convert(child))
        return m

    return convert(model)


def average_buffers(model: nn.Module) -> None:
    """Replace every floating-point buffer (BatchNorm running statistics) by its mean over
    ranks, so that all ranks evaluate and save the same model."""
    d = info()
    if not d.enabled:
        return
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b, op=dist.ReduceOp.SUM)
            b.div_(d.world_size)
