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
    ax1.set(ylabel="std of test accuracy (points)", title="spread by source of randomness")
    ax1.legend(fontsize="small")
    churns = [100 * result.pairwise_churn[f] for f in fams] + [100 * float(np.mean(result.poke_churn))]
    ax2.bar(range(5), churns, color=[f"C{k}" for k in range(4)] + ["C4"])
    ax2.axhline(50 * result.pairwise_churn["i"], color="k", ls=":", label="50 % of (i)")
    ax2.set_xticks(range(5), [_P21_FAMILIES[f] for f in fams] + ["poked vs\nunpoked"], fontsize="small")
    ax2.set(ylabel="churn (% of test examples)", title="disagreement between runs")
    ax2.legend(fontsize="small")
    return fig


# --- P39: HAWQ-V2 (Hessian-trace-weighted mixed-precision quantization) ---

_P39_TITLES = {"cnn": "digits CNN", "mlp": "mnist1d MLP"}


def _p39_plain_log(ax):
    """Label only the decades of log axes (minor labels overlap on short ranges)."""
    from matplotlib.ticker import NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_minor_formatter(NullFormatter())


def p39_layer_traces(result):
    """Per-layer sensitivity of the first seed of each model: Hutchinson Tr(H_i)/n_i (bars, ±3 standard errors),
    the exact value where it was computed (crosses) and the top eigenvalue λ_max(H_i) (diamonds), log scale."""
    import numpy as np

    models = sorted({r.model for r in result.runs}, key=list(_P39_TITLES).index)
    fig, axes = figure(len(models), width=4.4, squeeze=False)
    for ax, m in zip(axes[0], models):
        r = result.of(m)[0]
        k = np.arange(len(r.layers))
        avg, se = r.trace / r.n_params, r.trace_se / r.n_params
        ax.bar(k, avg, yerr=3 * se, capsize=3, color="C0", alpha=0.8, label="Tr(H)/n, Hutchinson ±3 SE")
        ex = [(i, r.exact[n] / r.n_params[i]) for i, n in enumerate(r.layers) if n in r.exact]
        if ex:
            ax.scatter(*zip(*ex), marker="x", color="C3", s=60, zorder=3, label="Tr(H)/n, exact")
        ax.scatter(k, r.eig, marker="D", color="C2", s=25, zorder=3, label="λ_max(H)")
        ax.set_yscale("log")
        ax.set_xticks(k, [n.replace(".weight", "") for n in r.layers], fontsize="small")
        ax.set(title=f"{_P39_TITLES[m]} (seed {r.seed})", ylabel="curvature of the layer's block")
    axes[0][0].legend(fontsize="x-small", framealpha=0.6)
    return fig


def p39_omega_scatter(result):
    """ΣΩ (trace, top eigenvalue) against the true training-loss increase over all configurations, first seed of
    each model; titles give Spearman ρ for that seed and its mean over seeds."""
    import numpy as np

    models = sorted({r.model for r in result.runs}, key=list(_P39_TITLES).index)
    fig, axes = figure(2, len(models), width=4.0, height=3.2, squeeze=False)
    for row, m in zip(axes, models):
        runs = result.of(m)
        r = runs[0]
        for ax, key, label in ((row[0], "trace", "Tr(H)/n"), (row[1], "eig", "λ_max")):
            om = r.omega_trace if key == "trace" else r.omega_eig
            rho = r.rho_trace if key == "trace" else r.rho_eig
            mean = np.mean([x.rho_trace if key == "trace" else x.rho_eig for x in runs])
            sc = ax.scatter(om, np.maximum(r.loss_increase, 1e-6), c=r.size, cmap="viridis", s=12, alpha=0.8)
            ax.set(xscale="log", yscale="log", xlabel=f"ΣΩ with {label}", ylabel="training-loss increase (≥1e-6)",
                   title=f"{_P39_TITLES[m]}: ρ = {rho:.2f} (mean {mean:.2f})")
            _p39_plain_log(ax)
        fig.colorbar(sc, ax=list(row), label="average bits")
    return fig


def p39_pareto(result):
    """Left: size against ΣΩ(trace) for every configuration (first seed), its Pareto frontier and the budgets.
    Right: size against test accuracy, with the configurations each selector picks under each budget."""
    from nnsens.methods.hawq import pareto_front

    models = sorted({r.model for r in result.runs}, key=list(_P39_TITLES).index)
    fig, axes = figure(2, len(models), width=4.4, height=3.3, squeeze=False)
    marks = {"trace": ("o", "C3"), "eig": ("s", "C2"), "uniform": ("^", "C1"), "reversed": ("v", "C4")}
    for row, m in zip(axes, models):
        r = result.of(m)[0]
        front = pareto_front(r.size, r.omega_trace)
        row[0].scatter(r.size, r.omega_trace, s=8, color="0.6", label="configurations")
        row[0].plot(r.size[front], r.omega_trace[front], color="C0", marker=".", label="Pareto frontier")
        row[1].scatter(r.size, 100 * r.test_acc, s=8, color="0.6")
        for b in result.budgets:
            for ax in row:
                ax.axvline(b, color="k", ls=":", lw=0.8)
            row[1].hlines(100 * r.median_acc[b], r.size.min(), b, color="k", lw=0.8)
        for sel, (mk, col) in marks.items():
            idx = [r.picks[sel][b] for b in result.budgets if r.picks[sel][b] >= 0]
            row[0].scatter(r.size[idx], r.omega_trace[idx], marker=mk, color=col, s=50, facecolor="none", label=sel)
            row[1].scatter(r.size[idx], 100 * r.test_acc[idx], marker=mk, color=col, s=50, facecolor="none")
        row[0].set(yscale="log", xlabel="average bits", ylabel="ΣΩ (trace)", title=f"{_P39_TITLES[m]} (seed {r.seed})")
        _p39_plain_log(row[0])
        row[1].set(xlabel="average bits", ylabel="test accuracy (%)", title="picks; line = median within budget")
    axes[0][0].legend(fontsize="x-small", framealpha=0.6)
    return fig
