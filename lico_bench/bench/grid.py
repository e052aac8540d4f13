"""``run --grid N``: which test images enter the grid pointing game's composites, decided with
every model of the run, and the transformed dataset (composition: :mod:`lico_bench.data.grid`;
score: :mod:`lico_bench.metrics.grid`).

An image qualifies when every model of the run (each model at each seed) predicts its label
with softmax probability >= ``--grid-threshold`` on the image alone (one forward per model
over the whole split), so all models are scored on the same composites. These forwards run
in float32 whatever the run's ``--precision``: a threshold of 0.99 sits where bf16's 8-bit
mantissa moves probabilities across it (WRN-28-2 pair of results/paper_gridpg, 1000 test
images: 181 qualify in float32, 187 under bf16 autocast), and a bf16 run (a GPU's default,
or a long CPU part) should score the composites a float32 run of the same checkpoints
scores. The manifest records, under ``"grid"``, the numbers (images scanned, qualified, per
class, composites) and a sha256 of the composites' source ids; a rerun that would draw
other composites (other checkpoints) cannot resume into the same results directory.

``--grid-variant difull`` (:func:`difull`): each cell passes through the model's feature
extractor alone (DiFull, Rao, Böhle, Schiele, CVPR 2022); ``gridpg`` (the default) runs the
model on the whole composite (GridPG, Böhle et al. 2021). Qualification is on single images
either way.

Cost: the runner explains whole composites per call (``RunSpec.explain_batch``: the batch
rounded down to a multiple of n^2), so Score-CAM and RISE, whose masked forwards do not depend
on the explained class, forward a composite's masked copies once for its n^2 cells
(:func:`lico_bench.explainers.base.same_images`).
"""
from __future__ import annotations

import hashlib
from typing import Callable, List, Tuple

import torch
import torch.nn as nn

from ..data.grid import GridDataset, max_composites, plan_composites
from ..errors import UserError
from ..precision import to_device


def qualifying(models: List[torch.nn.Module], ds, device, batch_size: int,
               threshold: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(ok [N] bool, labels [N] int64) over ``ds``: ok where every model gives the label
    probability >= threshold and predicts it (argmax; implied for threshold > 0.5). The
    forwards run in float32, with any ambient autocast switched off (module docstring)."""
    ok = torch.ones(len(ds), dtype=torch.bool)
    all_labels = torch.zeros(len(ds), dtype=torch.long)
    for model in models:
        for start in range(0, len(ds), batch_size):
            idx = list(range(start, min(start + batch_size, len(ds))))
            b = ds.get_batch(idx)
            images = to_device(b.images, device)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                probs = torch.softmax(model(images).float(), dim=1).cpu()
            labels = b.labels.long()
            p = probs.gather(1, labels[:, None])[:, 0]
            good = (probs.argmax(1) == labels) & (p >= threshold)
            ok[start:start + len(idx)] &= good
            all_labels[start:start + len(idx)] = labels
    return ok, all_labels


def make_grid(ds, models: List[torch.nn.Module], n: int, n_items: int, threshold: float,
              seed: int, device, batch_size: int, log: Callable[[str], None]) -> GridDataset:
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
    ok, all_labels = qualifying(models, ds, device, batch_size, threshold)
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


class _CellwiseFeatures(nn.Module):
    """DiFull's feature extractor: each cell of an ``n x n`` composite through ``features``
    alone, the cells' feature maps tiled back in the same layout.

    x: [B, C, n*H, n*W] float -> [B, C', n*h, n*w] float, where ``features`` maps
    [B*n^2, C, H, W] -> [B*n^2, C', h, w]."""

    def __init__(self, features: nn.Module, n: int):
        super().__init__()
        self.cells, self.n = features, int(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        n = self.n
        h, w = hh // n, ww // n
        cells = x.reshape(b, c, n, h, n, w).permute(0, 2, 4, 1, 3, 5).reshape(b * n * n, c, h, w)
        f = self.cells(cells)                                            # [B n^2, C', h', w']
        _, c2, fh, fw = f.shape
        return f.reshape(b, n, n, c2, fh, fw).permute(0, 3, 1, 4, 2, 5).reshape(b, c2, n * fh, n * fw)


def check_difull(models: List[nn.Module], n: int, method_options: dict) -> None:
    """One-line :class:`UserError` when DiFull cannot run: a model whose CAM layer is not the
    end of its features (:func:`difull`), or a method given another ``layer`` (the model's
    inner layers see the cells as a batch of B*n^2 images, not the run's B composites)."""
    for m in models:
        difull(m, n)
    for method, opts in method_options.items():
        if opts.get("layer") is not None:
            raise UserError(f"--grid-variant difull explains the tiled features; drop "
                            f"--method-option {method}.layer={opts['layer']} or use "
                            "--grid-variant gridpg.")


def difull(model: nn.Module, n: int) -> nn.Module:
    """The DiFull view of a :class:`~lico_bench.models.Classifier` (Rao, Böhle, Schiele,
    "Towards Better Understanding Attribution Methods", CVPR 2022, Sec. 4.1): the cells of a
    composite pass through ``features`` separately and only the head (global average pooling
    and fc) sees them together, so no cell's features can depend on another cell and the grid
    score measures the explainer alone. The CAM layer becomes the tiled feature map, which is
    the model's own CAM layer when that is the last module of ``features`` (the package's
    default); otherwise a one-line :class:`UserError`. Shares the model's modules (no copy);
    the wrapper is in eval mode when the model is."""
    from dataclasses import replace as _replace

    from ..models import Classifier

    cam = getattr(model.cfg, "cam_layer", "features")
    last = [name for name, _ in model.features.named_children()][-1:]
    if cam not in ["features"] + [f"features.{c}" for c in last]:
        raise UserError(f"--grid-variant difull explains the tiled output of the model's "
                        f"features; {model.cfg.name}'s CAM layer {cam!r} is not their last "
                        "module. Use --grid-variant gridpg.")
    wrapped = Classifier(_CellwiseFeatures(model.features, n), model.num_features,
                         model.cfg.num_classes)
    wrapped.fc = model.fc
    wrapped.cfg = _replace(model.cfg, cam_layer="features")
    return wrapped.train(model.training)
