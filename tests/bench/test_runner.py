"""The runner: grid expansion, per-image rows, resume after SIGKILL, identical tables."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench import UserError, create_dataset, create_model
from lico_bench.bench import Experiment, RunSpec, expand, map_status, run
from lico_bench.models import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    info = create_dataset("shapes", "val", n=4).info
    out = {}
    for i, name in enumerate(("baseline_tiny", "lico_tiny")):
        torch.manual_seed(i)
        m = create_model(name, 10, dataset_info=info).eval()
        out[name] = str(save_checkpoint(d / f"{name}.pt", m))
    return out


def make_spec(checkpoints, out, **kw):
    base = dict(models=["baseline_tiny", "lico_tiny"], methods=["gradcam", "rise"], n_images=12,
                batch_size=5, checkpoints=checkpoints, out=str(out), train=False, device="cpu",
                method_options={"rise": {"N": 40}})
    base.update(kw)
    if "rise" not in base["methods"]:  # an option for a method not run is an error
        base["method_options"] = {k: v for k, v in base["method_options"].items() if k != "rise"}
    return RunSpec(**base)


def quiet(*a):
    pass


def test_grid_expansion_order_and_keys():
    spec = RunSpec(models=["baseline_r18", "lico_r18"], methods=["gradcam", "gradcam:EigenCAM"],
                   seeds=[0, 1])
    exps = expand(spec)
    assert len(exps) == 8
    assert exps[0] == Experiment("baseline_r18", "gradcam", "shapes", 0)
    assert exps[1].method == "gradcam:EigenCAM" and exps[1].key == "shapes__baseline_r18__gradcam-EigenCAM__seed0"
    assert [e.seed for e in exps] == [0] * 4 + [1] * 4
    assert len({e.key for e in exps}) == 8


def test_run_writes_rows_maps_manifest_and_tables(checkpoints, tmp_path):
    out = run(make_spec(checkpoints, tmp_path / "r"), log=quiet, progress=False)
    rows = sorted((out / "rows").glob("*.jsonl"))
    assert len(rows) == 4, rows
    assert not (out / "parts").exists() or not any((out / "parts").iterdir())
    recs = [json.loads(l) for l in rows[0].read_text().splitlines()]
    assert [r["image_id"] for r in recs] == list(range(12))
    r = recs[0]
    for k in ("label", "pred", "prob", "target", "insertion", "deletion", "pointing_game",
              "energy_pointing_game", "curve_insertion", "curve_deletion", "map_status",
              "insertion_gain", "insertion_norm", "deletion_gain", "deletion_norm",
              "curve_insertion_gain", "curve_deletion_gain"):
        assert k in r
    assert len(r["curve_insertion"]) == 33 and r["target"] == r["pred"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["metrics"]["insertion"]["options"]["blur_sigma"] == 5.0
    assert man["metrics"]["insertion"]["resolved_step"] == 32
    assert man["methods_resolved"]["lico_tiny"]["rise"]["N"] == 40
    assert man["versions"]["torch"] and man["spec"]["n_images"] == 12
    maps = torch.load(next((out / "maps").glob("*.pt")))
    assert maps["maps"].shape == (5, 32, 32)  # save_maps=8, from the first batch of 5
    # the tables parse back
    summ = pd.read_csv(out / "summary.csv")
    assert set(summ["kind"]) == {"score", "accuracy", "paired"}
    scores = summ[summ["kind"] == "score"]
    # models x methods x (4 metrics + their 4 confidence-free columns + overall + map dependence)
    assert len(scores) == 2 * 2 * 10
    paired = summ[summ["kind"] == "paired"]
    assert len(paired) == 2 * 10 and paired["p_wilcoxon"].between(0, 1).all()
    ins = pd.DataFrame([json.loads(l) for l in (out / "rows" / "shapes__lico_tiny__gradcam__seed0.jsonl").read_text().splitlines()])
    row = scores[(scores.model == "lico_tiny") & (scores.method == "gradcam") & (scores.metric == "insertion")].iloc[0]
    # summary.csv writes %.6g: half a unit in the 6th significant digit, <= 5e-6 relative
    # (both means are float64 sums of 12 values, equal to ~1e-15)
    assert row["mean"] == pytest.approx(ins["insertion"].mean(), rel=5e-6)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    md = (out / "summary.md").read_text()
    table_lines = [l for l in md.splitlines() if l.startswith("|")]
    assert len({l.count("|") for l in table_lines[:6]}) == 1  # a well-formed first table
    tex = (out / "summary.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 3
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 3


def _tables(out):
    md = "\n".join(l for l in (out / "summary.md").read_text().splitlines()
                   if not l.startswith("Command:")).rstrip()
    return (out / "summary.csv").read_text(), md, (out / "summary.tex").read_text()


def _rows(out):
    return {p.name: p.read_text() for p in sorted((out / "rows").glob("*.jsonl"))}


def test_same_seed_gives_identical_rows_and_tables(checkpoints, tmp_path):
    a = run(make_spec(checkpoints, tmp_path / "a"), log=quiet, progress=False)
    b = run(make_spec(checkpoints, tmp_path / "b"), log=quiet, progress=False)
    assert _rows(a) == _rows(b)
    assert _tables(a) == _tables(b)


def test_rerun_skips_finished_work_and_completes_partial_experiments(checkpoints, tmp_path):
    ref = run(make_spec(checkpoints, tmp_path / "ref"), log=quiet, progress=False)
    out = run(make_spec(checkpoints, tmp_path / "x"), log=quiet, progress=False)
    # simulate a run stopped mid-experiment: one experiment has only its first part
    victim = out / "rows" / "shapes__lico_tiny__rise__seed0.jsonl"
    lines = victim.read_text().splitlines(keepends=True)
    victim.unlink()
    (out / "parts" / victim.stem).mkdir(parents=True)
    (out / "parts" / victim.stem / "000000.jsonl").write_text("".join(lines[:5]))
    before = {p: p.stat().st_mtime_ns for p in (out / "rows").glob("*.jsonl")}
    logs = []
    run(make_spec(checkpoints, tmp_path / "x"), log=logs.append, progress=False)
    assert any("3 of 4 experiments already complete" in l for l in logs)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # untouched
    assert _rows(out) == _rows(ref)


# slow: the default run kills the same run (SIGKILL, 24 parts, then the same command again)
# in tests/reliability/test_faults.py and checks the same rows and byte-identical tables.
@pytest.mark.slow
def test_sigkill_mid_experiment_then_rerun_gives_the_same_rows_and_tables(checkpoints, tmp_path):
    ref = run(make_spec(checkpoints, tmp_path / "ref", n_images=30), log=quiet, progress=False)
    out = tmp_path / "killed"
    argv = ["run", "--model", "baseline_tiny", "--model", "lico_tiny", "--method", "gradcam",
            "--method", "rise", "--n-images", "30", "--batch-size", "5", "--no-train",
            "--device", "cpu", "--method-option", "rise.N=40", "--quiet", "--out", str(out),
            "--checkpoint", f"baseline_tiny={checkpoints['baseline_tiny']}",
            "--checkpoint", f"lico_tiny={checkpoints['lico_tiny']}"]
    code = ("import sys, tests.tiny; from lico_bench.cli import main; "
            f"sys.exit(main({argv!r}))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    mid_experiment = 0
    for trial, wait_parts in enumerate((2, 9)):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            done = len(list(out.glob("parts/*/*.jsonl"))) + 6 * len(list(out.glob("rows/*.jsonl")))
            if done >= wait_parts:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"trial {trial}: the run ended (exit {proc.returncode}) before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the kill landed mid-run: 4 experiments of 6 parts each, not all of them finished
        assert proc.returncode == -signal.SIGKILL, (trial, proc.returncode)
        merged, parts = list(out.glob("rows/*.jsonl")), list(out.glob("parts/*/*.jsonl"))
        assert len(merged) < 4 and len(parts) + 6 * len(merged) < 24, (trial, merged, parts)
        assert not (out / "summary.csv").exists()
        mid_experiment += bool(parts)  # an experiment with some of its parts written
    assert mid_experiment >= 1
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(out.glob("**/.*.tmp"))
    assert _rows(out) == _rows(ref)
    assert _tables(out) == _tables(ref)


def test_incompatible_or_bad_requests_are_one_line_errors(checkpoints, tmp_path):
    run(make_spec(checkpoints, tmp_path / "r", methods=["gradcam"]), log=quiet, progress=False)
    with pytest.raises(UserError, match="other settings.*n_images"):
        run(make_spec(checkpoints, tmp_path / "r", methods=["gradcam"], n_images=6), log=quiet, progress=False)
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    man["format"] = 99
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError, match="incompatible"):
        run(make_spec(checkpoints, tmp_path / "r", methods=["gradcam"]), log=quiet, progress=False)
    with pytest.raises(UserError, match="larger than the test split"):
        run(make_spec(checkpoints, tmp_path / "big", n_images=5000), log=quiet, progress=False)
    with pytest.raises(UserError, match="no checkpoint for baseline_r18"):
        run(RunSpec(models=["baseline_r18"], train=False, runs=str(tmp_path / "none"),
                    out=str(tmp_path / "o")), log=quiet, progress=False)
    with pytest.raises(UserError, match="unknown"):
        run(make_spec(checkpoints, tmp_path / "m", methods=["gradcamm"]), log=quiet, progress=False)


def test_map_status_flags_degenerate_maps():
    maps = torch.stack([torch.rand(4, 4), torch.zeros(4, 4), torch.full((4, 4), 0.3),
                        torch.tensor(float("nan")).expand(4, 4)])
    assert map_status(maps) == ["ok", "zero", "constant", "nan"]


def test_run_saves_what_the_figures_need(checkpoints, tmp_path):
    """maps files carry the pointing-game points, inputs.pt the de-normalised input images,
    masks and class names of the saved maps, logs/ a copy of each checkpoint's log.csv."""
    from lico_bench.data.show import denormalise
    from lico_bench.metrics import pointing_points

    ck = tmp_path / "ck" / "baseline_tiny" / "model.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(Path(checkpoints["baseline_tiny"]).read_bytes())
    (ck.parent / "log.csv").write_text("epoch,ce\n1,2.0\n")
    spec = make_spec({"baseline_tiny": str(ck)}, tmp_path / "r", models=["baseline_tiny"],
                     methods=["gradcam"], n_images=5, save_maps=3)
    out = run(spec, log=quiet, progress=False)
    saved = torch.load(out / "maps" / "shapes__baseline_tiny__gradcam__seed0.pt")
    assert saved["image_ids"] == [0, 1, 2]
    assert torch.equal(saved["points"], pointing_points(saved["maps"]))
    ds = create_dataset("shapes", "test", seed=0)
    b = ds.get_batch([0, 1, 2])
    inputs = torch.load(out / "inputs.pt")
    assert inputs["image_ids"] == [0, 1, 2]
    assert torch.equal(inputs["images"], denormalise(b.images, ds.info.mean, ds.info.std).permute(0, 2, 3, 1))
    assert torch.equal(inputs["masks"], b.masks.bool())
    assert inputs["labels"] == [ds.info.class_names[int(i)] for i in b.labels]
    assert (out / "logs" / "baseline_tiny@seed0.csv").read_text() == "epoch,ce\n1,2.0\n"
