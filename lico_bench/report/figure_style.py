"""The look shared by every figure: colours (Okabe-Ito, colour-blind safe), the matplotlib
style (7 pt text, single/double column widths), model names and groups, and saving."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..io import atomic_path
from .common import pair_models

BASELINE_COLOUR = "#0072B2"  # Okabe-Ito blue
LICO_COLOUR = "#D55E00"      # Okabe-Ito vermillion
OTHER_COLOURS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MAP_CMAP = "viridis"
MAP_ALPHA = 0.55
POINT_COLOUR = "#FF2BD6"     # pointing-game marker: stands out against viridis
SINGLE_COLUMN_IN = 3.3
DOUBLE_COLUMN_IN = 7.0
PNG_DPI = 200

STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "figure.titlesize": 8,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.1,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable/searchable in the PDF
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def model_groups(models: Sequence[str], manifest: Optional[dict] = None) -> List[Tuple[str, List[str]]]:
    """Group models for side-by-side figures: [(label, [baseline, lico]), ...].

    Every pair of :func:`~lico_bench.report.tables.pair_models` (the tables' pairing) forms a
    group labelled by the LICO model's name without ``lico_`` (a baseline shared by several
    LICO variants is in each of their groups); the other models form one group labelled by
    their names (or nothing when there are none).
    """
    models = list(dict.fromkeys(models))
    groups, used = [], set()
    for m, base in pair_models(models, manifest):
        groups.append((m[5:] if m.startswith("lico_") else m, [base, m]))
        used.update((base, m))
    rest = [m for m in models if m not in used]
    rest.sort(key=lambda m: (not m.startswith("baseline_"), m))
    if rest:
        groups.append(("_".join(rest) if groups else "", rest))
    return groups


def _colours(models: Sequence[str]) -> Dict[str, str]:
    out, k = {}, 0
    n_base = sum(m.startswith("baseline_") for m in models)
    n_lico = sum(m.startswith("lico_") for m in models)
    for m in models:
        if m.startswith("baseline_") and n_base == 1:
            out[m] = BASELINE_COLOUR
        elif m.startswith("lico_") and n_lico == 1:
            out[m] = LICO_COLOUR
        else:
            out[m] = OTHER_COLOURS[k % len(OTHER_COLOURS)]
            k += 1
    return out


def _short_names(models: Sequence[str]) -> Dict[str, str]:
    """"baseline"/"LICO" for a pair (the pair is named elsewhere), else the pretty name."""
    if _pair_label(models):
        return {m: "baseline" if m.startswith("baseline_") else "LICO" for m in models}
    return {m: _pretty_model(m) for m in models}


def _pair_label(models: Sequence[str]) -> str:
    if (len(models) == 2 and models[0].startswith("baseline_") and models[1].startswith("lico_")
            and models[0][9:] == models[1][5:]):
        return f" ({models[0][9:]})"
    return ""


def _pretty_model(m: str) -> str:
    if m.startswith("baseline_"):
        return f"baseline ({m[9:]})"
    if m.startswith("lico_"):
        return f"LICO ({m[5:]})"
    return m


def _save(fig, out: Path, name: str, formats: Sequence[str]) -> List[Path]:
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=PNG_DPI)
        paths.append(path)
    _plt().close(fig)
    return paths



def _heatmap_frame(ax, model: str) -> None:
    """A heat map panel's frame: the model as title, no spines, no tick marks."""
    ax.set_title(_pretty_model(model))
    for s in ax.spines.values():
        s.set_visible(False)
    ax.tick_params(length=0)
