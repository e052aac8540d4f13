"""``run --grid N``: which test images enter the grid pointing game's composites, decided with
every model of the run, and the transformed dataset (composition: :mod:`lico_bench.data.grid`;
score: :mod:`lico_bench.metrics.grid`).

An image qualifies when every model of the run (each model at each seed) predicts its label
with softmax probability >= ``--grid-threshold`` on the image alone (one forward per model
over the whole split, under the run's precision), so all models are scored on the same
composites. The manifest records, under ``"grid"``, the numbers (images scanned, qualified,
per class, composites) and a sha256 of the composites' source ids; a rerun that would draw
other composites (other checkpoints, another precision moving an image across the
threshold) cannot resume into the same results directory.
"""
from __future__ import annotations

import hashlib
from typing import Callable, List, Tuple

import torch

from ..data.grid import GridDataset, max_composites, plan_composites
from ..errors import UserError
from ..precision import to_device


def qualifying(models: List[torch.nn.Module], ds, device, batch_size: int, amp,
               threshold: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(ok [N] bool, labels [N] int64) over ``ds``: ok where every model gives the label
    probability >= threshold and predicts it (argmax; implied for threshold > 0.5)."""
    ok = torch.ones(len(ds), dtype=torch.bool)
    all_labels = torch.zeros(len(ds), dtype=torch.long)
    for model in models:
        for start in range(0, len(ds), batch_size):
            idx = list(range(start, min(start + batch_size, len(ds))))
            b = ds.get_batch(idx)
            images = to_device(b.images, device)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), amp:
                probs = torch.softmax(model(images).float(), dim=1).cpu()
            labels = b.labels.long()
            p = probs.gather(1, labels[:, None])[:, 0]
            good = (probs.argmax(1) == labels) & (p >= threshold)
            ok[start:start + len(idx)] &= good
            all_labels[start:start + len(idx)] = labels
    return ok, all_labels


def make_grid(ds, models: List[torch.nn.Module], n: int, n_items: int, threshold: float,
              seed: int, device, batch_size: int, amp, log: Callable[[str], None]) -> GridDataset:
    """``ds`` (any LicoDataset) -> the :class:`GridDataset` of ``n_items // n^2`` composites.

    A one-line :class:`UserError` when ``n_items`` is not a multiple of ``n^2``, when the
    dataset has fewer than ``n^2`` classes, or when too few images qualify."""
    k = n * n
    if n_items % k:
        lo, hi = (n_items // k) * k, (n_items // k + 1) * k
        raise UserError(f"--n-images {n_items} with --grid {n}: each composite explains its {k} "
                        f"cells, so give a multiple of {k} (e.g. {hi}" + (f" or {lo})." if lo else ")."))
    if ds.info.num_classes < k:
        raise UserError(f"--grid {n} needs {k} distinct classes per composite; "
                        f"{ds.info.name} has {ds.info.num_classes}. Use a smaller --grid.")
    ok, all_labels = qualifying(models, ds, device, batch_size, amp, threshold)
    ids = ok.nonzero()[:, 0]
    labels = all_labels[ids]
    count = n_items // k
    plan = plan_composites(ids, labels, n, count, seed)
    per_class = torch.bincount(labels, minlength=ds.info.num_classes).tolist()
    extra = {"n": n, "threshold": threshold, "seed": seed, "images_scanned": len(ds),
             "images_qualified": int(ok.sum()), "qualified_per_class": per_class,
             "composites": count, "composites_possible": max_composites(labels, n),
             "composites_sha256": hashlib.sha256(plan.numpy().tobytes()).hexdigest(),
             "models_checked": len(models)}
    log(f"grid {n}x{n}: {extra['images_qualified']} of {len(ds)} images qualify (p >= "
        f"{threshold:g} under all {len(models)} models); {count} composites drawn of at most "
        f"{extra['composites_possible']}")
    return GridDataset(ds, plan, n, extra)
