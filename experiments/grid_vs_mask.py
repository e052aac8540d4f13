"""How well the grid pointing game agrees with the mask-based pointing game (issue 27, item 4).

Reads two results directories of the same models, methods and seeds on ``shapes``: one run
with ``--grid N`` (rows: ``grid_score``, ``pointing_game`` and ``energy_pointing_game`` of the
explained cell) and one without (rows: the pointing games on the real object masks). For
every seed x model x method cell it takes the mean over that experiment's images, then

* per seed: Spearman's rho and Kendall's tau-b over the model x method cells between the
  grid score and each mask-based score (pointing game, energy pointing game);
* pooled over seeds: the same over every seed x model x method cell;
* per seed and method: whether LICO - baseline has the same sign under the grid score as
  under the mask-based pointing game.

Prints Markdown; the numbers in docs/metrics.md's "Grid pointing game" paragraph are this output.
Usage::

    python experiments/grid_vs_mask.py results/shapes_grid results/shapes_mask_pg
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
from scipy import stats

from lico_bench.report.common import load_manifest, load_rows, md_table, pair_models

GRID = {"grid_score": "grid score", "pointing_game": "grid PG",
        "energy_pointing_game": "grid energy PG"}
MASK = {"pointing_game": "mask PG", "energy_pointing_game": "mask energy PG"}


def cell_means(results: Path, metrics: dict) -> pd.DataFrame:
    """Mean over images per (seed, model, method) of each metric, columns renamed."""
    rows = load_rows(results)
    means = rows.groupby(["seed", "model", "method"])[list(metrics)].mean()
    return means.rename(columns=metrics)


def _corr(x: pd.Series, y: pd.Series) -> str:
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return "n/a"
    rho = stats.spearmanr(x, y).statistic
    tau = stats.kendalltau(x, y).statistic
    return "n/a" if math.isnan(rho) else f"ρ {rho:+.2f}, τ {tau:+.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", type=Path, help="results directory of the --grid run")
    ap.add_argument("mask", type=Path, help="results directory of the run on the masks")
    a = ap.parse_args()
    g, m = cell_means(a.grid, GRID), cell_means(a.mask, MASK)
    j = g.join(m, how="inner")
    if len(j) < len(g) or len(j) < len(m):
        raise SystemExit("the two runs differ in seeds, models or methods")
    print(f"Per seed x model x method: mean over images in % ({a.grid} vs {a.mask}).\n")
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
    pairs = pair_models(j.index.get_level_values("model").unique(), load_manifest(a.grid))
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
