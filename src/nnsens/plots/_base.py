"""The book's one figure style: seaborn theme, figure sizes, the sweep figure. Part modules build on these."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.0, height: float = 3.2, **kw):
    """A figure with the book's size conventions; returns ``(fig, axes)``."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kw)


def image_axes(axes) -> None:
    """Strip ticks and grid from every axis of ``axes`` (an array of axes showing images or maps)."""
    for ax in getattr(axes, "flat", [axes]):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)


def sweep_curves(tidy, *, x: str, metrics: list[str], hue: str | None = None, ncols: int = 3):
    """Each metric against the swept parameter ``x``: mean over seeds with a band of one standard deviation.

    ``tidy`` has one row per (run, metric) with columns ``metric``, ``value``, ``x`` and ``hue``.
    """
    import math

    ncols = max(1, min(ncols, len(metrics)))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = figure(ncols, nrows, squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        data = tidy[tidy["metric"] == metric]
        sns.lineplot(data=data, x=x, y="value", hue=hue, errorbar="sd", marker="o", ax=ax,
                     palette="colorblind" if hue else None)
        ax.set_title(metric, fontsize=10)
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    return fig
