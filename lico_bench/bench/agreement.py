"""Cross-seed agreement of a run's maps (definition: :mod:`lico_bench.metrics.agreement`),
from the pooled maps the run keeps; no forward pass.

Files (in the results directory)::

    pooled/<experiment>.pt   the experiment's pooled maps, [n_images, h, w] float32 (the same
                             maps map dependence uses), written when its rows are merged
                             (also with one seed: a run may grow by seeds)
    agreement.jsonl          one row per model x method x image, for every model and method
                             run with >= 2 seeds: {"dataset", "model", "method", "image_id",
                             "target_agree", "seeds", "n_pairs", "agreement_spearman",
                             "agreement_ssim"}; rewritten (atomically) at the end of each run

``target_agree`` says whether every seed's map explains the same class (always with
``--target label`` or ``--grid``). An experiment without its pooled file (results written
before it existed) leaves its model and method out, with one log line. Statistics over
images and LICO - baseline: :mod:`lico_bench.report.agreement` (reads this file only).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..io import write_text
from ..schemas import POOLED_MAPS
from ..metrics.agreement import seed_agreement

POOLED = "pooled"
FILE = "agreement.jsonl"


def pooled_path(out: Path, key: str) -> Path:
    """``pooled/<experiment>.pt`` of experiment ``key``."""
    return Path(out) / POOLED / f"{key}.pt"


def _read_pooled(path: Path, n: int):
    """The pooled maps [n, h, w] float32 of a file, or None if missing or not that."""
    try:
        maps = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, truncated, or not a tensor file
        return None
    ok = POOLED_MAPS.ok(maps) and maps.shape[0] == n
    return maps.float() if ok else None


def write_agreement(out: Path, experiments, n_images: int,
                    log: Callable[[str], None] = print) -> Optional[Path]:
    """Compute every (dataset, model, method)'s agreement over its seeds' experiments and
    write ``agreement.jsonl`` (module docstring); returns its path, or None (nothing
    written) when no model runs with two seeds. ``experiments``: the run's
    :class:`lico_bench.bench.spec.Experiment` list."""
    out = Path(out)
    groups: Dict[Tuple[str, str, str], List] = {}
    for e in experiments:
        groups.setdefault((e.dataset, e.model, e.method), []).append(e)
    if all(len(exps) < 2 for exps in groups.values()):
        return None
    lines: List[str] = []
    for (dataset, model, method), exps in sorted(groups.items()):
        if len(exps) < 2:
            continue
        exps = sorted(exps, key=lambda e: e.seed)
        maps = [_read_pooled(pooled_path(out, e.key), n_images) for e in exps]
        targets = [_targets(out, e.key) for e in exps]
        if any(m is None for m in maps) or any(t is None for t in targets):
            log(f"cross-seed agreement of {model} {method}: the pooled maps of some seed are "
                "missing (results written before they were kept); left out")
            continue
        agree = seed_agreement(torch.stack(maps))
        same = torch.stack(targets).eq(targets[0]).all(0).tolist()
        seeds = [e.seed for e in exps]
        pairs = len(exps) * (len(exps) - 1) // 2
        for i in range(n_images):
            rec = {"dataset": dataset, "model": model, "method": method, "image_id": i,
                   "target_agree": bool(same[i]), "seeds": seeds, "n_pairs": pairs}
            for name, v in agree.items():
                rec[f"agreement_{name}"] = float(v[i])
            lines.append(json.dumps(rec, sort_keys=True) + "\n")
    return write_text(out / FILE, "".join(lines))


def _targets(out: Path, key: str):
    """The explained class of each image of an experiment's rows ([n] int64), or None."""
    path = out / "rows" / f"{key}.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return torch.tensor([r["target"] for r in sorted(rows, key=lambda r: r["image_id"])])
