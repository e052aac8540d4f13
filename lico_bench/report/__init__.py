"""Tables and figures from result files only (no model, no GPU)."""
from .figures import build_figures
from .stats import bootstrap_ci, hierarchical_bootstrap_ci, wilcoxon_p
from .tables import build_report, compute_summary, load_manifest, load_rows

__all__ = ["bootstrap_ci", "build_figures", "build_report", "compute_summary", "hierarchical_bootstrap_ci",
           "load_manifest", "load_rows", "wilcoxon_p"]
