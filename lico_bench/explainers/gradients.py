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

from typing import Annotated, Any, Dict

from ..options import Range, typed_options
from .adapters import CaptumAdapter


class _FixedCaptum(CaptumAdapter):
    """A captum method with its settings fixed: ``options`` holds only the options of the
    subclass's ``__init__``; :meth:`resolved_options` adds the captum class and every
    keyword passed to its ``attribute`` (baseline, steps), which the manifest records."""

    def _public(self, **options: Any) -> None:
        self.options = dict(options)

    def resolved_options(self, model, image_size) -> Dict[str, Any]:
        kw = self.attribute_kwargs(1, *image_size)
        kw.pop("perturbations_per_eval", None)
        return {**self.options, "captum": self.method, "reduce": self.reduce,
                "attribute": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}


class GradientSaliency(_FixedCaptum):
    """``saliency``: |gradient of the target logit| summed over channels (module docstring).

    Options: ``batch_size`` (images per backward pass, as :class:`CaptumAdapter`).

    Example (a toy classifier; any eval-mode model and normalised images)::

        >>> import torch
        >>> from lico_bench.explainers import create_explainer
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.AdaptiveMaxPool2d(1),
        ...                           torch.nn.Flatten()).eval()
        >>> maps = create_explainer("saliency")(net, torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))
        >>> maps.shape, bool((maps >= 0).all())            # |gradient|: never negative
        (torch.Size([2, 16, 16]), True)
    """

    name = "saliency"

    @typed_options
    def __init__(self, batch_size: Annotated[int, Range(1)] = 64):
        super().__init__(method="Saliency", reduce="sum", batch_size=batch_size,
                         attribute={"abs": True})
        self.name = "saliency"
        self._public(batch_size=batch_size)


class InputXGradient(_FixedCaptum):
    """``inputxgrad``: input times the gradient of the target logit, signed, summed over
    channels (module docstring). Options: ``batch_size``.

    Example (a linear model: the map is x * w of the target, summed over channels)::

        >>> import torch
        >>> from lico_bench.explainers import create_explainer
        >>> lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)).eval()
        >>> x = torch.randn(1, 3, 4, 4)
        >>> m = create_explainer("inputxgrad")(lin, x, torch.tensor([1]))
        >>> torch.equal(m, (x * lin[1].weight[1].view(1, 3, 4, 4)).sum(1))   # exactly
        True
    """

    name = "inputxgrad"

    @typed_options
    def __init__(self, batch_size: Annotated[int, Range(1)] = 64):
        super().__init__(method="InputXGradient", reduce="sum", batch_size=batch_size)
        self.name = "inputxgrad"
        self._public(batch_size=batch_size)


class IntegratedGradients(_FixedCaptum):
    """``intgrad``: integrated gradients from the all-zero (dataset-mean) baseline with
    ``n_steps`` points of the Gauss-Legendre rule, signed, summed over channels (module
    docstring). Options: ``n_steps`` (default 50), ``batch_size`` (interpolated images per
    forward, captum's ``internal_batch_size``).

    Example (8 steps for speed; the default is 50)::

        >>> import torch
        >>> from lico_bench.explainers import create_explainer
        >>> ig = create_explainer("intgrad", n_steps=8)
        >>> ig.resolved_options(None, (32, 32))["attribute"]["baselines"]   # the mean colour
        0.0
        >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
        >>> ig(cnn, torch.randn(3, 3, 20, 20), torch.tensor([0, 5, 2])).shape
        torch.Size([3, 20, 20])
    """

    name = "intgrad"

    @typed_options
    def __init__(self, n_steps: Annotated[int, Range(1)] = 50,
                 batch_size: Annotated[int, Range(1)] = 64):
        super().__init__(method="IntegratedGradients", reduce="sum", batch_size=batch_size,
                         attribute={"n_steps": n_steps, "method": "gausslegendre",
                                    "baselines": 0.0})
        self.name = "intgrad"
        self._public(n_steps=n_steps, batch_size=batch_size)
