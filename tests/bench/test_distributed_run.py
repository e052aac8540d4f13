"""``lico-bench run`` under ``torchrun`` with 2 CPU processes (gloo): the sharded run writes
the rows of a single-process run; a rank killed mid-run and a rerun lose and duplicate
nothing."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.bench.test_runner import ROOT, _rows, _tables, checkpoints, make_spec, quiet  # noqa: F401
from lico_bench.bench import run

N_IMAGES, BATCH = 30, 5


def _argv(checkpoints, out):
    return ["run", "--model", "baseline_tiny", "--model", "lico_tiny", "--method", "gradcam",
            "--method", "rise", "--n-images", str(N_IMAGES), "--batch-size", str(BATCH),
            "--no-train", "--device", "cpu", "--method-option", "rise.N=40", "--quiet",
            "--out", str(out), "--checkpoint", f"baseline_tiny={checkpoints['baseline_tiny']}",
            "--checkpoint", f"lico_tiny={checkpoints['lico_tiny']}"]


def _children(pid: int) -> list:
    """PIDs whose parent is ``pid`` (the torchrun workers), from /proc: no procps needed."""
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat))
    return sorted(out)


def _torchrun(argv, nproc=2, **popen):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "tests" / "dist_entry.py"), *argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, **popen)


@pytest.fixture(scope="module")
def reference(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    return run(make_spec(checkpoints, out, n_images=N_IMAGES, batch_size=BATCH), log=quiet,
               progress=False)


def _assert_complete(out, ref):
    assert _rows(out) == _rows(ref)
    assert _tables(out) == _tables(ref)
    for text in _rows(out).values():
        ids = [json.loads(line)["image_id"] for line in text.splitlines()]
        assert ids == list(range(N_IMAGES))
    assert not (out / "parts").exists() and not list(out.glob("**/.*.tmp"))


def test_sharded_run_writes_the_rows_of_one_process(checkpoints, reference, tmp_path):
    out = tmp_path / "ddp"
    p = _torchrun(_argv(checkpoints, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-3000:]
    assert stdout.count("tables:") == 1                   # rank 0 speaks
    _assert_complete(out, reference)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["precision"] == "fp32"


@pytest.mark.slow   # two torchrun launches; the default run keeps the sharded run above
def test_killed_rank_then_rerun_loses_and_duplicates_nothing(checkpoints, reference, tmp_path):
    out = tmp_path / "killed"
    p = _torchrun(_argv(checkpoints, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, victim = time.time() + 300, None
    while time.time() < deadline and p.poll() is None:
        # some work finished, some not: parts of the first experiment on disk
        if len(list(out.glob("parts/*/*.jsonl"))) + len(list(out.glob("rows/*.jsonl"))) >= 3:
            kids = _children(p.pid)
            if kids:
                victim = kids[-1]
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.05)
    assert victim is not None, "the run ended before a rank could be killed"
    assert p.wait(timeout=120) != 0                       # torchrun stops the other rank too
    assert len(list(out.glob("rows/*.jsonl"))) < 4        # really interrupted
    r = _torchrun(_argv(checkpoints, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = r.communicate(timeout=600)
    assert r.returncode == 0, stderr[-3000:]
    _assert_complete(out, reference)
