"""How well the grid pointing game agrees with the mask-based pointing game (issue 27, item 4).

Reads results directories of the same models on ``shapes``: those run with ``--grid N``
(rows: ``grid_score``, ``pointing_game`` and ``energy_pointing_game`` of the explained cell)
and those without (rows: the pointing games on the real object masks); each directory's
manifest says which it is, and either side may be split over several directories (e.g. the
cheap methods and RISE, or a headline run and its Score-CAM/RISE run). Every seed x model x
method cell of the grid side must be on the mask side (the mask side may hold more seeds or
methods: they are left out). For every cell it takes the mean over that experiment's images,
then

* per seed: Spearman's rho and Kendall's tau-b over the model x method cells between the
  grid score and each mask-based score (pointing game, energy pointing game);
* pooled over seeds: the same over every seed x model x method cell;
* per seed and method: whether LICO - baseline has the same sign under the grid score as
  under the mask-based pointing game.

A mask-side run that explained the prediction (``--target pred``, the default) is the label's
pointing game only where the model is right: the count of wrong predictions is printed.
Prints Markdown; the numbers in docs/metrics.md's "Grid pointing game" paragraph are this output.
Usage::

    python experiments/grid_vs_mask.py results/shapes_grid results/shapes_mask_pg
    python experiments/grid_vs_mask.py results/paper_gridpg results/paper_gridpg_rise \
        results/paper_headline results/paper_slow
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Dict

import pandas as pd
from scipy import stats

from lico_bench.report.common import load_manifest, load_rows, md_table, pair_models

GRID = {"grid_score": "grid score", "pointing_game": "grid PG",
        "energy_pointing_game": "grid energy PG"}
MASK = {"pointing_game": "mask PG", "energy_pointing_game": "mask energy PG"}


KEY = ["seed", "model", "method"]


def cell_means(runs: Dict[Path, pd.DataFrame], metrics: dict) -> pd.DataFrame:
    """Mean over images per (seed, model, method) of each metric, columns renamed; the rows
    of several directories together (a cell in two of them is an error)."""
    means = pd.concat([rows.groupby(KEY)[list(metrics)].mean() for rows in runs.values()])
    if means.index.duplicated().any():
        raise SystemExit(f"{', '.join(map(str, runs))}: two directories hold the same "
                         "seed x model x method; pass each cell once")
    return means.rename(columns=metrics).sort_index()


def wrong_predictions(runs: Dict[Path, pd.DataFrame], targets: Dict[Path, str],
                      cells: pd.Index) -> int:
    """Rows of the given (seed, model, method) cells that the mask-side runs explained for a
    wrong prediction (``--target pred``)."""
    n = 0
    for d, rows in runs.items():
        if targets[d] == "pred":
            r = rows.set_index(KEY)
            r = r[r.index.isin(cells)]
            n += int((r["pred"] != r["label"]).sum())
    return n


def _corr(x: pd.Series, y: pd.Series) -> str:
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return "n/a"
    rho = stats.spearmanr(x, y).statistic
    tau = stats.kendalltau(x, y).statistic
    return "n/a" if math.isnan(rho) else f"ρ {rho:+.2f}, τ {tau:+.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", type=Path, nargs="+",
                    help="results directories: --grid runs and runs on the masks (in any order)")
    a = ap.parse_args()
    specs = {d: load_manifest(d)["spec"] for d in a.dirs}
    grid = {d: load_rows(d) for d in a.dirs if specs[d].get("grid")}
    mask = {d: load_rows(d) for d in a.dirs if not specs[d].get("grid")}
    if not grid or not mask:
        raise SystemExit("give at least one --grid run and one run on the masks")
    g, m = cell_means(grid, GRID), cell_means(mask, MASK)
    j = g.join(m, how="inner")
    if len(j) < len(g):
        raise SystemExit("the mask-side runs lack some seed x model x method cells of the grid runs")
    wrong = wrong_predictions(mask, {d: specs[d].get("target", "pred") for d in mask}, j.index)
    print(f"Per seed x model x method: mean over images in % ({' + '.join(map(str, grid))} vs "
          f"{' + '.join(map(str, mask))}; {wrong} mask-side rows explain a wrong prediction).\n")
    body = [[str(s), mo, me] + [f"{100 * v:.1f}" for v in r]
            for (s, mo, me), r in j.iterrows()]
    print(md_table(["seed", "model", "method"] + list(j.columns), body) + "\n")
    corr = []
    for seed, part in j.groupby(level="seed"):
        corr.append([f"seed {seed} ({len(part)} cells)"]
                    + [_corr(part["grid score"], part[c]) for c in MASK.values()])
    corr.append([f"pooled ({len(j)} cells)"] + [_corr(j["grid score"], j[c]) for c in MASK.values()])
    print("Rank correlation of the grid score with the mask-based scores over model x method "
          "cells:\n")
    print(md_table(["cells", *[f"grid score vs {c}" for c in MASK.values()]], corr) + "\n")
    pairs = pair_models(j.index.get_level_values("model").unique(), load_manifest(next(iter(grid))))
    same, total, body = 0, 0, []
    for lico, base in pairs:
        for seed in sorted(j.index.get_level_values("seed").unique()):
            for method in sorted(j.index.get_level_values("method").unique()):
                dg = j.loc[(seed, lico, method), "grid score"] - j.loc[(seed, base, method), "grid score"]
                dm = j.loc[(seed, lico, method), "mask PG"] - j.loc[(seed, base, method), "mask PG"]
                agree = (dg > 0) == (dm > 0) and dg != 0 and dm != 0
                same, total = same + agree, total + 1
                body.append([f"{lico} - {base}", str(seed), method, f"{100 * dg:+.1f}",
                             f"{100 * dm:+.1f}", "yes" if agree else "no"])
    print(md_table(["comparison", "seed", "method", "Δ grid score", "Δ mask PG", "same sign"], body))
    print(f"\nLICO − baseline has the same sign under the grid score and the mask pointing game "
          f"in {same} of {total} seed x method cells.")


if __name__ == "__main__":
    main()
