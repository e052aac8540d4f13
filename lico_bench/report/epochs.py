"""Saliency along training (issue 25, item 2): every metric against the training epoch.

A run that explains kept epochs of its models (``run --model lico_wrn28_2@e5 ...``, the
weights ``train --keep-epochs`` kept) holds each trained model at several epochs. This module
regroups its rows by (trained model, epoch): the ``## Along training`` section of summary.md,
``epochs.csv``, and the ``epochs`` figure (one panel per method x metric, one line per trained
model, its band over seeds).

Epoch of a model as the run names it: ``M@eN`` is epoch N (the manifest's ``models[...]
["epoch"]``, else the name); the final weights ``M`` are the last epoch of M's training log
(``logs/M@seed<s>.csv``, copied by the runner; the largest over seeds), or unknown (drawn and
listed last, as "final") when the results have no log.

Per (model, epoch, method, metric), over the seeds x images matrix of the rows:
mean = :func:`~lico_bench.report.stats.crossed_mean`; band = with S >= 2 seeds, the 95 %
Student t-interval of the S per-seed means (:func:`~lico_bench.report.stats.t_test`: the
spread of training runs, the question "does the effect appear early and fade"); with one
seed, the 95 % bootstrap CI over images (:func:`~lico_bench.report.stats.crossed_bootstrap_ci`),
said in the ``band`` column. The difference LICO - baseline at each epoch and its
seed-level verdict are the paired table's (:func:`lico_bench.report.tables.compute_summary`
pairs kept epochs of the same epoch only).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from .common import NICE, md_table, pct, seeds_by_images
from .figure_files import find_training_logs, read_log
from .stats import crossed_bootstrap_ci, crossed_mean, seed_means, t_test

KEPT = "@e"
FINAL = "final"


def model_epochs(models, manifest: dict, results: Path) -> Dict[str, Tuple[str, Optional[int]]]:
    """{model as the run names it: (trained model, epoch or None)}; see the module docstring."""
    info = manifest.get("models") or {}
    logs, _ = find_training_logs(results, manifest)
    out = {}
    for m in models:
        base, sep, e = m.rpartition(KEPT)
        if sep and e.isdigit():
            out[m] = (base, int(info.get(m, {}).get("epoch", e)))
            continue
        last = []
        for key, path in logs.items():
            if key.rsplit("@seed", 1)[0] == m:
                ep = read_log(path).get("epoch")
                if ep is not None and len(ep) and np.isfinite(ep).any():
                    last.append(int(np.nanmax(ep)))
        out[m] = (m, max(last) if last else None)
    return out


def has_kept_epochs(models) -> bool:
    return any(KEPT in m and m.rpartition(KEPT)[2].isdigit() for m in models)


def epoch_table(rows: pd.DataFrame, directions: Dict[str, bool], manifest: dict,
                results: Path) -> pd.DataFrame:
    """Long table: model (trained), epoch (float; NaN = final of unknown epoch), method,
    metric, mean, band_low, band_high, band ("seeds" | "images"), n_seeds, run_name.
    Empty when no model is a kept epoch."""
    if not has_kept_epochs(rows["model"].unique()):
        return pd.DataFrame()
    rows = rows.copy()
    if "overall" in directions:
        rows["overall"] = rows["insertion"] - rows["deletion"]
    ep = model_epochs(sorted(rows["model"].unique()), manifest, results)
    out: List[dict] = []
    for (name, method), g in rows.groupby(["model", "method"], sort=True):
        model, epoch = ep[name]
        for metric in directions:
            x = seeds_by_images(g, metric)
            d = seed_means(x)
            if len(d) >= 2:
                _, lo, hi, _ = t_test(d)
                band = "seeds"
            else:
                lo, hi = crossed_bootstrap_ci(x)
                band = "images"
            out.append(dict(model=model, epoch=np.nan if epoch is None else float(epoch),
                            method=method, metric=metric, mean=crossed_mean(x),
                            band_low=float(lo), band_high=float(hi), band=band,
                            n_seeds=len(d), run_name=name))
    t = pd.DataFrame(out)
    return t.sort_values(["method", "metric", "model", "epoch"], na_position="last",
                         kind="stable").reset_index(drop=True)


def _epoch_label(e: float) -> str:
    return FINAL if not np.isfinite(e) else str(int(e))


def epochs_section(table: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The ``## Along training`` Markdown section ('' when ``table`` is empty)."""
    if table.empty:
        return ""
    models = list(dict.fromkeys(table["model"]))
    paired = summary[summary["kind"] == "paired"] if len(summary) else summary
    parts = ["## Along training", "",
             "Each metric at each evaluated epoch (kept epochs M@eN and the final weights), in %: "
             "mean [95 % band]; the band is the t-interval over seeds of the per-seed means "
             "(one seed: the bootstrap CI over images). Δ and its verdict: the paired table's "
             "seed-level ones (image level with one seed) for the pair at that epoch.", ""]
    for method, gm in table.groupby("method", sort=True):
        header = ["metric", "epoch"] + models + ["Δ LICO − baseline", "verdict"]
        body = []
        for metric in dict.fromkeys(gm["metric"]):
            g = gm[gm["metric"] == metric]
            for e in sorted(set(g["epoch"]), key=lambda v: (not np.isfinite(v), v)):
                at = g[(g["epoch"] == e) | (g["epoch"].isna() & (not np.isfinite(e)))]
                cells = []
                for m in models:
                    r = at[at["model"] == m]
                    cells.append("" if r.empty else
                                 f"{pct(r['mean'].iloc[0])} [{pct(r['band_low'].iloc[0])}, "
                                 f"{pct(r['band_high'].iloc[0])}]")
                names = set(at["run_name"])
                p = paired[(paired["method"] == method) & (paired["metric"] == metric)
                           & paired["model"].map(lambda s: set(s.split(" - ")) <= names)]
                if p.empty:
                    delta, verdict = "", ""
                else:
                    r = p.iloc[0]
                    seeds = int(r["n_seeds"]) >= 2
                    lo, hi = ((r["seed_ci_low"], r["seed_ci_high"]) if seeds
                              else (r["ci_low"], r["ci_high"]))
                    delta = f"{100 * r['mean']:+.1f} [{pct(lo)}, {pct(hi)}]"
                    verdict = r["seed_verdict"] if seeds else r["verdict"]
                body.append([NICE.get(metric, metric), _epoch_label(e)] + cells + [delta, verdict])
        parts += [f"### {method}", "", md_table(header, body), ""]
    return "\n".join(parts) + "\n"


def epochs_csv(table: pd.DataFrame) -> str:
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def plot_epochs(table: pd.DataFrame, ncols: int = 5):
    """One panel per (method, metric), wrapped at ``ncols`` panels a row; x = epoch (log
    scale, ticks at the evaluated epochs), one line per trained model with its band (see the
    module docstring); the final weights of unknown epoch are left out of the figure (listed
    in the table). None when there is nothing to draw."""
    from .figure_style import DOUBLE_COLUMN_IN, _colours, _plt, _pretty_model

    t = table[np.isfinite(table["epoch"])] if len(table) else table
    if t.empty:
        return None
    plt = _plt()
    methods = list(dict.fromkeys(t["method"]))
    panels = [(method, metric) for method in methods
              for metric in dict.fromkeys(t.loc[t["method"] == method, "metric"])]
    models = list(dict.fromkeys(t["model"]))
    epochs = sorted(set(t["epoch"].astype(int)))
    col = _colours(models)
    nc = min(ncols, len(panels))
    nr = -(-len(panels) // nc)
    fig, axes = plt.subplots(nr, nc, squeeze=False,
                             figsize=(max(DOUBLE_COLUMN_IN, 1.7 * nc), 1.7 * nr + 0.3))
    for k, (method, metric) in enumerate(panels):
        ax = axes[k // nc][k % nc]
        for m in models:
            g = t[(t["method"] == method) & (t["metric"] == metric) & (t["model"] == m)]
            if g.empty:
                continue
            g = g.sort_values("epoch")
            x = g["epoch"].to_numpy()
            ax.plot(x, 100 * g["mean"], marker="o", markersize=2.2, color=col[m],
                    label=_pretty_model(m))
            lo, hi = 100 * g["band_low"].to_numpy(), 100 * g["band_high"].to_numpy()
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(x[ok], lo[ok], hi[ok], color=col[m], alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ax.set_xticks(epochs, [str(e) for e in epochs])
        ax.minorticks_off()
        ax.set_title(f"{NICE.get(metric, metric)} ({method})" if len(methods) > 1
                     else NICE.get(metric, metric))
        if k + nc >= len(panels):    # the lowest panel of its column
            ax.set_xlabel("epoch")
    for k in range(len(panels), nr * nc):
        axes[k // nc][k % nc].set_visible(False)
    axes[0][0].legend(loc="best")
    fig.tight_layout()
    return fig
