"""Issue 25's choice of the `paper` recipe's epoch count E, from experiments/paper_echoice.sh.

For every E trained and evaluated (results/paper_echoice/e<E>/: Grad-CAM on the 1000 images of
the val split, final weights of baseline_wrn28_2 seed 0) and its 2E, the paired differences
on the same images, E minus 2E:
  - accuracy: per image correct(E) - correct(2E); 95 % percentile bootstrap CI (20 000 draws)
    and the exact McNemar p (two-sided binomial test on the discordant images);
  - pointing game and energy pointing game: per image; bootstrap CI and the Wilcoxon
    signed-rank p (lico_bench.report.stats: ties kept, exact with <= 25 non-zero).
E is "within noise of 2E" when the CIs of accuracy and pointing game (the issue's criterion)
contain 0; energy PG is reported beside them. The chosen E is the smallest such E.
Writes results/paper_echoice/summary.md (and prints it).

    python experiments/echoice_table.py [results/paper_echoice]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats

from lico_bench.io import write_text
from lico_bench.report.common import load_rows, md_table
from lico_bench.report.stats import bootstrap_ci, wilcoxon_p

MODEL = "baseline_wrn28_2"
METRICS = ("pointing_game", "energy_pointing_game")


def per_image(results: Path):
    rows = load_rows(results)
    r = rows[rows["model"] == MODEL].sort_values("image_id")
    return r["image_id"].to_numpy(), {"accuracy": (r["pred"] == r["label"]).to_numpy(float),
                                      **{m: r[m].to_numpy(float) for m in METRICS}}


def main(root: Path) -> str:
    runs = {int(p.name[1:]): p for p in root.glob("e*") if p.name[1:].isdigit()
            and (p / "manifest.json").exists()}
    data = {}
    for e, p in sorted(runs.items()):
        try:
            data[e] = per_image(p)
        except Exception as err:   # an E still being evaluated: left out, said
            print(f"e{e}: not read ({err})", file=sys.stderr)
    head = ["E", "accuracy", "pointing game", "energy PG"]
    levels = [[str(e), *(f"{100 * v[k].mean():.1f}" for k in ("accuracy", *METRICS))]
              for e, (_, v) in sorted(data.items())]
    comp_head = ["E vs 2E", "Δ accuracy [95 % CI]", "McNemar p", "Δ pointing game [CI]",
                 "Wilcoxon p", "Δ energy PG [CI]", "Wilcoxon p", "within noise"]
    comps, chosen = [], None
    for e in sorted(data):
        if 2 * e not in data:
            continue
        (ia, a), (ib, b) = data[e], data[2 * e]
        assert np.array_equal(ia, ib), "E and 2E were evaluated on different images"
        cells, inside = [], True
        for k in ("accuracy", *METRICS):
            d = a[k] - b[k]
            lo, hi = bootstrap_ci(d)
            if k != "energy_pointing_game":
                inside &= bool(lo <= 0 <= hi)
            if k == "accuracy":
                n01, n10 = int((d < 0).sum()), int((d > 0).sum())
                p = (stats.binomtest(n10, n01 + n10, 0.5).pvalue if n01 + n10 else 1.0)
            else:
                p = wilcoxon_p(d)
            cells += [f"{100 * d.mean():+.1f} [{100 * lo:.1f}, {100 * hi:.1f}]", f"{p:.3g}"]
        comps.append([f"{e} vs {2 * e}", *cells, "yes" if inside else "no"])
        if inside and chosen is None:
            chosen = e
    n = len(next(iter(data.values()))[0]) if data else 0
    text = "\n".join([
        "# Issue 25: the epoch count E of the `paper` recipe on shapes", "",
        f"baseline_wrn28_2, seed 0, trained E epochs (each E a run of its own: the cosine "
        f"schedule spans its own steps), Grad-CAM on the first {n} images of the val split "
        "(the test split stays unseen by the choice). Values in %.", "",
        md_table(head, levels), "",
        "Paired over the same images, E minus 2E; within noise = the 95 % CIs of accuracy "
        "and pointing game contain 0 (energy PG for information).", "",
        md_table(comp_head, comps) if comps else "(no E with its 2E evaluated yet)", "",
        (f"**Chosen: E = {chosen}** (the smallest E within noise of 2E)." if chosen is not None
         else "No E is within noise of its 2E among those evaluated: train longer."), "",
        "Commands: `bash experiments/paper_echoice.sh` (from a clean worktree at the commit in "
        "each e<E>/manifest.json), then `python experiments/echoice_table.py " f"{root}`.", ""])
    write_text(root / "summary.md", text)
    return text


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/paper_echoice")))
