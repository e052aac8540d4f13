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
