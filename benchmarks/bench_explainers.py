"""Benchmark the explainers against pytorch-grad-cam, on one model and one set of images.

    python benchmarks/bench_explainers.py                  # resnet18, 32 px, CPU, ~3 min on 2 cores
    python benchmarks/bench_explainers.py --size 224 --device cuda

What it does: builds ResNet-18 (random weights, seed 0, eval mode) and the first ``--images``
images of the ``shapes`` test split; the targets are the predicted classes, the same for
every method. Each method then runs in its own subprocess (a fresh process per method, so
its peak memory is its own) and reports:

* images/s: images explained per second of wall time (after a one-image warm-up).
* model img/s and "of raw": images pushed through the model per second (counted by a
  forward pre-hook on the model) and that rate as a fraction of the model's raw no-grad
  forward throughput at batch 64, the batch size of Score-CAM's and RISE's masked-image
  passes and of the CAM batch. 1.0 = no overhead beyond the forward passes; Grad-CAM also
  pays a backward pass, so it is below 1.
* peak MB: CPU: increase of the process's peak resident set size (``resource.getrusage``
  ``ru_maxrss``) over its resident size just before the call (tracemalloc does not see
  torch's allocations). It undercounts when an earlier peak of the same process (imports,
  warm-up) was higher, hence the one-image warm-up. CUDA: ``torch.cuda.max_memory_allocated``
  minus the memory allocated before the call.

Score-CAM and RISE cost hundreds of forward passes per image (Score-CAM: one per channel of
the CAM layer, 512 for ResNet-18; RISE: N), so they run on the first ``--slow-images``
images only; the others run on all ``--images``. Comparisons with pytorch-grad-cam are made
at equal maps: ``scorecam[grad-cam]`` is our Score-CAM with pytorch-grad-cam's weighting and
mask upsampling (variant="grad-cam", mask_align_corners=True); the benchmark prints the
largest difference between pytorch-grad-cam's map and ours normalised the same way.
Run time figures depend on the load of the machine; compare ratios from one run.

``--precision bf16`` runs our methods and the raw forwards under
``torch.autocast(device, dtype=torch.bfloat16)``, as the runner's bf16 mode does;
pytorch-grad-cam stays float32 (it converts to numpy, which has no bfloat16), so the
"max|map diff|" column then shows the bf16 difference. ``--channels-last``: model and
images in channels-last memory format.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (implementation, method, options, slow)
METHODS = {
    "gradcam": ("ours", "gradcam", {}, False),
    "pg:GradCAM": ("pg", "GradCAM", {}, False),
    "gradcampp": ("ours", "gradcampp", {}, False),
    "pg:GradCAMPlusPlus": ("pg", "GradCAMPlusPlus", {}, False),
    "scorecam": ("ours", "scorecam", {"batch_size": 64}, True),
    "scorecam[grad-cam]": ("ours", "scorecam", {"batch_size": 64, "variant": "grad-cam",
                                                "mask_align_corners": True}, True),
    "pg:ScoreCAM": ("pg", "ScoreCAM", {"batch_size": 64}, True),
    "rise": ("ours", "rise", {"batch_size": 64}, True),
}
# (ours, pytorch-grad-cam) pairs compared at equal maps
PAIRS = [("gradcam", "pg:GradCAM"), ("gradcampp", "pg:GradCAMPlusPlus"),
         ("scorecam[grad-cam]", "pg:ScoreCAM")]
RAW_BATCH = 64


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def build_model(size: int, device: str):
    import torch

    from lico_bench.models import create_model

    torch.manual_seed(0)
    return create_model("baseline_r18", 10, image_size=size).eval().to(device)


def sync(device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def precision_ctx(device: str, precision: str):
    """The runner's bf16 mode: autocast around the call; fp32: nothing."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_method(key: str, model, images, targets, precision: str = "fp32"):
    """maps [B, H, W] float32 on the images' device."""
    import torch

    impl, method, options, _ = METHODS[key]
    if impl == "ours":
        from lico_bench.explainers import create_explainer

        with precision_ctx(str(images.device), precision):
            return create_explainer(method, **options)(model, images, targets)
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pytorch_grad_cam, method)(model=model, target_layers=[model.features.layer4])
    for k, v in options.items():
        setattr(cam, k, v)
    try:
        out = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    return torch.from_numpy(out).to(images.device)


def worker(key: str, workdir: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    setup = torch.load(workdir / "setup.pt")
    device, size, precision = setup["device"], setup["size"], setup["precision"]
    model = build_model(size, device)
    fmt = torch.channels_last if setup["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=fmt)
    n = setup["slow_images"] if key != "raw" and METHODS[key][3] else setup["images"].shape[0]
    images = setup["images"][:n].to(device).contiguous(memory_format=fmt)
    targets = setup["targets"][:n].to(device)
    if key == "raw":  # no-grad forward throughput at batch RAW_BATCH
        x = setup["images"][:1].to(device).expand(RAW_BATCH, -1, -1, -1).contiguous(
            memory_format=fmt)
        with torch.no_grad(), precision_ctx(device, precision):
            model(x)
            sync(device)
            t0, done = time.perf_counter(), 0
            while done < 3 * RAW_BATCH or time.perf_counter() - t0 < 3.0:
                model(x)
                done += RAW_BATCH
            sync(device)
        return {"raw_img_per_s": done / (time.perf_counter() - t0)}
    if METHODS[key][3]:  # warm-up: one forward of a single image
        with torch.no_grad(), precision_ctx(device, precision):
            model(images[:1])
    else:
        run_method(key, model, images[:1], targets[:1], precision)
    sync(device)
    counted = [0]
    handle = model.register_forward_pre_hook(lambda m, inp: counted.__setitem__(0, counted[0] + inp[0].shape[0]))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        mem0 = torch.cuda.memory_allocated()
    else:
        mem0 = rss_bytes()
    try:
        t0 = time.perf_counter()
        maps = run_method(key, model, images, targets, precision)
        sync(device)
        elapsed = time.perf_counter() - t0
    finally:
        handle.remove()
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - mem0
    else:
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - mem0)
    torch.save(maps.cpu(), workdir / f"maps_{key}.pt")
    return {"images": n, "seconds": elapsed, "model_images": counted[0], "peak_bytes": peak}


def spawn(key: str, workdir: Path, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", key, "--workdir", str(workdir),
           "--threads", str(threads)]
    env = dict(os.environ, TQDM_DISABLE="1")  # pytorch-grad-cam's ScoreCAM progress bars
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"worker {key} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=32, help="image size (32 or 224)")
    ap.add_argument("--images", type=int, default=64, help="images for Grad-CAM/Grad-CAM++")
    ap.add_argument("--slow-images", type=int, default=1,
                    help="images for Score-CAM and RISE (hundreds of forwards per image)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per worker (1: fair on a shared machine)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: our methods under bf16 autocast (pytorch-grad-cam stays float32)")
    ap.add_argument("--channels-last", action="store_true",
                    help="model and images in channels-last memory format")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.workdir), args.threads)))
        return

    import torch

    from lico_bench.data import create_dataset
    from lico_bench.explainers import normalize_maps

    keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    unknown = set(keys) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(args.threads)
    ds = create_dataset("shapes", "test", image_size=args.size, n=max(args.images, args.slow_images))
    batch = ds.get_batch(range(args.images))
    model = build_model(args.size, args.device)
    with torch.no_grad():
        targets = model(batch.images.to(args.device)).argmax(dim=1).cpu()
    command = "python benchmarks/bench_explainers.py " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    print(f"# {command}")
    print(f"# resnet18 (random weights, seed 0) at {args.size} px, {args.device}, "
          f"{args.threads} thread(s); {args.precision}"
          f"{', channels-last' if args.channels_last else ''}; torch {torch.__version__}; "
          f"{args.images} images (Score-CAM/RISE: {args.slow_images})")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        torch.save({"images": batch.images, "targets": targets, "device": args.device,
                    "size": args.size, "slow_images": args.slow_images,
                    "precision": args.precision, "channels_last": args.channels_last},
                   workdir / "setup.pt")
        raw = spawn("raw", workdir, args.threads)["raw_img_per_s"]
        print(f"# raw no-grad forward: {raw:.1f} img/s at batch {RAW_BATCH}")
        rows = {}
        for key in keys:
            r = spawn(key, workdir, args.threads)
            r["img_per_s"] = r["images"] / r["seconds"]
            r["fwd_per_s"] = r["model_images"] / r["seconds"]
            rows[key] = r
        maps = {k: torch.load(workdir / f"maps_{k}.pt") for k in keys}

    print(f"{'method':<20} {'images':>6} {'time s':>8} {'images/s':>9} {'model img/s':>12} "
          f"{'of raw':>7} {'peak MB':>8}")
    for key, r in rows.items():
        print(f"{key:<20} {r['images']:>6} {r['seconds']:>8.2f} {r['img_per_s']:>9.2f} "
              f"{r['fwd_per_s']:>12.1f} {r['fwd_per_s'] / raw:>7.2f} {r['peak_bytes'] / 2**20:>8.1f}")
    print("\nours vs pytorch-grad-cam (same images; speed = images/s ratio, memory = peak ratio)")
    for ours, theirs in PAIRS:
        if ours in rows and theirs in rows:
            a, b = rows[ours], rows[theirs]
            n = min(maps[ours].shape[0], maps[theirs].shape[0])
            diff = float((normalize_maps(maps[ours][:n]) - maps[theirs][:n]).abs().max())
            mem = (f"{a['peak_bytes'] / b['peak_bytes']:.2f}x" if b["peak_bytes"] > 0 else "n/a")
            print(f"{ours:<20} vs {theirs:<19} speed {a['img_per_s'] / b['img_per_s']:5.2f}x  "
                  f"memory {mem:>6}  max|map diff| {diff:.1e}")
    C = 512  # channels of ResNet-18's layer4
    upfront = args.images * C * 3 * args.size ** 2 * 4 / 2**20
    print(f"\nnote: pytorch-grad-cam's ScoreCAM materialises all masked inputs [B, C, 3, H, W] "
          f"at once: {upfront:.0f} MB for B = {args.images}; ours holds batch_size of them.")
    print(f"# reproduce: {command}")


if __name__ == "__main__":
    main()
