"""``lico-bench report RESULTS_DIR``: summary tables from the per-image rows alone.

Writes ``summary.csv`` (long format, every number), ``summary.md`` (GitHub/terminal) and
``summary.tex`` (booktabs). Three tables:

* scores: per model x method x metric, the mean with a 95 % bootstrap CI, and the number of
  rows whose map was flagged (constant, all-zero or NaN);
* accuracy per model on the evaluated images;
* paired differences LICO - baseline over the same images (same dataset, seed, image), per
  comparison x method x metric, with a bootstrap CI, a Wilcoxon signed-rank p-value, its
  Holm adjustment over every comparison of the table, and a verdict (image level); with two
  or more seeds also a seed-level verdict: a one-sample t-test and t-interval over the
  per-seed mean differences, Holm over the table's seed-level tests
  (:func:`lico_bench.report.stats.seed_t_test`).

summary.md also says what each model's checkpoints were trained with ("## Trained with",
from the manifest's ``trained``: family hyper-parameters and recipe, one row per distinct
setting with its seeds, so a model whose seeds were trained differently shows as two rows).

With kept epochs (``run --model M@eN``) summary.md also has "## Along training" and the
results directory epochs.csv: every metric against the epoch (:mod:`lico_bench.report.epochs`).

Seeds and images are crossed (every seed's model explains the same test images), so each
number is computed on a seeds x images matrix (:mod:`lico_bench.report.stats`): the mean over
seeds of the per-seed means over images, a CI that resamples seeds and images (the same image
draws under every seed), and a test on per-image values averaged over seeds (n = images).
Seed copies carry no new information and give exactly the one-seed numbers.

Models are paired by :func:`pair_models` (the manifest's model families and architectures, or
the names for results written before the manifest had them).

"overall" = insertion - deletion per image (METRICS.md), added when both are present.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from ..errors import UserError
from ..io import write_text
from .common import (BASELINE, IMAGE_KEY, NICE, load_manifest, load_rows,  # noqa: F401
                     md_table, metric_directions, pair_models, pct, pct_cell, seeds_by_images,
                     side_name, tex_escape, tex_table, trained_side)
from .agreement import (agreement_section, agreement_summary, agreement_tex, grid_note,
                        read_agreement)
from .stats import (ALPHA, CONFIDENCE, EXACT_MAX_N, add_verdicts, crossed_bootstrap_ci, crossed_mean,
                    paired_wilcoxon_p, seed_level, verdict)


# ----------------------------------------------------------------------------- statistics
def _n_images(x: np.ndarray) -> int:
    """Images with at least one value: the n the CI and the test resample."""
    return int((~np.isnan(x)).any(axis=0).sum()) if x.size else 0


def _estimate(x: np.ndarray) -> dict:
    lo, hi = crossed_bootstrap_ci(x)
    return dict(mean=crossed_mean(x), ci_low=lo, ci_high=hi, n=_n_images(x))


def compute_summary(rows: pd.DataFrame, directions: Dict[str, bool],
                    manifest: Optional[dict] = None,
                    matrices: Optional[List[np.ndarray]] = None) -> pd.DataFrame:
    """Long table: kind (score | accuracy | paired), model, method, metric, mean, ci_low, ...

    n is the number of images (the resampled unit; values are averaged over seeds), n_seeds
    the number of seeds. n_flagged: on a score row, its rows whose map was flagged; on a
    paired row, the (seed, image) pairs where either model's map (or both) was flagged.
    Paired rows also hold baseline and lico (their means over the cells
    where both are defined, so lico - baseline = mean), p_wilcoxon, p_holm (Holm over every
    paired row) and verdict (:func:`lico_bench.report.stats.verdict`): the image-level
    verdict; and the seed-level one (:func:`lico_bench.report.stats.seed_level`,
    :func:`~lico_bench.report.stats.add_verdicts`): seed_ci_low,
    seed_ci_high, p_seed, p_seed_holm, seed_verdict, seed_diffs.

    ``matrices``: if a list is given, the seeds x images difference matrix of every paired row
    is appended to it, in row order (for diagnostics: benchmarks/bootstrap_flips.py).
    """
    rows = rows.copy()
    if "overall" in directions:
        rows["overall"] = rows["insertion"] - rows["deletion"]
    out: List[dict] = []
    for (model, method), g in rows.groupby(["model", "method"], sort=True):
        for metric, hib in directions.items():
            out.append(dict(kind="score", model=model, method=method, metric=metric,
                            **_estimate(seeds_by_images(g, metric)),
                            n_flagged=int((g["map_status"] != "ok").sum()),
                            n_seeds=int(g["seed"].nunique()), higher_is_better=hib))
    # The prediction does not depend on the explanation method: one method's rows suffice.
    first_method = sorted(rows["method"].unique())[0]
    for model, g in rows[rows["method"] == first_method].groupby("model", sort=True):
        g = g.assign(accuracy=(g["pred"] == g["label"]).astype(float))
        out.append(dict(kind="accuracy", model=model, method="", metric="accuracy",
                        **_estimate(seeds_by_images(g, "accuracy")), n_flagged=0,
                        n_seeds=int(g["seed"].nunique()), higher_is_better=True))
    # Paired LICO - baseline on the same images under the same seed.
    paired: List[dict] = []
    keys = ["seed", *IMAGE_KEY]
    for lico, base in pair_models(rows["model"].unique(), manifest):
        for method in sorted(rows["method"].unique()):
            a = rows[(rows["model"] == lico) & (rows["method"] == method)]
            b = rows[(rows["model"] == base) & (rows["method"] == method)]
            j = a.merge(b, on=keys, suffixes=("_lico", "_base"))
            if j.empty:
                continue
            j = j.assign(model=f"{lico} - {base}", method=method)
            for metric, hib in directions.items():
                both = j[f"{metric}_lico"].notna() & j[f"{metric}_base"].notna()
                jj = j.assign(diff=j[f"{metric}_lico"] - j[f"{metric}_base"],
                              lico_v=j[f"{metric}_lico"].where(both),
                              base_v=j[f"{metric}_base"].where(both))
                d = seeds_by_images(jj, "diff")
                if matrices is not None:
                    matrices.append(d)
                paired.append(dict(kind="paired", model=f"{lico} - {base}", method=method,
                                   metric=metric, **_estimate(d),
                                   n_flagged=int(((j["map_status_lico"] != "ok")
                                                  | (j["map_status_base"] != "ok")).sum()),
                                   n_seeds=int(j["seed"].nunique()), higher_is_better=hib,
                                   baseline=crossed_mean(seeds_by_images(jj, "base_v")),
                                   lico=crossed_mean(seeds_by_images(jj, "lico_v")),
                                   p_wilcoxon=paired_wilcoxon_p(d), **seed_level(d)))
    # Holm over every comparison of the paired table: with 20+ comparisons, unadjusted
    # p < 0.05 names a side by chance about once per table.
    sides = {r["model"]: side_name(r["model"].split(" - ")[0], manifest) for r in paired}

    def verdict_of(r, lo, hi, q):   # names the trained side: LICO, or the peer's family
        v = verdict(lo, hi, q, r["higher_is_better"])
        return f"{sides[r['model']]} better" if v == "LICO better" else v

    add_verdicts(paired, verdict_of)
    return pd.DataFrame(out + paired)


# ----------------------------------------------------------------------------- formatting
def _arrow(hib: bool) -> str:
    return "↑" if hib else "↓"


def _p(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3g}"


CONF = f"{100 * CONFIDENCE:g}%"


def _several_seeds(summary: pd.DataFrame) -> bool:
    return bool(len(summary)) and int(summary["n_seeds"].max()) > 1


def _values_note(summary: pd.DataFrame) -> str:
    """What the cells are: mean over images (and seeds), and how the CI resamples."""
    if _several_seeds(summary):
        return (f"mean over seeds and images, {CONF} bootstrap CI in brackets resampling seeds "
                "and images crossed: the same image draws under every seed, as every seed's "
                "model explains the same images")
    return f"mean over images, {CONF} bootstrap CI in brackets"


def _verdict_note(summary: pd.DataFrame) -> str:
    """The verdict rule, in one sentence (two with seeds: the seed-level verdict)."""
    paired = summary[summary["kind"] == "paired"]
    k = int(paired["p_holm"].notna().sum())
    over = "on the per-image differences averaged over seeds, " if _several_seeds(summary) else ""
    note = (f"A side is named only when the {CONF} CI of the mean difference excludes 0 and the "
            f"Holm-adjusted p (two-sided Wilcoxon signed-rank test over the n images, {over}"
            "ties kept, zeros dropped, exact with at most "
            f"{EXACT_MAX_N} non-zero differences; Holm over the {k} comparisons of this table) "
            f"is below {ALPHA:g}; otherwise \"no clear difference\".")
    if _several_seeds(summary):
        ks = int(paired["p_seed"].notna().sum())
        note += (" That image-level verdict holds each seed's trained model fixed. The seed-level "
                 "verdict takes the training seed as the unit: the per-seed mean differences "
                 f"d_s get a one-sample t-test (S − 1 df; Holm over the {ks} seed-level tests of "
                 f"this table) and a {CONF} t-interval, and the same rule; a claim about training "
                 "runs needs it.")
    return note


def _score_grid(summary: pd.DataFrame, directions: Dict[str, bool]):
    s = summary[summary["kind"] == "score"]
    header = ["model", "method"] + [f"{NICE.get(m, m)} {_arrow(h)}" for m, h in directions.items()] + ["flagged maps"]
    body = []
    for (model, method), g in s.groupby(["model", "method"], sort=True):
        by = {r["metric"]: r for _, r in g.iterrows()}
        body.append([model, method] + [pct_cell(by[m]) if m in by else "" for m in directions]
                    + [str(int(g["n_flagged"].max()))])
    return header, body


def _trained_side(summary: pd.DataFrame) -> str:
    """The paired table's name for its trained side (:func:`~.common.trained_side`)."""
    return trained_side(summary.loc[summary["kind"] == "paired", "model"])


def _paired_grid(summary: pd.DataFrame):
    """The paired table; with several seeds, the seed-level columns after the image-level ones."""
    p = summary[summary["kind"] == "paired"]
    several = _several_seeds(summary)
    side = _trained_side(summary)
    header = ["comparison", "method", "metric", "baseline", side, f"Δ {side} − baseline [{CONF} CI]",
              "Wilcoxon p", "Holm p", "n", "verdict (images)" if several else "verdict"]
    if several:
        header += ["seeds", f"{CONF} t-CI over seeds", "t-test p", "Holm p (seeds)",
                   "verdict (seeds)"]
    body = []
    for _, r in p.iterrows():
        line = [r["model"], r["method"], f"{NICE.get(r['metric'], r['metric'])} {_arrow(r['higher_is_better'])}",
                pct(r["baseline"]), pct(r["lico"]), pct_cell(r, signed=True),
                _p(r["p_wilcoxon"]), _p(r["p_holm"]), str(int(r["n"])), r["verdict"]]
        if several:
            ci = (f"[{pct(r['seed_ci_low'])}, {pct(r['seed_ci_high'])}]"
                  if np.isfinite(r["seed_ci_low"]) else "n/a")
            line += [str(int(r["n_seeds"])), ci, _p(r["p_seed"]), _p(r["p_seed_holm"]),
                     r["seed_verdict"]]
        body.append(line)
    return header, body


def _acc_grid(summary: pd.DataFrame):
    a = summary[summary["kind"] == "accuracy"]
    header = ["model", f"accuracy [{CONF} CI]", "images", "seeds"]
    body = [[r["model"], pct_cell(r), str(int(r["n"])), str(int(r["n_seeds"]))] for _, r in a.iterrows()]
    return header, body


def to_markdown(summary: pd.DataFrame, directions: Dict[str, bool], manifest: dict) -> str:
    spec = manifest.get("spec", {})
    parts = [f"# Results: {spec.get('dataset', '?')} ({spec.get('split', 'test')} split, "
             f"{spec.get('n_images', '?')} images, seeds {spec.get('seeds', '?')})", "",
             f"Values in % ({_values_note(summary)}). ↑ higher is "
             "better, ↓ lower is better. Explained class: "
             + ("the cell's class." if manifest.get("grid") else "the model's prediction."
                if spec.get("target", "pred") == "pred" else "the label."), ""]
    if manifest.get("grid"):
        parts += [grid_note(manifest), ""]
    parts += ["## Saliency scores", "", md_table(*_score_grid(summary, directions)), ""]
    if not manifest.get("grid"):   # a composite's prediction is one class of its n^2 cells
        parts += ["## Accuracy on the evaluated images", "", md_table(*_acc_grid(summary)), ""]
    if (summary["kind"] == "paired").any():
        parts += [f"## Paired difference {_trained_side(summary)} − baseline (same images)", "",
                  md_table(*_paired_grid(summary)), "",
                  _verdict_note(summary), ""]
    parts += trained_section(manifest)
    if manifest.get("command"):
        parts += [f"Command: `{manifest['command']}`", ""]
    return "\n".join(parts)


#: the recipe options "## Trained with" shows when set (every one is in the manifest)
RECIPE = ("preset", "epochs", "batch_size", "optimizer", "lr", "augment", "n_train")


def trained_section(manifest: dict) -> List[str]:
    """Markdown lines "## Trained with": per model, its checkpoints' family hyper-parameters
    and recipe (manifest ``trained``, read from the checkpoints by the runner), one row per
    distinct setting with the seeds that have it; [] for results without that record."""
    from ..bench.manifest import trained_options

    groups: Dict[tuple, List[str]] = {}
    for key, e in (manifest.get("trained") or {}).items():
        model, _, seed = key.rpartition("@seed")
        settings, opts = trained_options(e)
        settings = ", ".join(f"{k} {v}" for k, v in sorted(settings.items()))
        recipe = ("not recorded in the checkpoint" if opts is None else
                  ", ".join(f"{k} {opts[k]}" for k in RECIPE if opts.get(k) is not None))
        groups.setdefault((model, settings or "-", recipe), []).append(seed)
    if not groups:
        return []
    body = [[m, ", ".join(sorted(seeds, key=lambda s: (len(s), s))), st, rc]
            for (m, st, rc), seeds in sorted(groups.items())]
    models = [m for m, _, _ in groups]
    differ = sorted({m for m in models if models.count(m) > 1})
    return (["## Trained with (read from each checkpoint)", "",
             md_table(["model", "seeds", "family settings", "recipe"], body), ""]
            + ([f"**Trained differently across seeds: {', '.join(differ)}.**", ""] if differ else []))


def _where(manifest: dict) -> str:
    """What the tables of summary.tex are about, for their captions."""
    spec = manifest.get("spec", {})
    return f"{spec.get('dataset', '?')}, {spec.get('n_images', '?')} images"


def to_latex(summary: pd.DataFrame, directions: Dict[str, bool], manifest: dict) -> str:
    where = _where(manifest)
    grid = f" {grid_note(manifest)}" if manifest.get("grid") else ""
    out = ["% Generated by lico-bench report; needs \\usepackage{booktabs}.",
           tex_table(*_score_grid(summary, directions),
                     f"Saliency scores in % ({where}), {_values_note(summary)}.{grid}")]
    if not manifest.get("grid"):   # a composite's prediction is one class of its n^2 cells
        out.append(tex_table(*_acc_grid(summary), f"Accuracy in % on the evaluated images ({where})."))
    if (summary["kind"] == "paired").any():
        out.append(tex_table(*_paired_grid(summary),
                              f"Paired difference {_trained_side(summary)} - baseline ({where}). "
                              f"{_verdict_note(summary)}"))
    return "\n".join(out)


def build_report(results: str | Path) -> Dict[str, Path]:
    """Read ``results``' rows and manifest; write summary.csv/.md/.tex and the results
    browser index.html (:mod:`lico_bench.report.browser`); return their paths.

    With two or more methods, also the method comparison methods.csv/.md/.tex
    (:func:`lico_bench.report.methods.build_method_report`; keys ``methods_csv``, ...).
    """
    from .cue import cue_section
    from .epochs import epoch_table, epochs_csv, epochs_section

    results = Path(results)
    manifest = load_manifest(results)
    rows = load_rows(results, manifest)
    directions = metric_directions(manifest, rows)
    summary = compute_summary(rows, directions, manifest)
    along = epoch_table(rows, directions, manifest, results)   # kept epochs: issue 25
    agree = read_agreement(results)
    agree_summary = agreement_summary(agree, manifest) if agree is not None else None
    buf = io.StringIO()
    pd.concat([summary, agree_summary]).to_csv(buf, index=False, float_format="%.6g")
    paths = {"csv": write_text(results / "summary.csv", buf.getvalue()),
             "md": write_text(results / "summary.md", to_markdown(summary, directions, manifest)
                              + epochs_section(along, summary)
                              + agreement_section(agree_summary, agree)
                              + cue_section(results, rows, manifest.get("spec", {}).get("split", "test"),
                                            manifest)),
             "tex": write_text(results / "summary.tex", to_latex(summary, directions, manifest)
                               + agreement_tex(agree_summary, agree, _where(manifest)))}
    if not along.empty:
        paths["epochs_csv"] = write_text(results / "epochs.csv", epochs_csv(along))
    from .methods import build_method_report

    paths.update(build_method_report(results, rows=rows, manifest=manifest))
    from .browser import build_page

    paths["html"] = build_page(results, manifest=manifest, rows=rows)   # after the tables it shows
    return paths
