"""LICO's peers as model families: ``guided_<arch>``, ``rrr_<arch>``, ``sgt_<arch>``.

Each trains the same classifier as ``baseline_<arch>`` with one extra loss term
(:mod:`.losses`), and is paired against ``baseline_<arch>`` in the tables, as LICO is.

| family   | paper                                            | extra term                                | masks |
|----------|--------------------------------------------------|-------------------------------------------|-------|
| guided   | Rao, Böhle, Parchami-Araghi, Schiele, ICCV 2023  | lambda * sum_i Energy(Grad-CAM_i, mask_i) | yes   |
| rrr      | Ross, Hughes, Doshi-Velez, IJCAI 2017            | lambda * mean_i ||(1-mask_i) * dsum_k log p_k/dx||^2 | yes |
| sgt      | Ismail, Corrada Bravo, Feizi, NeurIPS 2021       | lambda * KL(p(x) || p(x masked))          | no    |

``guided`` and ``rrr`` are positive controls (trained on the object's mask); ``sgt`` is
annotation-free, as LICO is. Their hyper-parameters are ``TrainConfig`` fields
(``guided_lambda``, ``guided_share``, ``rrr_lambda``, ``sgt_k``, ``sgt_lambda``,
``sgt_rank``) whose defaults are the papers' (see there), recorded in the checkpoint's
``ModelCfg.guidance_settings``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class GuidanceFamily:
    """A peer training method: its name (the model-name prefix), whether it needs object
    masks, and the ``TrainConfig`` fields that hold its hyper-parameters."""

    name: str
    needs_masks: bool
    fields: tuple
    summary: str


FAMILIES: Dict[str, GuidanceFamily] = {f.name: f for f in (
    GuidanceFamily("guided", True, ("guided_lambda", "guided_share"),
                   "model guidance (Rao et al. ICCV 2023): CE + lambda * Energy loss of the "
                   "true class's Grad-CAM inside the object mask (positive control, masks)"),
    GuidanceFamily("rrr", True, ("rrr_lambda",),
                   "right for the right reasons (Ross et al. IJCAI 2017): CE + lambda * "
                   "input gradients outside the object mask, squared (positive control, masks)"),
    GuidanceFamily("sgt", False, ("sgt_k", "sgt_lambda", "sgt_rank"),
                   "saliency-guided training (Ismail et al. NeurIPS 2021): CE + lambda * "
                   "KL(original || k % lowest-gradient pixels randomised); no masks"),
)}


def family_of(model: str) -> Optional[str]:
    """The peer family of a model name (``"rrr"`` for ``rrr_r18``), None for any other."""
    prefix = model.split("_", 1)[0]
    return prefix if prefix in FAMILIES and "_" in model else None


def model_name(family: str, short: str) -> str:
    """Registry name of ``family`` on architecture ``short`` (``guided_r18``)."""
    return f"{family}_{short}"
