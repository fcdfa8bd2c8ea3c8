"""Figures of part III (parameter sensitivity), one section per study."""

from __future__ import annotations

import numpy as np
import seaborn as sns

from nnsens.plots._base import figure

# --- P39: HAWQ-V2 (Hessian-trace-weighted mixed-precision quantization) ---

_P39_TITLES = {"cnn": "digits CNN", "mlp": "mnist1d MLP"}


def _p39_layer_label(name, j):
    """``conv1.weight`` → ``conv1``; an nn.Sequential's ``2.weight`` → ``fc2 (#2)``."""
    short = name.replace(".weight", "")
    return f"fc{j + 1} (#{short})" if short.isdigit() else short


def _p39_plain_log(ax):
    """Label only the decades of log axes (minor labels overlap on short ranges)."""
    from matplotlib.ticker import NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_minor_formatter(NullFormatter())


def p39_layer_traces(result):
    """Per-layer sensitivity of the first seed of each model: Hutchinson Tr(H_i)/n_i (bars, ±3 standard errors),
    the exact value where it was computed (crosses) and the top eigenvalue λ_max(H_i) (diamonds), log scale."""

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
        ax.set_xticks(k, [_p39_layer_label(n, j) for j, n in enumerate(r.layers)], fontsize="small")
        ax.set(title=f"{_P39_TITLES[m]} (seed {r.seed})", ylabel="curvature of the layer's block")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="small")
    return fig


def p39_omega_scatter(result):
    """ΣΩ (trace, top eigenvalue) against the true training-loss increase over all configurations, first seed of
    each model; titles give Spearman ρ for that seed and its mean over seeds."""

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


# --- P40: numerical precision (knees over mantissa bits, forward error scaling)
def p40_knees(result):
    """Test accuracy against mantissa bits m for each (lr, rounding) cell, one panel per width (mean over seeds),
    FP32 as a dotted line with the 5-point band below it; the legend gives each cell's knee m_c."""
    widths = sorted({c.width for c in result.cells})
    fig, axes = figure(len(widths), width=4.0, squeeze=False)
    styles = {"toward_zero": ("-", "o", "truncation"), "nearest": ("--", "s", "RN-even")}
    lrs = sorted({c.lr for c in result.cells}, reverse=True)
    for ax, w in zip(axes[0], widths):
        for k, lr in enumerate(lrs):
            for rounding, (ls, mk, label) in styles.items():
                c = result.cell(w, lr, rounding)
                ms = sorted(c.acc)
                ax.plot(ms, [100 * c.acc[m] for m in ms], ls=ls, marker=mk, color=f"C{k}", ms=4,
                        label=f"lr {lr:g}, {label} (m_c={c.knee}{'*' if c.censored else ''})")
                if rounding == "nearest":
                    ax.axhline(100 * c.fp32_acc, color=f"C{k}", ls=":", lw=1)
                    ax.axhspan(100 * c.fp32_acc - 5, 100 * c.fp32_acc, color=f"C{k}", alpha=0.08)
        ax.set_xlabel("mantissa bits m")
        ax.set_title(f"width {w}", fontsize=10)
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("test accuracy (%)")
    return fig


def p40_forward_error(result):
    """Median relative logit error of FP32-trained nets whose weights are rounded to m bits, per depth (log2 scale,
    mean over seeds): truncation (solid) and round-to-nearest (dashed); the grey line has slope −1."""

    fig, axes = figure(1, width=5.0)
    ax = axes
    m = np.asarray(result.forward_m)
    depths = sorted({d for _, d in result.forward_err})
    for k, d in enumerate(depths):
        for rounding, ls in (("toward_zero", "-"), ("nearest", "--")):
            err = np.exp(np.log(result.forward_err[(rounding, d)]).mean(axis=0))
            ax.plot(m, err, ls=ls, marker="o", ms=3, color=f"C{k}",
                    label=f"{d} hidden, {'truncation' if rounding == 'toward_zero' else 'RN-even'}")
    ref = np.exp(np.log(result.forward_err[("toward_zero", depths[0])]).mean(axis=0))[0] * 2.0 ** -(m - m[0])
    ax.plot(m, ref, color="gray", lw=1, ls=":", label="slope −1")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("mantissa bits m (weights only)")
    ax.set_ylabel("median ‖f_m(x) − f(x)‖ / ‖f(x)‖")
    ax.legend(fontsize=7)
    return fig


# --- P53: GFWSVD (Fisher-weighted low-rank compression) ---

P53_LABELS = {"svd": "SVD", "fwsvd": "FWSVD (diag)", "svd_llm": "SVD-LLM (whiten)", "kfac": "K-FAC",
               "gfwsvd": "GFWSVD (NKP)"}


def p53_accuracy(result):
    """Test accuracy (left) and test loss (right) of the main MLP against the fraction of weights removed in every
    compressed layer, one line per method: mean over seeds, bars = min..max over seeds; dotted = uncompressed."""

    fig, axes = figure(2, width=4.4)
    ratios = 100 * np.asarray(result.ratios)
    for key, ax, scale in (("acc", axes[0], 100), ("loss", axes[1], 1)):
        vals = scale * np.stack([getattr(r, key) for r in result.runs])  # (seeds, methods, ratios)
        for i, m in enumerate(result.methods):
            mean, lo, hi = vals[:, i].mean(0), vals[:, i].min(0), vals[:, i].max(0)
            ax.errorbar(ratios + (i - 2) * 0.6, mean, yerr=[mean - lo, hi - mean], marker="o", ms=4, capsize=2,
                        label=P53_LABELS[m], color=f"C{i}")
        fp = np.mean([r.fp_acc if key == "acc" else r.fp_loss for r in result.runs]) * scale
        ax.axhline(fp, color="k", ls=":", lw=1)
        ax.set(xlabel="weights removed per compressed layer (%)",
               ylabel="test accuracy (%)" if key == "acc" else "test loss")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=5, fontsize="small")
    return fig


def p53_prediction(result):
    """Auxiliary 32×40 layer, first seed: ½ΔᵀFΔ with the full empirical Fisher against the actual test-loss increase,
    every method × ratio (marker size grows with the ratio), and the relative error ‖F − F̃‖/‖F‖ of the Fisher
    approximations (right)."""

    r = result.runs[0]
    fig, axes = figure(2, width=4.4)
    ax = axes[0]
    sizes = 15 + 60 * np.arange(len(result.ratios)) / max(1, len(result.ratios) - 1)
    for i, m in enumerate(result.methods):
        ax.scatter(r.aux.predicted[i], r.aux.actual[i], s=sizes, color=f"C{i}", label=P53_LABELS[m], alpha=0.8)
    lim = [min(r.aux.predicted.min(), r.aux.actual.min()), max(r.aux.predicted.max(), r.aux.actual.max())]
    ax.plot(lim, lim, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="predicted ½ΔᵀFΔ", ylabel="actual test-loss increase", title=f"seed {r.seed}: ρ = {r.aux.rho:.2f}")
    ax.legend(fontsize="x-small")
    errs = np.array([[x.aux.err_diag, x.aux.err_kfac, x.aux.err_nkp] for x in result.runs])
    axes[1].bar(range(3), errs.mean(0), yerr=[errs.mean(0) - errs.min(0), errs.max(0) - errs.mean(0)], capsize=3,
                color=["C1", "C3", "C4"])
    axes[1].set_xticks(range(3), ["diag(F)", "α·K-FAC", "nearest B⊗A"])
    axes[1].set(ylabel="‖F − F̃‖_F / ‖F‖_F", title="Fisher approximations (mean, min..max)")
    return fig


# --- P03: LOBSTER (loss-based sensitivity regularisation) ---

_P03_LABELS = {"lobster": "LOBSTER (matched)", "l2_imp": "L2 + iterative magnitude", "shuffled": "shuffled sensitivity"}


def p03_training(result):
    """First seed: sparsity and validation loss after each epoch, LOBSTER's own schedule and the matched runs."""
    r = result.runs[0]
    fig, axes = figure(2, width=4.4)
    curves = {"LOBSTER (own schedule)": r.free, **{_P03_LABELS[m]: v for m, v in r.matched.items()}}
    for i, (label, run) in enumerate(curves.items()):
        style = dict(label=label, color=f"C{i}", lw=1.5, ls="-" if i == 0 else "--")
        axes[0].plot(range(1, len(run.sparsity) + 1), [100 * s for s in run.sparsity], **style)
        axes[1].plot(range(1, len(run.val_loss) + 1), run.val_loss, **style)
    axes[0].set(xlabel="epoch", ylabel="sparsity (%)", title=f"seed {r.seed}")
    axes[1].set(xlabel="epoch", ylabel="validation loss", yscale="log")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    return fig


def p03_accuracy(result):
    """Test accuracy per method, one dot per seed and the mean (bar): dense, LOBSTER with its own schedule and the
    three runs at matched sparsity."""
    import pandas as pd

    rows = []
    for r in result.runs:
        rows.append({"method": "dense", "seed": r.seed, "acc": 100 * r.dense_acc})
        rows.append({"method": f"LOBSTER own\n({100 * r.free.sparsity[-1]:.0f} % sparse)" if len(result.runs) == 1
                     else "LOBSTER own", "seed": r.seed, "acc": 100 * r.free_acc})
        for m, a in r.matched_acc.items():
            rows.append({"method": _P03_LABELS[m].replace(" (matched)", "").replace(" + ", " +\n").replace(
                "shuffled sensitivity", "shuffled\nsensitivity") + f"\n@{100 * result.target:g} %", "seed": r.seed,
                "acc": 100 * a})
    df = pd.DataFrame(rows)
    fig, ax = figure(width=7.0, height=3.4)
    sns.barplot(data=df, x="method", y="acc", errorbar=None, color="C0", alpha=0.35, ax=ax)
    sns.stripplot(data=df, x="method", y="acc", color="C0", size=6, ax=ax)
    ax.set(xlabel="", ylabel="test accuracy (%)")
    ax.tick_params(axis="x", labelsize="small")
    return fig


def p03_zeroing(result):
    """Validation-loss increase after zeroing a fraction of LOBSTER's surviving weights: the lowest-|∂L/∂w| ones
    against random ones (mean of the random draws), per seed."""
    import pandas as pd

    rows = [{"fraction": f"{100 * f:g} %", "choice": choice, "seed": r.seed, "increase": inc}
            for r in result.runs for f in result.zero_fractions
            for choice, inc in (("lowest |dL/dw|", r.zero_grad[f]), ("random (mean)", r.zero_random[f]))]
    fig, ax = figure(width=4.8)
    sns.barplot(data=pd.DataFrame(rows), x="fraction", y="increase", hue="choice", errorbar=None, ax=ax, alpha=0.8)
    ax.set_yscale("symlog", linthresh=1e-3)  # increases span 1e-5..10; a few may be slightly negative
    ax.set(xlabel="surviving weights zeroed", ylabel="validation-loss increase")
    ax.legend(fontsize="small")
    return fig


# --- P22: Hessian-aware pruning (channel-wise Hessian traces, structured pruning) ---

_P22_LABELS = {"hap": "HAP (Hessian trace·‖w‖²)", "l1": "L1 magnitude", "random": "random"}


def p22_accuracy(result):
    """Test accuracy against the fraction of conv channels removed, mean over seeds (±1 sd band): one-shot
    (dashed) and after fine-tuning (solid), per ranking; the dense network's accuracy as a grey line."""

    fig, ax = figure(width=5.6, height=4.4)
    ratios = np.array(sorted(result.ratios))
    for i, m in enumerate(_P22_LABELS):
        for tuned, style in ((False, "--"), (True, "-")):
            acc = np.array([[100 * (r.tuned if tuned else r.oneshot)[(m, q)] for q in ratios] for r in result.runs])
            mean, sd = acc.mean(0), acc.std(0)
            ax.plot(ratios, mean, style, marker="o", color=f"C{i}", mfc=f"C{i}" if tuned else "white",
                    label=f"{_P22_LABELS[m]}, {'fine-tuned' if tuned else 'one-shot'}")
            if len(result.runs) > 1:
                ax.fill_between(ratios, mean - sd, mean + sd, color=f"C{i}", alpha=0.12)
    ax.axhline(result.dense(), color="0.4", lw=1, label="dense")
    ax.set(xlabel="fraction of conv channels removed", ylabel="test accuracy (%)", xticks=ratios)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="x-small")
    return fig


def p22_channel_traces(result):
    """Claim 1 on the tiny MLP (first seed): each output channel's Hutchinson trace (±2 SE) against its exact
    trace from torch.func.hessian; the line is y = x."""
    c = result.mlp[0]
    fig, ax = figure(width=4.2, height=3.6)
    ax.errorbar(c.channel_exact, c.channel_est, yerr=2 * c.channel_se, fmt="o", ms=4, capsize=2)
    lo, hi = min(c.channel_exact.min(), c.channel_est.min()), max(c.channel_exact.max(), c.channel_est.max())
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1)
    ax.set(xlabel="exact channel trace Tr(H_c)", ylabel="Hutchinson estimate (±2 SE)",
           title=f"tiny MLP, Spearman ρ = {c.rho:.2f}")
    return fig


def p22_kept_channels(result, ratio: float | None = None):
    """Channels each ranking keeps in each conv layer at ``ratio`` (default: the largest), first seed."""

    ratio = max(result.ratios) if ratio is None else ratio
    r = result.runs[0]
    fig, ax = figure(width=4.6, height=3.9)
    k = np.arange(len(result.channels))
    ax.bar(k - 0.3, result.channels, 0.2, color="0.8", label="dense")
    for i, m in enumerate(_P22_LABELS):
        ax.bar(k - 0.1 + 0.2 * i, r.kept[(m, ratio)], 0.2, color=f"C{i}", label=_P22_LABELS[m])
    ax.set_xticks(k, [f"conv{j + 1}" for j in k])
    ax.set(ylabel="channels kept", title=f"{100 * ratio:.0f} % of channels removed (seed {r.seed})")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="x-small")
    return fig


# --- P45: Pychop (accuracy under emulated float formats and rounding modes)
def p45_ptq_curves(result):
    """Post-training emulation: accuracy drop (points, mean over seeds) against significand bits t of the custom
    formats, one line per rounding mode, one panel per classifier; the dotted line is the 1-point tolerance."""
    from nnsens.studies.p45_pychop import is_custom

    ts = sorted(int(f[1:]) for f in result.formats if is_custom(f))
    models = sorted({m for m, _ in result.fp32_acc})
    fig, axes = figure(len(models), width=4.2, squeeze=False)
    for ax, model in zip(axes[0], models):
        for k, mode in enumerate(result.modes):
            ax.plot(ts, [result.mean_ptq_drop(model, f"t{t}", mode) for t in ts], marker="o", ms=3,
                    color=f"C{k}", label=mode, lw=2 if mode == "nearest" else 1.2)
        ax.axhline(1.0, color="gray", ls=":", lw=1)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("significand bits t")
        ax.set_title(f"{model}: FP32 accuracy {100 * result.metrics[f'{model}_fp32_acc']:.1f} %", fontsize=10)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("accuracy drop (points)")
    return fig


def p45_named_formats(result):
    """Accuracy drop (points, mean over seeds) of every emulated format and rounding mode, per classifier."""

    models = sorted({m for m, _ in result.fp32_acc})
    fig, axes = figure(len(models), width=4.6, height=0.28 * len(result.formats) + 1.4, squeeze=False)
    for ax, model in zip(axes[0], models):
        table = np.array([[result.mean_ptq_drop(model, f, mode) for mode in result.modes] for f in result.formats])
        im = ax.imshow(np.clip(table, -1, 100), cmap="magma_r", aspect="auto", vmin=-1, vmax=50)
        ax.set_xticks(range(len(result.modes)), result.modes, rotation=30, fontsize=7)
        ax.set_yticks(range(len(result.formats)), result.formats, fontsize=7)
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                ax.text(j, i, f"{table[i, j]:.1f}", ha="center", va="center", fontsize=6,
                        color="white" if table[i, j] > 25 else "black")
        ax.set_title(model, fontsize=10)
        ax.grid(False)
    fig.colorbar(im, ax=axes[0, -1], label="drop (points)")
    return fig


def p45_training(result):
    """Low-precision training at t = qat_t: accuracy drop against FP32 (points, mean over seeds) per setting."""
    from nnsens.studies.p45_pychop import QAT_SETTINGS, qat_drop

    models = sorted({m for m, _ in result.fp32_acc})
    fig, ax = figure(1, width=5.0)
    w = 0.8 / len(QAT_SETTINGS)
    for k, s in enumerate(QAT_SETTINGS):
        ax.bar([i + k * w for i in range(len(models))], [qat_drop(result, m, s) for m in models], width=w,
               label=s.replace("_", " "), color=f"C{k}")
    ax.axhline(2.0, color="gray", ls=":", lw=1)
    ax.axhline(5.0, color="gray", ls="--", lw=1)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(models))], models)
    ax.set_ylabel("accuracy drop vs FP32 (points)")
    ax.legend(fontsize=7)
    return fig


# --- P32: pruning survey (magnitude, redundancy and sensitivity methods side by side) ---

P32_LABELS = {"magnitude_global": "magnitude (global)", "magnitude_layer": "magnitude (layer-wise)",
              "obd": "OBD (½F·w²)", "taylor": "Taylor |w·g|", "snip": "SNIP (at init)", "merge": "neuron merging"}


def p32_obs_prediction(result):
    """Claim 1, first replicate: OBS's predicted increase w_q²/(2[H⁻¹]_qq) against the actual increase of the
    regularised objective after the full OBS step, for each sampled output-layer weight (log-log, y = x line)."""
    r = result.runs[0]
    fig, ax = figure(width=4.2, height=3.6)
    floor = 1e-12  # weights of dead hidden units (zero features) have both increases at round-off level
    pred, act = np.maximum(r.predicted, floor), np.maximum(r.actual, floor)
    ax.scatter(pred, act, s=10, alpha=0.7)
    lo, hi = floor, max(pred.max(), act.max())
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1)
    n_floor = int(((pred <= floor) | (act <= floor)).sum())
    ax.set(xscale="log", yscale="log", xlabel="predicted increase (≥1e-12)", ylabel="actual increase (≥1e-12)",
           title=f"output layer, replicate {r.seed}: ρ = {r.rho:.2f}\n{n_floor} weight(s) at the 1e-12 floor")
    return fig


def p32_accuracy(result):
    """Test accuracy against the fraction of weights pruned, mean over replicates: one-shot (left) and after
    fine-tuning (right; SNIP: trained from its initialisation), per method; the dense network as a grey line."""
    sp = np.array(sorted(result.sparsities))
    tuned_too = not np.isnan(result.runs[0].tuned[(result.methods[0], sp[0])])
    fig, axes = figure(2 if tuned_too else 1, width=4.2, height=3.6, squeeze=False)
    for ax, tuned in zip(axes[0], (False, True)):
        for i, m in enumerate(result.methods):
            ax.plot(100 * sp, [result.mean_acc(m, s, tuned) for s in sp], marker="o", color=f"C{i}",
                    label=P32_LABELS[m])
        ax.axhline(result.dense(), color="0.4", lw=1, label="dense")
        ax.set(xlabel="weights pruned (%)", ylabel="test accuracy (%)",
               title="after fine-tuning" if tuned else "one-shot")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize="x-small")
    return fig


def p32_last_layer(result):
    """Claim 2a: pruning only the output layer (100×10 weights), iterative OBS against magnitude, one-shot test
    accuracy against the layer's sparsity; one thin line per replicate, the mean thick."""
    sp = sorted(result.sparsities)
    fig, ax = figure(width=4.4, height=3.4)
    for i, (key, label) in enumerate((("last_obs", "iterative OBS"), ("last_magnitude", "magnitude"))):
        accs = np.array([[100 * getattr(r, key)[s] for s in sp] for r in result.runs])
        for row in accs:
            ax.plot(100 * np.array(sp), row, color=f"C{i}", lw=0.6, alpha=0.5)
        ax.plot(100 * np.array(sp), accs.mean(0), color=f"C{i}", lw=2, marker="o", label=label)
    ax.axhline(result.dense(), color="0.4", lw=1, label="dense")
    ax.set(xlabel="output-layer weights pruned (%)", ylabel="test accuracy (%)")
    ax.legend(fontsize="small")
    return fig


# --- P15: Quantune (XGBoost-guided search over post-training quantization configurations) ---

P15_STRATEGY_LABELS = {"random": "random", "genetic": "genetic algorithm", "xgboost": "XGBoost (Quantune)"}


def p15_grid(result):
    """Every configuration of each model's grid, sorted by validation accuracy (dots coloured by precision option);
    dotted: the float (BatchNorm-folded) model; band: the target, within 0.1 point of the grid optimum."""

    runs = result.runs
    fig, axes = figure(len(runs), width=4.2, squeeze=False)
    for ax, r in zip(axes[0], runs):
        order = np.argsort(-r.val_acc)
        prec = np.array([r.grid.config(i)["precision"] for i in order])
        kinds = list(dict.fromkeys(p.split(":")[0] for p in r.grid.levels[4]))
        for j, kind in enumerate(kinds):
            sel = np.array([p.split(":")[0] == kind for p in prec])
            ax.scatter(np.flatnonzero(sel) + 1, 100 * r.val_acc[order][sel], s=10, color=f"C{j}", label=kind)
        best = 100 * r.val_acc.max()
        ax.axhspan(best - 0.1, best, color="C3", alpha=0.25, lw=0)
        ax.axhline(100 * r.fp_val, color="k", ls=":", lw=1)
        ax.set(xlabel="configuration rank", ylabel="validation accuracy (%)",
               title=f"{r.model}: {100 * r.target_fraction:.1f} % on target")
        lo = np.percentile(100 * r.val_acc, 5)
        ax.set_ylim(max(0, lo - 2), best + 1)
        ax.legend(fontsize="x-small", title="precision", title_fontsize="x-small")
    return fig


def p15_search_curves(result):
    """Fraction of search seeds that have found an on-target configuration after n evaluations, per strategy
    (empirical CDF of the evaluations to target); dashed: 20 % of the grid (check 1's budget)."""

    runs = result.runs
    fig, axes = figure(len(runs), width=4.2, squeeze=False)
    for ax, r in zip(axes[0], runs):
        n = len(r.grid)
        steps = np.arange(1, n + 1)
        for j, (s, label) in enumerate(P15_STRATEGY_LABELS.items()):
            found = (r.evals[s][None, :] <= steps[:, None]).mean(1)
            ax.step(steps, found, where="post", color=f"C{j}", label=f"{label} (mean {r.evals[s].mean():.1f})")
        ax.axvline(0.2 * n, color="0.4", ls="--", lw=1)
        ax.set(xscale="log", xlabel="configurations evaluated", ylabel="seeds on target",
               title=f"{r.model} ({n} configurations)")
        ax.legend(fontsize="x-small", loc="lower right")
    return fig


def p15_fragility(result):
    """Test-accuracy drop of each model at int8 ('high') with max calibration, per-tensor against per-channel
    weight scales (mean over calibration sizes and schemes; dots = the individual configurations)."""

    fig, ax = figure(1, width=5.0)
    for j, gran in enumerate(("tensor", "channel")):
        for i, r in enumerate(result.runs):
            idx = r.grid.select(calibration="max", granularity=gran, precision="high")
            if not idx.size:
                continue
            drops = 100 * (r.fp_test - r.test_acc[idx])
            x = i + (j - 0.5) * 0.35
            ax.bar(x, drops.mean(), width=0.33, color=f"C{j}", label=f"per {gran}" if i == 0 else None)
            ax.scatter(np.full(drops.size, x), drops, color="k", s=8, zorder=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(result.runs)), [r.model for r in result.runs])
    ax.set(ylabel="test-accuracy drop (points)", title="int8, max calibration, BatchNorm folded")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no int8 / max-calibration configurations in this grid", ha="center",
                transform=ax.transAxes, fontsize="small")
    return fig
