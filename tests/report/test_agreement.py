"""The report's cross-seed agreement statistics (lico_bench.report.agreement) from an
agreement.jsonl written here, against plain numpy: per model x method the mean over images,
LICO - baseline paired over the same images; the grid note from a manifest."""
import json

import numpy as np
import pytest

from lico_bench.errors import UserError
from lico_bench.report.agreement import (agreement_section, agreement_summary, agreement_tex,
                                         grid_note, read_agreement)
from lico_bench.report.common import tex_escape
from lico_bench.report.stats import bootstrap_ci, wilcoxon_p


def _write(tmp_path, values):
    lines = []
    for model, vals in values.items():
        for i, (rho, ss) in enumerate(vals):
            lines.append(json.dumps({"dataset": "d", "model": model, "method": "gradcam",
                                     "image_id": i, "target_agree": i != 0, "seeds": [0, 1, 2],
                                     "n_pairs": 3, "agreement_spearman": rho,
                                     "agreement_ssim": ss}))
    (tmp_path / "agreement.jsonl").write_text("\n".join(lines) + "\n")


def test_means_and_paired_differences_against_numpy(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(-1, 1, size=(7, 2))
    lico = rng.uniform(-1, 1, size=(7, 2))
    lico[3, 1] = float("nan")                              # an SSIM left undefined
    _write(tmp_path, {"baseline_r18": base.tolist(), "lico_r18": lico.tolist()})
    df = read_agreement(tmp_path)
    s = agreement_summary(df)
    row = s[(s["kind"] == "agreement") & (s["model"] == "lico_r18")
            & (s["metric"] == "agreement_ssim")].iloc[0]
    assert row["n"] == 6 and row["n_seeds"] == 3
    # numpy's mean of the same 6 float64 values, summed in another order: 6 roundings of
    # values <= 1, far below 1e-15
    assert abs(row["mean"] - np.nanmean(lico[:, 1])) <= 6 * np.finfo(np.float64).eps
    assert (row["ci_low"], row["ci_high"]) == bootstrap_ci(lico[:, 1])
    p = s[(s["kind"] == "agreement_paired") & (s["metric"] == "agreement_spearman")].iloc[0]
    d = lico[:, 0] - base[:, 0]
    assert p["model"] == "lico_r18 - baseline_r18" and p["n"] == 7
    assert abs(p["mean"] - d.mean()) <= 7 * np.finfo(np.float64).eps
    assert abs(p["lico"] - p["baseline"] - p["mean"]) <= 7 * np.finfo(np.float64).eps
    assert p["p_wilcoxon"] == wilcoxon_p(d)
    md = agreement_section(s, df)
    assert "| lico_r18 " in md and "Paired over images" in md
    # image 0's seeds explain different classes, under each model: counted in the last column
    for model in ("baseline_r18", "lico_r18"):
        line = next(x for x in md.splitlines() if x.startswith(f"| {model} "))
        assert [c.strip() for c in line.strip("|").split("|")][-1] == "1"


def test_no_file_none_and_damaged_file_one_line(tmp_path):
    assert read_agreement(tmp_path) is None
    (tmp_path / "agreement.jsonl").write_text('{"model": "x"\n')
    with pytest.raises(UserError, match="damaged"):
        read_agreement(tmp_path)


def test_grid_note_says_how_many_qualified_and_which_variant():
    g = {"n": 2, "threshold": 0.99, "seed": 0, "images_scanned": 100, "images_qualified": 37,
         "composites": 5, "composites_possible": 9, "models_checked": 4}
    note = grid_note({"grid": g, "spec": {"grid_variant": "difull"}})
    assert "37 of the 100 images qualified" in note and "DiFull" in note
    assert "GridPG" in grid_note({"grid": g, "spec": {}}) and grid_note({}) == ""


def test_summary_tex_has_the_same_agreement_tables_as_summary_md(tmp_path):
    """Every row of summary.md's two agreement tables is a row of summary.tex's, cell by cell
    (the same strings, escaped); no agreement rows: no tables."""
    rng = np.random.default_rng(1)
    _write(tmp_path, {"baseline_r18": rng.uniform(-1, 1, size=(5, 2)).tolist(),
                      "lico_r18": rng.uniform(-1, 1, size=(5, 2)).tolist()})
    df = read_agreement(tmp_path)
    s = agreement_summary(df)
    md_rows = [[c.strip() for c in x.strip().strip("|").split("|")]
               for x in agreement_section(s, df).splitlines()
               if x.startswith("| ") and ("_r18" in x)]
    tex = agreement_tex(s, df, "d, 5 images")
    tex_rows = [x[:-len(r" \\")].split(" & ") for x in tex.splitlines()
                if x.endswith(r" \\") and "_r18" in x]
    assert len(md_rows) == 2 + 2 and tex_rows == [[tex_escape(c) for c in r] for r in md_rows]
    assert tex.count(r"\begin{table}") == 2 and "d, 5 images" in tex
    assert "≤" not in tex and "×" not in tex                        # escaped for LaTeX
    assert agreement_tex(None, None, "d") == "" and agreement_tex(s.iloc[:0], df, "d") == ""
