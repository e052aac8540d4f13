"""The input-gradient methods, by name: ``saliency``, ``inputxgrad``, ``intgrad``.

They are captum's ``Saliency``, ``InputXGradient`` and ``IntegratedGradients`` through
:class:`~lico_bench.explainers.adapters.CaptumAdapter` (``captum:<Name>`` reaches the same
classes), with their settings fixed here and written into the run manifest, so that a grid
names them as it names Grad-CAM. They are the maps that right-for-the-right-reasons
training (``rrr_<arch>``) and saliency-guided training (``sgt_<arch>``) act on.

* ``saliency`` (Simonyan, Vedaldi, Zisserman, ICLR workshop 2014, Sec. 3.1, Eq. 1 and the
  map ``M_ij = max_c |w_h(i,j,c)|``): ``|d z_c / d x|``; here summed over the three
  channels (the adapter's channel rule) instead of their maximum.
* ``inputxgrad`` (Shrikumar et al. 2016; Ancona et al., ICLR 2018, Sec. 2.2):
  ``x * d z_c / d x``, signed, summed over channels.
* ``intgrad`` (Sundararajan, Taly, Yan, ICML 2017, Eq. 1; the Riemann/Gauss-Legendre
  approximation of Sec. 3, Eq. 3): ``(x - x') * integral_0^1 d z_c(x' + a (x - x')) / d x da``,
  signed, summed over channels; baseline ``x'`` = 0 in normalised space, i.e. the
  dataset's mean colour, ``n_steps`` = 50 points of captum's ``gausslegendre`` rule
  (captum's default; the paper: 20 to 300 steps bring the completeness gap within 5 %).

Maps are raw, at input resolution, float32 ``[B, H, W]``, like every explainer's.
"""
from __future__ import annotations

from typing import Annotated

from ..options import Range, typed_options
from .adapters import CaptumAdapter


class GradientSaliency(CaptumAdapter):
    """``saliency``: |gradient of the target logit| summed over channels (module docstring).

    Options: ``batch_size`` (images per backward pass, as :class:`CaptumAdapter`).
    """

    name = "saliency"

    @typed_options
    def __init__(self, batch_size: Annotated[int, Range(1)] = 64):
        super().__init__(method="Saliency", reduce="sum", batch_size=batch_size,
                         attribute={"abs": True})
        self.name = "saliency"


class InputXGradient(CaptumAdapter):
    """``inputxgrad``: input times the gradient of the target logit, signed, summed over
    channels (module docstring). Options: ``batch_size``."""

    name = "inputxgrad"

    @typed_options
    def __init__(self, batch_size: Annotated[int, Range(1)] = 64):
        super().__init__(method="InputXGradient", reduce="sum", batch_size=batch_size)
        self.name = "inputxgrad"


class IntegratedGradients(CaptumAdapter):
    """``intgrad``: integrated gradients from the all-zero (dataset-mean) baseline with
    ``n_steps`` points of the Gauss-Legendre rule, signed, summed over channels (module
    docstring). Options: ``n_steps`` (default 50), ``batch_size`` (interpolated images per
    forward, captum's ``internal_batch_size``)."""

    name = "intgrad"

    @typed_options
    def __init__(self, n_steps: Annotated[int, Range(1)] = 50,
                 batch_size: Annotated[int, Range(1)] = 64):
        super().__init__(method="IntegratedGradients", reduce="sum", batch_size=batch_size,
                         attribute={"n_steps": n_steps, "method": "gausslegendre",
                                    "baselines": 0.0})
        self.name = "intgrad"
