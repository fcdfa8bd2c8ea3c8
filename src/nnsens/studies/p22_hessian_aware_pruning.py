"""arXiv 2101.08940 — Hessian-Aware Pruning and Optimal Neural Implant (Yu et al., WACV 2022).

What is reproduced, at laptop scale: HAP's channel importance, (Tr(H_c)/n_c)·‖w_c‖² from channel-wise Hutchinson
traces over the conv and linear weights (one Hessian batch), drives global structured pruning (one threshold over
all conv output channels, at most 90 % removed from any layer) of a 3-conv CNN (32/64/64 channels) trained on
scikit-learn's digits (split 60/20/20); channels are really removed (a smaller network is built) and the pruned
network is fine-tuned with the shared training loop. L1 magnitude and random channel rankings are the baselines.
The estimator itself is checked on a tiny MLP (about 500 weights) against the exact Hessian from torch.func.
The Neural Implant (1×1 replacements of moderately sensitive 3×3 channels) is not reproduced.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.func import functional_call

from nnsens.data import digits
from nnsens.measures.hessian import channel_hessian_traces, hessian_trace
from nnsens.methods import hap, pruning
from nnsens.models import MLP, ConvNet
from nnsens.study import Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import accuracy, fit

PAPER = Paper(
    title="Hessian-Aware Pruning and Optimal Neural Implant",
    authors="Shixing Yu, Zhewei Yao, Amir Gholami, Zhen Dong, Sehoon Kim, Michael W. Mahoney, Kurt Keutzer",
    year=2022,
    arxiv="2101.08940",
    code="github.com/yaozhewei/HAP",
)
METHODS = ("hap", "l1", "random")


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P22 (defaults = smoke scale)."""

    n_seeds: int = param(1, low=1, high=20, doc="independently initialised and trained CNNs")
    ratios: tuple[float, ...] = param((0.7,), low=0.05, high=0.9,
                                      doc="fractions of conv output channels removed (sweepable)")
    n_probes: int = param(20, low=2, high=100_000, doc="Hutchinson probes of the channel traces (sweepable)")
    mlp_probes: int = param(200, low=2, high=100_000, doc="Hutchinson probes of claim 1's tiny-MLP check")
    hessian_batch: int = param(64, low=16, high=1078, doc="training images the Hessian is taken on")
    channels: tuple[int, ...] = param((32, 64, 64), low=1, high=512, doc="conv output channels of the CNN")
    max_layer_ratio: float = param(0.9, low=0.1, high=0.95, doc="cap on the fraction pruned from one layer")
    epochs: int = param(5, low=1, high=500, doc="dense training epochs (Adam)")
    finetune_epochs: int = param(1, low=0, high=100, doc="fine-tuning epochs after pruning")
    lr: float = param(3e-3, low=1e-6, high=1.0, doc="dense training learning rate (Adam)")
    finetune_lr: float = param(1e-3, low=1e-6, high=1.0, doc="fine-tuning learning rate (Adam)")
    batch_size: int = param(64, low=1, high=2048, doc="minibatch size")
    mlp_hidden: int = param(7, low=2, high=64, doc="hidden width of claim 1's MLP 64-h-10 (7: 518 weights)")
    mlp_epochs: int = param(10, low=1, high=500, doc="training epochs of claim 1's MLP (Adam, lr 1e-2, batch 128)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.ratios)) != len(self.ratios):
            raise ValueError(f"The 'ratios' parameter of P22 must not repeat values. Got {self.ratios!r} instead.")
        if len(self.channels) != 3:
            raise ValueError(f"The 'channels' parameter of P22 must have 3 entries (a 3-conv CNN). "
                             f"Got {self.channels!r} instead.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(n_seeds=3, ratios=(0.3, 0.5, 0.7), n_probes=100, hessian_batch=128, epochs=10, finetune_epochs=3),
    "paper": Config(n_seeds=5, ratios=(0.1, 0.3, 0.5, 0.7, 0.9), n_probes=300, hessian_batch=512, epochs=30,
                    finetune_epochs=10),
}


@dataclass(frozen=True)
class MlpCheck:
    """Claim 1 on one seed: Hutchinson trace and channel traces of a tiny MLP's weights against the exact ones."""

    trace: float
    trace_se: float
    exact: float
    channel_est: np.ndarray  # (C,) all layers' output channels, concatenated
    channel_se: np.ndarray
    channel_exact: np.ndarray
    rho: float

    @property
    def z(self) -> float:
        return abs(self.trace - self.exact) / self.trace_se


@dataclass(frozen=True)
class SeedRun:
    """One trained CNN: its dense accuracy, channel scores, and per (method, ratio) accuracies and kept channels."""

    seed: int
    dense_acc: float
    dense_val_acc: float
    scores: dict[str, dict[str, np.ndarray]]  # method → conv weight → (C,) importance
    oneshot: dict[tuple[str, float], float]  # (method, ratio) → test accuracy before fine-tuning
    tuned: dict[tuple[str, float], float]  # after fine-tuning
    kept: dict[tuple[str, float], tuple[int, ...]]  # channels kept per conv layer
    n_params: dict[tuple[str, float], int]  # parameters of the pruned network
    dense_params: int


@dataclass(frozen=True)
class Result:
    """Claim 1's checks, the CNN runs, the grids and the headline metrics."""

    mlp: tuple[MlpCheck, ...]
    runs: tuple[SeedRun, ...]
    ratios: tuple[float, ...]
    channels: tuple[int, ...]
    metrics: dict[str, float]

    def mean_acc(self, method: str, ratio: float, tuned: bool) -> float:
        """Test accuracy (points) of a method at a ratio, mean over seeds."""
        return float(np.mean([100 * (r.tuned if tuned else r.oneshot)[(method, ratio)] for r in self.runs]))

    def dense(self) -> float:
        return float(np.mean([100 * r.dense_acc for r in self.runs]))


def _data(seed: int, device: torch.device):
    """digits split 60/20/20 (stratified): train 1078, validation 359, test 360."""
    xtr, ytr, xte, yte = digits(test_size=0.2, seed=seed)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(xtr.shape[0], generator=g)
    nval = xtr.shape[0] // 4
    va, tr = perm[:nval], perm[nval:]
    return [t.to(device) for t in (xtr[tr], ytr[tr], xtr[va], ytr[va], xte, yte)]


def _mlp_check(cfg: Config, seed: int, device: torch.device) -> MlpCheck:
    """Hutchinson (200 probes) trace and channel traces of a trained 64-h-10 MLP's weights vs torch.func.hessian."""
    xtr, ytr, _, _ = (t.to(device) for t in digits(test_size=0.2, seed=cfg.seed, flat=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP((64, cfg.mlp_hidden, 10)).to(device)
    fit(net, xtr, ytr, epochs=cfg.mlp_epochs, batch_size=128, lr=1e-2, generator=seed)
    idx = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(seed))[: cfg.hessian_batch]
    x, y = xtr[idx.to(device)], ytr[idx.to(device)]
    weights = ["0.weight", "2.weight"]
    est = hessian_trace(net, x, target=y, params=weights, n_samples=cfg.mlp_probes, method="hutchinson",
                        generator=seed)
    ch = channel_hessian_traces(net, x, target=y, params=weights, n_samples=cfg.mlp_probes, method="hutchinson",
                                generator=seed)  # the same probes as ``est``
    # exact reference, in float64 on a copy: the Hessian of the loss w.r.t. the flattened weights (biases fixed)
    net64, x64 = copy.deepcopy(net).double(), x.double()
    fixed = {n: p.detach() for n, p in net64.named_parameters()}
    shapes = [fixed[n].shape for n in weights]
    sizes = [fixed[n].numel() for n in weights]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = dict(fixed)
        for n, s, part in zip(weights, shapes, flat.split(sizes)):
            parts[n] = part.view(s)
        return nn.functional.cross_entropy(functional_call(net64, parts, (x64,)), y)

    diag = torch.func.hessian(loss)(torch.cat([fixed[n].flatten() for n in weights])).diagonal()
    exact_ch = np.concatenate([d.reshape(s[0], -1).sum(1).cpu().numpy() for d, s in zip(diag.split(sizes), shapes)])
    est_ch = np.concatenate([ch.mean[n] for n in weights])
    se_ch = np.concatenate([ch.std[n] for n in weights])
    return MlpCheck(est.mean, est.std, float(diag.sum()), est_ch, se_ch, exact_ch,
                    float(spearmanr(est_ch, exact_ch).statistic))


def _one(cfg: Config, rep: int, device: torch.device) -> SeedRun:
    seed = cfg.seed + rep
    xtr, ytr, xva, yva, xte, yte = _data(cfg.seed, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ConvNet(channels=cfg.channels, pool_after=(0, 1), image_size=8).to(device)
    fit(net, xtr, ytr, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, generator=seed)
    dense_acc, dense_val = accuracy(net, xte, yte), accuracy(net, xva, yva)
    gen = torch.Generator().manual_seed(seed)
    hidx = torch.randperm(xtr.shape[0], generator=gen)[: cfg.hessian_batch].to(device)
    convs = hap.conv_weights(net)
    # HAP's Hessian: all conv and linear weights, one batch; Hutchinson with Rademacher probes as in its code.
    tr = channel_hessian_traces(net, xtr[hidx], target=ytr[hidx], n_samples=cfg.n_probes, method="hutchinson",
                                generator=gen)
    scores = {
        "hap": hap.hap_importance(net, {n: tr.mean[n] for n in convs}),
        "l1": hap.l1_importance(net, convs),
        "random": hap.random_importance(net, convs, np.random.default_rng(seed)),
    }
    oneshot, tuned, kept, n_params = {}, {}, {}, {}
    for ratio in cfg.ratios:
        for m in METHODS:
            keep = pruning.select_channels(scores[m], ratio, max_per_layer=cfg.max_layer_ratio)
            small = pruning.remove_channels(net, keep)
            oneshot[(m, ratio)] = accuracy(small, xte, yte)
            if cfg.finetune_epochs:
                fit(small, xtr, ytr, epochs=cfg.finetune_epochs, batch_size=cfg.batch_size, lr=cfg.finetune_lr,
                    generator=seed)
            tuned[(m, ratio)] = accuracy(small, xte, yte)
            kept[(m, ratio)] = small.channels
            n_params[(m, ratio)] = sum(p.numel() for p in small.parameters())
    return SeedRun(seed, dense_acc, dense_val, scores, oneshot, tuned, kept, n_params,
                   sum(p.numel() for p in net.parameters()))


def run(cfg: Config) -> Result:
    """Claim 1's estimator check on tiny MLPs, then train, score, prune and fine-tune the CNN for every seed."""
    device = resolve_device(cfg.device)
    mlp = tuple(_mlp_check(cfg, cfg.seed + rep, device) for rep in range(cfg.n_seeds))
    runs = tuple(_one(cfg, rep, device) for rep in range(cfg.n_seeds))
    res = Result(mlp, runs, tuple(cfg.ratios), tuple(cfg.channels), {})
    metrics = {"dense_test_acc": res.dense(), "max_mlp_z": max(c.z for c in mlp),
               "min_mlp_rho": min(c.rho for c in mlp)}
    for ratio in cfg.ratios:
        for m in METHODS:
            metrics[f"{m}_{ratio:g}_oneshot"] = res.mean_acc(m, ratio, tuned=False)
            metrics[f"{m}_{ratio:g}_tuned"] = res.mean_acc(m, ratio, tuned=True)
    return Result(mlp, runs, tuple(cfg.ratios), tuple(cfg.channels), metrics)


# ------------------------------------------------------------------------------------------------- claims
def _untestable(thr: str, ratio: float) -> Verdict:
    return Verdict(float("nan"), thr, "NOT TESTABLE", note=f"ratio {ratio:g} is not in the run's ratios")


def _c1_z(res: Result) -> Verdict:
    zs = [c.z for c in res.mlp]
    i = int(np.argmax(zs))
    return compare(zs[i], "<=", 3.0, note=f"worst seed {res.runs[i].seed}; estimate {res.mlp[i].trace:.4g} ± "
                                          f"{res.mlp[i].trace_se:.2g} vs exact {res.mlp[i].exact:.4g}")


def _c1_rho(res: Result) -> Verdict:
    rhos = [c.rho for c in res.mlp]
    return compare(min(rhos), ">=", 0.8, note=f"Spearman over {len(res.mlp[0].channel_exact)} channels, min over "
                                              f"{len(rhos)} seeds")


def _c2(res: Result) -> Verdict:
    if 0.5 not in res.ratios:
        return _untestable("<= 1.5", 0.5)
    drop = res.dense() - res.mean_acc("hap", 0.5, tuned=True)
    return compare(drop, "<=", 1.5, note=f"points; dense {res.dense():.2f}, HAP fine-tuned "
                                         f"{res.mean_acc('hap', 0.5, tuned=True):.2f}")


def _c3(res: Result, other: str, tuned: bool, thr: float) -> Verdict:
    if 0.7 not in res.ratios:
        return _untestable(f">= {thr:g}", 0.7)
    a, b = res.mean_acc("hap", 0.7, tuned), res.mean_acc(other, 0.7, tuned)
    return compare(a - b, ">=", thr, note=f"points; HAP {a:.2f} vs {other} {b:.2f}")


CLAIMS = (
    Claim("c1_trace_within_3se",
          "On a tiny MLP (about 500 weights) the 200-probe Hutchinson trace of the weight Hessian is within 3 of "
          "its own standard errors of the exact trace from torch.func.hessian (value: the largest "
          "|estimate − exact| / SE over seeds).", _c1_z),
    Claim("c1_channel_rank",
          "On the same MLP the Hutchinson channel traces order the channels as the exact ones do: Spearman ρ ≥ 0.8 "
          "(value: the smallest ρ over seeds).", _c1_rho),
    Claim("c2_drop_at_50",
          "Removing 50 % of the conv channels by HAP's importance (one global threshold, ≤ 90 % per layer) and "
          "fine-tuning costs at most 1.5 accuracy points, mean over seeds (value: the drop, points).", _c2),
    Claim("c3_oneshot_vs_l1",
          "At 70 % before fine-tuning, HAP's pruned network beats L1-magnitude pruning by ≥ 1 point, mean over "
          "seeds (value: the margin, points).", lambda res: _c3(res, "l1", False, 1.0)),
    Claim("c3_oneshot_vs_random",
          "At 70 % before fine-tuning, HAP beats random channel pruning by ≥ 3 points, mean over seeds (value: the "
          "margin, points).", lambda res: _c3(res, "random", False, 3.0)),
    Claim("c3_tuned_vs_l1",
          "At 70 % after fine-tuning, HAP is at least as accurate as L1, mean over seeds (value: the margin, "
          "points).", lambda res: _c3(res, "l1", True, 0.0)),
    Claim("c3_tuned_vs_random",
          "At 70 % after fine-tuning, HAP is at least as accurate as random pruning, mean over seeds (value: the "
          "margin, points).", lambda res: _c3(res, "random", True, 0.0)),
)
