"""The ``paper`` recipe on the built-in data and kept epochs: a tiny run checked step by step
against the recipe's formulas (schedule, EMA) written here as plain loops, and the files
``--keep-epochs`` leaves."""
import csv
import math

import pytest
import torch

from lico_bench import UserError, create_dataset, create_model
from lico_bench.models import load_checkpoint, read_checkpoint
from lico_bench.train import checkpoint_path, evaluate, make_config, train
from lico_bench.train.config import PRESETS
from lico_bench.train.state import kept_epochs, kept_path
from tests.tolerance import EPS64, f32_tol


def quiet(*a, **k):
    pass


def test_paper_preset_is_the_papers_recipe_on_shapes_with_wrn28_2():
    # LICO.md, "Training recipe of the paper": SGD, Nesterov momentum 0.9, weight decay 5e-4,
    # lr 0.03, batch 128, EMA 0.999, crop + flip; CIFAR-10's network WRN-28-2.
    cfg = make_config("paper")
    assert (cfg.dataset, cfg.model, cfg.optimizer) == ("shapes", "lico_wrn28_2", "sgd")
    assert (cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.03, 0.9, True, 5e-4)
    assert (cfg.batch_size, cfg.ema, cfg.augment) == (128, 0.999, "crop_flip")
    assert make_config(None).preset == "quick"           # shapes' default recipe stays quick
    assert make_config("paper", model="baseline_wrn28_2").model == "baseline_wrn28_2"
    # WRN-28-2's CAM layer at 32 px is 8 x 8, as on CIFAR-10
    m = create_model("baseline_wrn28_2", 10, image_size=32).eval()
    with torch.no_grad():
        assert m.forward_features(torch.zeros(1, 3, 32, 32)).shape[2:] == (8, 8)
    assert PRESETS["paper"]["epochs"] >= 1


def test_keep_epochs_options_are_checked():
    for bad, why in (([0], "not an epoch"), ([4], "not an epoch"), ([1, 1], "twice")):
        with pytest.raises(UserError, match=why):
            make_config("paper", model="baseline_tiny", epochs=3, keep_epochs=bad)
    assert make_config("paper", model="baseline_tiny", epochs=3, keep_epochs=[3, 1]).keep_epochs == [1, 3]


@pytest.fixture
def recorded_sgd(monkeypatch):
    """Every SGD step of the run: the first param group's options and learning rate as the
    step used them, and its parameters before the first step and after each step."""
    rec = {"lr": [], "group": None, "init": None, "after": []}
    orig = torch.optim.SGD.step

    def step(self, *a, **k):
        g = self.param_groups[0]
        if rec["init"] is None:
            rec["init"] = [p.detach().clone() for p in g["params"]]
            rec["group"] = {k: g[k] for k in ("momentum", "nesterov", "weight_decay")}
        rec["lr"].append(g["lr"])
        out = orig(self, *a, **k)
        rec["after"].append([p.detach().clone() for p in g["params"]])
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    return rec


def test_tiny_paper_run_schedule_ema_and_kept_epochs(tmp_path, recorded_sgd):
    n_train, bs, epochs = 96, 32, 3
    cfg = make_config("paper", model="baseline_tiny", n_train=n_train, batch_size=bs,
                      epochs=epochs, keep_epochs=[1, 3], out=str(tmp_path / "runs"), device="cpu")
    final = train(cfg, progress=False, log=quiet)
    spe = n_train // bs                      # steps per epoch (drop_last)
    K = epochs * spe
    rec = recorded_sgd
    assert len(rec["lr"]) == K
    assert rec["group"] == {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}

    # Schedule: step k (0-based) runs at lr0 * cos(7 pi k / (16 K)) (FixMatch; LICO.md).
    # Both sides evaluate this float64 expression (a product, a division, a cosine, a
    # product): at most a few roundings of relative size EPS64 apart -> rel. 8 EPS64.
    def lr_at(k):
        return 0.03 * math.cos(7 * math.pi * k / (16 * K))

    for k, lr in enumerate(rec["lr"]):
        assert math.isclose(lr, lr_at(k), rel_tol=8 * EPS64, abs_tol=0.0), k
    log = list(csv.DictReader(open(final.parent / "log.csv")))
    for row in log:  # the log's lr: the one the next step would use
        k = int(row["step"])
        assert k == int(row["epoch"]) * spe
        assert math.isclose(float(row["lr"]), lr_at(k), rel_tol=8 * EPS64), row

    # EMA: e_0 = initial weights, e_t = d_t e_{t-1} + (1 - d_t) w_t with
    # d_t = min(0.999, (1 + t) / (10 + t)), in float64 here.
    names = [n for n, _ in create_model("baseline_tiny", 10).named_parameters()]
    ema = [p.double() for p in rec["init"]]
    ema_at = {}
    for t, ws in enumerate(rec["after"], start=1):
        d = min(0.999, (1 + t) / (10 + t))
        ema = [d * e + (1 - d) * w.double() for e, w in zip(ema, ws)]
        if t % spe == 0:
            ema_at[t // spe] = ema

    # Kept epochs 1 and 3 (not 2), each a whole inference checkpoint of that epoch's
    # evaluated weights: the EMA parameters (BatchNorm statistics recalibrated).
    out = cfg.out
    assert kept_epochs(out, "shapes", "baseline_tiny", 0) == [1, 3]
    assert not kept_path(out, "shapes", "baseline_tiny", 0, 2).exists()
    test_ds = create_dataset("shapes", "test", seed=0)
    for e in (1, 3):
        path = kept_path(out, "shapes", "baseline_tiny", 0, e)
        assert path == checkpoint_path(out, "shapes", f"baseline_tiny@e{e}", 0)
        obj = read_checkpoint(path)
        assert obj["extra"]["epoch"] == e and len(obj["extra"]["history"]) == e
        assert obj["extra"]["test_acc"] == float(log[e - 1]["test_acc"])
        sd = obj["state_dict"]
        # float32 lerp per step vs the float64 loop: per step at most ~7 roundings (the weight
        # 1 - d cast to float32, w - e, the product, the sum; each on values <= 2 M), and an
        # earlier step's error is only damped (times d <= 1) -> n_terms 8 t, magnitude M.
        t = e * spe
        for name, ref in zip(names, ema_at[e]):
            M = max(ref.abs().max().item(), max(w[names.index(name)].abs().max().item()
                                                for w in rec["after"][:t]), 1e-30)
            tol = f32_tol(8 * t, M, computations=1)
            assert (sd[name].double() - ref).abs().max().item() <= tol, (e, name)
        m = load_checkpoint(path, name="baseline_tiny", epoch=e)
        assert m.cfg.name == "baseline_tiny" and m.cfg.dataset == "shapes"
        # the weights of that epoch's test accuracy: evaluated as the trainer did (channels
        # last, same thread count), the count of correct images is the logged one exactly
        acc = evaluate(m.to(memory_format=torch.channels_last), test_ds, torch.device("cpu"))
        assert round(acc, 6) == float(log[e - 1]["test_acc"])
    with pytest.raises(UserError, match="after epoch 1, not those after epoch 3"):
        load_checkpoint(kept_path(out, "shapes", "baseline_tiny", 0, 1), epoch=3)
    # after the last epoch the kept weights are model.pt's
    a = read_checkpoint(final)["state_dict"]
    b = read_checkpoint(kept_path(out, "shapes", "baseline_tiny", 0, 3))["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "epoch" not in read_checkpoint(final)["extra"]


def test_kept_epochs_survive_a_resume_and_a_fresh_run_drops_stale_ones(tmp_path):
    def cfg(out, **kw):
        return make_config("paper", **{**dict(model="baseline_tiny", n_train=64, batch_size=32,
                                              epochs=2, keep_epochs=[1, 2], out=str(out),
                                              device="cpu"), **kw})

    full = cfg(tmp_path / "a")
    train(full, progress=False, log=quiet)

    def stop(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    cut = cfg(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        train(cut, progress=False, log=quiet, on_epoch_end=stop)
    assert kept_epochs(cut.out, "shapes", "baseline_tiny", 0) == [1]
    train(cut, resume=True, progress=False, log=quiet)
    for e in (1, 2):
        a = read_checkpoint(kept_path(full.out, "shapes", "baseline_tiny", 0, e))["state_dict"]
        b = read_checkpoint(kept_path(cut.out, "shapes", "baseline_tiny", 0, e))["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), e
    # trained again from scratch keeping epoch 1 only: epoch 2 of the earlier run is gone
    lines = []
    train(cfg(tmp_path / "a", keep_epochs=[1]), force=True, progress=False, log=lines.append)
    assert kept_epochs(full.out, "shapes", "baseline_tiny", 0) == [1]
    assert any("removed the kept epochs 1, 2" in str(s) for s in lines)
