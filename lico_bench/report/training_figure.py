"""The ``training`` figure: loss terms and accuracy per epoch from the training logs the
runner copied into the results directory (``logs/``)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict

import numpy as np

from .figure_files import read_log
from .figure_style import DOUBLE_COLUMN_IN, _colours, _plt, _pretty_model


def plot_training(logs: Dict[str, Path]):
    """Per epoch: CE loss; LICO's MM and OT terms (log scale); train/test accuracy."""
    plt = _plt()
    data = {}
    for key, path in logs.items():
        try:
            d = read_log(path)
        except (OSError, csv.Error, UnicodeDecodeError):
            continue
        if "epoch" in d and len(d["epoch"]):
            data[key] = d
    if not data:
        return None
    models = list(dict.fromkeys(k.split("@")[0] for k in data))
    col = _colours(models)
    has_lico_terms = any(np.isfinite(d.get(t, np.array([np.nan]))).any()
                         for d in data.values() for t in ("mm", "ot"))
    panels = ["ce"] + (["lico"] if has_lico_terms else []) + ["acc"]
    width = DOUBLE_COLUMN_IN if len(panels) == 3 else 4.8
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 1.9), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    seen = set()
    for key, d in data.items():
        model = key.split("@")[0]
        e = d["epoch"]
        mk = dict(marker="o", markersize=2.2) if len(e) <= 15 else {}
        first = model not in seen
        seen.add(model)
        lab = _pretty_model(model)
        if "ce" in d or "loss" in d:
            y = d.get("ce", d.get("loss"))
            axes["ce"].plot(e, y, color=col[model], label=lab if first else None, **mk)
        if "lico" in axes:
            for term, ls in (("mm", "--"), ("ot", ":")):
                y = d.get(term)
                if y is not None and np.isfinite(y).any():
                    axes["lico"].plot(e, y, color=col[model], linestyle=ls,
                                      label=f"{lab} {term.upper()}" if first else None, **mk)
        for term, ls in (("test_acc", "-"), ("train_acc", "--")):
            y = d.get(term)
            if y is not None and np.isfinite(y).any():
                axes["acc"].plot(e, 100 * y, color=col[model], linestyle=ls,
                                 label=f"{lab} {term.split('_')[0]}" if first else None, **mk)
    axes["ce"].set_title("cross-entropy loss")
    axes["ce"].set_ylabel("loss")
    if "lico" in axes:
        axes["lico"].set_title("LICO terms: MM (--), OT (··)")
        if all((np.asarray(l.get_ydata(), float)[np.isfinite(l.get_ydata())] > 0).all()
               for l in axes["lico"].get_lines()):
            axes["lico"].set_yscale("log")
    axes["acc"].set_title("accuracy (test —, train --)")
    axes["acc"].set_ylabel("%")
    for ax in axes.values():
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_lines():
            ax.legend(handlelength=1.6, fontsize=5)
    fig.suptitle("Training curves (log.csv of each checkpoint)")
    fig.tight_layout()
    return fig
