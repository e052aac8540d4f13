"""Trainer: schedule, resume exactness, LICO gradients, no cost at inference, errors."""
import csv
import math

import pytest
import torch

from lico_bench import UserError, create_model
from lico_bench.models import load_checkpoint, read_checkpoint
from lico_bench.train import augment_batch, checkpoint_path, make_config, train
from lico_bench.train.trainer import _fixmatch_cosine


def test_fixmatch_cosine_schedule():
    f = _fixmatch_cosine(16)
    assert f(0) == 1.0
    assert f(16) == pytest.approx(math.cos(7 * math.pi / 16))  # ends at ~0.195 lr0, as FixMatch
    assert f(8) == pytest.approx(math.cos(7 * math.pi / 32))


def test_augment_crop_is_a_shift_and_flip_mirrors():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = augment_batch(x, "crop", g, pad=2)
    assert y.shape == x.shape
    # every output row is a reflect-padded, shifted row of the input: the centre 4x4 of
    # the input appears somewhere inside each output image
    for b in range(2):
        centre = x[b, :, 2:6, 2:6]
        found = any(torch.equal(y[b, :, i:i + 4, j:j + 4], centre) for i in range(5) for j in range(5))
        assert found
    z = augment_batch(x, "flip", torch.Generator().manual_seed(1))
    for b in range(2):
        assert torch.equal(z[b], x[b]) or torch.equal(z[b], x[b].flip(2))
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


@pytest.mark.parametrize("model", ["baseline_tiny", "lico_tiny"])
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
    # same forward: baseline model loaded with the LICO weights gives the LICO logits
    lico, base = load_checkpoint(p_lico), load_checkpoint(p_base)
    base.load_state_dict(lico.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(lico(x), base(x))
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


def test_divergence_is_a_clear_error_and_keeps_the_last_good_state(tiny_cfg):
    cfg = tiny_cfg(lr=1e12, epochs=1, ema=0.0)
    with pytest.raises(UserError, match="diverged"):
        train(cfg, progress=False, log=lambda *a: None)
    assert not checkpoint_path(cfg.out, "shapes", "baseline_tiny", 0).exists()


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
