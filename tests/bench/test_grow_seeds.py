"""A run grows by seeds (issue 25's grid, trained and committed seed by seed): the same
command with seeds appended runs only the new seeds' experiments into the same results
directory, keeps the finished rows byte for byte, and computes the cross-seed agreement over
all seeds (the one-seed run kept its pooled maps); fewer or other seeds are refused."""
import json

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench.cli import main


def test_a_run_grows_by_seeds(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "res"
    base = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--batch-size", "4", "--metrics", "pointing_game", "--runs", str(runs),
            "--device", "cpu", "--quiet", "--save-maps", "0", "--train-option", "n_train=32",
            "--train-option", "epochs=1", "--out", str(out)]
    assert main(base + ["--seeds", "0"]) == 0
    assert (out / "pooled" / "shapes__baseline_tiny__gradcam__seed0.pt").exists()
    first = (out / "rows" / "shapes__baseline_tiny__gradcam__seed0.jsonl").read_bytes()
    capsys.readouterr()
    assert main(base + ["--seeds", "0", "1"]) == 0
    assert "1 of 2 experiments already complete" in capsys.readouterr().out
    assert (out / "rows" / "shapes__baseline_tiny__gradcam__seed0.jsonl").read_bytes() == first
    assert json.loads((out / "manifest.json").read_text())["spec"]["seeds"] == [0, 1]
    agree = [json.loads(line) for line in (out / "agreement.jsonl").read_text().splitlines()]
    assert len(agree) == 4 and all(r["seeds"] == [0, 1] for r in agree)
    assert "seeds [0, 1]" in (out / "summary.md").read_text()
    for other in (["1", "0"], ["0"], ["0", "2"]):   # not the old seeds followed by new ones
        assert main(base + ["--seeds", *other]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "holds a run with other settings (seeds)" in err
