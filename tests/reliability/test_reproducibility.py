"""Reproducibility on CPU: the same command with the same seed gives byte-identical tables
in separate processes, checkpoint training included; and the manifest is enough to re-run
an experiment exactly (``lico-bench run --from-manifest``)."""
import json

import pytest

from lico_bench.cli import main
from tests.reliability.common import (assert_same_weights, cli_error, cli_ok, history, rows,
                                      spawn, tables)

SAME_COMMAND = ["run", "--model", "baseline_tiny", "--model", "lico_tiny", "--method", "gradcam",
                "--method", "rise", "--method-option", "rise.N=40", "--n-images", "20",
                "--batch-size", "10", "--device", "cpu", "--quiet", "--out", "res", "--runs", "runs",
                "--train-option", "n_train=256", "--train-option", "batch_size=64",
                "--train-option", "epochs=1"]


def _twice(argv, tmp_path):
    """``lico-bench argv`` in two fresh processes with 2 threads each, one after the other
    (2 x 2 threads on 2 cores crawl), in tmp_path/first and tmp_path/second."""
    dirs = []
    for name in ("first", "second"):
        d = tmp_path / name
        d.mkdir()
        dirs.append(d)
        p = spawn(argv, cwd=d, threads=2)
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    return dirs


def test_lico_training_in_two_processes_gives_identical_weights(tmp_path):
    """The half of the test below that the race was in: ``train lico_tiny`` (256 images,
    batch 64: four steps, one epoch, as below) in two fresh processes with 2 threads each
    gives identical weights and training logs. Without trainer._deterministic_on_cpu the
    context vectors' gradient comes from index_put_'s unordered atomic adds across threads,
    and the weights differ (checked in-process without it: 2 of 3 pairs differed after two
    steps)."""
    a, b = _twice(["train", "--model", "lico_tiny", "--n-train", "256", "--batch-size", "64",
                   "--epochs", "1", "--device", "cpu", "--quiet", "--out", "runs"], tmp_path)
    ckpt = "runs/shapes/lico_tiny/seed0/model.pt"
    assert_same_weights(a / ckpt, b / ckpt)
    assert history(a / ckpt) == history(b / ckpt)


# slow: the default run has its training half above, and a run's rows and tables from a
# fresh process equal to those of another in test_faults and test_concurrency.
@pytest.mark.slow
def test_same_command_in_two_processes_gives_byte_identical_tables(tmp_path):
    """One command - train baseline_tiny and lico_tiny (no checkpoint exists), explain,
    score, report - run in two fresh processes with 2 threads each: identical weights and
    training logs, identical rows, byte-identical summary.csv/.md/.tex.

    Two threads matter: without trainer._deterministic_on_cpu the LICO context vectors'
    gradient comes from index_put_'s unordered atomic adds across threads, and lico_tiny's
    weights differ between the processes (this test then failed in 3 of 4 tries; it is a
    race, so not always)."""
    a, b = _twice(SAME_COMMAND, tmp_path)
    for model in ("baseline_tiny", "lico_tiny"):
        ckpt = f"runs/shapes/{model}/seed0/model.pt"
        assert_same_weights(a / ckpt, b / ckpt)
        assert history(a / ckpt) == history(b / ckpt)
    assert rows(a / "res") == rows(b / "res")
    assert tables(a / "res") == tables(b / "res")
    man = json.loads((a / "res" / "manifest.json").read_text())
    assert man["spec"]["train_options"] == {"n_train": 256, "batch_size": 64, "epochs": 1}
    assert man["threads"] == 2


def _grid(ckpts, out):
    return ["run", "--model", "baseline_tiny", "--model", "lico_tiny", "--method", "gradcam",
            "--method", "rise", "--method-option", "rise.N=40", "--metric-option",
            "insertion.step=64", "--n-images", "10", "--batch-size", "5", "--device", "cpu",
            "--quiet", "--no-train", "--out", str(out),
            "--checkpoint", f"baseline_tiny={ckpts['baseline_tiny']}",
            "--checkpoint", f"lico_tiny={ckpts['lico_tiny']}"]


@pytest.fixture(scope="module")
def first_run(ckpts, tmp_path_factory):
    """One finished run, shared by the module's tests (which only read it); in-process."""
    out = tmp_path_factory.mktemp("repro") / "first"
    assert main(_grid(ckpts, out)) == 0
    return out


def test_from_manifest_reruns_exactly(first_run, tmp_path, capsys):
    """``run --from-manifest first/manifest.json --out second``: the same experiments with
    every option (method and metric options, seeds, checkpoints) taken from the manifest:
    identical rows, byte-identical summary.csv and .tex, and summary.md identical but for
    its "Command:" line, which records the command that made it."""
    second = tmp_path / "second"
    cli_ok(capsys, ["run", "--from-manifest", str(first_run / "manifest.json"), "--out", str(second),
                    "--quiet"])
    assert rows(second) == rows(first_run)
    t1, t2 = tables(first_run), tables(second)
    assert t1["summary.csv"] == t2["summary.csv"] and t1["summary.tex"] == t2["summary.tex"]
    md1, md2 = (t["summary.md"].decode().splitlines() for t in (t1, t2))
    assert [l for l in md1 if not l.startswith("Command:")] == [l for l in md2 if not l.startswith("Command:")]
    assert f"Command: `lico-bench run --from-manifest {first_run / 'manifest.json'} --out {second} --quiet`" in md2
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (first_run, second))
    assert {**m1["spec"], "out": None} == {**m2["spec"], "out": None}
    assert m1["methods"] == m2["methods"] and m1["metrics"] == m2["metrics"]


def test_from_manifest_refuses_an_unknown_format(first_run, tmp_path, capsys):
    """A manifest of another format (another lico-bench): one line naming both formats."""
    man = json.loads((first_run / "manifest.json").read_text())
    from lico_bench.bench.runner import MANIFEST_FORMAT

    man["format"] = 1                # before LICO's variants: lico_r18 was the rolled reading
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(man))
    cli_error(capsys, ["run", "--from-manifest", str(path), "--out", str(tmp_path / "x")],
              f"manifest {str(path)!r} has format 1",
              f"this lico-bench reads format {MANIFEST_FORMAT}", watch=[tmp_path, first_run])


def test_from_manifest_refuses_other_options_and_bad_files(first_run, tmp_path, capsys):
    """--from-manifest with a grid option (it would no longer be the recorded run), with
    a missing file, with a file that is not JSON, and with a spec holding an unknown key."""
    man = first_run / "manifest.json"
    cli_error(capsys, ["run", "--from-manifest", str(man), "--n-images", "5"],
              "--from-manifest takes every option from the manifest; drop --n-images",
              watch=[tmp_path, first_run])
    cli_error(capsys, ["run", "--from-manifest", str(tmp_path / "nope.json")],
              "does not exist", watch=[tmp_path, first_run])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cli_error(capsys, ["run", "--from-manifest", str(bad)], "is not readable JSON",
              watch=[tmp_path, first_run])
    m = json.loads(man.read_text())
    m["spec"]["frobnicate"] = 1
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(m))
    cli_error(capsys, ["run", "--from-manifest", str(odd)], "unknown run option(s) frobnicate",
              watch=[tmp_path, first_run])


def test_train_option_that_the_run_decides_is_refused(capsys, tmp_path):
    """--train-option for a field the run sets itself (model, seed, ...) or no field at all."""
    for opt, what in (("seed=3", "seed"), ("n_trian=5", "n_trian"), ("epochs", "not KEY=VALUE")):
        cli_error(capsys, ["run", "--model", "baseline_tiny", "--train-option", opt,
                           "--out", str(tmp_path / "x")], what, watch=[tmp_path])
