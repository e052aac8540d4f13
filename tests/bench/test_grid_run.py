"""The grid pointing game and the cross-seed agreement end to end through ``run`` and the CLI,
on CIFAR-10-format files of solid-colour images (tests/colour.py) and models that see only
colour: every cell's Grad-CAM is exactly its cell (grid score 1); only the images every
model classifies confidently enter the composites; the same run draws the same composites;
agreement.jsonl equals the kernel applied to the maps the explainer gives."""
import json

import pytest
import torch

import tests.colour as colour
from lico_bench.bench import RunSpec, run
from lico_bench.cli import main
from lico_bench.data import create_dataset
from lico_bench.data.grid import cell_masks, tile
from lico_bench.explainers import create_explainer
from lico_bench.metrics import seed_agreement
from lico_bench.metrics.dependence import pool_maps
from lico_bench.models import save_checkpoint
from lico_bench.train import checkpoint_path
from tests.tolerance import EPS64, f32_tol, gamma

LABELS = [i % 10 for i in range(40)]          # 4 images of each class


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return colour.write_colour_cifar10(tmp_path_factory.mktemp("c10"), LABELS)


def _rows(out, key):
    return [json.loads(line) for line in (out / "rows" / f"{key}.jsonl").read_text().splitlines()]


def _ckpt(path, family="baseline", **kw):
    return str(save_checkpoint(path, colour.colour_model(family, **kw)))


def test_grid_run_scores_every_cell_1_and_records_its_composites(root, tmp_path):
    ck = {"baseline_colour": _ckpt(tmp_path / "b.pt"), "lico_colour": _ckpt(tmp_path / "l.pt", "lico")}
    spec = RunSpec(models=["baseline_colour", "lico_colour"], methods=["gradcam"],
                   dataset="cifar10", root=str(root), n_images=12, batch_size=5, grid=2,
                   checkpoints=ck, out=str(tmp_path / "a"), train=False, device="cpu")
    out = run(spec, log=lambda *a: None, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    g = manifest["grid"]
    assert (g["images_scanned"], g["images_qualified"], g["composites"]) == (40, 40, 3)
    assert g["qualified_per_class"] == [4] * 10 and g["models_checked"] == 2
    assert manifest["dataset"]["image_size"] == 64
    test = create_dataset("cifar10", "test", root=str(root))
    for model in ck:
        rows = _rows(out, f"cifar10__{model}__gradcam__seed0")
        assert [r["image_id"] for r in rows] == list(range(12))
        assert [r["grid_score"] for r in rows] == [1.0] * 12           # exact, by construction
        assert [r["pointing_game"] for r in rows] == [1.0] * 12
        assert all(r["grid_score_no_positive"] == 0.0 for r in rows)
        for r in rows:
            assert (r["grid_composite"], r["grid_cell"]) == divmod(r["image_id"], 4)
            ids = r["grid_image_ids"]
            assert r["grid_source_id"] == ids[r["grid_cell"]]
            assert r["label"] == r["target"] == LABELS[r["grid_source_id"]]
            assert len({LABELS[i] for i in ids}) == 4                  # distinct classes
    # the rows alone rebuild composite 1, and the explainer's map of its cell 2 is the cell
    r = _rows(out, "cifar10__baseline_colour__gradcam__seed0")[6]
    comp = tile(test.get_batch(r["grid_image_ids"]).images, 2)
    m = create_explainer("gradcam")(colour.colour_model(), comp, torch.tensor([r["target"]]))
    cell = cell_masks(torch.tensor([r["grid_cell"]]), 2, 32, 32)
    assert int((m[cell] > 0).sum()) == 32 * 32 - 8 and bool((m[~cell] == 0).all())  # 8 strays
    summary = (out / "summary.md").read_text()
    assert "Grid pointing game: 2 × 2" in summary and "40 of the 40 images qualified" in summary
    # the same run draws the same composites: identical rows in another directory
    again = run(RunSpec(**{**spec.to_dict(), "out": str(tmp_path / "b")}), log=lambda *a: None,
                progress=False)
    for f in (out / "rows").glob("*.jsonl"):
        assert (again / "rows" / f.name).read_bytes() == f.read_bytes()
    other = run(RunSpec(**{**spec.to_dict(), "out": str(tmp_path / "c"), "grid_seed": 1}),
                log=lambda *a: None, progress=False)
    assert _rows(other, "cifar10__baseline_colour__gradcam__seed0")[0]["grid_image_ids"] != \
        _rows(out, "cifar10__baseline_colour__gradcam__seed0")[0]["grid_image_ids"]


def test_only_images_every_model_classifies_confidently_enter(root, tmp_path):
    """The LICO model confuses classes 0 and 1 (their palette colours swapped), so their
    images qualify under the baseline alone and never enter; a threshold no image reaches is
    a one-line error before anything is written."""
    swapped = colour.palette_normalised()[[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]
    ck = {"baseline_colour": _ckpt(tmp_path / "b.pt"),
          "lico_colour": _ckpt(tmp_path / "l.pt", "lico", palette=swapped)}
    spec = RunSpec(models=list(ck), methods=["gradcam"], dataset="cifar10", root=str(root),
                   n_images=8, batch_size=8, grid=2, checkpoints=ck, out=str(tmp_path / "a"),
                   train=False, device="cpu")
    out = run(spec, log=lambda *a: None, progress=False)
    g = json.loads((out / "manifest.json").read_text())["grid"]
    assert g["images_qualified"] == 32 and g["qualified_per_class"][:2] == [0, 0]
    for r in _rows(out, "cifar10__baseline_colour__gradcam__seed0"):
        assert all(LABELS[i] >= 2 for i in r["grid_image_ids"])
    # p = e^12 / (e^12 + 9) < 1 for every image: none reaches a threshold of 1
    bad = RunSpec(**{**spec.to_dict(), "out": str(tmp_path / "none"), "grid_threshold": 1.0})
    with pytest.raises(Exception, match="the 0 qualifying images"):
        run(bad, log=lambda *a: None, progress=False)
    assert not (tmp_path / "none").exists()


class _ConfidentOnlyInFloat32(torch.nn.Module):
    """Gives a batch of all ``labels`` (in order) the logit 20 on its label, 0 elsewhere, so
    p = e^20 / (e^20 + 9) > 0.9999, but all logits 0 (p = 0.1) under an enabled autocast: by
    construction, an image qualifies at threshold 0.99 only if the qualifying forwards run
    with autocast off."""

    def __init__(self, labels):
        super().__init__()
        self.register_buffer("labels", torch.as_tensor(labels))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 10)
        if not torch.is_autocast_enabled(x.device.type):
            logits[torch.arange(x.shape[0]), self.labels[: x.shape[0]]] = 20.0
        return logits


def test_qualifying_runs_in_float32_under_an_ambient_bf16_autocast(root):
    """The same images qualify with and without an enclosing bf16 autocast (a bf16 run draws
    the composites of a float32 run): the model is confident only when autocast is off."""
    from lico_bench.bench.grid import qualifying

    test = create_dataset("cifar10", "test", root=str(root))
    model = _ConfidentOnlyInFloat32(LABELS)
    cpu = torch.device("cpu")
    plain, labels = qualifying([model], test, cpu, batch_size=len(LABELS), threshold=0.99)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")        # the construction's premise holds here
        under, _ = qualifying([model], test, cpu, batch_size=len(LABELS), threshold=0.99)
    assert plain.all() and torch.equal(under, plain) and labels.tolist() == LABELS


def test_a_bf16_run_draws_the_composites_of_a_float32_run(root, tmp_path):
    ck = {"baseline_colour": _ckpt(tmp_path / "b.pt")}
    common = dict(models=list(ck), methods=["gradcam"], dataset="cifar10", root=str(root),
                  n_images=8, batch_size=8, grid=2, checkpoints=ck, train=False, device="cpu")
    grids = []
    for precision in ("fp32", "bf16"):
        out = run(RunSpec(**common, precision=precision, out=str(tmp_path / precision)),
                  log=lambda *a: None, progress=False)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["precision"] == precision
        grids.append(manifest["grid"])
    assert grids[0] == grids[1]          # counts and the composites' sha256


def test_cross_seed_agreement_equals_the_kernel_on_the_explainers_maps(root, tmp_path):
    """Seed 1's model mixes each class with the next (fc = s (I + P/2)), so its maps differ
    from seed 0's; agreement.jsonl must equal seed_agreement of the pooled maps computed here
    (comparing a seed with itself would give 1 everywhere)."""
    runs = tmp_path / "runs"
    perm = torch.roll(torch.eye(10), 1, dims=1)
    for family in ("baseline", "lico"):
        for seed in (0, 1, 2):
            m = colour.colour_model(family)
            if seed > 0:
                with torch.no_grad():
                    m.fc.weight.add_(seed * colour.SCALE / 4 * perm)
            path = checkpoint_path(str(runs), "cifar10", f"{family}_colour", seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, m)
    spec = RunSpec(models=["baseline_colour", "lico_colour"], methods=["gradcam"],
                   dataset="cifar10", root=str(root), n_images=8, batch_size=4, grid=2,
                   seeds=[0, 1, 2], runs=str(runs), out=str(tmp_path / "a"), train=False,
                   device="cpu", grid_threshold=0.5)
    out = run(spec, log=lambda *a: None, progress=False)
    recs = [json.loads(x) for x in (out / "agreement.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * 8 and {r["n_pairs"] for r in recs} == {3}
    rows = _rows(out, "cifar10__baseline_colour__gradcam__seed0")
    test = create_dataset("cifar10", "test", root=str(root))
    from lico_bench.models import load_checkpoint

    pooled = []
    for seed in (0, 1, 2):
        model = load_checkpoint(checkpoint_path(str(runs), "cifar10", "baseline_colour", seed))
        comps = torch.cat([tile(test.get_batch(r["grid_image_ids"]).images, 2) for r in rows])
        maps = create_explainer("gradcam")(model, comps, torch.tensor([r["target"] for r in rows]))
        pooled.append(pool_maps(maps))
    want = seed_agreement(torch.stack(pooled))
    got = [r for r in recs if r["model"] == "baseline_colour"]
    assert [r["image_id"] for r in got] == list(range(8))
    # the same kernel on maps computed twice by the same float32 explainer (batches of 4 vs 8:
    # the forward's per-image arithmetic does not depend on the batch); Spearman from integer
    # ranks of identical maps, SSIM in float64: a few float64 roundings of values <= 1
    for s in ("spearman", "ssim"):
        diff = (torch.tensor([r[f"agreement_{s}"] for r in got], dtype=torch.float64) - want[s]).abs()
        assert float(diff.max()) <= 2 * gamma(16, EPS64), s
    assert float(want["spearman"].min()) < 1.0       # seeds really differ (where class k+1 is in the composite)
    md = (out / "summary.md").read_text()
    assert "## Cross-seed agreement" in md and "LICO − baseline" in md
    csv = (out / "summary.csv").read_text()
    assert "agreement_paired" in csv and "agreement_ssim" in csv


def test_cli_grid_on_cifar_format_files(root, tmp_path, capsys):
    ck = _ckpt(tmp_path / "b.pt")
    out = tmp_path / "res"
    argv = ["run", "--dataset", "cifar10", "--root", str(root), "--grid", "2",
            "--model", "baseline_colour", "--method", "gradcam", "--n-images", "8",
            "--checkpoint", ck, "--no-train", "--device", "cpu", "--out", str(out), "--quiet",
            "--seeds", "0", "1"]
    assert main(argv) == 0
    summary = (out / "summary.md").read_text()
    assert "grid_score" in summary and "## Cross-seed agreement" in summary
    tex = (out / "summary.tex").read_text()   # the same tables; no accuracy of composites
    assert "Cross-seed agreement" in tex and "Grid pointing game: 2 $\\times$ 2" in tex
    assert "Accuracy" not in tex and "## Accuracy" not in summary
    recs = [json.loads(x) for x in (out / "agreement.jsonl").read_text().splitlines()]
    assert [r["agreement_spearman"] for r in recs] == [1.0] * 8     # one checkpoint, two seeds
    capsys.readouterr()
    assert main(argv[:-3] + ["--out", str(tmp_path / "bad"), "--n-images", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "multiple of 4" in err[0] and not (tmp_path / "bad").exists()


def test_difull_runs_each_cell_through_the_features_alone():
    """DiFull's features against a per-cell loop (float64, so the tolerance is float64
    rounding), cells that cannot see each other, and GridPG's that can (the tiny CNN's
    receptive field crosses the cell border)."""
    import tests.tiny  # noqa: F401
    from lico_bench import create_model
    from lico_bench.bench.grid import difull

    torch.manual_seed(0)
    model = create_model("baseline_tiny", 10, image_size=16).eval().double()
    wrapped = difull(model, 2)
    assert wrapped.cfg.cam_layer == "features" and model.cfg.cam_layer == "features.relu2"
    g = torch.Generator().manual_seed(1)
    cells = torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64).clamp(-5, 5)
    comp = tile(cells, 2)                                              # [2, 3, 32, 32]
    with torch.no_grad():
        got = wrapped.features(comp)                                   # [2, 32, 8, 8]
        want = tile(torch.cat([model.features(c[None]) for c in cells]), 2)
        # two 3x3 convs: fan-in 27 then 144; |x| <= 5, |w| <= 1/sqrt(fan-in) (PyTorch's
        # default init bound), BN at its initial running stats: sum |terms| <= 27*5/sqrt(27)
        # ~ 26 after conv1, <= 144*26/12 ~ 312 after conv2 (+ biases): magnitude 400, depth 2
        assert float((got - want).abs().max()) <= f32_tol(144, 400, depth=2, eps=EPS64)
        changed = comp.clone()
        changed[:, :, :16, :16] += 1.0                                 # cell 0 only
        d = wrapped.features(changed) - got
        assert torch.equal(d[:, :, :4, 4:], torch.zeros_like(d[:, :, :4, 4:]))  # cell 1: exact
        # GridPG: cell 1's first feature column sees input columns 13-15, in cell 0
        dg = model.features(changed) - model.features(comp)
        assert float(dg[:, :, :4, 4:].abs().max()) > 0
        torch.testing.assert_close(wrapped(comp), model.head(got), rtol=0, atol=0)


def test_difull_end_to_end_and_its_one_line_errors(root, tmp_path, capsys):
    ck = _ckpt(tmp_path / "b.pt")
    base = ["run", "--dataset", "cifar10", "--root", str(root), "--grid", "2",
            "--grid-variant", "difull", "--model", "baseline_colour", "--method", "gradcam",
            "--n-images", "8", "--checkpoint", ck, "--no-train", "--device", "cpu", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    rows = _rows(tmp_path / "a", "cifar10__baseline_colour__gradcam__seed0")
    assert [r["grid_score"] for r in rows] == [1.0] * 8                 # pixelwise model: exact
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["spec"]["grid_variant"] == "difull"
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "b"), "--method-option",
                        "gradcam.layer=features.detect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "difull" in err[0] and not (tmp_path / "b").exists()


@pytest.mark.parametrize("flag", [["--grid-threshold", "0.9"], ["--grid-seed", "3"],
                                  ["--grid-variant", "difull"],
                                  ["--grid-threshold", "0.99"]])   # the default, given: still a mistake
def test_a_grid_option_without_grid_is_a_one_line_error_before_any_write(tmp_path, capsys, flag):
    out = tmp_path / "res"
    argv = ["run", "--model", "baseline_r18", "--method", "gradcam", "--n-images", "4",
            "--no-train", "--device", "cpu", "--quiet", "--runs", str(tmp_path / "runs"),
            "--out", str(out)] + flag
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag[0] in err[0] and "--grid N" in err[0], err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_a_grid_option_without_grid_in_a_config_file_or_the_api_is_an_error(tmp_path, capsys):
    from lico_bench.errors import UserError

    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"models": ["baseline_r18"], "grid_seed": 3}))
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "res"), "--no-train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--grid-seed 3" in err[0] and not (tmp_path / "res").exists()
    with pytest.raises(UserError, match="--grid-variant difull acts only"):
        RunSpec(grid_variant="difull").validate()
    RunSpec(grid=2, grid_variant="difull", grid_seed=3, grid_threshold=0.5).validate()
    RunSpec().validate()                     # the defaults, not given: no grid, no error
