"""Helpers of the reliability suite: drive the real CLI, check one-line errors, snapshot
files, start and watch ``lico-bench`` subprocesses."""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List

import torch

from lico_bench.cli import main

ROOT = Path(__file__).resolve().parents[2]
ERROR = "lico-bench: error: "

# The fault tests' run: two models x two methods, 30 images in batches of 5, i.e. 6 part
# files per experiment and 24 in all, ~1 s of work per experiment on one thread, so a kill
# or an interrupt can land anywhere in it.
N_IMAGES, BATCH = 30, 5
PARTS = N_IMAGES // BATCH
EPOCHS = 4  # the fault tests' training: 4 epochs of 4 steps


def run_argv(ckpts: dict, out: str = "res", n_images: int = N_IMAGES) -> List[str]:
    """The fault tests' ``lico-bench run`` command line (``--out`` relative to the cwd, so
    that runs in different folders record the same command)."""
    return ["run", "--model", "baseline_tiny", "--model", "lico_tiny", "--method", "gradcam",
            "--method", "rise", "--n-images", str(n_images), "--batch-size", str(BATCH),
            "--no-train", "--device", "cpu", "--method-option", "rise.N=40", "--quiet",
            "--out", out, "--checkpoint", f"baseline_tiny={ckpts['baseline_tiny']}",
            "--checkpoint", f"lico_tiny={ckpts['lico_tiny']}"]


def train_argv(out: str = "runs", epochs: int = EPOCHS, extra: Iterable[str] = ()) -> List[str]:
    """A baseline_tiny training of 4 steps per epoch (``--out`` relative to the cwd)."""
    return ["train", "--model", "baseline_tiny", "--n-train", "128", "--batch-size", "32",
            "--epochs", str(epochs), "--device", "cpu", "--quiet", "--out", out, *extra]


@contextlib.contextmanager
def chdir(path: Path):
    prev = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(prev)


def snapshot(*roots: Path) -> Dict[str, tuple]:
    """Every file and folder under ``roots``: files by (sha256, size, mtime_ns), symlinks by
    their target, FIFOs and other special files by mode (never opened: reading one would
    block or never end)."""
    out: Dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for p in sorted([root, *root.rglob("*")]):
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir",)
            elif not p.is_file():
                out[str(p)] = ("special", p.lstat().st_mode)
            else:
                st = p.stat()
                out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size,
                               st.st_mtime_ns)
    return out


def files_only(snap: Dict[str, tuple]) -> Dict[str, tuple]:
    return {k: v for k, v in snap.items() if v[0] == "file"}


def cli_error(capsys, argv: List[str], *needles: str, watch: Iterable[Path] = (),
              new_dirs_ok: bool = False) -> str:
    """Run ``lico-bench argv`` in-process; assert exit status 2 and exactly one stderr line
    ``lico-bench: error: ...`` containing every needle, no traceback, and that nothing under
    ``watch`` changed (no file written, replaced or touched; with ``new_dirs_ok`` empty new
    folders are tolerated). Returns the line."""
    watch = [Path(w) for w in watch]
    before = snapshot(*watch)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    after = snapshot(*watch)
    if new_dirs_ok:
        assert files_only(after) == files_only(before)
        assert all(after[k] == before[k] for k in before)
    else:
        assert after == before
    return lines[0]


def cli_ok(capsys, argv: List[str]) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    return out


def env(threads: int = 1) -> dict:
    # OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning; on a busy
    # 2-core machine spinning made 2-thread processes up to 8x slower. Results are the same.
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", TQDM_DISABLE="1",
                HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")


def spawn(argv: List[str], cwd: Path, threads: int = 1) -> subprocess.Popen:
    """``lico-bench argv`` (with the suite's registrations) as a child process."""
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.entry", *argv], cwd=cwd,
                            env=env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_until(proc: subprocess.Popen, cond: Callable[[], bool], timeout: float = 180) -> None:
    """Poll ``cond`` until it holds; fail if ``proc`` ends first or time runs out."""
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (exit {proc.returncode}) before the point of "
                                 f"injection\nstdout: {out}\nstderr: {err}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the point of injection")
        time.sleep(0.02)


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> tuple:
    """Send ``sig`` and wait; returns (returncode, stdout, stderr)."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def rows(out: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((Path(out) / "rows").glob("*.jsonl"))}


def tables(out: Path) -> Dict[str, bytes]:
    return {n: (Path(out) / n).read_bytes() for n in ("summary.csv", "summary.md", "summary.tex")}


def state_dict(path: Path) -> Dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = state_dict(a), state_dict(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def history(path: Path) -> List[dict]:
    """The per-epoch log of a checkpoint, without wall-clock times (NaN as "nan", so that
    logs compare equal)."""
    h = torch.load(path, map_location="cpu", weights_only=True)["extra"]["history"]
    return [{k: ("nan" if v != v else v) for k, v in r.items() if k != "epoch_s"} for r in h]


def done_units(out: Path, parts_per_experiment: int) -> int:
    """Finished batches of a run: part files plus merged experiments."""
    return (len(list(Path(out).glob("parts/*/*.jsonl")))
            + parts_per_experiment * len(list(Path(out).glob("rows/*.jsonl"))))
