"""`run` evaluates a model at a kept epoch (``MODEL@eN``) end to end, from the command line:
trained with ``train --keep-epochs``, found by name in the runs folder, recorded in the
manifest, explained with that epoch's weights; a missing kept epoch is one line, exit 2,
nothing written."""
import json

import pytest
import torch

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench import UserError, create_dataset
from lico_bench.cli import main
from lico_bench.models import load_checkpoint, parse_model_ref
from lico_bench.report.common import pair_models
from lico_bench.train.state import kept_path


def test_parse_model_ref():
    assert parse_model_ref("baseline_tiny") == ("baseline_tiny", None)
    assert parse_model_ref("lico_wrn28_2@e15") == ("lico_wrn28_2", 15)
    for bad in ("baseline_tiny@5", "baseline_tiny@e0", "baseline_tiny@e", "baseline_tiny@e1@e2",
                "@e3", "baseline_tiny@e01"):
        with pytest.raises(UserError, match="MODEL@eN"):
            parse_model_ref(bad)
    with pytest.raises(UserError):
        parse_model_ref("no_such_model@e3")


def test_kept_epochs_pair_with_the_baseline_of_the_same_epoch():
    arch = {"arch": "tiny"}
    info = {"baseline_tiny": {"family": "baseline", **arch},
            "baseline_tiny@e1": {"family": "baseline", "epoch": 1, **arch},
            "lico_tiny": {"family": "lico", **arch},
            "lico_tiny@e1": {"family": "lico", "epoch": 1, **arch},
            "lico_tiny@e2": {"family": "lico", "epoch": 2, **arch}}
    assert pair_models(info, {"models": info}) == [("lico_tiny", "baseline_tiny"),
                                                   ("lico_tiny@e1", "baseline_tiny@e1")]
    assert pair_models(info) == [("lico_tiny", "baseline_tiny"),     # by names alone
                                 ("lico_tiny@e1", "baseline_tiny@e1")]


def test_run_explains_a_kept_epoch(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "res"
    assert main(["train", "--preset", "paper", "--model", "baseline_tiny", "--n-train", "64",
                 "--batch-size", "32", "--epochs", "2", "--keep-epochs", "1", "--out", str(runs),
                 "--device", "cpu", "--quiet"]) == 0
    args = ["run", "--model", "baseline_tiny@e1", "--model", "baseline_tiny", "--method", "gradcam",
            "--n-images", "6", "--batch-size", "6", "--metrics", "insertion,pointing_game",
            "--runs", str(runs), "--device", "cpu", "--quiet", "--save-maps", "0"]
    assert main(args + ["--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["models"]["baseline_tiny@e1"]["epoch"] == 1
    assert "epoch" not in man["models"]["baseline_tiny"]
    kept = kept_path(runs, "shapes", "baseline_tiny", 0, 1)
    assert man["checkpoints"]["baseline_tiny@e1@seed0"] == str(kept)
    # the rows of baseline_tiny@e1 are those of the epoch-1 weights; baseline_tiny's the final
    images = create_dataset("shapes", "test", seed=0).get_batch(list(range(6))).images
    for name, path in (("baseline_tiny@e1", kept), ("baseline_tiny", kept.parent / "model.pt")):
        rows = [json.loads(line) for line in
                (out / "rows" / f"shapes__{name}__gradcam__seed0.jsonl").read_text().splitlines()]
        with torch.no_grad():  # the runner's forward: fp32 on the CPU, the same batch of 6
            probs = torch.softmax(load_checkpoint(path)(images).float(), dim=1)
        assert [r["pred"] for r in rows] == probs.argmax(1).tolist()
        assert [r["prob"] for r in rows] == probs.max(1).values.tolist()
    # its training log: the epochs up to the kept one
    assert [r.split(",")[0] for r in (out / "logs" / "baseline_tiny@e1@seed0.csv").read_text().splitlines()[1:]] == ["1"]
    assert len((out / "logs" / "baseline_tiny@seed0.csv").read_text().splitlines()) == 3
    # the report regroups the two by epoch: 1 (kept) and 2 (the final weights' log)
    from lico_bench.report.tables import build_report
    paths = build_report(out)
    along = [line.split(",") for line in paths["epochs_csv"].read_text().splitlines()]
    head = along[0]
    got = {(r[head.index("epoch")], r[head.index("metric")]): float(r[head.index("mean")])
           for r in along[1:]}
    for name, epoch in (("baseline_tiny@e1", "1"), ("baseline_tiny", "2")):
        rows = [json.loads(line) for line in
                (out / "rows" / f"shapes__{name}__gradcam__seed0.jsonl").read_text().splitlines()]
        # 6 values in {0, 1}: the mean is k/6, printed with 6 significant digits
        assert got[(epoch, "pointing_game")] == float(f"{sum(r['pointing_game'] for r in rows) / 6:.6g}")
    assert "## Along training" in (out / "summary.md").read_text()
    capsys.readouterr()

    # a kept epoch that is not there: one line, exit 2, no results directory, nothing trained
    out2 = tmp_path / "res2"
    args2 = [a if a != "baseline_tiny@e1" else "baseline_tiny@e2" for a in args]
    assert main(args2 + ["--out", str(out2), "--train"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lico-bench: error: no kept epoch 2")
    assert "baseline_tiny@e1" in err           # names what is kept
    assert not out2.exists() and not kept_path(runs, "shapes", "baseline_tiny", 0, 2).exists()
    args3 = [a if a != "baseline_tiny@e1" else "baseline_tiny@2" for a in args]
    assert main(args3 + ["--out", str(out2)]) == 2
    assert "MODEL@eN" in capsys.readouterr().err and not out2.exists()


def test_run_trains_with_a_preset_then_continues_without_checkpoints(tmp_path, capsys):
    """Issue 25's grid through `run` alone: the checkpoints a run trains follow
    --train-option preset=paper (plus overrides); a finished experiment needs no checkpoint,
    so a grid continued elsewhere from its committed rows does not retrain its finished part."""
    runs, out = tmp_path / "runs", tmp_path / "res"
    args = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--seeds", "0", "1",
            "--n-images", "4", "--batch-size", "4", "--metrics", "pointing_game",
            "--runs", str(runs), "--device", "cpu", "--quiet", "--save-maps", "0",
            "--train-option", "preset=paper", "--train-option", "epochs=1",
            "--train-option", "n_train=32", "--train-option", "batch_size=16",
            "--out", str(out)]
    assert main(args) == 0
    ck = torch.load(runs / "shapes" / "baseline_tiny" / "seed1" / "model.pt", weights_only=True)
    cfg = ck["extra"]["train_cfg"]
    assert (cfg["preset"], cfg["optimizer"], cfg["nesterov"], cfg["ema"], cfg["epochs"],
            cfg["n_train"]) == ("paper", "sgd", True, 0.999, 1, 32)
    rows = {f.name: f.read_bytes() for f in (out / "rows").iterdir()}
    for s in (0, 1):   # the checkpoints are gone (another machine): nothing to train
        (runs / "shapes" / "baseline_tiny" / f"seed{s}" / "model.pt").unlink()
    capsys.readouterr()
    assert main(args) == 0
    assert "2 of 2 experiments already complete" in capsys.readouterr().out
    assert not (runs / "shapes" / "baseline_tiny" / "seed0" / "model.pt").exists()
    assert {f.name: f.read_bytes() for f in (out / "rows").iterdir()} == rows
    bad = [a if a != "preset=paper" else "preset=nosuch" for a in args]
    assert main(bad[:-1] + [str(tmp_path / "res3")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "preset='nosuch' is not a recipe" in err
