"""Causal metrics: insertion and deletion curves (Petsiuk et al. 2018, RISE, Sec. 4.1).

A curve follows the explained class's score while pixels change in descending saliency
order. Deletion starts from the image and replaces ``step`` pixels per step with the
substrate (0 in normalised space, i.e. the dataset mean colour); insertion starts from the
substrate (a Gaussian-blurred copy) and puts the original pixels back. With
``n = ceil(H*W / step)`` steps a curve has ``n + 1`` points, both ends included; after step
``k`` the first ``min(k*step, H*W)`` pixels of the order have changed.

Everything runs on the model's device and in torch: the perturbed images of many steps and
many images are built chunk by chunk from a per-pixel *rank* (``rank < k*step`` says which
pixels have changed at step ``k``), so one forward batch mixes steps and images and nothing
loops over pixels or crosses to the host. Forwards whose input is known in advance are run
once: the clean image (deletion's first point, insertion's last) shares the prediction
forward, and the all-zero substrate is one forward for the whole batch.

Pixel order (the tie rule, see :func:`pixel_order`): descending saliency, and among equal
saliency the lower flattened index ``y*W + x`` first. All channels of a pixel move together.
The RISE reference code sorts ascending with an unstable sort and flips, so its ties fall
the other way; only maps with ties (e.g. constant regions) can tell.

Precision. Under an ambient ``torch.autocast(device_type, dtype=torch.bfloat16)`` (the
runner's bf16 mode) only the model's forwards run in bf16. The blur substrate is computed
with autocast off (:func:`float32_ops`: a convolution would otherwise run in bf16), the
blend is elementwise in the images' dtype, scores are softmaxed from float32 logits, curves
are float32 and the AUC is summed in float64. The pixel order comes from the maps as given
(float32 from every explainer), so it does not change with the precision of the forwards.
No host round trip inside the forward loop: the only syncs of a call are the NaN check of
the maps and the blur kernel's copy, both before it (a CUDA test counts them).

Documented tolerance (measured on the trained shapes models baseline_r18 and lico_r18, 32
px, 8 test images, Grad-CAM maps, CPU autocast): channels-last model and images give the
float32 curves to 1e-5 (measured <= 4e-7). bf16 + channels-last against float32, same
float32 maps: max |AUC difference| <= 0.0035 for insertion and <= 0.0012 for deletion
(probabilities, AUC in [0, 1]); with the maps also computed in bf16: <= 0.008 and <= 0.006,
mean shift <= 0.0008. The tests bound the same-maps difference by 0.005 on a tiny net
(``tests/metrics/test_precision.py``).

Scores freed from the model's confidence (METRICS.md, issue 25). A confident model scores a
high insertion AUC whatever its map, so two further scores sit beside each AUC:

- Gain over random. For each image, the same curve (same substrate, steps, score and
  explained class) is computed for ``k`` pixel orders drawn uniformly at random
  (:func:`random_ranks`: a CPU ``torch.Generator`` per image, seeded from the experiment's
  seed and the image id, so an image's orders never depend on its batch, the batch size,
  the device or the explanation method), and its AUCs averaged::

      insertion gain = AUC_ins(map) - mean_j AUC_ins(random_j)
      deletion gain  = mean_j AUC_del(random_j) - AUC_del(map)

  Both are higher-is-better and 0 = no better than chance (a uniformly random map has
  expected gain exactly 0: its order has the same distribution as each random order). The
  random curves ride in the same forward batches as the map's (``random_ranks=`` of
  :func:`causal_curves`): ``k`` random orders cost ``k`` times the map's perturbed forwards
  and nothing else (the clean and substrate forwards are shared). Every method explained on
  the same model and image sees the same random orders, so differences of gains between
  methods equal differences of AUCs.
- Normalised: ``AUC / p``, with ``p`` the explained class's probability on the unperturbed
  image (the curve's last point for insertion, its first for deletion; ``score="softmax"``
  only). Insertion: higher is better; deletion: lower is better.

What each score is free of, exactly (tested on hand-made model families in
``tests/metrics/test_confidence_free.py``): if the model's probability of the explained
class is ``c * g(x)`` on every input (a confidence that scales), the normalised AUC does not
depend on ``c`` and the gain is ``c`` times that of ``g`` (its sign, hence a verdict's side,
does not move); if it is ``g(x) + d`` (a confidence that shifts every point alike), the gain
does not depend on ``d``. No family but the trivial one leaves both unchanged, so the two
scores answer the two readings of "more confident".
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from ..precision import float32_ops

SUBSTRATES = ("blur", "zero")
SCORES = ("softmax", "logit")
BLUR_KERNELS = ("rise", "sampled")
DEFAULT_BATCH_SIZE = 128


# --------------------------------------------------------------------------- defaults

def default_step(height: int, width: int) -> int:
    """The reference step: whole image rows, 8 rows at 224 px, scaled with the height.

    ``step = W * max(1, round(8 * H / 224))``: 224 px -> 1792 pixels (28 steps, 29 points,
    the RISE setting); 32 px -> 32 pixels (32 steps, 33 points); 64 px -> 128 (32 steps).
    """
    return int(width) * max(1, round(8 * int(height) / 224))


def num_steps(height: int, width: int, step: int) -> int:
    """``n = ceil(H*W / step)``; a curve has ``n + 1`` points."""
    return -(-int(height) * int(width) // int(step))


# --------------------------------------------------------------------------- blur

def _reflect_index(i: int, n: int) -> int:
    """scipy.ndimage 'reflect' boundary (d c b a | a b c d | d c b a) for any integer i."""
    i %= 2 * n
    return i if i < n else 2 * n - 1 - i


def gaussian_kernel1d(size: int = 11, sigma: float = 5.0, kind: str = "rise") -> torch.Tensor:
    """1-D blur kernel: [size] float64, sums to 1.

    ``kind="rise"`` reproduces the RISE reference ``gkern(klen, nsig)``, which is
    ``scipy.ndimage.gaussian_filter`` applied to a centred delta of width ``size``: a sampled
    Gaussian of radius ``int(4*sigma + 0.5)`` (scipy's truncate=4), normalised, whose tails are
    folded back into the ``size``-wide window by scipy's 'reflect' boundary. With sigma=5 and
    size=11 that fold matters (the tails are flatter than a plain sampled Gaussian).
    ``kind="sampled"``: ``exp(-j^2 / (2 sigma^2))`` for ``j = -size//2 .. size//2``, normalised.
    The 2-D kernel is the outer product of the 1-D one (both are separable).
    """
    if kind not in BLUR_KERNELS:
        raise UserError(f"blur_kernel must be one of {', '.join(BLUR_KERNELS)}, got {kind!r}.")
    if size < 1 or size % 2 == 0:
        raise UserError(f"blur_size must be a positive odd number, got {size}.")
    if not sigma > 0:
        raise UserError(f"blur_sigma must be > 0, got {sigma}.")
    c = size // 2
    if kind == "sampled":
        w = [math.exp(-0.5 * ((j - c) / sigma) ** 2) for j in range(size)]
        s = sum(w)
        return torch.tensor([x / s for x in w], dtype=torch.float64)
    r = int(4.0 * sigma + 0.5)
    g = [math.exp(-0.5 * (j / sigma) ** 2) for j in range(-r, r + 1)]
    s = sum(g)
    out = [0.0] * size
    for i in range(size):  # out[i] = sum_j g[j] * delta[reflect(i + j)]
        for j in range(-r, r + 1):
            if _reflect_index(i + j, size) == c:
                out[i] += g[j + r] / s
    return torch.tensor(out, dtype=torch.float64)


def gaussian_blur(images: torch.Tensor, size: int = 11, sigma: float = 5.0,
                  kind: str = "rise") -> torch.Tensor:
    """Depthwise Gaussian blur with zero padding (RISE's insertion substrate).

    images: [B, C, H, W] float, normalised (zero padding = the mean colour at the border)
    returns: [B, C, H, W], same dtype and device; the input is not modified.
    """
    k1 = gaussian_kernel1d(size, sigma, kind)
    k2 = torch.outer(k1, k1).to(device=images.device, dtype=images.dtype)
    c = images.shape[1]
    weight = k2.expand(c, 1, size, size)  # depthwise: channel i blurred by itself only
    with float32_ops(images.device):  # the substrate is an input, not a forward: no bf16
        return F.conv2d(images, weight, padding=size // 2, groups=c)


# --------------------------------------------------------------------------- order

def pixel_order(maps: torch.Tensor) -> torch.Tensor:
    """Pixel visiting order: [B, H*W] int64 flat indices (``y*W + x``).

    Descending saliency; among equal saliency the lower flat index comes first (a stable
    descending sort keeps equal keys in input order).
    maps: [B, H, W] float
    """
    return torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices


def pixel_rank(maps: torch.Tensor) -> torch.Tensor:
    """Position of every pixel in :func:`pixel_order`: [B, H*W] int64.

    Pixel ``p`` has changed after step ``k`` iff ``rank[p] < min(k*step, H*W)``.
    """
    order = pixel_order(maps)
    rank = torch.empty_like(order)
    ar = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return rank.scatter_(1, order, ar)


def image_seed(seed: int, image_id: int) -> int:
    """The seed of image ``image_id``'s random orders in an experiment of seed ``seed``.

    numpy's ``SeedSequence([seed mod 2**64, image_id mod 2**64])`` hashed to 63 bits: a
    well-mixed, platform-independent function of the pair (nearby pairs give unrelated
    streams; no two pairs are related by an offset as ``seed * K + image_id`` would be).
    """
    import numpy as np

    words = np.random.SeedSequence([int(seed) % 2 ** 64, int(image_id) % 2 ** 64]).generate_state(
        2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def random_ranks(image_ids: Sequence[int], seed: int, k: int, n_pixels: int) -> torch.Tensor:
    """``k`` uniformly random pixel orders per image, as ranks: [B, k, n_pixels] int64, CPU.

    Row ``[b, j]`` is ``torch.randperm(n_pixels)`` drawn from a CPU ``torch.Generator``
    seeded with :func:`image_seed` (``seed``, ``image_ids[b]``), the ``j``-th draw of that
    generator. The rank of a uniformly random order is itself uniformly random (the inverse
    of a uniform permutation is uniform), so it is used as the rank directly. An image's
    orders depend on (seed, image id, j) only: not on its batch, the batch size, the device,
    the map or the method; the first ``k'`` of ``k`` orders are the orders of ``k'``.
    """
    out = torch.empty(len(image_ids), int(k), int(n_pixels), dtype=torch.long)
    for b, i in enumerate(image_ids):          # drawing only: k randperms per image, no forwards
        g = torch.Generator(device="cpu").manual_seed(image_seed(seed, int(i)))
        for j in range(int(k)):
            out[b, j] = torch.randperm(int(n_pixels), generator=g)
    return out


# --------------------------------------------------------------------------- checks

def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter or buffer (``fallback`` if it has none)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return fallback


def check_eval(model: nn.Module) -> None:
    """A model in training mode (dropout, batch-norm updates) gives wrong scores: refuse it."""
    bad = [n or type(model).__name__ for n, m in model.named_modules() if m.training]
    if bad:
        raise UserError(f"the model is in training mode (module {bad[0]!r}); call model.eval() "
                        "before computing metrics.")


def _check_inputs(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Validate shapes; returns maps as [B, H, W]."""
    if not torch.is_tensor(images) or images.ndim != 4 or not images.is_floating_point():
        raise UserError("images must be a float tensor [B, C, H, W], got "
                        f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}.")
    if not torch.is_tensor(maps):
        raise UserError(f"maps must be a tensor [B, H, W], got {type(maps).__name__}.")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    b, _, h, w = images.shape
    if maps.ndim != 3 or tuple(maps.shape) != (b, h, w):
        raise UserError(f"maps must be [B, H, W] = {[b, h, w]} (one map per image, at input "
                        f"resolution), got {list(maps.shape)}; upsample the maps first.")
    return maps


def _check_targets(targets, b: int, device: torch.device) -> Optional[torch.Tensor]:
    if targets is None:
        return None
    t = torch.as_tensor(targets, device=device)
    if t.ndim != 1 or t.shape[0] != b or t.is_floating_point() or t.dtype == torch.bool:
        raise UserError(f"targets must be an integer tensor [B] with B={b}, got "
                        f"{t.dtype} {list(t.shape)}.")
    return t.long()


def class_scores(logits: torch.Tensor, targets: torch.Tensor, score: str) -> torch.Tensor:
    """logits: [N, K]; targets: [N] int64 -> [N] float32 (softmax probability or logit)."""
    logits = logits.float()
    if score == "softmax":
        logits = logits.softmax(dim=1)
    return logits.gather(1, targets[:, None])[:, 0]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """The class predicted on each image: [B] int64 on the model's device.

    images: [B, C, H, W] float, normalised. The model must be in eval mode.
    """
    check_eval(model)
    dev = model_device(model, images.device)
    x = images.to(dev)
    out = [model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=dev)


# --------------------------------------------------------------------------- curves

def causal_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                  targets: Optional[torch.Tensor] = None, *,
                  modes: Sequence[str] = ("insertion", "deletion"),
                  step: Optional[int] = None,
                  insertion_substrate: str = "blur", deletion_substrate: str = "zero",
                  score: str = "softmax", batch_size: int = DEFAULT_BATCH_SIZE,
                  blur_size: int = 11, blur_sigma: float = 5.0, blur_kernel: str = "rise",
                  random_ranks: Optional[torch.Tensor] = None,
                  ) -> Dict[str, torch.Tensor]:
    """Insertion and/or deletion curves of a batch, sharing forward batches.

    images: [B, C, H, W] float32, normalised, any device (copied to the model's device)
    maps: [B, H, W] (or [B, 1, H, W]) float, at input resolution; NaN is refused
    targets: [B] int64, the explained classes; None = the class predicted on the clean image
    modes: any of "insertion", "deletion"
    step: pixels changed per step; None = :func:`default_step` (H, W)
    score: "softmax" (probability of the target, the reference) or "logit"
    batch_size: perturbed images per forward (bounds memory)
    blur_*: the insertion blur (:func:`gaussian_blur`), used where a substrate is "blur"
    random_ranks: [B, R, H*W] int64 (each row a permutation of 0..H*W-1, e.g. from
        :func:`random_ranks`) or None: R further orders per image whose curves are computed
        in the same forward batches as the map's (same substrate, steps, score and target)
    returns: {mode: [B, n+1] float32 on the model's device}, n = ceil(H*W / step), and with
        ``random_ranks`` also {mode + "_random": [B, R, n+1] float32}

    Point k of a curve is the score on ``where(rank < min(k*step, H*W), end, start)``, with
    (start, end) = (image, substrate) for deletion and (substrate, image) for insertion.
    The model must be in eval mode (checked, never switched); the inputs are not modified.
    """
    modes = list(dict.fromkeys(modes))
    for m in modes:
        if m not in ("insertion", "deletion"):
            raise UserError(f"unknown causal mode {m!r}; use 'insertion' or 'deletion'.")
    for name, s in (("insertion substrate", insertion_substrate), ("deletion substrate", deletion_substrate)):
        if s not in SUBSTRATES:
            raise UserError(f"{name} must be one of {', '.join(SUBSTRATES)}, got {s!r}.")
    if score not in SCORES:
        raise UserError(f"score must be one of {', '.join(SCORES)}, got {score!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}.")
    maps = _check_inputs(images, maps)
    check_eval(model)
    B, C, H, W = images.shape
    HW = H * W
    if step is None:
        step = default_step(H, W)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise UserError(f"step must be a positive integer number of pixels, got {step!r}.")
    n = num_steps(H, W, step)
    dev = model_device(model, images.device)
    targets = _check_targets(targets, B, dev)
    R = 0
    if random_ranks is not None:
        if (not torch.is_tensor(random_ranks) or random_ranks.ndim != 3
                or random_ranks.shape[0] != B or random_ranks.shape[2] != HW
                or random_ranks.is_floating_point() or random_ranks.dtype == torch.bool):
            raise UserError(f"random_ranks must be an integer tensor [B, R, H*W] = [{B}, R, {HW}], "
                            f"got {getattr(random_ranks, 'dtype', type(random_ranks).__name__)} "
                            f"{list(random_ranks.shape) if torch.is_tensor(random_ranks) else ''}.")
        R = random_ranks.shape[1]
    if B == 0:
        out = {m: torch.zeros(0, n + 1, device=dev) for m in modes}
        if random_ranks is not None:
            out.update({f"{m}_random": torch.zeros(0, R, n + 1, device=dev) for m in modes})
        return out

    x = images.to(dev)
    mp = maps.to(dev)
    if not mp.is_floating_point():
        mp = mp.float()
    if torch.isnan(mp).any():  # one sync, before the loop
        raise UserError("maps contain NaN; fix the explainer output before scoring it.")

    with torch.no_grad():
        # Bank of whole images, indexed per item: [0, B) clean, then blurred, then one zero image.
        subs = {"insertion": insertion_substrate, "deletion": deletion_substrate}
        used = {subs[m] for m in modes}
        bank = [x]
        blur0 = zero_idx = None
        if "blur" in used:
            blur0 = B
            bank.append(gaussian_blur(x, blur_size, blur_sigma, blur_kernel))
        if "zero" in used:
            zero_idx = sum(t.shape[0] for t in bank)
            bank.append(torch.zeros(1, C, H, W, dtype=x.dtype, device=dev))
        bank = torch.cat(bank)                                     # [Nb, C, H, W]
        # One row of ranks per curve: curve c = b * O + o, order o = 0 the map's, o >= 1
        # the random ones; O = 1 + R curves per image.
        O = 1 + R
        rank = pixel_rank(mp)                                      # [B, HW]
        if R:
            rank = torch.cat([rank[:, None], random_ranks.to(dev, torch.long)], 1).view(B * O, HW)
        kk = torch.arange(n + 1, device=dev)
        changed = torch.clamp(kk * step, max=HW)                   # [n+1] pixels changed at k

        ar = torch.arange(B, device=dev)
        cimg = torch.arange(B * O, device=dev) // O                # [B*O] image of each curve
        # Items whose image is a whole bank image: clean images (also the prediction
        # forward) and the shared zero image. They come first so targets exist in time.
        known = [ar] + ([torch.full((1,), zero_idx, device=dev)] if zero_idx is not None else [])
        known = torch.cat(known)
        n_known = known.numel()

        # Perturbed items: (mode m, curve c, step k) whose input is not a known image.
        it_c, it_b, it_k, it_s, it_e, it_dst = [], [], [], [], [], []
        for mi, m in enumerate(modes):
            sub_idx = ar + blur0 if subs[m] == "blur" else torch.full_like(ar, zero_idx)
            start, end = (ar, sub_idx) if m == "deletion" else (sub_idx, ar)
            # Steps to forward: all but a known first (clean or zero) and last point. Made
            # with arange on the device: torch.tensor(list) would be a host-to-device copy.
            k_lo = 1 if (m == "deletion" or subs[m] == "zero") else 0
            k_hi = n if (m == "insertion" or subs[m] == "zero") else n + 1
            ks_t = torch.arange(k_lo, k_hi, dtype=torch.long, device=dev)
            cc = torch.arange(B * O, device=dev).repeat_interleave(ks_t.numel())
            bb = cimg[cc]
            kt = ks_t.repeat(B * O)
            it_c.append(cc)
            it_b.append(bb)
            it_k.append(kt)
            it_s.append(start[bb])
            it_e.append(end[bb])
            it_dst.append((mi * B * O + cc) * (n + 1) + kt)         # flat index into curves
        it_c, it_b, it_k, it_s, it_e, it_dst = (torch.cat(t) for t in
                                                (it_c, it_b, it_k, it_s, it_e, it_dst))
        n_items = it_b.numel()

        curves = torch.empty(len(modes) * B * O * (n + 1), dtype=torch.float32, device=dev)
        known_logits: List[torch.Tensor] = []
        clean = zero = None
        total = n_known + n_items
        # Equal chunks of at most batch_size: no small ragged last forward.
        chunk = -(-total // -(-total // batch_size))
        for i0 in range(0, total, chunk):
            i1 = min(i0 + chunk, total)
            kn = max(0, min(i1, n_known) - i0)                     # known items in this chunk
            parts = []
            if kn:
                parts.append(bank[known[i0:i0 + kn]])
            p0, p1 = max(i0, n_known) - n_known, i1 - n_known
            if p1 > p0:
                c, k = it_c[p0:p1], it_k[p0:p1]
                reveal = (rank[c] < changed[k][:, None]).view(-1, 1, H, W)   # [c, 1, H, W]
                parts.append(torch.where(reveal, bank[it_e[p0:p1]], bank[it_s[p0:p1]]))
            logits = model(parts[0] if len(parts) == 1 else torch.cat(parts))
            if kn:
                known_logits.append(logits[:kn])
                if i0 + kn == n_known:                             # all known images done
                    kl = torch.cat(known_logits)
                    if targets is None:
                        targets = kl[:B].argmax(1)
                    clean = class_scores(kl[:B], targets, score)
                    if zero_idx is not None:
                        zero = class_scores(kl[B:B + 1].expand(B, -1), targets, score)
            if p1 > p0:
                s = class_scores(logits[kn:], targets[it_b[p0:p1]], score)
                curves[it_dst[p0:p1]] = s

        curves = curves.view(len(modes), B * O, n + 1)
        out = {}
        for mi, m in enumerate(modes):
            c = curves[mi]
            if m == "deletion":
                c[:, 0] = clean[cimg]
                if subs[m] == "zero":
                    c[:, n] = zero[cimg]
            else:
                c[:, n] = clean[cimg]
                if subs[m] == "zero":
                    c[:, 0] = zero[cimg]
            c = c.view(B, O, n + 1)
            out[m] = c[:, 0]
            if random_ranks is not None:
                out[f"{m}_random"] = c[:, 1:]
        return out


def insertion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                    targets: Optional[torch.Tensor] = None, *, step: Optional[int] = None,
                    substrate: str = "blur", score: str = "softmax",
                    batch_size: int = DEFAULT_BATCH_SIZE, blur_size: int = 11,
                    blur_sigma: float = 5.0, blur_kernel: str = "rise") -> torch.Tensor:
    """Insertion curve (Petsiuk et al. 2018): from the substrate, put pixels back.

    images: [B, C, H, W] float32 normalised; maps: [B, H, W] float; targets: [B] int64 or
    None (predicted class). substrate: "blur" (reference: Gaussian, kernel 11, sigma 5,
    depthwise, zero padding, in normalised space) or "zero".
    returns: [B, n+1] float32 on the model's device; point 0 = substrate, point n = clean image.
    See :func:`causal_curves` for the other arguments.
    """
    return causal_curves(model, images, maps, targets, modes=("insertion",), step=step,
                         insertion_substrate=substrate, score=score, batch_size=batch_size,
                         blur_size=blur_size, blur_sigma=blur_sigma,
                         blur_kernel=blur_kernel)["insertion"]


def deletion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                   targets: Optional[torch.Tensor] = None, *, step: Optional[int] = None,
                   substrate: str = "zero", score: str = "softmax",
                   batch_size: int = DEFAULT_BATCH_SIZE, blur_size: int = 11,
                   blur_sigma: float = 5.0, blur_kernel: str = "rise") -> torch.Tensor:
    """Deletion curve (Petsiuk et al. 2018): replace pixels with the substrate.

    images: [B, C, H, W] float32 normalised; maps: [B, H, W] float; targets: [B] int64 or
    None (predicted class). substrate: "zero" (reference: 0 in normalised space = the dataset
    mean colour) or "blur".
    returns: [B, n+1] float32 on the model's device; point 0 = clean image, point n = substrate.
    See :func:`causal_curves` for the other arguments.
    """
    return causal_curves(model, images, maps, targets, modes=("deletion",), step=step,
                         deletion_substrate=substrate, score=score, batch_size=batch_size,
                         blur_size=blur_size, blur_sigma=blur_sigma,
                         blur_kernel=blur_kernel)["deletion"]


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under curves sampled at n+1 evenly spaced points of [0, 1] (trapezoid rule).

    ``AUC = (sum_k s_k - s_0/2 - s_n/2) / n`` (RISE ``auc``; Petsiuk et al. 2018).
    curves: [B, n+1] float, n >= 1 -> [B] float32 (summed in float64).
    """
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise UserError(f"curves must be [B, n+1] with n >= 1, got {list(curves.shape)}.")
    c = curves.double()
    n = c.shape[1] - 1
    return ((c.sum(1) - c[:, 0] / 2 - c[:, -1] / 2) / n).float()
