"""OS errors a user can cause - a full disk, no permission, a file where a folder should
be - end in one line ``lico-bench: error: PATH: what the system said; the fix`` and exit
status 2, never a traceback; nothing is left half-written, and finished work is kept, so
the same command continues once the cause is fixed.

A full disk is tested twice: simulated (``fsync`` of the n-th file written fails with
ENOSPC, deterministic, in-process) and for real, on a 48 KiB tmpfs mounted in a private
mount namespace (``unshare``; skipped where that is not allowed)."""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lico_bench.cli import main
from tests.reliability.common import (ERROR, N_IMAGES, PARTS, assert_same_weights, chdir,
                                      cli_error, cli_ok, env, history, rows, run_argv, tables,
                                      train_argv)

FULL = "No space left on device; free some space there or point --out/--runs elsewhere"


def _fail_nth_fsync(monkeypatch, n: int) -> dict:
    """From now on the ``n``-th ``os.fsync`` (every atomic write makes one, just before
    its rename) fails as on a full disk."""
    real, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _one_error_line(capsys, argv) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR) and "Traceback" not in err, err
    return lines[0]


def _assert_whole(out: Path) -> None:
    """No temporary file left; every file there is a whole one (the manifest parses, each
    part holds its batch's rows, in order)."""
    assert not list(out.rglob(".*.tmp")), list(out.rglob(".*.tmp"))
    json.loads((out / "manifest.json").read_text())
    for p in out.glob("parts/*/*.jsonl"):
        ids = [json.loads(line)["image_id"] for line in p.read_text().splitlines()]
        assert ids == list(range(int(p.stem), int(p.stem) + N_IMAGES // PARTS)), p


def test_disk_full_during_run_simulated(tmp_path, capsys, monkeypatch, ckpts, reference_run):
    """The 10th file a run writes (a part file: after the manifest, inputs.pt, the browser's
    input and mask sheets and thumbs/meta.json, the maps file, and the first batch's three
    parts, the second batch's small maps) hits a full disk: one line naming that file and the
    fix; the parts finished before it are whole and kept; the same command, once there is
    space, ends with the rows and tables of an uninterrupted run."""
    calls = _fail_nth_fsync(monkeypatch, 10)
    with chdir(tmp_path):
        line = _one_error_line(capsys, run_argv(ckpts))
    assert calls["n"] == 10
    assert f"res{os.sep}parts{os.sep}" in line and FULL in line, line
    out = tmp_path / "res"
    _assert_whole(out)
    assert list(out.glob("parts/*/*.jsonl")) and not (out / "summary.csv").exists()
    monkeypatch.undo()
    with chdir(tmp_path):
        cli_ok(capsys, run_argv(ckpts))
    assert rows(out) == reference_run["rows"] and tables(out) == reference_run["tables"]


def test_disk_full_while_saving_a_training_state(tmp_path, capsys, monkeypatch, reference_training):
    """Training writes last.pt and log.csv after each epoch; the disk fills while last.pt
    of epoch 2 is written: one line naming last.pt; last.pt still holds epoch 1, whole;
    ``--resume`` ends with the weights of an uninterrupted training."""
    _fail_nth_fsync(monkeypatch, 3)
    last = tmp_path / "runs" / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    with chdir(tmp_path):
        line = _one_error_line(capsys, train_argv())
    assert line == f"{ERROR}{Path('runs/shapes/baseline_tiny/seed0/last.pt')}: {FULL}, then run the same " \
                   "command again; finished work is kept and nothing was left half-written."
    monkeypatch.undo()
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    assert not list(last.parent.glob(".*.tmp")) and not (last.parent / "model.pt").exists()
    with chdir(tmp_path):
        cli_ok(capsys, train_argv(extra=["--resume"]))
    assert_same_weights(last.parent / "model.pt", reference_training)
    assert history(last.parent / "model.pt") == history(reference_training)


def _can_mount_tmpfs(where: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    where.mkdir()
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs '{where}'"],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.slow   # the default run: test_disk_full_during_run_simulated (the same ENOSPC path)
def test_disk_full_on_a_real_tmpfs(tmp_path, capsys, ckpts, reference_run):
    """``--out`` on a 48 KiB tmpfs, which fills up during the run (a real ENOSPC from
    write()): one line naming the file and the fix, exit 2; everything on the full disk is
    whole. Its contents copied to a disk with space, the same command finishes with the
    rows and tables of an uninterrupted run."""
    if not _can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("no private tmpfs here (unshare -rm / mount not permitted)")
    work = tmp_path / "work"
    (work / "res").mkdir(parents=True)
    argv = " ".join(f"'{a}'" for a in run_argv(ckpts))
    script = (f"mount -t tmpfs -o size=48k tmpfs res && "
              f"'{sys.executable}' -m tests.reliability.entry {argv} 2>err.txt; echo $? >rc.txt; "
              f"cp -a res/. saved/")
    (work / "saved").mkdir()
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=work, env=env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    err = (work / "err.txt").read_text()
    assert (work / "rc.txt").read_text().strip() == "2", err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR) and FULL in lines[0], err
    assert "res" + os.sep in lines[0]
    saved = work / "saved"
    _assert_whole(saved)
    assert not (saved / "summary.csv").exists()
    os.rmdir(work / "res")                 # the tmpfs is gone with its namespace
    saved.rename(work / "res")
    with chdir(work):
        cli_ok(capsys, run_argv(ckpts))
    assert rows(work / "res") == reference_run["rows"]
    assert tables(work / "res") == reference_run["tables"]


def test_figures_out_is_an_existing_file(tmp_path, capsys, ckpts):
    """``figures --out FILE`` (was: a FileExistsError traceback after drawing)."""
    out = tmp_path / "res"
    cli_ok(capsys, ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
                    "--device", "cpu", "--quiet", "--no-train", "--checkpoint",
                    ckpts["baseline_tiny"], "--out", str(out)])
    blocker = tmp_path / "figs.png"
    blocker.write_text("a file\n")
    cli_error(capsys, ["figures", str(out), "--out", str(blocker)], f"--out {blocker} is a file",
              "pass a folder", watch=[tmp_path])


def test_a_file_in_the_way_of_an_output_folder(tmp_path, capsys):
    """``dataset show --out FILE/grid.png``: the OSError is one line naming the path."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x\n")
    cli_error(capsys, ["dataset", "show", "shapes", "-n", "2", "--out", str(blocker / "grid.png")],
              str(blocker), "a file is in the way where a folder is needed", watch=[tmp_path])


@pytest.mark.parametrize("exc,needle", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/results/summary.csv"),
     "/data/results/summary.csv: Permission denied; make it readable/writable for you or choose another path."),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/summary.md"),
     "/mnt/ro/summary.md: Read-only file system; the filesystem is read-only"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/home/u/res/summary.tex"),
     "/home/u/res/summary.tex: Disk quota exceeded; free some of your quota"),
], ids=["permission", "read-only", "quota"])
def test_os_errors_are_one_line_naming_the_path(tmp_path, capsys, monkeypatch, exc, needle):
    """Permission errors cannot be provoked for real as root (these tests often run as
    root), so the report's writer raises them: each is one line with the path and its fix."""
    import lico_bench.report

    def fail(results):
        raise exc

    monkeypatch.setattr(lico_bench.report, "build_report", fail)
    line = _one_error_line(capsys, ["report", str(tmp_path)])
    assert needle in line, line


_SAVE_ON_FULL_DISK = """
import errno, sys, torch
from pathlib import Path
from lico_bench.io import torch_save
target = Path(sys.argv[1]) / "model.pt"
torch_save({"w": torch.ones(4)}, target)
good = target.read_bytes()
try:
    torch_save({"w": torch.zeros(200_000)}, target)     # 800 kB on a 64 kB disk
except OSError as e:
    print(e.errno == errno.ENOSPC, e.filename == str(target), target.read_bytes() == good,
          sorted(p.name for p in target.parent.iterdir()))
"""


def test_checkpoint_write_on_a_full_tmpfs(tmp_path):
    """torch.save's own writer reports a full disk as a RuntimeError ("unexpected pos")
    raised over the OSError; lico_bench.io.torch_save raises the OSError (ENOSPC, naming
    the file), so the CLI's one line applies; the previous file stays whole, no temporary
    file is left."""
    if not _can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("no private tmpfs here (unshare -rm / mount not permitted)")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=64k tmpfs '{disk}' && "
              f"'{sys.executable}' -c '{_SAVE_ON_FULL_DISK}' '{disk}'")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env(), capture_output=True,
                       text=True, timeout=300)
    assert r.stdout.strip() == "True True True ['model.pt']", r.stdout + r.stderr
