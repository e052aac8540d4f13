"""The README's per-seed tables (issue 25), read from a results directory's summary.csv.

For every paired comparison (each LICO-family or peer model - its baseline) and each chosen method and
metric: the baseline's and the other model's means over seeds and images, the per-seed mean
differences (points, in seed order) and the seed-level verdict (t-test over those differences,
Holm over the summary's table: lico_bench.report.stats). Nothing is recomputed here: the
numbers are the summary's, rounded as the tables print them, so the README cannot drift from
`lico-bench report`. With ``--confidence``: each model's mean probability of the explained
class on the full image (the rows' ``target_prob``, what insertion / p(clean) divides by) per
seed, for one method's rows (every method explains the same images with the same models).

    python experiments/seed_table.py results/paper_headline
    python experiments/seed_table.py results/paper_variants --method gradcampp \
        --metric pointing_game --metric insertion_gain
    python experiments/seed_table.py results/paper_slow --confidence
    python experiments/seed_table.py results/paper_peers --matrix energy_pointing_game

``--matrix METRIC``: one metric, methods down and comparisons across; each cell the mean
difference (points) and both verdicts from the trained model's side, "(images / seeds)":
better, worse (the baseline better) or – (no clear difference).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lico_bench.report.common import NICE, load_rows, md_table

METHODS = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "scorecam": "Score-CAM",
           "rise": "RISE", "saliency": "Saliency", "inputxgrad": "Input × gradient",
           "intgrad": "Integrated gradients"}
METRICS = ("pointing_game", "energy_pointing_game", "insertion", "insertion_gain", "deletion",
           "map_dependence")


def points(v, sign: str = "") -> str:
    """A fraction in points with one decimal, a typographic minus ("−2.9", "+1.0")."""
    return f"{100 * float(v):{sign}.1f}".replace("-", "−")


def seed_table(results: Path, methods=None, metrics=METRICS) -> str:
    """Markdown: comparison | method | metric | baseline | other | Δ per seed | over seeds."""
    s = pd.read_csv(results / "summary.csv")
    p = s[s["kind"] == "paired"]
    methods = methods or [m for m in METHODS if m in set(p["method"])]
    body = []
    for comp in dict.fromkeys(p["model"]):   # in the summary's order
        for me in methods:
            for mt in metrics:
                r = p[(p["model"] == comp) & (p["method"] == me) & (p["metric"] == mt)]
                if r.empty:
                    continue
                r = r.iloc[0]
                arrow = "↑" if r["higher_is_better"] else "↓"
                diffs = ", ".join(points(d, "+") for d in str(r["seed_diffs"]).split(";"))
                body.append([comp.split(" - ")[0], METHODS.get(me, me), f"{NICE.get(mt, mt)} {arrow}",
                             points(r["baseline"]), points(r["lico"]), diffs, r["seed_verdict"]])
    return md_table(["model", "method", "metric", "baseline", "model's", "Δ per seed (points)",
                     "over seeds"], body)


def _side(verdict: str) -> str:
    """A verdict read from the trained model's side: better, worse or –."""
    return "–" if verdict == "no clear difference" else "worse" if verdict == "baseline better" else "better"


def matrix_table(results: Path, metric: str, methods=None) -> str:
    """Markdown: method | Δ (images / seeds) per comparison, for one metric."""
    s = pd.read_csv(results / "summary.csv")
    p = s[(s["kind"] == "paired") & (s["metric"] == metric)]
    if p.empty:
        raise SystemExit(f"no paired rows for metric {metric!r} in {results / 'summary.csv'}")
    methods = methods or [m for m in METHODS if m in set(p["method"])]
    comps = list(dict.fromkeys(p["model"]))
    body = []
    for me in methods:
        line = [METHODS.get(me, me)]
        for comp in comps:
            r = p[(p["model"] == comp) & (p["method"] == me)]
            line.append("" if r.empty else
                        f"{points(r.iloc[0]['mean'], '+')} ({_side(r.iloc[0]['verdict'])} / "
                        f"{_side(r.iloc[0]['seed_verdict'])})")
        body.append(line)
    arrow = "↑" if p["higher_is_better"].iloc[0] else "↓"
    return md_table([f"{NICE.get(metric, metric)} {arrow}"] + [c.split(" - ")[0] for c in comps], body)


def confidence_table(results: Path) -> str:
    """Markdown: model | mean p(explained class | full image) per seed (%) | over seeds."""
    rows = load_rows(results)
    rows = rows[rows["method"] == sorted(rows["method"].unique())[0]]
    t = rows.groupby(["model", "seed"])["target_prob"].mean().unstack("seed")
    body = [[m, ", ".join(points(v) for v in r), points(r.mean())] for m, r in t.iterrows()]
    return md_table(["model", "p(explained class), per seed (%)", "mean"], body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--method", action="append", help="default: every method of the run")
    ap.add_argument("--metric", action="append", help=f"default: {', '.join(METRICS)}")
    ap.add_argument("--confidence", action="store_true",
                    help="print each model's mean probability of the explained class per seed")
    ap.add_argument("--matrix", metavar="METRIC",
                    help="one metric: methods x comparisons, Δ (image / seed verdicts)")
    a = ap.parse_args()
    if a.matrix:
        print(matrix_table(a.results, a.matrix, a.method))
    else:
        print(confidence_table(a.results) if a.confidence
              else seed_table(a.results, a.method, a.metric or METRICS))


if __name__ == "__main__":
    main()
