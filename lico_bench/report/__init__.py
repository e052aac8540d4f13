"""Tables and figures from result files only (no model, no GPU)."""
from .figures import build_figures
from .stats import (bootstrap_ci, crossed_bootstrap_ci, crossed_mean, holm, paired_wilcoxon_p,
                    verdict, wilcoxon_p)
from .methods import build_method_report, compute_method_summary
from .tables import build_report, compute_summary, load_manifest, load_rows, pair_models

__all__ = ["bootstrap_ci", "build_figures", "build_method_report", "build_report", "compute_method_summary", "compute_summary", "crossed_bootstrap_ci",
           "crossed_mean", "holm", "load_manifest", "load_rows", "pair_models", "paired_wilcoxon_p",
           "verdict", "wilcoxon_p"]
