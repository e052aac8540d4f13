"""Compare the per-image rows of two results directories (same images, other device or
precision): how far apart are the scores, and do the tables' conclusions move?

    python benchmarks/compare_rows.py results/gpu_bf16 results/gpu_fp32

For every experiment present in both and every scalar metric: the mean absolute per-image
difference, the largest one, the difference of the two means (what a table would show),
and the share of images whose prediction agrees. Exit status 0; it reports, it does not judge.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SKIP = {"dataset", "model", "method", "seed", "image_id", "label", "pred", "target", "map_status"}


def read_rows(path: Path) -> dict:
    rows = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        rows[r["image_id"]] = r
    return rows


def compare(a_dir: Path, b_dir: Path) -> list:
    """One dict per (experiment, metric) with n, mean_abs, max_abs, mean_a, mean_b, pred_agree."""
    out = []
    for pa in sorted((a_dir / "rows").glob("*.jsonl")):
        pb = b_dir / "rows" / pa.name
        if not pb.exists():
            continue
        ra, rb = read_rows(pa), read_rows(pb)
        ids = sorted(set(ra) & set(rb))
        if not ids:
            continue
        agree = sum(ra[i]["pred"] == rb[i]["pred"] for i in ids) / len(ids)
        metrics = [k for k, v in ra[ids[0]].items()
                   if k not in SKIP and not k.startswith("curve_") and isinstance(v, (int, float))]
        for m in metrics:
            pairs = [(ra[i][m], rb[i][m]) for i in ids
                     if ra[i][m] is not None and rb[i][m] is not None
                     and math.isfinite(ra[i][m]) and math.isfinite(rb[i][m])]
            if not pairs:
                continue
            d = [abs(x - y) for x, y in pairs]
            out.append({"experiment": pa.stem, "metric": m, "n": len(pairs),
                        "mean_abs": sum(d) / len(d), "max_abs": max(d),
                        "mean_a": sum(x for x, _ in pairs) / len(pairs),
                        "mean_b": sum(y for _, y in pairs) / len(pairs), "pred_agree": agree})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    res = compare(args.a, args.b)
    if not res:
        print(f"no experiment in common between {args.a} and {args.b}")
        return 0
    print(f"A = {args.a}\nB = {args.b}")
    print(f"{'experiment':46s} {'metric':22s} {'n':>4s} {'mean|A-B|':>10s} {'max|A-B|':>10s} "
          f"{'mean A':>9s} {'mean B':>9s} {'pred=':>6s}")
    for r in res:
        print(f"{r['experiment']:46s} {r['metric']:22s} {r['n']:4d} {r['mean_abs']:10.2e} "
              f"{r['max_abs']:10.2e} {r['mean_a']:9.4f} {r['mean_b']:9.4f} {r['pred_agree']:6.1%}")
    worst = max(res, key=lambda r: abs(r["mean_a"] - r["mean_b"]))
    print(f"largest difference of means: {worst['experiment']} {worst['metric']} "
          f"{worst['mean_a'] - worst['mean_b']:+.2e}")
    print(f"reproduce: python benchmarks/compare_rows.py {args.a} {args.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
