"""Comparing attribution methods, the tables: ``methods.csv`` (long format, every number),
``methods.md`` and ``methods.tex``, written by ``lico-bench report`` next to ``summary.*``.
The statistics and their definitions (paired differences, ranks, Krippendorff's alpha,
Kendall's tau-b) are in :mod:`lico_bench.report.method_stats`.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from ..io import write_text
from .common import NICE, load_manifest, load_rows, md_table, metric_directions, tex_table
from .method_stats import (KINDS, NO_DIFFERENCE, RELIABLE_ALPHA, TENTATIVE_ALPHA,  # noqa: F401
                           alpha_bootstrap_ci, cell_ranks, compute_method_summary,
                           kendall_tau_b, krippendorff_alpha, method_order, oriented,
                           pair_verdict, score_cube)
from .stats import ALPHA, CONFIDENCE

def _f(v: float, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None or not np.isfinite(v) else fmt.format(v).replace("-", "−")


def _ci(r, fmt: str = "{:.2f}") -> str:
    if not np.isfinite(r["mean"]):
        return "n/a"
    if not np.isfinite(r["ci_low"]):
        return _f(r["mean"], fmt)
    return f"{_f(r['mean'], fmt)} [{_f(r['ci_low'], fmt)}, {_f(r['ci_high'], fmt)}]"


def _pct_ci(r) -> str:
    """A difference in % points: +1.2 [0.3, 2.0]."""
    if not np.isfinite(r["mean"]):
        return "n/a"
    s = f"{100 * r['mean']:+.1f}".replace("-", "−")
    if np.isfinite(r["ci_low"]):
        s += f" [{_f(100 * r['ci_low'], '{:.1f}')}, {_f(100 * r['ci_high'], '{:.1f}')}]"
    return s


def _nice(metric: str, hib: Optional[bool] = None) -> str:

    name = NICE.get(metric, metric)
    return name if hib is None else f"{name} {'↑' if hib else '↓'}"


def _reading(alpha: float) -> str:
    if not np.isfinite(alpha):
        return "undefined"
    if alpha >= RELIABLE_ALPHA:
        return "reliable"
    if alpha >= TENTATIVE_ALPHA:
        return "tentative"
    return "unreliable"


def rank_grid(ms: pd.DataFrame, model: str, directions: Dict[str, bool], methods: Sequence[str]):
    """Rows = methods (mean rank [CI]), then alpha [CI] and its reading; columns = metrics."""
    g = ms[ms["model"] == model]
    rk, al = g[g["kind"] == "rank"], g[g["kind"] == "alpha"]
    header = ["method"] + [_nice(m, h) for m, h in directions.items()]
    body = []
    for meth in methods:
        cells = []
        for m in directions:
            rr = rk[(rk["method"] == meth) & (rk["metric"] == m)]
            cells.append(_ci(rr.iloc[0]) if len(rr) else "")
        body.append([meth] + cells)
    alphas = [al[al["metric"] == m].iloc[0] if (al["metric"] == m).any() else None for m in directions]
    body.append(["Krippendorff α (ordinal) [CI]"] + [_ci(a) if a is not None else "" for a in alphas])
    body.append(["images rank methods alike?"] + [_reading(a["mean"]) if a is not None else ""
                                                  for a in alphas])
    return header, body


def _who(v) -> str:
    """The method a verdict names, "–" for no clear difference (or no verdict)."""
    return v[: -len(" better")] if isinstance(v, str) and v.endswith(" better") else "–"


def pair_grid(ms: pd.DataFrame, model: str, directions: Dict[str, bool]):
    """Rows = method pairs A − B; columns = metrics: Δ [CI] and the method the rule names
    (image level), with several seeds followed by "(seeds: ...)", the seed-level verdict."""
    p = ms[(ms["kind"] == "method_pair") & (ms["model"] == model)]
    header = ["A − B"] + [_nice(m, h) for m, h in directions.items()]
    body = []
    for pair in dict.fromkeys(p["method"]):
        cells = []
        for m in directions:
            rr = p[(p["method"] == pair) & (p["metric"] == m)]
            if not len(rr):
                cells.append("")
                continue
            r = rr.iloc[0]
            cell = f"{_pct_ci(r)} {_who(r['verdict'])}"
            if int(r["n_seeds"]) > 1:
                cell += f" (seeds: {_who(r['seed_verdict'])})"
            cells.append(cell)
        body.append([pair.replace(" - ", " − ")] + cells)
    return header, body


def tau_grid(ms: pd.DataFrame, model: str):
    t = ms[(ms["kind"] == "tau") & (ms["model"] == model)]
    header = ["metrics", "per-image τ [CI]", "images", "τ of the mean-rank orderings"]
    body = [[f"{_nice(r['metric'])} vs {_nice(r['metric_b'])}", _ci(r), str(int(r["n"])),
             _f(r["tau_overall"])] for _, r in t.iterrows()]
    return header, body


def _notes(ms: pd.DataFrame) -> List[str]:
    k = int(ms.loc[ms["kind"] == "method_pair", "p_holm"].notna().sum())
    ks = int(ms.loc[ms["kind"] == "method_pair", "p_seed"].notna().sum()) if "p_seed" in ms else 0
    seeds = int(ms["n_seeds"].max()) if len(ms) else 1
    crossed = " (seeds and images resampled crossed)" if seeds > 1 else ""
    return [
        f"Mean rank: in each image{' and seed' if seeds > 1 else ''} the methods are ranked by the "
        "metric (1 = best, ties share the average rank), then averaged; "
        f"{100 * CONFIDENCE:g}% bootstrap CI{crossed} in brackets.",
        "Krippendorff α (ordinal; Tomsett et al., AAAI 2020): every image is a rater that ranks "
        "the methods; α = 1 when all images rank them alike, ≈ 0 when the ranking is no more "
        f"consistent than chance. Reliable ≥ {RELIABLE_ALPHA:g}, tentative ≥ {TENTATIVE_ALPHA:g} "
        "(Krippendorff's guideline); below that, the metric's mean does not order these methods "
        "image by image.",
        f"Δ = A − B in % points over the same images, {100 * CONFIDENCE:g}% CI; the name after "
        "it is the better method when the CI excludes 0 and the Holm-adjusted p (two-sided "
        f"Wilcoxon signed-rank over the images, Holm over the {k} method comparisons of this "
        f"report) is below {ALPHA:g}; \"–\": no clear difference."
        + (" \"(seeds: ...)\": the seed-level verdict, the same rule on the per-seed mean "
           "differences (one-sample t-test with S − 1 df and its t-interval; Holm over the "
           f"{ks} seed-level tests), which takes the training seed as the unit."
           if seeds > 1 else ""),
        "Kendall τ-b between two metrics' orderings of the methods: per image (mean and CI over "
        "images; images where a metric ties every method are left out) and between the "
        "mean-rank orderings of the rank table. Overall (ins−del) is built from insertion and "
        "deletion, so its agreement with them is partly by construction.",
    ]


def to_markdown(ms: pd.DataFrame, directions: Dict[str, bool], methods: Sequence[str],
                manifest: dict) -> str:

    spec = manifest.get("spec", {})
    parts = [f"# Comparing attribution methods: {spec.get('dataset', '?')} "
             f"({spec.get('split', 'test')} split, {spec.get('n_images', '?')} images, "
             f"seeds {spec.get('seeds', '?')})", "",
             "Methods compared on the same images of each model. ↑ higher is better, ↓ lower "
             "is better.", ""]
    parts += [f"- {n}" for n in _notes(ms)] + [""]
    for model in sorted(ms["model"].unique()):
        parts += [f"## {model}", "", "### Mean rank (1 = best) and how reliably the metric ranks "
                  "methods", "", md_table(*rank_grid(ms, model, directions, methods)), "",
                  "### Paired differences between methods, % points", "",
                  md_table(*pair_grid(ms, model, directions)), "",
                  "### Agreement between metrics (Kendall τ-b)", "",
                  md_table(*tau_grid(ms, model)), ""]
    return "\n".join(parts)


def to_latex(ms: pd.DataFrame, directions: Dict[str, bool], methods: Sequence[str],
             manifest: dict) -> str:

    def plain(grid):
        """Minus signs as ASCII '-' (as summary.tex writes numbers), not an en dash."""
        header, body = grid
        return ([h.replace("−", "-") for h in header],
                [[c.replace("−", "-") for c in row] for row in body])

    spec = manifest.get("spec", {})
    where = f"{spec.get('dataset', '?')}, {spec.get('n_images', '?')} images"
    notes = _notes(ms)
    out = ["% Generated by lico-bench report; needs \\usepackage{booktabs}."]
    for model in sorted(ms["model"].unique()):
        out.append(tex_table(*plain(rank_grid(ms, model, directions, methods)),
                              f"{model}: mean rank of each method ({where}). {notes[0]} {notes[1]}"))
        out.append(tex_table(*plain(pair_grid(ms, model, directions)),
                              f"{model}: paired differences between methods ({where}). {notes[2]}"))
        out.append(tex_table(*plain(tau_grid(ms, model)),
                              f"{model}: agreement between metrics ({where}). {notes[3]}"))
    return "\n".join(out).replace("α", r"$\alpha$").replace("τ", r"$\tau$").replace(
        "≥", r"$\geq$").replace("≈", r"$\approx$").replace("–", "--")


def build_method_report(results: str | Path, rows: Optional[pd.DataFrame] = None,
                        manifest: Optional[dict] = None) -> Dict[str, Path]:
    """Write methods.csv/.md/.tex for ``results``; {} when the rows hold fewer than 2 methods."""

    results = Path(results)
    manifest = load_manifest(results) if manifest is None else manifest
    rows = load_rows(results) if rows is None else rows
    directions = metric_directions(manifest, rows)
    methods = method_order(rows, manifest)
    if len(methods) < 2 or not directions:
        return {}
    ms = compute_method_summary(rows, directions, manifest)
    buf = io.StringIO()
    ms.to_csv(buf, index=False, float_format="%.6g")
    return {"methods_csv": write_text(results / "methods.csv", buf.getvalue()),
            "methods_md": write_text(results / "methods.md", to_markdown(ms, directions, methods, manifest)),
            "methods_tex": write_text(results / "methods.tex", to_latex(ms, directions, methods, manifest))}
