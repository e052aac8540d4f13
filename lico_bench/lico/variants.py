"""LICO's variants: which parts of the method a ``lico*`` model is trained with.

Each variant differs from the paper's reading (``paper``) in one thing, so a table of
baseline + every variant says which part of LICO does what (LICO.md, "What the OT term
does"). The model names are ``lico_<arch>`` for ``paper`` and ``lico_<variant>_<arch>``
otherwise (``lico_rolled_r18``); all are paired against ``baseline_<arch>`` in the tables.

| variant    | text targets | OT gradient | alpha | beta |
|------------|--------------|-------------|-------|------|
| paper      | tokens       | cost        | 10    | 1    |
| rolled     | rolled       | cost        | 10    | 1    |
| released   | tokens       | none        | 10    | 1    |
| mmonly     | tokens       | (no OT)     | 10    | 0    |
| otonly     | tokens       | cost        | 0     | 1    |

``released`` and ``mmonly`` get the same gradients (CE + alpha * L_MM): ``released``
still computes and logs L_OT, as the authors' code did, but nothing trains from it. They
are kept apart because that equality is itself the claim being checked.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class LicoVariant:
    """The LICO settings a variant fixes (``TrainConfig`` fields of the same names)."""

    name: str
    text_targets: str     # "tokens" (per-token outputs, M = n_ctx + 1) | "rolled"
    ot_grad: str          # "cost" | "full" | "none"
    alpha: float          # weight of L_MM
    beta: float           # weight of L_OT
    summary: str

    def settings(self) -> Dict[str, Any]:
        """The training fields this variant sets: text_targets, ot_grad, alpha, beta."""
        d = asdict(self)
        return {k: d[k] for k in ("text_targets", "ot_grad", "alpha", "beta")}


VARIANTS: Dict[str, LicoVariant] = {v.name: v for v in (
    LicoVariant("paper", "tokens", "cost", 10.0, 1.0,
                "the paper's reading: per-token text targets, OT gradient through the cost"),
    LicoVariant("rolled", "rolled", "cost", 10.0, 1.0,
                "OT targets = pooled sentences of rolled context copies (earlier reading)"),
    LicoVariant("released", "tokens", "none", 10.0, 1.0,
                "the authors' released code: L_OT computed without gradient (CE + alpha*MM)"),
    LicoVariant("mmonly", "tokens", "cost", 10.0, 0.0,
                "manifold matching only (beta = 0)"),
    LicoVariant("otonly", "tokens", "cost", 0.0, 1.0,
                "optimal transport only (alpha = 0)"),
)}


def model_name(variant: str, short: str) -> str:
    """Registry name of ``variant`` on architecture ``short`` (``lico_r18``, ``lico_otonly_r18``)."""
    return f"lico_{short}" if variant == "paper" else f"lico_{variant}_{short}"


def variant_of(cfg_variant: Optional[str]) -> Optional[LicoVariant]:
    """The :class:`LicoVariant` named ``cfg_variant`` (None for a baseline)."""
    return None if cfg_variant is None else VARIANTS[cfg_variant]
