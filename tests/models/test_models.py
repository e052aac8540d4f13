"""Model registry, ModelCfg and checkpoints."""
import pytest
import torch

from lico_bench import UserError, create_dataset, create_model, list_models
from lico_bench.models import ModelCfg, get_module, load_checkpoint, read_checkpoint, save_checkpoint


def test_registry_lists_both_families_of_every_arch():
    names = list_models()
    for arch in ("r18", "r50", "wrn28_2", "wrn28_8"):
        assert f"baseline_{arch}" in names and f"lico_{arch}" in names
    with pytest.raises(UserError, match="unknown model 'lico_r19'.*lico_r18"):
        create_model("lico_r19", 10)


@pytest.mark.parametrize("name,size,fmap", [("baseline_r18", 32, 4), ("baseline_r18", 128, 4),
                                            ("baseline_wrn28_2", 32, 8)])
def test_forward_shapes_and_cam_layer(name, size, fmap):
    torch.manual_seed(0)
    m = create_model(name, 7, image_size=size).eval()
    x = torch.randn(2, 3, size, size)
    feats = m.forward_features(x)
    assert feats.shape[0] == 2 and feats.shape[2:] == (fmap, fmap)
    assert m(x).shape == (2, 7)
    # logits = fc(GAP(F)), the form LICO.md states
    # the same features (a deterministic forward), then the same mean and fc: exactly
    assert torch.equal(m(x), m.fc(feats.mean(dim=(2, 3))))
    # the default CAM layer's output is F
    out = {}
    h = get_module(m, m.cfg.cam_layer).register_forward_hook(lambda mod, i, o: out.setdefault("F", o))
    m(x)
    h.remove()
    assert torch.equal(out["F"], feats)


def test_resnet_stem_depends_on_image_size():
    small, large = create_model("baseline_r18", 10, 32), create_model("baseline_r18", 10, 224)
    assert small.features.conv1.kernel_size == (3, 3) and isinstance(small.features.maxpool, torch.nn.Identity)
    assert large.features.conv1.kernel_size == (7, 7) and isinstance(large.features.maxpool, torch.nn.MaxPool2d)


def test_lico_and_baseline_share_the_classifier():
    b, l = create_model("baseline_r18", 10), create_model("lico_r18", 10)
    assert type(b) is type(l)
    assert [(k, v.shape) for k, v in b.state_dict().items()] == [(k, v.shape) for k, v in l.state_dict().items()]
    assert l.cfg.family == "lico" and l.cfg.text_encoder == "minilm" and b.cfg.text_encoder is None


def test_cfg_comes_from_dataset_info():
    info = create_dataset("shapes", "val", n=10).info
    m = create_model("lico_r18", info.num_classes, dataset_info=info)
    assert m.cfg.class_names == info.class_names and m.cfg.mean == info.mean and m.cfg.dataset == "shapes"
    assert ModelCfg.from_dict(m.cfg.to_dict()) == m.cfg


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = create_model("lico_r18", 10, dataset="shapes").eval()
    p = save_checkpoint(tmp_path / "m.pt", m, extra={"epoch": 3})
    m2 = load_checkpoint(p, name="lico_r18", num_classes=10, dataset="shapes")
    assert m2.cfg == m.cfg and not m2.training
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x), m2(x))
    assert read_checkpoint(p)["extra"] == {"epoch": 3}
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_checkpoint_errors_are_one_line(tmp_path):
    m = create_model("baseline_r18", 10, dataset="shapes")
    p = save_checkpoint(tmp_path / "m.pt", m)
    cases = [
        (dict(path=tmp_path / "missing.pt"), "does not exist"),
        (dict(path=p, name="baseline_wrn28_2"), "holds baseline_r18 \\(a resnet18\\)"),
        (dict(path=p, num_classes=100), "has 10 classes but 100"),
        (dict(path=p, dataset="cifar10"), "trained on 'shapes'"),
    ]
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(p.read_bytes()[:1000])
    cases.append((dict(path=trunc), "corrupt"))
    junk = tmp_path / "junk.pt"
    torch.save({"weights": 1}, junk)
    cases.append((dict(path=junk), "not a lico-bench checkpoint"))
    for kwargs, msg in cases:
        with pytest.raises(UserError, match=msg) as e:
            load_checkpoint(**kwargs)
        assert "\n" not in str(e.value)
