"""Where ``run`` writes. It writes only into a new or empty folder or a results directory of
its own (manifest.json present): a folder of the user's files is refused in one line (before,
``run --out DIR`` replaced the summary.md, summary.csv and methods.* the user had there). A
config file or manifest from elsewhere does not aim the run: an ``out`` it sets that is
absolute or climbs out with ``..`` must be repeated with ``--out``. Every option is checked
before the first write, so a refusal never blocks the corrected command (before,
``gradcam.layer=nonexistent`` was refused after manifest.json and inputs.pt were written, and
the corrected command was then told the folder "holds a run with other settings")."""
import json

import pytest

from tests.reliability.common import chdir, cli_error, cli_ok


def _run(ckpt, *extra):
    return ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--batch-size", "4", "--device", "cpu", "--quiet", "--no-train",
            "--checkpoint", ckpt, *extra]


def test_a_folder_of_the_users_files_is_refused(capsys, ckpts, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("summary.md", "summary.csv", "methods.md", "notes.txt"):
        (mine / name).write_text(f"the user's {name}\n")
    cli_error(capsys, _run(ckpts["baseline_tiny"], "--out", str(mine)),
              f"--out {mine} is a folder that is neither empty nor a lico-bench results "
              "directory (no manifest.json; it holds methods.md, notes.txt, summary.csv, ...)",
              "pass a new or empty folder", watch=[tmp_path])


def test_a_file_as_out_is_refused(capsys, ckpts, tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("not a folder\n")
    cli_error(capsys, _run(ckpts["baseline_tiny"], "--out", str(f)),
              f"--out {f} is not a folder", watch=[tmp_path])


@pytest.mark.parametrize("out", ["ABS", "../../elsewhere"], ids=["absolute", "dotdot"])
@pytest.mark.parametrize("how", ["--config", "--from-manifest"])
def test_a_file_from_elsewhere_does_not_choose_out(capsys, ckpts, reference_run, tmp_path,
                                                   out, how):
    """A config or manifest whose ``out`` is absolute or climbs out of the working folder:
    refused unless ``--out`` repeats it."""
    out = str(tmp_path / "victim") if out == "ABS" else out
    man = json.loads((reference_run["dir"] / "manifest.json").read_text())
    man["spec"]["out"] = out
    src = tmp_path / "shared" / ("manifest.json" if how == "--from-manifest" else "cfg.json")
    src.parent.mkdir()
    src.write_text(json.dumps(man if how == "--from-manifest" else man["spec"]))
    cli_error(capsys, ["run", how, str(src), "--quiet"],
              f"{str(src)!r} sets out to {out!r}, outside the working directory",
              f"pass --out {out!r} to confirm it", watch=[tmp_path])
    assert not (tmp_path / "victim").exists()


def test_a_wrong_layer_is_refused_before_anything_is_written(capsys, ckpts, tmp_path):
    """``--method-option gradcam.layer=nonexistent``: refused while the manifest is built,
    nothing written; the corrected command on the same --out then runs. The folder holds
    only the .lock of a run stopped before its manifest: that counts as empty."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("")
    cli_error(capsys, _run(ckpts["baseline_tiny"], "--out", str(out), "--method-option",
                           "gradcam.layer=nonexistent"),
              "model has no layer 'nonexistent'", watch=[tmp_path])
    cli_ok(capsys, _run(ckpts["baseline_tiny"], "--out", str(out)))
    assert (out / "manifest.json").is_file() and (out / "summary.md").is_file()


@pytest.mark.parametrize("how", ["--config", "--from-manifest"])
def test_a_relative_out_from_a_file_is_refused_too(capsys, reference_run, tmp_path, how):
    """A config or manifest whose ``out`` is relative (``res``, inside the working folder):
    a file does not choose where results go either, unless ``--out`` repeats it (before,
    a relative one was taken). With ``--out`` repeating it, the run goes ahead."""
    man = json.loads((reference_run["dir"] / "manifest.json").read_text())
    man["spec"]["out"] = "res"
    src = tmp_path / "shared" / ("manifest.json" if how == "--from-manifest" else "cfg.json")
    src.parent.mkdir()
    src.write_text(json.dumps(man if how == "--from-manifest" else man["spec"]))
    work = tmp_path / "work"
    work.mkdir()
    with chdir(work):
        cli_error(capsys, ["run", how, str(src), "--quiet"], f"{str(src)!r} sets out to 'res'; a "
                  "file does not choose where results are written: pass --out 'res'",
                  watch=[tmp_path])
        assert not (work / "res").exists()
        cli_ok(capsys, ["run", how, str(src), "--quiet", "--out", "res"])
    assert (work / "res" / "summary.md").is_file()


@pytest.mark.parametrize("command,key,value", [
    ("train", "out", "ABS"), ("train", "out", "elsewhere"), ("run", "runs", "ABS"),
], ids=["train-out-absolute", "train-out-relative", "run-runs-absolute"])
def test_a_config_chooses_no_training_folder(capsys, tmp_path, command, key, value):
    """``train --config`` whose ``out`` (the runs folder a training writes into) or ``run
    --config`` whose ``runs`` (where a missing checkpoint is trained) the file alone
    chose: both trained into it. Refused unless the flag repeats it."""
    value = str(tmp_path / "victim") if value == "ABS" else value
    cfg = tmp_path / "shared" / "cfg.yaml"
    cfg.parent.mkdir()
    cfg.write_text(f"{key}: {value}\n" + ("epochs: 1\nn_train: 64\n" if command == "train" else
                                          "models: [baseline_tiny]\nn_images: 4\n"))
    work = tmp_path / "work"
    work.mkdir()
    argv = [command, "--config", str(cfg), "--device", "cpu", "--quiet"] + (
        ["--model", "baseline_tiny"] if command == "train" else ["--out", "res"])
    with chdir(work):
        cli_error(capsys, argv, f"{str(cfg)!r} sets {key} to {value!r}", "a file does not "
                  f"choose where results are written: pass --{key} {value!r}", watch=[tmp_path])
    assert not (tmp_path / "victim").exists()
