"""arXiv 2504.07835 — Pychop: emulating low-precision arithmetic in numerical methods and neural networks
(Carson, Chen, 2025).

What is reproduced, at laptop scale: our own float emulator (``nnsens.measures.precision``, any exponent and
significand width, five roundings) is checked bit for bit against torch's fp16/bf16 casts; then two classifiers
(a conv8–conv16–fc32–fc10 CNN on scikit-learn's digits, a 40–128–128–10 MLP on mnist1d) trained in FP32 are
evaluated with weights, input and every layer's output chopped to each format and rounding mode (post-training
emulation), and trained at t = 3 significand bits with the weights stored in the format (stochastic rounding vs
truncation) or with an FP32 master copy and straight-through chopping (QAT). The catalog's 1-D localization
regressor (the "detection" stand-in, reported only) is not included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnsens.data import digits, mnist1d_split
from nnsens.measures.precision import (
    FORMATS,
    ROUNDINGS,
    FloatFormat,
    round_activations,
    round_parameters_,
    round_ste,
    round_to_format,
)
from nnsens.models import MLP, SmallCNN
from nnsens.study import Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import fit

PAPER = Paper(
    title="Pychop: Emulating Low-Precision Arithmetic in Numerical Methods and Neural Networks",
    authors="Erin Carson, Xinye Chen",
    year=2025,
    arxiv="2504.07835",
    code="https://github.com/inEXASCALE/pychop",
)
MODELS = ("cnn", "mlp")
NAMED = tuple(n for n in FORMATS if n not in ("fp64", "fp32"))
QAT_SETTINGS = ("stochastic", "toward_zero", "stochastic_master", "toward_zero_master")


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P45 (defaults = smoke scale)."""

    t_bits: tuple[int, ...] = param((0, 3), low=0, high=22,
                                    doc="significand (fraction) bits t of the custom formats (primary sweep)")
    exp_bits: int = param(8, low=2, high=8, doc="exponent bits of the custom formats")
    named: tuple[str, ...] = param(("bf16",), choices=NAMED + ("none",), doc="named formats also emulated")
    modes: tuple[str, ...] = param(("nearest", "up"), choices=ROUNDINGS, doc="rounding modes of the PTQ grid")
    n_seeds: int = param(1, low=1, high=20, doc="independently initialised and trained models per classifier")
    qat: bool = param(False, doc="run the low-precision training check (4)")
    qat_t: int = param(3, low=0, high=22, doc="significand bits of the low-precision training")
    n_identity: int = param(1_000_000, low=1000, high=10_000_000, doc="values in the fp16/bf16 bit-identity check")
    cnn_epochs: int = param(5, low=1, high=500, doc="training epochs of the digits CNN")
    mlp_epochs: int = param(5, low=1, high=500, doc="training epochs of the mnist1d MLP")
    batch_size: int = param(64, low=1, high=100_000, doc="training minibatch size (Adam)")
    lr: float = param(2e-3, low=1e-6, high=1.0, doc="learning rate (Adam)")
    mnist1d_train: int = param(2000, low=500, high=100_000, doc="mnist1d training samples")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("t_bits", "named", "modes"):
            vals = getattr(self, name)
            if len(set(vals)) != len(vals):
                raise ValueError(f"The '{name}' parameter of P45 must not repeat values. Got {vals!r} instead.")
        if "nearest" not in self.modes:
            raise ValueError(f"The 'modes' parameter of P45 must include 'nearest' (the reference mode). "
                             f"Got {self.modes!r} instead.")
        if "none" in self.named and len(self.named) > 1:
            raise ValueError(f"The 'named' parameter of P45 cannot mix 'none' with formats. Got {self.named!r}.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(t_bits=tuple(range(11)), named=("fp16", "bf16", "tf32", "fp8_e4m3", "fp8_e5m2"), modes=ROUNDINGS,
                  n_seeds=3, qat=True, cnn_epochs=12, mlp_epochs=12, batch_size=128, lr=3e-3, mnist1d_train=4000),
    "paper": Config(t_bits=tuple(range(11)), named=("fp16", "bf16", "tf32", "fp8_e4m3", "fp8_e5m2"), modes=ROUNDINGS,
                    n_seeds=5, qat=True, cnn_epochs=40, mlp_epochs=20, mnist1d_train=20_000),
}


@dataclass(frozen=True)
class Result:
    """Bit-identity counts, PTQ tables and low-precision training accuracies."""

    identity: dict[str, int]  # format → mismatching bit patterns against torch's cast (out of n_identity)
    formats: tuple[str, ...]  # format labels of the PTQ grid, e.g. "t3" (exp_bits, t) or "bf16"
    modes: tuple[str, ...]
    fp32_acc: dict[tuple[str, int], float]  # (model, seed) → test accuracy
    ptq_acc: dict[tuple[str, int, str, str], float]  # (model, seed, format, mode) → test accuracy
    ptq_kl: dict[tuple[str, int, str, str], float]  # test-mean KL(p_FP32 ‖ p_chopped)
    qat_acc: dict[tuple[str, int, str], float]  # (model, seed, setting) → test accuracy
    metrics: dict[str, float]

    def mean_ptq_drop(self, model: str, fmt: str, mode: str) -> float:
        """FP32 − PTQ accuracy in points, mean over seeds."""
        seeds = sorted({s for (m, s) in self.fp32_acc if m == model})
        return float(np.mean([100 * (self.fp32_acc[(model, s)] - self.ptq_acc[(model, s, fmt, mode)])
                              for s in seeds]))


def identity_values(n: int, seed: int) -> torch.Tensor:
    """``n`` float32 test values: random bit patterns (all binades), values spread over the fp16 range, exact
    fp16/bf16 ties, subnormals and the overflow threshold neighbourhood (65504 ... 65536)."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor([65504.0, 65519.0, 65519.99, 65520.0, 65536.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26,
                            2.0**-14, 2.0**-133, 2.0**-134, 3.3895314e38, 3.4028235e38])
    k = torch.arange(1, 257, dtype=torch.float32)
    ties = torch.cat([(1024 + k + 0.5) * 2.0**e for e in (-34, -24, -14, 0, 5)]
                     + [(128 + k + 0.5) * 2.0**e for e in (-140, -133, 0, 100)])
    fixed = torch.cat([special, ties])
    fixed = torch.cat([fixed, -fixed])
    m = max(0, n - fixed.numel())
    bits = torch.randint(-(2**31), 2**31 - 1, (m // 2,), generator=g, dtype=torch.int64).to(torch.int32)
    raw = bits.view(torch.float32)
    raw = torch.where(torch.isfinite(raw), raw, torch.ones_like(raw))
    spread = torch.randn(m - m // 2, generator=g) * torch.exp2(torch.randint(-30, 18, (m - m // 2,), generator=g)
                                                                 .float())
    return torch.cat([fixed, raw, spread])[:n]


def _identity(cfg: Config) -> dict[str, int]:
    x = identity_values(cfg.n_identity, cfg.seed)
    out = {}
    for name, cast in (("fp16", lambda t: t.half().float()), ("bf16", lambda t: t.bfloat16().float())):
        ours = round_to_format(x, name).view(torch.int32)
        out[name] = int((ours != cast(x).view(torch.int32)).sum())
    return out


def is_custom(label: str) -> bool:
    """Whether a format label is a custom "t<bits>" format (with ``exp_bits``) rather than a named one."""
    return label not in FORMATS


def _format(cfg: Config, label: str) -> FloatFormat:
    return FORMATS[label] if label in FORMATS else FloatFormat(cfg.exp_bits, int(label[1:]))


def _data(model: str, cfg: Config, device: torch.device):
    if model == "cnn":
        xtr, ytr, xte, yte = digits(seed=cfg.seed)
    else:
        xtr, ytr, xte, yte = mnist1d_split(cfg.mnist1d_train, cfg.mnist1d_train // 4, seed=cfg.seed)
    return [t.to(device) for t in (xtr, ytr, xte, yte)]


def _build(model: str, seed: int, device: torch.device) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = (SmallCNN(channels=(8, 16), hidden=32, pool="flatten", image_size=8) if model == "cnn"
               else MLP((40, 128, 128, 10)))
    return net.to(device)


@torch.no_grad()
def _chopped_logits(net: nn.Module, x: torch.Tensor, fmt: FloatFormat, mode: str, gen: torch.Generator):
    """Post-training emulation: weights, input and every layer's output rounded to ``fmt`` with ``mode``."""
    q = _clone(net)
    round_parameters_(q, fmt, rounding=mode, generator=gen)
    q.eval()
    with round_activations(q, fmt, rounding=mode, generator=gen, inputs=True):
        return q(x)


def _clone(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net)


class _ChopSTE(nn.Module):
    """Parametrization: the stored FP32 (master) tensor is seen through the format, straight-through backward."""

    def __init__(self, fmt: FloatFormat, mode: str, gen: torch.Generator) -> None:
        super().__init__()
        self.fmt, self.mode, self.gen = fmt, mode, gen

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return round_ste(w, self.fmt, rounding=self.mode, generator=self.gen)


def _low_precision_training(model, cfg, seed, data, setting, device) -> float:
    """Train at t = qat_t with the weights stored in the format (no master copy) or seen through it (master),
    activations chopped in the forward pass (straight-through backward); return the test accuracy."""
    xtr, ytr, xte, yte = data
    fmt = FloatFormat(cfg.exp_bits, cfg.qat_t)
    mode = setting.removesuffix("_master")
    gen = torch.Generator(device=device).manual_seed(seed + 7919)
    net = _build(model, seed, device)
    after = None
    if setting.endswith("_master"):
        for mod in net.modules():
            for name in ("weight", "bias"):
                if isinstance(mod, (nn.Linear, nn.Conv2d)) and getattr(mod, name, None) is not None:
                    parametrize.register_parametrization(mod, name, _ChopSTE(fmt, mode, gen))
    else:
        round_parameters_(net, fmt, rounding=mode, generator=gen)

        def after(m, step):
            round_parameters_(m, fmt, rounding=mode, generator=gen)

    epochs = cfg.cnn_epochs if model == "cnn" else cfg.mlp_epochs
    with round_activations(net, fmt, rounding=mode, generator=gen, inputs=True):
        fit(net, xtr, ytr, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, generator=seed, after_step=after)
        with torch.no_grad():
            return float((net(xte).argmax(1) == yte).float().mean())


def run(cfg: Config) -> Result:
    """Bit-identity check, PTQ grid and (optionally) low-precision training (see the module docstring)."""
    device = resolve_device(cfg.device)
    identity = _identity(cfg)
    labels = tuple(f"t{t}" for t in cfg.t_bits) + tuple(n for n in cfg.named if n != "none")
    fp32, acc, kl, qat = {}, {}, {}, {}
    for model in MODELS:
        data = _data(model, cfg, device)
        xtr, ytr, xte, yte = data
        for rep in range(cfg.n_seeds):
            seed = cfg.seed + rep
            net = _build(model, seed, device)
            fit(net, xtr, ytr, epochs=cfg.cnn_epochs if model == "cnn" else cfg.mlp_epochs,
                batch_size=cfg.batch_size, lr=cfg.lr, generator=seed)
            with torch.no_grad():
                ref = net(xte)
            logp = torch.log_softmax(ref, 1)
            fp32[(model, seed)] = float((ref.argmax(1) == yte).float().mean())
            gen = torch.Generator(device=device).manual_seed(seed)
            for label in labels:
                for mode in cfg.modes:
                    z = _chopped_logits(net, xte, _format(cfg, label), mode, gen)
                    acc[(model, seed, label, mode)] = float((z.argmax(1) == yte).float().mean())
                    logq = torch.log_softmax(z.double(), 1)
                    kl[(model, seed, label, mode)] = float((logp.exp() * (logp - logq)).sum(1).mean())
            if cfg.qat:
                for setting in QAT_SETTINGS:
                    qat[(model, seed, setting)] = _low_precision_training(model, cfg, seed, data, setting, device)
    res = Result(identity, labels, tuple(cfg.modes), fp32, acc, kl, qat, {})
    metrics: dict[str, float] = {f"identity_mismatches_{k}": float(v) for k, v in identity.items()}
    for model in MODELS:
        metrics[f"{model}_fp32_acc"] = float(np.mean([v for (m, _), v in fp32.items() if m == model]))
        for label in labels:
            metrics[f"{model}_drop_{label}_nearest"] = res.mean_ptq_drop(model, label, "nearest")
        for setting in QAT_SETTINGS if cfg.qat else ():
            metrics[f"{model}_qat_drop_{setting}"] = qat_drop(res, model, setting)
    return Result(identity, labels, tuple(cfg.modes), fp32, acc, kl, qat, metrics)


# ------------------------------------------------------------------------------------------------- analysis
def qat_drop(res: Result, model: str, setting: str) -> float:
    """FP32 − low-precision-training accuracy in points, mean over seeds."""
    seeds = sorted({s for (m, s) in res.fp32_acc if m == model})
    return float(np.mean([100 * (res.fp32_acc[(model, s)] - res.qat_acc[(model, s, setting)]) for s in seeds]))


def knee(res: Result, model: str) -> int | None:
    """Smallest t from which RN PTQ stays within 1 point of FP32 for every larger t (None if never)."""
    ts = sorted(int(f[1:]) for f in res.formats if is_custom(f))
    ok = [res.mean_ptq_drop(model, f"t{t}", "nearest") <= 1.0 for t in ts]
    for i, t in enumerate(ts):
        if all(ok[i:]):
            return t
    return None


def _c1(res: Result) -> Verdict:
    return compare(float(sum(res.identity.values())), "<=", 0.0, note=f"mismatching bit patterns {res.identity}")


def _c2_within(res: Result) -> Verdict:
    ts = [f for f in res.formats if is_custom(f) and int(f[1:]) >= 3]
    if not ts:
        return Verdict(float("nan"), "<= 1", "NOT TESTABLE", note="no custom format with t >= 3 in the grid")
    drops = {(m, f): res.mean_ptq_drop(m, f, "nearest") for m in MODELS for f in ts}
    key = max(drops, key=drops.get)
    knees = {m: knee(res, m) for m in MODELS}
    return compare(drops[key], "<=", 1.0, note=f"largest RN drop (points) at {key}; knee (t) per model {knees}")


def _c2_collapse(res: Result) -> Verdict:
    if "t0" not in res.formats:
        return Verdict(float("nan"), "> 5", "NOT TESTABLE", note="t = 0 not in the grid")
    drops = {m: res.mean_ptq_drop(m, "t0", "nearest") for m in MODELS}
    key = min(drops, key=drops.get)
    return compare(drops[key], ">", 5.0, note=f"RN drop at t = 0 (points) per model {drops}")


def _c3(res: Result) -> Verdict:
    need = {"nearest", "up", "down"}
    ts = [f for f in ("t2", "t3") if f in res.formats]
    if not need <= set(res.modes) or not ts:
        return Verdict(float("nan"), ">= 2", "NOT TESTABLE", note="needs modes nearest, up, down and t in {2, 3}")
    ratios = {}
    for (m, s, f, mode), v in res.ptq_kl.items():
        if f in ts and mode in ("up", "down"):
            ratios[(m, s, f, mode)] = v / max(res.ptq_kl[(m, s, f, "nearest")], 1e-300)
    key = min(ratios, key=ratios.get)
    losses = {(m, f, mode): round(res.mean_ptq_drop(m, f, mode), 2) for m in MODELS for f in ts
              for mode in ("nearest", "up", "down")}
    return compare(ratios[key], ">=", 2.0, note=f"smallest KL ratio at {key}; accuracy drops (points) {losses}")


def _c4(res: Result, setting: str, op: str, thr: float) -> Verdict:
    if not res.qat_acc:
        return Verdict(float("nan"), f"{op} {thr:g}", "NOT TESTABLE", note="low-precision training not run (qat)")
    drops = {m: qat_drop(res, m, setting) for m in MODELS}
    key = (max if op == "<=" else min)(drops, key=drops.get)
    master = {m: {s: round(qat_drop(res, m, s), 2) for s in QAT_SETTINGS if s.endswith("_master")} for m in MODELS}
    return compare(drops[key], op, thr, note=f"drop (points) per model {drops}; FP32-master STE QAT drops {master}")


CLAIMS = (
    Claim("c1_bit_identical",
          "Round-to-nearest-even emulation of e5m10 and e8m7 gives the same bit patterns as torch's fp16 and bf16 "
          "casts on 10⁶ values incl. ties, subnormals and overflow (value: mismatches).", _c1),
    Claim("c2_rn_within_1pt",
          "Post-training RN chopping of weights, input and every layer output stays within 1 point of FP32 for "
          "every t ≥ 3 on each classifier, mean over seeds (value: the largest drop, points).", _c2_within),
    Claim("c2_rn_collapse_t0",
          "With the hidden bit only (t = 0) RN chopping loses more than 5 points on each classifier (value: the "
          "smaller drop, points).", _c2_collapse),
    Claim("c3_directed_kl",
          "At t ∈ {2, 3}, rounding up or down gives a test-mean KL(p_FP32 ‖ p_chopped) at least twice RN's on each "
          "classifier and seed (value: the smallest ratio).", _c3),
    Claim("c4_sr_trains",
          "Training at t = 3 with weights stored in the format and chopped activations: stochastic rounding ends "
          "within 2 points of FP32 on each classifier, mean over seeds (value: the larger drop, points).",
          lambda res: _c4(res, "stochastic", "<=", 2.0)),
    Claim("c4_rz_stalls",
          "The same training with truncation (round toward zero) ends at least 5 points below FP32 on each "
          "classifier, mean over seeds (value: the smaller drop, points).",
          lambda res: _c4(res, "toward_zero", ">=", 5.0)),
)
