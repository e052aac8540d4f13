"""Training-step and inference cost of LICO against the baseline, measured in one run.

Prints the LICO/baseline training-step time ratio (goal <= 1.10 for the paper's reading,
per-token text targets: K prompts per step), the LICO/baseline inference time ratio (goal
1.00: the inference models are the same network), the peak memory of each, and where a
LICO step's extra time goes. ``--variant rolled`` measures the earlier reading (K*M prompts).

    python benchmarks/bench_train.py [--batch-size 64] [--steps 6] [--image-size 32]
                                     [--variant paper] [--arch r18] [--device cpu]

The time ratios come from one process that alternates baseline and LICO steps (a change of
machine load hits both alike); peak memory (CPU: max RSS; CUDA: max allocated) and the
breakdown of a step come from each model alone in its own subprocess.

``--peers`` measures LICO's peers instead (lico_bench.guidance: guided, rrr, sgt): each
family's training step (the trainer's own ``TrainNet`` + ``training_loss`` + SGD step, masks
included) against the baseline's, alternating step by step in one process, and, for
saliency-guided training, the step as the authors' code takes it (an extra eval-mode
forward + backward for the saliency, then the clean and the masked forward in train mode),
which ours replaces by reusing the clean forward's graph:

    python benchmarks/bench_train.py --peers [--batch-size 64] [--steps 6] [--arch r18]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _setup(kind: str, bs: int, size: int, device: str, variant: str, arch: str = "r18"):
    """(step(record) -> seconds, infer() -> seconds, parts dict, model, LICO head or None)
    for one model."""
    import torch
    import torch.nn.functional as F

    from lico_bench import create_dataset, create_model

    torch.manual_seed(0)
    dev = torch.device(device)
    info = create_dataset("shapes", "val", n=bs, image_size=size).info
    ds = create_dataset("shapes", "val", n=bs, image_size=size)
    batch = ds.get_batch(range(bs))
    x, y = batch.images.to(dev), batch.labels.to(dev)
    model = create_model(f"{kind}_{arch}", 10, image_size=size, dataset_info=info).to(dev)
    model = model.to(memory_format=torch.channels_last)
    head = None
    params = list(model.parameters())
    if kind == "lico":
        from lico_bench.lico import LicoHead, create_text_encoder

        with torch.no_grad():
            hw = model.forward_features(x[:1]).shape[2:].numel()
        from lico_bench.lico.variants import VARIANTS

        v = VARIANTS[variant]
        head = LicoHead(create_text_encoder("minilm"), info.class_names, feat_hw=hw,
                        alpha=v.alpha, beta=v.beta, ot_grad=v.ot_grad,
                        targets=v.text_targets).to(dev)
        params += head.trainable_parameters()
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    parts = {"backbone_fwd": 0.0, "text_and_losses_fwd": 0.0, "backward_and_step": 0.0}

    def step(record: bool):
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            feats = model.forward_features(x)
            logits = model.head(feats)
        loss = F.cross_entropy(logits.float(), y)
        sync()
        t1 = time.perf_counter()
        if head is not None:
            loss = loss + head.combine(head.losses(feats.float(), y))
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        t3 = time.perf_counter()
        if record:
            parts["backbone_fwd"] += t1 - t0
            parts["text_and_losses_fwd"] += t2 - t1
            parts["backward_and_step"] += t3 - t2
        return t3 - t0

    def train_step(record: bool) -> float:
        model.train()
        return step(record)

    @torch.no_grad()
    def infer() -> float:
        model.eval()
        sync()
        t0 = time.perf_counter()
        model(x)
        sync()
        return time.perf_counter() - t0

    return train_step, infer, parts, model, head


def _text_encoder_time(head, steps: int, device: str) -> float:
    """Median time of the frozen text encoder's part of a LICO step alone: one prompt per
    class (all classes, as in a batch that holds them all) forward, and backward to the
    context vectors. It does not depend on the batch size: the floor of the step ratio."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    classes = torch.arange(head.num_classes, device=head.prompt_learner.ctx.device)
    out = []
    for _ in range(steps + 1):
        sync()
        t0 = time.perf_counter()
        t, s = head.prompt_learner(classes)
        (t.sum() + s.sum()).backward()
        sync()
        out.append(time.perf_counter() - t0)
    return _median(out[1:])


def _median(xs):
    return sorted(xs)[len(xs) // 2]


def _worker(kind: str, bs: int, steps: int, size: int, device: str, variant: str,
            arch: str = "r18") -> dict:
    """Peak memory and where the time goes, for one model alone in this process."""
    import resource

    import torch

    train_step, infer, parts, model, head = _setup(kind, bs, size, device, variant, arch)
    train_step(False)  # warm-up
    times = [train_step(True) for _ in range(steps)]
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    text_s = _text_encoder_time(head, steps, device) if head is not None else 0.0
    return {"step_s": _median(times), "peak_mb": peak, "text_encoder_s": text_s,
            "parts_s": {k: v / steps for k, v in parts.items()},
            "n_params_inference": sum(p.numel() for p in model.parameters()),
            "n_classes": head.num_classes if head is not None else 0}


def _pair(bs: int, steps: int, size: int, device: str, variant: str, arch: str = "r18") -> dict:
    """Step and inference times of both models, alternating step by step in one process,
    so that a change of machine load hits both alike (the ratio is what is reported)."""
    base, lico = (_setup(k, bs, size, device, variant, arch) for k in ("baseline", "lico"))
    for m in (base, lico):
        m[0](False)
        m[1]()
    t = {"baseline": [], "lico": [], "baseline_infer": [], "lico_infer": []}
    for _ in range(steps):
        t["baseline"].append(base[0](False))
        t["lico"].append(lico[0](False))
        t["baseline_infer"].append(base[1]())
        t["lico_infer"].append(lico[1]())
    return {k: _median(v) for k, v in t.items()}


def _peer_setup(kind: str, bs: int, size: int, device: str, arch: str = "r18"):
    """step() -> seconds of one training step of ``kind`` ("baseline", "guided", "rrr",
    "sgt", or "sgt_authors": the authors' order of work) on one fixed batch with its masks."""
    import torch

    from lico_bench import create_dataset, create_model
    from lico_bench.guidance import GuidanceLoss, sgt_kl, sgt_masked_input
    from lico_bench.train.config import TrainConfig
    from lico_bench.train.loop import TrainNet, training_loss

    torch.manual_seed(0)
    dev = torch.device(device)
    ds = create_dataset("shapes", "val", n=bs, image_size=size)
    b = ds.get_batch(range(bs))
    x, y, masks = b.images.to(dev), b.labels.to(dev), b.masks.to(dev)
    x = x.contiguous(memory_format=torch.channels_last)
    family = kind.split("_")[0]
    model = create_model(f"{'baseline' if family == 'baseline' else family}_{arch}", 10,
                         image_size=size, dataset_info=ds.info).to(dev)
    model = model.to(memory_format=torch.channels_last)
    defaults = TrainConfig()
    guidance = None
    if family != "baseline":
        from lico_bench.guidance import FAMILIES

        guidance = GuidanceLoss(family, {k: getattr(defaults, k) for k in FAMILIES[family].fields})
    net = TrainNet(model, None, guidance=guidance)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)

    def step() -> float:
        sync()
        t0 = time.perf_counter()
        model.train()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            if kind == "sgt_authors":
                # their interpretable.train: saliency in eval mode (forward + backward to
                # the input), masking, then model(data) and model(masked) in train mode
                model.eval()
                xg = x.detach().requires_grad_(True)
                z = model(xg).float().gather(1, y[:, None]).sum()
                grad = torch.autograd.grad(z, xg)[0]
                model.train()
                xm, _ = sgt_masked_input(x, grad, defaults.sgt_k, gen, defaults.sgt_rank)
                logits = model(x)
                parts = {"guide": sgt_kl(logits, model(xm))}
                loss, _ = training_loss(logits, y, guidance, parts)
            elif guidance is None:
                logits, parts = net(x, y)
                loss, _ = training_loss(logits, y, None, parts)
            else:
                logits, parts = net(x, y, masks, None, gen)
                loss, _ = training_loss(logits, y, guidance, parts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - t0

    return step


def _peers(bs: int, steps: int, size: int, device: str, arch: str) -> dict:
    """Median step time of each kind, alternating kinds step by step in one process."""
    kinds = ["baseline", "guided", "rrr", "sgt", "sgt_authors"]
    fns = {k: _peer_setup(k, bs, size, device, arch) for k in kinds}
    for f in fns.values():
        f()                     # warm-up
    t = {k: [] for k in kinds}
    for _ in range(steps):
        for k in kinds:
            t[k].append(fns[k]())
    return {k: _median(v) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES", "x") != "" and
                    __import__("torch").cuda.is_available() else "cpu")
    ap.add_argument("--variant", default="paper",
                    help="LICO variant (lico_bench.lico.variants): paper, rolled, ...")
    ap.add_argument("--arch", default="r18", help="backbone of baseline_<arch>/lico_<arch>: "
                    "r18, r50, wrn28_2, wrn28_8")
    ap.add_argument("--worker", choices=["baseline", "lico", "pair"])
    ap.add_argument("--peers", action="store_true",
                    help="measure LICO's peers (guided, rrr, sgt) against the baseline instead")
    a = ap.parse_args()
    if a.peers:
        import torch

        p = _peers(a.batch_size, a.steps, a.image_size, a.device, a.arch)
        print(f"bench_train --peers: {a.arch}, shapes {a.image_size}px, batch {a.batch_size}, "
              f"{a.steps} steps, device {a.device}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
        print("  (training step incl. SGD update; medians of steps alternating between the "
              "kinds in one process; the papers' defaults)")
        for k in ("baseline", "guided", "rrr", "sgt", "sgt_authors"):
            print(f"  {k:12s} {p[k]:.3f}s   x{p[k] / p['baseline']:.2f} of the baseline")
        print(f"  sgt (ours) / sgt (the authors' order of work): {p['sgt'] / p['sgt_authors']:.2f}")
        print(f"reproduce: python benchmarks/bench_train.py --peers --batch-size {a.batch_size} "
              f"--steps {a.steps} --image-size {a.image_size} --arch {a.arch} --device {a.device}")
        return
    if a.worker == "pair":
        print(json.dumps(_pair(a.batch_size, a.steps, a.image_size, a.device, a.variant, a.arch)))
        return
    if a.worker:
        print(json.dumps(_worker(a.worker, a.batch_size, a.steps, a.image_size, a.device,
                                 a.variant, a.arch)))
        return
    res = {}
    for kind in ("pair", "baseline", "lico"):
        out = subprocess.run([sys.executable, __file__, "--worker", kind, "--batch-size", str(a.batch_size),
                              "--steps", str(a.steps), "--image-size", str(a.image_size),
                              "--device", a.device, "--variant", a.variant, "--arch", a.arch],
                             capture_output=True, text=True, check=True)
        res[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    b, l, p = res["baseline"], res["lico"], res["pair"]
    import torch

    print(f"bench_train: {a.arch}, shapes {a.image_size}px, batch {a.batch_size}, {a.steps} steps, "
          f"LICO variant {a.variant}, device {a.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    print("  (times: medians of steps alternating between the two models in one process)")
    print(f"  training step   baseline {p['baseline']:.3f}s   lico {p['lico']:.3f}s   "
          f"ratio {p['lico'] / p['baseline']:.2f}  (goal <= 1.10)")
    print(f"  inference       baseline {p['baseline_infer']:.3f}s   lico {p['lico_infer']:.3f}s   "
          f"ratio {p['lico_infer'] / p['baseline_infer']:.2f}  (goal 1.00; same network: "
          f"{b['n_params_inference']} vs {l['n_params_inference']} parameters)")
    print(f"  peak memory     baseline {b['peak_mb']:.0f} MB   lico {l['peak_mb']:.0f} MB   "
          f"(each alone in its own process)")
    print("  where a step's time goes (mean s, each alone):")
    for k in b["parts_s"]:
        print(f"    {k:22s} baseline {b['parts_s'][k]:.3f}   lico {l['parts_s'][k]:.3f}")
    print(f"  of LICO's extra: the frozen text encoder alone (fwd + bwd to the context, "
          f"{l['n_classes']} prompts) {l['text_encoder_s']:.3f}s = "
          f"{l['text_encoder_s'] / b['step_s']:.1%} of the baseline step (alone), whatever the batch size")
    print(f"reproduce: python benchmarks/bench_train.py --batch-size {a.batch_size} "
          f"--steps {a.steps} --image-size {a.image_size} --variant {a.variant} --arch {a.arch} --device {a.device}")


if __name__ == "__main__":
    main()
