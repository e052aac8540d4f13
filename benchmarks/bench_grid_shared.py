"""Score-CAM and RISE on 2 x 2 grid composites: shared masked forwards vs one pass per cell.

    python benchmarks/bench_grid_shared.py          # r18 + wrn28_2, 1 composite, ~2 min on 1 loaded core
    python benchmarks/bench_grid_shared.py --full   # the run's settings: hours on a CPU

What it does: tiles the first 4 ``shapes`` test images of distinct classes (32 px) into one
64 px composite per ``--composites`` (lico_bench.data.grid.tile, as ``run --grid 2``), and
explains each composite's 4 cells, each for its own class, with untrained ``baseline_r18``
and ``baseline_wrn28_2`` (random weights, seed 0; a masked forward costs the same whatever
the weights) in two ways:

* shared: one call with the composite repeated 4 times (what the runner passes under
  ``--grid 2``); the explainer forwards the composite's masked copies once and reads the 4
  targets from them (lico_bench.explainers.base.same_images);
* per cell: one call per cell, so each cell's masked copies are forwarded again: the cost
  before sharing (the same forwards, in the same batches, as one call without sharing).

Printed per model and method: seconds, images pushed through the model (a forward pre-hook),
seconds per masked forward, the speed ratio per-cell / shared, and the largest difference of
the maps relative to their maximum (float reassociation only; 0 for RISE).

By default the work per composite is cut so that the whole script stays near two minutes on
one loaded core: RISE with N = 64 masks (one chunk), Score-CAM on a 64-channel layer
(r18 ``features.layer1``, wrn28_2 ``features.block2``) instead of the CAM layer (512 and 128
channels). Every masked forward runs the whole network whichever layer makes the masks, so
the cost is (masked forwards) x (seconds per masked forward) and the run's full cost follows
from the printed seconds per forward: Score-CAM forwards one masked copy per non-constant
channel of the CAM layer (<= 512 for r18, <= 128 for wrn28_2), RISE N = 4000 at 64 px.
``--full`` uses those settings. Times depend on the machine's load; the ratios much less.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {"baseline_r18": "features.layer1", "baseline_wrn28_2": "features.block2"}


def composites(n: int):
    """(images [4n, 3, 64, 64] float32: each composite 4 times, targets [4n] int64: its
    cells' classes). Composite k tiles the k-th test image of each of the first 4 classes."""
    from lico_bench.data import create_dataset
    from lico_bench.data.grid import tile

    ds = create_dataset("shapes", "test", image_size=32, n=50 * n)
    labels = ds.get_batch(range(len(ds))).labels.tolist()
    classes = list(dict.fromkeys(labels))[:4]
    ids = [[[i for i, y in enumerate(labels) if y == c][k] for c in classes] for k in range(n)]
    flat = [i for row in ids for i in row]
    b = ds.get_batch(flat)
    comp = tile(b.images, 2)                                         # [n, 3, 64, 64]
    return comp.repeat_interleave(4, dim=0), b.labels.long()


class Seen:
    """Images pushed through ``model`` inside ``with`` (a forward pre-hook)."""

    def __init__(self, model):
        self.model, self.n = model, 0

    def __enter__(self):
        self.h = self.model.register_forward_pre_hook(
            lambda m, a: setattr(self, "n", self.n + a[0].shape[0]))
        return self

    def __exit__(self, *exc):
        self.h.remove()


def timed(explainer, model, images, targets, per_cell: bool):
    import torch

    with Seen(model) as seen:
        t0 = time.perf_counter()
        if per_cell:
            maps = torch.cat([explainer(model, images[i:i + 1], targets[i:i + 1])
                              for i in range(len(images))])
        else:
            maps = explainer(model, images, targets)
        return time.perf_counter() - t0, seen.n, maps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--composites", type=int, default=1, help="2x2 composites (4 cells each)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine)")
    ap.add_argument("--full", action="store_true",
                    help="Score-CAM on the CAM layer and RISE with N = 4000 (hours on a CPU)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    args = ap.parse_args(argv)

    import torch

    from lico_bench.explainers import create_explainer
    from lico_bench.models import create_model

    torch.set_num_threads(args.threads)
    images, targets = composites(args.composites)
    command = "python benchmarks/bench_grid_shared.py " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    print(f"# {command}")
    print(f"# {args.composites} composite(s) of 4 shapes test images (64 px), CPU, "
          f"{args.threads} thread(s), torch {torch.__version__}; "
          f"{'full settings' if args.full else 'cut work per composite (module docstring)'}")
    print(f"{'model':<17} {'method':<9} {'path':<9} {'time s':>8} {'model img':>9} "
          f"{'s/forward':>9} {'per-cell/shared':>15} {'max|diff|/max':>13}")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        torch.manual_seed(0)
        model = create_model(name, 10, image_size=32).eval()
        with torch.no_grad():
            model(images[:1])                                          # warm-up
        methods = {
            "scorecam": create_explainer("scorecam", **({} if args.full else {"layer": MODELS[name]})),
            "rise": create_explainer("rise", **({} if args.full else {"N": 64})),
        }
        for method, explainer in methods.items():
            t_s, n_s, m_s = timed(explainer, model, images, targets, per_cell=False)
            t_c, n_c, m_c = timed(explainer, model, images, targets, per_cell=True)
            diff = float((m_s - m_c).abs().max() / m_c.abs().max().clamp_min(1e-30))
            for path, t, n in (("shared", t_s, n_s), ("per cell", t_c, n_c)):
                ratio = f"{t_c / t_s:.2f}x" if path == "shared" else ""
                d = f"{diff:.1e}" if path == "shared" else ""
                print(f"{name:<17} {method:<9} {path:<9} {t:>8.2f} {n:>9d} {t / n:>9.4f} "
                      f"{ratio:>15} {d:>13}")
    print(f"# reproduce: {command}")


if __name__ == "__main__":
    main()
