"""Figures of part I (attribution maps), one section per study."""

from __future__ import annotations

import numpy as np

from nnsens.plots._base import figure, image_axes

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
    image_axes(axes)
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


# --- P28: FullGrad (full-gradient representation) ---

P28_LABELS = {"fullgrad": "FullGrad", "saliency": "Saliency", "input_x_gradient": "Input × Grad",
              "integrated_gradients": "Int. Gradients", "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM",
              "random": "random"}


def p28_completeness(result):
    """Left: the sum of FullGrad's parts against the explained logit (trained net, random and test inputs). Right:
    the largest relative error per setting, float32 and float64, against the 1e-4 tolerance."""
    fig, axes = figure(2, width=4.2)
    sc = result.completeness_scatter
    axes[0].scatter(sc["output"], sc["total"], s=8, alpha=0.6)
    lim = [float(min(sc["output"].min(), sc["total"].min())), float(max(sc["output"].max(), sc["total"].max()))]
    axes[0].plot(lim, lim, color="gray", lw=1, ls="--", label="identity")
    axes[0].set_xlabel("logit of the predicted class")
    axes[0].set_ylabel("input part + bias parts")
    axes[0].legend(fontsize=8)
    settings = ["random_net", "trained_random", "trained_test"]
    x = np.arange(len(settings))
    for k, prec in enumerate(("rel32", "rel64")):
        vals = [max(result.completeness[f"{prec}_{s}"], 1e-17) for s in settings]
        axes[1].bar(x + (k - 0.5) * 0.38, vals, width=0.36, label=f"float{prec[3:]}", color=f"C{k}")
    axes[1].axhline(1e-4, color="black", ls=":", lw=1, label="tolerance 1e-4")
    axes[1].set_yscale("log")
    axes[1].set_xticks(x, ["untrained,\nrandom x", "trained,\nrandom x", "trained,\ntest images"], fontsize=8)
    axes[1].set_ylabel("max |Σ parts − logit| / |logit|")
    axes[1].legend(fontsize=8)
    return fig


def p28_maps(result, methods=None):
    """Test images and each method's per-pixel map, one row per image."""
    ex = result.examples
    methods = [m for m in (methods or P28_LABELS) if m in ex]
    k = ex["image"].shape[0]
    fig, axes = figure(len(methods) + 1, k, width=1.5, height=1.5, squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(ex["image"][i], cmap="gray", vmin=0, vmax=1)
        for j, m in enumerate(methods, start=1):
            axes[i, j].imshow(ex[m][i], cmap="magma")
            if i == 0:
                axes[i, j].set_title(P28_LABELS[m], fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    image_axes(axes)
    return fig


def p28_pixel_perturbation(result):
    """Mean fractional logit change against the share k of least salient pixels replaced by the image mean."""
    fig, ax = figure(width=5.5)
    ks = list(result.fractions)
    for j, m in enumerate(P28_LABELS):
        y = [result.mean_change(m, k) for k in ks]
        ax.plot(ks, y, marker="o", label=P28_LABELS[m], color="black" if m == "random" else f"C{j}",
                lw=2.2 if m == "fullgrad" else 1.2, ls=":" if m == "random" else "-")
    ax.set_xscale("log")
    ax.set_xticks(ks, [f"{k:g}" for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k: % of least salient pixels replaced (log scale)")
    ax.set_ylabel("mean |Δ logit| / |logit| (lower is better)")
    ax.legend(fontsize=7)
    return fig


def p28_roar(result):
    """ROAR: test-accuracy drop after removing the top-k % pixels and retraining, per method and ratio; dots are
    retraining seeds."""
    ratios = sorted(result.roar)
    fig, ax = figure(width=max(4.0, 1.6 * len(ratios) + 2))
    if not ratios:
        ax.text(0.5, 0.5, "no ROAR at this scale", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    methods = [m for m in P28_LABELS if m in result.roar[ratios[0]]]
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        for i, r in enumerate(ratios):
            d = result.roar[r][m]
            x = i + (j - (len(methods) - 1) / 2) * width
            ax.bar(x, d.mean(), width=width * 0.95, color=f"C{list(P28_LABELS).index(m)}",
                   label=P28_LABELS[m] if i == 0 else None)
            ax.scatter(np.full(d.shape, x), d, color="black", s=8, zorder=3)
    ax.set_xticks(range(len(ratios)), [f"{r:g} %" for r in ratios])
    ax.set_xlabel("pixels removed (most salient first), then retrained")
    ax.set_ylabel("accuracy drop (points)")
    ax.legend(fontsize=8)
    return fig


# --- P58: GCAV (global concept activation vectors) ---


def p58_examples(result):
    """One held-out image per class (top) and one image per concept set (bottom)."""
    x, c = result.examples["x"], result.examples["concepts"]
    n = max(len(x), len(c))
    fig, axes = figure(n, 2, width=1.5, height=1.6, squeeze=False)
    for j in range(n):
        for i, (imgs, names) in enumerate(((x, result.classes), (c, result.concepts))):
            ax = axes[i, j]
            if j < len(imgs):
                ax.imshow(imgs[j, 0], cmap="gray", vmin=0, vmax=1)
                ax.set_title(names[j], fontsize=9)
            image_axes(ax)
            if j >= len(imgs):
                ax.set_axis_off()
    return fig


def p58_layer_scores(result):
    """Per class: TCAV (solid) and TGCAV (dashed) score per layer for each concept, mean over random repeats."""
    k = len(result.classes)
    fig, axes = figure(k, width=2.6, height=2.6, squeeze=False, sharey=True)
    for j, cls in enumerate(result.classes):
        ax = axes[0, j]
        for c, con in enumerate(result.concepts):
            ax.plot(result.layers, result.tcav[:, j, c].mean(-1), "-o", color=f"C{c}", ms=3,
                    label=f"{con}" if j == 0 else None)
            ax.plot(result.layers, result.tgcav[:, j, c].mean(-1), "--s", color=f"C{c}", ms=3)
        ax.set_title(cls, fontsize=10)
        ax.set_xticks(result.layers)
        ax.set_xlabel("block")
        ax.set_ylim(-0.05, 1.05)
    axes[0, 0].set_ylabel("score (— TCAV, -- TGCAV)")
    fig.legend(loc="outside lower center", ncol=len(result.concepts), fontsize=8)
    return fig


def p58_relevance(result):
    """Left: mean TCAV vs mean TGCAV per (class, concept), planted pairs filled. Right: per-repeat scores of the
    planted and irrelevant zebra pairs and of the random-vs-random null (mean over layers)."""
    from nnsens.data.textures import PLANTED

    fig, (ax, bx) = figure(2, width=4.2)
    for j, cls in enumerate(result.classes):
        for c, con in enumerate(result.concepts):
            planted = PLANTED[cls] == con
            ax.scatter(result.tcav[:, j, c].mean(), result.tgcav[:, j, c].mean(), color=f"C{c}", s=40,
                       facecolors=f"C{c}" if planted else "none", label=con if j == 0 else None)
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set_xlabel("mean TCAV")
    ax.set_ylabel("mean TGCAV")
    ax.set_title("all pairs (filled: planted)", fontsize=10)
    ax.legend(fontsize=7)
    k = result.classes.index("zebra")
    groups = {}
    for con in ("striped", "hexagonal"):
        if con in result.concepts:
            c = result.concepts.index(con)
            groups[f"{con}\nTCAV"] = result.tcav[:, k, c].mean(0)
            groups[f"{con}\nTGCAV"] = result.tgcav[:, k, c].mean(0)
    groups["null\nTCAV"], groups["null\nTGCAV"] = result.tcav_null[:, k].mean(0), result.tgcav_null[:, k].mean(0)
    for i, v in enumerate(groups.values()):
        bx.scatter(np.full(v.shape, i) + np.linspace(-0.15, 0.15, len(v)), v, s=12, color=f"C{i // 2}")
        bx.plot([i - 0.25, i + 0.25], [v.mean()] * 2, color="black")
    bx.set_xticks(range(len(groups)), list(groups), fontsize=7)
    bx.set_ylabel("zebra score per random repeat")
    bx.set_ylim(-0.05, 1.05)
    return fig


def p58_attack_and_training(result):
    """Left: (zebra, dotted) score at the attacked block before and after each PGD attack. Right: the fusion's
    variance and cosine losses during training."""
    fig, (ax, bx) = figure(2, width=4.2)
    a = result.metrics
    if "attack_tcav_before" in a:
        labels = ["clean", "attack on CAV", "attack on TGCAV dir."]
        for i, name in enumerate(("tcav", "tgcav")):
            before = a[f"attack_{name}_before"]
            vals = [before, before + a[f"attack_cav_{name}_increase"], before + a[f"attack_tgcav_{name}_increase"]]
            bars = ax.bar(np.arange(3) + (i - 0.5) * 0.38, vals, width=0.36, label=name.upper(), color=f"C{i}")
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(3), labels, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("(zebra, dotted) score")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no attack ('dotted' not tested)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    bx.plot(result.history["var"], label="variance of soft TCAV")
    bx.plot(result.history["sim"], label="1 − cos to decoded CAV")
    bx.set_yscale("log")
    bx.set_xlabel("fusion step")
    bx.legend(fontsize=8)
    return fig


# --- P07: OSA-DAS (occlusion scored by augmentation-subspace distance in feature space) ---

P07_LABELS = {"osa_das": "OSA-DAS", "osa_das_k1": "OSA-DAS K=1", "occlusion": "Occlusion (logit)", "rise": "RISE",
              "integrated_gradients": "Int. Gradients", "gradcam": "Grad-CAM"}


def p07_maps(result, model: str):
    """Example digits (stroke mask outlined) and each method's map for one model, one row per image."""
    ex = result.examples[model]
    methods = [m for m in P07_LABELS if m in ex]
    k = ex["image"].shape[0]
    fig, axes = figure(len(methods) + 1, k, width=1.6, height=1.6, squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(ex["image"][i], cmap="gray", vmin=0, vmax=1)
        axes[i, 0].contour(ex["mask"][i], levels=[0.5], colors="red", linewidths=0.8)
        for j, m in enumerate(methods, start=1):
            axes[i, j].imshow(ex[m][i], cmap="magma")
            if i == 0:
                axes[i, j].set_title(P07_LABELS[m], fontsize=8)
    axes[0, 0].set_title(f"{model}: image", fontsize=8)
    image_axes(axes)
    return fig


def p07_deletion_curves(result):
    """Mean deletion curves (true-class probability vs fraction of pixels set to 0) per model, AUC in the legend."""
    models = list(result.curves)
    fig, axes = figure(len(models), width=4.2, squeeze=False)
    for ax, model in zip(axes[0], models):
        for k, (m, curve) in enumerate(result.curves[model].items()):
            auc = float(result.deletion[model][m].mean())
            ax.plot(np.linspace(0, 1, len(curve)), curve, label=f"{P07_LABELS[m]} ({auc:.3f})", color=f"C{k}",
                    lw=2 if m == "osa_das" else 1.2)
        ax.set_xlabel("fraction of pixels deleted")
        ax.set_title(f"{model}: deletion (AUC)", fontsize=10)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("true-class probability")
    return fig


def p07_gains(result):
    """Per-image deletion-AUC gains over occlusion, G (K augmentations) and G1 (K = 1), with bootstrap CIs."""
    fig, axes = figure(2, width=4.2)
    lo = min(result.gain.min(), result.gain_k1.min())
    hi = max(result.gain.max(), result.gain_k1.max())
    bins = np.linspace(lo, hi, 30)
    for k, (g, ci, label) in enumerate([(result.gain, result.gain_ci, f"G (K = {result.n_augment})"),
                                        (result.gain_k1, result.gain_k1_ci, "G1 (K = 1)")]):
        axes[0].hist(g, bins=bins, alpha=0.55, color=f"C{k}", label=label)
        axes[1].errorbar([k], [g.mean()], yerr=[[g.mean() - ci[0]], [ci[1] - g.mean()]], fmt="o", color=f"C{k}",
                         capsize=6)
    axes[0].axvline(0, color="black", lw=0.8)
    axes[0].set_xlabel("AUC(occlusion) - AUC(OSA-DAS), per image")
    axes[0].legend(fontsize=8)
    axes[1].axhline(0, color="black", lw=0.8)
    axes[1].set_xticks([0, 1], [f"G (K = {result.n_augment})", "G1 (K = 1)"])
    axes[1].set_xlim(-0.6, 1.6)
    axes[1].set_title("mean gain, paired-bootstrap 95 % CI", fontsize=10)
    return fig


# --- P47: Smooth Grad-CAM++ ---

P47_LABELS = {"gradcam": "Grad-CAM", "gradcam_pp": "Grad-CAM++", "smooth_gradcam_pp": "Smooth Grad-CAM++",
              "smoothgrad": "SmoothGrad"}


def p47_maps(result):
    """Example canvases (boxes of the explained class in red, other instances in grey) and each method's map."""
    import matplotlib.patches as patches

    ex = result.examples
    methods = [m for m in P47_LABELS if m in ex]
    k = ex["image"].shape[0]
    fig, axes = figure(len(methods) + 1, max(k, 1), width=1.7, height=1.7, squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(ex["image"][i], cmap="gray", vmin=0, vmax=1)
        for box, is_target in zip(ex["boxes"][i], ex["box_is_target"][i]):
            if box[0] < 0:
                continue
            top, left, bottom, right = box
            axes[i, 0].add_patch(patches.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                                   ec="red" if is_target else "0.6", lw=1.3))
        for j, m in enumerate(methods, start=1):
            axes[i, j].imshow(ex[m][i], cmap="magma")
            if i == 0:
                axes[i, j].set_title(P47_LABELS[m], fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    image_axes(axes)
    return fig


def p47_grid(result):
    """Multi-instance recall and energy in boxes of Smooth Grad-CAM++ over the sigma x n grid, with Grad-CAM and
    Grad-CAM++ (no noise) as horizontal lines."""
    fig, axes = figure(2, width=4.2)
    ns = sorted({r["n_samples"] for r in result.grid})
    for ax, key, label in zip(axes, ("all_hit", "energy"), ("multi-instance recall", "energy in boxes")):
        for c, n in enumerate(ns):
            rows = sorted((r for r in result.grid if r["n_samples"] == n and key in r), key=lambda r: r["stdev"])
            ax.plot([r["stdev"] for r in rows], [r[key] for r in rows], marker="o", color=f"C{c}", label=f"n = {n}")
        for m, ls in (("gradcam", "--"), ("gradcam_pp", ":")):
            if m in result.summary:
                ax.axhline(result.summary[m][key], color="0.3", ls=ls, lw=1.2, label=P47_LABELS[m])
        ax.axvline(0.15, color="gray", lw=0.8, alpha=0.5)
        ax.set_xlabel("noise sigma (x input range)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    return fig


def p47_alphas(result):
    """Grad-CAM++ alphas: closed form against float64 central differences (h = 1e-3) and nested autodiff."""
    fig, ax = figure(width=4.6)
    for (name, d), mk in zip((("central differences, h = 1e-3", result.alpha_fixed),
                              ("forward-mode autodiff", result.alpha_autodiff)), ("o", "x")):
        ax.scatter(d["closed"], np.maximum(d["rel_error"], 1e-17), marker=mk, s=16, label=name)
    ax.axhline(1e-4, color="gray", ls=":", label="tolerance 1e-4")
    ax.set_yscale("log")
    ax.set_xlabel("closed-form alpha")
    ax.set_ylabel("relative error (floored at 1e-17)")
    ax.legend(fontsize=7)
    return fig


# --- P65: extremal perturbations and smooth masks ---

P65_LABELS = {"extremal": "Extremal (sum)", "gradcam": "Grad-CAM", "saliency": "Saliency",
              "integrated_gradients": "Int. Gradients", "occlusion": "Occlusion", "rise": "RISE", "center": "centre"}


def p65_masks(result):
    """Example glyph images (target box in red), the extremal masks at each area, their sum, Grad-CAM and RISE."""
    import matplotlib.patches as patches

    ex = result.examples
    k, n_areas = ex["masks"].shape[:2]
    cols = ["image", *[f"a = {a:g}" for a in result.areas], "EP sum", "Grad-CAM", "RISE"]
    fig, axes = figure(len(cols), k, width=1.5, height=1.5, squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(ex["image"][i], cmap="gray", vmin=0, vmax=1)
        r0, c0, r1, c1 = ex["boxes"][i]
        axes[i, 0].add_patch(patches.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec="red", lw=1.2))
        for j in range(n_areas):
            axes[i, 1 + j].imshow(ex["image"][i] * (0.25 + 0.75 * ex["masks"][i, j]), cmap="gray", vmin=0, vmax=1)
        for j, m in enumerate(("extremal", "gradcam", "rise")):
            axes[i, 1 + n_areas + j].imshow(ex[m][i], cmap="magma")
    for j, c in enumerate(cols):
        axes[0, j].set_title(c, fontsize=8)
    image_axes(axes)
    return fig


def p65_areas(result):
    """Left: achieved area of the extremal masks against the target (one dot per image); right: area of the 2017
    masks at each lambda (the same images' first n_mp)."""
    fig, axes = figure(2, width=4.0)
    rng = np.random.default_rng(0)
    for j, a in enumerate(result.areas):
        v = result.achieved[:, j]
        axes[0].scatter(j + rng.uniform(-0.15, 0.15, len(v)), v, s=10, color=f"C{j}")
        axes[0].hlines([a - 0.02, a + 0.02], j - 0.3, j + 0.3, color="gray", lw=0.8, ls=":")
    axes[0].set_xticks(range(len(result.areas)), [f"{a:g}" for a in result.areas])
    axes[0].set_xlabel("target area a")
    axes[0].set_ylabel("achieved area (padded mask)")
    axes[0].set_title("extremal perturbations (±0.02 dotted)", fontsize=10)
    for j in range(len(result.mp_lambdas)):
        v = result.mp_areas[j]
        axes[1].scatter(j + rng.uniform(-0.15, 0.15, len(v)), v, s=10, color=f"C{j}")
    axes[1].set_xticks(range(len(result.mp_lambdas)), [f"{lam:g}" for lam in result.mp_lambdas])
    axes[1].set_xlabel("lambda (2017 objective)")
    axes[1].set_ylabel("achieved area")
    axes[1].set_title("meaningful perturbation, fixed lambda", fontsize=10)
    return fig


def p65_phi(result):
    """Phi(a) / Phi(x): the preserved logit against the area, one line per image (colour = stroke pixels)."""
    import matplotlib as mpl

    fig, ax = figure(width=4.6)
    ratio = result.phi / result.phi_full[:, None]
    norm = mpl.colors.Normalize(result.stroke_pixels.min(), result.stroke_pixels.max())
    cmap = mpl.colormaps["viridis"]
    for row, s in zip(ratio, result.stroke_pixels):
        ax.plot(result.areas, row, color=cmap(norm(s)), lw=0.8, alpha=0.7)
    ax.plot(result.areas, np.median(ratio, axis=0), color="black", lw=2, marker="o", label="median")
    ax.axhline(0.9, color="gray", ls=":", lw=1, label="0.9 Phi(x)")
    ax.set_xscale("log")
    ax.set_xticks(result.areas, [f"{a:g}" for a in result.areas])
    ax.set_xlabel("area a")
    ax.set_ylabel("Phi(a) / Phi(x)")
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="stroke pixels")
    ax.legend(fontsize=8)
    return fig


def p65_pointing_channels(result):
    """Left: pointing-game accuracy per method; right: preserved logit fraction with EP's top channels vs random."""
    fig, axes = figure(2, width=4.2)
    names = list(result.pointing)
    acc = [result.pointing[m].mean() for m in names]
    axes[0].barh(range(len(names)), acc, color=["C3" if m == "extremal" else "C0" for m in names])
    axes[0].set_yticks(range(len(names)), [P65_LABELS.get(m, m) for m in names])
    axes[0].axvline(0.85, color="gray", ls=":", lw=1)
    axes[0].set_xlim(0, 1)
    axes[0].set_xlabel("pointing accuracy")
    if len(result.channel_top):
        axes[1].boxplot([result.channel_top, result.channel_random], tick_labels=["EP top", "random"])
    axes[1].axhline(0.8, color="gray", ls=":", lw=1)
    axes[1].axhline(0.5, color="gray", ls="--", lw=1)
    axes[1].set_ylabel("preserved logit fraction")
    axes[1].set_title(f"{result.channel_k} of the last block's channels", fontsize=10)
    return fig


# --- P25: Mask of truth (sensitivity to regions outside the ROI) ---

P25_TYPES = ("full", "no_roi", "only_roi", "no_roi_bbox", "only_roi_bbox")
P25_LABELS = {"full": "full", "no_roi": "no ROI", "only_roi": "only ROI", "no_roi_bbox": "no ROI (bbox)",
              "only_roi_bbox": "only ROI (bbox)"}


def p25_examples(result):
    """One marked positive test image under the five image types, and the full model's |GradientSHAP| on it."""
    fig, axes = figure(6, width=1.9, height=2.2)
    for ax, t in zip(axes, P25_TYPES):
        ax.imshow(result.examples[t], cmap="gray", vmin=0, vmax=1)
        ax.set_title(P25_LABELS[t], fontsize=9)
    s = result.shap[result.rho][0]
    axes[-1].imshow(s.example, cmap="magma")
    axes[-1].set_title(f"|SHAP|, rho = {result.rho:g}", fontsize=9)
    image_axes(axes)
    return fig


def p25_auc_matrix(result):
    """AUC of each training type (rows) on each test type (columns) at rho, and the control rows at rho = 0."""
    import seaborn as sns

    fig, axes = figure(2, width=5.0, height=3.6, gridspec_kw={"width_ratios": [1, 1.2]})
    for ax, rho, rows in ((axes[0], result.rho, result.train_types), (axes[1], result.control_rho, ("full", "no_roi"))):
        m = np.array([[result.mean_auc(rho, r, t) for t in P25_TYPES] for r in rows])
        sns.heatmap(m, annot=True, fmt=".2f", vmin=0.4, vmax=1.0, cmap="viridis", cbar=ax is axes[1], ax=ax,
                    xticklabels=[P25_LABELS[t] for t in P25_TYPES], yticklabels=[P25_LABELS[r] for r in rows])
        ax.tick_params(axis="x", rotation=35)
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel("test images")
        ax.set_title(f"rho = {rho:g}", fontsize=10)
    axes[0].set_ylabel("trained on")
    return fig


def p25_shap_shares(result):
    """Mean |GradientSHAP| shares of the full model in the ROI, outside it and in the marker region, at both rho."""
    fig, ax = figure(width=4.8)
    parts = ("roi", "out_roi", "marker")
    rhos = sorted(result.shap)
    for k, rho in enumerate(rhos):
        v = [np.mean([getattr(s, p) for s in result.shap[rho]]) for p in parts]
        ax.bar(np.arange(3) + (k - 0.5) * 0.38, v, width=0.36, label=f"rho = {rho:g}", color=f"C{k}")
    ax.set_xticks(range(3), ["in ROI", "outside ROI", "marker box + 2 px"])
    ax.set_ylabel("share of |attribution|")
    ax.set_title("full-trained model, marked positive test images", fontsize=10)
    ax.legend(fontsize=8)
    return fig
