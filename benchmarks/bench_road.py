"""Speed of ROAD's noisy linear imputation and of the ROAD metric, from one run.

Imputation (no noise; the same removed pixels for every solver, from blob-shaped maps like
Grad-CAM's, MoRF and LeRF at the paper's 7 percentages, so 14 systems per image):

- ours, both solvers of :func:`lico_bench.metrics.road.linear_impute`: "cg" (every system
  of the batch at once, Jacobi-preconditioned CG in float64 on the device) and "direct"
  (each system assembled by vectorised index arithmetic, scipy SuperLU); "auto", what the
  metric uses, is "direct" on a CPU and "cg" on a GPU;
- per-pixel loop: the system built pixel by pixel in Python (scipy ``lil_matrix``) and
  solved with scipy's sparse direct solver, one image at a time (goal: ours >= 10x faster);
- Quantus 0.6.0 ``noisy_linear_imputation`` (the reference code's vectorised set-up + scipy
  ``spsolve``, one image at a time);
- dense: the full H*W system (identity rows for known pixels) solved with batched
  ``torch.linalg.solve``, 32 px only (an (HW)^2 matrix per image: 20 GB at 224 px).

Every solver's largest difference from the per-pixel loop (scipy) is printed.

The metric: ``road_morf`` with ``score="accuracy"`` against Quantus 0.6.0 ``ROAD`` at the
same 7 percentages (MoRF accuracy, its only output), same model and maps (goal: ours >= 2x).
Quantus's ROAD only runs on single-channel images (it indexes an [H*W] mask with indices
into the flattened [C, H, W] map: IndexError for C = 3), so this comparison uses grey
images and a ResNet-18 whose first step repeats the channel three times.

    .venv/bin/python benchmarks/bench_road.py [--device cuda] [--n32 16] [--n224 2]
        [--n-metric 32] [--threads 1]

Defaults keep a CPU run to a few minutes on 2 cores (one intra-op thread unless --threads
says otherwise, as in bench_metrics.py).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch
import torch.nn as nn
import torch.nn.functional as F

from lico_bench.metrics import create_metric, linear_impute, removal_masks
from lico_bench.metrics.road import DEFAULT_PERCENTAGES, ORDERS, neighbour_kernel
from lico_bench.models import create_model

from bench_metrics import sync, timed  # the shared timing helpers (this folder is on sys.path)

NEIGHBOURS = [((dy, dx), (1 / 12 if dy and dx else 1 / 6))
              for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]




def per_pixel_loop(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The plain implementation: a Python loop over removed pixels and their neighbours
    builds the sparse system, scipy solves it. img [C, H, W] float64, removed [H, W] bool."""
    c, h, w = img.shape
    unknown = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    var = {yx: i for i, yx in enumerate(unknown)}
    a = sp.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), c))
    for i, (y, x) in enumerate(unknown):
        for (dy, dx), wt in NEIGHBOURS:
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w:
                a[i, i] += wt
                if removed[yy, xx]:
                    a[i, var[(yy, xx)]] -= wt
                else:
                    b[i] += wt * img[:, yy, xx]
    out = img.copy()
    sol = spl.spsolve(sp.csc_matrix(a), b).reshape(len(unknown), c)
    ys, xs = zip(*unknown)
    out[:, list(ys), list(xs)] = sol.T
    return out


def dense_solve(img: torch.Tensor, removed: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """The full H*W system per image, dense, batched torch.linalg.solve (float64)."""
    n, c, h, w = img.shape
    hw = h * w
    dev = img.device
    # Neighbour weight matrix of the pixel grid: Wm[i, j] = w(offset j - i), zero outside.
    eye = torch.eye(hw, dtype=torch.float64, device=dev).view(hw, 1, h, w)
    wm = F.conv2d(eye, neighbour_kernel(torch.float64, dev), padding=1).view(hw, hw)
    deg = wm.sum(1)
    out = []
    for i in range(0, n, chunk):
        u = removed[i:i + chunk].reshape(-1, hw).to(torch.float64)           # [k, HW]
        v = img[i:i + chunk].reshape(-1, c, hw).to(torch.float64)
        # rows of removed pixels: d_i x_i - sum_j w_ij x_j = 0; rows of known: x_i = v_i
        a = u[:, :, None] * (torch.diag(deg) - wm) + (1 - u)[:, :, None] * torch.eye(hw, dtype=torch.float64, device=dev)
        rhs = ((1 - u)[:, None] * v).transpose(1, 2)                          # [k, HW, C]
        out.append(torch.linalg.solve(a, rhs).transpose(1, 2).reshape(-1, c, h, w))
    return torch.cat(out)


def blob_maps(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, 1, max(2, size // 8), max(2, size // 8), generator=g)
    m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return m + 1e-4 * torch.rand(n, size, size, generator=g)


def bench_imputation(size, n_images, dev, dense, loop_images):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_images, 3, size, size, generator=g)
    maps = blob_maps(n_images, size, 1)
    removed = torch.cat([removal_masks(maps, DEFAULT_PERCENTAGES, o) for o in ORDERS])
    removed = removed.reshape(-1, size, size)                                # [14 n, H, W]
    xs = x.repeat(len(ORDERS) * len(DEFAULT_PERCENTAGES), 1, 1, 1)
    n_sys = xs.shape[0]
    xd, rd = xs.to(dev), removed.to(dev)
    for solver in ("cg", "direct"):
        linear_impute(xd[:2], rd[:2], solver=solver)                        # warm-up
    ours, t_ours = timed(lambda: linear_impute(xd, rd, solver="cg"), dev)
    ours = ours.cpu().numpy()
    direct, t_direct = timed(lambda: linear_impute(xd, rd, solver="direct"), dev)
    direct = direct.cpu().numpy()
    # The per-pixel loop on a subset (it is slow); its time is scaled per system.
    k = min(n_sys, loop_images)
    sub = np.linspace(0, n_sys - 1, k).round().astype(int)
    t0 = time.perf_counter()
    ref = {i: per_pixel_loop(xs[i].double().numpy(), removed[i].numpy()) for i in sub}
    t_loop = (time.perf_counter() - t0) / k * n_sys
    row = {"size": size, "images": n_images, "systems": n_sys, "t_ours": t_ours,
           "t_direct": t_direct, "t_loop": t_loop, "loop_measured": k,
           "t_auto": t_direct if dev.type == "cpu" else t_ours,
           "diff_ours": max(float(np.abs(ours[i] - ref[i]).max()) for i in sub),
           "diff_direct": max(float(np.abs(direct[i] - ref[i]).max()) for i in sub)}
    try:
        from quantus.functions.perturb_func import noisy_linear_imputation
    except ImportError:
        noisy_linear_imputation = None
    if noisy_linear_imputation is not None:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = {i: noisy_linear_imputation(xs[i].double().numpy(),
                                            np.flatnonzero(removed[i].numpy()), noise=0.0)
                 for i in range(n_sys)}
        row["t_quantus"] = time.perf_counter() - t0
        row["diff_quantus"] = max(float(np.abs(q[i] - ref[i]).max()) for i in sub)
    if dense:
        d, t_dense = timed(lambda: dense_solve(xd, rd), dev)
        row["t_dense"] = t_dense
        row["diff_dense"] = max(float(np.abs(d.cpu().numpy()[i] - ref[i]).max()) for i in sub)
    return row


class Grey(nn.Module):
    """A 1-channel input repeated to the 3 channels a ResNet-18 expects."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.expand(-1, 3, -1, -1))


def bench_metric(size, n_images, dev, bs):
    import quantus

    g = torch.Generator().manual_seed(0)
    model = Grey(create_model("baseline_r18", 10, image_size=size)).to(dev).eval()
    x = torch.randn(n_images, 1, size, size, generator=g).to(dev)
    maps = blob_maps(n_images, size, 2).to(dev)
    with torch.no_grad():
        y = torch.cat([model(x[i:i + bs]).argmax(1) for i in range(0, n_images, bs)])
    metric = create_metric("road_morf", score="accuracy", noise=0.0, batch_size=bs)
    metric(model, x[:2], maps[:2], y[:2])                                     # warm-up
    ours, t_ours = timed(lambda: metric(model, x, maps, y), dev)
    pct = [int(round(100 * p)) for p in DEFAULT_PERCENTAGES]
    q = quantus.ROAD(percentages=pct, noise=0.0, normalise=False, disable_warnings=True,
                     display_progressbar=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = q(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                a_batch=maps[:, None].cpu().numpy(), channel_first=True, device=str(dev),
                batch_size=bs)
    sync(dev)
    t_q = time.perf_counter() - t0
    # The bound on CPU: the same number of forwards (images x percentages) alone.
    xf = x.repeat(len(pct), 1, 1, 1)
    with torch.no_grad():
        _, t_fwd = timed(lambda: [model(xf[i:i + bs]) for i in range(0, len(xf), bs)], dev)
    acc_ours = ours.curves.mean(0).cpu().numpy()
    acc_q = np.array([got[p] for p in pct])
    return {"size": size, "images": n_images, "t_ours": t_ours, "t_quantus": t_q,
            "t_fwd": t_fwd, "ratio": t_q / t_ours, "max_acc_diff": float(np.abs(acc_ours - acc_q).max())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n32", type=int, default=16, help="images at 32 px (x14 systems)")
    ap.add_argument("--n224", type=int, default=2, help="images at 224 px (x14 systems)")
    ap.add_argument("--loop-images", type=int, default=28,
                    help="systems the per-pixel loop solves (its time is scaled to all)")
    ap.add_argument("--n-metric", type=int, default=32, help="images for the metric vs Quantus ROAD")
    ap.add_argument("--bs", type=int, default=128, help="metric batch size")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if args.threads is not None or dev.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()}")
    for size, n, loop in ((32, args.n32, args.loop_images), (224, args.n224, max(2, args.loop_images // 14))):
        if n <= 0:
            continue
        r = bench_imputation(size, n, dev, dense=(size <= 32), loop_images=loop)
        s = r["systems"]
        print(f"\nimputation, {size} px: {r['images']} images x 14 = {s} systems")
        auto = r["t_auto"]
        print(f"  ours, cg                 {r['t_ours']:8.2f} s  {1e3 * r['t_ours'] / s:8.2f} ms/system"
              f"  max|diff| {r['diff_ours']:.1e}")
        print(f"  ours, direct             {r['t_direct']:8.2f} s  {1e3 * r['t_direct'] / s:8.2f} ms/system"
              f"  max|diff| {r['diff_direct']:.1e}   (auto on {dev.type}: "
              f"{'direct' if dev.type == 'cpu' else 'cg'})")
        print(f"  per-pixel loop + scipy   {r['t_loop']:8.2f} s  {1e3 * r['t_loop'] / s:8.2f} ms/system"
              f"  (measured on {r['loop_measured']})  -> ours (auto) {r['t_loop'] / auto:.1f}x (goal >= 10)")
        if "t_quantus" in r:
            print(f"  Quantus imputation       {r['t_quantus']:8.2f} s  {1e3 * r['t_quantus'] / s:8.2f} ms/system"
                  f"  max|diff| {r['diff_quantus']:.1e}  -> ours (auto) {r['t_quantus'] / auto:.1f}x")
        if "t_dense" in r:
            print(f"  dense linalg.solve       {r['t_dense']:8.2f} s  {1e3 * r['t_dense'] / s:8.2f} ms/system"
                  f"  max|diff| {r['diff_dense']:.1e}  -> ours (auto) {r['t_dense'] / auto:.1f}x")
    if args.n_metric > 0:
        try:
            m = bench_metric(32, args.n_metric, dev, args.bs)
        except ImportError:
            print("\nquantus not installed: metric comparison skipped")
        else:
            print(f"\nmetric road_morf (accuracy, 7 percentages) vs Quantus ROAD, 32 px grey, "
                  f"{m['images']} images: ours {m['t_ours']:.2f} s, Quantus {m['t_quantus']:.2f} s "
                  f"-> {m['ratio']:.2f}x (goal >= 2); max |mean accuracy diff| {m['max_acc_diff']:.3f}")
            print(f"  the forwards alone ({m['images']} x 7 images, batch {args.bs}): {m['t_fwd']:.2f} s "
                  f"-> bound on the ratio {m['t_quantus'] / m['t_fwd']:.2f}x")
    print("\nreproduce: .venv/bin/python benchmarks/bench_road.py " + " ".join(
        sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
