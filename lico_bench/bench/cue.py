"""Runs on a planted-cue dataset (``shapes-cue``, ``shapes-cue-clean``): reliance on the cue
is measured, not assumed, and decides which mask is the evidence a map is scored against.

Reliance of a checkpoint: its predictions on the whole ``agree``, ``swap`` and ``absent``
splits (1000 images each by default, image i the same scene in all three): accuracy on
each, and on ``swap`` the share of predictions that are the class whose cue is planted
("follows the cue"; chance: 1 / number of classes). Written to
``<results>/reliance/<model>__seed<seed>.json`` for the report.

Reliance is measured in float32 whatever the run's ``--precision`` (like the grid's
qualification, :mod:`lico_bench.bench.grid`): it is the checkpoint's, and the 50 % rule
below must not pick another mask for a bf16 run of the same checkpoint.

Rule: a model that follows the cue in at least :data:`FOLLOW_AT_LEAST` of the swap images
is scored against the cue mask (on every split with a cue); any other model, and every model
on the ``absent`` split, against the object mask. Each row says which (``evidence``), and
also holds every mask metric against both masks (``<metric>_cue``, ``<metric>_object``), so
"does the map point at the object while the model uses the cue?" is answered by the rows.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List

import torch

from ..data import create_dataset
from ..io import write_text
from ..precision import to_device

FOLLOW_AT_LEAST = 0.5
CUE_SPLITS = ("agree", "swap", "absent")


def is_cue_dataset(ds) -> bool:
    """Whether ``ds`` plants a cue (has ``cue_masks`` [N,H,W] bool and ``cue_labels`` [N])."""
    return hasattr(ds, "cue_masks") and hasattr(ds, "cue_labels")


def predictions(model, ds, device: torch.device, batch_size: int) -> torch.Tensor:
    """[N] int64 on the CPU: ``model``'s predicted class for every image of ``ds``, its
    forwards in float32 with any ambient autocast switched off (module docstring)."""
    out = []
    for start in range(0, len(ds), batch_size):
        batch = ds.get_batch(list(range(start, min(start + batch_size, len(ds)))))
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            out.append(model(to_device(batch.images, device)).float().argmax(1).cpu())
    return torch.cat(out)


def measure_reliance(model, dataset: str, image_size: int, device: torch.device,
                     batch_size: int) -> Dict:
    """Accuracy on the agree/swap/absent splits and the share of swap predictions that
    follow the cue, for ``model`` (eval mode) on cue dataset ``dataset``."""
    rel: Dict = {"dataset": dataset}
    for split in CUE_SPLITS:
        ds = create_dataset(dataset, split, image_size=image_size, seed=0)
        pred = predictions(model, ds, device, batch_size)
        rel[f"accuracy_{split}"] = float((pred == ds.labels).float().mean())
        rel[f"n_{split}"] = len(ds)
        if split == "swap":
            rel["follows_cue"] = float((pred == ds.cue_labels).float().mean())
            rel["chance"] = 1.0 / ds.info.num_classes
    rel["follow_at_least"] = FOLLOW_AT_LEAST
    rel["follows"] = rel["follows_cue"] >= FOLLOW_AT_LEAST
    return rel


def reliance_path(out: Path, model: str, seed: int) -> Path:
    return Path(out) / "reliance" / f"{model}__seed{seed}.json"


def reliance_for(out: Path, model_name: str, seed: int, checkpoint: str, measure,
                 write: bool) -> Dict:
    """The reliance of one checkpoint: read from its file when it was measured for this
    checkpoint, else ``measure()`` (and written when ``write``, rank 0's job)."""
    path = reliance_path(out, model_name, seed)
    try:
        rel = json.loads(path.read_text())
        if rel.get("checkpoint") == checkpoint and "follows" in rel:
            return rel
    except (OSError, ValueError):
        pass
    rel = {"model": model_name, "seed": seed, "checkpoint": checkpoint, **measure()}
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(rel, indent=1, sort_keys=True) + "\n")
    return rel


def evidence(rel: Dict, split: str) -> str:
    """"cue" or "object": the mask a model with reliance ``rel`` is scored against."""
    return "cue" if rel["follows"] and split != "absent" else "object"


def evidence_masks(rel: Dict, split: str, ds, idx: List[int], both, rows: List[dict]):
    """The evidence masks [B, H, W] bool of images ``idx`` (``both``: their object and cue
    masks); adds ``cue_label`` and ``evidence`` to their ``rows``."""
    ev = evidence(rel, split)
    for row, i in zip(rows, idx):
        row.update(cue_label=int(ds.cue_labels[i]), evidence=ev)
    return both[1] if ev == "cue" else both[0]


def score_both_masks(rows: List[dict], metric, model, images, maps, targets, object_masks,
                     cue_masks) -> None:
    """Adds ``<metric>_object`` and ``<metric>_cue`` to ``rows``: a mask metric against each
    mask (its own kernel, another mask; NaN where the mask is empty, e.g. no cue, or the map
    is flagged "nan")."""
    for kind, m in (("object", object_masks), ("cue", cue_masks)):
        values = metric(model, images, maps, targets, masks=m).values.float().cpu().tolist()
        for row, v in zip(rows, values):
            row[f"{metric.name}_{kind}"] = math.nan if row["map_status"] == "nan" else v
