"""The built-in metrics behind the registry: insertion, deletion, (energy) pointing game."""
from __future__ import annotations

from .base import Metric, MetricResult, register_metric
from .causal import (BLUR_KERNELS, DEFAULT_BATCH_SIZE, SCORES, SUBSTRATES, auc,
                     causal_curves)
from .pointing import energy_pointing_game, pointing_game
from ..errors import UserError


def _positive_int(name: str, v, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise UserError(f"option {name} must be a positive integer{' or null' if allow_none else ''}, "
                        f"got {v!r}.")


class _Causal(Metric):
    """values = AUC of the curve (:func:`~lico_bench.metrics.causal.auc`); curves returned."""

    mode = ""
    defaults = {"step": None, "substrate": "", "score": "softmax",
                "batch_size": DEFAULT_BATCH_SIZE, "blur_size": 11, "blur_sigma": 5.0,
                "blur_kernel": "rise"}

    def validate(self) -> None:
        o = self.options
        _positive_int("step", o["step"], allow_none=True)
        _positive_int("batch_size", o["batch_size"])
        _positive_int("blur_size", o["blur_size"])
        for key, allowed in (("substrate", SUBSTRATES), ("score", SCORES),
                             ("blur_kernel", BLUR_KERNELS)):
            if o[key] not in allowed:
                raise UserError(f"option {key} of {self.name!r} must be one of "
                                f"{', '.join(allowed)}, got {o[key]!r}.")
        if o["blur_size"] % 2 == 0 or not isinstance(o["blur_sigma"], (int, float)) \
                or not o["blur_sigma"] > 0:
            raise UserError("blur_size must be odd and blur_sigma > 0, got "
                            f"{o['blur_size']} and {o['blur_sigma']!r}.")

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        o = dict(self.options)
        sub = o.pop("substrate")
        curves = causal_curves(model, images, maps, targets, modes=(self.mode,),
                               **{f"{self.mode}_substrate": sub}, **o)[self.mode]
        return MetricResult(auc(curves), curves)


class Insertion(_Causal):
    """Insertion AUC (Petsiuk et al. 2018): higher is better."""

    name = "insertion"
    mode = "insertion"
    higher_is_better = True
    defaults = {**_Causal.defaults, "substrate": "blur"}


class Deletion(_Causal):
    """Deletion AUC (Petsiuk et al. 2018): lower is better."""

    name = "deletion"
    mode = "deletion"
    higher_is_better = False
    defaults = {**_Causal.defaults, "substrate": "zero"}


class PointingGame(Metric):
    """Pointing-game hit per image (1/0, NaN for an empty mask); tolerance None = 15*H/224."""

    name = "pointing_game"
    higher_is_better = True
    needs_masks = True
    defaults = {"tolerance": None}

    def validate(self) -> None:
        t = self.options["tolerance"]
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0):
            raise UserError(f"option tolerance must be a number of pixels >= 0 or null, got {t!r}.")

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        return MetricResult(pointing_game(maps, masks, self.options["tolerance"]), None)


class EnergyPointingGame(Metric):
    """Share of the non-negative saliency inside the mask (NaN: empty mask or all-zero map)."""

    name = "energy_pointing_game"
    higher_is_better = True
    needs_masks = True
    defaults = {}

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        return MetricResult(energy_pointing_game(maps, masks), None)


for _cls in (Insertion, Deletion, PointingGame, EnergyPointingGame):
    register_metric(_cls.name, _cls)
