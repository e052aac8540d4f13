"""LICO's variants (lico_bench.lico.variants) as docs/lico.md's table promises them: each
``lico_<variant>_r18`` resolves to its settings, its ModelCfg and the run manifest record
them, and the head the trainer builds for it trains exactly the loss of its docs/lico.md line:

    lico_r18           CE + 10 L_MM + 1 L_OT, per-token targets, OT gradient through the cost
    lico_rolled_r18    the same with rolled text targets
    lico_released_r18  L_OT computed without any gradient: trains CE + 10 L_MM (L_OT logged)
    lico_mmonly_r18    beta = 0: CE + 10 L_MM
    lico_otonly_r18    alpha = 0: CE + 1 L_OT

The expected settings below are docs/lico.md's, not read from the variants table."""
import pytest
import torch

from lico_bench.bench.manifest import build_manifest
from lico_bench.bench.spec import RunSpec
from lico_bench.data.shapes import shapes_info
from lico_bench.lico import ot_loss
from lico_bench.lico.variants import VARIANTS, model_name
from lico_bench.train import make_config
from lico_bench.train.trainer import build_model_and_head

# docs/lico.md "LICO and its variants": text targets, OT gradient, weight of L_MM (alpha) and of
# L_OT (beta); "trains_ot": whether L_OT's gradient reaches the model; "logs_ot": whether
# L_OT is computed (its value reported) although it may not train.
PAPER = dict(text_targets="tokens", ot_grad="cost", alpha=10.0, beta=1.0)
DOCUMENTED = {
    "paper": dict(settings=PAPER, trains_mm=True, trains_ot=True, logs_ot=True),
    "rolled": dict(settings=dict(PAPER, text_targets="rolled"), trains_mm=True, trains_ot=True,
                   logs_ot=True),
    "released": dict(settings=dict(PAPER, ot_grad="none"), trains_mm=True, trains_ot=False,
                     logs_ot=True),
    "mmonly": dict(settings=dict(PAPER, beta=0.0), trains_mm=True, trains_ot=False, logs_ot=False),
    "otonly": dict(settings=dict(PAPER, alpha=0.0), trains_mm=False, trains_ot=True, logs_ot=True),
}


def test_every_variant_is_described():
    assert set(VARIANTS) == set(DOCUMENTED)


def _config(variant, tiny_clip):
    return make_config("quick", model=model_name(variant, "r18"), dataset="shapes", n_ctx=3,
                       text_encoder="clip", text_checkpoint=tiny_clip[0], device="cpu")


@pytest.mark.parametrize("variant", sorted(DOCUMENTED))
def test_settings_in_the_config_the_model_cfg_and_the_head(variant, tiny_clip):
    want = DOCUMENTED[variant]["settings"]
    cfg = _config(variant, tiny_clip)
    assert {k: getattr(cfg, k) for k in want} == want
    model, head = build_model_and_head(cfg, shapes_info(32), torch.device("cpu"))
    assert model.cfg.variant == variant and model.cfg.family == "lico"
    assert {k: model.cfg.lico_settings[k] for k in want} == want
    assert (head.alpha, head.beta, head.ot_grad, head.prompt_learner.targets) == (
        want["alpha"], want["beta"], want["ot_grad"], want["text_targets"])


def test_the_manifest_records_every_variants_settings():
    names = {model_name(v, "r18"): v for v in sorted(DOCUMENTED)}
    spec = RunSpec(models=["baseline_r18", *names], methods=[], metrics=[], train=False)
    man = build_manifest(spec, {}, [], shapes_info(32), checkpoints={}, device=torch.device("cpu"),
                         world_size=1, precision="fp32")
    for name, variant in names.items():
        assert man["models"][name]["variant"] == variant
        assert man["models"][name]["variant_settings"] == DOCUMENTED[variant]["settings"]


def _grads(loss, inputs):
    """d loss / d inputs (zeros where loss does not depend on one, or has no graph)."""
    if not loss.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


@pytest.mark.parametrize("variant", sorted(DOCUMENTED))
def test_each_variant_trains_the_loss_of_its_documented_line(variant, tiny_clip):
    """The head built for the variant, on a batch of ResNet-18 features: the gradient of what
    it adds to CE (head.combine) is that of 10 L_MM (if it trains) plus 1 L_OT (if it trains,
    with the plan a constant); a term that does not train contributes nothing, and L_OT is
    computed (its value reported) whenever docs/lico.md says it is logged."""
    spec = DOCUMENTED[variant]
    w = spec["settings"]
    cfg = _config(variant, tiny_clip)
    model, head = build_model_and_head(cfg, shapes_info(32), torch.device("cpu"))
    head.eval()                                                   # no dropout: repeatable
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        feats = model.eval().forward_features(torch.randn(6, 3, 32, 32, generator=g))
    feats = feats.contiguous().requires_grad_()
    labels = torch.tensor([3, 0, 0, 7, 9, 3])
    seen = []
    head.mapping.register_forward_hook(lambda m, i, out: seen.append(out))
    parts = head.losses(feats, labels)
    inputs = [feats] + head.trainable_parameters()
    got = _grads(head.combine(parts), inputs)

    mm, ot = parts["mm"], parts["ot"]
    assert mm.requires_grad is spec["trains_mm"] and (mm.item() > 0) is spec["trains_mm"]
    assert ot.requires_grad is spec["trains_ot"]
    if spec["logs_ot"]:
        assert ot.item() > 0
    if spec["trains_ot"]:      # through the cost, the plan a constant (docs/lico.md: "cost")
        (txt_maps,) = seen
        plan_const = ot_loss(feats, txt_maps, eps=head.ot_eps, max_iter=head.ot_max_iter,
                             tol=head.ot_tol, full_grad=False)
        assert plan_const.item() == ot.item()
        for a, b in zip(_grads(ot, inputs), _grads(plan_const, inputs)):
            assert torch.equal(a, b)                                # the same computation
    # docs/lico.md's loss, the terms that train with its weights: the same graph as
    # head.combine's when the head follows docs/lico.md, so the same gradients exactly
    documented_loss = sum([w["alpha"] * mm] * spec["trains_mm"]
                          + [w["beta"] * ot] * spec["trains_ot"])
    for a, b in zip(got, _grads(documented_loss, inputs)):
        assert torch.equal(a, b)
    # a term that does not train leaves the parameters only it reaches untouched
    if not spec["trains_ot"]:
        assert not any(p.requires_grad for p in head.mapping.parameters())
