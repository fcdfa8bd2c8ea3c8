"""Figures of part I (attribution maps), one section per study."""

from __future__ import annotations

import numpy as np

from nnsens.plots._base import figure

# --- P46: Sobol attribution (variance-based black-box explanations) ---

P46_LABELS = {"sobol": "Sobol", "rise": "RISE", "occlusion": "Occlusion", "saliency": "Saliency",
              "integrated_gradients": "Int. Gradients", "gradcam": "Grad-CAM"}


def p46_ishigami(result):
    """Estimated vs analytic first-order and total Sobol indices of the Ishigami function."""

    fig, ax = figure(width=5.0)
    x = np.arange(3)
    ish = result.ishigami
    for k, (key, label) in enumerate([("first", "first order"), ("total", "total")]):
        ax.bar(x + (k - 0.5) * 0.38, ish[key], width=0.36, label=f"{label}: estimate", color=f"C{k}")
        ax.scatter(x + (k - 0.5) * 0.38, ish[f"{key}_true"], marker="_", s=400, color="black", zorder=3,
                   label="analytic" if k == 0 else None)
    ax.set_xticks(x, ["$x_1$", "$x_2$", "$x_3$"])
    ax.set_ylabel("Sobol index")
    ax.set_title("Ishigami (a = 7, b = 0.1), $2^{12}$ QMC base points", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def p46_maps(result, task: str, methods=None):
    """Example images (planted cells outlined) and each method's map, one row per image."""
    import matplotlib.patches as patches

    ex = result.examples[task]
    methods = [m for m in (methods or P46_LABELS) if m in ex]
    k = ex["image"].shape[0]
    fig, axes = figure(len(methods) + 1, k, width=1.7, height=1.7, squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(ex["image"][i], cmap="gray", vmin=0, vmax=1)
        if "evidence" in ex:
            g = ex["evidence"].shape[-1]
            s = ex["image"].shape[-1] / g
            for r, c in zip(*ex["evidence"][i].nonzero()):
                axes[i, 0].add_patch(patches.Rectangle((c * s - 0.5, r * s - 0.5), s, s, fill=False, ec="red", lw=1.5))
        for j, m in enumerate(methods, start=1):
            axes[i, j].imshow(ex[m][i], cmap="magma")
            if i == 0:
                axes[i, j].set_title(P46_LABELS[m], fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    return fig


def p46_deletion_curves(result):
    """Mean deletion curves (softmax probability of the target vs fraction of pixels set to 0), per task."""

    tasks = list(result.curves)
    fig, axes = figure(len(tasks), width=4.2, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for k, (m, curve) in enumerate(result.curves[task].items()):
            frac = np.linspace(0, 1, len(curve))
            auc = result.deletion[task][m]
            ax.plot(frac, curve, label=f"{P46_LABELS[m]} ({auc:.3f})", color=f"C{k}", lw=2 if m == "sobol" else 1.2)
        ax.set_xlabel("fraction of pixels deleted")
        ax.set_title(f"{task}: deletion (AUC)", fontsize=10)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("target probability")
    return fig


def p46_budget(result):
    """Sobol with N designs: OR top-2 rate and single-task deletion AUC against forwards per image (the sweep's
    images, with occlusion and RISE on the same images for reference)."""
    fig, axes = figure(2, width=4.2)
    f = [r["forwards"] for r in result.sweep]
    axes[0].plot(f, [r["or_top2"] for r in result.sweep], marker="o", label="Sobol (N designs)")
    ref = result.sweep_reference
    axes[0].axhline(ref["occlusion_or_top2"], color="C2", ls="--", label="occlusion (65 fwd)")
    axes[0].axhline(0.9, color="gray", ls=":", lw=1, label="check 2: 0.9")
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("both planted cells in top 2")
    axes[0].set_title("OR task", fontsize=10)
    axes[1].plot(f, [r["deletion_single"] for r in result.sweep], marker="o", label="Sobol (N designs)")
    axes[1].scatter([result.forwards["rise"]], [ref["rise_deletion_single"]], color="C1", zorder=3,
                    label=f"RISE ({result.forwards['rise']} masks)")
    axes[1].set_ylabel("deletion AUC (lower is better)")
    axes[1].set_title("single-patch task", fontsize=10)
    for ax, key in zip(axes, ("or_top2", "deletion_single")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("forwards per image")
        for r in result.sweep:
            ax.annotate(f"N={r['n_designs']}", (r["forwards"], r[key]), xytext=(0, 6), textcoords="offset points",
                        fontsize=7, ha="center", color="C0")
        ax.legend(fontsize=7)
    return fig
