"""Figures of part V (sensitivity analysis under uncertainty), one section per study."""

from __future__ import annotations

import numpy as np
import seaborn as sns

from nnsens.plots._base import figure

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


# --- P04: NeuralCSA bounds against the closed-form MSM bounds ---

def p04_bounds(result):
    """E[Y(a) | x] bounds per arm: NeuralCSA under the MSM (markers) against the sharp closed form (lines), each Γ."""
    fig, axes = figure(2, width=3.8, sharey=True)
    x = result.x_grid
    for arm, ax in enumerate(axes):
        for k, g in enumerate(result.gammas):
            c = f"C{k}"
            ref_lo, ref_hi = result.ref_lower[g].mean(0)[:, arm], result.ref_upper[g].mean(0)[:, arm]
            ax.fill_between(x, ref_lo, ref_hi, color=c, alpha=0.12)
            ax.plot(x, ref_lo, color=c, lw=1.2, label=f"closed form, Γ = {g:g}")
            ax.plot(x, ref_hi, color=c, lw=1.2)
            s = ("msm", g)
            ax.plot(x, result.lower[s].mean(0)[:, arm], "o", color=c, ms=3, label=f"NeuralCSA, Γ = {g:g}")
            ax.plot(x, result.upper[s].mean(0)[:, arm], "o", color=c, ms=3)
        ax.set_title(f"arm a = {arm}", fontsize=10)
        ax.set_xlabel("x")
    axes[0].set_ylabel("bounds on E[Y(a) | x] (std. units)")
    axes[1].legend(fontsize=7, loc="best")
    return fig


def p04_cate(result):
    """True CATE against the CATE intervals of each sensitivity model at its oracle and at 1.25 × the oracle."""
    from nnsens.studies.p04_neural_csa import ORACLE_FACTOR

    stars = {"msm": result.gamma_star, "kl": result.eta_star}
    kinds = [k for k in ("msm", "kl") if (k, stars[k]) in result.settings]
    fig, axes = figure(len(kinds), width=3.8, sharey=True, squeeze=False)
    x = result.x_grid
    for ax, kind in zip(axes[0], kinds, strict=True):
        for j, factor in ((1, ORACLE_FACTOR), (0, 1.0)):  # the wider band first, the oracle's on top
            s = (kind, factor * stars[kind])
            lo, hi = result.cate_bounds(s)
            label = "Γ" if kind == "msm" else "η"
            ax.fill_between(x, lo.mean(0), hi.mean(0), color=f"C{j}", alpha=0.25,
                            label=f"{label} = {s[1]:.3g}" + (" (oracle)" if factor == 1.0 else ""))
        ax.plot(x, result.cate.mean(0), color="C3", lw=2, label="true CATE")
        ax.set_title(kind.upper(), fontsize=10)
        ax.set_xlabel("x")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("CATE (std. units)")
    return fig


# --- P27: online sensitivity sampling and low switching (LPO) ---

P27_LABELS = {"lpo": "LPO (core-set bonus, log-det switches)", "ppo": "PPO, no bonus",
              "full_bonus": "full-data bonus, frequent updates"}


def p27_learning(result):
    """50-episode moving goal rate of each agent (thin: seeds; thick: mean) and the 0.8 level of check 4."""
    from nnsens.methods.lpo import AGENTS, moving_success

    fig, axes = figure(1, width=6.0, height=3.2, squeeze=False)
    ax = axes[0, 0]
    ep = np.arange(1, result.n_episodes + 1)
    for k, agent in enumerate(AGENTS):
        curves = np.array([moving_success(lg[agent].success) for lg in result.logs])
        for c in curves:
            ax.plot(ep, c, color=f"C{k}", lw=0.6, alpha=0.4)
        ax.plot(ep, curves.mean(0), color=f"C{k}", lw=2, label=P27_LABELS[agent])
    ax.axhline(0.8, color="0.4", ls=":", lw=1)
    ax.set_xlabel("episode")
    ax.set_ylabel("goal rate (50-episode moving mean)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def p27_coreset(result):
    """LPO's core set over training: cumulative switches (left), kept fraction and generalised eigenvalues (right)."""
    fig, axes = figure(2, width=3.6, height=3.0, squeeze=False)
    ax, bx = axes[0]
    ep = np.arange(1, result.n_episodes + 1)
    for k, lg in enumerate(result.logs):
        log = lg["lpo"]
        ax.plot(ep, np.searchsorted(log.switch_episodes, ep, side="left"), color=f"C{k}", lw=1,
                label=f"seed {result.seeds[k]}")
        bx.plot(log.checkpoints, log.kept_fraction, "o-", color=f"C{k}", ms=3)
        bx.plot(log.checkpoints, log.mu_min, "v--", color=f"C{k}", ms=3, lw=0.8)
        bx.plot(log.checkpoints, log.mu_max, "^--", color=f"C{k}", ms=3, lw=0.8)
    ax.set_xlabel("episode")
    ax.set_ylabel("policy switches so far")
    ax.legend(fontsize=7)
    for y in (0.2, 0.5, 1.5):
        bx.axhline(y, color="0.5", ls=":", lw=1)
    bx.set_xlabel("episode")
    bx.set_ylabel("kept (o), μ_min (▽), μ_max (△)")
    return fig


# --- P10: clipless DP-SGD with 1-Lipschitz networks ---

def p10_bound(result, *, dataset: str | None = None):
    """Left: per-example gradient norm / Δ_d of every layer after the last epoch (one run: first seed, baseline ε).
    Right: the largest ratio after each epoch, per layer. The bound is the line at 1."""
    name = result.datasets[0] if dataset is None else dataset
    run = min(result.select(dataset=name, method="clipless", epsilon=result.baseline_epsilon), key=lambda r: r.seed)
    fig, axes = figure(2, width=3.8)
    for i in range(len(result.layers)):
        axes[0].hist(run.check.final_ratios[i], bins=40, range=(0, 1), alpha=0.5, label=f"W{i + 1}", color=f"C{i}")
        epochs = np.arange(1, run.check.ratio_by_epoch.shape[0] + 1)
        axes[1].plot(epochs, run.check.ratio_by_epoch[:, i], "o-", ms=3, color=f"C{i}", label=f"W{i + 1}")
    axes[0].axvline(1.0, color="C3", ls="--")
    axes[0].set_xlabel("‖∂ℓ/∂W_d‖ / Δ_d (per example)")
    axes[0].set_ylabel("examples")
    axes[1].axhline(1.0, color="C3", ls="--", label="bound")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("max over examples")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{name}, ε = {result.baseline_epsilon:g}, seed {run.seed}", fontsize=9)
    return fig


def p10_accuracy(result):
    """Test accuracy against ε: clipless runs (mean ± sd over seeds) and the opacus baseline at its ε."""
    fig, axes = figure(len(result.datasets), width=3.6, squeeze=False)
    for ax, name in zip(axes[0], result.datasets, strict=True):
        eps = np.asarray(result.epsilons)
        accs = [[100 * r.test_acc for r in result.select(dataset=name, method="clipless", epsilon=e)] for e in eps]
        mean, sd = np.array([np.mean(a) for a in accs]), np.array([np.std(a) for a in accs])
        ax.errorbar(eps, mean, yerr=sd, marker="o", capsize=3, label="clipless (Lipschitz)")
        base = [100 * r.test_acc for r in result.select(dataset=name, method="opacus")]
        ax.errorbar([result.baseline_epsilon], [np.mean(base)], yerr=[np.std(base)], marker="s", color="C3",
                    capsize=3, ls="none", label="opacus (clipping)")
        ax.set_xscale("log")
        ax.set_xlabel("ε (δ = 1/N)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(name, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    return fig


def p10_epoch_times(result):
    """Wall-clock seconds of each timed (interleaved) epoch, per dataset and method."""
    import pandas as pd

    rows = [{"dataset": d, "method": m, "ms": 1e3 * t} for d, by in result.epoch_seconds.items()
            for m, ts in by.items() for t in ts]
    fig, ax = figure(1, width=4.2)
    if not rows:  # timing_epochs = 0 (the smoke scale)
        ax.text(0.5, 0.5, "epochs not timed at this scale", ha="center", va="center", transform=ax.transAxes)
        return fig
    sns.stripplot(data=pd.DataFrame(rows), x="dataset", y="ms", hue="method", dodge=True, ax=ax)
    ax.set_ylabel("ms per epoch")
    ax.set_ylim(bottom=0)
    return fig


# --- P12: node-level DP-GNN (DP-GCN vs DP-MLP on a CSBM) ---

def p12_accuracy(result):
    """Test accuracy against ε (mean over seeds, a panel per homophily h): DP-GCN per degree bound K, DP-MLP, and
    the non-private GCN/MLP as dashed lines."""
    hs = sorted({r[1] for r in result.acc}, reverse=True)
    ks = sorted({r[3] for r in result.acc if r[2] == "dp_gcn"})
    eps = sorted({r[4] for r in result.acc if r[2] == "dp_mlp"})
    fig, axes = figure(len(hs), width=3.8, sharey=True, squeeze=False)
    for ax, h in zip(axes[0], hs, strict=True):
        for i, k in enumerate(ks):
            ax.plot(eps, [result.mean(h=h, model="dp_gcn", K=k, eps=e) for e in eps], "o-", color=f"C{i}",
                    label=f"DP-GCN, K = {k}")
            ax.axhline(result.mean(h=h, model="gcn", K=k), color=f"C{i}", ls="--", lw=1)
        ax.plot(eps, [result.mean(h=h, model="dp_mlp", eps=e) for e in eps], "s-", color="C3", label="DP-MLP")
        ax.axhline(result.mean(h=h, model="mlp"), color="C3", ls="--", lw=1, label="non-private (dashed)")
        ax.axhline(0.25, color="0.5", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("ε (δ = 1/(10N))")
        ax.set_title(f"h = {h:g}", fontsize=10)
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 0].legend(fontsize=7)
    return fig


def p12_deletions(result):
    """The sensitivity unit test: clipped terms changed by each deletion (bound K+1) and ‖Δ sum‖ / (2(K+1)C)."""
    fig, axes = figure(2, width=3.6)
    ks = sorted({d[2] for d in result.deletions})
    for i, k in enumerate(ks):
        changed = np.array([d[0] for d in result.deletions if d[2] == k])
        ratio = np.array([d[1] for d in result.deletions if d[2] == k]) / (2 * (k + 1) * result.clip)
        axes[0].hist(changed, bins=np.arange(0.5, max(ks) + 2.5), alpha=0.6, color=f"C{i}", label=f"K = {k}")
        axes[0].axvline(k + 1.4, color=f"C{i}", ls="--")
        axes[1].hist(ratio, bins=np.linspace(0, 1, 21), alpha=0.6, color=f"C{i}", label=f"K = {k}")
    axes[0].set_xlabel("clipped terms changed by a deletion")
    axes[0].set_ylabel("deletions")
    axes[1].set_xlabel("‖Δ clipped sum‖ / 2(K+1)C")
    axes[1].legend(fontsize=7)
    return fig


# --- P11: OT sensitivity indices from neural conditional transport maps ---

def p11_indices(result):
    """OT indices per input: Gaussian model (closed form, hypernetwork, binning + EMD) and, when run, the nonlinear
    model (reference, hypernetwork, concatenation); bars are means over seeds, whiskers their range."""
    panels = [("Gaussian linear model", result.iota_true,
               {"hypernetwork": result.gauss_neural, "binning + EMD": result.gauss_binning}, "closed form")]
    if result.nl_ref is not None:
        panels.append(("2-output Ishigami", result.nl_ref,
                       {"hypernetwork": result.nl_hyper, "concatenation": result.nl_concat}, "reference"))
    fig, axes = figure(len(panels), width=4.2, squeeze=False)
    for ax, (title, truth, ests, label) in zip(axes[0], panels):
        d = len(truth)
        x = np.arange(d)
        w = 0.8 / (len(ests) + 1)
        ax.bar(x - 0.4 + w / 2, truth, w, color="0.3", label=label)
        for k, (name, est) in enumerate(ests.items(), start=1):
            mean = est.mean(0)
            err = np.stack([mean - est.min(0), est.max(0) - mean])
            ax.bar(x - 0.4 + w / 2 + k * w, mean, w, yerr=err, capsize=2, color=f"C{k - 1}", label=name)
        ax.set_xticks(x, [f"X{i + 1}" for i in range(d)])
        ax.set_ylabel("OT index ι")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    return fig


def p11_training(result):
    """Training loss (sliced W₂² + transport-cost penalty) per epoch of every transport network, one line per seed."""
    runs = {k: v for k, v in result.histories.items() if v}
    fig, axes = figure(len(runs), width=3.4, squeeze=False, sharey=True)
    for ax, (name, hists) in zip(axes[0], runs.items()):
        for s, h in enumerate(hists):
            ax.plot(np.arange(1, len(h) + 1), h, color=f"C{s}", lw=1, label=f"seed {s}")
        ax.set_yscale("log")
        ax.set_xlabel("epoch over the conditions")
        ax.set_title(name, fontsize=9)
    axes[0, 0].set_ylabel("training loss")
    axes[0, 0].legend(fontsize=7)
    return fig
