"""Throughput of the causal metrics (insertion + deletion), from one run.

For each image size it prints:

- explained images/s for insertion + deletion together (``causal_curves``),
- forwarded images/s as a fraction of the raw forward throughput of the same model at the
  same batch size (goal >= 0.9: building perturbed images must cost little),
- the speed ratio against Quantus 0.6.0 ``PixelFlipping`` doing equal work (goal >= 2):
  deletion curves with the same step, zero baseline and order. Quantus counts
  ``features_in_step`` in elements of the flattened [C, H, W] array, so it gets
  ``3 * step``; its preprocess asserts ``H*W % features_in_step == 0``, which 3*step never
  meets at 32 or 224 px, so that assert (only) is switched off on the instance.

Models: ResNet-18 with random weights, CIFAR stem at 32 px, ImageNet stem at 224 px; maps
are seeded random. Defaults keep a run to ~3-4 minutes on 2 CPU cores. On CPU the run uses
one intra-op thread unless --threads says otherwise: on a shared 2-core box two OpenMP
threads thrash as soon as another process runs (forwards measured 5x slower).

On CPU the forward time hardly depends on the batch size, and both sides do the same
forwards, so the ratio against Quantus stays near 1-2x there; "raw at Quantus's batch" is
printed to show that bound. The batching and the absence of host round trips pay on a GPU.

    .venv/bin/python benchmarks/bench_metrics.py [--device cuda] [--n32 32] [--n224 4]
        [--precision bf16] [--channels-last]

``--precision bf16`` runs our forwards (and the raw-throughput forwards) under
``torch.autocast(device, dtype=torch.bfloat16)``, as the runner's bf16 mode does, and also
prints the largest AUC difference from the float32 curves of the same images and maps.
Quantus always runs in float32 (numpy has no bfloat16). ``--channels-last``: model and
images in channels-last memory format.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings

import numpy as np
import torch

from lico_bench.metrics import (auc, causal_curves, default_step, deletion_curve, num_steps,
                                predict)
from lico_bench.models import create_model


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev):
    sync(dev)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    return out, time.perf_counter() - t


def precision_ctx(dev, precision):
    """The runner's bf16 mode: autocast around the calls; fp32: nothing."""
    if precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def raw_throughput(model, size, bs, dev, min_time, precision="fp32", memory_format=None):
    """Images/s of plain forwards of `bs` random images (no_grad), after one warm-up."""
    x = torch.randn(bs, 3, size, size, device=dev)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    with torch.no_grad(), precision_ctx(dev, precision):
        model(x)
        sync(dev)
        n, t0 = 0, time.perf_counter()
        while True:
            model(x)
            n += 1
            sync(dev)
            if time.perf_counter() - t0 >= min_time:
                break
    return n * bs / (time.perf_counter() - t0)


def quantus_deletion(model, x, maps, targets, step, dev):
    """Quantus PixelFlipping configured as our deletion: curves [B, n] (no clean point)."""
    import quantus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = quantus.PixelFlipping(features_in_step=3 * step, perturb_baseline=0.0,
                                   normalise=False, disable_warnings=True,
                                   display_progressbar=False)
        pf.custom_preprocess = lambda **kw: None   # skip its H*W % features_in_step assert
        out = pf(model=model, x_batch=x.cpu().numpy(), y_batch=targets.cpu().numpy(),
                 a_batch=maps[:, None].cpu().numpy(), channel_first=True, softmax=True,
                 device=str(dev), batch_size=len(x))
    return np.asarray(out)


def bench(size, n_images, bs, dev, quantus_too, min_raw, precision="fp32", channels_last=False):
    g = torch.Generator().manual_seed(0)
    model = create_model("baseline_r18", 10, image_size=size).to(dev).eval()
    x = torch.randn(n_images, 3, size, size, generator=g).to(dev)
    maps = torch.rand(n_images, size, size, generator=g).to(dev)
    fmt = torch.channels_last if channels_last else None
    if fmt is not None:
        model, x = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    step = default_step(size, size)
    n = num_steps(size, size, step)
    targets = predict(model, x, bs)  # float32: the same targets in both precisions
    with precision_ctx(dev, precision):
        deletion_curve(model, x[:1], maps[:1], step=step, batch_size=bs)  # warm-up

    with precision_ctx(dev, precision):
        curves, t_both = timed(lambda: causal_curves(model, x, maps, targets, step=step,
                                                     batch_size=bs), dev)
    fwd_both = n_images + 1 + n_images * (n - 1) + n_images * n   # see causal_curves
    raw = raw_throughput(model, size, bs, dev, min_raw, precision, fmt)
    row = {"size": size, "images": n_images, "points": n + 1, "step": step, "batch": bs,
           "t_ins_del": t_both, "img_s": n_images / t_both, "fwd_s": fwd_both / t_both,
           "raw_s": raw, "frac": fwd_both / t_both / raw}
    if precision == "bf16":  # accuracy of the bf16 curves against float32 (untimed)
        ref = causal_curves(model, x, maps, targets, step=step, batch_size=bs)
        row["bf16_auc_diff"] = max(float((auc(curves[m]) - auc(ref[m])).abs().max())
                                   for m in ref)
    if quantus_too:
        row["raw_q"] = raw_throughput(model, size, n_images, dev, min_raw, precision, fmt)
        with precision_ctx(dev, precision):
            ours, t_del = timed(lambda: deletion_curve(model, x, maps, targets, step=step,
                                                       batch_size=bs), dev)
        q, t_q = timed(lambda: quantus_deletion(model, x, maps, targets, step, dev), dev)
        diff = float(np.abs(q - ours[:, 1:].cpu().numpy()).max())
        row.update(t_del=t_del, t_quantus=t_q, ratio=t_q / t_del, max_diff=diff)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n32", type=int, default=32, help="images at 32 px")
    ap.add_argument("--n224", type=int, default=4, help="images at 224 px")
    ap.add_argument("--bs32", type=int, default=128, help="perturbed images per forward, 32 px")
    ap.add_argument("--bs224", type=int, default=32, help="perturbed images per forward, 224 px")
    ap.add_argument("--min-raw", type=float, default=3.0, help="seconds of raw forwards per size")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: 1 on CPU, torch's default on CUDA)")
    ap.add_argument("--no-quantus", action="store_true")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: our forwards under bf16 autocast (Quantus stays float32)")
    ap.add_argument("--channels-last", action="store_true",
                    help="model and images in channels-last memory format")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if args.threads is not None or dev.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    torch.manual_seed(0)
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"precision={args.precision} channels_last={args.channels_last}")
    rows = []
    for size, n_img, bs in ((32, args.n32, args.bs32), (224, args.n224, args.bs224)):
        if n_img > 0:
            rows.append(bench(size, n_img, bs, dev, not args.no_quantus, args.min_raw,
                              args.precision, args.channels_last))
            r = rows[-1]
            print(f"\n{size} px: {r['images']} images, {r['points']} points (step {r['step']}), "
                  f"batch {r['batch']}")
            print(f"  insertion+deletion: {r['t_ins_del']:.2f} s = {r['img_s']:.2f} images/s, "
                  f"{r['fwd_s']:.1f} forwarded images/s")
            print(f"  raw forward: {r['raw_s']:.1f} images/s -> fraction {r['frac']:.2f} "
                  f"(goal >= 0.9)")
            if "bf16_auc_diff" in r:
                print(f"  bf16 vs float32: max |AUC diff| {r['bf16_auc_diff']:.1e}")
            if "ratio" in r:
                print(f"  deletion only: ours {r['t_del']:.2f} s, Quantus PixelFlipping "
                      f"{r['t_quantus']:.2f} s -> {r['ratio']:.2f}x (goal >= 2); "
                      f"max |curve diff| {r['max_diff']:.1e}")
                print(f"  raw forward at Quantus's batch ({r['images']}): {r['raw_q']:.1f} "
                      f"images/s (batching bound {r['raw_s'] / r['raw_q']:.2f}x)")
    print("\nreproduce: .venv/bin/python benchmarks/bench_metrics.py " + " ".join(
        sys.argv[1:] if argv is None else argv))
    return rows


if __name__ == "__main__":
    main()
