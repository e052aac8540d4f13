"""The built-in metrics behind the registry: insertion, deletion, (energy) pointing game."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from .base import Metric, MetricResult, register_metric
from .causal import (BLUR_KERNELS, DEFAULT_BATCH_SIZE, SCORES, SUBSTRATES, auc,
                     causal_curves, default_step)
from .pointing import energy_pointing_game, pointing_game
from ..errors import UserError
from ..options import Range

PositiveInt = Annotated[int, Range(1)]


class _Causal(Metric):
    """values = AUC of the curve (:func:`~lico_bench.metrics.causal.auc`); curves returned."""

    mode = ""
    defaults = {"step": None, "substrate": "", "score": "softmax",
                "batch_size": DEFAULT_BATCH_SIZE, "blur_size": 11, "blur_sigma": 5.0,
                "blur_kernel": "rise"}
    option_types = {"step": Optional[PositiveInt], "substrate": Literal[SUBSTRATES],
                    "score": Literal[SCORES], "batch_size": PositiveInt,
                    "blur_size": PositiveInt, "blur_sigma": Annotated[float, Range(0, lo_open=True)],
                    "blur_kernel": Literal[BLUR_KERNELS]}

    def validate(self) -> None:
        if self.options["blur_size"] % 2 == 0:  # a centred kernel; the type cannot say "odd"
            raise UserError(f"option blur_size of metric {self.name!r} must be odd, got "
                            f"{self.options['blur_size']}.")

    def describe(self, image_size):
        """The manifest's entry; an automatic step is recorded as ``resolved_step``, the
        pixels per step images of ``image_size = (H, W)`` get (causal.default_step)."""
        out = super().describe(image_size)
        if self.options["step"] is None:
            out["resolved_step"] = default_step(*image_size)
        return out

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        o = dict(self.options)
        sub = o.pop("substrate")
        curves = causal_curves(model, images, maps, targets, modes=(self.mode,),
                               **{f"{self.mode}_substrate": sub}, **o)[self.mode]
        return MetricResult(auc(curves), curves)


class Insertion(_Causal):
    """Insertion AUC (Petsiuk et al. 2018): higher is better.

    Pixels are inserted into a blurred copy of the image in the order of the map, ``step``
    at a time; the value is the AUC of the target class's softmax along the way.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> from lico_bench.metrics import create_metric
        >>> ins = create_metric("insertion", step=64)         # or Insertion(step=64)
        >>> res = ins(model, images, maps, torch.tensor([0, 1]))
        >>> res.values.shape, res.curves.shape                 # AUC per image, 1024/64 + 1 points
        (torch.Size([2]), torch.Size([2, 17]))
        >>> bool(((res.values >= 0) & (res.values <= 1)).all())
        True
    """

    name = "insertion"
    mode = "insertion"
    higher_is_better = True
    defaults = {**_Causal.defaults, "substrate": "blur"}


class Deletion(_Causal):
    """Deletion AUC (Petsiuk et al. 2018): lower is better.

    Pixels are set to zero (the mean colour, in normalised space) in the order of the map.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
        >>> images = torch.randn(2, 3, 32, 32)              # normalised as the model expects
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> from lico_bench.metrics import create_metric
        >>> dele = create_metric("deletion", step=64, score="logit")
        >>> dele(model, images, maps).values.shape            # targets None: predicted class
        torch.Size([2])
    """

    name = "deletion"
    mode = "deletion"
    higher_is_better = False
    defaults = {**_Causal.defaults, "substrate": "zero"}


class PointingGame(Metric):
    """Pointing-game hit per image (1/0, NaN for an empty mask); tolerance None = 15*H/224.

    Example (the model is not needed: pass None)::

        >>> import torch
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> masks = torch.zeros(2, 32, 32, dtype=torch.bool)              # [B, H, W] object masks
        >>> masks[0, 4:20, 4:20] = True; masks[1, 20:30, 20:30] = True
        >>> from lico_bench.metrics import create_metric
        >>> create_metric("pointing_game", tolerance=0)(None, None, maps, masks=masks).values
        tensor([1., 0.])
    """

    name = "pointing_game"
    higher_is_better = True
    needs_masks = True
    defaults = {"tolerance": None}
    option_types = {"tolerance": Optional[Annotated[float, Range(0)]]}  # pixels

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        return MetricResult(pointing_game(maps, masks, self.options["tolerance"]), None)


class EnergyPointingGame(Metric):
    """Share of the non-negative saliency inside the mask (NaN: empty mask or all-zero map).

    Example::

        >>> import torch
        >>> maps = torch.zeros(2, 32, 32); maps[:, 8:16, 8:16] = 1.0   # [B, H, W] saliency
        >>> masks = torch.zeros(2, 32, 32, dtype=torch.bool)              # [B, H, W] object masks
        >>> masks[0, 4:20, 4:20] = True; masks[1, 20:30, 20:30] = True
        >>> from lico_bench.metrics import create_metric
        >>> create_metric("energy_pointing_game")(None, None, maps, masks=masks).values
        tensor([1., 0.])
    """

    name = "energy_pointing_game"
    higher_is_better = True
    needs_masks = True
    defaults = {}

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        return MetricResult(energy_pointing_game(maps, masks), None)


for _cls in (Insertion, Deletion, PointingGame, EnergyPointingGame):
    register_metric(_cls.name, _cls)
