"""lico-bench: does LICO make saliency maps better? Train, explain, score, report."""
from __future__ import annotations

__version__ = "0.1.0"

from .data import create_dataset, list_datasets  # noqa: E402
from .errors import UserError  # noqa: E402
from .models import ModelCfg, create_model, list_models  # noqa: E402

__all__ = ["ModelCfg", "UserError", "__version__", "create_dataset", "create_model",
           "list_datasets", "list_models"]
