"""Files lico-bench reads back have a typed schema each (``lico_bench/schemas.py``, checked
where the file is read): a checkpoint, a training state ``last.pt``, a maps file,
``inputs.pt`` and a rows file that are safe to load (tensors and plain containers) but hold
a field of the wrong type or shape end in one line naming the file and the field, exit
status 2, nothing written. Before, each was a traceback further on (``cfg: "x"``:
ValueError; ``epoch: "one"``: TypeError; a maps file holding a bare tensor: IndexError; a
rows value that is a string under a valid checksum: TypeError in the tables)."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.reliability.common import chdir, cli_error, train_argv

FIX_CKPT = "delete it and train again"
FIX_STATE = "delete it or rerun without --resume"


def _run(ckpt, out):
    return ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--batch-size", "4", "--device", "cpu", "--quiet", "--no-train", "--out", str(out),
            "--checkpoint", f"baseline_tiny={ckpt}"]


def _set(key, value):
    def change(obj):
        obj[key] = value
    return change


def _set_cfg(key, value):
    def change(obj):
        obj["cfg"][key] = value
    return change


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("change,needle", [
    (_set("cfg", "x"), "is not a lico-bench checkpoint ('cfg' must be a mapping, got 'x')"),
    (_set("state_dict", [1, 2]), "'state_dict' must be a mapping of names to tensors, got a list"),
    (_set("format", "2"), "'format' must be an integer >= 1, got '2'"),
    (_set("extra", "x"), "'extra' must be a mapping or null, got 'x'"),
    (_set_cfg("num_classes", "ten"), "model config field num_classes of checkpoint"),
    (_set_cfg("mean", ["a", 0.0, 0.0]), "model config field mean[0]"),
    (_set_cfg("lico_settings", "x"), "model config field lico_settings of checkpoint"),
    (lambda o: o["cfg"].pop("arch"), "has no arch; it is damaged"),
    # hostile round 4: values of the right type that no trained model has
    (_set_cfg("num_classes", 0), "num_classes is 0"),
    (_set_cfg("image_size", -5), "image_size -5 is not in [16, 1024]"),   # "use --image-size -5"
    (_set_cfg("image_size", 10 ** 9), "image_size 1000000000 is not in [16, 1024]"),
    (_set_cfg("mean", [0.1, 0.2]), "mean [0.1, 0.2] and std"),             # was accepted
    (_set_cfg("std", [0.0, 0.0, 0.0]), "std [0.0, 0.0, 0.0] are not 3 values each, std > 0"),
    (_set_cfg("family", "weird"), "family is 'weird', not one of 'baseline', 'lico', 'guided'"),
    (lambda o: o["state_dict"].__setitem__("extra.weight", torch.zeros(1)),
     'Unexpected key(s) in state_dict: "extra.weight"'),                  # named no key before
], ids=["cfg-text", "state-dict-list", "format-text", "extra-text", "num-classes-text",
        "mean-text", "lico-settings-text", "no-arch", "no-classes", "size-negative", "size-huge",
        "mean-two",
        "std-zero", "family-other", "unexpected-key"])
def test_checkpoint_fields_of_the_wrong_type(capsys, ckpts, tmp_path, change, needle):
    obj = torch.load(ckpts["baseline_tiny"], weights_only=True)
    change(obj)
    bad = tmp_path / "bad.pt"
    torch.save(obj, bad)
    cli_error(capsys, _run(bad, tmp_path / "res"), needle, watch=[tmp_path])


# ---------------------------------------------------------------------------- last.pt
def _wrong_shape(state):
    k = next(k for k, v in state["model"].items() if v.dim() == 4)
    state["model"][k] = torch.zeros(1)


@pytest.mark.parametrize("change,needle", [
    (_wrong_shape, "does not fit the model and optimizer it resumes (Error(s) in loading "
                   "state_dict for Classifier: size mismatch"),
    (_set("epoch", "one"), "is not a lico-bench training state ('epoch' must be an integer >= 0, "
                           "got 'one')"),
    (_set("epoch", -3), "'epoch' must be an integer >= 0, got -3"),
    (_set("epoch", 99), "its log holds 4 epochs, but it says 99 were trained"),
    (_set("history", "x"), "'history' must be a list of mappings, got 'x'"),
    (_set("train_cfg", "x"), "'train_cfg' must be a mapping, got 'x'"),
    (_set("optimizer", {}), "does not fit the model and optimizer it resumes"),
    (_set("format", 7), "has format 7, this lico-bench reads 1"),
], ids=["wrong-shape", "epoch-text", "epoch-negative", "epoch-past-its-log", "history-text",
        "train-cfg-text", "optimizer-empty", "format-other"])
def test_training_state_fields_of_the_wrong_type(capsys, tmp_path, reference_training, change,
                                                 needle):
    """``train --resume`` on a copy of a finished 4-epoch run whose last.pt was changed."""
    shutil.copytree(reference_training.parents[3], tmp_path / "runs")
    last = tmp_path / "runs" / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    state = torch.load(last, weights_only=True)
    change(state)
    torch.save(state, last)
    with chdir(tmp_path):
        cli_error(capsys, train_argv("runs", epochs=5, extra=["--resume"]), needle, FIX_STATE,
                  watch=[tmp_path])


# ---------------------------------------------------------------------------- maps, inputs.pt
@pytest.fixture
def res(tmp_path, reference_run):
    shutil.copytree(reference_run["dir"], tmp_path / "res")
    return tmp_path / "res"


def _edit_torch(path: Path, change):
    obj = torch.load(path, weights_only=True)
    obj = change(obj)
    torch.save(obj, path)


@pytest.mark.parametrize("change,needle", [
    (lambda d: d["maps"], "it holds a Tensor of shape [5, 32, 32], not the mapping of a "
                          "lico-bench maps file"),
    (lambda d: {**d, "maps": d["maps"][:, 0]}, "'maps' must be a float tensor of 3 dimensions, "
                                               "got a Tensor of shape [5, 32]"),
    (lambda d: {**d, "targets": ["cat"] * len(d["targets"])}, "'targets'[0] must be an integer"),
    (lambda d: {**d, "image_ids": d["image_ids"][:2]}, "its fields hold different numbers of "
                                                       "images (image_ids: 2, maps: 5"),
], ids=["bare-tensor", "maps-2d", "targets-text", "ids-short"])
def test_maps_file_of_the_wrong_shape(capsys, res, change, needle):
    maps = sorted((res / "maps").glob("*.pt"))[0]
    _edit_torch(maps, change)
    cli_error(capsys, ["figures", str(res), "--format", "png"], f"maps file {maps} is not a "
              f"lico-bench maps file", needle, "delete it and run the same command again",
              watch=[res.parent])


@pytest.mark.parametrize("change,needle", [
    (lambda d: {**d, "image_ids": "abc"}, "'image_ids' must be a list of integers >= 0, got 'abc'"),
    (lambda d: {**d, "image_ids": [-1] + d["image_ids"][1:]},
     "'image_ids'[0] must be an integer >= 0"),
    (lambda d: [1, 2, 3], "it holds a list, not the mapping of a lico-bench inputs file"),
    (lambda d: {**d, "labels": list(range(len(d["labels"])))}, "'labels'[0] must be a string"),
], ids=["ids-text", "id-negative", "a-list", "labels-ints"])
def test_inputs_file_of_the_wrong_shape(capsys, res, change, needle):
    _edit_torch(res / "inputs.pt", change)
    cli_error(capsys, ["figures", str(res), "--format", "png"],
              f"inputs file {res / 'inputs.pt'} is not a lico-bench inputs file", needle,
              watch=[res.parent])


# ---------------------------------------------------------------------------- rows
def _forge_row(res: Path, key: str, value) -> Path:
    """Row 0 of one rows file gets ``key: value``; the check file is rewritten to match
    (a forger's checksum), so only the row schema can tell."""
    f = sorted((res / "rows").glob("*.jsonl"))[0]
    lines = f.read_text().splitlines()
    r = json.loads(lines[0])
    r[key] = value
    lines[0] = json.dumps(r, sort_keys=True)
    data = ("\n".join(lines) + "\n").encode()
    f.write_bytes(data)
    c = f.with_name(f.name[: -len(".jsonl")] + ".check.json")
    check = json.loads(c.read_text())
    check["sha256"] = hashlib.sha256(data).hexdigest()
    c.write_text(json.dumps(check))
    return f


@pytest.mark.parametrize("key,value,needle", [
    ("insertion", "high", "line 1: 'insertion' must be a number or null, got 'high'"),
    ("model", 5, "line 1: 'model' must be a string, got 5"),
    ("curve_insertion", ["a"], "line 1: 'curve_insertion'[0] must be a number"),
    ("target", 1.5, "line 1: 'target' must be an integer, got 1.5"),
    ("insertion", {"a": 1}, "line 1: 'insertion' must be a number or null, got a dict"),
], ids=["value-text", "model-int", "curve-text", "target-float", "value-dict"])
def test_rows_of_the_wrong_type_under_a_valid_checksum(capsys, res, key, value, needle):
    f = _forge_row(res, key, value)
    for cmd in (["report", str(res)], ["figures", str(res), "--format", "png"]):
        cli_error(capsys, cmd, f"rows file {f} is damaged: {needle}", watch=[res.parent])


@pytest.mark.parametrize("key,value,needle", [
    ("checkpoints", 5, "{man} is not a lico-bench manifest ('checkpoints' must be a mapping "
                       "of names to strings, got 5)"),
    ("n_images", "4", "the manifest's spec is not a lico-bench manifest spec ('n_images' must "
                      "be an integer >= 1, got '4')"),
], ids=["checkpoints-number", "n-images-text"])
def test_manifest_fields_of_the_wrong_type(capsys, res, key, value, needle):
    """A manifest whose ``checkpoints`` is a number (``figures``: a TypeError traceback;
    ``report`` never reads it) or whose spec's ``n_images`` is text (taken): both
    commands name the field."""
    man = json.loads((res / "manifest.json").read_text())
    (man["spec"] if key == "n_images" else man)[key] = value
    (res / "manifest.json").write_text(json.dumps(man))
    for cmd in (["report", str(res)], ["figures", str(res), "--format", "png"]):
        cli_error(capsys, cmd, needle.format(man=res / "manifest.json"), watch=[res.parent])


@pytest.mark.parametrize("what,needle", [
    ("manifest-folder", "is not a results directory (no manifest.json)"),
    ("rows-a-file", "has no finished experiments yet"),
])
def test_results_files_replaced_by_the_wrong_kind(capsys, res, what, needle):
    """Held: manifest.json a folder, rows/ a file: one line each."""
    p = res / ("manifest.json" if what == "manifest-folder" else "rows")
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    p.mkdir() if what == "manifest-folder" else p.write_text("x")
    cli_error(capsys, ["report", str(res)], needle, watch=[res.parent])


@pytest.mark.parametrize("text,needle", [
    ('{"format": 1, "rows": 1e400, "sha256": "%s"}', "'rows' must be an integer >= 0, got inf"),
    ('{"format": 1, "rows": 30, "sha256": 5}', "'sha256' must be 64 hexadecimal digits, got 5"),
    ("[" * 100_000, "it is not JSON of at most 64 KiB"),
], ids=["rows-1e400", "sha-number", "nested-100000"])
def test_check_file_of_the_wrong_type(capsys, res, text, needle):
    """A check file holding an infinite row count (OverflowError traceback before), a
    checksum that is a number, or 100 000 brackets (RecursionError traceback before)."""
    f = sorted((res / "rows").glob("*.jsonl"))[0]
    c = f.with_name(f.name[: -len(".jsonl")] + ".check.json")
    c.write_text(text.replace("%s", "0" * 64))
    cli_error(capsys, ["report", str(res)], f"rows file {f} is damaged: its check file "
              f"{c.name} is not readable ({needle})", watch=[res.parent])


def test_rows_with_crlf_under_a_valid_checksum_are_the_same_rows(capsys, res, reference_run):
    """Held: every line end made CRLF (an editor on Windows) and the checksum rewritten:
    the same values, so the same tables."""
    for f in (res / "rows").glob("*.jsonl"):
        data = f.read_bytes().replace(b"\n", b"\r\n")
        f.write_bytes(data)
        c = f.with_name(f.name[: -len(".jsonl")] + ".check.json")
        check = json.loads(c.read_text())
        check["sha256"] = hashlib.sha256(data).hexdigest()
        c.write_text(json.dumps(check))
    from tests.reliability.common import cli_ok, tables

    cli_ok(capsys, ["report", str(res)])
    assert tables(res)["summary.csv"] == reference_run["tables"]["summary.csv"]
