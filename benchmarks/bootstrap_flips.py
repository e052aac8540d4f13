"""Do the committed verdicts depend on the bootstrap's seed? (issue 25, item 5)

For every results directory given, the paired comparisons of ``summary.md`` (LICO - baseline)
and of ``methods.md`` (method A - method B) are recomputed from the rows as ``lico-bench
report`` computes them; the p-values and their Holm adjustment do not depend on the bootstrap
and are computed once; the crossed bootstrap CI is recomputed with bootstrap seeds 0..K-1 at
each draw count. Printed per draw count:

* verdict flips: comparisons whose image-level verdict is not the same for all K seeds;
* printed-CI changes: comparisons whose CI, printed as the tables print it (% with one
  decimal), is not the same for all K seeds, and the largest spread of a bound over the
  seeds (in % points);
* near 0: comparisons whose CI bound is within 0.1 % points of 0 for some seed.

With ``--screen PT`` the later (larger) draw counts recompute only the comparisons that came
within PT % points of 0 at the first count (their bounds' spread at the larger count is
smaller still); the others cannot flip unless their bound moved by more than PT.

Reproduce (the figures in docs/statistics.md):
    python benchmarks/bootstrap_flips.py results/* --seeds 20 --draws 2000 20000 --screen 1
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lico_bench.report.common import load_manifest, load_rows, metric_directions
from lico_bench.report.method_stats import compute_method_summary, pair_verdict
from lico_bench.report.stats import crossed_bootstrap_ci, verdict
from lico_bench.report.tables import compute_summary


def tables(results: Path):
    """[(name, paired rows DataFrame, difference matrices, verdict function)]."""
    manifest, rows = load_manifest(results), load_rows(results)
    directions = metric_directions(manifest, rows)
    mats: list = []
    s = compute_summary(rows, directions, manifest, matrices=mats)
    out = [("summary", s[s["kind"] == "paired"].reset_index(drop=True), mats,
            lambda r, lo, hi: verdict(lo, hi, r["p_holm"], r["higher_is_better"]))]
    if rows["method"].nunique() > 1:
        mats2: list = []
        ms = compute_method_summary(rows, directions, manifest, matrices=mats2)
        out.append(("methods", ms[ms["kind"] == "method_pair"].reset_index(drop=True), mats2,
                    lambda r, lo, hi: pair_verdict(r["method_a"], r["method_b"], lo, hi,
                                                   r["p_holm"], r["higher_is_better"])))
    return out


def measure(paired, mats, verdict_of, n_seeds: int, draws: int, only=None) -> dict:
    """Flip counts over bootstrap seeds 0..n_seeds-1; ``only``: indices of the comparisons
    to recompute (the others are counted as stable). Also returns, per comparison, the
    smallest |CI bound| over the seeds (for screening)."""
    flips, printed, near0, spread, closest = [], 0, 0, 0.0, {}
    for j, ((_, r), d) in enumerate(zip(paired.iterrows(), mats)):
        if only is not None and j not in only:
            continue
        cis = np.array([crossed_bootstrap_ci(d, seed=k, n_resamples=draws) for k in range(n_seeds)])
        if not np.isfinite(cis).all():
            continue
        closest[j] = float(np.abs(cis).min())
        vs = {verdict_of(r, lo, hi) for lo, hi in cis}
        if len(vs) > 1:
            flips.append(f"{r['model']} / {r['method']} / {r['metric']}: {sorted(vs)} "
                         f"CI bounds {100 * cis.min(axis=0)} .. {100 * cis.max(axis=0)}")
        shown = {(f"{100 * lo:.1f}", f"{100 * hi:.1f}") for lo, hi in cis}
        printed += len(shown) > 1
        near0 += bool((np.abs(cis) < 1e-3).any())
        spread = max(spread, float(100 * (cis.max(axis=0) - cis.min(axis=0)).max()))
    return dict(n=len(mats), done=len(closest), flips=flips, printed=printed, near0=near0,
                spread=spread, closest=closest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--seeds", type=int, default=20, help="bootstrap seeds 0..K-1")
    ap.add_argument("--draws", type=int, nargs="+", default=[2000],
                    help="draw counts, ascending; every comparison at the first")
    ap.add_argument("--screen", type=float, default=None, metavar="PT",
                    help="at the later draw counts recompute only the comparisons with a CI "
                         "bound within PT %% points of 0 at the first (or a flip there)")
    a = ap.parse_args()
    print(f"command: python benchmarks/bootstrap_flips.py {' '.join(map(str, a.results))} "
          f"--seeds {a.seeds} --draws {' '.join(map(str, a.draws))}"
          + (f" --screen {a.screen:g}" if a.screen is not None else ""))
    total = {b: [0, 0, 0, 0, 0.0, 0] for b in a.draws}
    for res in a.results:
        for name, paired, mats, vf in tables(res):
            only = None
            for b in a.draws:
                t = time.perf_counter()
                m = measure(paired, mats, vf, a.seeds, b, only)
                if only is None and a.screen is not None:
                    only = {j for j, c in m["closest"].items() if 100 * c < a.screen}
                tot = total[b]
                tot[0] += m["n"]; tot[1] += len(m["flips"]); tot[2] += m["printed"]
                tot[3] += m["near0"]; tot[4] = max(tot[4], m["spread"]); tot[5] += m["done"]
                print(f"{res}/{name}: {b} draws: {m['n']} comparisons ({m['done']} recomputed), "
                      f"{len(m['flips'])} verdict flips, {m['printed']} printed CIs change, "
                      f"{m['near0']} with a bound within 0.1 pt of 0, largest bound spread "
                      f"{m['spread']:.3f} pt ({time.perf_counter() - t:.1f} s)", flush=True)
                for f in m["flips"]:
                    print("    flip:", f, flush=True)
    for b, (n, f, p, z, s, done) in total.items():
        print(f"ALL at {b} draws: {n} comparisons ({done} recomputed), {f} verdict flips over "
              f"{a.seeds} bootstrap seeds, {p} printed CIs change, {z} with a bound within 0.1 "
              f"pt of 0, largest bound spread {s:.3f} pt")


if __name__ == "__main__":
    main()
