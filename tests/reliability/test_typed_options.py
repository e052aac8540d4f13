"""Option values are typed: every option of an explainer or metric declares its type and
range next to its default, and a value of the wrong type (``true`` for a count, a float for
an integer), out of range, or NaN/infinite where a finite number is meant is one line
naming the option, what it must be and what was given - before anything is written. An
option for a method or metric that is not in the run is an error naming the closest valid
name (it used to be ignored silently)."""
import inspect
import os

import pytest

from lico_bench.explainers import RISE, ScoreCAM, create_explainer
from lico_bench.metrics import create_metric
from lico_bench.metrics.base import _METRICS
from lico_bench.options import check_value, option_hints
from tests.reliability.common import cli_error


def _run(ckpts, out, *extra, method="rise"):
    return ["run", "--model", "baseline_tiny", "--method", method, "--n-images", "4",
            "--batch-size", "4", "--device", "cpu", "--quiet", "--no-train",
            "--checkpoint", ckpts["baseline_tiny"], "--out", str(out), *extra]


@pytest.mark.parametrize("option,needles", [
    # the cases: a crash after the manifest and parts were written; a run with s = True
    ("rise.N=true", ["option N of method 'rise' must be an integer >= 1 or null (automatic), got true"]),
    ("rise.s=true", ["option s of method 'rise' must be an integer >= 1 or null (automatic), got true"]),
    ("rise.N=2000.0", ["option N of method 'rise' must be an integer", "got 2000.0"]),
    ("rise.N=0", ["option N of method 'rise' must be an integer >= 1", "got 0"]),
    # an OverflowError traceback before
    ("rise.N=99999999999999999999999", ["option N of method 'rise' must be an integer >= 1 "
                                        "or null (automatic) that fits in 64 bits, got "
                                        "99999999999999999999999"]),
    ("rise.p=NaN", ["option p of method 'rise' must be a finite number in (0, 1], got NaN"]),
    ("rise.p=Infinity", ["option p of method 'rise' must be a finite number in (0, 1], got Infinity"]),
    ("rise.p=1.5", ["option p of method 'rise' must be a finite number in (0, 1], got 1.5"]),
    ("rise.p=half", ["option p of method 'rise' must be a finite number in (0, 1], got \"half\""]),
    ("rise.seed=1.5", ["option seed of method 'rise' must be an integer, got 1.5"]),
    ("rise.NN=40", ["method 'rise' has no option 'NN'; did you mean 'N'?"]),
    ("rise.N=40 rise.N=41", ["method option rise.N is given twice"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_method_option_values(capsys, ckpts, tmp_path, option, needles):
    """``--method-option`` values of the wrong type or out of range: one line, exit 2,
    nothing written (not even the results directory)."""
    extra = [a for o in option.split() for a in ("--method-option", o)]
    cli_error(capsys, _run(ckpts, tmp_path / "out", *extra), *needles, watch=[tmp_path])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method,option,needles", [
    ("scorecam", "scorecam.variant=gradcam",
     ["option variant of method 'scorecam' must be one of \"official\", \"grad-cam\", got \"gradcam\""]),
    ("scorecam", "scorecam.batch_size=true", ["option batch_size of method 'scorecam' must be an integer >= 1"]),
    ("scorecam", "scorecam.baseline_subtract=1", ["option baseline_subtract of method 'scorecam' must be true or false, got 1"]),
    ("gradcam", "gradcam.layer=4", ["option layer of method 'gradcam' must be a string or null (automatic), got 4"]),
])
def test_bad_option_values_of_other_methods(capsys, ckpts, tmp_path, method, option, needles):
    cli_error(capsys, _run(ckpts, tmp_path / "out", "--method-option", option, method=method),
              *needles, watch=[tmp_path])


@pytest.mark.parametrize("option,needles", [
    ("insertion.step=true", ["option step of metric 'insertion' must be an integer >= 1 or null (automatic), got true"]),
    ("insertion.step=64.0", ["option step of metric 'insertion' must be an integer", "got 64.0"]),
    ("insertion.blur_sigma=NaN", ["option blur_sigma of metric 'insertion' must be a finite number > 0, got NaN"]),
    ("insertion.blur_sigma=inf", ["option blur_sigma of metric 'insertion' must be a finite number > 0, got \"inf\""]),
    ("deletion.substrate=noise", ["option substrate of metric 'deletion' must be one of \"blur\", \"zero\""]),
    ("pointing_game.tolerance=-1", ["option tolerance of metric 'pointing_game' must be a finite number >= 0"]),
    ("insertion.stepp=64", ["metric 'insertion' has no option 'stepp'; did you mean 'step'?"]),
])
def test_bad_metric_option_values(capsys, ckpts, tmp_path, option, needles):
    cli_error(capsys, _run(ckpts, tmp_path / "out", "--metric-option", option, method="gradcam"),
              *needles, watch=[tmp_path])


@pytest.mark.parametrize("extra,needles", [
    # the case: a typo, silently ignored before
    (["--metric-option", "insert.step=64"],
     ["'insert' is not a metric of this run; did you mean 'insertion'?",
      "This run's metrics: insertion, deletion, pointing_game, energy_pointing_game"]),
    (["--metrics", "insertion", "--metric-option", "deletion.step=64"],
     ["'deletion' is not a metric of this run", "This run's metrics: insertion", "--metrics"]),
    (["--method-option", "rsie.N=40"], ["'rsie' is not a method of this run; did you mean 'rise'?"]),
    (["--method-option", "scorecam.batch_size=8"],
     ["'scorecam' is not a method of this run", "This run's methods: rise", "add it with --method"]),
], ids=["metric-typo", "metric-not-run", "method-typo", "method-not-run"])
def test_options_for_what_is_not_in_the_run(capsys, ckpts, tmp_path, extra, needles):
    cli_error(capsys, _run(ckpts, tmp_path / "out", *extra), *needles, watch=[tmp_path])


def test_every_builtin_option_declares_its_type():
    """Each core explainer's and built-in metric's options all have a declared type, so
    none escapes the checks above."""
    for name in ("gradcam", "gradcampp", "scorecam", "rise"):   # other tests register more
        cls = create_explainer(name).__class__
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        assert params and sorted(option_hints(cls.__init__)) == sorted(params), name
    for name in ("insertion", "deletion", "pointing_game", "energy_pointing_game"):
        cls = _METRICS.get(name)
        assert set(cls.option_types) == set(cls.defaults), name


def test_good_values_are_kept_and_normalised():
    """Well-typed values pass unchanged; an integer given for a number becomes a float (as
    the manifest records it); null keeps the automatic choice."""
    r = RISE(N=40, s=None, p=1, seed=3)
    assert (r.N, r.s, r.p, r.seed) == (40, None, 1.0, 3) and type(r.p) is float
    assert ScoreCAM(variant="grad-cam", batch_size=8).options["variant"] == "grad-cam"
    m = create_metric("pointing_game", tolerance=3)
    assert m.options["tolerance"] == 3.0 and type(m.options["tolerance"]) is float
    assert create_metric("insertion", step=None).options["step"] is None
    from typing import Literal

    assert check_value(Literal[1, 2], 2, "x") == 2
    with pytest.raises(Exception, match="got true"):
        check_value(Literal[1, 2], True, "x")   # True == 1, yet not the option value 1


@pytest.mark.parametrize("option,needles", [
    ("n_train=true", ["--train-option n_train must be an integer >= 1 or null (automatic), got true"]),
    ("epochs=1.5", ["--train-option epochs must be an integer >= 1, got 1.5"]),
    ("lr=NaN", ["--train-option lr must be a finite number > 0, got NaN"]),
    ("ema=1.5", ["--train-option ema must be a finite number in [0, 1), got 1.5"]),
    ("nesterov=1", ["--train-option nesterov must be true or false, got 1"]),
])
def test_bad_train_option_values(capsys, tmp_path, option, needles):
    """``--train-option`` values (for a checkpoint the run trains) are typed as the
    TrainConfig field they set: refused before anything is trained or written."""
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--device", "cpu", "--quiet", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out"), "--train-option", option]
    cli_error(capsys, argv, *needles, watch=[tmp_path])


def _train(out, *extra):
    return ["train", "--model", "baseline_tiny", "--n-train", "64", "--batch-size", "32",
            "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(out), *extra]


@pytest.mark.parametrize("flag,value,expected", [
    ("--ema", "1.5", "a finite number in [0, 1)"),
    ("--ema", "1", "a finite number in [0, 1)"),
    ("--weight-decay", "-1", "a finite number >= 0"),
    ("--lr", "0", "a finite number > 0"),
    ("--momentum", "1.2", "a finite number in [0, 1)"),
    ("--alpha", "-10", "a finite number >= 0"),
    ("--max-loss", "-5", "a finite number >= 0"),
    ("--bn-recalibrate", "-1", "an integer >= 0"),
    ("--workers", "100000", f"an integer in [0, {os.cpu_count()}]"),
    ("--image-size", "4097", "an integer in [16, 1024]"),
], ids=lambda v: v if isinstance(v, str) and not v.startswith(("a ", "an ")) else "")
def test_training_option_ranges(capsys, tmp_path, flag, value, expected):
    """Training options get the ranges their meaning implies, declared with the fields
    (train/config.py). Before: ``--ema 1.5`` and ``--weight-decay -1`` trained and wrote a
    checkpoint, ``--workers 100000`` was killed for memory leaving orphaned workers,
    ``--image-size 4097`` ended in a traceback. Now one line, nothing written."""
    cli_error(capsys, _train(tmp_path / "runs", flag, value),
              f"argument {flag}: expected {expected}",
              f"got '{value}'" if expected.startswith("a finite") else f"got {value}",
              watch=[tmp_path])
    assert not (tmp_path / "runs").exists()


def test_run_image_size_range(capsys, ckpts, tmp_path):
    """``run --image-size 4097``: the same declared range."""
    cli_error(capsys, _run(ckpts, tmp_path / "out", "--image-size", "4097"),
              "argument --image-size: expected an integer in [16, 1024]", "got 4097",
              watch=[tmp_path])


@pytest.mark.parametrize("extra,needle", [
    (["--save-maps", "-1"], "argument --save-maps: expected an integer >= 0, got -1"),
    (["--metrics", ""], "--metrics names no metric; name at least one, or leave --metrics out"),
    (["--metrics", "insertion,insertion"], "a metric is given twice: ['insertion', 'insertion']"),
], ids=["save-maps-negative", "metrics-empty", "metric-twice"])
def test_run_options_that_were_silently_taken(capsys, ckpts, tmp_path, extra, needle):
    """--save-maps -1 saved no maps, --metrics "" ran the default metrics, and a metric
    given twice was scored twice (a method given twice was refused)."""
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--device", "cpu", "--quiet", "--no-train", "--out", str(tmp_path / "res"),
            "--checkpoint", f"baseline_tiny={ckpts['baseline_tiny']}", *extra]
    cli_error(capsys, argv, needle, watch=[tmp_path])


@pytest.mark.parametrize("extra,needle", [
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["--device", "nonsense"], "unknown device 'nonsense'"),
    (["--method-option", "gradcam.layer=5"], "option layer of method 'gradcam' must be a string"),
    (["--metric-option", "insertion.step=-1"], "option step of metric 'insertion' must be an "
                                                "integer >= 1"),
], ids=["batch-0", "device-nonsense", "layer-int", "step-negative"])
def test_run_options_held_in_round_four(capsys, ckpts, tmp_path, extra, needle):
    device = [] if "--device" in extra else ["--device", "cpu"]
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            *device, "--quiet", "--no-train", "--out", str(tmp_path / "res"),
            "--checkpoint", f"baseline_tiny={ckpts['baseline_tiny']}", *extra]
    cli_error(capsys, argv, needle, watch=[tmp_path])
