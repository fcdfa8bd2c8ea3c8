"""arXiv 2508.21197 — GCAV: global concept activation vectors for cross-layer consistency of TCAV scores.

What is reproduced, at laptop scale: a 4-block VGG-style CNN is trained on a procedural texture–shape world
(:mod:`nnsens.data.textures`) whose five classes are each planted with one texture concept (zebra–striped,
leopard–dotted, snake–zigzagged, honeycomb–hexagonal, spider web–radial). At every block, linear CAVs (scikit-learn
logistic regression) separate each concept's activations from those of ``n_repeats`` random sets of generic texture
patches; random-vs-random CAVs give the null. TCAV scores (fraction of a class's held-out images whose class logit
grows along the CAV) are computed per layer. GCAV-lite (:mod:`nnsens.methods.gcav`: per-layer autoencoders, InfoNCE
alignment, attention fusion trained on the across-layer variance of soft TCAV scores plus cosine similarity) fuses
each concept-repeat's CAVs into one global vector, decoded back into every layer for TGCAV scores. Checked: across-
layer coefficient of variation (consistency), preservation of the planted relevance (means, t-tests against the null
passed through the same fusion, Pearson correlation with TCAV, top-ranked concept per class), and the change of the
(zebra, dotted) score at block 3 under a PGD attack on the inputs that maximises the directional derivative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnsens.data.textures import CLASSES, CONCEPTS, PLANTED, class_images, concept_images, random_sets
from nnsens.measures.concepts import layer_activations, layer_gradients, tcav_scores, tcav_significance, train_cav
from nnsens.methods.gcav import GCAVLosses, concept_attack, fit_gcav
from nnsens.models import VGGNet
from nnsens.study import UNTESTABLE, Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import accuracy, fit

PAPER = Paper(
    title="GCAV: A Global Concept Activation Vector Framework for Cross-Layer Consistency in Interpretability",
    authors="Zhenghao He, Sanchit Sinha, Guangzhi Xiong, Aidong Zhang",
    year=2025,
    arxiv="2508.21197",
    code="github.com/Zhenghao-He/GCAV",
)
ATTACK_CLASS, ATTACK_CONCEPT = "zebra", "dotted"
PLANTED_PAIR, IRRELEVANT_PAIR = ("zebra", "striped"), ("zebra", "hexagonal")


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P58 (defaults = smoke scale)."""

    concepts: tuple[str, ...] = param(("striped", "dotted"), choices=CONCEPTS, doc="concept sets tested")
    layers: tuple[int, ...] = param((3, 4), low=1, high=4, doc="CNN blocks (1-based) whose CAVs are fused")
    n_repeats: int = param(3, low=2, high=100, doc="random sets (one CAV per concept and set; as many null CAVs)")
    n_concept: int = param(50, low=10, high=1000, doc="images per concept set and per random set")
    var_loss: float = param(3.0, low=0.0, high=100.0, doc="weight of the across-layer variance loss (sweepable)")
    sim_loss: float = param(1.0, low=0.0, high=100.0, doc="weight of the cosine loss to the decoded original CAVs")
    embed_dim: int = param(64, low=4, high=4096, doc="GCAV embedding dimension d")
    ae_steps: int = param(100, low=0, high=100_000, doc="autoencoder + InfoNCE alignment steps")
    fusion_steps: int = param(200, low=1, high=100_000, doc="attention-fusion steps")
    fusion_lr: float = param(3e-3, low=1e-6, high=1.0, doc="Adam learning rate of the GCAV stages")
    eps: float = param(8 / 255, low=0.0, high=1.0, doc="L∞ radius of the PGD concept attack (sweepable)")
    attack_steps: int = param(20, low=1, high=1000, doc="PGD steps")
    attack_layer: int = param(3, low=1, high=4, doc="block attacked (must be in layers)")
    image_size: int = param(32, choices=(32, 64), doc="image side in pixels")
    width: int = param(8, low=2, high=256, doc="channels of block 1 (blocks: w, 2w, 4w, 4w)")
    n_train: int = param(800, low=100, high=100_000, doc="classifier training images")
    n_eval: int = param(20, low=4, high=2000, doc="held-out images per class scored by TCAV/TGCAV (and fused on)")
    epochs: int = param(6, low=1, high=1000, doc="classifier training epochs")
    batch_size: int = param(64, low=1, high=10_000, doc="classifier minibatch size")
    lr: float = param(3e-3, low=1e-6, high=1.0, doc="classifier learning rate (Adam)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("concepts", "layers"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"The {name!r} parameter of P58 must not repeat values. Got {values!r} instead.")
        if len(self.layers) < 2:
            raise ValueError(f"The 'layers' parameter of P58 must list at least 2 blocks (CV across layers). "
                             f"Got {self.layers!r} instead.")
        if self.attack_layer not in self.layers:
            raise ValueError(f"The 'attack_layer' parameter of P58 must be one of layers={self.layers!r}. "
                             f"Got {self.attack_layer!r} instead.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(concepts=CONCEPTS, layers=(1, 2, 3, 4), n_repeats=10, n_concept=100, ae_steps=500,
                  fusion_steps=2000, n_train=2000, n_eval=50, epochs=10),
    "paper": Config(concepts=CONCEPTS, layers=(1, 2, 3, 4), n_repeats=50, n_concept=100, ae_steps=2000,
                    fusion_steps=5000, image_size=64, width=32, n_train=10_000, n_eval=200, epochs=30),
}


@dataclass(frozen=True)
class Result:
    """Scores are arrays (layers, classes, concepts, repeats); null scores (layers, classes, repeats)."""

    layers: tuple[int, ...]
    classes: tuple[str, ...]
    concepts: tuple[str, ...]
    tcav: np.ndarray
    tgcav: np.ndarray
    tcav_null: np.ndarray
    tgcav_null: np.ndarray
    cav_accuracy: np.ndarray  # (layers, concepts, repeats) held-out accuracy of each CAV
    attack: dict[str, float]  # before/after scores at the attacked block, both attacks
    history: dict[str, list[float]]
    examples: dict[str, np.ndarray]  # a few images for the figures
    metrics: dict[str, float]

    def pair_table(self) -> list[dict]:
        """Per (class, concept): mean, std, CV and range ratio over layers of the repeat-mean TCAV and TGCAV."""
        rows = []
        for k, cls in enumerate(self.classes):
            for c, con in enumerate(self.concepts):
                row = {"class": cls, "concept": con}
                for name, s in (("tcav", self.tcav), ("tgcav", self.tgcav)):
                    per_layer = s[:, k, c, :].mean(-1)
                    row.update(_layer_stats(per_layer, name))
                rows.append(row)
        return rows


def _layer_stats(per_layer: np.ndarray, name: str) -> dict[str, float]:
    m, sd = float(per_layer.mean()), float(per_layer.std())
    # scores are ≥ 0, so a zero mean means zero spread: perfectly consistent, CV and RR 0
    cv = sd / m if m > 0 else 0.0
    rr = float(per_layer.max() - per_layer.min()) / m if m > 0 else 0.0
    return {f"{name}_mean": m, f"{name}_std": sd, f"{name}_cv": cv, f"{name}_rr": rr}


# ------------------------------------------------------------------------------------------------- the pipeline
def _seed(cfg: Config, k: int) -> int:
    return int(np.random.default_rng([cfg.seed, k]).integers(2**31 - 1))


def _classifier(cfg: Config, device: torch.device) -> tuple[VGGNet, dict]:
    xtr, ytr = class_images(cfg.n_train, cfg.image_size, generator=_seed(cfg, 1))
    xte, yte = class_images(cfg.n_eval * len(CLASSES) * 2, cfg.image_size, generator=_seed(cfg, 2))
    w = cfg.width
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(cfg, 3))
        model = VGGNet(1, len(CLASSES), channels=(w, 2 * w, 4 * w, 4 * w), image_size=cfg.image_size).to(device)
    xtr, ytr, xte, yte = (t.to(device) for t in (xtr, ytr, xte, yte))
    fit(model, xtr, ytr, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, generator=_seed(cfg, 4))
    # the first n_eval test images of each class are fused on, the next n_eval are scored
    order = torch.argsort(yte, stable=True).view(len(CLASSES), -1)
    fit_idx, eval_idx = order[:, : cfg.n_eval].flatten(), order[:, cfg.n_eval :].flatten()
    return model, {"x_fit": xte[fit_idx], "y_fit": yte[fit_idx], "x_eval": xte[eval_idx], "y_eval": yte[eval_idx],
                   "test_acc": accuracy(model, xte, yte), "train_acc": accuracy(model, xtr, ytr)}


def _per_class_scores(grads: list[torch.Tensor], y: torch.Tensor, dirs: list[torch.Tensor]) -> np.ndarray:
    """(layers, classes, items) TCAV scores of unit directions ``dirs[l]`` (items, D_l) on each class's gradients."""
    return np.stack([np.stack([tcav_scores(g[y == k], d).cpu().numpy() for k in range(len(CLASSES))])
                     for g, d in zip(grads, dirs)])


def run(cfg: Config) -> Result:
    """Train the CNN, compute CAVs and TCAV per layer, fit GCAV-lite, score TGCAV, attack (module docstring)."""
    device = resolve_device(cfg.device)
    model, data = _classifier(cfg, device)
    relus = [m for m in model.features if isinstance(m, nn.ReLU)]  # block outputs
    layers = [relus[i - 1] for i in cfg.layers]
    n_con, n_rep, n_lay = len(cfg.concepts), cfg.n_repeats, len(cfg.layers)

    # concept and random activations → CAVs per layer: items ordered (concept, repeat); nulls: random r vs r + 1
    con_x = torch.cat([concept_images(c, cfg.n_concept, cfg.image_size, generator=_seed(cfg, 10 + CONCEPTS.index(c)))
                       for c in cfg.concepts]).to(device)
    rnd_x = random_sets(n_rep, cfg.n_concept, cfg.image_size, generator=_seed(cfg, 20)).flatten(0, 1).to(device)
    con_a = [a.view(n_con, cfg.n_concept, -1) for a in layer_activations(model, con_x, layers=layers)]
    rnd_a = [a.view(n_rep, cfg.n_concept, -1) for a in layer_activations(model, rnd_x, layers=layers)]
    cavs, nulls, cav_acc = [], [], np.zeros((n_lay, n_con, n_rep))
    for li in range(n_lay):
        items = []
        for c in range(n_con):
            for r in range(n_rep):
                cav = train_cav(con_a[li][c], rnd_a[li][r], random_state=_seed(cfg, 100 + r))
                items.append(cav.direction)
                cav_acc[li, c, r] = cav.accuracy
        cavs.append(torch.stack(items))
        nulls.append(torch.stack([train_cav(rnd_a[li][r], rnd_a[li][(r + 1) % n_rep],
                                            random_state=_seed(cfg, 100 + r)).direction for r in range(n_rep)]))

    # gradients of each image's own class logit; TCAV per layer
    g_fit = layer_gradients(model, data["x_fit"], target=data["y_fit"], layers=layers)
    g_eval = layer_gradients(model, data["x_eval"], target=data["y_eval"], layers=layers)
    y_eval = data["y_eval"]
    shape = (n_lay, len(CLASSES), n_con, n_rep)
    tcav = _per_class_scores(g_eval, y_eval, cavs).reshape(shape)
    tcav_null = _per_class_scores(g_eval, y_eval, nulls)

    # GCAV-lite, fused on the fit images' gradients; TGCAV on the eval images; the null through the same networks
    losses = GCAVLosses(var=cfg.var_loss, sim=cfg.sim_loss)
    gcav, hist = fit_gcav(cavs, g_fit, data["y_fit"], embed_dim=cfg.embed_dim, ae_steps=cfg.ae_steps,
                          fusion_steps=cfg.fusion_steps, lr=cfg.fusion_lr, losses=losses, generator=_seed(cfg, 30))
    tg_dirs, tg_null_dirs = gcav.transform(cavs), gcav.transform(nulls)
    tgcav = _per_class_scores(g_eval, y_eval, tg_dirs).reshape(shape)
    tgcav_null = _per_class_scores(g_eval, y_eval, tg_null_dirs)

    attack = _attack(cfg, model, layers, data, cavs, tg_dirs)
    res = Result(tuple(cfg.layers), CLASSES, tuple(cfg.concepts), tcav, tgcav, tcav_null, tgcav_null, cav_acc,
                 attack, hist, {"x": data["x_eval"][:: cfg.n_eval][:5].cpu().numpy(),
                                "concepts": con_x[:: cfg.n_concept].cpu().numpy()}, {})
    metrics = {"test_acc": data["test_acc"], "train_acc": data["train_acc"],
               "cav_accuracy": float(cav_acc.mean()), **{k: float(v) for k, v in attack.items()}}
    metrics.update(_summary(res))
    return Result(**{**res.__dict__, "metrics": metrics})


def _attack(cfg: Config, model, layers, data, cavs, tg_dirs) -> dict[str, float]:
    """PGD on the eval zebra images along the mean dotted CAV, then along the mean decoded TGCAV direction."""
    if ATTACK_CONCEPT not in cfg.concepts:
        return {}
    li, k = cfg.layers.index(cfg.attack_layer), CLASSES.index(ATTACK_CLASS)
    c, n_rep = cfg.concepts.index(ATTACK_CONCEPT), cfg.n_repeats
    x = data["x_eval"][data["y_eval"] == k]
    tc_dirs, tg = cavs[li][c * n_rep : (c + 1) * n_rep], tg_dirs[li][c * n_rep : (c + 1) * n_rep]

    def scores(inputs: torch.Tensor, v: torch.Tensor) -> tuple[float, float, float]:
        (g,) = layer_gradients(model, inputs, target=k, layers=[layers[li]])
        dd = g @ v / g.norm(dim=1).clamp_min(1e-12)  # cosine of the gradient with the attacked direction
        return float(tcav_scores(g, tc_dirs).mean()), float(tcav_scores(g, tg).mean()), float(dd.mean())

    out = {}
    for name, dirs in (("cav", tc_dirs), ("tgcav", tg)):
        v = nn.functional.normalize(dirs.mean(0), dim=0)
        before = scores(x, v)
        adv = concept_attack(model, x, target=k, layer=layers[li], direction=v, eps=cfg.eps, steps=cfg.attack_steps)
        after = scores(adv, v)
        out[f"attack_{name}_tcav_increase"] = after[0] - before[0]
        out[f"attack_{name}_tgcav_increase"] = after[1] - before[1]
        out[f"attack_{name}_cos_before"], out[f"attack_{name}_cos_after"] = before[2], after[2]
        with torch.no_grad():
            out[f"attack_{name}_acc"] = float((model(adv).argmax(1) == k).float().mean())
    out["attack_tcav_before"], out["attack_tgcav_before"] = before[:2]
    return out


def _summary(res: Result) -> dict[str, float]:
    rows = res.pair_table()
    kept = [r for r in rows if r["tcav_mean"] >= 0.1]
    out = {"n_pairs_kept": float(len(kept)),
           "cv_tcav": float(np.mean([r["tcav_cv"] for r in kept])) if kept else float("nan"),
           "cv_tgcav": float(np.mean([r["tgcav_cv"] for r in kept])) if kept else float("nan"),
           "rr_tcav": float(np.mean([r["tcav_rr"] for r in kept])) if kept else float("nan"),
           "rr_tgcav": float(np.mean([r["tgcav_rr"] for r in kept])) if kept else float("nan")}
    a, b = np.array([r["tcav_mean"] for r in rows]), np.array([r["tgcav_mean"] for r in rows])
    out["pearson"] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    for tag, (cls, con) in (("planted", PLANTED_PAIR), ("irrelevant", IRRELEVANT_PAIR)):
        if con not in res.concepts:
            continue
        k, c = res.classes.index(cls), res.concepts.index(con)
        for name, s, null in (("tcav", res.tcav, res.tcav_null), ("tgcav", res.tgcav, res.tgcav_null)):
            per_rep, null_rep = s[:, k, c, :].mean(0), null[:, k, :].mean(0)  # mean over layers, per repeat
            out[f"{tag}_{name}_mean"] = float(per_rep.mean())
            out[f"{tag}_{name}_p"] = tcav_significance(per_rep, null_rep)[1]
    top, testable = 0, 0
    for k, cls in enumerate(res.classes):
        if PLANTED[cls] in res.concepts:
            testable += 1
            top += int(res.concepts[int(np.argmax(res.tgcav[:, k].mean((0, 2))))] == PLANTED[cls])
    out["top_planted"], out["top_testable"] = float(top), float(testable)
    return out


# ------------------------------------------------------------------------------------------------- the claims
def _untestable(thr: str, note: str) -> Verdict:
    return Verdict(float("nan"), thr, UNTESTABLE, note=note)


def _c1(res: Result) -> Verdict:
    m = res.metrics
    if not m["n_pairs_kept"] or not m["cv_tcav"] > 0:
        return _untestable("<= 0.5", "no (class, concept) pair with mean TCAV ≥ 0.1 or zero TCAV CV")
    return compare(m["cv_tgcav"] / m["cv_tcav"], "<=", 0.5,
                   note=f"mean CV TGCAV {m['cv_tgcav']:.3f} / TCAV {m['cv_tcav']:.3f} over "
                        f"{int(m['n_pairs_kept'])} pairs with mean TCAV ≥ 0.1")


def _c2_planted(res: Result) -> Verdict:
    if "planted_tgcav_mean" not in res.metrics:
        return _untestable(">= 0.7", "concept 'striped' not in the run")
    return compare(res.metrics["planted_tgcav_mean"], ">=", 0.7,
                   note=f"TCAV mean {res.metrics['planted_tcav_mean']:.3f}")


def _c2_irrelevant(res: Result) -> Verdict:
    if "irrelevant_tgcav_mean" not in res.metrics:
        return _untestable("<= 0.4", "concept 'hexagonal' not in the run")
    return compare(res.metrics["irrelevant_tgcav_mean"], "<=", 0.4,
                   note=f"TCAV mean {res.metrics['irrelevant_tcav_mean']:.3f}")


def _c2_null(res: Result) -> Verdict:
    m = res.metrics
    ps = {tag: m[f"{tag}_tgcav_p"] for tag in ("planted", "irrelevant") if f"{tag}_tgcav_p" in m}
    if len(ps) < 2:
        return _untestable("< 0.05", "needs both the planted and the irrelevant pair")
    return compare(max(ps.values()), "<", 0.05,
                   note="max p of the two pairs (TGCAV vs null through the fusion); TCAV p: "
                        f"{m['planted_tcav_p']:.2g}, {m['irrelevant_tcav_p']:.2g}")


def _c2_pearson(res: Result) -> Verdict:
    return compare(res.metrics["pearson"], ">=", 0.8,
                   note=f"over {len(res.classes) * len(res.concepts)} (class, concept) pairs")


def _c2_top(res: Result) -> Verdict:
    m = res.metrics
    if m["top_testable"] < len(CLASSES):
        return _untestable(">= 4", f"planted concepts of only {int(m['top_testable'])} of 5 classes in the run")
    return compare(m["top_planted"], ">=", 4.0, note="classes (of 5) whose planted concept has the top TGCAV mean")


def _c3(res: Result) -> Verdict:
    m = res.metrics
    if "attack_cav_tcav_increase" not in m:
        return _untestable("<= 0.5", "concept 'dotted' not in the run")
    d_tcav, d_tg = m["attack_cav_tcav_increase"], m["attack_cav_tgcav_increase"]
    if d_tcav < 0.2:
        return _untestable("<= 0.5", f"inconclusive: the attack raised TCAV by {d_tcav:.3f} < 0.2")
    return compare(abs(d_tg) / abs(d_tcav), "<=", 0.5, note=f"|Δ TGCAV| {abs(d_tg):.3f} / |Δ TCAV| {abs(d_tcav):.3f}")


CLAIMS = (
    Claim("c1_consistency",
          "Over the (class, concept) pairs with mean TCAV ≥ 0.1, the mean across-layer coefficient of variation of "
          "TGCAV is at most half that of TCAV (value: ratio of the two means).", _c1),
    Claim("c2_planted_pair", "The planted pair (zebra, striped) keeps a TGCAV mean ≥ 0.7 (over layers and repeats).",
          _c2_planted),
    Claim("c2_irrelevant_pair", "The irrelevant pair (zebra, hexagonal) has a TGCAV mean ≤ 0.4.", _c2_irrelevant),
    Claim("c2_vs_null",
          "Both pairs' TGCAV scores differ from the random-vs-random CAVs passed through the same fusion and decoders "
          "(two-sided t-test over repeats, p < 0.05; value: the larger p).", _c2_null),
    Claim("c2_pearson", "Mean TCAV and mean TGCAV scores correlate over all (class, concept) pairs (Pearson ≥ 0.8).",
          _c2_pearson),
    Claim("c2_top_concept", "For at least 4 of 5 classes, the planted concept has the highest TGCAV mean.", _c2_top),
    Claim("c3_attack",
          "A PGD attack (ε = 8/255, 20 steps) maximising the directional derivative along the dotted CAV at block 3 "
          "raises the (zebra, dotted) TGCAV score by at most half of what it raises TCAV; not testable when the "
          "attack raises TCAV by less than 0.2 (value: |ΔTGCAV| / |ΔTCAV|).", _c3),
)
