"""arXiv 1805.01078 — Exploration of numerical precision in deep neural networks (Li, Ma, Vajiac, Zhang, 2018).

What is reproduced, at laptop scale: MLPs on scikit-learn's digits are trained with SGD (momentum 0.9) while their
weights and biases are stored in a custom float format (e exponent bits, m mantissa bits) after every optimizer step,
by truncation (round toward zero, the paper's emulator: subnormals flushed to 0, overflow saturated) or by
round-to-nearest-even. Per (width, learning rate, rounding) cell every m of the grid and every seed is trained at
once as one batched model (each member stores its weights with its own m), and the knee m_c is read off the grid.
Two theory probes: the forward error of trained FP32 nets whose weights alone are rounded (its slope over m and
growth with depth), and the update-loss ("stagnation") scaling of the knee with the learning rate, where an update
is lost once |Δw| < ulp(w) = 2^(⌊log2|w|⌋ − m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nnsens.data import digits, mnist1d_split
from nnsens.measures.precision import FloatFormat, round_parameters_, weight_rounding_hook
from nnsens.models import BatchedMLP
from nnsens.study import Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import fit, predict

PAPER = Paper(
    title="Exploration of Numerical Precision in Deep Neural Networks",
    authors="Zhaoqi Li, Yu Ma, Catalina Vajiac, Yunkai Zhang",
    year=2018,
    arxiv="1805.01078",
    code="none found",
)
ROUNDINGS = ("toward_zero", "nearest")  # truncation (the paper's emulator) and round-to-nearest-even
DROP_POINTS = 5.0  # a precision is "collapsed" when test accuracy is more than 5 points below FP32
_CHOP = dict(subnormals=False, overflow="saturate")  # the paper's emulator: flush subnormals, saturate overflow


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P40 (defaults = smoke scale)."""

    mantissa_bits: tuple[int, ...] = param((2, 4, 8, 23), low=0, high=23,
                                           doc="mantissa bits m trained for the knee (primary sweep)")
    exp_bits: int = param(8, low=2, high=8, doc="exponent bits e of the emulated format (secondary sweep)")
    widths: tuple[int, ...] = param((32,), low=4, high=2048, doc="hidden widths of the trained MLPs")
    lrs: tuple[float, ...] = param((0.1, 0.01), low=1e-5, high=1.0, doc="SGD learning rates (first: the larger)")
    n_seeds: int = param(1, low=1, high=20, doc="seeds (init and data order), trained together")
    epochs: int = param(3, low=1, high=500, doc="training epochs")
    batch_size: int = param(32, low=1, high=10_000, doc="SGD minibatch size")
    knee_depth: int = param(1, low=1, high=4, doc="hidden layers of the nets trained in low precision")
    depths: tuple[int, ...] = param((1, 2, 3), low=1, high=6, doc="hidden layers of the forward-error nets")
    forward_width: int = param(32, low=4, high=2048, doc="width of the forward-error nets")
    forward_m: tuple[int, ...] = param(tuple(range(4, 17)), low=0, high=23, doc="m grid of the forward-error slope")
    probe_m: int = param(4, low=0, high=23, doc="m of the sweepable headline metric (accuracy drop, first cell)")
    dataset: str = param("digits", choices=("digits", "mnist1d"), doc="training set")
    mnist1d_train: int = param(4000, low=500, high=100_000, doc="mnist1d training samples")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("mantissa_bits", "widths", "lrs", "depths", "forward_m"):
            vals = getattr(self, name)
            if len(set(vals)) != len(vals):
                raise ValueError(f"The '{name}' parameter of P40 must not repeat values. Got {vals!r} instead.")
        if len(self.lrs) != 2 or self.lrs[0] <= self.lrs[1]:
            raise ValueError(f"The 'lrs' parameter of P40 must be two learning rates, larger first. Got {self.lrs!r}.")
        if len(self.forward_m) < 2:
            raise ValueError(f"The 'forward_m' parameter of P40 needs at least 2 values. Got {self.forward_m!r}.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(mantissa_bits=tuple(range(13)) + (23,), widths=(32, 128, 512), n_seeds=2, epochs=10,
                  forward_width=128),
    "paper": Config(mantissa_bits=tuple(range(17)) + (23,), widths=(32, 128, 512), n_seeds=5, epochs=10,
                    batch_size=128, forward_width=512, dataset="mnist1d", mnist1d_train=40_000),
}


@dataclass(frozen=True)
class Cell:
    """One (width, lr, rounding) cell: accuracy at each probed m (mean over seeds) and the knee."""

    width: int
    lr: float
    rounding: str
    fp32_acc: float
    acc: dict[int, float]  # m → mean test accuracy over seeds
    knee: int  # largest m with accuracy more than 5 points below FP32; -1: none, censored
    censored: str  # "", "low" (no m collapses) or "high" (the largest searched m still collapses)


@dataclass(frozen=True)
class Result:
    """Knee cells, forward-error tables, update-ratio percentiles, headline metrics."""

    cells: tuple[Cell, ...]
    forward_m: tuple[int, ...]
    forward_err: dict[tuple[str, int], np.ndarray]  # (rounding, depth) → (seeds, M) median relative logit error
    update_ratio: dict[tuple[int, float], dict[int, float]]  # (width, lr) → percentile → q of |Δw/w| (FP32 run)
    metrics: dict[str, float]

    def cell(self, width: int, lr: float, rounding: str) -> Cell:
        return next(c for c in self.cells if (c.width, c.lr, c.rounding) == (width, lr, rounding))


def _data(cfg: Config, device: torch.device):
    if cfg.dataset == "digits":
        xtr, ytr, xte, yte = digits(seed=cfg.seed, flat=True)
    else:
        xtr, ytr, xte, yte = mnist1d_split(cfg.mnist1d_train, cfg.mnist1d_train // 4, seed=cfg.seed)
    return [t.to(device) for t in (xtr, ytr, xte, yte)]


def _net(cfg: Config, d_in: int, width: int, depth: int, device: torch.device) -> BatchedMLP:
    seeds = [cfg.seed + r for r in range(cfg.n_seeds)]
    return BatchedMLP((d_in,) + (width,) * depth + (10,), seeds).to(device)


def _train(cfg, data, width, lr, fmt, rounding, device, depth=None, ratios=None) -> tuple[BatchedMLP, np.ndarray]:
    """Train the seeds' nets (batched) with weights stored in ``fmt`` after every step (None: FP32); test accuracy
    per seed. ``ratios`` collects per-step percentiles of |Δw/w| (FP32 runs)."""
    xtr, ytr, xte, yte = data
    net = _net(cfg, xtr.shape[1], width, depth or cfg.knee_depth, device)
    after = None
    if fmt is not None:
        round_parameters_(net, fmt, rounding=rounding, **_CHOP)  # the initial weights are stored in the format too
        after = weight_rounding_hook(fmt, rounding=rounding, **_CHOP)
    before: list[torch.Tensor] = []
    if ratios is not None:
        def on_step(model, step):
            before[:] = [p.detach().clone() for p in model.parameters()] if step % 5 == 0 else []

        def after(model, step):  # noqa: F811  (FP32 run: record |Δw / w|)
            if before:
                r = torch.cat([((p.detach() - b) / b).abs().flatten() for p, b in zip(model.parameters(), before)])
                r = r[torch.isfinite(r)].double()
                ratios.append(torch.quantile(r[torch.randperm(r.numel())[:50_000]] if r.numel() > 50_000 else r,
                                             torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)).cpu().numpy())
    else:
        on_step = None
    gens = [cfg.seed * 1000 + 17 + r for r in range(cfg.n_seeds)]
    fit(net, xtr, ytr, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=lr, optimizer="sgd", momentum=0.9,
        generator=gens, on_step=on_step, after_step=after)
    acc = (predict(net, xte, dim=1).argmax(-1) == yte).float().mean(dim=1).cpu().numpy()  # (R,)
    return net, acc


def chop_members(p: torch.Tensor, m: torch.Tensor, emin: int, emax: int, rounding: str) -> torch.Tensor:
    """Round each member's slice ``p[r]`` to (e, m[r]) with subnormals flushed and overflow saturated.

    The same arithmetic as :func:`nnsens.measures.precision.round_to_format` with ``subnormals=False,
    overflow="saturate"``, vectorised over a per-member mantissa width so that a whole m grid trains as one model
    (exact in float32 for m ≤ 23 and e ≤ 8: x / ulp < 2^24 and ulp is a power of two).
    """
    mm = m.view((-1,) + (1,) * (p.ndim - 1)).to(torch.int32)
    e = torch.clamp(torch.frexp(p)[1] - 1, min=emin)
    ulp = torch.ldexp(torch.ones_like(p), e - mm)
    y = p / ulp
    out = (torch.trunc(y) if rounding == "toward_zero" else torch.round(y)) * ulp
    out = torch.where(out.abs() < 2.0**emin, torch.zeros_like(out), out)
    big = (2.0 - torch.exp2(-mm.to(p.dtype))) * 2.0**emax
    return torch.maximum(torch.minimum(out, big), -big)


def _train_grid(cfg, data, width, lr, rounding, device) -> np.ndarray:
    """Every (m, seed) of the grid trained together, each member's weights stored at its own m after every step;
    test accuracy (M, seeds)."""
    xtr, ytr, xte, yte = data
    grid, seeds = sorted(cfg.mantissa_bits), [cfg.seed + r for r in range(cfg.n_seeds)]
    sizes = (xtr.shape[1],) + (width,) * cfg.knee_depth + (10,)
    net = BatchedMLP(sizes, [s for _ in grid for s in seeds]).to(device)  # member (i, r): grid[i], seed r
    m = torch.tensor([mb for mb in grid for _ in seeds], device=device)
    fmt = FloatFormat(cfg.exp_bits, 0)

    @torch.no_grad()
    def chop(model, step=None):
        for p in model.parameters():
            p.copy_(chop_members(p, m, fmt.emin, fmt.emax, rounding))

    chop(net)  # the initial weights are stored in the format too
    gens = [cfg.seed * 1000 + 17 + r for _ in grid for r in range(cfg.n_seeds)]
    fit(net, xtr, ytr, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=lr, optimizer="sgd", momentum=0.9,
        generator=gens, after_step=chop)
    acc = (predict(net, xte, dim=1).argmax(-1) == yte).float().mean(dim=1).cpu().numpy()
    return acc.reshape(len(grid), len(seeds))


def _knee(cfg, data, width, lr, rounding, fp32_acc, device) -> Cell:
    """The largest m of the grid whose mean test accuracy is more than 5 points below FP32."""
    grid = sorted(cfg.mantissa_bits)
    accs = _train_grid(cfg, data, width, lr, rounding, device).mean(axis=1)
    acc = {mb: float(a) for mb, a in zip(grid, accs)}
    bad = [mb for mb in grid if 100 * (fp32_acc - acc[mb]) > DROP_POINTS]
    if not bad:
        return Cell(width, lr, rounding, fp32_acc, acc, -1, "low")
    return Cell(width, lr, rounding, fp32_acc, acc, max(bad), "high" if max(bad) == grid[-1] else "")


def _forward_errors(cfg, data, device) -> dict[tuple[str, int], np.ndarray]:
    """Median over test inputs of ‖f_m(x) − f(x)‖ / ‖f(x)‖ for FP32-trained nets with weights rounded to m bits."""
    xte = data[2]
    out = {}
    for depth in cfg.depths:
        net, _ = _train(cfg, data, cfg.forward_width, cfg.lrs[0], None, "nearest", device, depth=depth)
        ref = predict(net, xte, dim=1)  # (R, N, C)
        for rounding in ROUNDINGS:
            errs = []
            for m in cfg.forward_m:
                q = round_parameters_(_copy(net), FloatFormat(cfg.exp_bits, m), rounding=rounding, **_CHOP)
                rel = (predict(q, xte, dim=1) - ref).norm(dim=-1) / ref.norm(dim=-1)  # (R, N)
                errs.append(rel.median(dim=1).values.cpu().numpy())
            out[(rounding, depth)] = np.stack(errs, axis=1)  # (R, M)
    return out


def _copy(net: BatchedMLP) -> BatchedMLP:
    return BatchedMLP.from_mlps([net.member(r) for r in range(net.n_members)])


def run(cfg: Config) -> Result:
    """Train the knee grid, the forward-error nets and the FP32 update-ratio runs (see the module docstring)."""
    device = resolve_device(cfg.device)
    data = _data(cfg, device)
    cells, ratios_out = [], {}
    for width in cfg.widths:
        for lr in cfg.lrs:
            ratios: list[np.ndarray] = []
            _, fp = _train(cfg, data, width, lr, None, "nearest", device, ratios=ratios)
            ratios_out[(width, lr)] = dict(zip((50, 90, 99), np.median(np.stack(ratios), axis=0).tolist()))
            for rounding in ROUNDINGS:
                cells.append(_knee(cfg, data, width, lr, rounding, float(fp.mean()), device))
    fwd = _forward_errors(cfg, data, device)
    res = Result(tuple(cells), tuple(cfg.forward_m), fwd, ratios_out, {})
    metrics = {f"knee_{c.rounding}_w{c.width}_lr{c.lr:g}": float(c.knee) for c in cells}
    metrics |= {f"fp32_acc_w{c.width}_lr{c.lr:g}": c.fp32_acc for c in cells if c.rounding == "nearest"}
    for rounding in ROUNDINGS:
        for depth in cfg.depths:
            metrics[f"slope_{rounding}_d{depth}"] = float(np.mean(slopes(res, rounding, depth)))
    first = cells[0]  # (first width, larger lr, truncation): reuse the grid's run when it holds probe_m
    probe = first.acc.get(cfg.probe_m)
    if probe is None:
        probe = float(_train(cfg, data, first.width, first.lr, FloatFormat(cfg.exp_bits, cfg.probe_m),
                             "toward_zero", device)[1].mean())
    metrics["probe_acc_drop"] = 100 * (first.fp32_acc - probe)
    return Result(res.cells, res.forward_m, fwd, ratios_out, metrics)


# ------------------------------------------------------------------------------------------------- analysis
def slopes(res: Result, rounding: str, depth: int) -> np.ndarray:
    """Least-squares slope of log2(relative logit error) over m, one per seed."""
    m = np.asarray(res.forward_m, dtype=float)
    err = res.forward_err[(rounding, depth)]
    return np.array([np.polyfit(m, np.log2(np.maximum(e, 1e-300)), 1)[0] for e in err])


def depth_ratios(res: Result, rounding: str) -> dict[int, float]:
    """Error of each depth over the shallowest one's, geometric means over m and seeds (errors span decades)."""
    depths = sorted({d for r, d in res.forward_err if r == rounding})
    gm = {d: float(np.exp(np.mean(np.log(np.maximum(res.forward_err[(rounding, d)], 1e-300))))) for d in depths}
    return {d: gm[d] / gm[depths[0]] for d in depths}


def m_star(res: Result, width: int, lr: float) -> dict[int, int]:
    """m* = ceil(−log2 q) for the 50th, 90th and 99th percentiles q of |Δw/w| in the FP32 run (descriptive)."""
    return {p: (math.ceil(-math.log2(q)) if q > 0 else 99) for p, q in res.update_ratio[(width, lr)].items()}


def _c1_slope(res: Result) -> Verdict:
    sl = {(d, s): float(v) for (r, d) in res.forward_err if r == "toward_zero"
          for s, v in enumerate(slopes(res, "toward_zero", d))}
    key = max(sl, key=lambda k: abs(sl[k] + 1))
    rn = {d: round(float(np.mean(slopes(res, "nearest", d))), 2) for (r, d) in res.forward_err if r == "nearest"}
    return compare(abs(sl[key] + 1), "<=", 0.15,
                   note=f"|slope + 1| of the worst net (depth {key[0]}, seed {key[1]}: slope {sl[key]:.3f}); "
                        f"RN slopes by depth {rn}")


def _c1_ratio(res: Result) -> Verdict:
    rt = depth_ratios(res, "toward_zero")
    depths = sorted(rt)
    if depths[:3] != [1, 2, 3]:
        return Verdict(float("nan"), "<= 0.25", "NOT TESTABLE", note=f"needs depths 1, 2, 3; got {depths}")
    dev = {d: abs(rt[d] / (d + 1) * 2 - 1) for d in (2, 3)}  # targets 1 : 1.5 : 2 = (d + 1) / 2
    rn = {d: round(v, 2) for d, v in depth_ratios(res, "nearest").items()}
    return compare(max(dev.values()), "<=", 0.25,
                   note=f"truncation ratios {[round(rt[d], 2) for d in (1, 2, 3)]} vs 1 : 1.5 : 2; RN ratios {rn}")


def _lr_pairs(res: Result):
    lrs = sorted({c.lr for c in res.cells}, reverse=True)
    widths = sorted({c.width for c in res.cells})
    return lrs, widths


def _c2(res: Result) -> Verdict:
    (hi, lo), widths = _lr_pairs(res)
    shifts, cens = {}, []
    for w in widths:
        for r in ROUNDINGS:
            a, b = res.cell(w, lo, r), res.cell(w, hi, r)
            shifts[(w, r)] = a.knee - b.knee
            cens += [f"w{w} {r} lr{c.lr:g}: {c.censored}" for c in (a, b) if c.censored]
    key = max(shifts, key=lambda k: abs(shifts[k] - 3.5))
    ms = {w: m_star(res, w, hi) for w in widths}
    note = f"shifts m_c(lr={lo:g}) − m_c(lr={hi:g}) {shifts}; m* (50/90/99th pct, lr={hi:g}) {ms}"
    if cens:
        return Verdict(float(abs(shifts[key] - 3.5)), "<= 1.5", "NOT TESTABLE",
                       note=f"knee censored at the grid's edge ({'; '.join(cens)}); " + note)
    return compare(abs(shifts[key] - 3.5), "<=", 1.5, note=f"|shift − 3.5| worst at {key}; " + note)


def _c3(res: Result) -> Verdict:
    lrs, widths = _lr_pairs(res)
    diffs = {(w, lr): res.cell(w, lr, "nearest").knee - res.cell(w, lr, "toward_zero").knee
             for w in widths for lr in lrs}
    key = max(diffs, key=diffs.get)
    cens = [f"w{c.width} lr{c.lr:g} {c.rounding}: {c.censored}" for c in res.cells if c.censored]
    note = f"m_c(RN) − m_c(trunc) per (width, lr) {diffs}" + (f"; censored knees: {cens}" if cens else "")
    return compare(float(diffs[key]), "<=", -1.0, note=note)


CLAIMS = (
    Claim("c1_forward_slope",
          "Truncating the weights of a trained FP32 net to m mantissa bits gives a median relative logit error "
          "that halves per extra bit: its log2-slope over m in [4, 16] lies in [−1.15, −0.85] for every net "
          "(value: the largest |slope + 1|).", _c1_slope),
    Claim("c1_depth_ratio",
          "The truncation error grows with depth as 1 : 1.5 : 2 for 1, 2, 3 hidden layers, within ±25% "
          "(geometric mean over m and seeds; value: the largest relative deviation from the target ratio).",
          _c1_ratio),
    Claim("c2_stagnation_shift",
          "The collapse knee m_c (largest m more than 5 points below FP32, mean over seeds) rises by 2 to 5 bits "
          "when the learning rate drops tenfold, for every width under truncation and round-to-nearest (value: "
          "the largest |shift − 3.5|).", _c2),
    Claim("c3_rn_one_bit_fewer",
          "Round-to-nearest tolerates at least one mantissa bit fewer than truncation: m_c(RN) ≤ m_c(trunc) − 1 "
          "in every (width, lr) cell (value: the largest m_c(RN) − m_c(trunc)).", _c3),
)
