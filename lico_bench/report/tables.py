"""``lico-bench report RESULTS_DIR``: summary tables from the per-image rows alone.

Writes ``summary.csv`` (long format, every number), ``summary.md`` (GitHub/terminal) and
``summary.tex`` (booktabs). Three tables:

* scores: per model x method x metric, the mean over images with a 95 % bootstrap CI
  (two-stage over seeds and images when there are several seeds), and the number of rows
  whose map was flagged (constant, all-zero or NaN);
* accuracy per model on the evaluated images;
* paired differences LICO - baseline over the same images (same dataset, seed, image), per
  method x metric, with a bootstrap CI and a Wilcoxon signed-rank p-value.

"overall" = insertion - deletion per image (METRICS.md), added when both are present.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd

from ..errors import UserError
from ..io import write_text
from ..results import REPAIR, expected_images, read_rows
from .stats import bootstrap_ci, hierarchical_bootstrap_ci, wilcoxon_p

NICE = {"insertion": "Insertion", "deletion": "Deletion", "overall": "Overall (ins-del)",
        "pointing_game": "Pointing game", "energy_pointing_game": "Energy PG", "accuracy": "Accuracy"}


def load_manifest(results: Path) -> dict:
    path = Path(results) / "manifest.json"
    if not path.exists():
        raise UserError(f"{results} is not a results directory (no manifest.json); pass the "
                        "directory that 'lico-bench run' printed.")
    try:
        man = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path} is not valid JSON; the results directory is damaged.") from None
    if not (isinstance(man, dict) and isinstance(man.get("spec", {}), dict)
            and isinstance(man.get("metrics", {}), dict)):
        raise UserError(f"{path} is not a lico-bench manifest (not the JSON object 'lico-bench "
                        "run' writes); the results directory is damaged.")
    return man


def load_rows(results: Path) -> pd.DataFrame:
    """All per-image rows of complete experiments, as one DataFrame (curves dropped)."""
    files = sorted((Path(results) / "rows").glob("*.jsonl"))
    if not files:
        raise UserError(f"{results} has no finished experiments yet (rows/*.jsonl); run "
                        "'lico-bench run' first or wait for it to finish one.")
    # Verified, not trusted: checksum, row count and image ids (lico_bench.results).
    n = expected_images(results)
    recs = []
    for f in files:
        for r in read_rows(f, n, fix=REPAIR)[0]:
            recs.append({k: v for k, v in r.items() if not k.startswith("curve_")})
    return pd.DataFrame.from_records(recs)


def metric_directions(manifest: dict, rows: pd.DataFrame) -> Dict[str, bool]:
    """metric name -> higher_is_better, in the manifest's order (+ overall)."""
    found = {m: bool(v["higher_is_better"]) for m, v in manifest.get("metrics", {}).items()
             if m in rows.columns}
    if "insertion" in found and "deletion" in found:
        found["overall"] = True
    order = ["insertion", "deletion", "overall", "pointing_game", "energy_pointing_game"]
    names = sorted(found, key=lambda m: (order.index(m) if m in order else len(order), m))
    return {m: found[m] for m in names}


def _ci(df: pd.DataFrame, col: str) -> tuple:
    groups = [g[col].to_numpy(dtype=float) for _, g in df.groupby("seed", sort=True)]
    if len(groups) > 1:
        per_seed = [np.nanmean(g) if np.isfinite(g).any() else np.nan for g in groups]
        return float(np.nanmean(per_seed)), *hierarchical_bootstrap_ci(groups)
    x = groups[0]
    mean = float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
    return mean, *bootstrap_ci(x)


def compute_summary(rows: pd.DataFrame, directions: Dict[str, bool]) -> pd.DataFrame:
    """Long table: kind (score | accuracy | paired), model, method, metric, mean, ci_low, ..."""
    rows = rows.copy()
    if "overall" in directions:
        rows["overall"] = rows["insertion"] - rows["deletion"]
    out: List[dict] = []
    for (model, method), g in rows.groupby(["model", "method"], sort=True):
        for metric, hib in directions.items():
            mean, lo, hi = _ci(g, metric)
            out.append(dict(kind="score", model=model, method=method, metric=metric, mean=mean,
                            ci_low=lo, ci_high=hi, n=int(g[metric].notna().sum()),
                            n_flagged=int((g["map_status"] != "ok").sum()),
                            n_seeds=int(g["seed"].nunique()), higher_is_better=hib))
    first_method = sorted(rows["method"].unique())[0]
    for model, g in rows[rows["method"] == first_method].groupby("model", sort=True):
        g = g.assign(accuracy=(g["pred"] == g["label"]).astype(float))
        mean, lo, hi = _ci(g, "accuracy")
        out.append(dict(kind="accuracy", model=model, method="", metric="accuracy", mean=mean,
                        ci_low=lo, ci_high=hi, n=len(g), n_flagged=0,
                        n_seeds=int(g["seed"].nunique()), higher_is_better=True))
    # Paired LICO - baseline on the same images.
    models = set(rows["model"])
    for lico in sorted(m for m in models if m.startswith("lico_")):
        base = "baseline_" + lico[len("lico_"):]
        if base not in models:
            continue
        for method in sorted(rows["method"].unique()):
            a = rows[(rows["model"] == lico) & (rows["method"] == method)]
            b = rows[(rows["model"] == base) & (rows["method"] == method)]
            keys = ["dataset", "seed", "image_id"]
            j = a.merge(b, on=keys, suffixes=("_lico", "_base"))
            if j.empty:
                continue
            for metric, hib in directions.items():
                d = (j[f"{metric}_lico"] - j[f"{metric}_base"]).to_numpy(dtype=float)
                ok = ~np.isnan(d)
                dd = j.assign(diff=d)
                mean, lo, hi = _ci(dd, "diff")
                out.append(dict(kind="paired", model=f"{lico} - {base}", method=method,
                                metric=metric, mean=mean, ci_low=lo, ci_high=hi, n=int(ok.sum()),
                                n_flagged=int(((j["map_status_lico"] != "ok") | (j["map_status_base"] != "ok")).sum()),
                                n_seeds=int(j["seed"].nunique()), higher_is_better=hib,
                                baseline=float(np.nanmean(j[f"{metric}_base"])),
                                lico=float(np.nanmean(j[f"{metric}_lico"])),
                                p_wilcoxon=wilcoxon_p(d)))
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- formatting
def _pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def _cell(r, signed: bool = False) -> str:
    if not np.isfinite(r["mean"]):
        return "n/a"
    m = f"{100 * r['mean']:+.1f}" if signed else _pct(r["mean"])
    if not np.isfinite(r["ci_low"]):
        return m
    return f"{m} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"


def _arrow(hib: bool) -> str:
    return "↑" if hib else "↓"


def _verdict(r) -> str:
    if not np.isfinite(r["ci_low"]) or (r["ci_low"] <= 0 <= r["ci_high"]):
        return "no clear difference"
    lico_higher = r["ci_low"] > 0
    return "LICO better" if lico_higher == bool(r["higher_is_better"]) else "baseline better"


def _md_table(header: List[str], body: List[List[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, body)])


def _score_grid(summary: pd.DataFrame, directions: Dict[str, bool]):
    s = summary[summary["kind"] == "score"]
    header = ["model", "method"] + [f"{NICE.get(m, m)} {_arrow(h)}" for m, h in directions.items()] + ["flagged maps"]
    body = []
    for (model, method), g in s.groupby(["model", "method"], sort=True):
        by = {r["metric"]: r for _, r in g.iterrows()}
        body.append([model, method] + [_cell(by[m]) if m in by else "" for m in directions]
                    + [str(int(g["n_flagged"].max()))])
    return header, body


def _paired_grid(summary: pd.DataFrame):
    p = summary[summary["kind"] == "paired"]
    header = ["comparison", "method", "metric", "baseline", "LICO", "Δ LICO − baseline [95% CI]",
              "Wilcoxon p", "n", "verdict"]
    body = [[r["model"], r["method"], f"{NICE.get(r['metric'], r['metric'])} {_arrow(r['higher_is_better'])}",
             _pct(r["baseline"]), _pct(r["lico"]), _cell(r, signed=True),
             f"{r['p_wilcoxon']:.3g}", str(int(r["n"])), _verdict(r)] for _, r in p.iterrows()]
    return header, body


def _acc_grid(summary: pd.DataFrame):
    a = summary[summary["kind"] == "accuracy"]
    header = ["model", "accuracy [95% CI]", "images", "seeds"]
    body = [[r["model"], _cell(r), str(int(r["n"])), str(int(r["n_seeds"]))] for _, r in a.iterrows()]
    return header, body


def to_markdown(summary: pd.DataFrame, directions: Dict[str, bool], manifest: dict) -> str:
    spec = manifest.get("spec", {})
    parts = [f"# Results: {spec.get('dataset', '?')} ({spec.get('split', 'test')} split, "
             f"{spec.get('n_images', '?')} images, seeds {spec.get('seeds', '?')})", "",
             "Values in % (mean over images, 95 % bootstrap CI in brackets). ↑ higher is "
             "better, ↓ lower is better. Explained class: "
             + ("the model's prediction." if spec.get("target", "pred") == "pred" else "the label."), "",
             "## Saliency scores", "", _md_table(*_score_grid(summary, directions)), "",
             "## Accuracy on the evaluated images", "", _md_table(*_acc_grid(summary)), ""]
    if (summary["kind"] == "paired").any():
        parts += ["## Paired difference LICO − baseline (same images)", "",
                  _md_table(*_paired_grid(summary)), "",
                  "The verdict names a side only when the 95 % CI of the mean difference "
                  "excludes 0; p is the two-sided Wilcoxon signed-rank test over images.", ""]
    if manifest.get("command"):
        parts += [f"Command: `{manifest['command']}`", ""]
    return "\n".join(parts)


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("Δ", r"$\Delta$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"),
                 ("−", "--")):
        s = s.replace(a, b)
    return s


def _tex_table(header: List[str], body: List[List[str]], caption: str) -> str:
    cols = "l" * 2 + "r" * (len(header) - 2)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{_tex_escape(caption)}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex_escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_latex(summary: pd.DataFrame, directions: Dict[str, bool], manifest: dict) -> str:
    spec = manifest.get("spec", {})
    where = f"{spec.get('dataset', '?')}, {spec.get('n_images', '?')} images"
    out = ["% Generated by lico-bench report; needs \\usepackage{booktabs}.",
           _tex_table(*_score_grid(summary, directions), f"Saliency scores in % ({where}), 95% bootstrap CI."),
           _tex_table(*_acc_grid(summary), f"Accuracy in % on the evaluated images ({where})."),
           ]
    if (summary["kind"] == "paired").any():
        out.append(_tex_table(*_paired_grid(summary),
                              f"Paired difference LICO - baseline ({where}), 95% CI, Wilcoxon signed-rank p."))
    return "\n".join(out)


def build_report(results: str | Path) -> Dict[str, Path]:
    """Read ``results``' rows and manifest; write summary.csv/.md/.tex; return their paths."""
    results = Path(results)
    manifest = load_manifest(results)
    rows = load_rows(results)
    directions = metric_directions(manifest, rows)
    summary = compute_summary(rows, directions)
    buf = io.StringIO()
    summary.to_csv(buf, index=False, float_format="%.6g")
    paths = {"csv": write_text(results / "summary.csv", buf.getvalue()),
             "md": write_text(results / "summary.md", to_markdown(summary, directions, manifest)),
             "tex": write_text(results / "summary.tex", to_latex(summary, directions, manifest))}
    return paths
