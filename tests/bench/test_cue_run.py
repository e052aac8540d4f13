"""A run on shapes-cue: reliance measured per checkpoint, the evidence mask it picks, both
masks in the rows, part-importance metrics, and the report's cue section."""
import json

import pandas as pd
import pytest
import torch
import torch.nn as nn

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench import create_dataset, create_model
from lico_bench.bench import RunSpec, run
from lico_bench.bench import cue
from lico_bench.data.shapes_cue import CUE_COLOURS
from lico_bench.models import save_checkpoint


class CueReader(nn.Module):
    """Predicts the class whose cue colour covers the most pixels (an exact shortcut model)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("colours", torch.tensor(CUE_COLOURS).view(1, 10, 3, 1, 1))

    def forward(self, x):
        rgb = (x * self.std + self.mean).unsqueeze(1)                     # [B, 1, 3, H, W]
        near = ((rgb - self.colours).abs().amax(2) < 0.15).float()        # [B, 10, H, W]
        return near.flatten(2).sum(2)


def test_measured_reliance_of_a_cue_reader_and_of_an_object_blind_model():
    info = create_dataset("shapes-cue", "absent", n=8).info
    rel = cue.measure_reliance(CueReader(info.mean, info.std), "shapes-cue", 32,
                               torch.device("cpu"), 250)
    # (a few background pixels fall near a cue colour: not quite 100 %)
    assert rel["follows_cue"] > 0.99 and rel["accuracy_agree"] > 0.99
    assert rel["accuracy_swap"] < 0.01 and rel["n_swap"] == 1000 and rel["follows"]
    assert cue.evidence(rel, "swap") == "cue" and cue.evidence(rel, "absent") == "object"
    assert rel["accuracy_absent"] < 0.2                     # no cue: no evidence at all



class CueReaderOnlyInFloat32(CueReader):
    """The cue reader with autocast off; under an enabled autocast every logit is 0, so the
    prediction is class 0 and follows the swapped cue only where that cue is class 0's: by
    construction, the reader is scored as following the cue only if its forwards run in float32."""

    def forward(self, x):
        if torch.is_autocast_enabled(x.device.type):
            return torch.zeros(x.shape[0], 10)
        return super().forward(x)


def test_reliance_is_measured_in_float32_under_an_ambient_bf16_autocast():
    """A bf16 run (--precision bf16 puts its forwards under autocast) measures the reliance
    of a float32 run: the same numbers, so the same mask is the evidence."""
    info = create_dataset("shapes-cue", "absent", n=8).info
    model = CueReaderOnlyInFloat32(info.mean, info.std)
    plain = cue.measure_reliance(model, "shapes-cue", 32, torch.device("cpu"), 250)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")        # the construction's premise holds here
        under = cue.measure_reliance(model, "shapes-cue", 32, torch.device("cpu"), 250)
    assert plain["follows_cue"] > 0.99 and under == plain


@pytest.mark.parametrize("n_follow,follows", [(500, True), (499, False), (400, False)],
                         ids=["exactly-half", "one-short-of-half", "40-percent"])
def test_the_follow_rule_at_and_below_half_of_the_swap_images(monkeypatch, n_follow, follows):
    """docs/datasets.md: a model that follows the cue on >= 50 % of the swap images is scored
    against the cue mask, any other against the object mask. Predictions that follow the swapped cue
    on exactly n_follow of the 1000 swap images (the true label on the rest)."""
    def predictions(model, ds, device, batch_size):
        if ds.split != "swap":
            return ds.labels.clone()
        return torch.where(torch.arange(len(ds)) < n_follow, ds.cue_labels, ds.labels)

    monkeypatch.setattr(cue, "predictions", predictions)
    rel = cue.measure_reliance(None, "shapes-cue", 32, torch.device("cpu"), 250)
    # a float32 mean of 0/1 values: the exact count divided once, correctly rounded
    assert rel["n_swap"] == 1000
    assert rel["follows_cue"] == (torch.tensor(float(n_follow)) / 1000).item()
    assert rel["follows"] is follows and rel["follow_at_least"] == 0.5
    assert cue.evidence(rel, "swap") == ("cue" if follows else "object")
    assert cue.evidence(rel, "agree") == ("cue" if follows else "object")
    assert cue.evidence(rel, "absent") == "object"


@pytest.fixture(scope="module")
def cue_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    info = create_dataset("shapes-cue", "absent", n=4).info
    torch.manual_seed(0)
    m = create_model("baseline_tiny", 10, dataset_info=info).eval()
    return str(save_checkpoint(d / "baseline_tiny.pt", m))


def _spec(ckpt, out, **kw):
    return RunSpec(**{**dict(models=["baseline_tiny"], methods=["gradcam"], dataset="shapes-cue",
                             split="swap", n_images=6, batch_size=4,
                             checkpoints={"baseline_tiny": ckpt}, out=str(out), train=False,
                             device="cpu",
                             metrics=["pointing_game", "energy_pointing_game", "part_rank",
                                      "part_hit"]), **kw})


def test_cue_run_rows_reliance_and_report(cue_checkpoint, tmp_path):
    out = run(_spec(cue_checkpoint, tmp_path / "r"), log=lambda *a: None, progress=False)
    rel = json.loads((out / "reliance" / "baseline_tiny__seed0.json").read_text())
    assert rel["checkpoint"] == cue_checkpoint and 0 <= rel["follows_cue"] <= 1
    rows = [json.loads(line) for line in next((out / "rows").glob("*.jsonl")).read_text().splitlines()]
    ds = create_dataset("shapes-cue", "swap")          # the run explains its first 6 images
    assert [r["cue_label"] for r in rows] == ds.cue_labels[:6].tolist()
    ev = cue.evidence(rel, "swap")
    for r in rows:   # the scored column is the evidence mask's; both are there
        assert r["evidence"] == ev
        assert r["pointing_game"] == r[f"pointing_game_{ev}"]
        assert r["energy_pointing_game"] == r[f"energy_pointing_game_{ev}"]    # a copy
        assert -1 <= r["part_rank"] <= 1 or r["part_rank"] != r["part_rank"]
        assert r["part_hit"] in (0.0, 1.0) or r["part_hit"] != r["part_hit"]
    md = (out / "summary.md").read_text()
    assert "## Reliance on the planted cue" in md and "found the cue in" in md
    assert "Part rank corr." in md


def test_a_model_that_follows_the_cue_is_scored_against_the_cue_mask(cue_checkpoint, tmp_path,
                                                                     monkeypatch):
    # The reliance record decides: one saying "follows" (as measured for a shortcut model)
    # makes the run score against the cue mask. (The measurement is replaced: a run writes
    # only into a new folder or its own, so the record cannot be placed there beforehand.)
    out = tmp_path / "r"
    measured = {"follows": True, "follows_cue": 0.97, "accuracy_agree": 1.0,
                "accuracy_swap": 0.03, "accuracy_absent": 0.5, "n_swap": 1000, "chance": 0.1,
                "follow_at_least": 0.5}
    monkeypatch.setattr(cue, "measure_reliance", lambda *a, **k: dict(measured))
    run(_spec(cue_checkpoint, out, metrics=["pointing_game", "energy_pointing_game"]),
        log=lambda *a: None, progress=False)
    rows = pd.read_json(next((out / "rows").glob("*.jsonl")), lines=True)
    assert (rows["evidence"] == "cue").all()
    assert rows["pointing_game"].tolist() == rows["pointing_game_cue"].tolist()
    assert "| baseline_tiny | 0    | 100.0" in (out / "summary.md").read_text()


def test_default_results_directory_names_a_split_other_than_test():
    assert RunSpec(dataset="shapes-cue", split="swap").default_out() == "results/shapes-cue_swap_lico_r18_gradcam"
    assert RunSpec().default_out() == "results/shapes_lico_r18_gradcam"
