"""The confidence-free columns (insertion_gain, insertion_norm, deletion_gain, deletion_norm;
lico_bench.metrics.causal) in the report: ordered beside their raw metric, named, directed by
the manifest, and carried through the score, paired and method tables like any metric."""
import numpy as np
import pandas as pd
import pytest

from lico_bench.report.common import NICE
from lico_bench.report.method_stats import compute_method_summary
from lico_bench.report.tables import compute_summary, metric_directions, to_markdown

N = 10
NEW = {"insertion_gain": True, "insertion_norm": True, "deletion_gain": True,
       "deletion_norm": False}


def _manifest():
    metrics = {"insertion": {"higher_is_better": True}, "deletion": {"higher_is_better": False},
               "pointing_game": {"higher_is_better": True}}
    for name, hib in NEW.items():   # as build_manifest writes a metric's further columns
        metrics[name] = {"higher_is_better": hib, "column_of": name.split("_")[0]}
    return {"metrics": metrics, "spec": {"seeds": [0]}}


def _rows():
    rng = np.random.default_rng(4)
    recs = []
    for model, shift in (("baseline_r18", 0.0), ("lico_r18", 0.1)):
        for method in ("gradcam", "rise"):
            for i in range(N):
                r = dict(dataset="shapes", model=model, method=method, seed=0, image_id=i,
                         label=0, pred=0, map_status="ok", pointing_game=float(i % 2))
                for m in ("insertion", "deletion", *NEW):
                    r[m] = float(rng.random()) + (shift if m != "deletion_norm" else -shift)
                recs.append(r)
    return pd.DataFrame.from_records(recs)


def test_columns_ordered_named_and_tabled():
    rows, manifest = _rows(), _manifest()
    dirs = metric_directions(manifest, rows)
    assert list(dirs) == ["insertion", "insertion_gain", "insertion_norm", "deletion",
                          "deletion_gain", "deletion_norm", "overall", "pointing_game"]
    assert all(dirs[m] is hib for m, hib in NEW.items())
    s = compute_summary(rows, dirs, manifest)
    for kind in ("score", "paired"):
        got = s[s["kind"] == kind]
        for m, hib in NEW.items():
            sel = got[got["metric"] == m]
            assert len(sel) == (4 if kind == "score" else 2) and (sel["higher_is_better"] == hib).all()
    # the paired difference of a new column is lico - baseline of that column, image by image
    p = s[(s["kind"] == "paired") & (s["metric"] == "deletion_gain") & (s["method"] == "rise")].iloc[0]
    a = rows[(rows["model"] == "lico_r18") & (rows["method"] == "rise")].sort_values("image_id")
    b = rows[(rows["model"] == "baseline_r18") & (rows["method"] == "rise")].sort_values("image_id")
    expect = float(np.mean(a["deletion_gain"].to_numpy() - b["deletion_gain"].to_numpy()))
    # a mean of N differences of values < 1.1 in float64 (pandas and numpy sum in another order)
    assert p["mean"] == pytest.approx(expect, abs=4 * N * np.finfo(np.float64).eps * 1.1)
    md = to_markdown(s, dirs, manifest)
    for m, hib in NEW.items():
        assert f"{NICE[m]} {'↑' if hib else '↓'}" in md
    ms = compute_method_summary(rows, dirs, manifest)
    assert set(NEW) <= set(ms["metric"].dropna())
