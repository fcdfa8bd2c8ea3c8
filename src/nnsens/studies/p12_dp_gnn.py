"""arXiv 2111.15521 — Node-level differentially private graph neural networks (DP-GCN vs DP-MLP).

What is reproduced, at laptop scale: on a contextual stochastic block model (4 classes, Gaussian features with
class-mean separation μ, homophily h), the training graph is made degree-bounded (each node feeds at most K other
training nodes), a 1-layer GCN with inverse-degree mean aggregation D⁻¹(A+I) and an MLP head is trained with per-node
clipped gradients and Gaussian noise of std σ·2(K+1)·C, σ calibrated by the hypergeometric multi-term RDP accountant
(:mod:`nnsens.measures.privacy_accounting`) to a target ε at δ = 1/(10N); the DP-MLP baseline (same MLP on the raw
features) gets noise σ·C with σ from opacus's subsampled-Gaussian RDP. Checked: (1) a deletion changes at most K+1
clipped terms and moves their sum by at most 2(K+1)C, and the accountant respects its q² lower bound; (2) DP-GCN beats
DP-MLP by ≥ 3 points at h = 0.8, ε = 12, K = 3, and not (< 1 point) at h = 0.25, with μ fixed so that the features
alone allow a fixed Bayes accuracy (the non-private MLP must land in 60–75 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnsens.data.graphs import csbm, degree_bounded_edges, mu_for_accuracy
from nnsens.measures.privacy_accounting import (
    DEFAULT_ORDERS,
    gaussian_rdp,
    multiterm_noise_multiplier,
    multiterm_rdp,
    subsampled_noise_multiplier,
)
from nnsens.methods.dp_gnn import deletion_change, gcn_sensitivity, inverse_degree_aggregate, train_private
from nnsens.models import MLP
from nnsens.study import UNTESTABLE, Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import accuracy, fit

PAPER = Paper(
    title="Node-Level Differentially Private Graph Neural Networks",
    authors="Ameya Daigavane, Gagan Madan, Aditya Sinha, Abhradeep Guha Thakurta, Gaurav Aggarwal, Prateek Jain",
    year=2021,
    arxiv="2111.15521",
    code="github.com/google-research/google-research/tree/master/differentially_private_gnns",
)
N_CLASSES = 4
CHECK_EPS, CHECK_K, HOMOPHILOUS, HETEROPHILOUS = 12.0, 3, 0.8, 0.25


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P12 (defaults = smoke scale)."""

    n_nodes: int = param(500, low=100, high=1_000_000, doc="N, nodes of the CSBM graph")
    train_frac: float = param(0.5, low=0.1, high=0.9, doc="fraction of nodes used for training (the rest: test)")
    n_features: int = param(16, low=4, high=1024, doc="feature dimension d (class means on the first 4 axes)")
    avg_degree: float = param(10.0, low=1.0, high=100.0, doc="expected degree of the CSBM graph")
    bayes_target: float = param(0.70, low=0.3, high=0.99,
                                doc="μ is set so the features-only Bayes accuracy equals this (fixed before any run)")
    homophily: tuple[float, ...] = param((0.8, 0.25), low=0.0, high=1.0, doc="h: fraction of same-class edges "
                                                                                "(sweepable)")
    max_degree: tuple[int, ...] = param((3,), low=1, high=64, doc="K: degree bound of the sampler (sweepable)")
    epsilon: tuple[float, ...] = param((12.0,), low=0.01, high=1000.0, doc="privacy budget ε at δ = 1/(10N) "
                                                                           "(sweepable)")
    n_seeds: int = param(1, low=1, high=20, doc="graphs, inits and batch orders")
    hidden: int = param(16, low=2, high=1024, doc="width of the GCN layer and of the MLP head")
    batch_size: int = param(64, low=1, high=100_000, doc="B, distinct training nodes per private step")
    epochs: int = param(30, low=1, high=1000, doc="private steps = epochs · n_train / B")
    clip: float = param(1.0, low=1e-4, high=1e4, doc="C, per-node clipping norm")
    lr: float = param(1e-2, low=1e-6, high=1.0, doc="Adam learning rate (private and non-private runs)")
    n_deletions: int = param(100, low=1, high=10_000, doc="random deletions of the sensitivity unit test")

    def __post_init__(self) -> None:
        super().__post_init__()
        n_train = int(self.train_frac * self.n_nodes)
        if self.batch_size > n_train:
            raise ValueError(f"The 'batch_size' parameter of P12 must be at most n_train={n_train}. "
                             f"Got {self.batch_size!r} instead.")
        if self.n_features < N_CLASSES:
            raise ValueError(f"The 'n_features' parameter of P12 must be at least {N_CLASSES}. "
                             f"Got {self.n_features!r} instead.")
        for name in ("homophily", "max_degree", "epsilon"):
            v = getattr(self, name)
            if len(set(v)) != len(v):
                raise ValueError(f"The {name!r} parameter of P12 must not repeat values. Got {v!r} instead.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(n_nodes=3000, max_degree=(3, 7), epsilon=(1.0, 4.0, 12.0), n_seeds=3, batch_size=300, epochs=30),
    "paper": Config(n_nodes=50_000, max_degree=(3, 7, 15), epsilon=(1.0, 4.0, 12.0), n_seeds=10, hidden=64,
                    batch_size=2000, epochs=50, n_deletions=1000),
}


@dataclass(frozen=True)
class Result:
    """``acc`` rows: (seed, h, model, K, ε, accuracy); ``model`` ∈ {dp_gcn, dp_mlp, gcn, mlp} (K = 0 for the MLPs,
    ε = inf for non-private runs). ``deletions``: (changed terms, ‖Δ sum‖, K) per deletion; ``sigmas``: the
    calibrated noise multipliers; ``lower_bound_gap``: min over settings and orders of amplified − q²·unamplified."""

    acc: tuple[tuple, ...]
    deletions: tuple[tuple[int, float, int], ...]
    sigmas: dict[str, float]
    lower_bound_gap: float
    mu: float
    clip: float
    metrics: dict[str, float]

    def mean(self, **kw) -> float:
        """Mean accuracy over the rows whose fields match ``kw`` (keys: h, model, K, eps); NaN if none."""
        keys = ("seed", "h", "model", "K", "eps")
        rows = [r[5] for r in self.acc if all(r[keys.index(k)] == v for k, v in kw.items())]
        return float(np.mean(rows)) if rows else float("nan")


def _mlp(cfg: Config, seed: int, device) -> MLP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP((cfg.n_features, cfg.hidden, cfg.hidden, N_CLASSES)).to(device)


def run(cfg: Config) -> Result:
    """Graphs, calibration, the deletion test, then private and non-private training (see the module docstring)."""
    device = resolve_device(cfg.device)
    mu = mu_for_accuracy(float(cfg.bayes_target), N_CLASSES)
    n_train = int(cfg.train_frac * cfg.n_nodes)
    steps = max(1, cfg.epochs * n_train // cfg.batch_size)
    delta = 1.0 / (10 * cfg.n_nodes)
    sig: dict[str, float] = {}
    gap = np.inf
    for eps in cfg.epsilon:
        sig[f"mlp_eps{eps:g}"] = subsampled_noise_multiplier(eps, delta=delta, sample_rate=cfg.batch_size / n_train,
                                                              steps=steps)
        for k in cfg.max_degree:
            s = multiterm_noise_multiplier(eps, steps=steps, delta=delta, num_samples=n_train,
                                           batch_size=cfg.batch_size, max_terms_per_node=k + 1)
            sig[f"gcn_K{k}_eps{eps:g}"] = s
            amp = multiterm_rdp(s, num_samples=n_train, batch_size=cfg.batch_size, max_terms_per_node=k + 1)
            gap = min(gap, float(np.min(amp - (cfg.batch_size / n_train) ** 2 * gaussian_rdp(s, DEFAULT_ORDERS))))
    rows, dels = [], []
    for rep in range(cfg.n_seeds):
        seed = cfg.seed + rep
        for hi, h in enumerate(cfg.homophily):
            rng = np.random.default_rng([cfg.seed, 12, rep, hi])
            g = csbm(cfg.n_nodes, n_features=cfg.n_features, n_classes=N_CLASSES, mu=mu, homophily=float(h),
                     avg_degree=cfg.avg_degree, seed=rng)
            perm = rng.permutation(cfg.n_nodes)
            tr, te = np.sort(perm[:n_train]), np.sort(perm[n_train:])
            x, y = torch.as_tensor(g.x, device=device), torch.as_tensor(g.y, device=device)
            tr_t, te_t = torch.as_tensor(tr, device=device), torch.as_tensor(te, device=device)
            # non-private MLP on features only: the precondition on μ
            net = _mlp(cfg, seed, device)
            fit(net, x[tr_t], y[tr_t], epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, generator=seed)
            rows.append((seed, h, "mlp", 0, np.inf, accuracy(net, x[te_t], y[te_t])))
            for eps in cfg.epsilon:
                net = _mlp(cfg, seed, device)
                train_private(net, x, y, tr_t, steps=steps, batch_size=cfg.batch_size, clip=cfg.clip,
                              noise_std=sig[f"mlp_eps{eps:g}"] * cfg.clip, lr=cfg.lr, seed=seed)
                rows.append((seed, h, "dp_mlp", 0, eps, accuracy(net, x[te_t], y[te_t])))
            for k in cfg.max_degree:
                train_msg = degree_bounded_edges(g.edges, tr, k, seed=rng)  # fixed before training
                test_msg = degree_bounded_edges(g.edges, np.arange(cfg.n_nodes), k, seed=rng)  # same bound at test
                a_tr = inverse_degree_aggregate(x, train_msg, cfg.n_nodes)
                a_te = inverse_degree_aggregate(x, test_msg, cfg.n_nodes)
                net = _mlp(cfg, seed, device)
                fit(net, a_tr[tr_t], y[tr_t], epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, generator=seed)
                rows.append((seed, h, "gcn", k, np.inf, accuracy(net, a_te[te_t], y[te_t])))
                if rep == 0 and hi == 0:  # the deletion test, on a trained (non-private) GCN's head
                    for v in rng.choice(tr, size=min(cfg.n_deletions, len(tr)), replace=False):
                        dels.append((*deletion_change(net, x, y, train_msg, tr, int(v), cfg.clip), k))
                for eps in cfg.epsilon:
                    net = _mlp(cfg, seed, device)
                    s = sig[f"gcn_K{k}_eps{eps:g}"]
                    train_private(net, a_tr, y, tr_t, steps=steps, batch_size=cfg.batch_size, clip=cfg.clip,
                                  noise_std=s * gcn_sensitivity(k, cfg.clip), lr=cfg.lr, seed=seed)
                    rows.append((seed, h, "dp_gcn", k, eps, accuracy(net, a_te[te_t], y[te_t])))
    res = Result(tuple(rows), tuple(dels), sig, gap, mu, cfg.clip, {})
    metrics = {"mu": mu, "steps": float(steps), "lower_bound_gap": gap,
               "max_changed_minus_bound": float(max(c - (k + 1) for c, _, k in dels)),
               "max_change_ratio": float(max(d / gcn_sensitivity(k, cfg.clip) for _, d, k in dels))}
    for h in cfg.homophily:
        metrics[f"mlp_acc_h{h:g}"] = res.mean(h=h, model="mlp")
        for k in cfg.max_degree:
            metrics[f"gcn_acc_h{h:g}_K{k}"] = res.mean(h=h, model="gcn", K=k)
        for eps in cfg.epsilon:
            metrics[f"dp_mlp_acc_h{h:g}_eps{eps:g}"] = res.mean(h=h, model="dp_mlp", eps=eps)
            for k in cfg.max_degree:
                metrics[f"dp_gcn_acc_h{h:g}_K{k}_eps{eps:g}"] = res.mean(h=h, model="dp_gcn", K=k, eps=eps)
    metrics.update({f"sigma_{k}": v for k, v in sig.items()})
    return Result(res.acc, res.deletions, sig, gap, mu, cfg.clip, {k: float(v) for k, v in metrics.items()})


# ------------------------------------------------------------------------------------------------- the claims
def _c1_terms(res: Result) -> Verdict:
    worst = max(res.deletions, key=lambda d: d[0] - (d[2] + 1))
    note = f"{len(res.deletions)} deletions; worst: {worst[0]} terms changed at K = {worst[2]}"
    return compare(float(worst[0] - (worst[2] + 1)), "<=", 0.0, note=note)


def _c1_norm(res: Result) -> Verdict:
    return compare(res.metrics["max_change_ratio"], "<=", 1.0,
                   note=f"max over {len(res.deletions)} deletions of ‖Δ sum‖ / (2(K+1)C)")


def _c1_accountant(res: Result) -> Verdict:
    return compare(res.lower_bound_gap, ">=", -1e-6, note="min over ε, K and orders of RDP_amp − q²·RDP_G")


def gcn_advantage(res: Result, h: float) -> float:
    """Mean DP-GCN minus mean DP-MLP test accuracy (points) at K = 3, ε = 12 and homophily ``h``."""
    return 100 * (res.mean(h=h, model="dp_gcn", K=CHECK_K, eps=CHECK_EPS) - res.mean(h=h, model="dp_mlp",
                                                                                     eps=CHECK_EPS))


def _precondition(res: Result, h: float, op: str, thr: float) -> Verdict | None:
    mlp = res.mean(h=h, model="mlp")
    if np.isnan(gcn_advantage(res, h)) or np.isnan(mlp):
        return Verdict(float("nan"), f"{op} {thr:g}", UNTESTABLE, note=f"h = {h:g}, K = 3 or ε = 12 not in the run")
    if not 0.60 <= mlp <= 0.75:
        return Verdict(gcn_advantage(res, h), f"{op} {thr:g}", UNTESTABLE,
                       note=f"non-private MLP at {100 * mlp:.1f} % is outside 60–75 %")
    return None


def _c2_homophilous(res: Result) -> Verdict:
    pre = _precondition(res, HOMOPHILOUS, ">=", 3.0)
    return pre or compare(gcn_advantage(res, HOMOPHILOUS), ">=", 3.0, note="points, h = 0.8, K = 3, ε = 12")


def _c2_heterophilous(res: Result) -> Verdict:
    pre = _precondition(res, HETEROPHILOUS, "<", 1.0)
    return pre or compare(gcn_advantage(res, HETEROPHILOUS), "<", 1.0, note="points, h = 0.25, K = 3, ε = 12")


CLAIMS = (
    Claim("c1_changed_terms",
          "Deleting a random training node changes at most K+1 clipped per-node gradient terms (value: worst excess "
          "over K+1 across the deletions; ≤ 0 passes).", _c1_terms),
    Claim("c1_sum_change",
          "The clipped gradient sum moves by at most 2(K+1)C under each deletion (value: largest ratio to the "
          "bound).", _c1_norm),
    Claim("c1_q2_lower_bound",
          "The multi-term amplified RDP is never below q² times the unamplified Gaussian RDP (value: smallest "
          "margin).", _c1_accountant),
    Claim("c2_gcn_beats_mlp_homophilous",
          "On a homophilous CSBM (h = 0.8), K = 3, ε = 12, DP-GCN's mean test accuracy exceeds DP-MLP's by at "
          "least 3 points (value: difference in points).", _c2_homophilous),
    Claim("c2_no_gain_heterophilous",
          "At h = 0.25 (edges carry no label information), DP-GCN's advantage is below 1 point or reversed "
          "(value: difference in points).", _c2_heterophilous),
)
