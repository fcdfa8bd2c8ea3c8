"""arXiv 1911.03852 — HAWQ-V2: Hessian-aware trace-weighted mixed-precision quantization (Dong et al., NeurIPS 2020).

What is reproduced, at laptop scale: a conv16–conv32–fc64–fc10 CNN on scikit-learn's digits and a 4-layer MLP on
mnist1d are trained in FP32. For each model and seed, on a fixed Hessian batch of the training set, we estimate
each layer's Hessian trace with Hutchinson's method (Rademacher probes, double-backward HVPs) and its top eigenvalue
by power iteration, and check the estimator against the exact trace of the small layers (row-wise HVPs). Every
configuration of per-layer weight bit widths (b ∈ {2, 3, 4, 8}: 4⁴ = 256) is quantized post-training (symmetric,
per channel) and scored by ΣΩ with the trace (HAWQ-V2) and with the top eigenvalue (HAWQ-V1) against the true
training-loss increase and test accuracy; min-ΣΩ selection under size budgets is compared with baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from nnsens.data import digits, mnist1d_split
from nnsens.measures.hessian import exact_layer_traces, layer_hessian_traces, make_hvp
from nnsens.measures.quantization import quantize
from nnsens.measures.spectrum import layer_top_eigenvalues
from nnsens.methods import hawq
from nnsens.models import MLP, SmallCNN
from nnsens.study import Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import fit

PAPER = Paper(
    title="HAWQ-V2: Hessian Aware trace-Weighted Quantization of Neural Networks",
    authors="Zhen Dong, Zhewei Yao, Daiyaan Arfeen, Amir Gholami, Michael W. Mahoney, Kurt Keutzer",
    year=2020,
    arxiv="1911.03852",
    code="none for V2; related: github.com/Zhen-Dong/HAWQ (HAWQ-V3), github.com/amirgholami/PyHessian",
)
MODELS = ("cnn", "mlp")


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P39 (defaults = smoke scale)."""

    n_seeds: int = param(1, low=1, high=20, doc="independently initialised and trained models per architecture")
    bits: tuple[int, ...] = param((2, 4), low=2, high=16, doc="candidate weight bit widths per layer")
    n_probes: int = param(32, low=2, high=100_000, doc="Rademacher probes of the Hutchinson trace (sweepable)")
    budgets: tuple[float, ...] = param((3.0, 4.0, 5.0), low=1.0, high=32.0,
                                       doc="size budgets, parameter-weighted average bits (sweepable)")
    hessian_batch: int = param(64, low=16, high=60_000, doc="training samples the Hessian is taken on")
    exact_max_params: int = param(1000, low=0, high=4096, doc="exact trace (row-wise HVP) for layers this small")
    exact_seeds: int = param(1, low=0, high=20, doc="seeds (from the first) on which exact traces are computed")
    power_iters: int = param(100, low=1, high=10_000, doc="power-iteration cap for the top eigenvalue")
    power_tol: float = param(1e-4, low=1e-12, high=1.0, doc="relative-change stopping tolerance of power iteration")
    cnn_epochs: int = param(5, low=1, high=500, doc="training epochs of the digits CNN")
    mlp_epochs: int = param(5, low=1, high=500, doc="training epochs of the mnist1d MLP")
    batch_size: int = param(128, low=1, high=100_000, doc="training minibatch size (Adam)")
    lr: float = param(2e-3, low=1e-6, high=1.0, doc="training learning rate (Adam)")
    mlp_hidden: int = param(128, low=8, high=2048, doc="width of the MLP's three hidden layers")
    mnist1d_train: int = param(500, low=500, high=100_000, doc="mnist1d training samples")
    n_random: int = param(20, low=1, high=10_000, doc="draws of the random selector, averaged")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.bits)) != len(self.bits):
            raise ValueError(f"The 'bits' parameter of P39 must not repeat values. Got {self.bits!r} instead.")
        if self.exact_seeds > self.n_seeds:
            raise ValueError(
                f"The 'exact_seeds' parameter of P39 must be in [0, n_seeds={self.n_seeds}]. "
                f"Got {self.exact_seeds!r} instead."
            )


PRESETS = {
    "smoke": Config(),
    "cpu": Config(n_seeds=3, bits=(2, 3, 4, 8), n_probes=200, hessian_batch=256, exact_seeds=1, cnn_epochs=20,
                  mlp_epochs=20, mnist1d_train=4000),
    "paper": Config(n_seeds=5, bits=(2, 3, 4, 8), n_probes=1000, hessian_batch=1347, exact_seeds=5,
                    cnn_epochs=40, mlp_epochs=40, mnist1d_train=20_000, power_iters=300, n_random=200),
}


@dataclass(frozen=True)
class ModelRun:
    """Everything measured on one trained model (one architecture, one seed). Arrays over layers are (L,),
    over configurations (C,)."""

    model: str
    seed: int
    layers: tuple[str, ...]
    n_params: np.ndarray
    trace: np.ndarray  # Hutchinson Tr(H_i) of each layer's weight block
    trace_se: np.ndarray  # its standard error
    eig: np.ndarray  # λ_max(H_i) by power iteration
    exact: dict[str, float]  # exact Tr(H_i) for the small layers
    delta_sq: np.ndarray  # (L, B) ‖Q_b(W_i) − W_i‖²
    configs: np.ndarray  # (C, L) bit widths
    size: np.ndarray  # parameter-weighted average bits
    omega_trace: np.ndarray  # ΣΩ with Tr(H_i)/n_i
    omega_eig: np.ndarray  # ΣΩ with λ_max(H_i)
    loss_increase: np.ndarray  # training loss after PTQ − FP32 training loss
    test_acc: np.ndarray
    omega_quad: np.ndarray  # diagnostic: Σ_i Δ_iᵀ H_ii Δ_i, the block quadratic form the trace approximates
    fp_train_loss: float
    fp_test_acc: float
    rho_trace: float
    rho_eig: float
    picks: dict[str, dict[float, int]]  # selector → budget → configuration index (-1: nothing fits)
    random_acc: dict[float, float]  # mean test accuracy of the random selector's draws
    median_acc: dict[float, float]  # median test accuracy of all configurations within the budget

    def acc_of(self, selector: str, budget: float) -> float:
        """Test accuracy of a selector's pick (NaN when nothing fits the budget)."""
        if selector == "random":
            return self.random_acc[budget]
        i = self.picks[selector][budget]
        return float(self.test_acc[i]) if i >= 0 else float("nan")


@dataclass(frozen=True)
class Result:
    """All model runs, the grids they share, and the headline metrics."""

    runs: tuple[ModelRun, ...]
    bits: tuple[int, ...]
    budgets: tuple[float, ...]
    metrics: dict[str, float]

    def of(self, model: str) -> list[ModelRun]:
        return [r for r in self.runs if r.model == model]


def _data(model: str, cfg: Config, device: torch.device):
    if model == "cnn":
        xtr, ytr, xte, yte = digits(seed=cfg.seed)
    else:
        xtr, ytr, xte, yte = mnist1d_split(cfg.mnist1d_train, cfg.mnist1d_train // 4, seed=cfg.seed)
    return [t.to(device) for t in (xtr, ytr, xte, yte)]


def _build(model: str, cfg: Config, seed: int, device: torch.device) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(pool="flatten", image_size=8) if model == "cnn" else MLP((40,) + (cfg.mlp_hidden,) * 3 + (10,))
    return net.to(device)


def _curvature(net, xh, yh, layers, n_params, cfg: Config, rep: int, gen: torch.Generator):
    """Per-layer Hutchinson trace (with SE), top eigenvalue, and exact trace of the small layers."""
    # HAWQ-V2 and claim 1 are about Hutchinson's estimator and its standard error: ask for it explicitly.
    est = layer_hessian_traces(net, xh, target=yh, n_samples=cfg.n_probes, params=layers, method="hutchinson",
                               generator=gen)
    eig = layer_top_eigenvalues(net, xh, target=yh, params=layers, max_iter=cfg.power_iters, tol=cfg.power_tol,
                                generator=gen)
    small = [n for n, k in zip(layers, n_params) if k <= cfg.exact_max_params]
    exact = exact_layer_traces(net, xh, target=yh, params=small) if small and rep < cfg.exact_seeds else {}
    as_array = lambda d: np.array([d[n] for n in layers])  # noqa: E731
    return as_array(est.mean), as_array(est.std), as_array(eig), exact


def _quad_form(net, xh, yh, layers, weights, qweights) -> np.ndarray:
    """Diagnostic (not in the claims): Δᵀ H_ii Δ of each actual rounding error Δ = Q_b(W_i) − W_i, (L, B).

    The trace replaces it by (Tr(H_ii)/n_i)·‖Δ‖², which is its expectation only for a direction-free Δ.
    """
    out = np.zeros((len(layers), len(qweights[0])))
    for i, name in enumerate(layers):
        hvp = make_hvp(net, xh, target=yh, params=[name])
        for j, q in enumerate(qweights[i]):
            d = q - weights[i]
            out[i, j] = float((d * hvp([d])[0]).sum())
    return out


def _one(model: str, cfg: Config, rep: int, data, device: torch.device) -> ModelRun:
    """Train one model, measure its curvature, and score all bit configurations and selectors."""
    seed = cfg.seed + rep
    xtr, ytr, xte, yte = data
    net = _build(model, cfg, seed, device)
    fit(net, xtr, ytr, epochs=cfg.cnn_epochs if model == "cnn" else cfg.mlp_epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, generator=seed)
    gen = torch.Generator().manual_seed(seed)
    hidx = torch.randperm(xtr.shape[0], generator=gen)[: cfg.hessian_batch].to(device)
    xh, yh = xtr[hidx], ytr[hidx]  # the Hessian batch
    layers, stages = hawq.chain_stages(net)
    named = dict(net.named_parameters())
    n_params = np.array([named[n].numel() for n in layers])
    trace, trace_se, eig, exact = _curvature(net, xh, yh, layers, n_params, cfg, rep, gen)
    weights = [named[n].detach() for n in layers]
    qweights = [[quantize(w, b) for b in cfg.bits] for w in weights]  # qweights[i][j]: layer i at bits[j]
    delta_sq = hawq.perturbation_sq(weights, cfg.bits)
    om_trace = hawq.layer_omega(trace / n_params, delta_sq)  # (L, B) tables
    om_eig = hawq.layer_omega(eig, delta_sq)
    om_rev = hawq.layer_omega(hawq.reversed_sensitivity(trace / n_params), delta_sq)
    om_quad = _quad_form(net, xh, yh, layers, weights, qweights)
    cidx = hawq.enumerate_configs(len(layers), len(cfg.bits))  # (C, L) bit-width indices
    size = hawq.config_size(cidx, cfg.bits, n_params)

    # All configurations on the training and test sets in one pass over both (prefix activations shared).
    x_all, ntr = torch.cat([xtr, xte]), xtr.shape[0]
    ce = torch.nn.functional.cross_entropy
    score = lambda z: (ce(z[:ntr], ytr).item(), (z[ntr:].argmax(1) == yte).float().mean().item())  # noqa: E731
    was = net.training
    net.eval()
    scores = hawq.evaluate_chain(stages, qweights, x_all, score)
    fp = hawq.evaluate_chain(stages, [[w] for w in weights], x_all, score)[0]
    net.train(was)
    loss_inc, test_acc = scores[:, 0] - fp[0], scores[:, 1]

    rng = np.random.default_rng(seed)
    picks: dict[str, dict[float, int]] = {s: {} for s in hawq.SELECTORS if s != "random"}
    random_acc, median_acc = {}, {}
    for b in cfg.budgets:
        kw = dict(configs=cidx, size=size, budget=b, omega_trace=om_trace, omega_eig=om_eig, omega_reversed=om_rev)
        for s in picks:
            picks[s][b] = hawq.select(s, **kw)
        draws = [hawq.select("random", generator=rng, **kw) for _ in range(cfg.n_random)]
        random_acc[b] = float(np.mean(test_acc[draws])) if draws[0] >= 0 else float("nan")
        inside = size <= b + 1e-9
        median_acc[b] = float(np.median(test_acc[inside])) if inside.any() else float("nan")
    sig_t, sig_e = hawq.total_omega(cidx, om_trace), hawq.total_omega(cidx, om_eig)
    return ModelRun(
        model=model, seed=seed, layers=tuple(layers), n_params=n_params, trace=trace, trace_se=trace_se, eig=eig,
        exact=exact, delta_sq=delta_sq, configs=np.asarray(cfg.bits)[cidx], size=size, omega_trace=sig_t,
        omega_eig=sig_e, loss_increase=loss_inc, test_acc=test_acc, omega_quad=hawq.total_omega(cidx, om_quad),
        fp_train_loss=float(fp[0]), fp_test_acc=float(fp[1]),
        rho_trace=float(spearmanr(sig_t, loss_inc).statistic), rho_eig=float(spearmanr(sig_e, loss_inc).statistic),
        picks=picks, random_acc=random_acc, median_acc=median_acc,
    )


def run(cfg: Config) -> Result:
    """Train, measure and score every configuration for both models and all seeds (see the module docstring)."""
    device = resolve_device(cfg.device)
    runs = []
    for model in MODELS:
        data = _data(model, cfg, device)
        runs += [_one(model, cfg, rep, data, device) for rep in range(cfg.n_seeds)]
    metrics: dict[str, float] = {}
    for model in MODELS:
        rs = [r for r in runs if r.model == model]
        metrics[f"{model}_fp_test_acc"] = float(np.mean([r.fp_test_acc for r in rs]))
        metrics[f"{model}_rho_trace"] = float(np.mean([r.rho_trace for r in rs]))
        metrics[f"{model}_rho_eig"] = float(np.mean([r.rho_eig for r in rs]))
        metrics[f"{model}_rho_quad"] = float(np.mean([spearmanr(r.omega_quad, r.loss_increase).statistic for r in rs]))
        metrics[f"{model}_tied_pairs"] = float(len(ranking(rs[0])[1]))
    metrics["max_exact_z"] = _exact_z(runs)[0]
    return Result(tuple(runs), tuple(cfg.bits), tuple(cfg.budgets), metrics)


# ------------------------------------------------------------------------------------------------- analysis
def ranking(r: ModelRun, n_se: float = 3.0) -> tuple[list[str], list[tuple[str, str]]]:
    """Layers sorted by Tr(H_i)/n_i (descending) and the adjacent pairs closer than ``n_se`` combined SEs (ties)."""
    avg, se = r.trace / r.n_params, r.trace_se / r.n_params
    order = np.argsort(-avg)
    ties = [
        (r.layers[a], r.layers[b]) for a, b in zip(order[:-1], order[1:])
        if abs(avg[a] - avg[b]) < n_se * np.hypot(se[a], se[b])
    ]
    return [r.layers[i] for i in order], ties


def _exact_z(runs) -> tuple[float, str]:
    """Largest |Hutchinson − exact| / SE over every layer with an exact trace; and where it occurred."""
    worst, where = float("nan"), "no exact trace computed"
    for r in runs:
        for name, ex in r.exact.items():
            i = r.layers.index(name)
            z = abs(r.trace[i] - ex) / r.trace_se[i]
            if not z <= worst:  # also replaces the initial NaN
                worst, where = float(z), f"{r.model} seed {r.seed} {name}"
    return worst, where


def _c1(res: Result) -> Verdict:
    z, where = _exact_z(res.runs)
    if np.isnan(z):
        return Verdict(z, "<= 3", "NOT TESTABLE", note="no layer small enough for an exact trace")
    order, ties = ranking(res.of("cnn")[0])
    note = f"worst: {where}; cnn ranking {' > '.join(order)}; ties (<3 SE): {ties or 'none'}"
    return compare(z, "<=", 3.0, note=note)


def _c2_rho(res: Result) -> Verdict:
    vals = {(r.model, r.seed): r.rho_trace for r in res.runs}
    key = min(vals, key=vals.get)
    return compare(vals[key], ">=", 0.8, note=f"min over model and seed at {key}")


def _c2_vs_eig(res: Result) -> Verdict:
    diffs = {m: np.mean([r.rho_trace for r in res.of(m)]) - np.mean([r.rho_eig for r in res.of(m)]) for m in MODELS}
    key = min(diffs, key=diffs.get)
    return compare(float(diffs[key]), ">=", 0.0, note=f"mean ρ_trace − mean ρ_eig, worst model {key}")


def _c3(res: Result, against: str, thr: float) -> Verdict:
    """min over model × budget of mean-over-seeds (acc_trace − acc_other), in accuracy points."""
    gaps = {}
    for m in MODELS:
        for b in res.budgets:
            other = [r.median_acc[b] if against == "median" else r.acc_of("eig", b) for r in res.of(m)]
            mine = [r.acc_of("trace", b) for r in res.of(m)]
            gaps[(m, b)] = 100 * (np.mean(mine) - np.mean(other))
    if all(np.isnan(g) for g in gaps.values()):
        return Verdict(float("nan"), f">= {thr:g}", "NOT TESTABLE", note="no configuration fits any budget")
    if any(np.isnan(g) for g in gaps.values()):
        empty = [k for k, g in gaps.items() if np.isnan(g)]
        return Verdict(float("nan"), f">= {thr:g}", "NOT TESTABLE", note=f"no configuration within budget: {empty}")
    key = min(gaps, key=gaps.get)
    return compare(float(gaps[key]), ">=", thr, note=f"points; worst (model, budget) = {key}")


CLAIMS = (
    Claim("c1_trace_within_3se",
          "For every layer small enough for an exact (row-wise HVP) trace, the Hutchinson trace is within 3 of its "
          "own standard errors of it (value: the largest |estimate − exact| / SE).", _c1),
    Claim("c2_rho_trace",
          "ΣΩ with the trace ranks configurations by their training-loss increase: Spearman ρ ≥ 0.8 on each model "
          "and seed (value: the smallest ρ).", _c2_rho),
    Claim("c2_trace_vs_eig",
          "The trace orders configurations at least as well as the top eigenvalue: mean ρ_trace − mean ρ_eig ≥ 0 "
          "on each model (value: the smaller difference).", _c2_vs_eig),
    Claim("c3_trace_vs_median",
          "Under each size budget the min-ΣΩ(trace) configuration beats the median configuration within the budget "
          "by ≥ 2 accuracy points on each model, mean over seeds (value: the smallest margin, points).",
          lambda res: _c3(res, "median", 2.0)),
    Claim("c3_trace_vs_eig",
          "Under each size budget the min-ΣΩ(trace) configuration is at least as accurate as the min-ΣΩ(eig) one on "
          "each model, mean over seeds (value: the smallest margin, points).",
          lambda res: _c3(res, "eig", 0.0)),
)
