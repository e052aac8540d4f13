"""LICO's peers on the planted-cue datasets (issue 26, item 5): guided_* and rrr_* train on
shapes-cue with the OBJECT masks as their annotation (never the cue's), every family's
reliance on the cue is measured and reported, paired against its baseline, and a run's
manifest says what each checkpoint was trained with."""
import json

import pandas as pd
import pytest
import torch

from lico_bench import create_dataset, create_model
from lico_bench.bench import RunSpec, run
from lico_bench.data.shapes_cue import CUE_COLOURS
from lico_bench.guidance import GuidanceLoss
from lico_bench.models import save_checkpoint
from lico_bench.train import make_config, train

# Pixel noise of shapes is N(0, 0.03^2) per channel (data/shapes.py, generate_chunk), the
# uint8 storage rounds by <= 1/510: a cue pixel is within 5 noise SDs (0.15) of its flat
# colour on every channel, and a pixel 0.15 or more away from it is not the cue's.
COLOUR_TOL = 5 * 0.03


@pytest.mark.parametrize("family", ["guided", "rrr"])
def test_a_training_batch_on_shapes_cue_gets_the_object_masks(tmp_path, monkeypatch, family):
    seen = []   # (split indices [B], masks [B, H, W]) of every training step

    real_use, real_forward = GuidanceLoss.use, GuidanceLoss.forward

    def use(self, index, device):
        seen.append([index.clone(), None])
        return real_use(self, index, device)

    def forward(self, model, x, y, masks, use_, generator):
        seen[-1][1] = masks.detach().cpu().clone()
        return real_forward(self, model, x, y, masks, use_, generator)

    monkeypatch.setattr(GuidanceLoss, "use", use)
    monkeypatch.setattr(GuidanceLoss, "forward", forward)
    # augment "none": the masks arrive as the dataset holds them (flips are tested elsewhere)
    cfg = make_config("quick", model=f"{family}_tiny", dataset="shapes-cue", n_train=64, epochs=1,
                      batch_size=32, augment="none", bn_recalibrate=1,
                      out=str(tmp_path / "runs"), device="cpu")
    train(cfg, progress=False, log=lambda *a: None)
    assert len(seen) == 2 and all(m is not None for _, m in seen)

    ds = create_dataset("shapes-cue", "train", seed=0, n=64)
    twin = create_dataset("shapes", "train", seed=0, n=64)   # the same scenes, no cue
    index = torch.cat([i for i, _ in seen])
    got = torch.cat([m for _, m in seen])
    assert sorted(index.tolist()) == list(range(64))          # one epoch: every image once
    # the object's mask as shapes draws it, empty where the scene was drawn without it
    # (object_drop); never a cue pixel, although every training image has its cue
    dropped = ds.object_dropped[index]
    assert torch.equal(got, twin.masks[index] & ~dropped.view(-1, 1, 1))
    assert torch.equal(got, ds.masks[index])
    assert ds.cue_masks[index].flatten(1).any(1).all()
    assert not (got & ds.cue_masks[index]).any()
    assert 0 < int(dropped.sum()) < 64 and not got[dropped].any()

    # By hand, one image whose object is there: the mask the loss received covers pixels of
    # the object's colour, the cue's pixels are the cue's flat colour, and the two differ.
    k = int(((~dropped) & got.flatten(1).any(1)).nonzero()[0])
    i = int(index[k])
    img = ds.images[i].float() / 255                                      # [3, H, W]
    colour = torch.tensor(CUE_COLOURS[int(ds.cue_labels[i])]).view(3, 1)
    cue_px, mask_px = img[:, ds.cue_masks[i]], img[:, got[k]]             # [3, n]
    assert (cue_px - colour).abs().amax(0).max() < COLOUR_TOL
    assert (mask_px - colour).abs().amax(0).min() > COLOUR_TOL
    assert not torch.equal(got[k], ds.cue_masks[i])


def _untrained(path, name, info):
    torch.manual_seed(0)
    return str(save_checkpoint(path / f"{name}.pt", create_model(name, 10, dataset_info=info).eval()))


def test_a_peer_family_gets_its_reliance_measured_reported_and_paired(tmp_path):
    info = create_dataset("shapes-cue", "absent", n=4).info
    ckpts = {m: _untrained(tmp_path, m, info) for m in ("baseline_tiny", "guided_tiny", "sgt_tiny")}
    spec = RunSpec(models=list(ckpts), methods=["gradcam"], dataset="shapes-cue", split="swap",
                   n_images=4, batch_size=4, checkpoints=ckpts, out=str(tmp_path / "res"),
                   train=False, device="cpu", metrics=["pointing_game", "energy_pointing_game"])
    out = run(spec, log=lambda *a: None, progress=False)
    for m in ckpts:
        rel = json.loads((out / "reliance" / f"{m}__seed0.json").read_text())
        assert rel["checkpoint"] == ckpts[m] and rel["n_swap"] == 1000
        assert 0 <= rel["follows_cue"] <= 1 and rel["follows"] == (rel["follows_cue"] >= 0.5)
    summary = pd.read_csv(out / "summary.csv")
    paired = set(summary.loc[summary["kind"] == "paired", "model"])
    assert paired == {"guided_tiny - baseline_tiny", "sgt_tiny - baseline_tiny"}
    md = (out / "summary.md").read_text()
    cue_part = md[md.index("## Reliance on the planted cue"):]
    for m in ckpts:
        assert f"| {m} " in cue_part
    per_model = cue_part[cue_part.index("Per model, over its seeds"):].split("\n\n")[1]
    partners = {c[0]: c[4] for c in ([x.strip() for x in line.split("|")[1:-1]]
                                     for line in per_model.splitlines()[2:])}
    assert partners == {"baseline_tiny": "-", "guided_tiny": "baseline_tiny",
                        "sgt_tiny": "baseline_tiny"}
    # saved by hand, not trained: the manifest says the checkpoint records no recipe
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trained"]["guided_tiny@seed0"]["train_options"] is None
    assert "not recorded in the checkpoint" in md


# 16 s on a 2-core machine at load 5 (four tiny trainings, reliance on 3 x 1000 images each)
def test_tiny_train_and_run_on_the_swap_split_with_a_peer(tmp_path):
    spec = RunSpec(models=["baseline_tiny", "guided_tiny", "rrr_tiny", "sgt_tiny"],
                   methods=["gradcam"],
                   dataset="shapes-cue", split="swap", n_images=4, batch_size=4,
                   runs=str(tmp_path / "runs"), out=str(tmp_path / "res"), device="cpu",
                   metrics=["pointing_game", "energy_pointing_game", "part_rank"],
                   train_options={"n_train": 64, "epochs": 1, "batch_size": 32,
                                  "guided_lambda": 0.05, "rrr_lambda": 3.0})
    out = run(spec, log=lambda *a: None, progress=False)
    for m in spec.models:
        assert (out / "reliance" / f"{m}__seed0.json").is_file()
    rows = pd.read_json(out / "rows" / "shapes-cue__guided_tiny__gradcam__seed0.jsonl", lines=True)
    assert len(rows) == 4 and set(rows["evidence"]) <= {"cue", "object"}
    assert {"pointing_game_cue", "pointing_game_object"} <= set(rows.columns)
    # the run trained the checkpoint with the option it was given: the manifest says so
    trained = json.loads((out / "manifest.json").read_text())["trained"]
    assert trained["guided_tiny@seed0"]["settings"] == {"guided_lambda": 0.05, "guided_share": 1.0}
    assert trained["guided_tiny@seed0"]["train_options"]["n_train"] == 64
    assert trained["baseline_tiny@seed0"]["settings"] == {}
    assert "guided_lambda" not in trained["baseline_tiny@seed0"]["train_options"]
    md = (out / "summary.md").read_text()
    section = md[md.index("## Trained with"):].split("\n\n")[1].splitlines()
    assert [[c.strip() for c in line.split("|")[1:4]] for line in section[2:]] == [
        ["baseline_tiny", "0", "-"], ["guided_tiny", "0", "guided_lambda 0.05, guided_share 1.0"],
        ["rrr_tiny", "0", "rrr_lambda 3.0"], ["sgt_tiny", "0", "sgt_k 0.5, sgt_lambda 1.0, sgt_rank abs"]]
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.loc[summary["kind"] == "paired", "model"]) == {
        f"{f}_tiny - baseline_tiny" for f in ("guided", "rrr", "sgt")}


def test_reliance_per_model_is_paired_with_its_baseline_seed_by_seed():
    from lico_bench.report.cue import reliance_by_model

    def rel(model, seed, follows, acc_swap):
        return {"model": model, "seed": seed, "follows_cue": follows, "accuracy_swap": acc_swap}

    rels = [rel("baseline_r18", 0, 0.9, 0.05), rel("baseline_r18", 1, 0.8, 0.15),
            rel("guided_r18", 0, 0.1, 0.85), rel("guided_r18", 1, 0.3, 0.65),
            rel("guided_r18", 2, 0.2, 0.75)]     # seed 2 has no baseline: not in the Δ
    manifest = {"models": {"baseline_r18": {"family": "baseline", "arch": "resnet18"},
                           "guided_r18": {"family": "guided", "arch": "resnet18"}}}
    lines = reliance_by_model(rels, manifest).splitlines()
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    # follows: mean of 0.1, 0.3, 0.2 = 20.0 %; Δ per seed 0.1-0.9 = -80, 0.3-0.8 = -50
    # (mean -65); acc. swap 0.85-0.05 = +80, 0.65-0.15 = +50 (mean +65); one decimal in %
    assert cells == [
        ["baseline_r18", "0, 1", "85.0 [80.0, 90.0]", "10.0 [5.0, 15.0]", "-", "", ""],
        ["guided_r18", "0, 1, 2", "20.0 [10.0, 30.0]", "75.0 [65.0, 85.0]", "baseline_r18",
         "-65.0 [-80.0, -50.0]", "+65.0 [+50.0, +80.0]"]]
