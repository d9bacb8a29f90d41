"""Plots people would rather look at than tables: error CDFs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xloc.eval.metrics import error_cdf
from xloc.figures import plt, save_figure

__all__ = ["plot_error_cdfs"]


def plot_error_cdfs(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    path: Path,
    *,
    title: str,
    xmax_m: float | None = None,
    markers_m: Sequence[float] = (),
) -> Path:
    """One CDF panel per key of ``panels`` (e.g. per k), one curve per method; saved as PNG at ``path``."""
    n = len(panels)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (panel, curves) in zip(axes.ravel(), panels.items(), strict=False):
        for method, errors in curves.items():
            x, p = error_cdf(errors)
            ax.plot(x, p, label=method)
        for m in markers_m:
            ax.axvline(m, color="grey", lw=0.8, ls=":")
        ax.set_title(panel)
        ax.set_xlabel("error [m]")
        ax.set_ylabel("P(error <= x)")
        ax.grid(alpha=0.3)
        if xmax_m is not None:
            ax.set_xlim(0, xmax_m)
        ax.legend(fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return save_figure(fig, path)
