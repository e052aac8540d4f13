"""Cost of the model-parameter randomisation check against the explainer calls it needs.

The check (``randomisation_cascading`` / ``randomisation_independent``) explains each batch
once per stage on a randomised copy of the model; the trained model's maps are the
runner's, reused. So its floor is ``n_stages`` explainer calls per batch. This script times,
in one run, on the same batches and the same randomised weights:

- bare: the ``n_stages`` explainer calls alone, on randomised copies built beforehand
  (untimed), i.e. the explainer calls the check cannot avoid;
- check: the metric as the runner calls it (building its working copy and random weights
  on the first batch, switching stages, the similarity kernels, the pooled maps it keeps);

batch by batch, alternating which of the two runs first, and prints
``ratio = bare / check`` (goal >= 0.9). The metric's first call, which builds the copy and
the random weights once per model, is included in the check's time.

Peer: Quantus 0.6.0 ``MPRT`` (cascading, "top_down") with the same explainer on the same
images (``--quantus-images``, one batch): it re-initialises every module that has
``reset_parameters`` (62 for a ResNet-18, batch norm included) instead of stages, so it
makes 63 explainer calls to our 6; printed are its time and its time per explainer call.

    .venv/bin/python benchmarks/bench_randomisation.py [--size 128] [--bs 16] [--batches 8]
        [--mode cascading] [--quantus-images 8] [--threads 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings

import torch

from lico_bench.explainers import create_explainer
from lico_bench.metrics import create_metric, spearman
from lico_bench.metrics import randomisation as R
from lico_bench.models import create_model

from bench_metrics import timed  # the shared timing helper (this folder is on sys.path)


def randomised_copies(model, mode, seed=0, batchnorm="affine"):
    """One fully built copy of the model per step, with the metric's random weights."""
    r = R.StageRandomiser(model, R.model_stages(model), seed, batchnorm)
    return [copy.deepcopy(r.randomised(s)) for s in R.stage_sets(mode, len(r.stages))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--mode", default="cascading", choices=R.MODES)
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--quantus-images", type=int, default=8, help="0: skip Quantus")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model("baseline_r18", 10, image_size=args.size).to(dev).eval()
    cam = create_explainer(args.method)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(args.bs, 3, args.size, args.size, generator=g).to(dev)
               for _ in range(args.batches)]
    targets = [model(x).argmax(1) for x in batches]
    maps = [cam(model, x, y) for x, y in zip(batches, targets)]          # the runner's, reused
    copies = randomised_copies(model, args.mode)
    metric = create_metric(f"randomisation_{args.mode}")
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"resnet18 {args.size} px, {args.method}, {args.mode}, {len(copies)} stages, "
          f"{args.batches} batches of {args.bs}")
    for c in copies[:2]:      # warm-up, untimed: first calls at this shape (allocator, kernels)
        cam(c, batches[0], targets[0])
    t_bare = t_check = 0.0
    first = (0.0, 0.0)
    for i, (x, y, m) in enumerate(zip(batches, targets, maps)):
        bare = lambda: [cam(c, x, y) for c in copies]                    # noqa: E731
        check = lambda: metric(model, x, m, y, explain=cam)              # noqa: E731
        order = (bare, check) if i % 2 else (check, bare)
        for fn in order:
            out, t = timed(fn, dev)
            if fn is bare:
                t_bare += t
                bare_maps = out
            else:
                t_check += t
                res = out
        # the check explained the very same models: its Spearman is that of the bare maps
        want = torch.stack([spearman(m.abs(), b.abs()) for b in bare_maps], 1).float()
        assert torch.allclose(res.curves, want, atol=1e-5), "check and bare calls disagree"
        print(f"  after batch {i}: bare {t_bare:.2f} s, check {t_check:.2f} s")
        if i == 0:
            first = (t_bare, t_check)
    n_img = args.bs * args.batches
    print(f"bare explainer calls  {t_bare:8.2f} s  {1e3 * t_bare / n_img:8.1f} ms/image")
    print(f"randomisation check   {t_check:8.2f} s  {1e3 * t_check / n_img:8.1f} ms/image")
    print(f"ratio bare / check = {t_bare / t_check:.3f}  (goal >= 0.9)")
    if args.batches > 1:  # the first batch's check also builds the working copy, once per model
        print(f"  without the first batch: {(t_bare - first[0]) / (t_check - first[1]):.3f}")
    if args.quantus_images > 0:
        try:
            import quantus
        except ImportError:
            print("quantus not installed: peer skipped")
        else:
            warnings.filterwarnings("ignore")
            n = min(args.quantus_images, args.bs)
            x, y, m = batches[0][:n], targets[0][:n], maps[0][:n]

            def explain_func(model, inputs, targets, **kw):
                return cam(model, torch.as_tensor(inputs, device=dev),
                           torch.as_tensor(targets, device=dev)).cpu().numpy()[:, None]

            q = quantus.MPRT(layer_order="top_down" if args.mode == "cascading" else "independent",
                             seed=0, abs=True, normalise=True, disable_warnings=True)
            t0 = time.perf_counter()
            try:
                q(model, x.cpu().numpy(), y.cpu().numpy(), a_batch=m.cpu().numpy()[:, None],
                  explain_func=explain_func, batch_size=n, device=str(dev))
                stopped = ""
            except AssertionError as e:  # it refuses a batch of all-zero maps
                stopped = f" (stopped: {str(e).splitlines()[0][:70]}...)"
            t_q = time.perf_counter() - t0
            # "original" + one per randomised module done (the one it stopped at included)
            calls = len(q.evaluation_scores) + (1 if stopped else 0)
            _, t_ours = timed(lambda: metric(model, x, m, y, explain=cam), dev)
            print(f"Quantus MPRT ({n} images): {t_q:.2f} s for {calls} explainer calls{stopped}, "
                  f"{1e3 * t_q / (calls * n):.1f} ms per image and call; "
                  f"ours {t_ours:.2f} s for {len(copies)} calls, "
                  f"{1e3 * t_ours / (len(copies) * n):.1f} ms per image and call")
    print("\nreproduce: .venv/bin/python benchmarks/bench_randomisation.py " + " ".join(
        sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
