"""The extra loss terms of LICO's peers, as pure functions, and :class:`GuidanceLoss`,
which runs one training step's forward for a family (what ``TrainNet`` calls).

Shapes: images ``x: [B, 3, H, W]`` float (normalised), labels ``y: [B]`` int64, object
masks ``masks: [B, H, W]`` bool (True on the object), ``use: [B]`` bool (whose mask the
loss uses), feature map ``feats: [B, C, h, w]``, logits ``[B, K]``.

Batch coupling: in train mode BatchNorm normalises with the batch's statistics, so one
image's logits depend a little on the others' pixels; a gradient of a sum over the batch
(``d sum_i ... / dx``) then carries these cross terms, as in every batched implementation
of these methods (the Model-Guidance and saliency-guided-training code included). In eval
mode (or without BatchNorm) the gradients are exactly per image; the tests check that.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .families import FAMILIES

#: below this, an attribution map counts as empty in the Energy loss (Model-Guidance code)
ENERGY_EMPTY = 1e-7
SGT_RANKS = ("abs", "signed")


def gradcam_true_class(feats: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                       create_graph: bool = True) -> torch.Tensor:
    """Differentiable Grad-CAM of class ``y`` at the CAM layer (Selvaraju et al. 2017, Eq. 1-2,
    as Rao et al. 2023 train with it): ``relu(sum_c mean_hw(dz_y/dF_c) * F_c)``.

    feats: [B, C, h, w] float, the CAM layer's output, part of the graph of ``logits``
    [B, K]; y: [B] int64. Returns [B, h, w] float32, differentiable in the weights when
    ``create_graph`` (the second backward pass of model guidance).
    """
    z = logits.float().gather(1, y[:, None]).sum()
    grads = torch.autograd.grad(z, feats, create_graph=create_graph, retain_graph=True)[0]
    weights = grads.float().mean(dim=(2, 3), keepdim=True)                # [B, C, 1, 1]
    return F.relu((weights * feats.float()).sum(dim=1))                  # [B, h, w]


def energy_loss(attr: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Energy loss of each map (Rao et al., ICCV 2023, Sec. 3.3 "Energy loss"; the
    Model-Guidance code's ``EnergyPointingGameBBMultipleLoss``):
    ``L_loc = 1 - sum(A+ in mask) / sum(A+)`` with ``A+ = max(A, 0)``; a map whose positive
    sum is below 1e-7 gets ``1 - sum(A+ in mask)`` (about 1) instead of a division by 0.

    attr: [B, H, W] float; masks: [B, H, W] bool. Returns [B] float32 in [0, 1].
    """
    pos = attr.float().clamp(min=0)
    num = (pos * masks.to(pos.dtype)).sum(dim=(1, 2))
    den = pos.sum(dim=(1, 2))
    return torch.where(den < ENERGY_EMPTY, 1 - num, 1 - num / den.clamp_min(ENERGY_EMPTY))


def guided_loss(feats: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                masks: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """Model guidance's localisation term: ``sum_{i: use_i} L_loc(A_i, mask_i)`` (Rao et al.
    2023, Eq. of the training objective ``L = L_class + lambda_loc * sum_k L_loc,k``; summed
    over the batch's annotated images as their train.py does), with ``A_i`` the Grad-CAM of
    the true class (:func:`gradcam_true_class`) upsampled bilinearly to the mask's size
    (align_corners False, as their ``interpolate``). Scalar float32; 0 when no image is used.
    """
    cam = gradcam_true_class(feats, logits, y)                                # [B, h, w]
    cam = F.interpolate(cam[:, None], size=masks.shape[-2:], mode="bilinear",
                        align_corners=False)[:, 0]                            # [B, H, W]
    return (energy_loss(cam, masks) * use.to(cam.dtype)).sum()


def rrr_penalty(x: torch.Tensor, logits: torch.Tensor, masks: torch.Tensor,
                use: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Right-for-the-right-reasons term (Ross et al., IJCAI 2017, Eq. 1, second term):
    ``(1/B) sum_i sum_d (A_id * d/dx_id sum_k log p_ik)^2`` with ``A = 1 - mask`` (every
    channel of a pixel off the object), differentiable in the weights (second backward).
    Mean over the batch because the cross-entropy is (their Eq. 1 sums both terms over
    images: the same ratio).

    x: [B, 3, H, W] with ``requires_grad``, the input of ``logits`` [B, K]; masks: [B, H, W]
    bool; use: [B] bool or None (all). Returns a scalar float32.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    g = torch.autograd.grad(logp.sum(), x, create_graph=True)[0].float()      # [B, 3, H, W]
    off = (~masks)[:, None].to(g.dtype)                                       # [B, 1, H, W]
    per_image = ((off * g) ** 2).sum(dim=(1, 2, 3))                          # [B]
    if use is not None:
        per_image = per_image * use.to(per_image.dtype)
    return per_image.sum() / max(1, x.shape[0])


def sgt_masked_input(x: torch.Tensor, grad: torch.Tensor, k: float, generator: torch.Generator,
                     rank: str = "abs") -> Tuple[torch.Tensor, torch.Tensor]:
    """Saliency-guided training's masked input (Ismail et al., NeurIPS 2021, Sec. 3: the
    bottom-k features of the sorted gradient replaced by a mask distribution; their code's
    ``--RandomMasking``): per image, the ``max(1, int(k*H*W))`` pixels with the lowest
    score (``|mean over channels of the gradient|``, or the signed mean with
    ``rank="signed"``, their code's default without ``--abs``), each channel of each such
    pixel replaced by a uniform random value within that image's channel range
    ``[min_c, max_c]``.

    x: [B, C, H, W] float (detached); grad: [B, C, H, W], d z_y / dx; k: share of pixels in
    (0, 1); generator: a CPU generator (the uniform draws, one per value of x, so the
    result does not depend on the device). Returns (masked x [B, C, H, W] of x's dtype,
    masked pixels [B, H, W] bool).
    """
    if rank not in SGT_RANKS:
        raise ValueError(f"rank must be one of {SGT_RANKS}, got {rank!r}")
    B, C, H, W = x.shape
    score = grad.float().mean(dim=1).reshape(B, H * W)                       # [B, HW]
    if rank == "abs":
        score = score.abs()
    n = max(1, int(k * H * W))
    idx = torch.topk(score, n, dim=1, largest=False).indices                 # [B, n]
    masked = torch.zeros(B, H * W, dtype=torch.bool, device=x.device)
    masked.scatter_(1, idx, True)
    masked = masked.view(B, H, W)
    lo = x.amin(dim=(2, 3), keepdim=True)                                    # [B, C, 1, 1]
    hi = x.amax(dim=(2, 3), keepdim=True)
    u = torch.rand(B, C, H, W, generator=generator).to(device=x.device, dtype=x.dtype)
    return torch.where(masked[:, None], lo + (hi - lo) * u, x), masked


def sgt_kl(logits: torch.Tensor, logits_masked: torch.Tensor) -> torch.Tensor:
    """``KL(p || p~)`` averaged over the batch (Ismail et al. 2021, Sec. 3, the training
    objective ``L(f(X), y) + lambda * D_KL(f(X) || f(X~))``; their code's
    ``KLDivLoss(reduction='batchmean')`` on log_softmax(masked) against softmax(original),
    gradient through both). logits, logits_masked: [B, K]. Scalar float32."""
    return F.kl_div(F.log_softmax(logits_masked.float(), dim=1),
                    F.log_softmax(logits.float(), dim=1), log_target=True,
                    reduction="batchmean")


class GuidanceLoss:
    """One family's training step: ``forward`` returns the logits of the clean images and
    the extra term ``{"guide": scalar}``; ``combine`` weights it (the loss is
    ``CE + combine(parts)``).

    family: "guided" | "rrr" | "sgt"; settings: the family's ``TrainConfig`` fields
    (``guided_lambda``, ``guided_share``; ``rrr_lambda``; ``sgt_k``, ``sgt_lambda``,
    ``sgt_rank``); annotated: [N] bool over the training split, whose images' masks are used
    (``guided_share``; None = all).
    """

    def __init__(self, family: str, settings: Dict[str, object],
                 annotated: Optional[torch.Tensor] = None):
        if family not in FAMILIES:
            raise ValueError(f"unknown guidance family {family!r}")
        self.family, self.settings, self.annotated = family, dict(settings), annotated
        self.weight = float(settings[{"guided": "guided_lambda", "rrr": "rrr_lambda",
                                      "sgt": "sgt_lambda"}[family]])

    @property
    def needs_masks(self) -> bool:
        return FAMILIES[self.family].needs_masks

    def use(self, index: torch.Tensor, device: torch.device) -> Optional[torch.Tensor]:
        """[B] bool: the images (split indices ``index`` [B]) whose mask the loss uses."""
        if self.annotated is None:
            return None
        return self.annotated[index.cpu()].to(device)

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                masks: Optional[torch.Tensor], use: Optional[torch.Tensor],
                generator: Optional[torch.Generator]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """model: a Classifier (forward_features, head); x: [B, 3, H, W]; y: [B]; masks:
        [B, H, W] bool (guided, rrr); use: [B] bool or None; generator: CPU generator (sgt).
        Returns (logits [B, K] of x, {"guide": the unweighted extra term})."""
        if self.family == "guided":
            feats = model.forward_features(x)
            logits = model.head(feats)
            u = torch.ones(len(y), dtype=torch.bool, device=x.device) if use is None else use
            with torch.autocast(x.device.type, enabled=False):
                term = guided_loss(feats, logits, y, masks, u)
            return logits, {"guide": term}
        x = x.detach().requires_grad_(True)
        logits = model(x)
        with torch.autocast(x.device.type, enabled=False):
            if self.family == "rrr":
                return logits, {"guide": rrr_penalty(x, logits, masks, use)}
            z = logits.float().gather(1, y[:, None]).sum()
            grad = torch.autograd.grad(z, x, retain_graph=True)[0]
            xm, _ = sgt_masked_input(x.detach(), grad.detach(), float(self.settings["sgt_k"]),
                                     generator, str(self.settings["sgt_rank"]))
        logits_m = model(xm)
        with torch.autocast(x.device.type, enabled=False):
            return logits, {"guide": sgt_kl(logits, logits_m)}

    def combine(self, parts: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``lambda * parts["guide"]`` (lambda: the family's weight)."""
        return self.weight * parts["guide"]
