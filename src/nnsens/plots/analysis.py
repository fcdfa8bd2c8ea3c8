"""Figures of part V (sensitivity analysis under uncertainty), one section per study."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from nnsens.plots._base import figure

__all__ = ["figure", "np", "plt", "sns"]


# --- P01: causal-fairness bounds under unobserved confounding ---

def p01_bounds(result, *, strength: float | None = None):
    """DE, IE and SE bounds of the unconstrained predictor against Γ (mean over seeds; a row per SCM).

    The band is [mean lower, mean upper]; the dashed line is the mean oracle effect, the dotted one Γ*.
    """
    from nnsens.data.scm import EFFECTS

    s = result.strengths[-1] if strength is None else strength
    j = result.strengths.index(s)
    fig, axes = figure(len(EFFECTS), len(result.scms), width=3.2, height=2.6, squeeze=False, sharex=True)
    gammas = np.asarray(result.gammas)
    for i, kind in enumerate(result.scms):
        for e, name in enumerate(EFFECTS):
            ax = axes[i, e]
            b = result.bounds[i, j, :, :, e, :].mean(0)  # (gamma, 2)
            ax.fill_between(gammas, b[:, 0], b[:, 1], alpha=0.3, label="bounds")
            ax.plot(gammas, b[:, 0], "o-", color="C0", ms=3)
            ax.plot(gammas, b[:, 1], "o-", color="C0", ms=3)
            ax.axhline(result.oracle[i, j, :, e].mean(), color="C3", ls="--", label="oracle")
            ax.axvline(result.gamma_star[j], color="0.4", ls=":", label="Γ*")
            ax.set_title(f"{name} · {kind} · s = {s:g}", fontsize=9)
            if i == len(result.scms) - 1:
                ax.set_xlabel("Γ")
    axes[0, 0].legend(fontsize=7)
    return fig


def p01_fairness(result):
    """Oracle |DE| + |IE| + |SE| and test accuracy of the unconstrained, naive-fair and robust-fair predictors."""
    from nnsens.studies.p01_causal_fairness import FAIR_MODELS

    fig, axes = figure(2, width=3.6)
    x = np.arange(len(FAIR_MODELS))
    for ax, values, label in ((axes[0], result.fair_unfairness, "oracle |DE|+|IE|+|SE|"),
                              (axes[1], 100 * result.fair_accuracy, "test accuracy (%)")):
        sd = values.std(1, ddof=1) if values.shape[1] > 1 else np.zeros(len(x))
        ax.bar(x, values.mean(1), yerr=sd, color=[f"C{k}" for k in range(len(x))], capsize=3)
        ax.set_xticks(x, FAIR_MODELS, fontsize=8)
        ax.set_ylabel(label)
    axes[1].set_ylim(max(0.0, float((100 * result.fair_accuracy).min()) - 10), 100)
    fig.suptitle(f"{result.fair_scm}, s = {result.fair_strength:g}, λ = {result.lam:g}, "
                 f"robust at Γ = {result.robust_gamma:g}", fontsize=9)
    return fig
