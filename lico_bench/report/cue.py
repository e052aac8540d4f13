"""The planted-cue section of ``summary.md`` (datasets ``shapes-cue``, ``shapes-cue-clean``),
from result files only: ``reliance/*.json`` (written by the runner, lico_bench.bench.cue)
and the per-image rows (``evidence``, ``cue_label``, ``<metric>_cue``, ``<metric>_object``).

Three tables and one line per model x method:

* reliance per checkpoint: accuracy on the agree / swap / absent splits, the share of swap
  predictions that follow the cue, and the mask the model was scored against (the rule);
* reliance per model over its seeds, each trained model against the baseline it is paired
  with (:func:`~lico_bench.report.common.pair_models`, as the other tables): the per-seed
  differences of the share that follows the cue and of the swap accuracy (a model trained
  on the object's mask should follow the cue less, and be right more often, than its
  baseline);
* the mask metrics against the cue mask and against the object mask, whatever the model
  uses (so "does the map point at the object while the model uses the cue?" is read off);
* "found the cue in X % of the N images where the model followed it": the pointing game
  against the cue mask over the evaluated images whose prediction is the planted cue's class.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from ..errors import UserError
from .common import md_table, pair_models, pct


def read_reliance(results: Path) -> List[dict]:
    """Every ``reliance/*.json`` of ``results``, sorted by model and seed; a damaged file is
    a one-line error."""
    out = []
    for f in sorted((Path(results) / "reliance").glob("*.json")):
        try:
            rel = json.loads(f.read_text())
            float(rel["follows_cue"]), rel["model"], int(rel["seed"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{f} is damaged (not a reliance record); delete it and run the same "
                            "'lico-bench run' again: it is measured again.") from None
        out.append(rel)
    return sorted(out, key=lambda r: (r["model"], r["seed"]))


def _spread(values: List[float], signed: bool = False) -> str:
    """"mean [min, max]" of shares, in %."""
    v = np.asarray(values, dtype=float)
    f = (lambda x: f"{100 * x:+.1f}") if signed else pct
    return f(v.mean()) + (f" [{f(v.min())}, {f(v.max())}]" if len(v) > 1 else "")


def reliance_by_model(rels: List[dict], manifest: Optional[dict]) -> str:
    """Markdown table: per model, the mean [min, max] over its seeds of the share of swap
    predictions that follow the cue and of the swap accuracy, and for a model paired with a
    baseline the same of the per-seed differences model - baseline (seeds both have)."""
    by = {}
    for r in rels:
        by.setdefault(r["model"], {})[int(r["seed"])] = r
    partner = dict(pair_models(by, manifest))
    body = []
    for model in sorted(by):
        seeds = sorted(by[model])
        row = [model, ", ".join(map(str, seeds)),
               _spread([by[model][s]["follows_cue"] for s in seeds]),
               _spread([by[model][s]["accuracy_swap"] for s in seeds])]
        base = partner.get(model)
        both = [s for s in seeds if base is not None and s in by[base]]
        if both:
            row += [base] + [_spread([by[model][s][k] - by[base][s][k] for s in both], signed=True)
                             for k in ("follows_cue", "accuracy_swap")]
        else:
            row += ["-", "", ""]
        body.append(row)
    return md_table(["model", "seeds", "follows cue (swap)", "acc. swap", "paired with",
                     "Δ follows cue", "Δ acc. swap"], body)


def cue_section(results: Path, rows: pd.DataFrame, split: str,
                manifest: Optional[dict] = None) -> str:
    """Markdown for summary.md, or "" when the run is not on a cue dataset. ``manifest``
    (its ``models``) pairs each model with its baseline, as in the other tables."""
    rels = read_reliance(results)
    if not rels or "evidence" not in rows.columns:
        return ""
    r0 = rels[0]
    parts = ["", "## Reliance on the planted cue (measured per checkpoint)", "",
             f"Predictions on the whole agree / swap / absent splits ({r0['n_swap']} images each, "
             "image i the same scene in all three). A model is scored against the cue mask "
             f"when it follows the cue in ≥ {100 * r0['follow_at_least']:.0f} % of swap images "
             f"(chance {100 * r0['chance']:.0f} %), else against the object mask; on the absent "
             "split always against the object mask.", ""]
    body = [[r["model"], str(r["seed"]), pct(r["accuracy_agree"]), pct(r["accuracy_swap"]),
             pct(r["accuracy_absent"]), pct(r["follows_cue"]),
             "cue" if r["follows"] and split != "absent" else "object"] for r in rels]
    parts += [md_table(["model", "seed", "acc. agree", "acc. swap", "acc. absent",
                         "follows cue (swap)", f"scored against ({split})"], body), ""]
    parts += ["Per model, over its seeds: mean [min, max] in %; Δ: the per-seed difference "
              "from the baseline it is paired with (seeds both have).", "",
              reliance_by_model(rels, manifest), ""]
    cols = [c for m in ("pointing_game", "energy_pointing_game") for c in (f"{m}_cue", f"{m}_object")
            if c in rows.columns]
    if not cols:
        return "\n".join(parts)
    nice = {"pointing_game_cue": "PG cue", "pointing_game_object": "PG object",
            "energy_pointing_game_cue": "Energy PG cue", "energy_pointing_game_object": "Energy PG object"}
    body, lines = [], []
    for (model, method), g in rows.groupby(["model", "method"], sort=True):
        body.append([model, method] + [pct(g[c].mean()) for c in cols] + [str(len(g))])
        if "pointing_game_cue" in g.columns:
            fol = g[g["pred"] == g["cue_label"]]
            found = fol["pointing_game_cue"].mean() if len(fol) else float("nan")
            lines.append(f"- {model}, {method}: found the cue in {pct(found)} % of the "
                         f"{len(fol)} images where the model followed it.")
    parts += ["## Maps against the cue and against the object", "",
              f"Mean over the evaluated images of the {split} split, in % (both masks for every "
              "model, whatever it is scored against above; NaN rows, e.g. no cue, left out).", "",
              md_table(["model", "method"] + [nice[c] for c in cols] + ["images"], body), "",
              *lines, ""]
    return "\n".join(parts)
