"""A results directory for the results-browser tests, built by hand so its answers are known:
two models (baseline_r18, lico_r18; or any of FAMILIES) x two methods (gradcam, rise) or one,
one seed, ``n`` images with labels, predictions and three metrics drawn from a seeded
generator, and thumbs/ sheets whose tiles are distinct (image i's input and mask tiles are
solid colours derived from i)."""
import json
from pathlib import Path

import numpy as np
import torch

from lico_bench.bench.thumbs import write_sheets
from lico_bench.report.figure_files import THUMB_META, THUMBS_PER_ROW, THUMBS_PER_SHEET
from lico_bench.report.tables import build_report

MODELS = ("baseline_r18", "lico_r18")
METHODS = ("gradcam", "rise")
CLASSES = [f"class {c}" for c in range(5)]
METRICS = {"insertion": True, "deletion": False, "pointing_game": True}
TILE = 8


def key(model, method, seed=0):
    return f"shapes__{model}__{method}__seed{seed}"


FAMILIES = {"baseline_r18": "baseline", "lico_r18": "lico", "guided_r18": "guided"}


def make_results(root: Path, n: int, thumbs: bool = True, methods=METHODS, models=MODELS) -> Path:
    """Write the rows, manifest (and thumbs/) under ``root/res``, then build_report (tables
    and index.html); return the results directory. One method is ~10 times faster to report
    than two (no method comparison, whose bootstraps dominate). ``models``: from FAMILIES."""
    rng = np.random.default_rng(28)
    res = Path(root) / "res"
    (res / "rows").mkdir(parents=True)
    manifest = {"format": 1, "command": "lico-bench run" + "".join(f" --model {m}" for m in models),
                "git_commit": "0123abc", "versions": {"torch": "9.9"}, "device": "cpu",
                "dataset": {"class_names": CLASSES},
                "spec": {"dataset": "shapes", "split": "test", "n_images": n, "seeds": [0],
                         "models": list(models), "methods": list(methods)},
                "metrics": {k: {"higher_is_better": v} for k, v in METRICS.items()},
                "models": {m: {"family": FAMILIES[m], "arch": "resnet18",
                               "variant": "paper" if FAMILIES[m] == "lico" else None} for m in models}}
    (res / "manifest.json").write_text(json.dumps(manifest))
    labels = rng.integers(0, len(CLASSES), n)
    for model in models:
        pred = np.where(rng.random(n) < 0.8, labels, (labels + 1) % len(CLASSES))
        prob = rng.uniform(0.3, 1.0, n)
        for method in methods:
            vals = {"insertion": rng.uniform(0.2, 0.9, n), "deletion": rng.uniform(0.0, 0.5, n),
                    "pointing_game": (rng.random(n) < 0.6).astype(float)}
            rows = [dict(dataset="shapes", model=model, method=method, seed=0, image_id=i,
                         label=int(labels[i]), pred=int(pred[i]), target=int(pred[i]),
                         prob=float(prob[i]), map_status="ok",
                         **{m: float(v[i]) for m, v in vals.items()}) for i in range(n)]
            (res / "rows" / f"{key(model, method)}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows))
    if thumbs:
        ids = torch.arange(n)
        colour = torch.stack([ids % 256, (ids * 7) % 256, (ids * 13) % 256], 1).to(torch.uint8)
        write_sheets(res, "inputs", colour[:, None, None, :].expand(n, TILE, TILE, 3).contiguous())
        grey = (100 + ids % 100).to(torch.uint8)   # image i's mask tile: solid grey 100 + i % 100
        write_sheets(res, "masks", grey[:, None, None].expand(n, TILE, TILE).contiguous())
        ramp = torch.arange(TILE * TILE).reshape(TILE, TILE).to(torch.uint8) * 4   # 0..252
        for model in models:
            for method in methods:
                write_sheets(res, key(model, method), ramp.expand(n, TILE, TILE).contiguous())
        (res / THUMB_META).write_text(json.dumps({"tile": TILE, "per_row": THUMBS_PER_ROW,
                                                  "per_sheet": THUMBS_PER_SHEET, "n_images": n,
                                                  "masks": True}))
    build_report(res)
    return res
