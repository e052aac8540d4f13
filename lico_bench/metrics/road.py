"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci, Kasneci; ICML 2022,
"A Consistent and Efficient Evaluation Strategy for Attribution Methods";
reference code tleemann/road_evaluation, ``road/imputations.py``, ``NoisyLinearImputer``).

Pixels are removed in the order of the map (MoRF: most relevant first; LeRF: least
relevant first) and *imputed* instead of set to a constant, so that the shape of the
removed region does not leak the class (the paper's "class information leakage").

Noisy linear imputation (the paper's; reference ``NoisyLinearImputer``). Every removed
pixel i equals the weighted mean of its 8 neighbours, weights ``w = 1/6`` for the 4 edge
neighbours and ``1/12`` for the 4 diagonal ones; a neighbour outside the image is dropped
and the pixel's own coefficient ``d_i`` is the sum of the weights that remain (1 inside the
image, 2/3 on an edge, 5/12 in a corner). Removed neighbours are unknowns too, so all the
removed pixels U of an image are solved jointly, with the known pixels K as data::

    d_i x_i - sum_{j in U} w_ij x_j = sum_{k in K} w_ik v_k        for every i in U

one sparse system per image, the same matrix for every channel. Then
``noise * N(0, 1)`` is added to the imputed values (noise = 0.01, in the space the model
sees: normalised images here; the reference imputes [0, 1] images before normalising).

The matrix ``A = D - W_UU`` is the weighted graph Laplacian of the 8-neighbour pixel graph
restricted to U. The pixel graph is connected, so every connected region of removed pixels
touches a known pixel unless every pixel is removed; A is then symmetric positive definite
(irreducibly diagonally dominant). The one singular case, all pixels removed (p = 1), has
a zero right-hand side: the reference's ``scipy.sparse.linalg.spsolve`` returns NaN there;
here it is the system's minimum-norm solution, 0 (the dataset mean colour), which is what
conjugate gradient started at 0 returns.

Solvers (option ``solver``; "auto" = "direct" on a CPU, "cg" on any other device):

- "cg": preconditioned conjugate gradient (Jacobi preconditioner ``1/d_i``), batched over
  images, percentages and channels, on the images' device, in float64, the 3x3 stencil
  applied as eight shifted sums. It stops when every system's residual is below
  ``tol * ||b||`` (checked every :data:`CHECK_EVERY` iterations: one host sync each;
  converged systems then leave the batch) and raises if ``max_iter`` is reached first.
  A dense solve would need an (HW)^2 matrix per image (impossible at 224 px) and torch has
  no batched sparse factorisation; CG needs only the stencil, ~sqrt(condition) ~ the
  diameter of the largest removed region in iterations (~140 at 32 px).
- "direct": the sparse system of each image assembled with vectorised index arithmetic
  (no per-pixel loop) and factorised by scipy's SuperLU, on the host. On a CPU it is the
  faster of the two (measured, 1 thread: 1.0 ms vs 2.9 ms per system at 32 px, ~60 ms vs
  320-750 ms at 224 px; ``benchmarks/bench_road.py``): SuperLU's fill-in on a small 2-D grid is
  cheap, CG's iterations are not.

Both give the images of scipy's sparse direct solve of the reference system to < 1e-5
(METRICS.md's "known trap"; ``tests/metrics/test_road.py`` checks each at up to 90 %
removed; CG's default ``tol = 1e-9`` measures ~2e-9 at 32 px and ~2e-8 at 224 px).

Ordering and percentages. MoRF visits pixels by descending saliency, LeRF by ascending
saliency; both break ties by the lower flat index ``y*W + x`` first (stable sorts), the
rule of :func:`lico_bench.metrics.causal.pixel_order`. (The reference adds a fixed 1e-4
random jitter to the map instead.) At percentage p the first ``int(p * H * W)`` pixels of
the order are removed (the reference's count). Note: the reference's LeRF
(``remove=False``) removes ``salient_order[int(HW*p):]``, i.e. the ``(1 - p)`` least
relevant pixels at "p"; here, as METRICS.md defines it, LeRF at p removes the ``p`` least
relevant, so both curves share the x axis "fraction removed".

Score and AUC: the explained class's softmax probability (``score="softmax"``), logit, or
``"accuracy"`` (1 if the model still predicts the explained class, the paper's plots) at
each p; the AUC per image is the trapezoid over p with p on the x axis,
``sum_k (p_{k+1} - p_k) (s_k + s_{k+1}) / 2`` (not rescaled: with the default
percentages 0.1 .. 0.9 it lies in [0, 0.8]). MoRF: lower is better; LeRF: higher is better;
LeRF - MoRF: higher is better.

Noise and randomness. The noise comes from a CPU ``torch.Generator`` seeded with ``seed``:
one field ``[2 orders, n percentages, C, H, W]`` per call, shared by every image of the
call. So an image's value depends only on (image, map, target, seed), never on its batch
mates, the batch size or the device's random stream; MoRF alone, LeRF alone and both
together see the same noise. (The reference draws fresh noise per image from the global
generator.)

Precision: the imputation runs in float64 with autocast off (:func:`float32_ops`); the
imputed images are cast back to the images' dtype; only the model's forwards follow an
ambient bf16 autocast. Curves are float32, AUCs summed in float64.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from ..precision import float32_ops
from .causal import (DEFAULT_BATCH_SIZE, _check_inputs, _check_targets, check_eval,
                     class_scores, model_device)

# The paper's no-retraining percentages (Rong et al. 2022; METRICS.md).
DEFAULT_PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
ORDERS = ("morf", "lerf")
ROAD_SCORES = ("softmax", "logit", "accuracy")
SOLVERS = ("auto", "cg", "direct")
DEFAULT_NOISE = 0.01
DEFAULT_TOL = 1e-9
CHECK_EVERY = 8  # CG iterations between convergence checks (each check is one host sync)

# Neighbour weights of the noisy linear imputation (reference ``neighbors_weights``):
# 1/6 for the 4 edge neighbours, 1/12 for the 4 diagonal ones; they sum to 1.
_W_EDGE, _W_DIAG = 1.0 / 6.0, 1.0 / 12.0


def neighbour_kernel(dtype: torch.dtype = torch.float64,
                     device: Optional[torch.device] = None) -> torch.Tensor:
    """The 3x3 neighbour-weight stencil: [1, 1, 3, 3], centre 0, edges 1/6, corners 1/12."""
    k = torch.tensor([[_W_DIAG, _W_EDGE, _W_DIAG],
                      [_W_EDGE, 0.0, _W_EDGE],
                      [_W_DIAG, _W_EDGE, _W_DIAG]], dtype=dtype, device=device)
    return k.view(1, 1, 3, 3)


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """``sum_o w_o x[i + o]`` over the 8 neighbours, zero outside the image (a neighbour
    outside is dropped). x: [N, C, H, W] -> [N, C, H, W], same dtype.

    Eight shifted views of a zero-padded copy rather than a convolution: on a CPU a float64
    convolution has no fast kernel (measured 1.5x slower at 32 px), and the sums are exact
    the same way on every device."""
    p = F.pad(x, (1, 1, 1, 1))
    edge = p[..., 1:-1, :-2] + p[..., 1:-1, 2:] + p[..., :-2, 1:-1] + p[..., 2:, 1:-1]
    diag = p[..., :-2, :-2] + p[..., :-2, 2:] + p[..., 2:, :-2] + p[..., 2:, 2:]
    return edge.mul_(_W_EDGE).add_(diag, alpha=_W_DIAG)


def resolve_solver(solver: str, device: torch.device) -> str:
    """"auto" -> "direct" on a CPU, "cg" elsewhere; "cg" and "direct" stay."""
    if solver not in SOLVERS:
        raise UserError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}.")
    if solver == "auto":
        return "direct" if torch.device(device).type == "cpu" else "cg"
    return solver


def linear_impute(images: torch.Tensor, removed: torch.Tensor, *, solver: str = "auto",
                  tol: float = DEFAULT_TOL, max_iter: Optional[int] = None) -> torch.Tensor:
    """Linear imputation without noise: solve the ROAD system of each image jointly.

    images: [N, C, H, W] float (any device); removed: [N, H, W] bool, True = pixel removed
    (all channels). returns: [N, C, H, W] float64 on the images' device; known pixels are
    the input's, removed ones the solution of ``(D - W_UU) x = W_UK v`` (module docstring).
    solver: "auto", "cg" or "direct" (module docstring); tol, max_iter: of "cg" only.
    """
    if images.ndim != 4 or removed.shape != (images.shape[0],) + tuple(images.shape[2:]):
        raise UserError(f"images must be [N, C, H, W] and removed [N, H, W], got "
                        f"{list(images.shape)} and {list(removed.shape)}.")
    if resolve_solver(solver, images.device) == "direct":
        return _direct_impute(images, removed)
    return _cg_impute(images, removed, tol=tol, max_iter=max_iter)


def _direct_impute(images: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Sparse direct solve (scipy SuperLU) of each image's system, assembled without a
    per-pixel loop. images [N, C, H, W], removed [N, H, W] -> [N, C, H, W] float64 on the
    images' device. All pixels removed: 0 (the minimum-norm solution; scipy would give NaN)."""
    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.linalg as spl

    n, c, h, w = images.shape
    hw = h * w
    v_all = images.detach().to("cpu", torch.float64).reshape(n, c, hw).numpy()
    rem_all = removed.detach().to("cpu").reshape(n, hw).numpy().astype(bool)
    out = v_all.copy()
    offsets = [((dy, dx), _W_DIAG if dy and dx else _W_EDGE)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    for k in range(n):
        rem, v = rem_all[k], v_all[k]
        pix = np.flatnonzero(rem)                       # removed pixels, variable i = pix[i]
        m = pix.size
        if m == 0:
            continue
        if m == hw:                                     # singular, zero right-hand side
            out[k] = 0.0
            continue
        var = np.full(hw, -1, dtype=np.int64)
        var[pix] = np.arange(m)
        ys, xs = np.divmod(pix, w)
        diag = np.zeros(m)
        rhs = np.zeros((m, c))
        rows, cols, vals = [], [], []
        ids = np.arange(m)
        for (dy, dx), wt in offsets:
            yy, xx = ys + dy, xs + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)   # outside: dropped
            q = (yy * w + xx)[inside]
            i_in = ids[inside]
            diag[i_in] += wt                            # d_i: weights of in-image neighbours
            unk = rem[q]
            rows.append(i_in[unk])
            cols.append(var[q[unk]])
            vals.append(np.full(int(unk.sum()), -wt))
            # each (pixel, offset) pair occurs once, so plain fancy-index += is safe
            rhs[i_in[~unk]] += wt * v[:, q[~unk]].T
        rows.append(ids)
        cols.append(ids)
        vals.append(diag)
        a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(m, m))
        out[k][:, pix] = np.asarray(spl.spsolve(a, rhs)).reshape(m, c).T
    return torch.from_numpy(out).view(n, c, h, w).to(images.device)


def _cg_impute(images: torch.Tensor, removed: torch.Tensor, *, tol: float = DEFAULT_TOL,
               max_iter: Optional[int] = None) -> torch.Tensor:
    """The batched preconditioned conjugate-gradient solve (module docstring).

    tol: stop a system when ``||r|| <= tol * ||b||`` (each (image, channel) pair is one
    system); max_iter: CG iteration cap (None: ``4 * H * W + 100``, far above what the
    stencil needs); reaching it raises RuntimeError rather than return an unconverged image.

    Converged systems leave the batch at each check (every :data:`CHECK_EVERY` iterations),
    so the easy ones (few pixels removed) do not pay for the hardest.
    """
    n, c, h, w = images.shape
    dev = images.device
    if max_iter is None:
        max_iter = 4 * h * w + 100
    with float32_ops(dev):  # the solve is not a forward: never bf16
        v = images.to(torch.float64)
        # One system per (image, channel): [S, 1, H, W], S = N*C; the matrix (the mask u)
        # is the same for the channels of an image.
        u = removed.to(device=dev, dtype=torch.float64)[:, None].expand(n, c, h, w)
        u = u.reshape(n * c, 1, h, w)
        deg = _neighbour_sum(torch.ones(1, 1, h, w, dtype=torch.float64, device=dev))
        # Jacobi preconditioner 1/d_i on U (d_i > 0 unless the image is a single pixel).
        inv_deg = torch.where(deg > 0, 1.0 / deg.clamp_min(1e-300), torch.zeros_like(deg))
        b = u * _neighbour_sum((1.0 - u) * v.reshape(n * c, 1, h, w))          # W_UK v
        x_out = torch.zeros_like(b)
        live = torch.arange(n * c, device=dev)         # systems still iterating
        x = torch.zeros_like(b)
        r = b.clone()
        z = inv_deg * r
        p = z.clone()
        rz = (r * z).sum(dim=(1, 2, 3))                                        # [S]
        stop = (tol * b.flatten(1).norm(dim=1)) ** 2                           # on ||r||^2
        it = 0
        while True:
            if it % CHECK_EVERY == 0:
                rr = (r * r).sum(dim=(1, 2, 3))
                done = rr <= stop
                n_done = int(done.sum())  # one host sync per CHECK_EVERY iterations
                if n_done:
                    x_out[live[done]] = x[done]
                    if n_done == live.numel():
                        break
                    keep = ~done
                    live, x, r, p, z, rz, u, stop = (t[keep] for t in (live, x, r, p, z, rz, u, stop))
                    rr = rr[keep]
                if it >= max_iter:
                    worst = float((rr / stop.clamp_min(1e-300)).max().sqrt()) * tol
                    raise RuntimeError(f"ROAD imputation: conjugate gradient did not reach "
                                       f"tol={tol} in {max_iter} iterations (relative "
                                       f"residual {worst:.2e}).")
            # A x for x zero on K: the neighbour sum then only sees unknowns (W_UU x).
            ap = u * (deg * p - _neighbour_sum(p))
            pap = (p * ap).sum(dim=(1, 2, 3))
            # A converged system (r = 0) has p.Ap = 0: step 0 instead of 0/0.
            alpha = torch.where(pap > 0, rz / pap.clamp_min(1e-300), torch.zeros_like(pap))
            alpha = alpha[:, None, None, None]
            x.addcmul_(alpha, p)
            r.addcmul_(alpha, ap, value=-1.0)
            torch.mul(inv_deg, r, out=z)
            rz_new = (r * z).sum(dim=(1, 2, 3))
            beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
            p = torch.addcmul(z, beta[:, None, None, None], p)
            rz = rz_new
            it += 1
        x_out = x_out.view(n, c, h, w)
        return torch.where(removed.to(dev)[:, None], x_out, v)


def noisy_linear_impute(images: torch.Tensor, removed: torch.Tensor, noise: float = DEFAULT_NOISE,
                        noise_field: Optional[torch.Tensor] = None,
                        generator: Optional[torch.Generator] = None, *, solver: str = "auto",
                        tol: float = DEFAULT_TOL, max_iter: Optional[int] = None) -> torch.Tensor:
    """Noisy linear imputation (Rong et al. 2022): :func:`linear_impute` + ``noise * N(0, 1)``
    on the removed pixels.

    images: [N, C, H, W] float; removed: [N, H, W] bool; noise: the noise's std (0 = none).
    noise_field: [N, C, H, W] standard normal draws to use (e.g. shared across images), or
    None to draw them with ``generator`` (a CPU ``torch.Generator``; None = torch's global).
    returns: [N, C, H, W] in the images' dtype, on their device.
    """
    x = linear_impute(images, removed, solver=solver, tol=tol, max_iter=max_iter)
    if noise:
        if noise_field is None:
            noise_field = torch.randn(images.shape, generator=generator, dtype=torch.float64)
        eps = noise_field.to(device=x.device, dtype=torch.float64)
        x = x + noise * removed.to(x.device)[:, None] * eps
    return x.to(images.dtype)


def removal_masks(maps: torch.Tensor, percentages: Sequence[float], order: str) -> torch.Tensor:
    """Which pixels are removed at each percentage: [n, B, H, W] bool.

    maps: [B, H, W] float. order: "morf" (descending saliency) or "lerf" (ascending); ties:
    lower flat index first. At percentage p the first ``int(p * H * W)`` pixels of the order
    are removed.
    """
    if order not in ORDERS:
        raise UserError(f"order must be one of {', '.join(ORDERS)}, got {order!r}.")
    b, h, w = maps.shape
    hw = h * w
    idx = torch.sort(maps.flatten(1), dim=1, descending=(order == "morf"), stable=True).indices
    rank = torch.empty_like(idx).scatter_(1, idx, torch.arange(hw, device=maps.device).expand_as(idx))
    counts = torch.tensor([int(p * hw) for p in percentages], device=maps.device)   # reference count
    return (rank[None] < counts[:, None, None]).view(len(percentages), b, h, w)


def trapezoid_auc(curves: torch.Tensor, percentages: Sequence[float]) -> torch.Tensor:
    """Area under curves sampled at ``percentages`` (trapezoid rule, p on the x axis).

    curves: [B, n] float, n = len(percentages) >= 2 -> [B] float32 (summed in float64).
    """
    if curves.ndim != 2 or curves.shape[1] != len(percentages) or len(percentages) < 2:
        raise UserError(f"curves must be [B, n] with n = {len(percentages)} >= 2 points, got "
                        f"{list(curves.shape)}.")
    c = curves.double()
    dp = torch.tensor([b - a for a, b in zip(percentages[:-1], percentages[1:])],
                      dtype=torch.float64, device=c.device)
    return (((c[:, 1:] + c[:, :-1]) / 2) * dp).sum(1).float()


def check_percentages(percentages: Sequence[float]) -> None:
    """At least 2 percentages, strictly increasing, in [0, 1]; else UserError."""
    ps = list(percentages)
    if len(ps) < 2:
        raise UserError(f"ROAD needs at least 2 percentages for an AUC, got {ps}.")
    if any(not (0.0 <= p <= 1.0) for p in ps):
        raise UserError(f"ROAD percentages must lie in [0, 1] (fractions of the pixels), got {ps}.")
    if any(b <= a for a, b in zip(ps[:-1], ps[1:])):
        raise UserError(f"ROAD percentages must be strictly increasing, got {ps}.")


def road_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                targets: Optional[torch.Tensor] = None, *, orders: Sequence[str] = ORDERS,
                percentages: Sequence[float] = DEFAULT_PERCENTAGES, noise: float = DEFAULT_NOISE,
                seed: int = 0, score: str = "softmax", batch_size: int = DEFAULT_BATCH_SIZE,
                solver: str = "auto", tol: float = DEFAULT_TOL,
                max_iter: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """ROAD curves (Rong et al. 2022) of a batch: the score after noisy linear imputation of
    the first ``int(p*H*W)`` pixels of each order, at each percentage p.

    images: [B, C, H, W] float32 normalised, any device (moved to the model's device)
    maps: [B, H, W] float at input resolution; NaN is refused
    targets: [B] int64 explained classes, or None = the class predicted on the clean image
    orders: any of "morf", "lerf"; percentages: strictly increasing fractions in [0, 1]
    noise: std of the imputation noise, in normalised space; seed: of the noise generator
    score: "softmax" (probability), "logit" or "accuracy" (1.0 if the explained class is
    still predicted, else 0.0)
    batch_size: imputed images per solve chunk and per forward (bounds memory)
    solver: "auto" (direct on a CPU model, CG elsewhere), "cg" or "direct";
    tol, max_iter: of the CG solve (:func:`linear_impute`)
    returns: {order: [B, n] float32 on the model's device}, n = len(percentages)

    The model must be in eval mode (checked, never switched); inputs are not modified.
    """
    orders = list(dict.fromkeys(orders))
    for o in orders:
        if o not in ORDERS:
            raise UserError(f"unknown ROAD order {o!r}; use 'morf' or 'lerf'.")
    if score not in ROAD_SCORES:
        raise UserError(f"score must be one of {', '.join(ROAD_SCORES)}, got {score!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}.")
    check_percentages(percentages)
    resolve_solver(solver, images.device)  # a bad name fails before any work
    maps = _check_inputs(images, maps)
    check_eval(model)
    B, C, H, W = images.shape
    n = len(percentages)
    dev = model_device(model, images.device)
    targets = _check_targets(targets, B, dev)
    if B == 0:
        return {o: torch.zeros(0, n, device=dev) for o in orders}
    x = images.to(dev)
    mp = maps.to(dev)
    if not mp.is_floating_point():
        mp = mp.float()
    if torch.isnan(mp).any():
        raise UserError("maps contain NaN; fix the explainer output before scoring it.")

    # One noise field per (order, percentage), shared by every image (module docstring);
    # both orders are always drawn so that each order's noise does not depend on the other.
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    field = torch.randn(len(ORDERS), n, C, H, W, generator=gen, dtype=torch.float64)

    with torch.no_grad():
        if targets is None:
            targets = torch.cat([model(x[i:i + batch_size]).argmax(1)
                                 for i in range(0, B, batch_size)])
        # Items (order, percentage, image), percentage-major so a solve chunk holds
        # systems of similar size (CG runs until the chunk's slowest system converges).
        removed = torch.cat([removal_masks(mp, percentages, o) for o in orders])  # [O*n, B, H, W]
        removed = removed.reshape(-1, H, W)
        n_items = removed.shape[0]
        item = torch.arange(n_items, device=dev)
        it_b = item % B
        it_op = item // B                                  # index into (order, percentage)
        it_field = torch.tensor([ORDERS.index(o) * n + k for o in orders for k in range(n)],
                                device=dev)[it_op]
        field = field.view(len(ORDERS) * n, C, H, W).to(dev)
        scores = torch.empty(n_items, dtype=torch.float32, device=dev)
        chunk = -(-n_items // -(-n_items // batch_size))   # equal chunks of <= batch_size
        for i0 in range(0, n_items, chunk):
            sl = slice(i0, min(i0 + chunk, n_items))
            b = it_b[sl]
            imputed = noisy_linear_impute(x[b], removed[sl], noise, field[it_field[sl]],
                                          solver=solver, tol=tol, max_iter=max_iter)
            logits = model(imputed)
            if score == "accuracy":
                scores[sl] = (logits.float().argmax(1) == targets[b]).float()
            else:
                scores[sl] = class_scores(logits, targets[b], score)
        scores = scores.view(len(orders), n, B)
        return {o: scores[i].t().contiguous() for i, o in enumerate(orders)}
