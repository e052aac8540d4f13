"""LICO's peers in the trainer and the runner: masks travel with their images, the options
and their refusals, a tiny train + run per family, and the BatchNorm eval-vs-train check."""
import csv

import pandas as pd
import pytest
import torch
import torch.nn as nn

from lico_bench import UserError, create_model
from lico_bench.bench import RunSpec, run
from lico_bench.data import Batch
from lico_bench.models import load_checkpoint
from lico_bench.train import make_config, train
from lico_bench.train.augment import apply_augment, apply_augment_masks, augment_params
from lico_bench.train.loop import evaluate, recalibrate_bn, train_mode_accuracy
from lico_bench.train.trainer import build_guidance


def _cfg(tmp_path, model, **kw):
    base = dict(model=model, n_train=128, epochs=2, batch_size=32, lr=0.01,
                out=str(tmp_path / "runs"), device="cpu")
    base.update(kw)
    return make_config("quick", **base)


@pytest.mark.parametrize("kind", ["crop_flip", "crop", "flip", "resized_crop_flip"])
def test_masks_move_with_their_images(kind):
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(16, 32, 32, generator=g) < 0.3
    # an image whose every channel is its mask: augmented, it must equal the augmented mask
    x = masks[:, None].float().expand(-1, 3, -1, -1).contiguous()
    p = augment_params(kind, 16, 32, 32, torch.Generator().manual_seed(1))
    xa, ma = apply_augment(x, kind, p), apply_augment_masks(masks, kind, p)
    # crop and flip move pixels exactly; the resized crop interpolates (> 1/2 kept, both)
    assert torch.equal(xa[:, 0] > 0.5, ma)
    assert ma.dtype == torch.bool and ma.shape == masks.shape


def test_the_options_are_typed_and_recorded(tmp_path):
    cfg = _cfg(tmp_path, "guided_tiny")
    assert cfg.guidance_family == "guided"
    assert cfg.guidance_settings() == {"guided_lambda": 1.0, "guided_share": 1.0}
    assert _cfg(tmp_path, "sgt_tiny").guidance_settings() == {"sgt_k": 0.5, "sgt_lambda": 1.0,
                                                              "sgt_rank": "abs"}
    assert _cfg(tmp_path, "rrr_tiny").guidance_settings() == {"rrr_lambda": 1000.0}
    assert _cfg(tmp_path, "baseline_tiny").guidance_settings() == {}
    for bad in ({"guided_share": 0.0}, {"guided_share": 1.5}, {"sgt_k": 1.0}, {"rrr_lambda": 0.0},
                {"sgt_rank": "max"}):
        with pytest.raises(UserError):
            _cfg(tmp_path, "guided_tiny", **bad)


class _NoMasks:
    """A training split without masks (what CIFAR-10 or SVHN give)."""

    def __len__(self):
        return 8

    def get_batch(self, idx):
        return Batch(torch.zeros(len(idx), 3, 32, 32), torch.zeros(len(idx), dtype=torch.long),
                     None, torch.as_tensor(idx))


def test_mask_families_refuse_a_dataset_without_masks_in_one_line(tmp_path):
    for fam in ("guided", "rrr"):
        with pytest.raises(UserError, match=f"{fam}_tiny trains on object masks") as e:
            build_guidance(_cfg(tmp_path, f"{fam}_tiny"), _NoMasks())
        assert "\n" not in str(e.value)
    assert build_guidance(_cfg(tmp_path, "sgt_tiny"), _NoMasks()).family == "sgt"
    assert build_guidance(_cfg(tmp_path, "baseline_tiny"), _NoMasks()) is None


class _WithMasks(_NoMasks):
    """128 training images with masks."""

    def __len__(self):
        return 128

    def get_batch(self, idx):
        b = super().get_batch(idx)
        return b._replace(masks=torch.ones(len(idx), 32, 32, dtype=torch.bool))


def test_guided_share_is_a_seeded_subset(tmp_path):
    masks_ds = _WithMasks()
    a = build_guidance(_cfg(tmp_path, "guided_tiny", guided_share=0.25), masks_ds).annotated
    b = build_guidance(_cfg(tmp_path, "guided_tiny", guided_share=0.25), masks_ds).annotated
    c = build_guidance(_cfg(tmp_path, "guided_tiny", guided_share=0.25, seed=1), masks_ds).annotated
    assert int(a.sum()) == 32 and torch.equal(a, b) and not torch.equal(a, c)
    # 1 % of 128 images rounds to 1: at least one image keeps its mask
    assert int(build_guidance(_cfg(tmp_path, "guided_tiny", guided_share=0.001),
                              masks_ds).annotated.sum()) == 1
    assert build_guidance(_cfg(tmp_path, "guided_tiny"), masks_ds).annotated is None   # all
    use = build_guidance(_cfg(tmp_path, "guided_tiny", guided_share=0.25), masks_ds).use(
        torch.arange(128), torch.device("cpu"))
    assert torch.equal(use, a)


@pytest.mark.slow   # 12-14 s each on an idle 2-core machine, 34-40 s at load 10 (the report's bootstrap)
@pytest.mark.parametrize("family", ["guided", "rrr", "sgt"])
def test_tiny_train_and_run_per_family(tmp_path, family):
    model = f"{family}_tiny"
    path = train(_cfg(tmp_path, model, n_train=64), progress=False, log=lambda *a: None)
    m = load_checkpoint(path)
    assert m.cfg.family == family and m.cfg.name == model
    assert m.cfg.guidance_settings == _cfg(tmp_path, model).guidance_settings()
    rows = list(csv.DictReader(open(path.parent / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert float(r["guide"]) > 0
        # BatchNorm's running statistics fit the weights: eval mode is not below train mode
        # on the same 1000 test images by more than 3 binomial SDs at p = 0.5 (0.047)
        assert float(r["test_acc"]) >= float(r["test_acc_trainmode"]) - 0.047, r

    spec = RunSpec(models=["baseline_tiny", model], methods=["gradcam", "saliency"], n_images=4,
                   batch_size=2, runs=str(tmp_path / "runs"), out=str(tmp_path / "res"),
                   device="cpu", train_options={"n_train": 64, "epochs": 1, "batch_size": 32},
                   metric_options={"insertion": {"random_orders": 1},
                                   "deletion": {"random_orders": 1}})
    out = run(spec, log=lambda *a: None, progress=False)
    summary = pd.read_csv(out / "summary.csv")
    paired = summary[summary["kind"] == "paired"]
    assert set(paired["model"]) == {f"{model} - baseline_tiny"}
    assert set(paired["method"]) == {"gradcam", "saliency"}
    import json
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"][model]["family"] == family
    assert "intgrad" not in manifest["methods"] and "saliency" in manifest["methods"]


class _Halves:
    """In-memory two-class data a tiny network learns in a few steps: class 0 is bright in
    the top half, class 1 in the bottom half, plus noise. [N, 3, 16, 16] float32."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        self.images = 0.5 * torch.randn(n, 3, 16, 16, generator=g)
        self.images[self.labels == 0, :, :8] += 1.0
        self.images[self.labels == 1, :, 8:] += 1.0

    def __len__(self):
        return len(self.labels)

    def get_batch(self, idx):
        idx = torch.as_tensor(list(idx), dtype=torch.long)
        return Batch(self.images[idx], self.labels[idx], None, idx)


def test_batchnorm_eval_vs_train_check_catches_unusable_running_stats(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    train_ds, test_ds = _Halves(256, 0), _Halves(200, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for step in range(60):
        b = train_ds.get_batch(range((step * 32) % 256, (step * 32) % 256 + 32))
        opt.zero_grad()
        nn.functional.cross_entropy(model(b.images), b.labels).backward()
        opt.step()
    cpu = torch.device("cpu")
    good_eval, good_train = evaluate(model, test_ds, cpu), train_mode_accuracy(model, test_ds, cpu)
    assert good_eval >= 0.95 and good_train >= 0.95, (good_eval, good_train)

    # What a peer's second forward pass in train mode can do: the running statistics follow
    # other inputs (here masked-and-randomised ones of another scale), the weights do not.
    with torch.no_grad():
        g = torch.Generator().manual_seed(2)
        for _ in range(50):
            model(5.0 + 20.0 * torch.rand(32, 3, 16, 16, generator=g))
    model.eval()
    bad_eval, bad_train = evaluate(model, test_ds, cpu), train_mode_accuracy(model, test_ds, cpu)
    # the network is still right with the batches' own statistics, near chance in eval mode:
    # the check (train-mode minus eval-mode accuracy above 0.2, as the trainer warns) fires
    assert bad_train >= 0.95 and bad_eval <= 0.6, (bad_eval, bad_train)
    assert bad_train - bad_eval > 0.2
    # and the trainer's remedy, BatchNorm recalibration on training images, restores it
    cfg = make_config("quick", model="baseline_tiny", batch_size=32, bn_recalibrate=8,
                      augment="none", out=str(tmp_path), device="cpu")
    recalibrate_bn(model, train_ds, cfg, 0, cpu)
    fixed = evaluate(model, test_ds, cpu)
    assert fixed >= 0.95 and fixed >= train_mode_accuracy(model, test_ds, cpu) - 0.05, fixed


def test_train_mode_accuracy_leaves_the_model_untouched():
    torch.manual_seed(0)
    m = create_model("baseline_tiny", 2).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    train_mode_accuracy(m, _Halves(64, 0), torch.device("cpu"))
    assert not m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_a_state_written_before_the_peer_options_still_resumes(tmp_path):
    from lico_bench.io import torch_save
    from lico_bench.train.state import read_state

    cfg = _cfg(tmp_path, "baseline_tiny", epochs=1)
    path = train(cfg, progress=False, log=lambda *a: None)
    last = path.parent / "last.pt"
    state = read_state(last)
    for k in ("guided_lambda", "guided_share", "rrr_lambda", "sgt_k", "sgt_lambda", "sgt_rank"):
        del state["train_cfg"][k]                 # as a last.pt of the code before them
    torch_save(state, last)
    train(_cfg(tmp_path, "baseline_tiny", epochs=2), resume=True, progress=False, log=lambda *a: None)
    rows = list(csv.DictReader(open(path.parent / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # an option changed from its default is still a different run
    with pytest.raises(UserError, match="other options"):
        train(_cfg(tmp_path, "baseline_tiny", epochs=3, rrr_lambda=5.0), resume=True,
              progress=False, log=lambda *a: None)
