"""Cross-seed agreement in the tables, from ``agreement.jsonl`` alone (written by the runner,
:mod:`lico_bench.bench.agreement`; definition: :mod:`lico_bench.metrics.agreement`), and the
grid pointing game's note (the manifest's ``"grid"``).

Per model x method (models run with >= 2 seeds): the mean over images of each image's mean
pairwise similarity (Spearman; SSIM), with a 95 % percentile bootstrap CI over images
(:func:`lico_bench.report.stats.bootstrap_ci`; the seeds are already inside each image's
value). LICO - baseline: paired over images (:func:`lico_bench.report.common.pair_models`),
the mean difference with its bootstrap CI and a two-sided Wilcoxon signed-rank p (no Holm:
a handful of comparisons, reported as they are). Rows go to ``summary.csv`` with kind
``agreement`` / ``agreement_paired`` and to a section of ``summary.md`` beside map dependence.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from ..errors import UserError
from .common import md_table, pair_models, pct, pct_cell, tex_table, trained_side
from .stats import CONFIDENCE, bootstrap_ci, wilcoxon_p

FILE = "agreement.jsonl"
SIMILARITIES = ("spearman", "ssim")


def read_agreement(results: Path) -> Optional[pd.DataFrame]:
    """``agreement.jsonl`` as a DataFrame, None when the run has none (or it is empty);
    a damaged file is a one-line error."""
    path = Path(results) / FILE
    if not path.exists():
        return None
    try:
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        df = pd.DataFrame.from_records(recs)
        if len(df):
            df[["model", "method", "image_id"] + [f"agreement_{s}" for s in SIMILARITIES]]
    except (OSError, ValueError, KeyError):
        raise UserError(f"{path} is damaged; delete it and run the same 'lico-bench run' "
                        "again: it is recomputed from the kept pooled maps.") from None
    return df if len(df) else None


def agreement_summary(df: pd.DataFrame, manifest: Optional[dict] = None) -> pd.DataFrame:
    """Long rows (kind, model, method, metric = agreement_spearman | agreement_ssim, mean,
    ci_low, ci_high, n, n_seeds, higher_is_better; paired rows add baseline, lico, p_wilcoxon)."""
    out: List[dict] = []
    for (model, method), g in df.groupby(["model", "method"], sort=True):
        for s in SIMILARITIES:
            x = g[f"agreement_{s}"].to_numpy(dtype=np.float64)
            lo, hi = bootstrap_ci(x)
            out.append(dict(kind="agreement", model=model, method=method, metric=f"agreement_{s}",
                            mean=float(np.nanmean(x)) if np.isfinite(x).any() else float("nan"),
                            ci_low=lo, ci_high=hi, n=int(np.isfinite(x).sum()),
                            n_seeds=len(g["seeds"].iloc[0]), higher_is_better=True))
    for lico, base in pair_models(df["model"].unique(), manifest):
        for method in sorted(df["method"].unique()):
            a = df[(df["model"] == lico) & (df["method"] == method)]
            b = df[(df["model"] == base) & (df["method"] == method)]
            j = a.merge(b, on=["dataset", "image_id"], suffixes=("_lico", "_base"))
            if j.empty:
                continue
            for s in SIMILARITIES:
                la, ba = j[f"agreement_{s}_lico"], j[f"agreement_{s}_base"]
                d = (la - ba).to_numpy(dtype=np.float64)
                ok = np.isfinite(d)
                lo, hi = bootstrap_ci(d)
                out.append(dict(kind="agreement_paired", model=f"{lico} - {base}", method=method,
                                metric=f"agreement_{s}",
                                mean=float(d[ok].mean()) if ok.any() else float("nan"),
                                ci_low=lo, ci_high=hi, n=int(ok.sum()),
                                n_seeds=min(len(j["seeds_lico"].iloc[0]), len(j["seeds_base"].iloc[0])),
                                higher_is_better=True,
                                baseline=float(ba[ok].mean()) if ok.any() else float("nan"),
                                lico=float(la[ok].mean()) if ok.any() else float("nan"),
                                p_wilcoxon=wilcoxon_p(d)))
    return pd.DataFrame(out)


def _agreement_grid(s: pd.DataFrame, df: pd.DataFrame):
    """(header, body) of the per model x method agreement table (kind ``agreement`` rows)."""
    body = []
    for (model, method), g in s.groupby(["model", "method"], sort=True):
        by = {r["metric"]: r for _, r in g.iterrows()}
        differ = df[(df["model"] == model) & (df["method"] == method) & ~df["target_agree"]]
        body.append([model, method, pct_cell(by["agreement_spearman"]), pct_cell(by["agreement_ssim"]),
                     str(int(by["agreement_spearman"]["n"])), str(int(by["agreement_spearman"]["n_seeds"])),
                     str(len(differ))])
    return (["model", "method", "Spearman ↑", "SSIM ↑", "images", "seeds",
             "images whose seeds explain different classes"], body)


def _paired_agreement_grid(p: pd.DataFrame):
    """(header, body) of LICO - baseline (kind ``agreement_paired`` rows)."""
    conf = f"{100 * CONFIDENCE:g}%"
    body = [[r["model"], r["method"], r["metric"].replace("agreement_", ""), pct(r["baseline"]),
             pct(r["lico"]), pct_cell(r, signed=True),
             "n/a" if not np.isfinite(r["p_wilcoxon"]) else f"{r['p_wilcoxon']:.3g}", str(int(r["n"]))]
            for _, r in p.iterrows()]
    return (["comparison", "method", "similarity", "baseline", trained_side(p["model"]), f"Δ [{conf} CI]",
             "Wilcoxon p", "n"], body)


def _note() -> str:
    return (f"Per image, the mean over every pair of seeds of the similarity of the two maps "
            f"(pooled maps, ≤ 32 × 32); mean over images in %, {100 * CONFIDENCE:g}% bootstrap "
            "CI over images. Read beside map dependence: a class template agrees across seeds "
            "without explaining the image.")


def agreement_section(summary: pd.DataFrame, df: Optional[pd.DataFrame]) -> str:
    """Markdown for summary.md ("" without agreement rows)."""
    if summary is None or not len(summary):
        return ""
    parts = ["", "## Cross-seed agreement (same image, models of different seeds)", "",
             _note(), "", md_table(*_agreement_grid(summary[summary["kind"] == "agreement"], df)), ""]
    p = summary[summary["kind"] == "agreement_paired"]
    if len(p):
        parts += [f"Paired over images, {trained_side(p['model'])} − baseline:", "",
                  md_table(*_paired_agreement_grid(p)), ""]
    return "\n".join(parts)


def agreement_tex(summary: Optional[pd.DataFrame], df: Optional[pd.DataFrame], where: str) -> str:
    """The same tables as :func:`agreement_section` for summary.tex ("" without agreement
    rows); ``where`` names the data in the captions (e.g. "shapes, 100 images")."""
    if summary is None or not len(summary):
        return ""
    out = [tex_table(*_agreement_grid(summary[summary["kind"] == "agreement"], df),
                     f"Cross-seed agreement in % ({where}): same image, models of different "
                     f"seeds. {_note()}")]
    p = summary[summary["kind"] == "agreement_paired"]
    if len(p):
        out.append(tex_table(*_paired_agreement_grid(p),
                             f"Cross-seed agreement, {trained_side(p['model'])} - baseline paired "
                             f"over images ({where}); "
                             "two-sided Wilcoxon signed-rank p."))
    return "\n".join(out)


def grid_note(manifest: dict) -> str:
    """One paragraph on the grid pointing game's composites, "" without ``--grid``."""
    g = manifest.get("grid")
    if not g:
        return ""
    n = g["n"]
    how = ("each cell through the network's features alone, the head on the tiled features "
           "(DiFull)" if manifest.get("spec", {}).get("grid_variant") == "difull"
           else "the network on the whole composite (GridPG)")
    return (f"Grid pointing game: {n} × {n} composites of test images of distinct classes that "
            f"every one of the run's {g['models_checked']} models (all seeds) classifies "
            f"correctly with probability ≥ {g['threshold']:g}; {g['images_qualified']} of the "
            f"{g['images_scanned']} images qualified, {g['composites']} composites drawn (seed "
            f"{g['seed']}; at most {g['composites_possible']} possible), each of their "
            f"{n * n} cells explained for its class, {how}: an image is one cell, its mask "
            "the cell.")
