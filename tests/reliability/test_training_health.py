"""Training health: a NaN or exploding loss stops training with one clear line (exit 2),
and the state of the last good epoch (last.pt) stays exactly as it was saved."""
import torch
import torch.nn.functional as F

from tests.reliability.common import cli_error, cli_ok, train_argv

STEPS = 4  # steps per epoch of train_argv: 128 images, batch 32


def _poison(monkeypatch, last, how):
    """Make the training loss bad from epoch 2 on: cross-entropy calls after the first
    STEPS get ``how(loss)``. Records last.pt's bytes as epoch 1 left them."""
    real = F.cross_entropy
    seen = {"calls": 0, "last.pt": None}

    def cross_entropy(*a, **k):
        seen["calls"] += 1
        loss = real(*a, **k)
        if seen["calls"] <= STEPS:
            return loss
        if seen["last.pt"] is None:
            seen["last.pt"] = last.read_bytes()
        return how(loss)

    monkeypatch.setattr(F, "cross_entropy", cross_entropy)
    return seen


def _check_kept(last, seen):
    assert seen["last.pt"] is not None and last.read_bytes() == seen["last.pt"]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    assert not (last.parent / "model.pt").exists()


def test_nan_loss_stops_training_and_keeps_the_last_good_state(tmp_path, capsys, monkeypatch):
    """The loss turns NaN in epoch 2 (injected into cross-entropy): training stops with
    "diverged at epoch 2 (loss nan)", says that epoch 1's last.pt is kept, and last.pt is
    byte for byte what epoch 1 saved; ``--resume`` with a healthy loss then finishes."""
    runs = tmp_path / "runs"
    last = runs / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    seen = _poison(monkeypatch, last, lambda loss: loss * float("nan"))
    cli_error(capsys, train_argv(str(runs), 3), "training diverged at epoch 2 (loss nan)",
              "the state after epoch 1 (last.pt) is kept", "lower --lr")
    _check_kept(last, seen)
    monkeypatch.undo()
    out = cli_ok(capsys, train_argv(str(runs), 3, ["--resume"]))
    assert "resuming baseline_tiny on shapes after epoch 1" in out
    assert (last.parent / "model.pt").exists()


def test_exploding_loss_stops_training_above_max_loss(tmp_path, capsys, monkeypatch):
    """The loss jumps to ~1e4 in epoch 2 (finite, but past TrainConfig.max_loss = 1000):
    training stops with "loss ... > max_loss 1000", epoch 1's last.pt untouched."""
    runs = tmp_path / "runs"
    last = runs / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    seen = _poison(monkeypatch, last, lambda loss: loss + 1e4)
    cli_error(capsys, train_argv(str(runs), 3), "training diverged at epoch 2 (loss 1e+04",
              "> max_loss 1000", "the state after epoch 1 (last.pt) is kept")
    _check_kept(last, seen)


def test_max_loss_zero_turns_the_guard_off(tmp_path, capsys, monkeypatch):
    """``--max-loss 0``: the same large but finite loss no longer stops training (only NaN
    or inf would)."""
    runs = tmp_path / "runs"
    _poison(monkeypatch, runs / "shapes" / "baseline_tiny" / "seed0" / "last.pt",
            lambda loss: loss + 1e4)
    cli_ok(capsys, train_argv(str(runs), 2, ["--max-loss", "0"]))
    assert (runs / "shapes" / "baseline_tiny" / "seed0" / "model.pt").exists()


def test_huge_learning_rate_diverges_with_one_line(tmp_path, capsys):
    """No injection: ``--lr 1e6`` really blows the weights up in epoch 1; one line says so,
    that no checkpoint was written, and to lower --lr."""
    cli_error(capsys, train_argv(str(tmp_path / "runs"), 1, ["--lr", "1e6"]),
              "training diverged at epoch 1", "no checkpoint was written", "lower --lr",
              watch=[], new_dirs_ok=True)
    assert not list((tmp_path / "runs").rglob("*.pt"))
