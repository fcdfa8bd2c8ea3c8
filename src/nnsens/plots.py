"""Shared figures. One style for the whole book; each study adds its figure functions here, in its own section."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.0, height: float = 3.2, **kw):
    """A figure with the book's size conventions; returns ``(fig, axes)``."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kw)


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


# --- P21: Calibrated Chaos (variance between training runs) ---

_P21_FAMILIES = {"i": "(i) all\nseeds", "ii": "(ii) model\nseed", "iii": "(iii) order\nseed", "iv": "(iv) poke\nonly"}


def p21_variance(result):
    """Left: histogram of family (i)'s test accuracies with the independent-errors prediction N(mean, Var_pred).
    Right: run accuracies on test halves A and B (near-zero correlation when runs differ only by test-set luck)."""
    import numpy as np

    fig, (ax1, ax2) = figure(2, width=4.6)
    acc = 100 * np.asarray(result.acc["i"])
    ax1.hist(acc, bins=min(20, max(5, len(acc) // 4)), density=True, alpha=0.6, label="runs of family (i)")
    mu, sd = acc.mean(), 100 * float(np.sqrt(result.ratio.var_pred))
    grid = np.linspace(min(acc.min(), mu - 4 * sd), max(acc.max(), mu + 4 * sd), 200)
    ax1.plot(grid, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), color="C3",
             label="independent errors")
    ax1.set(xlabel="test accuracy (%)", ylabel="density",
            title=f"Var_emp / Var_pred = {result.ratio.ratio:.2f}")
    ax1.legend(fontsize="small")
    a, b = 100 * np.asarray(result.split.acc_a), 100 * np.asarray(result.split.acc_b)
    ax2.scatter(a, b, s=14, alpha=0.7)
    ax2.set(xlabel="accuracy on half A (%)", ylabel="accuracy on half B (%)",
            title=f"split-half Pearson r = {result.split.r:.2f}")
    return fig


def p21_chaos(result):
    """Left: across-run std of test accuracy per family, with the ±35 % band around family (i).
    Right: churn (share of test examples predicted differently) between pairs of runs in each family and between
    each poked run and its unpoked twin, with the 50 %-of-family-(i) line."""
    import numpy as np

    fig, (ax1, ax2) = figure(2, width=4.6)
    fams = list(_P21_FAMILIES)
    std = [100 * result.std[f] for f in fams]
    ax1.bar(range(4), std, color=[f"C{k}" for k in range(4)])
    ax1.axhspan(0.65 * std[0], 1.35 * std[0], color="grey", alpha=0.2, label="±35 % of (i)")
    ax1.axhline(100 * np.sqrt(result.ratio.var_pred), color="C3", ls="--", label="independent errors")
    ax1.set_xticks(range(4), [_P21_FAMILIES[f] for f in fams], fontsize="small")
    ax1.set(ylabel="std of test accuracy (%)", title="spread by source of randomness")
    ax1.legend(fontsize="small")
    churns = [100 * result.pairwise_churn[f] for f in fams] + [100 * float(np.mean(result.poke_churn))]
    ax2.bar(range(5), churns, color=[f"C{k}" for k in range(4)] + ["C4"])
    ax2.axhline(50 * result.pairwise_churn["i"], color="k", ls=":", label="50 % of (i)")
    ax2.set_xticks(range(5), [_P21_FAMILIES[f] for f in fams] + ["poked vs\nunpoked"], fontsize="small")
    ax2.set(ylabel="churn (% of test examples)", title="disagreement between runs")
    ax2.legend(fontsize="small")
    return fig
