"""Pictures of patching results as PNG bytes (matplotlib, headless): heatmaps on a diverging,
colour-blind-safe palette centred at 0 (ColorBrewer RdBu, as the lab's plotly "RdBu_r"), and bars."""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CMAP = "RdBu_r"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def heatmap(matrix: np.ndarray, title: str, xlabel: str, ylabel: str,
            xticklabels: Sequence[str] | None = None, vmax: float | None = None,
            annotate: bool = True, yticklabels: Sequence[str] | None = None) -> bytes:
    """A [rows x cols] heatmap, symmetric colour scale around 0, values written in the cells."""
    matrix = np.asarray(matrix, dtype=float)
    vmax = vmax or max(float(np.nanmax(np.abs(matrix))), 1e-9)
    width = min(2 + 0.55 * matrix.shape[1], 14)
    fig, ax = plt.subplots(figsize=(width, 1.4 + 0.45 * matrix.shape[0]))
    im = ax.imshow(matrix, cmap=CMAP, vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_xticks(range(matrix.shape[1]))
    if xticklabels is not None and len(xticklabels) != matrix.shape[1]:
        xticklabels = None  # labels that do not fit the matrix would mislabel it: show indices
    if yticklabels is not None and len(yticklabels) != matrix.shape[0]:
        yticklabels = None
    if xticklabels is not None:
        ax.set_xticklabels(xticklabels, rotation=60 if len(xticklabels) > 4 else 0,
                           ha="right" if len(xticklabels) > 4 else "center", fontsize=8)
    if yticklabels is not None:
        ax.set_yticklabels(yticklabels, fontsize=8)
    if annotate and matrix.size <= 400:
        for (r, c), v in np.ndenumerate(matrix):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * vmax else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _png(fig)


def bars(values: Sequence[float], labels: Sequence[str], title: str, ylabel: str) -> bytes:
    fig, ax = plt.subplots(figsize=(max(3, 0.6 * len(values) + 1.5), 2.8))
    colours = ["#b2182b" if v > 0 else "#2166ac" for v in values]
    ax.bar(range(len(values)), values, color=colours)
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    return _png(fig)
