"""Bad input, one case per test: each ends in one line ``lico-bench: error: ...`` that names
the problem and the fix, exit status 2, no traceback, and no file written or replaced.
Degenerate maps are the exception: not an error, the rows are kept, flagged and counted."""
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.reliability.common import cli_error, cli_ok, train_argv
from tests.reliability.plugins import INF_IMAGE, NAN_IMAGE


def _run(ckpt, out, *extra, model="baseline_tiny"):
    return ["run", "--model", model, "--method", "gradcam", "--n-images", "4", "--batch-size", "4",
            "--device", "cpu", "--quiet", "--no-train", "--checkpoint", ckpt, "--out", str(out),
            *extra]


def _train(out, *extra, model="baseline_tiny"):
    return ["train", "--model", model, "--n-train", "64", "--batch-size", "32", "--epochs", "1",
            "--device", "cpu", "--quiet", "--out", str(out), *extra]


@pytest.fixture
def results(ckpts, tmp_path, capsys):
    """A finished results directory of baseline_tiny x gradcam on 4 images."""
    out = tmp_path / "results"
    cli_ok(capsys, _run(ckpts["baseline_tiny"], out))
    return out


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize("model,method,extra,what", [
    ("resnet_nope", "gradcam", [], "unknown model 'resnet_nope'"),
    ("baseline_tiny", "gradcamm", [], "unknown explainer 'gradcamm'"),
    ("baseline_tiny", "gradcam", ["--metrics", "insertionn"], "unknown metric 'insertionn'"),
    ("baseline_tiny", "gradcam", ["--dataset", "shapess"], "unknown dataset 'shapess'"),
], ids=["model", "method", "metric", "dataset"])
def test_run_unknown_name(capsys, tmp_path, results, model, method, extra, what):
    """run with an unknown model / method / metric / dataset name, into an existing results
    directory: the error names it and lists the known names; the directory is untouched."""
    argv = ["run", "--model", model, "--method", method, "--n-images", "4", "--device", "cpu",
            "--quiet", "--no-train", "--out", str(results), *extra]
    cli_error(capsys, argv, what, "Choose one of", watch=[tmp_path])


@pytest.mark.parametrize("model,extra,what", [
    ("resnet_nope", [], "unknown model 'resnet_nope'"),
    ("baseline_tiny", ["--dataset", "shapess"], "unknown dataset 'shapess'"),
], ids=["model", "dataset"])
def test_train_unknown_name(capsys, tmp_path, model, extra, what):
    """train with an unknown model / dataset name: the error lists the known names and not
    even the run directory is created."""
    argv = _train(tmp_path / "runs", *extra, model=model)
    cli_error(capsys, argv, what, "Choose one of", watch=[tmp_path])
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- data root
@pytest.mark.parametrize("command", ["run", "train"])
def test_missing_data_root(capsys, tmp_path, command, ckpts):
    """--root pointing at a folder that does not exist (a typo, an unmounted disk)."""
    root = tmp_path / "no-such-data"
    argv = (_run(ckpts["baseline_tiny"], tmp_path / "out", "--dataset", "cifar10", "--root", str(root))
            if command == "run" else ["train", "--model", "baseline_tiny", "--dataset", "cifar10",
                                      "--root", str(root), "--out", str(tmp_path / "runs")])
    cli_error(capsys, argv, "CIFAR-10 not found", f"{root} (no such folder)", "--download",
              watch=[tmp_path])


def test_empty_data_root(capsys, tmp_path, ckpts):
    """--root pointing at an empty folder."""
    root = tmp_path / "data"
    root.mkdir()
    cli_error(capsys, _run(ckpts["baseline_tiny"], tmp_path / "out", "--dataset", "cifar10",
                           "--root", str(root)),
              "CIFAR-10 not found", f"{root} (an empty folder)", "extract it under", watch=[tmp_path])


# --------------------------------------------------------------------------- checkpoints
def test_truncated_checkpoint(capsys, ckpts, results, tmp_path):
    """A checkpoint cut in half (an interrupted copy): named as corrupt, with the fix; the
    existing results directory (same settings) is left exactly as it was."""
    cli_error(capsys, _run(ckpts["truncated"], results), f"checkpoint {ckpts['truncated']!r} is corrupt",
              "train again", watch=[tmp_path])


def test_truncated_training_state_on_resume(capsys, tmp_path):
    """--resume with a last.pt cut in half: named as corrupt; nothing else is touched."""
    runs = tmp_path / "runs"
    last = runs / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    cli_error(capsys, train_argv(str(runs), 1, ["--resume"]), f"training state {last} is corrupt",
              "rerun without --resume", watch=[tmp_path])


@pytest.mark.parametrize("key,what", [
    ("baseline_r18", "holds baseline_r18 (a resnet18), not baseline_tiny"),
    ("five_classes", "has 5 classes but 10 are expected"),
    ("cifar10", "was trained on 'cifar10', not 'shapes'"),
])
def test_checkpoint_of_another_model(capsys, ckpts, results, tmp_path, key, what):
    """A checkpoint of another architecture, class count or dataset than the run's: caught
    when it is loaded, before anything is written."""
    cli_error(capsys, _run(ckpts[key], results), what, "checkpoint", watch=[tmp_path])


def test_text_encoder_checkpoint_missing(capsys, tmp_path):
    """train lico_* with --text-encoder clip and a --text-checkpoint that does not exist."""
    missing = tmp_path / "ViT-B-32.pt"
    cli_error(capsys, _train(tmp_path / "runs", "--text-encoder", "clip", "--text-checkpoint",
                             str(missing), model="lico_tiny"),
              f"CLIP checkpoint {str(missing)!r} not found", "--text-encoder minilm",
              watch=[tmp_path])


# --------------------------------------------------------------------------- sizes and counts
@pytest.mark.parametrize("command", ["run", "train"])
def test_image_size_too_small(capsys, tmp_path, ckpts, command):
    """--image-size 8: smaller than any model here can take (shapes draws objects of a few
    pixels; the feature map would be 1x1 or less)."""
    argv = (_run(ckpts["baseline_tiny"], tmp_path / "out", "--image-size", "8")
            if command == "run" else _train(tmp_path / "runs", "--image-size", "8"))
    cli_error(capsys, argv, "argument --image-size: expected an integer in [16, 1024]", "got 8",
              watch=[tmp_path])


def test_n_train_on_a_real_dataset(capsys, tmp_path):
    """--n-train (the size of the generated shapes split) given for CIFAR-10."""
    cli_error(capsys, ["train", "--model", "baseline_tiny", "--dataset", "cifar10", "--n-train", "100",
                       "--out", str(tmp_path / "runs")],
              "--n-train sets the size of a generated training split", "drop --n-train",
              watch=[tmp_path])


def test_image_size_other_than_the_checkpoints(capsys, ckpts, tmp_path):
    """A checkpoint trained at 32 px run at --image-size 64 (it would run - global pooling
    takes any size - and give meaningless numbers): refused; and a 64 px checkpoint on the
    default 32 px images likewise."""
    cli_error(capsys, _run(ckpts["baseline_tiny"], tmp_path / "a", "--image-size", "64"),
              "was trained on 32 px images, not 64 px", "--image-size 32", watch=[tmp_path])
    cli_error(capsys, _run(ckpts["size64"], tmp_path / "b"),
              "was trained on 64 px images, not 32 px", "--image-size 64", watch=[tmp_path])


@pytest.mark.parametrize("n", ["0", "-3", "two"])
def test_n_images_not_positive(capsys, ckpts, results, tmp_path, n):
    """--n-images 0, negative or not a number: rejected while parsing."""
    argv = _run(ckpts["baseline_tiny"], results)
    argv[argv.index("--n-images") + 1] = n
    cli_error(capsys, argv, "--n-images", "expected a positive integer", watch=[tmp_path])


def test_n_images_larger_than_the_split(capsys, ckpts, tmp_path):
    """--n-images 5000 on the 1000-image test split: the error gives the largest valid value."""
    argv = _run(ckpts["baseline_tiny"], tmp_path / "out")
    argv[argv.index("--n-images") + 1] = "5000"
    cli_error(capsys, argv, "--n-images 5000 is larger than the test split", "use at most 1000",
              watch=[tmp_path])


# --------------------------------------------------------------------------- output
def _unwritable(tmp_path: Path) -> Path:
    """A folder nobody may write into. Root ignores permission bits, so as root: a path
    below a regular file, which no one can create."""
    if os.geteuid() == 0:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder\n")
        return blocker / "out"
    d = tmp_path / "read-only"
    d.mkdir()
    d.chmod(0o500)
    return d / "out"


@pytest.mark.parametrize("command", ["run", "train"])
def test_output_directory_not_writable(capsys, ckpts, tmp_path, command):
    """--out where nothing can be written (no permission, or below a file)."""
    out = _unwritable(tmp_path)
    try:
        if command == "run":
            cli_error(capsys, _run(ckpts["baseline_tiny"], out), f"cannot write to results directory {out}",
                      "pass a writable --out", watch=[tmp_path])
        else:
            cli_error(capsys, _train(out), "cannot create run directory",
                      "pass a writable runs folder (train --out, run --runs)", watch=[tmp_path])
    finally:
        out.parent.chmod(0o700)


def test_results_directory_of_an_incompatible_version(capsys, ckpts, results, tmp_path):
    """A results directory whose manifest has another format (written by another
    lico-bench): refused, nothing in it replaced."""
    man = json.loads((results / "manifest.json").read_text())
    man["format"] = 99
    (results / "manifest.json").write_text(json.dumps(man))
    cli_error(capsys, _run(ckpts["baseline_tiny"], results), "incompatible lico-bench",
              "manifest format 99", "use another --out", watch=[tmp_path])


def test_results_directory_of_other_settings(capsys, ckpts, results, tmp_path):
    """Rerunning into a results directory with other settings (here --n-images) would mix
    incomparable rows: refused, nothing replaced."""
    argv = _run(ckpts["baseline_tiny"], results)
    argv[argv.index("--n-images") + 1] = "3"
    cli_error(capsys, argv, "holds a run with other settings (n_images)", "use another --out",
              watch=[tmp_path])


# --------------------------------------------------------------------------- data values
def test_nan_and_infinite_input_images(capsys, ckpts, tmp_path, plugins):
    """A dataset with a NaN pixel in image 5 and an infinite one in image 6: the batch that
    holds them stops the run with an error naming both images; the batch before (images
    0-4) is kept as a finished part, no rows file claims the experiment is complete."""
    out = tmp_path / "out"
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--dataset", "nanshapes",
            "--n-images", "10", "--batch-size", "5", "--device", "cpu", "--quiet", "--no-train",
            "--checkpoint", ckpts["nanshapes"], "--out", str(out)]
    cli_error(capsys, argv, f"images [{NAN_IMAGE}, {INF_IMAGE}] of nanshapes contain NaN or "
              "infinite values", "fix the data files")
    parts = sorted(p.name for p in out.glob("parts/*/*.jsonl"))
    assert parts == ["000000.jsonl"]
    assert not list(out.glob("rows/*.jsonl"))


def test_degenerate_maps_are_kept_flagged_and_counted(capsys, ckpts, tmp_path, plugins):
    """An explainer whose maps are all NaN, all zero or constant for some images (3 of each
    batch of 4): not an error. Every row is kept and marked in map_status ("nan", "zero",
    "constant"); a NaN map's metrics are NaN (left out of the means), a zero or constant
    map is scored as it is; the tables count the flagged rows."""
    out = tmp_path / "out"
    cli_ok(capsys, ["run", "--model", "baseline_tiny", "--method", "degenerate", "--n-images", "8",
                    "--batch-size", "4", "--device", "cpu", "--quiet", "--no-train",
                    "--checkpoint", ckpts["baseline_tiny"], "--out", str(out)])
    recs = [json.loads(l) for l in (out / "rows" / "shapes__baseline_tiny__degenerate__seed0.jsonl")
            .read_text().splitlines()]
    assert [r["image_id"] for r in recs] == list(range(8))
    assert [r["map_status"] for r in recs] == ["nan", "zero", "constant", "ok"] * 2
    for r in recs:
        finite = r["insertion"] == r["insertion"]
        assert finite == (r["map_status"] != "nan")
    summ = pd.read_csv(out / "summary.csv")
    scores = summ[summ["kind"] == "score"]
    assert (scores["n_flagged"] == 6).all()
    assert (scores[scores["metric"] == "insertion"]["n"] == 6).all()
    md = (out / "summary.md").read_text()
    header = next(l for l in md.splitlines() if l.startswith("| model"))
    row = next(l for l in md.splitlines() if l.startswith("| baseline_tiny"))
    assert header.rstrip(" |").endswith("flagged maps") and row.rstrip(" |").endswith("6")


def test_unknown_split_of_shapes(capsys, ckpts, tmp_path):
    """``--split nosuch`` on shapes said "shapes split size must be positive, got 0"."""
    cli_error(capsys, _run(ckpts["baseline_tiny"], tmp_path / "out", "--split", "nosuch"),
              "unknown split 'nosuch' of shapes; use one of train, val, test", watch=[tmp_path])
