"""arXiv 2505.15808 — Neural conditional transport maps, applied to optimal-transport sensitivity indices.

What is reproduced, at laptop scale: the OT index ι_i = E_{x_i}[W₂²(P_Y, P_{Y|X_i=x_i})] / E‖Y − Y′‖² of each input
of two black-box models with 4 inputs and 2 outputs is estimated from n given (X, Y) samples in three ways:

- a hypernetwork (input index as an embedding, the bin's mean x_i as a positional encoding) that emits the weights of
  a residual transport MLP, trained with a sliced-Wasserstein loss and a transport-cost penalty
  (:mod:`nnsens.methods.transport_maps`); ι̂_i = mean over bins of E‖T(Y) − Y‖² over 2 tr Cov(Y);
- its ablation, the same map conditioned by concatenation;
- the given-data binning estimator with POT's exact EMD per bin (:mod:`nnsens.measures.global_sa`).

Test models: (a) Y = A X + ε with X ~ N(0, Σ_X), X₁ and X₂ correlated (ρ), where ι has a closed form
(Bures–Wasserstein); (b) a 2-output Ishigami variant on U(−π, π)⁴, with a reference ι from exact conditional
sampling (the model is known) at 16 quantile points of each input, EMD, minus the EMD between two independent
unconditional samples of the same size (the finite-sample bias of the empirical W₂²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ot
import torch
from SALib.test_functions import Ishigami

from nnsens.measures.global_sa import gaussian_ot_index, ot_indices_binning
from nnsens.methods.transport_maps import (
    ConcatTransport,
    HyperTransport,
    fit_transport,
    make_conditions,
    transport_indices,
)
from nnsens.study import UNTESTABLE, Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device

PAPER = Paper(
    title="Neural Conditional Transport Maps",
    authors="Carlos Rodriguez-Pardo, Leonardo Chiani, Emanuele Borgonovo, Massimo Tavoni",
    year=2025,
    arxiv="2505.15808",
    code="none found",
)
# The linear Gaussian test model: A (2 × 4), unit variances, corr(X1, X2) = rho, noise variance 0.25 per output.
# Chosen (before any neural run) so that the sorted closed-form indices differ by >= 0.05 at rho = 0.5.
A_GAUSS = np.array([[1.0, 0.0, 0.7, 0.0], [0.0, 0.4, 0.5, 0.3]])
NOISE_VAR = 0.25
N_INPUTS = 4
REF_POINTS = 16  # quantile points per input of the nonlinear reference
TOL, MIN_GAP = 0.02, 0.05


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P11 (defaults = smoke scale)."""

    n: int = param(2000, low=200, high=1_000_000, doc="given-data sample size (sweepable)")
    bins: int = param(10, low=2, high=200, doc="equal-count conditioning bins per input (sweepable)")
    rho: float = param(0.5, low=-0.95, high=0.95, doc="correlation of X1 and X2 in the Gaussian model (sweepable)")
    cases: str = param("gaussian", choices=("gaussian", "both"), doc="test models: Gaussian only, or + Ishigami")
    n_seeds: int = param(1, low=1, high=20, doc="independent data sets and network initialisations")
    steps: int = param(300, low=1, high=100_000, doc="Adam steps per transport network")
    batch_conditions: int = param(8, low=1, high=1024, doc="conditions (input, bin) per step")
    m: int = param(256, low=8, high=100_000, doc="source and target samples per condition and step")
    n_projections: int = param(32, low=1, high=4096, doc="random directions of the sliced-Wasserstein loss")
    lam: float = param(1e-3, low=0.0, high=10.0, doc="weight of the transport-cost penalty E||T(y) - y||^2")
    lr: float = param(3e-3, low=1e-6, high=1.0, doc="Adam learning rate")
    width: int = param(64, low=4, high=4096, doc="hidden width of the hypernetwork and of the concatenation MLP")
    hidden: int = param(16, low=1, high=1024, doc="hidden width of the emitted residual transport MLP")
    n_ref: int = param(500, low=10, high=1_000_000, doc="subsample standing for P_Y in the binning estimator")
    ref_m: int = param(500, low=10, high=1_000_000, doc="exact conditional samples per point, nonlinear reference")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bins > self.n // 10:
            raise ValueError(f"The 'bins' parameter of P11 must be at most n // 10 = {self.n // 10} (at least 10 "
                             f"samples per bin). Got {self.bins!r} instead.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(n=5000, bins=10, cases="both", n_seeds=3, steps=400),
    "paper": Config(n=200_000, bins=50, cases="both", n_seeds=3, steps=5000, m=1024, width=128, hidden=32,
                    n_ref=5000, ref_m=5000),
}


@dataclass(frozen=True)
class Result:
    iota_true: np.ndarray  # (d,) closed form, Gaussian model
    gauss_neural: np.ndarray  # (seeds, d) hypernetwork
    gauss_binning: np.ndarray  # (seeds, d)
    nl_ref: np.ndarray | None  # (d,) nonlinear reference
    nl_hyper: np.ndarray | None  # (seeds, d)
    nl_concat: np.ndarray | None  # (seeds, d)
    histories: dict[str, list[list[float]]]
    metrics: dict[str, float]


# ------------------------------------------------------------------------------------------------- test models
def gaussian_cov(rho: float) -> np.ndarray:
    """Σ_X: unit variances, corr(X1, X2) = rho."""
    s = np.eye(N_INPUTS)
    s[0, 1] = s[1, 0] = rho
    return s


def sample_gaussian(n: int, rho: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.multivariate_normal(np.zeros(N_INPUTS), gaussian_cov(rho), size=n)
    return x, x @ A_GAUSS.T + np.sqrt(NOISE_VAR) * rng.standard_normal((n, 2))


def ishigami2(x: np.ndarray) -> np.ndarray:
    """Two Ishigami outputs (A = 7, B = 0.1, SALib's function): f(x1, x2, x3) and f(x3, x4, x1)."""
    return np.stack([Ishigami.evaluate(x[:, [0, 1, 2]]), Ishigami.evaluate(x[:, [2, 3, 0]])], axis=1)


def sample_ishigami(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-np.pi, np.pi, size=(n, N_INPUTS))
    return x, ishigami2(x)


def ishigami_reference(m: int, seed: int) -> np.ndarray:
    """ι of :func:`ishigami2` by exact conditional sampling at REF_POINTS quantile midpoints per input (see top)."""
    rng = np.random.default_rng([seed, 11])
    _, big = sample_ishigami(200_000, rng)
    denom = 2 * np.trace(np.cov(big, rowvar=False))
    w = np.full(m, 1.0 / m)
    null = np.mean([ot.emd2(w, w, ot.dist(sample_ishigami(m, rng)[1], sample_ishigami(m, rng)[1]))
                    for _ in range(4)])
    out = np.zeros(N_INPUTS)
    for i in range(N_INPUTS):
        for q in range(REF_POINTS):
            xc, _ = sample_ishigami(m, rng)
            xc[:, i] = -np.pi + 2 * np.pi * (q + 0.5) / REF_POINTS
            _, yu = sample_ishigami(m, rng)
            out[i] += ot.emd2(w, w, ot.dist(yu, ishigami2(xc))) - null
    return np.clip(out / REF_POINTS / denom, 0.0, None)


# ------------------------------------------------------------------------------------------------- the pipeline
def _neural(kind: str, x: np.ndarray, y: np.ndarray, cfg: Config, seed: int, device) -> tuple[np.ndarray, list]:
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)
    yt = (yt - yt.mean(0)) / yt.var(0).mean().sqrt()  # one global scale: ι is invariant to it
    conds = make_conditions(x, cfg.bins, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "hyper":
            net = HyperTransport(N_INPUTS, y.shape[1], hidden=cfg.hidden, width=cfg.width)
        else:
            net = ConcatTransport(N_INPUTS, y.shape[1], width=cfg.width)
    net = net.to(device)
    hist = fit_transport(net, yt, conds, steps=cfg.steps, batch_conditions=cfg.batch_conditions, m=cfg.m,
                         n_projections=cfg.n_projections, lam=cfg.lam, lr=cfg.lr, generator=seed)
    return transport_indices(net, yt, conds, generator=seed), hist


def run(cfg: Config) -> Result:
    device = resolve_device(cfg.device)
    iota = gaussian_ot_index(A_GAUSS, gaussian_cov(cfg.rho), NOISE_VAR)
    gn, gb, hists = [], [], {"gauss_hyper": [], "nl_hyper": [], "nl_concat": []}
    nl_h, nl_c = [], []
    for s in range(cfg.n_seeds):
        seed = int(np.random.default_rng([cfg.seed, s]).integers(2**31 - 1))
        x, y = sample_gaussian(cfg.n, cfg.rho, np.random.default_rng([cfg.seed, s, 1]))
        est, h = _neural("hyper", x, y, cfg, seed, device)
        gn.append(est)
        hists["gauss_hyper"].append(h)
        gb.append(ot_indices_binning(x, y, bins=cfg.bins, n_ref=cfg.n_ref, generator=seed))
        if cfg.cases == "both":
            x, y = sample_ishigami(cfg.n, np.random.default_rng([cfg.seed, s, 2]))
            for kind, store in (("hyper", nl_h), ("concat", nl_c)):
                est, h = _neural(kind, x, y, cfg, seed, device)  # paired: same data, same init seed
                store.append(est)
                hists[f"nl_{kind}"].append(h)
    gn, gb = np.array(gn), np.array(gb)
    metrics = {
        "gauss_max_err": float(np.abs(gn - iota).max()),
        "rmse_neural": float(np.sqrt(np.mean((gn - iota) ** 2))),
        "rmse_binning": float(np.sqrt(np.mean((gb - iota) ** 2))),
        "min_gap": float(np.diff(np.sort(iota)).min()),
    }
    metrics.update({f"iota_true_{i + 1}": float(v) for i, v in enumerate(iota)})
    metrics.update({f"iota_neural_{i + 1}": float(v) for i, v in enumerate(gn.mean(0))})
    metrics.update({f"iota_binning_{i + 1}": float(v) for i, v in enumerate(gb.mean(0))})
    ref = None
    if cfg.cases == "both":
        ref = ishigami_reference(cfg.ref_m, cfg.seed)
        nl_h, nl_c = np.array(nl_h), np.array(nl_c)
        eh, ec = np.abs(nl_h - ref).mean(1), np.abs(nl_c - ref).mean(1)
        metrics.update({"nl_err_hyper": float(eh.mean()), "nl_err_concat": float(ec.mean()),
                        "nl_hyper_wins": float(np.sum(eh < ec))})
        metrics.update({f"iota_ref_{i + 1}": float(v) for i, v in enumerate(ref)})
    return Result(iota, gn, gb, ref, nl_h if ref is not None else None, nl_c if ref is not None else None,
                  hists, metrics)


# ------------------------------------------------------------------------------------------------- the claims
def ranking_exact(result: Result) -> bool:
    """Every seed's neural estimates order the inputs as the closed form does."""
    order = np.argsort(-result.iota_true)
    return all(np.array_equal(np.argsort(-row), order) for row in result.gauss_neural)


def _c1_gaussian(r: Result) -> Verdict:
    value = r.metrics["gauss_max_err"]
    if r.metrics["min_gap"] < MIN_GAP:
        return Verdict(value, f"<= {TOL:g}", UNTESTABLE,
                       note=f"closed-form indices differ by less than {MIN_GAP:g} at this rho: ranking ill-posed")
    ranked = ranking_exact(r)
    v = compare(value, "<=", TOL, note=f"max |error| over inputs and seeds; ranking exact in every seed: {ranked}")
    if not ranked:
        return Verdict(v.value, v.threshold, "FAIL", v.note)
    return v


def _c2_hyper_vs_concat(r: Result) -> Verdict:
    if r.nl_ref is None:
        return Verdict(float("nan"), ">= 3", UNTESTABLE, note="nonlinear case not run (cases='gaussian')")
    seeds = len(r.nl_hyper)
    if seeds < 3:
        return Verdict(r.metrics["nl_hyper_wins"], ">= 3", UNTESTABLE, note=f"needs 3 seeds, ran {seeds}")
    return compare(r.metrics["nl_hyper_wins"], ">=", seeds,
                   note=f"seeds (of {seeds}) where the hypernetwork's mean |error| is below concatenation's")


def _c3_neural_vs_binning(r: Result) -> Verdict:
    ratio = r.metrics["rmse_neural"] / max(r.metrics["rmse_binning"], 1e-12)
    seeds = len(r.gauss_neural)
    note = "RMSE(neural) / RMSE(binning) against the closed form, 4 inputs × seeds"
    if seeds < 3:
        return Verdict(ratio, "<= 1", UNTESTABLE, note=note + f"; the check needs 3 seeds, ran {seeds}")
    return compare(ratio, "<=", 1.0, note=note)


CLAIMS = (
    Claim("c1_gaussian", "On the linear Gaussian model, every neural index is within 0.02 of the closed form and "
          "the inputs are ranked exactly.", _c1_gaussian),
    Claim("c2_hyper_vs_concat", "On the nonlinear model, hypernetwork conditioning has a lower mean absolute index "
          "error than concatenation conditioning in each of 3 seeds.", _c2_hyper_vs_concat),
    Claim("c3_neural_vs_binning", "At equal n, the neural estimator's RMSE against the Gaussian closed form is at "
          "most that of the binning + exact-EMD estimator.", _c3_neural_vs_binning),
)
