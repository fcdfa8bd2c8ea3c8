"""arXiv 2011.00241 — Methods for Pruning Deep Neural Networks (Vadera & Ameen, IEEE Access 2022), a survey.

The survey runs no experiments: it sorts some 150 pruning papers into families (magnitude, clustering / redundancy,
sensitivity analysis) and compiles their published ImageNet and CIFAR numbers. What is reproduced here, at laptop
scale, is a side-by-side run of the families on one network: the "LeNet-300-100" analogue, an MLP 64-300-100-10
trained with Adam and L2 weight decay λ on scikit-learn's digits (80/20 split, the split fixed by ``seed``, the
initialisation and data order varying with the replicate), pruned one-shot to each target sparsity of the weights
and then fine-tuned for 3 epochs with the pruned entries held at zero:

- magnitude: global and layer-wise |w| (:mod:`nnsens.methods.pruning`);
- sensitivity: OBD's ½F_jj·w_j² with F the exact Gauss–Newton (= Fisher) diagonal, first-order Taylor |w·g|, and
  SNIP's connection sensitivity scored at initialisation (:mod:`nnsens.measures.loss_sensitivity`); SNIP follows
  its own protocol: the masked network is trained from its initialisation for the dense epoch budget;
- redundancy: neuron merging by cosine similarity of incoming weights, to the same number of weights
  (:mod:`nnsens.methods.neuron_merging`), and k-means weight sharing at b-bit indices (own table: no sparsity);
- Optimal Brain Surgeon on the output layer (100×10 weights) with the exact Hessian of the regularised objective
  (:mod:`nnsens.methods.obs`): claim 1 checks its predicted increase against the actual one, claim 2a compares
  iterative OBS with magnitude pruning of that layer.

The catalog's 1-D CNN on mnist1d and the paper scale's 1-D ResNet with iterative pruning are not implemented.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from nnsens.data import digits
from nnsens.measures.loss_sensitivity import snip_scores, taylor_sensitivity
from nnsens.methods import pruning
from nnsens.methods.neuron_merging import merge_neurons, widths_for_budget
from nnsens.methods.obs import (
    iterative_obs,
    layer_objective,
    linear_gauss_newton_diagonal,
    magnitude_path,
    obs_saliency,
    obs_step,
)
from nnsens.models import MLP
from nnsens.study import UNTESTABLE, Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import accuracy, fit

PAPER = Paper(
    title="Methods for Pruning Deep Neural Networks",
    authors="Sunil Vadera, Salem Ameen",
    year=2022,
    arxiv="2011.00241",
    doi="10.1109/ACCESS.2022.3182659",
    code="",
)
METHODS = ("magnitude_global", "magnitude_layer", "obd", "taylor", "snip", "merge")
SIZES = (64, 300, 100, 10)
LAST = "4"  # the output nn.Linear of MLP(SIZES): modules 0, 2, 4 are Linear


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P32 (defaults = smoke scale)."""

    n_seeds: int = param(1, low=1, high=20, doc="replicates (initialisation and data order)")
    sparsities: tuple[float, ...] = param((0.5, 0.9), low=0.05, high=0.995,
                                          doc="target fractions of weights pruned (sweepable)")
    methods: tuple[str, ...] = param(("magnitude_global", "obd", "merge"), choices=METHODS,
                                     doc="pruning methods run on the whole MLP")
    fine_tune: bool = param(True, doc="also fine-tune every pruned network (claim 3 needs it; sweepable)")
    epochs: int = param(10, low=1, high=1000, doc="dense training epochs (Adam, linear lr decay)")
    finetune_epochs: int = param(3, low=1, high=100, doc="fine-tuning epochs after pruning")
    lr: float = param(1e-3, low=1e-6, high=1.0, doc="Adam learning rate (training and fine-tuning)")
    weight_decay: float = param(5e-4, low=1e-6, high=1.0,
                                doc="λ: training L2 weight decay, also the regulariser of OBS's Hessian")
    batch_size: int = param(64, low=1, high=2048, doc="minibatch size")
    n_obs_weights: int = param(200, low=10, high=1000, doc="random output-layer weights of claim 1")
    kmeans_bits: tuple[int, ...] = param((2,), low=1, high=8, doc="index bits b of k-means sharing (k = 2^b)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("sparsities", "methods", "kmeans_bits"):
            v = getattr(self, name)
            if len(set(v)) != len(v):
                raise ValueError(f"The '{name}' parameter of P32 must not repeat values. Got {v!r} instead.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(n_seeds=3, sparsities=(0.5, 0.7, 0.8, 0.9, 0.95, 0.98), methods=METHODS, epochs=20,
                  kmeans_bits=(1, 2, 3, 4)),
    "paper": Config(n_seeds=5, sparsities=(0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99), methods=METHODS, epochs=100,
                    kmeans_bits=(1, 2, 3, 4, 5, 6)),
}


@dataclass(frozen=True)
class SeedRun:
    """Everything measured with one replicate."""

    seed: int
    dense_acc: float
    grad_trained: float  # ‖∇f‖ of the output layer's regularised objective after Adam, before the refit
    grad_norm: float  # ‖∇f‖ at the refit weights, where the Hessian is taken
    first_order_share: float  # median over claim 1's weights of |gᵀδw| / predicted increase
    predicted: np.ndarray  # claim 1: OBS's predicted increase, (n_obs_weights,)
    actual: np.ndarray  # claim 1: actual increase of the objective after the full OBS step
    rho: float
    last_obs: dict[float, float]  # sparsity of the output layer → test accuracy, iterative OBS
    last_magnitude: dict[float, float]  # same, magnitude pruning of that layer only
    oneshot: dict[tuple[str, float], float]  # (method, sparsity) → test accuracy right after pruning
    tuned: dict[tuple[str, float], float]  # after fine-tuning (SNIP: after training from its initialisation)
    kept: dict[tuple[str, float], int]  # non-zero weights left
    kept_layers: dict[tuple[str, float], tuple[float, ...]]  # one-shot: fraction of each layer's weights left
    widths: dict[float, tuple[int, ...]]  # sizes of the merged network
    kmeans: dict[int, float]  # bits → test accuracy after k-means sharing of every weight tensor


@dataclass(frozen=True)
class Result:
    runs: tuple[SeedRun, ...]
    sparsities: tuple[float, ...]
    methods: tuple[str, ...]
    kmeans_bits: tuple[int, ...]
    n_weights: int
    metrics: dict[str, float]

    def mean_acc(self, method: str, sparsity: float, tuned: bool = True) -> float:
        """Test accuracy (points) of a method at a sparsity, mean over replicates."""
        return float(np.mean([100 * (r.tuned if tuned else r.oneshot)[(method, sparsity)] for r in self.runs]))

    def dense(self) -> float:
        return float(np.mean([100 * r.dense_acc for r in self.runs]))

    def spread(self, sparsity: float, tuned: bool = True) -> float:
        """max − min over the methods of their mean accuracies (points) at ``sparsity``."""
        accs = [self.mean_acc(m, sparsity, tuned) for m in self.methods]
        return float(max(accs) - min(accs))


def _build(seed: int, device: torch.device) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP(SIZES)
    return net.to(device)


def _with_last(net: torch.nn.Module, w: torch.Tensor) -> torch.nn.Module:
    out = copy.deepcopy(net)
    lin = dict(out.named_modules())[LAST]
    with torch.no_grad():
        lin.weight.copy_(w.reshape(lin.weight.shape))
    return out


def _obs_checks(cfg: Config, net, xtr, ytr, xte, yte, seed: int):
    """Claims 1 and 2a on the output layer: OBS prediction vs actual increase, iterative OBS vs magnitude."""
    obj = layer_objective(net, xtr, target=ytr, layer=LAST, weight_decay=cfg.weight_decay)
    w, g = obj.weights, obj.gradient()
    h = obj.hessian()
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))  # H = H_L + λI is positive definite
    n = w.numel()
    sal = obs_saliency(w, hinv)
    rng = np.random.default_rng([seed, 32])
    idx = rng.choice(n, size=min(cfg.n_obs_weights, n), replace=False)
    f0 = float(obj.value())
    actual, first = [], []
    for q in idx.tolist():
        w_new = obs_step(w, hinv, q)
        actual.append(float(obj.value(w_new)) - f0)
        first.append(abs(float(g @ (w_new - w))))
    pred = sal[idx].cpu().numpy()
    actual, first = np.array(actual), np.array(first)
    counts = {s: round(s * n) for s in cfg.sparsities}
    path = iterative_obs(w, hinv, sorted(set(counts.values())))
    mag = magnitude_path(w, sorted(set(counts.values())))
    last_obs = {s: accuracy(_with_last(net, path.weights[c].float()), xte, yte) for s, c in counts.items()}
    last_mag = {s: accuracy(_with_last(net, mag[c].float()), xte, yte) for s, c in counts.items()}
    rho = float(spearmanr(pred, actual).statistic)
    return float(g.norm()), float(np.median(first / pred)), pred, actual, rho, last_obs, last_mag


def _one(cfg: Config, rep: int, device: torch.device, data) -> SeedRun:
    seed = cfg.seed + rep
    xtr, ytr, xte, yte = data
    train = dict(batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay)
    init = _build(seed, device)
    net = copy.deepcopy(init)
    fit(net, xtr, ytr, epochs=cfg.epochs, schedule="linear", generator=seed, **train)
    # OBS assumes a minimum: refit the output layer (features fixed) to the exact minimum of its regularised
    # objective, a strictly convex problem; every method then prunes this same network.
    obj = layer_objective(net, xtr, target=ytr, layer=LAST, weight_decay=cfg.weight_decay)
    grad_trained = float(obj.gradient().norm())
    with torch.no_grad():
        lin = dict(net.named_modules())[LAST]
        lin.weight.copy_(obj.minimise(tol=1e-6).reshape(lin.weight.shape))
    dense_acc = accuracy(net, xte, yte)
    gn, share, pred, actual, rho, last_obs, last_mag = _obs_checks(cfg, net, xtr, ytr, xte, yte, seed)

    weights = pruning.prunable(net)
    scores = {}
    for m in cfg.methods:
        if m.startswith("magnitude"):
            scores[m] = pruning.magnitude_scores(net)
        elif m == "obd":
            # ½·F_jj·w_j²: the exact Gauss–Newton diagonal, = obd_saliency(curvature="gauss_newton"), fast path
            fisher = linear_gauss_newton_diagonal(net, xtr, target=ytr)
            scores[m] = {n: 0.5 * fisher[n] * dict(net.named_parameters())[n].detach() ** 2 for n in weights}
        elif m == "taylor":
            scores[m] = taylor_sensitivity(net, xtr, target=ytr, params=weights)
        elif m == "snip":
            scores[m] = snip_scores(init, xtr, target=ytr, params=weights)  # SNIP scores the initialisation
    n_weights = sum(p.numel() for n, p in net.named_parameters() if n in weights)
    oneshot, tuned, kept, kept_layers, widths = {}, {}, {}, {}, {}
    for s in cfg.sparsities:
        for m in cfg.methods:
            if m == "merge":
                sizes = widths_for_budget(SIZES, round((1 - s) * n_weights))
                small = merge_neurons(net, {"0": sizes[1], "2": sizes[2]})
                widths[s] = sizes
                masks = None
            else:
                masks = pruning.masks_from_scores(scores[m], s, scope="layerwise" if m == "magnitude_layer"
                                                  else "global")
                small = pruning.apply_masks(copy.deepcopy(net), masks)
            oneshot[(m, s)] = accuracy(small, xte, yte)
            kept_layers[(m, s)] = tuple(float((p != 0).sum()) / net.get_parameter(n).numel()
                                        for n, p in small.named_parameters() if n.endswith("weight"))
            if m == "snip":  # SNIP's own protocol: the mask is fixed at initialisation, then trained
                small = pruning.apply_masks(copy.deepcopy(init), masks)
                if cfg.fine_tune:
                    pruning.fine_tune(small, masks, xtr, ytr, epochs=cfg.epochs, schedule="linear",
                                      generator=seed, **train)
            elif cfg.fine_tune:
                pruning.fine_tune(small, masks, xtr, ytr, epochs=cfg.finetune_epochs, generator=seed, **train)
            tuned[(m, s)] = accuracy(small, xte, yte) if cfg.fine_tune else float("nan")
            kept[(m, s)] = sum(int((p != 0).sum()) for n, p in small.named_parameters() if n.endswith("weight"))
    kmeans = {b: accuracy(pruning.kmeans_share(net, 2**b, generator=seed), xte, yte) for b in cfg.kmeans_bits}
    return SeedRun(seed, dense_acc, grad_trained, gn, share, pred, actual, rho, last_obs, last_mag, oneshot, tuned,
                   kept, kept_layers, widths, kmeans)


def run(cfg: Config) -> Result:
    """Train the MLP per replicate; OBS checks on its output layer; prune with every method at every sparsity."""
    device = resolve_device(cfg.device)
    data = tuple(t.to(device) for t in digits(test_size=0.2, seed=cfg.seed, flat=True))
    runs = tuple(_one(cfg, rep, device, data) for rep in range(cfg.n_seeds))
    n_weights = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=False))
    res = Result(runs, tuple(cfg.sparsities), tuple(cfg.methods), tuple(cfg.kmeans_bits), n_weights, {})
    mean = lambda xs: float(np.mean(list(xs)))  # noqa: E731
    metrics = {
        "dense_acc": res.dense(),
        "obs_rho_min": min(r.rho for r in runs),
        "obs_rho_mean": mean(r.rho for r in runs),
        "grad_norm_max": max(r.grad_norm for r in runs),
        "grad_trained_max": max(r.grad_trained for r in runs),
        "first_order_share": mean(r.first_order_share for r in runs),
    }
    for s in cfg.sparsities:
        metrics[f"last_obs_{s:g}"] = mean(100 * r.last_obs[s] for r in runs)
        metrics[f"last_magnitude_{s:g}"] = mean(100 * r.last_magnitude[s] for r in runs)
        for m in cfg.methods:
            metrics[f"{m}_{s:g}_oneshot"] = res.mean_acc(m, s, tuned=False)
            if cfg.fine_tune:
                metrics[f"{m}_{s:g}_tuned"] = res.mean_acc(m, s, tuned=True)
        if cfg.fine_tune:
            metrics[f"spread_{s:g}"] = res.spread(s)
    for b in cfg.kmeans_bits:
        metrics[f"kmeans_{b}bit"] = mean(100 * r.kmeans[b] for r in runs)
    return Result(runs, tuple(cfg.sparsities), tuple(cfg.methods), tuple(cfg.kmeans_bits), n_weights, metrics)


# ------------------------------------------------------------------------------------------------------- claims
def live_rho(run: SeedRun, floor: float = 1e-12) -> float:
    """Claim 1's ρ without the weights whose predicted increase is below ``floor`` (fed by dead hidden units:
    both increases are round-off there, and their ranks are noise)."""
    live = run.predicted > floor
    return float(spearmanr(run.predicted[live], run.actual[live]).statistic) if live.sum() > 2 else float("nan")


def _c1(res: Result) -> Verdict:
    rhos = [r.rho for r in res.runs]
    note = (f"Spearman ρ over {len(res.runs[0].predicted)} random output-layer weights, min over "
            f"{len(rhos)} replicate(s): {np.round(rhos, 3).tolist()}; without the weights at round-off level "
            f"(dead units): {[round(live_rho(r), 3) for r in res.runs]}; ‖∇f‖ ≤ "
            f"{res.metrics['grad_norm_max']:.2g}, median |gᵀδw| / prediction {res.metrics['first_order_share']:.2g}")
    return compare(min(rhos), ">=", 0.8, note=note)


def _c2a(res: Result) -> Verdict:
    if 0.9 not in res.sparsities:
        return Verdict(float("nan"), ">= 5", UNTESTABLE, note="sparsity 0.9 is not in the run's sparsities")
    gap = [100 * (r.last_obs[0.9] - r.last_magnitude[0.9]) for r in res.runs]
    return compare(float(np.mean(gap)), ">=", 5.0,
                   note=f"points, output layer at 90 %, one-shot; per replicate {np.round(gap, 2).tolist()}")


def _c2b(res: Result) -> Verdict:
    need = {"obd", "magnitude_global"}
    if 0.9 not in res.sparsities or not need <= set(res.methods):
        return Verdict(float("nan"), ">= 0", UNTESTABLE, note="needs sparsity 0.9 and methods obd, magnitude_global")
    gap = [100 * (r.oneshot[("obd", 0.9)] - r.oneshot[("magnitude_global", 0.9)]) for r in res.runs]
    return compare(float(np.mean(gap)), ">=", 0.0,
                   note=f"points, whole MLP at 90 %, one-shot; per replicate {np.round(gap, 2).tolist()}")


def _c3(res: Result) -> Verdict:
    low = [s for s in res.sparsities if s <= 0.8]
    if set(res.methods) != set(METHODS) or not low or not res.runs or np.isnan(res.runs[0].tuned[(METHODS[0],
                                                                                                    low[0])]):
        return Verdict(float("nan"), "<= 1.5", UNTESTABLE,
                       note="needs all six methods, fine-tuning and a sparsity ≤ 0.8")
    spreads = {s: res.spread(s) for s in low}
    worst = max(spreads, key=spreads.get)
    return compare(spreads[worst], "<=", 1.5,
                   note="points, max over sparsities ≤ 80 % of the spread of the fine-tuned 3-seed means; "
                        + ", ".join(f"{100 * s:g} %: {v:.2f}" for s, v in spreads.items()))


CLAIMS = (
    Claim("c1_obs_prediction", "On the output layer, with the exact Hessian of the L2-regularised training loss, "
          "OBS's predicted increase w_q²/(2[H⁻¹]_qq) ranks 200 random weights as the actual increase after the full "
          "OBS step does (Spearman ρ ≥ 0.8, every replicate).", _c1),
    Claim("c2a_obs_vs_magnitude", "Pruning the output layer to 90 % by iterative OBS keeps at least 5 points more "
          "test accuracy than magnitude pruning of that layer (one-shot, mean over replicates).", _c2a),
    Claim("c2b_obd_vs_magnitude", "Global OBD (½·F_jj·w_j², exact Gauss–Newton diagonal) at 90 % of the whole MLP "
          "keeps at least the test accuracy of global magnitude pruning (one-shot, mean over replicates).", _c2b),
    Claim("c3_methods_comparable", "After fine-tuning, at every sparsity ≤ 80 %, the six pruning methods' mean test "
          "accuracies lie within 1.5 points of each other.", _c3),
)
