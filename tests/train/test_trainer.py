"""Trainer: schedule, resume exactness, LICO gradients, no cost at inference, errors."""
import csv
import math

import numpy as np
import pytest
import torch

from lico_bench import UserError, create_model
from lico_bench.models import load_checkpoint, read_checkpoint
from lico_bench.train import augment_batch, checkpoint_path, make_config, train
from lico_bench.train.trainer import _fixmatch_cosine, apply_augment


def test_fixmatch_cosine_schedule():
    f = _fixmatch_cosine(16)
    assert f(0) == 1.0
    # exact: 7 * pi rounded once on both sides, the rest multiplies and divides by powers of 2
    assert f(16) == math.cos(7 * math.pi / 16)  # ends at ~0.195 lr0, as FixMatch
    assert f(8) == math.cos(7 * math.pi / 32)


def _reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """numpy's "reflect" padding of the last two dims (edge not repeated: d c b | a b c d)."""
    return torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect"))


def test_augment_crop_is_a_shift_and_flip_mirrors():
    B, H, W, pad = 64, 8, 8, 2
    x = torch.arange(B * 3 * H * W, dtype=torch.float32).view(B, 3, H, W)  # all values distinct

    # By hand: offsets (oy, ox) = (0, 4) with pad 2 read padded rows 0..7 and columns 4..11,
    # i.e. input rows 2 1 0 1 2 3 4 5 and columns 2 3 4 5 6 7 6 5 (reflection, edge not repeated).
    one = apply_augment(x[:1], "crop", {"oy": torch.tensor([0]), "ox": torch.tensor([4])}, pad=pad)
    r, c = torch.tensor([2, 1, 0, 1, 2, 3, 4, 5]), torch.tensor([2, 3, 4, 5, 6, 7, 6, 5])
    assert torch.equal(one[0], x[0][:, r[:, None], c[None, :]]), one[0, 0]

    # crop: each image is the HxW window at (oy, ox) of its reflect-padded copy, the offsets
    # being the generator's first two draws (oy for every image, then ox), uniform in 0..2*pad
    y = augment_batch(x, "crop", torch.Generator().manual_seed(0), pad=pad)
    g = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 2 * pad + 1, (B,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (B,), generator=g)
    xp = _reflect_pad(x, pad)
    assert y.shape == x.shape
    for b in range(B):
        assert torch.equal(y[b], xp[b, :, oy[b]:oy[b] + H, ox[b]:ox[b] + W]), (b, oy[b], ox[b])
    # these draws reach both borders on both axes (so the padding is read) and move most images
    assert {0, 2 * pad} <= set(oy.tolist()) and {0, 2 * pad} <= set(ox.tolist())
    moved = (oy != pad) | (ox != pad)
    assert moved.sum() > B // 2, (oy, ox)
    for b in range(B):
        assert torch.equal(y[b], x[b]) == (not moved[b]), b

    # flip: horizontal (last axis), about half the images, exactly those whose draw is < 0.5
    z = augment_batch(x, "flip", torch.Generator().manual_seed(1))
    drawn = torch.rand(B, generator=torch.Generator().manual_seed(1)) < 0.5
    flipped = torch.tensor([torch.equal(z[b], x[b].flip(-1)) for b in range(B)])
    kept = torch.tensor([torch.equal(z[b], x[b]) for b in range(B)])
    assert (flipped ^ kept).all(), (flipped, kept)     # each image is itself or its mirror
    assert torch.equal(flipped, drawn), (flipped, drawn)
    assert B / 2 - 12 <= flipped.sum() <= B / 2 + 12    # 3 SD of Binomial(64, 0.5)

    # crop_flip: the crop of the first draws, then the flip of the next ones
    w = augment_batch(x, "crop_flip", torch.Generator().manual_seed(0), pad=pad)
    flip2 = torch.rand(B, generator=g) < 0.5            # g continues after oy and ox
    assert 0 < flip2.sum() < B
    for b in range(B):
        crop = xp[b, :, oy[b]:oy[b] + H, ox[b]:ox[b] + W]
        assert torch.equal(w[b], crop.flip(-1) if flip2[b] else crop), b

    assert torch.equal(augment_batch(x, "none", g), x)


def test_baseline_trains_logs_and_checkpoints(tiny_cfg):
    cfg = tiny_cfg()
    path = train(cfg, progress=False, log=lambda *a: None)
    assert path == checkpoint_path(cfg.out, "shapes", "baseline_tiny", 0)
    rows = list(csv.DictReader(open(path.parent / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "ce", "mm", "ot", "lr", "train_acc", "test_acc"} <= set(rows[0])
    m = load_checkpoint(path)
    assert m.cfg.dataset == "shapes" and m.cfg.class_names[2] == "red triangle"
    assert read_checkpoint(path)["extra"]["train_cfg"]["model"] == "baseline_tiny"
    with pytest.raises(UserError, match="already exists"):
        train(cfg, progress=False, log=lambda *a: None)


@pytest.mark.parametrize("model", ["baseline_tiny", "lico_tiny", "guided_tiny", "sgt_tiny"])
def test_resume_after_an_interruption_gives_the_same_weights(tiny_cfg, tmp_path, model):
    full = tiny_cfg(model, out=str(tmp_path / "a"))
    p_full = train(full, progress=False, log=lambda *a: None)

    cut = tiny_cfg(model, out=str(tmp_path / "b"))

    def stop(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut, progress=False, log=lambda *a: None, on_epoch_end=stop)
    assert not checkpoint_path(cut.out, "shapes", model, 0).exists()
    p_res = train(cut, resume=True, progress=False, log=lambda *a: None)
    a, b = read_checkpoint(p_full)["state_dict"], read_checkpoint(p_res)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_lico_gradients_reach_context_never_encoder_and_inference_is_bare(tiny_cfg):
    from lico_bench.lico import LicoHead, create_text_encoder

    torch.manual_seed(0)
    enc = create_text_encoder("minilm")
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    clf = create_model("lico_tiny", 10)
    head = LicoHead(enc, [f"class {i}" for i in range(10)], feat_hw=64, n_ctx=3)
    head.train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    feats = clf.forward_features(x)
    parts = head.losses(feats, y)
    loss = torch.nn.functional.cross_entropy(clf.head(feats), y) + 10 * parts["mm"] + parts["ot"]
    loss.backward()
    ctx = head.prompt_learner.ctx
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
    assert not enc.training
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    # the classifier is the same module type with the same parameters as the baseline's
    base = create_model("baseline_tiny", 10)
    assert list(base.state_dict()) == list(clf.state_dict())


def test_lico_checkpoint_holds_exactly_the_baseline_classifier(tiny_cfg, tmp_path):
    p_lico = train(tiny_cfg("lico_tiny", epochs=1), progress=False, log=lambda *a: None)
    p_base = train(tiny_cfg("baseline_tiny", epochs=1), progress=False, log=lambda *a: None)
    sd_l, sd_b = read_checkpoint(p_lico)["state_dict"], read_checkpoint(p_base)["state_dict"]
    assert [(k, v.shape) for k, v in sd_l.items()] == [(k, v.shape) for k, v in sd_b.items()]
    rows = read_checkpoint(p_lico)["extra"]["history"]
    assert rows[0]["mm"] >= 0 and rows[0]["ot"] > 0


def test_lico_overfits_a_tiny_batch():
    # The full LICO objective (CE + 10 MM + OT) can drive a batch of 16 images to 100 %.
    from lico_bench.data import create_dataset
    from lico_bench.lico import LicoHead, create_text_encoder

    torch.manual_seed(0)
    ds = create_dataset("shapes", "train", n=16)
    b = ds.get_batch(range(16))
    clf = create_model("lico_tiny", 10).train()
    head = LicoHead(create_text_encoder("minilm"), ds.info.class_names, feat_hw=64, n_ctx=2,
                    generator=torch.Generator().manual_seed(0)).train()
    opt = torch.optim.SGD(list(clf.parameters()) + head.trainable_parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(150):
        feats = clf.forward_features(b.images)
        ce = torch.nn.functional.cross_entropy(clf.head(feats), b.labels)
        loss = ce + head.combine(head.losses(feats, b.labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = ce.item() if first is None else first
    clf.eval()
    with torch.no_grad():
        assert (clf(b.images).argmax(1) == b.labels).all()
    assert ce.item() < 0.05 * first


def test_divergence_is_a_clear_error_and_keeps_the_last_good_state(tiny_cfg, tmp_path, monkeypatch):
    import lico_bench.train.trainer as trainer

    # Diverging in the first epoch: an error, and nothing written.
    cfg = tiny_cfg(lr=1e12, epochs=1, ema=0.0)
    with pytest.raises(UserError, match=r"diverged at epoch 1 .*no checkpoint was written"):
        train(cfg, progress=False, log=lambda *a: None)
    rdir = checkpoint_path(cfg.out, "shapes", "baseline_tiny", 0).parent
    assert not (rdir / "model.pt").exists() and not (rdir / "last.pt").exists()

    # Diverging in the second epoch (its learning rate blown up to 1e12 from its first step):
    # last.pt is still epoch 1's state, byte for byte.
    cfg = tiny_cfg(epochs=2, ema=0.0, out=str(tmp_path / "second"))
    last = checkpoint_path(cfg.out, "shapes", "baseline_tiny", 0).parent / "last.pt"
    real = trainer.train_one_epoch

    def explode_in_epoch_2(model, head, optimizer, scheduler, ema, ds, cfg_, epoch, *a, **k):
        if epoch == 1:
            scheduler.base_lrs = [1e12] * len(scheduler.base_lrs)
            for group in optimizer.param_groups:
                group["lr"] = 1e12
        return real(model, head, optimizer, scheduler, ema, ds, cfg_, epoch, *a, **k)

    saved = {}

    def keep_epoch_1(epoch):
        if epoch == 1:
            saved["last"] = last.read_bytes()

    monkeypatch.setattr(trainer, "train_one_epoch", explode_in_epoch_2)
    with pytest.raises(UserError, match=r"diverged at epoch 2 .*state after epoch 1 \(last.pt\) is kept"):
        train(cfg, progress=False, log=lambda *a: None, on_epoch_end=keep_epoch_1)
    assert last.read_bytes() == saved["last"], "last.pt was rewritten after the divergence"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1
    assert not (last.parent / "model.pt").exists()
    assert [r["epoch"] for r in csv.DictReader(open(last.parent / "log.csv"))] == ["1"]


def test_bad_text_encoder_checkpoint_is_one_line(tiny_cfg, tmp_path):
    cfg = tiny_cfg("lico_tiny", text_encoder="clip", text_checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(UserError) as e:
        train(cfg, progress=False, log=lambda *a: None)
    assert "\n" not in str(e.value) and "nope.pt" in str(e.value)


def test_bad_options():
    with pytest.raises(UserError, match="preset"):
        make_config("fast")
    with pytest.raises(UserError, match="epochs"):
        make_config("quick", epochs=0)
    with pytest.raises(UserError, match="augment"):
        make_config("quick", augment="mixup")
