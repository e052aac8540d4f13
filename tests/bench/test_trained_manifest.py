"""The manifest records what each checkpoint was TRAINED with, read from the checkpoint
(``trained``), not the family's defaults; summary.md shows it; a checkpoint trained
otherwise than the one a results directory's rows were made with is refused."""
import json

import pytest

import tests.tiny  # noqa: F401  (registers baseline_tiny and the peers' *_tiny)
from lico_bench import UserError
from lico_bench.bench import RunSpec, run
from lico_bench.models import read_checkpoint
from lico_bench.train import make_config, train


def _train(tmp_path, **kw):
    cfg = make_config("quick", model="guided_tiny", n_train=64, epochs=1, batch_size=32,
                      out=str(tmp_path / "runs"), device="cpu", **kw)
    return train(cfg, force=True, progress=False, log=lambda *a: None)


def _spec(tmp_path, ckpt):
    return RunSpec(models=["baseline_tiny", "guided_tiny"], methods=["gradcam"], n_images=2,
                   batch_size=2, runs=str(tmp_path / "runs"), out=str(tmp_path / "res"),
                   checkpoints={"guided_tiny": str(ckpt)}, device="cpu",
                   train_options={"n_train": 64, "epochs": 1, "batch_size": 32},
                   metrics=["pointing_game"])


def test_the_manifest_says_the_lambda_the_checkpoint_was_trained_with(tmp_path):
    ckpt = _train(tmp_path, guided_lambda=0.05)                # the default is 1.0
    assert read_checkpoint(ckpt)["cfg"]["guidance_settings"]["guided_lambda"] == 0.05
    out = run(_spec(tmp_path, ckpt), log=lambda *a: None, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["trained"]["guided_tiny@seed0"]
    assert entry["checkpoint"] == str(ckpt) and entry["family"] == "guided"
    assert entry["settings"] == {"guided_lambda": 0.05, "guided_share": 1.0}
    # the recipe it was trained with, without paths, machine or other families' options
    opts = entry["train_options"]
    assert (opts["epochs"], opts["n_train"], opts["batch_size"], opts["preset"]) == (1, 64, 32, "quick")
    assert not {"out", "device", "rrr_lambda", "alpha", "guided_lambda"} & set(opts)
    # the baseline the run trained itself is recorded from its checkpoint too
    assert manifest["trained"]["baseline_tiny@seed0"]["settings"] == {}
    assert manifest["trained"]["baseline_tiny@seed0"]["train_options"]["n_train"] == 64
    md = (out / "summary.md").read_text()
    assert "guided_lambda 0.05, guided_share 1.0" in md and "guided_lambda 1.0" not in md

    # The same checkpoint retrained with another lambda: the rows already there were made
    # with the first one, so the run stops before it mixes the two, and says so in one line.
    _train(tmp_path, guided_lambda=0.2)
    with pytest.raises(UserError, match="trained with guided_lambda 0.05, but .* was trained "
                                        "with guided_lambda 0.2; use another --out") as e:
        run(_spec(tmp_path, ckpt), log=lambda *a: None, progress=False)
    assert "\n" not in str(e.value)
    after = json.loads((out / "manifest.json").read_text())["trained"]["guided_tiny@seed0"]
    assert after["settings"]["guided_lambda"] == 0.05       # the manifest was not replaced


def test_merge_trained_compares_the_options_both_entries_record(tmp_path):
    from lico_bench.bench.manifest import merge_trained

    def entry(settings, opts):
        return {"checkpoint": "m.pt", "family": "guided", "settings": settings,
                "train_options": opts}

    old = {"guided_r18@seed0": entry({"guided_lambda": 0.01}, {"epochs": 2, "keep_epochs": []})}
    # an option one side lacks, a hand-saved checkpoint (no recipe), other kept epochs: same
    for same in (entry({"guided_lambda": 0.01}, {"epochs": 2, "keep_epochs": [1], "new": 3}),
                 entry({"guided_lambda": 0.01}, None)):
        merged = merge_trained(old, {"guided_r18@seed0": same, "baseline_r18@seed0": entry({}, None)},
                               tmp_path)
        assert merged["guided_r18@seed0"] is same and set(merged) == {"guided_r18@seed0",
                                                                     "baseline_r18@seed0"}
    for other, says in ((entry({"guided_lambda": 1.0}, None), "guided_lambda 0.01, but m.pt "
                         "was trained with guided_lambda 1.0"),
                        (entry({"guided_lambda": 0.01}, {"epochs": 3}), "epochs 2, but m.pt was "
                         "trained with epochs 3")):
        with pytest.raises(UserError, match=says):
            merge_trained(old, {"guided_r18@seed0": other}, tmp_path)


def test_summary_says_when_the_seeds_of_a_model_were_trained_differently():
    from lico_bench.report.tables import trained_section

    def entry(lam, epochs):
        return {"checkpoint": "m.pt", "family": "guided", "settings": {"guided_lambda": lam},
                "train_options": {"epochs": epochs, "preset": "quick", "n_train": None}}

    trained = {"guided_r18@seed0": entry(0.01, 2), "guided_r18@seed10": entry(0.01, 2),
               "guided_r18@seed2": entry(1.0, 2), "baseline_r18@seed0": {"settings": [1]}}
    lines = trained_section({"trained": trained})
    table = lines[2].splitlines()
    assert [[c.strip() for c in line.split("|")[1:-1]] for line in table[2:]] == [
        ["baseline_r18", "0", "-", "not recorded in the checkpoint"],   # damaged: unrecorded
        ["guided_r18", "0, 10", "guided_lambda 0.01", "preset quick, epochs 2"],
        ["guided_r18", "2", "guided_lambda 1.0", "preset quick, epochs 2"]]
    assert lines[4] == "**Trained differently across seeds: guided_r18.**"
    assert trained_section({}) == [] and trained_section({"trained": {}}) == []
