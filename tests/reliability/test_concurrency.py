"""One writer per results directory, and per run directory being trained into.

Two ``lico-bench run`` on one ``--out`` used to both run: the rows came out right, but one
of them died with a FileNotFoundError traceback (the other had merged and removed the
parts) and left an orphan part file. Now the first holds ``--out/.lock`` (fcntl) and the
second stops at once with one line naming the holder's pid and the fix, having read and
written nothing there; the first finishes undisturbed. Same for ``train``.

To make "at the same time" certain rather than likely, the first process is paused
(SIGSTOP) while it holds the lock, the second runs, and the first is resumed (SIGCONT).
"""
import json
import signal

import pytest

from lico_bench.results import read_rows
from tests.reliability.common import (ERROR, PARTS, assert_same_weights, chdir, cli_error,
                                      cli_ok, done_units, history, rows, run_argv, spawn, tables,
                                      train_argv, wait_until)


def _paused_after(proc, cond):
    wait_until(proc, cond)
    proc.send_signal(signal.SIGSTOP)


def _resume_and_finish(proc) -> None:
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert ERROR not in err and "Traceback" not in err, err


# other-options is slow: B's refusal while A holds the lock is the same line as with the same
# options (the lock is taken before the settings are read); a rerun with other settings
# refused is checked in the default run by test_bad_input and test_manifest.
@pytest.mark.parametrize("second", ["same", pytest.param("other", marks=pytest.mark.slow)],
                         ids=["same-options", "other-options"])
def test_two_runs_on_one_results_directory(tmp_path, capsys, ckpts, reference_run, second):
    """While run A writes ``res``, run B on ``res`` - with the same options, or other ones -
    ends in one line naming A's pid; A ends with the rows and tables of an uninterrupted
    run, no part file left over, and every rows file passes its check. B started again
    after A: with the same options it finds everything done; with other options it is
    refused as before (a results directory holds one run's settings)."""
    out = tmp_path / "res"
    a = spawn(run_argv(ckpts), cwd=tmp_path)
    try:
        _paused_after(a, lambda: done_units(out, PARTS) >= 1)
        argv_b = run_argv(ckpts) if second == "same" else run_argv(ckpts, n_images=20)
        with chdir(tmp_path):
            cli_error(capsys, argv_b, f"another lico-bench (pid {a.pid}) is writing results to res",
                      "(it holds res/.lock); wait for it to finish, or pass another --out")
    finally:
        _resume_and_finish(a)
    assert rows(out) == reference_run["rows"] and tables(out) == reference_run["tables"]
    assert not (out / "parts").exists() and not list(out.rglob(".*.tmp"))
    for f in (out / "rows").glob("*.jsonl"):
        assert read_rows(f, 30, fix="")[1]          # verified by its checksum
    with chdir(tmp_path):
        if second == "same":
            assert "4 of 4 experiments already complete" in cli_ok(capsys, argv_b)
            assert rows(out) == reference_run["rows"]
        else:
            cli_error(capsys, argv_b, "holds a run with other settings (n_images)", watch=[out])


def test_two_trainings_into_one_run_directory(tmp_path, capsys, reference_training):
    """While ``train`` A is between epochs, ``train --resume`` B of the same model and
    seed into the same runs folder ends in one line naming A's pid, having written
    nothing; A ends with the weights of an uninterrupted training."""
    rdir = tmp_path / "runs" / "shapes" / "baseline_tiny" / "seed0"
    a = spawn(train_argv(), cwd=tmp_path)
    try:
        _paused_after(a, (rdir / "last.pt").exists)
        before = {p.name: p.read_bytes() for p in rdir.iterdir()}
        with chdir(tmp_path):
            cli_error(capsys, train_argv(extra=["--resume"]),
                      f"another lico-bench (pid {a.pid}) is training into runs/shapes/baseline_tiny/seed0",
                      "wait for it to finish")
        assert {p.name: p.read_bytes() for p in rdir.iterdir()} == before
    finally:
        _resume_and_finish(a)
    assert_same_weights(rdir / "model.pt", reference_training)
    assert history(rdir / "model.pt") == history(reference_training)


@pytest.mark.slow   # the default run has it in test_faults' SIGKILL-during-run test
def test_a_killed_holder_does_not_block(tmp_path, capsys, ckpts, reference_run):
    """The lock belongs to the process: SIGKILL releases it (the lock file stays), and the
    next run on the directory proceeds and finishes as an uninterrupted run."""
    out = tmp_path / "res"
    a = spawn(run_argv(ckpts), cwd=tmp_path)
    wait_until(a, lambda: done_units(out, PARTS) >= 1)
    a.kill()
    a.communicate()
    assert (out / ".lock").exists()
    with chdir(tmp_path):
        cli_ok(capsys, run_argv(ckpts))
    assert rows(out) == reference_run["rows"]
    json.loads((out / "manifest.json").read_text())
