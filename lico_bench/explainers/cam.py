"""Class activation maps: Grad-CAM, Grad-CAM++ and Score-CAM, batched, in torch.

Structure as pytorch-grad-cam's ``base_cam.py``: :class:`BaseCAM` runs the model once
with a hook on the target layer, and each method overrides only :meth:`BaseCAM.weights`,
the channel weights ``w: [B, C]``. The map is then (Selvaraju et al. 2017, eq. 2)

    L = ReLU( Σ_k w_k A_k )        A: [B, C, h, w] activations of the target layer

computed at feature resolution and upsampled bilinearly (align_corners=False) to the input
size. The map is raw: no min-max normalisation (pytorch-grad-cam normalises every map).

Differences from pytorch-grad-cam, all on purpose: one forward (+ one backward) for the
whole batch; no numpy round trip, no per-image cv2 resize (bilinear upsampling with
align_corners=False is the same operation, see the tests); hooks only inside a context
manager; the model's ``.grad`` fields are never touched (``torch.autograd.grad`` w.r.t. the
activations, not ``loss.backward()``); it never calls ``model.eval()``.
"""
from __future__ import annotations

import abc
from typing import Annotated, Any, Dict, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from ..options import Range, typed_options
from ..precision import at_least_float32, float32_ops
from .base import (Explainer, capture_activations, checked_layer_path, layer_path,
                   resolve_layer, same_images, single_activation, upsample)

SCORECAM_VARIANTS = ("official", "grad-cam")


class BaseCAM(Explainer):
    """A CAM: channel weights times activations of one layer, ReLU, bilinear upsampling.

    Option ``layer``: dotted module path of the target layer; None = ``model.cfg.cam_layer``.
    Subclasses set ``uses_gradients`` and override :meth:`weights`.

    Example (a CAM whose channel weights are the mean activations, no gradient)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> from lico_bench.explainers import BaseCAM
        >>> class MeanCAM(BaseCAM):
        ...     name = "meancam"
        ...     uses_gradients = False
        ...     def weights(self, model, images, targets, activations, grads):
        ...         return activations.mean(dim=(2, 3))      # [B, C]
        >>> MeanCAM(layer="0")(model, images).shape
        torch.Size([2, 32, 32])
    """

    uses_gradients: bool = True

    def __init__(self, layer: Optional[str] = None, **options: Any):
        super().__init__(layer=layer, **options)
        self.layer = layer

    @property
    def needs_grad(self) -> bool:
        return self.uses_gradients

    def resolved_options(self, model: nn.Module, image_size: tuple) -> Dict[str, Any]:
        return {**self.options, "layer": checked_layer_path(model, self.layer)}

    @abc.abstractmethod
    def weights(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                activations: torch.Tensor, grads: Optional[torch.Tensor]) -> torch.Tensor:
        """Channel weights.

        images: [B, 3, H, W]; targets: [B] int64; activations A: [B, C, h, w] (detached);
        grads: d logit_target / d A, [B, C, h, w], or None when ``uses_gradients`` is False.
        Returns w: [B, C] float32.
        """

    def feature_maps(self, model: nn.Module, images: torch.Tensor,
                     targets: Optional[torch.Tensor]):
        """One pass for the whole batch.

        Returns ``(A, grads, targets)``: A [B, C, h, w] detached, grads [B, C, h, w] (d
        target logit / d A, or None), both at least float32, targets [B] int64 (the
        predicted class where None was given). Under bf16 autocast A and grads come out of
        the model in bf16; they are cast here, so the channel weights are computed in float32.
        """
        path = layer_path(model, self.layer)
        layer = resolve_layer(model, self.layer)
        with capture_activations(layer, path, grad=self.uses_gradients) as store:
            logits = model(images)
        acts = single_activation(store, path)
        if targets is None:
            targets = logits.detach().argmax(dim=1)
        grads = None
        if self.uses_gradients:
            # score = target logit, as pytorch-grad-cam's ClassifierOutputTarget. Summing
            # over the batch is exact: image b's logit depends only on image b (eval mode).
            score = at_least_float32(logits).gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, acts)
            grads = at_least_float32(grads)
        return at_least_float32(acts.detach()), grads, targets

    def low_res(self, model: nn.Module, images: torch.Tensor,
                targets: Optional[torch.Tensor]) -> torch.Tensor:
        """ReLU(Σ_k w_k A_k) at feature resolution: [B, h, w] float32."""
        acts, grads, targets = self.feature_maps(model, images, targets)
        w = self.weights(model, images, targets, acts, grads)
        with float32_ops(acts.device):  # autocast would run the einsum in bf16
            return F.relu(torch.einsum("bc,bchw->bhw", w.to(acts.dtype), acts)).float()

    def explain(self, model, images, targets):
        return upsample(self.low_res(model, images, targets), images.shape[-2:])


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al. 2017, eq. 1): w_k = mean_ij d y^c / d A_k(i, j).

    y^c is the target class's logit (pre-softmax score, as in the paper and
    pytorch-grad-cam). Options: ``layer``.

    Example (a torchvision model: name its layer; lico-bench's models carry it)::

        >>> import torch, torchvision
        >>> from lico_bench.explainers import GradCAM
        >>> model = torchvision.models.resnet18(num_classes=10).eval()
        >>> images = torch.randn(2, 3, 64, 64)
        >>> targets = torch.tensor([3, 7])                   # the classes to explain
        >>> maps = GradCAM(layer="layer4")(model, images, targets)
        >>> maps.shape, maps.dtype, bool((maps >= 0).all())  # raw, at input resolution
        (torch.Size([2, 64, 64]), torch.float32, True)
    """

    name = "gradcam"

    @typed_options
    def __init__(self, layer: Optional[str] = None):
        super().__init__(layer=layer)

    def weights(self, model, images, targets, activations, grads):
        return grads.mean(dim=(2, 3))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018), closed form of eq. 19.

    With Y^c = exp(S^c) (S^c the target logit) the higher derivatives reduce to powers of
    g = d S^c / d A (eq. 18-19):

        alpha_k(ij) = g^2 / (2 g^2 + Σ_ab A_k(ab) g^3)
        w_k = Σ_ij alpha_k(ij) ReLU(g_k(ij))                         (eq. 7 / 10)

    As pytorch-grad-cam's GradCAMPlusPlus: eps = 1e-6 in the denominator and alpha = 0
    where g = 0. Options: ``layer``.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> from lico_bench.explainers import GradCAMPlusPlus
        >>> GradCAMPlusPlus(layer="0")(model, images, torch.tensor([0, 1])).shape
        torch.Size([2, 32, 32])
    """

    name = "gradcampp"
    eps = 1e-6

    @typed_options
    def __init__(self, layer: Optional[str] = None):
        super().__init__(layer=layer)

    def weights(self, model, images, targets, activations, grads):
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_a = activations.sum(dim=(2, 3), keepdim=True)             # [B, C, 1, 1]
        alpha = g2 / (2 * g2 + sum_a * g3 + self.eps)                  # eq. 19
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * F.relu(grads)).sum(dim=(2, 3))                 # eq. 7


class ScoreCAM(BaseCAM):
    """Score-CAM (Wang et al. 2020), batched.

    Each channel A_k, upsampled bilinearly to the input size and min-max normalised to
    H_k in [0, 1], masks the input: X ∘ H_k (paper Sec. 3, Definition 2 with
    H_k = s(Up(A_k)), s = min-max normalisation). Its weight is

    * ``variant="official"`` (default; haofanwang/Score-CAM ``scorecam.py``): the softmax
      probability of the target class on X ∘ H_k. A constant channel is skipped (weight 0),
      as the official code's ``continue``; its forward pass is skipped too.
      ``baseline_subtract=True``: minus the probability on the baseline X_b = 0 (zero in
      normalised space = dataset mean colour), the paper's (v2) channel-wise increase of
      confidence, CIC = f(X ∘ H_k) - f(X_b) (Definition 2).
    * ``variant="grad-cam"``: pytorch-grad-cam's ScoreCAM weighting, the target *logit* on
      X ∘ H_k, softmaxed over channels; normalisation (u - min) / (max - min + 1e-8), so a
      constant channel masks to 0 and is scored on the zero image (one shared forward).
      (pytorch-grad-cam itself upsamples with align_corners=True, which turns a constant
      non-zero channel into float-rounding ripples of ~1e-7 that its eps-normalisation
      blows up to a [0, 1] noise mask; here such a channel masks to 0, as the formula says.)

    map = ReLU(Σ_k w_k A_k) at feature resolution, upsampled bilinearly, like every CAM here.
    X ∘ H_k does not depend on the target: an image that appears several times in a batch
    (``run --grid N`` explains a composite once per cell) is forwarded once per channel, and
    each of its items reads its own target's score from those outputs
    (:func:`~lico_bench.explainers.base.same_images`: exact equality of the images), n^2
    times fewer forwards for an n x n composite than one pass per item, the same weights up to
    float reassociation (the masked copies are batched differently).
    The official code instead upsamples first and applies ReLU at input resolution; the two
    differ only where the upsampled sum changes sign between feature cells.

    Options:
      layer: target layer path (None = model.cfg.cam_layer).
      variant: "official" or "grad-cam".
      baseline_subtract: official variant only.
      batch_size: masked images per forward pass; bounds memory at about
        batch_size x (3·H·W + activations of one forward).
      mask_align_corners: align_corners of the mask upsampling; False as the official code
        (F.interpolate), True reproduces pytorch-grad-cam (nn.UpsamplingBilinear2d).

    Example (the paper's v2 weighting: minus the probability on the mean-colour image)::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> from lico_bench.explainers import ScoreCAM
        >>> cam = ScoreCAM(layer="0", baseline_subtract=True, batch_size=4)
        >>> cam(model, images, torch.tensor([0, 1])).shape
        torch.Size([2, 32, 32])
    """

    name = "scorecam"
    uses_gradients = False
    VARIANTS = SCORECAM_VARIANTS

    @typed_options
    def __init__(self, layer: Optional[str] = None,
                 variant: Literal[SCORECAM_VARIANTS] = "official",
                 baseline_subtract: bool = False, batch_size: Annotated[int, Range(1)] = 64,
                 mask_align_corners: bool = False):
        if baseline_subtract and variant != "official":
            raise UserError("baseline_subtract applies to variant='official' only.")
        super().__init__(layer=layer, variant=variant, baseline_subtract=baseline_subtract,
                         batch_size=batch_size, mask_align_corners=mask_align_corners)
        self.variant, self.baseline_subtract = variant, baseline_subtract
        self.batch_size, self.mask_align_corners = batch_size, mask_align_corners

    def _score(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[n, K] logits, [n, M] targets -> [n, M]: probability (official) or logit (grad-cam)."""
        if self.variant == "official":
            logits = F.softmax(logits.float(), dim=1)
        return logits.gather(1, targets).float()

    def weights(self, model, images, targets, activations, grads):
        B, C, h, w = activations.shape
        H, W = images.shape[-2:]
        # X ∘ H_k depends on the image, not on the explained class: an image that appears
        # several times in the batch (a grid composite, one item per cell) is forwarded once
        # per channel and each of its items reads its own target (same_images).
        items, group = same_images(images)                             # [G, M], [B]
        first = items[:, 0]                                            # [G]
        # A constant channel upsamples to a constant mask and only to one (upsampling is
        # injective), so constancy is checked at feature resolution.
        flat = activations[first].flatten(2)
        const = flat.amax(dim=2) == flat.amin(dim=2)                   # [G, C]
        scores = torch.zeros(B, C, device=images.device, dtype=torch.float32)
        # Device-to-host reads happen before the loop only: same_images, and which channels
        # to forward.
        pairs = (~const).nonzero()                                     # [P, 2] (g, k)
        any_const = pairs.shape[0] < const.numel()                     # known on the host now
        for i in range(0, pairs.shape[0], self.batch_size):
            g, k = pairs[i:i + self.batch_size].unbind(1)
            up = F.interpolate(activations[first[g], k][:, None], size=(H, W), mode="bilinear",
                               align_corners=self.mask_align_corners)  # [n, 1, H, W]
            lo = up.amin(dim=(2, 3), keepdim=True)
            hi = up.amax(dim=(2, 3), keepdim=True)
            if self.variant == "official":
                # hi > lo for non-constant channels; the guard catches a range lost to rounding
                rng = hi - lo
                mask = torch.where(rng > 0, (up - lo) / rng.clamp_min(torch.finfo(up.dtype).tiny),
                                   torch.zeros_like(up))
            else:
                mask = (up - lo) / (hi - lo + 1e-8)  # pytorch-grad-cam's eps
            logits = model(images[first[g]] * mask)                    # f(X ∘ H_k): [n, K]
            scores[items[g], k[:, None]] = self._score(logits, targets[items[g]])  # [n, M]
        const = const[group]                                           # [B, C]
        need_zero = self.baseline_subtract or (self.variant == "grad-cam" and any_const)
        if need_zero:
            # f(0): the baseline X_b (official, CIC) and, for pytorch-grad-cam, the score of
            # a constant channel, whose mask is 0 so its masked input is the zero image.
            # One zero image: in eval mode every image's output depends on that image only.
            zero_logits = model(torch.zeros_like(images[:1])).expand(B, -1)
            base = self._score(zero_logits, targets[:, None])[:, 0]           # [B]
        if self.variant == "official":
            if self.baseline_subtract:
                scores = scores - base[:, None]                                # CIC, Def. 2
            return scores.masked_fill(const, 0.0)
        if any_const:
            scores = torch.where(const, base[:, None].expand(B, C), scores)
        return F.softmax(scores, dim=1)
