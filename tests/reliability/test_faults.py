"""Faults: SIGKILL, Ctrl-C (SIGINT) and SIGTERM at random points of training and of a run, and
writes cut short. Kill points come from seeded RNGs, so a failure replays.

What each test expects: a killed or interrupted command, started again (``--resume`` for
training), ends with exactly what an uninterrupted one gives - the same weights, the same
rows and byte-identical tables - and a file is never left half-written in place of a good
one.
"""
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lico_bench.io import atomic_path, torch_save, write_text
from tests.reliability.common import (EPOCHS, PARTS, ROOT, assert_same_weights, chdir, cli_ok,
                                      done_units, history, kill, rows, run_argv, spawn, tables,
                                      train_argv, wait_until)

EXPERIMENTS = 4
TOTAL = EXPERIMENTS * PARTS          # part files of the fault tests' run
INTERRUPTED = "lico-bench: interrupted; finished work is kept ({})."
TERMINATED = "lico-bench: terminated (SIGTERM); finished work is kept ({})."


# --------------------------------------------------------------------------- atomic writes
def test_exception_while_writing_keeps_the_old_file(tmp_path):
    """A write that fails half-way (an exception inside the write; a checkpoint that cannot
    be pickled) leaves the previous file byte for byte, and no temporary file behind."""
    table = write_text(tmp_path / "summary.csv", "model,mean\nlico,0.5\n")
    with pytest.raises(RuntimeError):
        with atomic_path(table) as tmp:
            tmp.write_text("model,me")
            raise RuntimeError("disk full")
    assert table.read_text() == "model,mean\nlico,0.5\n"
    ckpt = torch_save({"w": torch.ones(3)}, tmp_path / "model.pt")
    good = ckpt.read_bytes()
    with pytest.raises(Exception):
        torch_save({"w": torch.zeros(3), "oops": lambda: None}, ckpt)   # lambdas do not pickle
    assert ckpt.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "summary.csv"]


_WRITER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("lb_io", sys.argv[1])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
target, n = sys.argv[2], int(sys.argv[3])
texts = ["a" * n, "b" * n]
print("writing", flush=True)
i = 0
while True:
    io.write_text(target, texts[i % 2])
    i += 1
"""


def test_sigkill_while_writing_never_leaves_a_half_file(tmp_path):
    """SIGKILL of a process that rewrites a 1 MB file in a loop with lico_bench.io (every
    rows, manifest, table and checkpoint write goes through it), 6 times at random moments:
    the file is always one whole version, never a mix or a truncation."""
    rng = random.Random(7)
    n = 1 << 20
    target = tmp_path / "rows.jsonl"
    target.write_text("a" * n)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(ROOT / "lico_bench" / "io.py"),
                                 str(target), str(n)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(rng.uniform(0.0, 0.2))
        proc.kill()
        proc.wait()
        proc.stdout.close()
        text = target.read_text()
        assert text in ("a" * n, "b" * n), (len(text), text[:1], text[-1:])


# --------------------------------------------------------------------------- training
def _train_and_stop(tmp_path, sig, seed) -> Path:
    """Start ``lico-bench train`` (4 epochs) as a child; once last.pt exists (epoch 1 is
    saved) wait a random 0-0.3 s and send ``sig``. Returns the work folder.

    On an idle machine the remaining epochs can take less than that wait; a training whose
    last epoch was saved before the signal resumes nothing, so it is tried again in a fresh
    folder with a quarter of the wait (at most 4 times)."""
    delay = random.Random(seed).uniform(0.0, 0.3)
    for attempt in range(4):
        work = tmp_path / ("work" if attempt == 0 else f"work{attempt}")
        work.mkdir()
        last = work / "runs" / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
        proc = spawn(train_argv(), cwd=work)
        wait_until(proc, last.exists)
        time.sleep(delay)
        rc, out, err = kill(proc, sig)
        done = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
        if (last.parent / "model.pt").exists() or done >= EPOCHS:  # no epoch left to resume
            delay /= 4
            continue
        if sig == signal.SIGINT:
            assert rc == 130, err
            assert err.splitlines() == [INTERRUPTED.format("run it again with --resume to continue")], err
        elif sig == signal.SIGTERM:
            assert rc == 143, err
            assert err.splitlines() == [TERMINATED.format("run it again with --resume to continue")], err
        else:
            assert rc == -signal.SIGKILL, err
        assert 1 <= done < EPOCHS
        return work
    pytest.fail("the training finished before the signal every time")


def _resume_and_compare(capsys, work, reference_training):
    last = work / "runs" / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    done = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    with chdir(work):
        out = cli_ok(capsys, train_argv(extra=["--resume"]))
    assert f"resuming baseline_tiny on shapes after epoch {done}" in out
    final = last.parent / "model.pt"
    assert_same_weights(final, reference_training)
    assert history(final) == history(reference_training)


def test_sigkill_during_training_then_resume_continues(tmp_path, capsys, reference_training):
    """SIGKILL of ``lico-bench train`` at a random moment after its first epoch: last.pt
    holds the last finished epoch, and ``--resume`` continues from it to the weights and
    per-epoch log of an uninterrupted run, bit for bit."""
    work = _train_and_stop(tmp_path, signal.SIGKILL, seed=3)
    _resume_and_compare(capsys, work, reference_training)


# slow: SIGINT and SIGTERM take one path (cli.main's handler; only the status and the word
# differ); the default run keeps SIGTERM during training and Ctrl-C during a run.
@pytest.mark.slow
def test_ctrl_c_during_training_stops_cleanly_and_resume_continues(tmp_path, capsys, reference_training):
    """Ctrl-C (SIGINT) during ``lico-bench train``: exit status 130, one line saying that
    finished work is kept and how to continue, no traceback; last.pt is whole, and
    ``--resume`` ends where an uninterrupted run does."""
    work = _train_and_stop(tmp_path, signal.SIGINT, seed=4)
    _resume_and_compare(capsys, work, reference_training)


def test_sigterm_during_training_stops_cleanly_and_resume_continues(tmp_path, capsys, reference_training):
    """SIGTERM (what a job scheduler sends at the end of a job's time) during ``lico-bench
    train``: handled as Ctrl-C - exit status 143 (128 + 15), one line saying that finished
    work is kept and how to continue, no traceback - and ``--resume`` ends with the weights
    and log of an uninterrupted run."""
    work = _train_and_stop(tmp_path, signal.SIGTERM, seed=8)
    _resume_and_compare(capsys, work, reference_training)


# --------------------------------------------------------------------------- runs
def _kill_run_at_random_points(tmp_path, capsys, ckpts, reference_run, trials, seed):
    """``trials`` times: start the run as a child, SIGKILL it once a random number of part
    files (more than the last time) exist, plus a random 0-50 ms; then finish it
    in-process and compare with the uninterrupted run."""
    rng = random.Random(seed)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "res"
    killed = 0
    for _ in range(trials):
        before = done_units(out, PARTS)
        if before >= TOTAL - 2:
            break
        target = rng.randint(before + 1, TOTAL - 2)
        proc = spawn(run_argv(ckpts), cwd=work)
        wait_until(proc, lambda: done_units(out, PARTS) >= target)
        time.sleep(rng.uniform(0.0, 0.05))
        rc, _, err = kill(proc)
        assert rc in (-signal.SIGKILL, 0), err
        killed += rc == -signal.SIGKILL
        # the killed holder's lock file stays, and does not block the next run (fcntl locks
        # die with their process): test_concurrency.test_a_killed_holder_does_not_block
        assert rc == 0 or (out / ".lock").exists()
        assert not (out / "summary.csv").exists() or rc == 0
    assert killed >= 1
    with chdir(work):
        cli_ok(capsys, run_argv(ckpts))
    assert rows(out) == reference_run["rows"]
    assert tables(out) == reference_run["tables"]
    assert not (out / "parts").exists()


def test_sigkill_during_run_then_rerun_gives_the_same_tables(tmp_path, capsys, ckpts, reference_run):
    """SIGKILL of ``lico-bench run`` at one random point (seeded): the rerun, not blocked by
    the killed run's lock, skips what is finished and ends with the rows and byte-identical
    tables of an uninterrupted run."""
    _kill_run_at_random_points(tmp_path, capsys, ckpts, reference_run, trials=1, seed=0)


@pytest.mark.slow
def test_sigkill_during_run_at_several_random_points(tmp_path, capsys, ckpts, reference_run):
    """As above, killed 6 times in a row at random points (seeded) before the rerun."""
    _kill_run_at_random_points(tmp_path, capsys, ckpts, reference_run, trials=6, seed=1)


# SIGTERM during a run is slow: cli.main handles it as Ctrl-C (_Terminated is a
# KeyboardInterrupt); SIGTERM's own status and line are checked in the default run by
# test_sigterm_during_training_stops_cleanly_and_resume_continues.
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_during_run_stops_cleanly_and_keeps_finished_work(tmp_path, capsys, ckpts,
                                                                             reference_run, sig):
    """Ctrl-C (SIGINT) or SIGTERM during ``lico-bench run``: exit status 130 or 143, one
    line, no traceback; every part file finished before the signal is still there and
    whole; the rerun ends with the rows and byte-identical tables of an uninterrupted run."""
    work = tmp_path / "work"
    work.mkdir()
    out = work / "res"
    proc = spawn(run_argv(ckpts), cwd=work)
    wait_until(proc, lambda: done_units(out, PARTS) >= 3 + random.Random(5 + sig).randint(0, 6))
    finished = {p: p.read_bytes() for p in out.glob("parts/*/*.jsonl")}
    rc, _, err = kill(proc, sig)
    again = "run the same command again to continue"
    if sig == signal.SIGINT:
        assert rc == 130, err
        assert err.splitlines() == [INTERRUPTED.format(again)], err
    else:
        assert rc == 143, err
        assert err.splitlines() == [TERMINATED.format(again)], err
    for p, data in finished.items():
        merged = out / "rows" / f"{p.parent.name}.jsonl"
        assert (p.exists() and p.read_bytes() == data) or merged.exists()
    for p in out.glob("parts/*/*.jsonl"):
        assert [json.loads(l)["image_id"] for l in p.read_text().splitlines()] == \
            list(range(int(p.stem), int(p.stem) + 5))
    assert not (out / "summary.csv").exists()
    with chdir(work):
        cli_ok(capsys, run_argv(ckpts))
    assert rows(out) == reference_run["rows"]
    assert tables(out) == reference_run["tables"]


def test_run_killed_while_training_its_checkpoint_resumes_the_training(tmp_path, capsys):
    """SIGKILL of a ``lico-bench run`` while it trains a missing checkpoint (after the
    training's first epoch, at a random moment): the rerun continues that training from
    last.pt instead of starting over, and ends with the weights and per-epoch log of an
    uninterrupted ``lico-bench train`` with the same options. (12 epochs of ~40 ms: the kill
    lands within the first 0.1 s after epoch 1 is saved, well before the training ends.)"""
    epochs = 12
    ref = tmp_path / "ref"
    ref.mkdir()
    with chdir(ref):
        cli_ok(capsys, train_argv(epochs=epochs))
    reference = ref / "runs" / "shapes" / "baseline_tiny" / "seed0" / "model.pt"
    work = tmp_path / "work"
    work.mkdir()
    last = work / "runs" / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "5",
            "--device", "cpu", "--runs", "runs", "--out", "res", "--quiet",
            "--train-option", "n_train=128", "--train-option", "batch_size=32",
            "--train-option", f"epochs={epochs}"]
    proc = spawn(argv, cwd=work)
    wait_until(proc, last.exists)
    time.sleep(random.Random(5).uniform(0.0, 0.1))
    rc, out, err = kill(proc)
    assert rc == -signal.SIGKILL, err
    assert not (last.parent / "model.pt").exists(), "the training finished before the kill"
    assert not list((work / "res").glob("rows/*.jsonl"))
    done = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= done < epochs
    with chdir(work):
        out = cli_ok(capsys, argv)
    assert f"resuming baseline_tiny on shapes after epoch {done}" in out
    assert_same_weights(last.parent / "model.pt", reference)
    assert history(last.parent / "model.pt") == history(reference)
