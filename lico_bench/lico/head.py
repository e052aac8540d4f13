"""The training-only LICO branch: prompt learner + mapping net + temperature + losses.

The classifier is unchanged (LICO.md, "Model"); this head only reads its feature map
``F = clf.forward_features(x)`` and adds ``alpha * L_MM + beta * L_OT`` to the CE loss::

    head = LicoHead(create_text_encoder("minilm"), info.class_names, feat_hw=h * w).to(dev)
    opt = SGD(list(clf.parameters()) + head.trainable_parameters(), ...)
    F = clf.forward_features(x); logits = clf.head(F)
    parts = head.losses(F, y)                        # {"mm": scalar, "ot": scalar}
    loss = cross_entropy(logits, y) + head.combine(parts)

The head is a separate module from the classifier, so nothing of it reaches the
classifier's checkpoint; its own ``state_dict()`` holds only what trains (context vectors,
mapping net, temperature), never the frozen text encoder.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import UserError
from .losses import manifold_matching_loss, ot_loss
from .prompts import PromptLearner
from .text import TextEncoder

OT_GRADS = ("cost", "full", "none")


class MappingNet(nn.Module):
    """h: ``Linear(D, D) -> Dropout(0.5) -> ReLU -> Linear(D, h*w)`` (LICO.md, paper Sec. 3.3).

    Maps text vectors [..., D] to the image's spatial size [..., h*w].
    generator: optional torch.Generator for the (PyTorch-default) uniform init.
    """

    def __init__(self, d_text: int, hw: int, dropout: float = 0.5,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_text, d_text), nn.Dropout(dropout), nn.ReLU(),
                                 nn.Linear(d_text, hw))
        if generator is not None:
            with torch.no_grad():
                for lin in (self.net[0], self.net[3]):
                    bound = 1.0 / math.sqrt(lin.in_features)   # nn.Linear's default range
                    lin.weight.uniform_(-bound, bound, generator=generator)
                    lin.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: [..., D] float -> [..., h*w]."""
        return self.net(t)


class LicoHead(nn.Module):
    """LICO's text branch and its two losses (arXiv 2310.09821, Eq. 3-7).

    text_encoder: frozen :class:`TextEncoder` (see :func:`create_text_encoder`).
    class_names: K names in label order. feat_hw: h*w of the classifier's feature map.
    n_ctx: context vectors (12). targets: the OT text targets, ``"tokens"`` (M = n_ctx + 1
        per-token outputs, the paper's) or ``"rolled"`` (M = n_ctx pooled rolled copies);
        see :class:`PromptLearner`. alpha, beta: loss weights (10, 1), used by
        :meth:`combine`; a zero weight skips that loss (it returns 0 with no graph).
    ot_grad: how L_OT trains (LICO.md): ``"cost"`` (default) - plan detached, gradient
        through the cost; ``"full"`` - also through the unrolled Sinkhorn iterations;
        ``"none"`` - computed without any gradient, as the released code did (the value is
        logged, nothing trains from it). ot_eps / ot_max_iter / ot_tol: see :func:`ot_loss`.
    tau_init: the MM temperature's initial value, ln(1/0.07); learn_tau: whether it trains
        (it does in LICO.md). init_std, generator: init.
    """

    def __init__(self, text_encoder: TextEncoder, class_names: Sequence[str], feat_hw: int,
                 n_ctx: int = 12, alpha: float = 10.0, beta: float = 1.0,
                 ot_grad: str = "cost", ot_eps: float = 0.1, ot_max_iter: int = 100,
                 ot_tol: float = 1e-3, tau_init: float = math.log(1 / 0.07),
                 learn_tau: bool = True, init_std: float = 0.02,
                 generator: Optional[torch.Generator] = None, targets: str = "tokens"):
        super().__init__()
        if feat_hw < 1:
            raise UserError(f"feat_hw must be >= 1, got {feat_hw}")
        if ot_grad not in OT_GRADS:
            raise UserError(f"unknown ot_grad {ot_grad!r}; choose one of: {', '.join(OT_GRADS)}")
        self.prompt_learner = PromptLearner(text_encoder, class_names, n_ctx=n_ctx,
                                            init_std=init_std, generator=generator,
                                            targets=targets)
        dev = self.prompt_learner.ctx.device
        self.mapping = MappingNet(text_encoder.width, feat_hw, generator=generator).to(dev)
        # tau of LICO.md; named logit_scale as in CLIP / the released code.
        self.logit_scale = nn.Parameter(torch.tensor(float(tau_init), device=dev),
                                        requires_grad=learn_tau)
        self.feat_hw = int(feat_hw)
        self.alpha, self.beta = float(alpha), float(beta)
        self.ot_grad, self.ot_eps = ot_grad, float(ot_eps)
        # What no loss reaches is frozen, so the optimizer and DDP see only what trains
        # (DDP errors on parameters that get no gradient).
        if self.alpha == 0:
            self.logit_scale.requires_grad_(False)
        if self.beta == 0 or ot_grad == "none":
            self.mapping.requires_grad_(False)
            if self.alpha == 0:
                self.prompt_learner.ctx.requires_grad_(False)
        self.ot_max_iter, self.ot_tol = int(ot_max_iter), float(ot_tol)

    @property
    def text_encoder(self) -> TextEncoder:
        return self.prompt_learner.text_encoder

    @property
    def num_classes(self) -> int:
        return len(self.prompt_learner.class_names)

    def extra_repr(self) -> str:
        return (f"classes={self.num_classes}, n_ctx={self.prompt_learner.n_ctx}, "
                f"feat_hw={self.feat_hw}, alpha={self.alpha}, beta={self.beta}, "
                f"targets={self.prompt_learner.targets!r}, ot_grad={self.ot_grad!r}, text_encoder={self.text_encoder.name!r}")

    def losses(self, feats: torch.Tensor, labels: torch.Tensor,
               gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
        """feats: F [B, C, h, w] float; labels: [B] int64 -> {"mm": scalar, "ot": scalar}.

        The text features are computed once per call, for the classes present in the batch
        (the same rows as indexing the full T: [K, M, D] and s: [K, D]), and indexed once:
        MM uses the sentence features ``s[y]``: [B, D], OT uses ``mapping(T[y])``:
        [B, M, h*w]. A loss whose weight is 0 is not computed (0, no graph).

        gather: under data parallelism, a differentiable all-gather along dim 0 (see
        ``lico_bench.distributed.gather_cat``). L_MM compares every pair of images of the batch,
        so it is computed over the gathered global batch (identically on every rank); L_OT
        is a per-image mean and stays local.
        """
        if feats.dim() != 4 or feats.shape[2] * feats.shape[3] != self.feat_hw:
            raise ValueError(f"LicoHead.losses: feats must be [B, C, h, w] with h*w = "
                             f"{self.feat_hw}, got {tuple(feats.shape)}")
        labels = labels.to(self.prompt_learner.ctx.device).long()
        if labels.shape != feats.shape[:1]:
            raise ValueError(f"LicoHead.losses: labels must be [B={feats.shape[0]}], "
                             f"got {tuple(labels.shape)}")
        img = feats.mean(dim=(2, 3))                                     # [B, C]
        all_labels = labels
        if gather is not None:
            img, all_labels = gather(img), gather(labels)                # [B_global, C], [B_global]
        classes, inverse = torch.unique(all_labels, return_inverse=True)
        if classes[0] < 0 or classes[-1] >= self.num_classes:
            raise ValueError(f"LicoHead.losses: labels outside [0, {self.num_classes})")
        t_all, s_all = self.prompt_learner(classes)                     # [U, M, D], [U, D]
        zero = feats.new_zeros((), dtype=torch.float32)
        mm = (manifold_matching_loss(img, s_all[inverse], self.logit_scale)
              if self.alpha != 0 else zero)
        if self.beta == 0:
            return {"mm": mm, "ot": zero}
        t_y = t_all[torch.searchsorted(classes, labels)]                 # [B, M, D], local images
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.ot_grad != "none"):
            txt_maps = self.mapping(t_y)                                 # [B, M, h*w]
            ot = ot_loss(feats, txt_maps, eps=self.ot_eps, max_iter=self.ot_max_iter,
                         tol=self.ot_tol, full_grad=self.ot_grad == "full")
        return {"mm": mm, "ot": ot}

    def combine(self, parts: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``alpha * L_MM + beta * L_OT`` from the dict :meth:`losses` returns."""
        return self.alpha * parts["mm"] + self.beta * parts["ot"]

    def trainable_parameters(self) -> List[nn.Parameter]:
        """Context vectors, mapping net, temperature (if learned); never the text encoder."""
        enc = {id(p) for p in self.text_encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc and p.requires_grad]

    def trainable_state_dict(self) -> Dict[str, torch.Tensor]:
        """What a checkpoint needs: ``state_dict()`` already leaves the encoder out."""
        return self.state_dict()

    def load_trainable_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`trainable_state_dict`; strict about everything but the encoder."""
        self.load_state_dict(state, strict=True)
