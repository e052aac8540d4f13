"""What the report's writers share: reading a results directory (manifest and verified
rows), metric directions and display names, the LICO - baseline pairing of models, and the
Markdown/LaTeX table markup. Reads result files only."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pandas as pd

from ..errors import UserError
from ..io import MAX_ROWS_BYTES, check_regular_file
from ..results import REPAIR, expected_images, read_rows

NICE = {"insertion": "Insertion", "deletion": "Deletion", "overall": "Overall (ins-del)",
        "pointing_game": "Pointing game", "energy_pointing_game": "Energy PG",
        "map_dependence": "Map dependence", "accuracy": "Accuracy",
        "road_morf": "ROAD MoRF", "road_lerf": "ROAD LeRF", "road": "ROAD (LeRF-MoRF)",
        "part_rank": "Part rank corr.", "part_hit": "Part hit",
        "randomisation_cascading": "Rand. cascading (Spearman)",
        "randomisation_cascading_ssim": "Rand. cascading (SSIM)",
        "randomisation_independent": "Rand. independent (Spearman)",
        "randomisation_independent_ssim": "Rand. independent (SSIM)",
        # scores freed from the model's confidence (lico_bench.metrics.causal)
        "insertion_gain": "Insertion gain vs random", "deletion_gain": "Deletion gain vs random",
        "insertion_norm": "Insertion / p(clean)", "deletion_norm": "Deletion / p(clean)",
        "road_morf_gain": "ROAD MoRF gain vs random", "road_lerf_gain": "ROAD LeRF gain vs random"}
BASELINE = "baseline"
IMAGE_KEY = ["dataset", "image_id"]   # one image = one column of the seeds x images matrix


def seeds_by_images(df: pd.DataFrame, col: str) -> np.ndarray:
    """[S, N] float64: ``df[col]`` with rows by seed and columns by image (dataset, image_id),
    both sorted. An image missing under some seed is a NaN cell; so is a NaN value. A
    one-line UserError when one seed holds an image twice (two runs mixed)."""
    if df.duplicated(["seed", *IMAGE_KEY]).any():
        raise UserError(f"the rows hold the same image twice for one seed "
                        f"({df['model'].iloc[0]}, {df['method'].iloc[0]}); the results "
                        "directory mixes two runs: rebuild it with 'lico-bench run'.")
    t = df.pivot(index="seed", columns=IMAGE_KEY, values=col)
    return t.sort_index().sort_index(axis=1).to_numpy(dtype=np.float64)


def pct(v) -> str:
    """A fraction in % with one decimal ('n/a' for None or NaN)."""
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def pct_cell(r, signed: bool = False) -> str:
    """``r``'s mean with its CI in %: "12.3 [10.1, 14.2]" (signed: "+1.2 [...]"); the CI is
    left out where it is not finite, "n/a" where the mean is not."""
    if not np.isfinite(r["mean"]):
        return "n/a"
    m = f"{100 * r['mean']:+.1f}" if signed else pct(r["mean"])
    return m if not np.isfinite(r["ci_low"]) else f"{m} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"


def load_manifest(results: Path) -> dict:
    """``results/manifest.json``, checked (lico_bench.bench.manifest.read_manifest: the one
    reader of manifests; pure Python, no model needed); a problem is one line."""
    from ..bench.manifest import read_manifest

    return read_manifest(results, "report")


def load_rows(results: Path, manifest: Optional[dict] = None) -> pd.DataFrame:
    """All per-image rows of the run, as one DataFrame (curves dropped).

    Every experiment the manifest records must have its rows: a missing one (an experiment
    without a rows file, or a check file whose rows file is gone) is a one-line UserError,
    never a table that silently lacks it. Rows are verified (lico_bench.results): checksum,
    row count and image ids; where the manifest says every rows file has its check
    (``row_checks``), a rows file without one is damage."""
    from ..bench.manifest import experiment_keys, rows_need_checks

    results = Path(results)
    manifest = load_manifest(results) if manifest is None else manifest
    rows_dir = results / "rows"
    keys = experiment_keys(manifest)
    files = sorted(rows_dir / f"{k}.jsonl" for k in keys)   # file order, as before
    if not any(f.exists() for f in files):
        raise UserError(f"{results} has no finished experiments yet (rows/*.jsonl); run "
                        "'lico-bench run' first or wait for it to finish one.")
    orphans = sorted(c for c in rows_dir.glob("*.check.json")
                     if not c.with_name(c.name[: -len(".check.json")] + ".jsonl").exists())
    missing = [f for f in files if not f.exists()]
    if orphans or missing:
        absent = {c.name[: -len(".check.json")] for c in orphans} | {f.stem for f in missing}
        name = (orphans[0].name[: -len(".check.json")] if orphans else missing[0].stem)
        why = ("has a check file but no rows file" if orphans
               else "is in the manifest but has no rows file")
        raise UserError(f"experiment {name} {why} ({rows_dir / (name + '.jsonl')} is missing; "
                        f"{len(absent)} experiment(s) in all), so the "
                        f"tables were left as they are; {REPAIR}")
    n = expected_images(results)
    need = rows_need_checks(manifest, rows_dir)
    recs = []
    for f in files:
        check_regular_file(f, f"rows file {f}", MAX_ROWS_BYTES)   # not a FIFO or /dev/zero
        for r in read_rows(f, n, fix=REPAIR, require_check=need)[0]:
            recs.append({k: v for k, v in r.items() if not k.startswith("curve_")})
    return pd.DataFrame.from_records(recs)


def metric_directions(manifest: dict, rows: pd.DataFrame) -> Dict[str, bool]:
    """metric name -> higher_is_better for every manifest metric with a row column (+ overall).

    Known metrics first in a fixed order, any other metric (e.g. map_dependence) after them
    by name, with the direction the manifest gives it.
    """
    found = {m: bool(v["higher_is_better"]) for m, v in manifest.get("metrics", {}).items()
             if m in rows.columns}
    if "insertion" in found and "deletion" in found:
        found["overall"] = True
    order = ["insertion", "insertion_gain", "insertion_norm", "deletion", "deletion_gain",
             "deletion_norm", "overall", "pointing_game", "energy_pointing_game"]
    names = sorted(found, key=lambda m: (order.index(m) if m in order else len(order), m))
    return {m: found[m] for m in names}


# ----------------------------------------------------------------------------- pairing
def _by_name(model: str, baselines: Iterable[str]) -> Optional[str]:
    """The baseline B whose suffix B[len("baseline"):] is the longest suffix of ``model``."""
    fits = [b for b in baselines if model.endswith(b[len(BASELINE):])]
    return max(fits, key=len) if fits else None


def pair_models(models: Iterable[str], manifest: Optional[dict] = None) -> List[Tuple[str, str]]:
    """[(trained model, its baseline), ...] among ``models`` (those present in the rows), sorted.

    With ``manifest["models"]`` (``{name: {"family", "arch", "variant"}}``): every model of
    a family other than "baseline" ("lico", or one of LICO's peers "guided", "rrr", "sgt";
    a plugin's model without a family is left out) is paired with the model of family "baseline" and the same arch (several
    such baselines: the one the name rule below picks, else the first by name). A model the
    manifest does not describe, or any model of results written before the manifest had
    "models", falls back to the names: a model M not starting with "baseline" pairs with the
    baseline B whose suffix B[len("baseline"):] ("_r18", "_wrn28_2") is the longest suffix
    of M -- so lico_r18, lico_rolled_r18, ... all pair with baseline_r18, and lico_wrn28_2
    with baseline_wrn28_2 rather than a baseline_2. A model with no partner is left out.
    A kept epoch (``lico_wrn28_2@e5``, manifest ``epoch`` 5) pairs with a baseline of the
    same epoch only (``baseline_wrn28_2@e5``; by name, the suffix "_wrn28_2@e5" says so).
    """
    present = sorted(set(models))
    info = (manifest or {}).get("models") or {}
    pairs = []
    for m in present:
        if m in info:
            if info[m].get("family") in (None, "baseline"):
                continue
            cands = [b for b in present if info.get(b, {}).get("family") == "baseline"
                     and info[b].get("arch") == info[m].get("arch")
                     and info[b].get("epoch") == info[m].get("epoch")]
            base = (_by_name(m, cands) or cands[0]) if cands else None
        elif m.startswith(BASELINE):
            continue
        else:
            base = _by_name(m, [b for b in present if b.startswith(BASELINE)])
        if base is not None:
            pairs.append((m, base))
    return pairs


def side_name(model: str, manifest: Optional[dict] = None) -> str:
    """What a verdict calls the trained side of the comparison ``model`` - its baseline:
    "LICO" for LICO and its variants (so LICO's tables read as they always have), the family
    name for LICO's peers ("guided", "rrr", "sgt"; manifest ``models``, else the name's first
    word), the model's own name for anything else (a plugin's model)."""
    family = ((manifest or {}).get("models") or {}).get(model, {}).get("family")
    if family is None:
        from ..guidance.families import family_of   # a lower layer; only for old manifests

        family = "lico" if model.startswith("lico") else family_of(model.split("@")[0])
    return "LICO" if family == "lico" else (family or model)


def trained_side(comparisons: Iterable[str]) -> str:
    """How a table heads its trained side, from its comparisons ("M - B" names): "LICO"
    when every M is a LICO model, else "model" (a table with LICO's peers in it)."""
    return ("LICO" if all(side_name(str(c).split(" - ")[0]) == "LICO" for c in set(comparisons))
            else "model")


# ----------------------------------------------------------------------------- markup
def md_table(header: List[str], body: List[List[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, body)])


def tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("Δ", r"$\Delta$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"),
                 ("−", "--"), ("≤", r"$\le$"), ("≥", r"$\ge$"), ("×", r"$\times$")):
        s = s.replace(a, b)
    return s


def tex_table(header: List[str], body: List[List[str]], caption: str) -> str:
    cols = "l" * 2 + "r" * (len(header) - 2)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex_escape(caption)}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(tex_escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
