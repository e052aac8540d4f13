"""What the figures need besides the rows, written into the results directory by the runner
(layout: :mod:`lico_bench.report.figure_files`), so that the report reads results only.

* :func:`maps_record`: an experiment's saved maps with their pointing-game points;
* :func:`save_inputs`: the de-normalised input images, masks and class names of those maps;
* :func:`copy_training_logs`: each checkpoint's ``log.csv`` into ``logs/``.

``python -m lico_bench.bench.figure_inputs RESULTS_DIR`` writes the first two (and the logs,
where the manifest's checkpoints still have them) for results written before the runner
saved them; it re-creates the dataset named in the manifest.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..data import create_dataset
from ..data.show import denormalise
from ..errors import UserError
from ..io import torch_save, write_text
from ..metrics.pointing import pointing_points
from ..report.figure_files import INPUTS, log_path, read_maps


def maps_record(image_ids: Sequence[int], maps: torch.Tensor, targets: Sequence[int]) -> dict:
    """A ``maps/<experiment>.pt`` file. maps: [k, H, W] float (any device; NaN allowed) ->
    stored as float32 on the CPU, with ``points`` [k, 2] int64 (y, x), the pointing-game
    point of each map with non-finite values read as 0 (as the pointing game reads them)."""
    maps = maps.float().cpu()
    safe = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    return {"image_ids": list(image_ids), "maps": maps, "targets": list(targets),
            "points": pointing_points(safe)}


def save_inputs(out: Path, ds, n: int) -> Optional[Path]:
    """Write ``inputs.pt``: the first ``n`` images of dataset ``ds`` (the ones whose
    maps are saved), de-normalised to [0, 1] as [n, H, W, 3] float32, their masks
    ([n, H, W] bool, or None) and class names. Nothing when n is 0."""
    n = min(n, len(ds))
    if n <= 0:
        return None
    ids = list(range(n))
    batch = ds.get_batch(ids)
    images = denormalise(batch.images.float(), ds.info.mean, ds.info.std).permute(0, 2, 3, 1)
    masks = batch.masks.bool() if batch.masks is not None else None
    labels = [ds.info.class_names[int(i)] for i in batch.labels]
    path = out / INPUTS
    torch_save({"image_ids": ids, "images": images.contiguous(), "masks": masks, "labels": labels},
               path)
    return path


def copy_training_logs(out: Path, checkpoints: Dict[str, Path]) -> List[str]:
    """Copy ``log.csv`` next to each checkpoint (``{"model@seed<s>": path}``) to
    ``logs/<key>.csv``; return the keys that have no log (e.g. a checkpoint given by path
    without one). A kept epoch's (``lico_wrn28_2@e5@seed0``) keeps the rows up to its epoch."""
    import csv
    import io

    from ..models import parse_model_ref

    missing = []
    for key, ck in sorted(checkpoints.items()):
        log = Path(ck).parent / "log.csv"
        if log.is_file():
            text = log.read_text()
            _, epoch = parse_model_ref(key.rsplit("@seed", 1)[0])
            if epoch is not None:
                rows = list(csv.DictReader(io.StringIO(text)))
                buf = io.StringIO()
                w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["epoch"])
                w.writeheader()
                w.writerows(r for r in rows if int(r["epoch"]) <= epoch)
                text = buf.getvalue()
            write_text(log_path(out, key), text)
        else:
            missing.append(key)
    return missing


def _resolve(path: str, results: Path) -> Path:
    """A checkpoint path as the manifest wrote it (often relative to where the run was
    started): as given, else next to the results directory or one of its parents."""
    p = Path(path)
    if p.is_absolute():
        return p
    for c in [p, results / p, *[a / p for a in results.resolve().parents]]:
        if c.parent.is_dir():
            return c
    return p


def backfill(results: Path, log=print) -> None:
    """Write what :mod:`lico_bench.report.figure_files` lists and an older results
    directory lacks: ``points`` in its maps files, ``inputs.pt``, ``logs/``."""
    from ..report.common import load_manifest

    results = Path(results)
    manifest = load_manifest(results)
    spec = manifest.get("spec", {})
    files = sorted((results / "maps").glob("*.pt"))
    n = 0
    for p in files:
        d = read_maps(p)
        n = max(n, len(d["image_ids"]))
        if "points" not in d:
            torch_save(maps_record(d["image_ids"], torch.as_tensor(d["maps"]), d["targets"]), p)
            log(f"{p}: points added")
    if files and not (results / INPUTS).exists():
        ds = create_dataset(spec["dataset"], spec.get("split", "test"), root=spec.get("root"),
                            image_size=spec.get("image_size"), seed=0)
        log(f"{save_inputs(results, ds, n)}: {n} input images written")
    ckpts = {k: _resolve(str(v), results) for k, v in (manifest.get("checkpoints") or {}).items()
             if not log_path(results, k).exists()}
    missing = copy_training_logs(results, ckpts)
    for key in sorted(set(ckpts) - set(missing)):
        log(f"{log_path(results, key)}: training log copied")
    if missing:
        log(f"no log.csv found for {', '.join(missing)}; the training figure leaves them out")


if __name__ == "__main__":  # python -m lico_bench.bench.figure_inputs RESULTS_DIR
    if len(sys.argv) != 2:
        sys.exit("usage: python -m lico_bench.bench.figure_inputs RESULTS_DIR")
    try:
        backfill(Path(sys.argv[1]))
    except UserError as e:
        print(f"lico-bench: error: {e}", file=sys.stderr)
        sys.exit(UserError.exit_code)
