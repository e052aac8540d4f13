"""experiments/seed_table.py: the README's per-seed table is the summary's numbers, rounded."""
import importlib.util
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "seed_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("seed_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rows_are_the_summary_rounded(tmp_path):
    cols = ["kind", "model", "method", "metric", "higher_is_better", "baseline", "lico",
            "seed_diffs", "seed_verdict"]
    pd.DataFrame([
        ["score", "lico_x", "gradcam", "pointing_game", True, None, None, None, None],
        ["paired", "lico_x - baseline_x", "gradcam", "pointing_game", True, 1.0, 0.83,
         "-0.11;-0.21;0.004", "baseline better"],
        ["paired", "lico_x - baseline_x", "gradcam", "deletion", False, 0.135, 0.1812,
         "0.037;0.0", "no clear difference"],
        ["paired", "lico_x - baseline_x", "rise", "deletion", False, 0.1, 0.1, "0", "x"],
    ], columns=cols).to_csv(tmp_path / "summary.csv", index=False)
    lines = _module().seed_table(tmp_path, ["gradcam"]).splitlines()
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    # the metrics in the script's order (pointing game before deletion); rise not asked for
    assert cells == [
        ["lico_x", "Grad-CAM", "Pointing game ↑", "100.0", "83.0", "−11.0, −21.0, +0.4",
         "baseline better"],
        ["lico_x", "Grad-CAM", "Deletion ↓", "13.5", "18.1", "+3.7, +0.0", "no clear difference"],
    ]


def test_confidence_is_the_mean_target_prob_per_model_and_seed(monkeypatch):
    mod = _module()
    rows = pd.DataFrame(
        [dict(model=m, seed=s, method=me, image_id=i, target_prob=p)
         for m, s, me, i, p in [
             ("baseline_x", 0, "gradcam", 0, 1.0), ("baseline_x", 0, "gradcam", 1, 0.9),
             ("baseline_x", 1, "gradcam", 0, 0.8), ("baseline_x", 1, "gradcam", 1, 0.8),
             ("lico_x", 0, "gradcam", 0, 0.5), ("lico_x", 0, "gradcam", 1, 0.7),
             ("lico_x", 1, "gradcam", 0, 0.6), ("lico_x", 1, "gradcam", 1, 0.6),
             # another method's rows are the same images again: left out, not double-counted
             ("lico_x", 0, "rise", 0, 0.0), ("lico_x", 1, "rise", 0, 0.0)]])
    monkeypatch.setattr(mod, "load_rows", lambda results: rows)
    lines = mod.confidence_table(Path("unused")).splitlines()
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    # baseline: seeds 0.95, 0.80 -> mean 0.875 -> "87.5"; lico: 0.60, 0.60 -> 60.0
    assert cells == [["baseline_x", "95.0, 80.0", "87.5"], ["lico_x", "60.0, 60.0", "60.0"]]


def test_matrix_reads_both_verdicts_from_the_trained_models_side(tmp_path):
    cols = ["kind", "model", "method", "metric", "mean", "higher_is_better", "verdict",
            "seed_verdict"]
    pd.DataFrame([
        ["paired", "guided_x - baseline_x", "gradcam", "energy_pointing_game", 0.606, True,
         "guided better", "guided better"],
        ["paired", "lico_x - baseline_x", "gradcam", "energy_pointing_game", -0.111, True,
         "baseline better", "no clear difference"],
        ["paired", "guided_x - baseline_x", "rise", "energy_pointing_game", 0.0004, True,
         "no clear difference", "no clear difference"],
        ["paired", "guided_x - baseline_x", "gradcam", "insertion", 0.5, True, "x", "x"],
    ], columns=cols).to_csv(tmp_path / "summary.csv", index=False)
    lines = _module().matrix_table(tmp_path, "energy_pointing_game").splitlines()
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert cells[0] == ["Energy PG ↑", "guided_x", "lico_x"]
    # methods in the script's order; lico_x has no RISE row: an empty cell
    assert cells[2:] == [["Grad-CAM", "+60.6 (better / better)", "−11.1 (worse / –)"],
                         ["RISE", "+0.0 (– / –)", ""]]
