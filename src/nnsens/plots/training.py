"""Figures of part IV (training sensitivity), one section per study."""

from __future__ import annotations

import numpy as np

from nnsens.plots._base import figure

# --- P21: Calibrated Chaos (variance between training runs) ---

_P21_FAMILIES = {"i": "(i) all\nseeds", "ii": "(ii) model\nseed", "iii": "(iii) order\nseed", "iv": "(iv) poke\nonly"}


def p21_variance(result):
    """Left: histogram of family (i)'s test accuracies with the independent-errors prediction N(mean, Var_pred).
    Right: run accuracies on test halves A and B (near-zero correlation when runs differ only by test-set luck)."""

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

    fig, (ax1, ax2) = figure(2, width=4.6)
    fams = list(_P21_FAMILIES)
    std = [100 * result.std[f] for f in fams]
    ax1.bar(range(4), std, color=[f"C{k}" for k in range(4)])
    ax1.axhspan(0.65 * std[0], 1.35 * std[0], color="grey", alpha=0.2, label="±35 % of (i)")
    ax1.axhline(100 * np.sqrt(result.ratio.var_pred), color="C3", ls="--", label="independent errors")
    ax1.set_xticks(range(4), [_P21_FAMILIES[f] for f in fams], fontsize="small")
    ax1.set(ylabel="std of test accuracy (points)", title="spread by source of randomness")
    ax1.legend(fontsize="small")
    churns = [100 * result.pairwise_churn[f] for f in fams] + [100 * float(np.mean(result.poke_churn))]
    ax2.bar(range(5), churns, color=[f"C{k}" for k in range(4)] + ["C4"])
    ax2.axhline(50 * result.pairwise_churn["i"], color="k", ls=":", label="50 % of (i)")
    ax2.set_xticks(range(5), [_P21_FAMILIES[f] for f in fams] + ["poked vs\nunpoked"], fontsize="small")
    ax2.set(ylabel="churn (% of test examples)", title="disagreement between runs")
    ax2.legend(fontsize="small")
    return fig
