"""Saliency metrics: causal (insertion, deletion), ROAD, pointing game, model-parameter
randomisation, Quantus adapters.

Two layers: pure kernels on tensors (:func:`insertion_curve`, :func:`deletion_curve`,
:func:`auc`, :func:`road_curves`, :func:`noisy_linear_impute`, :func:`pointing_game`,
:func:`energy_pointing_game`, :func:`spearman`, :func:`ssim`, ...) and the uniform
:class:`Metric` interface the runner uses (:func:`create_metric`, :func:`list_metrics`,
:func:`register_metric`; see :mod:`lico_bench.metrics.base`). ``quantus:<Name>`` adapters
import Quantus only when created.
"""
from __future__ import annotations

from .base import Metric, MetricResult, create_metric, list_metrics, overall, register_metric
from .causal import (auc, causal_curves, default_step, deletion_curve, gaussian_blur,
                     gaussian_kernel1d, insertion_curve, num_steps, pixel_order, pixel_rank,
                     predict)
from .pointing import (default_tolerance, energy_pointing_game, pointing_accuracy,
                       pointing_game, pointing_points)
from .randomisation import model_stages, randomisation_similarities
from .similarity import average_ranks, spearman, ssim
from .road import (linear_impute, noisy_linear_impute, removal_masks, road_curves,
                   trapezoid_auc)
from . import builtin  # noqa: F401  (registers the built-in metrics)
from .parts import PartScenes, masked_spearman, part_energy, part_importance, top_part_hit  # noqa: E402
from . import quantus_adapters  # noqa: F401  (registers quantus:<Name>, imports quantus lazily)
from .grid import grid_score  # noqa: E402  (registers grid_score)
from .agreement import seed_agreement  # noqa: E402

__all__ = ["Metric", "MetricResult", "PartScenes", "auc", "causal_curves", "create_metric", "default_step",
           "default_tolerance", "deletion_curve", "energy_pointing_game", "gaussian_blur",
           "gaussian_kernel1d", "insertion_curve", "list_metrics", "num_steps", "overall",
           "pixel_order", "pixel_rank", "pointing_accuracy", "pointing_game",
           "pointing_points", "predict", "register_metric", "linear_impute", "masked_spearman",
           "part_energy", "part_importance", "top_part_hit", "noisy_linear_impute",
           "removal_masks", "road_curves", "trapezoid_auc", "average_ranks", "model_stages",
           "randomisation_similarities", "spearman", "ssim", "grid_score", "seed_agreement"]
