"""Config as data: ``train --config FILE`` and ``run --config FILE`` (YAML, TOML, JSON, a
manifest), flags derived from the dataclass fields, flags over the file, and one-line
errors for unknown keys and mistyped values."""
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from lico_bench.bench import RunSpec
from lico_bench.cli import build_parser, run_spec, train_config
from lico_bench.errors import UserError
from lico_bench.train import TrainConfig, make_config
from tests.reliability.common import ROOT, chdir, cli_error, cli_ok, rows, run_argv, tables

CONFIGS = ROOT / "configs"


def _spec(*argv) -> RunSpec:
    return run_spec(build_parser().parse_args(["run", *argv]))


def _train(*argv) -> TrainConfig:
    return train_config(build_parser().parse_args(["train", *argv]))


# Each committed config and the flags it replaces (docs/recipes.md shows both).
RUN_CONFIGS = {
    "shapes_default.yaml": ["--model", "baseline_r18", "--model", "lico_r18", "--method", "gradcam",
                            "--method", "gradcampp", "--method", "scorecam", "--method", "rise",
                            "--n-images", "100"],
    "shapes_variants.yaml": ["--model", "baseline_r18", "--model", "lico_r18", "--model",
                             "lico_rolled_r18", "--model", "lico_released_r18", "--model",
                             "lico_mmonly_r18", "--model", "lico_otonly_r18", "--method", "gradcam",
                             "--method", "rise", "--n-images", "100"],
    "cifar10_wrn28_2.toml": ["--dataset", "cifar10", "--model", "baseline_wrn28_2", "--model",
                             "lico_wrn28_2", "--method", "gradcam", "--method", "gradcampp",
                             "--method", "scorecam", "--method", "rise", "--seeds", "0", "1", "2",
                             "--n-images", "1000", "--no-train"],
    "cifar100_wrn28_8.yaml": ["--dataset", "cifar100", "--model", "baseline_wrn28_8", "--model",
                              "lico_wrn28_8", "--method", "gradcam", "--method", "gradcampp",
                              "--method", "scorecam", "--method", "rise", "--seeds", "0", "1", "2",
                              "--n-images", "1000", "--no-train"],
    "imagenette_r50.yaml": ["--dataset", "imagenette", "--split", "val", "--model", "baseline_r50",
                            "--model", "lico_r50", "--method", "gradcam", "--method", "gradcampp",
                            "--method", "scorecam", "--method", "rise", "--n-images", "1000",
                            "--batch-size", "25", "--no-train"],
}
TRAIN_CONFIGS = {
    "train_cifar10_wrn28_2.yaml": ["--preset", "cifar10", "--model", "lico_wrn28_2"],
    "train_cifar100_wrn28_8.yaml": ["--preset", "cifar100", "--model", "lico_wrn28_8"],
    "train_svhn_wrn28_2.yaml": ["--preset", "svhn", "--model", "lico_wrn28_2"],
    "train_imagenet_r50.yaml": ["--preset", "imagenet", "--model", "lico_r50", "--dataset", "imagenette"],
}


def test_every_committed_config_is_tested():
    assert sorted(p.name for p in CONFIGS.iterdir()) == sorted([*RUN_CONFIGS, *TRAIN_CONFIGS])


@pytest.mark.parametrize("name", sorted(RUN_CONFIGS))
def test_run_config_equals_the_flags_it_replaces(name):
    from_file = _spec("--config", str(CONFIGS / name))
    assert from_file == _spec(*RUN_CONFIGS[name])
    assert from_file != RunSpec()  # the file was read
    # with --root, as docs/recipes.md runs it: the flag is added to the file's options
    assert _spec("--config", str(CONFIGS / name), "--root", "/data") == \
        _spec(*RUN_CONFIGS[name], "--root", "/data")


@pytest.mark.parametrize("name", sorted(TRAIN_CONFIGS))
def test_train_config_equals_the_preset_it_spells_out(name):
    from_file = _train("--config", str(CONFIGS / name), "--seed", "2", "--root", "/data")
    assert from_file == _train(*TRAIN_CONFIGS[name], "--seed", "2", "--root", "/data")
    assert from_file.seed == 2 and from_file.epochs >= 100 and from_file.preset in name
    # the baseline of the same recipe: one flag over the file
    base = _train("--config", str(CONFIGS / name), "--model", from_file.model.replace("lico_", "baseline_"))
    assert base.model.startswith("baseline_") and base.epochs == from_file.epochs


def test_every_field_has_its_flag_and_the_defaults_are_the_fields():
    """One place to add an option: every RunSpec and TrainConfig field is a flag of its
    command; with no flag and no file, the spec is the dataclass default."""
    parser = build_parser()
    sub = {a.dest: a for a in parser._subparsers._group_actions[0].choices["run"]._actions}
    assert {f.name for f in dataclasses.fields(RunSpec)} <= set(sub)
    tsub = {a.dest for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= tsub
    assert _spec() == RunSpec()
    assert _train() == make_config(None)
    assert _train("--no-nesterov", "--momentum", "0.5").nesterov is False
    assert _spec("--no-train").train is False and _spec("--train").train is True


def test_flags_override_the_file_and_options_merge(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [baseline_tiny, lico_tiny]\nn_images: 30\ntrain: false\n"
                   "method_options: {rise: {N: 40, p: 0.25}}\nseeds: [0, 1]\n")
    spec = _spec("--config", str(cfg), "--n-images", "10", "--method", "rise",
                 "--method-option", "rise.N=20", "--checkpoint", "lico_tiny=x.pt")
    assert spec.n_images == 10 and spec.models == ["baseline_tiny", "lico_tiny"]
    assert spec.methods == ["rise"] and spec.seeds == [0, 1] and spec.train is False
    assert spec.method_options == {"rise": {"N": 20, "p": 0.25}}
    assert spec.checkpoints == {"lico_tiny": "x.pt"}
    tcfg = tmp_path / "t.toml"
    tcfg.write_text('model = "baseline_tiny"\nepochs = 3\nlr = 0.01\n')
    t = _train("--config", str(tcfg), "--epochs", "5")
    assert (t.model, t.epochs, t.lr, t.preset) == ("baseline_tiny", 5, 0.01, "quick")


def test_yaml_toml_and_json_read_the_same(tmp_path):
    (tmp_path / "a.yaml").write_text("models: [baseline_r18]\nn_images: 7\nmetrics: [insertion]\n")
    (tmp_path / "a.toml").write_text('models = ["baseline_r18"]\nn_images = 7\nmetrics = ["insertion"]\n')
    (tmp_path / "a.json").write_text(json.dumps({"models": ["baseline_r18"], "n_images": 7,
                                                 "metrics": ["insertion"]}))
    specs = [_spec("--config", str(tmp_path / f"a.{ext}")) for ext in ("yaml", "toml", "json")]
    (tmp_path / "empty.yaml").write_text("# nothing set: the defaults\n")
    assert _spec("--config", str(tmp_path / "empty.yaml")) == RunSpec()
    assert specs[0] == specs[1] == specs[2] == _spec("--model", "baseline_r18", "--n-images", "7",
                                                     "--metrics", "insertion")


@pytest.mark.parametrize("text,needles", [
    ("n_image: 100\n", ["unknown run option 'n_image' in", "did you mean 'n_images'?"]),
    ("model: [lico_r18]\n", ["unknown run option 'model'", "did you mean 'models'?"]),
    ("n_images: '3'\n", ["run option n_images in", "must be an integer >= 1", '"3"']),
    ("n_images: true\n", ["run option n_images in", "must be an integer >= 1, got true"]),
    ("seeds: [0, x]\n", ["run option seeds[1] in", "must be an integer, got \"x\""]),
    ("target: labels\n", ["run option target", 'one of "pred", "label"']),
    ("- models\n", ["holds a list, not a mapping of run options"]),
    ("models: [a\n", ["is not readable YAML"]),
])
def test_a_bad_run_config_is_one_line(capsys, tmp_path, text, needles):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    cli_error(capsys, ["run", "--config", str(cfg), "--out", str(tmp_path / "out")], *needles,
              watch=[tmp_path])


def test_a_bad_train_config_is_one_line(capsys, tmp_path):
    for text, needles in (("epoch = 3\n", ["unknown train option 'epoch'", "did you mean 'epochs'?"]),
                          ("lr = true\n", ["train option lr", "must be a finite number > 0, got true"]),
                          ("epochs = 0\n", ["train option epochs", "must be an integer >= 1, got 0"]),
                          ("optimizer = \"adam\"\n", ["train option optimizer", 'one of "sgd", "adamw"'])):
        cfg = tmp_path / "bad.toml"
        cfg.write_text(text)
        cli_error(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "runs")], *needles,
                  watch=[tmp_path])
    yml = tmp_path / "lr.yaml"
    yml.write_text("lr: 1e-3\n")  # YAML 1.1 reads this as text
    cli_error(capsys, ["train", "--config", str(yml)], "lr", "write it with a dot", watch=[tmp_path])
    cli_error(capsys, ["train", "--config", str(tmp_path / "none.yaml")], "does not exist",
              watch=[tmp_path])
    odd = tmp_path / "c.ini"
    odd.write_text("[x]\n")
    cli_error(capsys, ["train", "--config", str(odd)], "unknown format '.ini'", watch=[tmp_path])


def test_run_from_a_config_file_is_the_run_of_the_flags(capsys, ckpts, reference_run, tmp_path):
    """The fault tests' run, once from flags (the session's reference run) and once from a
    YAML file holding the same options: the same manifest spec, rows and tables (but the
    Command line); and that manifest is itself a config file (and so is its bare spec)."""
    argv = run_argv(ckpts)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "models: [baseline_tiny, lico_tiny]\nmethods: [gradcam, rise]\nn_images: 30\n"
        "batch_size: 5\ntrain: false\ndevice: cpu\nmethod_options: {rise: {N: 40}}\n"
        f"out: res\ncheckpoints: {{baseline_tiny: '{ckpts['baseline_tiny']}', "
        f"lico_tiny: '{ckpts['lico_tiny']}'}}\n")
    # the file's out is taken when --out repeats it (a file never chooses it alone)
    assert _spec("--config", str(cfg), "--out", "res") == _spec(*argv[1:])
    work = tmp_path / "w"
    work.mkdir()
    with chdir(work):
        cli_ok(capsys, ["run", "--config", str(cfg), "--quiet", "--out", "res"])
    ref = reference_run["dir"]
    assert rows(work / "res") == reference_run["rows"]
    t1, t2 = reference_run["tables"], tables(work / "res")
    assert {k: v for k, v in t1.items() if k != "summary.md"} == \
        {k: v for k, v in t2.items() if k != "summary.md"}
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (ref, work / "res"))
    assert m1["spec"] == m2["spec"]
    # the manifest (or its spec alone) as --config gives the recorded spec back
    assert dataclasses.asdict(_spec("--config", str(ref / "manifest.json"), "--out", "res")) == m1["spec"]
    (tmp_path / "spec.json").write_text(json.dumps(m1["spec"]))
    assert dataclasses.asdict(_spec("--config", str(tmp_path / "spec.json"), "--out", "res")) == m1["spec"]
    # --from-manifest still reads it; with --config too it refuses
    assert _spec("--from-manifest", str(ref / "manifest.json"), "--out", "res") == \
        _spec("--config", str(ref / "manifest.json"), "--out", "res")
    # without --out, the file's out is refused (even a relative one)
    cli_error(capsys, ["run", "--config", str(cfg), "--quiet"], f"{str(cfg)!r} sets out to 'res'; "
              "a file does not choose where results are written: pass --out 'res'", watch=[tmp_path])
    cli_error(capsys, ["run", "--from-manifest", str(ref / "manifest.json"), "--config", str(cfg)],
              "--from-manifest takes every option from the manifest; drop --config", watch=[tmp_path])


def test_a_manifest_of_another_format_is_no_config(capsys, reference_run, tmp_path):
    man = json.loads((reference_run["dir"] / "manifest.json").read_text())
    man["format"] = 1
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(man))
    cli_error(capsys, ["run", "--config", str(path)], "has format 1", watch=[tmp_path])
    with pytest.raises(UserError, match="unknown run option 'frobnicate'"):
        man["format"] = 2
        man["spec"]["frobnicate"] = 1
        path.write_text(json.dumps(man))
        _spec("--config", str(path))


def _documented_commands():
    """Every ``lico-bench train|run|report|figures|dataset ...`` command of README.md and of
    every docs/*.md page, as (page, argv) (lines joined at a trailing backslash; ``torchrun
    ... -m lico_bench.cli`` included; a command ends at ``&&``, ``;`` or ``|``)."""
    out = []
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert {"commands.md", "metrics.md", "recipes.md", "scaling.md"} <= {d.name for d in docs}
    for doc in [ROOT / "README.md", *docs]:
        text = re.sub(r"\\\n\s*", " ", doc.read_text())
        for m in re.finditer(r"(?:lico-bench|-m lico_bench\.cli) "
                             r"((?:train|run|report|figures|dataset) [^`\n#&;|]*)", text):
            argv = shlex.split(m.group(1).replace("...", "").replace("$s", "0"))  # a loop's seed
            if len(argv) > 1:
                out.append((doc.relative_to(ROOT).as_posix(), argv))
    return out


def test_documented_commands_still_parse(monkeypatch):
    """README and docs/*.md commands run as written: every one parses (flag names
    and forms kept), and a config file named in them exists. The machine's bounds are those
    of the 8-GPU node the recipes are written for (``--workers 4`` on a 64-core node; on a
    2-core machine it is refused, as it should be there)."""
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    cmds = _documented_commands()
    assert len(cmds) >= 15 and any("--config" in argv for _, argv in cmds)
    # the pages the README's reference moved to are read too
    assert {"README.md", "docs/commands.md", "docs/datasets.md", "docs/metrics.md",
            "docs/recipes.md", "docs/scaling.md"} <= {page for page, _ in cmds}
    parser = build_parser()
    for page, argv in cmds:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page}: {shlex.join(argv)} does not parse")
        if getattr(args, "config", None) and args.config.startswith("configs/"):
            assert (ROOT / args.config).is_file(), (page, argv)


@pytest.mark.parametrize("entry,needle", [
    ({"checkpoints": {"baseline_tiny": [1, 2]}},
     "run option checkpoints['baseline_tiny'] in {cfg} must be a string, got [1, 2]"),
    ({"checkpoints": {"baseline_tiny": 5}},
     "run option checkpoints['baseline_tiny'] in {cfg} must be a string, got 5"),
    ({"method_options": {"gradcam": "x"}},
     "run option method_options['gradcam'] in {cfg} must be a JSON object, got \"x\""),
], ids=["checkpoint-list", "checkpoint-int", "method-options-string"])
def test_mistyped_values_inside_a_mapping(capsys, tmp_path, entry, needle):
    """Each key and value of a mapping option is checked against its field's type (before,
    ``checkpoints: {m: [1, 2]}`` or ``method_options: {gradcam: "x"}`` ended in a
    traceback further on)."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"models": ["baseline_tiny"], "methods": ["gradcam"], **entry}))
    cli_error(capsys, ["run", "--config", str(cfg), "--quiet", "--out", str(tmp_path / "out")],
              needle.format(cfg=repr(str(cfg))), watch=[tmp_path])
