"""arXiv 2202.05048 — Quantune: a surrogate-guided search over post-training quantization configurations.

The pieces the P15 study needs, usable on their own:

- the configuration space (calibration-set size × activation calibration method × scheme × weight granularity ×
  precision) as a :class:`Grid` with integer genes and one-hot features;
- :func:`fold_batchnorm`: each BatchNorm folded into the convolution before it (what a deployment compiler does
  before quantizing, and what makes depthwise layers fragile);
- :class:`QuantEvaluator`: fake-quantized evaluation of every configuration of a grid, with each expensive piece
  computed once (weights quantized once per (scheme, granularity, bits), activation ranges once per
  (calibration size, method, scheme, bits), calibration activations collected once);
- three searches simulated by lookup over the precomputed grid, each seeded: random order, a genetic algorithm, and
  Quantune's XGBoost surrogate proposing its top-k predicted configurations each round.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnsens.measures.quantization import (
    calibrate_range,
    entropy_range,
    quantize,
    range_to_qparams,
)

CALIBRATIONS = ("max", "p99.9", "p99.99", "kl", "mse")
SCHEMES = ("sym", "asym")
GRANULARITIES = ("tensor", "channel")
PRECISIONS = ("high", "low", "high_fp_ends", "lowest", "mixed")
DIMENSIONS = ("calib_size", "calibration", "scheme", "granularity", "precision")
#: Quantune's surrogate, with hyperparameters fixed once (no tuning of the tuner)
XGB_PARAMS = {"n_estimators": 100, "max_depth": 4, "learning_rate": 0.1, "subsample": 1.0, "n_jobs": 1,
              "tree_method": "hist"}


@dataclass(frozen=True)
class Grid:
    """A full factorial configuration space. ``levels[d]`` are the values of dimension d (``DIMENSIONS``);
    ``codes`` (C, 5) holds each configuration's level index per dimension, in ``itertools.product`` order."""

    levels: tuple[tuple, ...]
    codes: np.ndarray

    def __len__(self) -> int:
        return self.codes.shape[0]

    def config(self, i: int) -> dict[str, object]:
        """Configuration ``i`` as ``{dimension: value}``."""
        return {d: self.levels[k][self.codes[i, k]] for k, d in enumerate(DIMENSIONS)}

    def label(self, i: int) -> str:
        c = self.config(i)
        return f"n={c['calib_size']} {c['calibration']} {c['scheme']} {c['granularity']} {c['precision']}"

    def features(self) -> np.ndarray:
        """(C, Σ levels) one-hot encoding of every dimension (the surrogate's input)."""
        blocks = [np.eye(len(lv))[self.codes[:, k]] for k, lv in enumerate(self.levels)]
        return np.concatenate(blocks, axis=1)

    def select(self, **values: object) -> np.ndarray:
        """Indices of the configurations whose named dimensions take the given value (or one of a tuple's)."""
        keep = np.ones(len(self), dtype=bool)
        for d, v in values.items():
            k = DIMENSIONS.index(d)
            allowed = v if isinstance(v, tuple) else (v,)
            idx = [self.levels[k].index(a) for a in allowed if a in self.levels[k]]
            keep &= np.isin(self.codes[:, k], idx)
        return np.flatnonzero(keep)


def _check_choices(values: Sequence, allowed: Sequence, name: str) -> tuple:
    values = tuple(values)
    if not values or any(v not in allowed for v in values) or len(set(values)) != len(values):
        raise ValueError(f"The {name!r} parameter of config_grid must be a non-empty tuple of distinct values from "
                         f"{', '.join(map(repr, allowed))}. Got {values!r} instead.")
    return values


def config_grid(
    calib_sizes: Sequence[int],
    calibrations: Sequence[str] = CALIBRATIONS,
    schemes: Sequence[str] = SCHEMES,
    granularities: Sequence[str] = GRANULARITIES,
    precisions: Sequence[str] = ("high", "low", "high_fp_ends"),
    *,
    n_layers: int = 1,
) -> Grid:
    """The full factorial grid. ``"mixed"`` expands into ``"mixed:l"`` for each of the ``n_layers`` quantizable
    layers (layer l at the high bit width, every other layer at the lowest)."""
    sizes = tuple(int(s) for s in calib_sizes)
    if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise ValueError(f"The 'calib_sizes' parameter of config_grid must be distinct positive ints. Got {sizes!r}.")
    prec = _check_choices(precisions, PRECISIONS, "precisions")
    prec = tuple(itertools.chain.from_iterable(
        [f"mixed:{m}" for m in range(n_layers)] if p == "mixed" else [p] for p in prec))
    levels = (sizes, _check_choices(calibrations, CALIBRATIONS, "calibrations"),
              _check_choices(schemes, SCHEMES, "schemes"), _check_choices(granularities, GRANULARITIES,
                                                                         "granularities"), prec)
    codes = np.array(list(itertools.product(*(range(len(lv)) for lv in levels))), dtype=np.int64)
    return Grid(levels, codes)


def layer_bits(precision: str, n_layers: int, *, high: int = 8, low: int = 6, lowest: int = 4) -> list[int | None]:
    """Bit width of each quantizable layer under a precision option (None: the layer stays in float).

    ``"high"``/``"low"``/``"lowest"``: every layer at that width; ``"high_fp_ends"``: first and last layer in float,
    the rest at ``high``; ``"mixed:l"``: layer l at ``high``, the others at ``lowest``.
    """
    if precision in ("high", "low", "lowest"):
        return [{"high": high, "low": low, "lowest": lowest}[precision]] * n_layers
    if precision == "high_fp_ends":
        return [None if i in (0, n_layers - 1) else high for i in range(n_layers)]
    if precision.startswith("mixed:") and precision[6:].isdigit() and int(precision[6:]) < n_layers:
        return [high if i == int(precision[6:]) else lowest for i in range(n_layers)]
    raise ValueError(f"The 'precision' parameter of layer_bits must be one of 'high', 'low', 'lowest', "
                     f"'high_fp_ends' or 'mixed:l' with l < {n_layers}. Got {precision!r} instead.")


# ------------------------------------------------------------------------------------------- BatchNorm folding
def _fold_pair(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of ``conv`` (with a bias) computing bn(conv(x)) in eval mode: W' = W·γ/σ, b' = (b − μ)·γ/σ + β."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # (C_out,), σ = √(var + eps)
    new = copy.deepcopy(conv)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        new.weight.copy_(conv.weight.detach() * scale.view(-1, *([1] * (conv.weight.ndim - 1))))
        new.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return new


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode in which every BatchNorm that directly follows a Conv (as consecutive
    children of an ``nn.Sequential``) is folded into that Conv's weight and bias and replaced by ``nn.Identity``.

    The copy computes the same function as ``model`` in eval mode (running statistics); ``model`` is untouched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of fold_batchnorm must be a torch.nn.Module. Got {type(model)}.")
    out = copy.deepcopy(model).eval()
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    for seq in [m for m in out.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names[:-1], names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, convs) and isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.track_running_stats:
                seq._modules[a], seq._modules[b] = _fold_pair(conv, bn), nn.Identity()
    return out


# ---------------------------------------------------------------------------------------- grid evaluation
class Conv1dAs2d(nn.Module):
    """A Conv1d computed as a (1 × k) Conv2d on a channels-last (N, C, 1, L) view: the same function, several times
    faster on CPU for the short signals here (oneDNN's channels-last kernels). Its ``conv`` holds the weight, as
    (out, in/groups, 1, k)."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]), stride=(1, conv.stride[0]),
                              padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]), groups=conv.groups,
                              bias=conv.bias is not None).to(conv.weight.device, conv.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.unsqueeze(2))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (N, C, L) → (N, C, 1, L)
        return self.conv(x).squeeze(2)  # (N, C', L')


def _conv1d_as_2d(model: nn.Module) -> nn.Module:
    """Replace every Conv1d of ``model`` (in place) by :class:`Conv1dAs2d`."""
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.Conv1d):
                setattr(mod, child_name, Conv1dAs2d(child))
    return model


class QuantEvaluator:
    """Fake-quantized evaluation of a grid of configurations on one (BatchNorm-folded) model.

    Weights: uniform min-max grids (:func:`nnsens.measures.quantization.quantize`), symmetric or asymmetric, per
    tensor or per output channel. Activations: the input of every quantizable layer, per tensor, with the scheme of
    the configuration and a range calibrated on the first ``calib_size`` calibration samples, as observed in the
    float (folded) model. Biases stay in float (they would be int32).

    Parameters
    ----------
    model : nn.Module
        The trained model; it is copied and its BatchNorms folded (``fold=False`` to skip that).
    calib_x : Tensor
        Calibration inputs; the first ``n`` rows are the calibration set of size ``n`` (nested sets).
    high, low, lowest : int
        The bit widths of the precision options (see :func:`layer_bits`).
    """

    def __init__(self, model: nn.Module, calib_x: torch.Tensor, *, high: int = 8, low: int = 6, lowest: int = 4,
                 fold: bool = True, kl_bins: int = 2048, mse_grid: int = 100) -> None:
        self.model = _conv1d_as_2d(fold_batchnorm(model) if fold else copy.deepcopy(model).eval())
        kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        names = [n for n, m in self.model.named_modules() if isinstance(m, kinds)]
        self.names, self.mods = names, [self.model.get_submodule(n) for n in names]
        self.bits = {"high": high, "low": low, "lowest": lowest}
        self.kl_bins, self.mse_grid = kl_bins, mse_grid
        self._wq: dict[tuple, list[torch.Tensor]] = {}
        self._aq: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._act: list[tuple | None] = [None] * len(self.mods)
        calib, called = self._collect(calib_x)
        # layers in the order the forward pass runs them (definition order may differ), so that "first" and "last"
        # mean what they say; a layer the forward pass never reaches is an error
        if sorted(called) != list(range(len(names))):
            raise ValueError("QuantEvaluator needs every Linear/Conv layer to run exactly once per forward pass.")
        self.names = [names[i] for i in called]
        self.mods = [self.mods[i] for i in called]
        self._calib = [calib[i] for i in called]
        self._float_w = [m.weight.detach().clone() for m in self.mods]
        self._hooks = [m.register_forward_pre_hook(self._pre_hook(i)) for i, m in enumerate(self.mods)]

    def _pre_hook(self, i: int) -> Callable:
        def hook(_mod, args):
            q = self._act[i]
            if q is None:
                return None
            # the grid of measures.quantization.fake_quantize, in place on a copy (no straight-through bookkeeping:
            # evaluation only); torch's fused fake-quant op is several times slower on CPU here
            scale, zero, qmin, qmax = q
            y = torch.mul(args[0], 1.0 / scale).round_()
            if zero:
                y.add_(zero)
            y = y.clamp_(qmin, qmax)
            if zero:
                y.sub_(zero)
            return (y.mul_(scale),) + tuple(args[1:])
        return hook

    @torch.no_grad()
    def _collect(self, x: torch.Tensor) -> tuple[list[torch.Tensor | None], list[int]]:
        """Each quantizable layer's input on the calibration inputs (float folded model), and the call order."""
        seen: list[torch.Tensor | None] = [None] * len(self.mods)
        called: list[int] = []

        def record(i: int, a: tuple) -> None:
            seen[i] = a[0].detach()
            called.append(i)

        handles = [m.register_forward_pre_hook(lambda _m, a, i=i: record(i, a)) for i, m in enumerate(self.mods)]
        try:
            self.model(x)
        finally:
            for h in handles:
                h.remove()
        return seen, called

    def weights(self, scheme: str, granularity: str, bits: int) -> list[torch.Tensor]:
        """Quantized weight of every layer (cached per (scheme, granularity, bits))."""
        key = (scheme, granularity, bits)
        if key not in self._wq:
            self._wq[key] = [quantize(w, bits, symmetric=scheme == "sym", per_channel=granularity == "channel")
                             for w in self._float_w]
        return self._wq[key]

    def act_qparams(self, calib_size: int, calibration: str, scheme: str, bits: int) -> list[tuple]:
        """(scale, zero point) of every layer's input quantizer (cached per (size, method, scheme, bits))."""
        key = (calib_size, calibration, scheme, bits)
        if key not in self._aq:
            sym = scheme == "sym"
            out = []
            for a in self._calib:
                a = a[:calib_size]
                if calibration == "kl":
                    lo, hi = entropy_range(a, bits, symmetric=sym, n_bins=self.kl_bins)
                elif calibration in ("p99.9", "p99.99"):
                    lo, hi = calibrate_range(a, bits, method="percentile", symmetric=sym,
                                             percentile=float(calibration[1:]))
                else:
                    lo, hi = calibrate_range(a, bits, method="minmax" if calibration == "max" else "mse",
                                             symmetric=sym, n_grid=self.mse_grid)
                out.append(range_to_qparams(lo, hi, bits, symmetric=sym))
            self._aq[key] = out
        return self._aq[key]

    @torch.no_grad()
    def predict(self, config: dict[str, object] | None, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes (N,) under one configuration (``None``: the float folded model)."""
        try:
            if config is not None:
                bits = layer_bits(str(config["precision"]), len(self.mods), **self.bits)
                for i, (m, b) in enumerate(zip(self.mods, bits)):
                    if b is None:
                        continue
                    m.weight.copy_(self.weights(config["scheme"], config["granularity"], b)[i])
                    s, z = self.act_qparams(config["calib_size"], config["calibration"], config["scheme"], b)[i]
                    n = 2 ** (b - 1) - 1
                    qmin, qmax = (-n, n) if config["scheme"] == "sym" else (0, 2**b - 1)
                    self._act[i] = (float(s.reshape(())), float(z.reshape(())), qmin, qmax)
            return self.model(x).argmax(1)
        finally:
            self._act = [None] * len(self.mods)
            for m, w in zip(self.mods, self._float_w):
                m.weight.copy_(w)

    def evaluate(self, grid: Grid, x: torch.Tensor) -> np.ndarray:
        """(C, N) predicted classes of every configuration of ``grid`` on ``x``."""
        return np.stack([self.predict(grid.config(i), x).cpu().numpy() for i in range(len(grid))])


# ------------------------------------------------------------------------------------------------- searches
def _as_rng(generator: np.random.Generator | int | None) -> np.random.Generator:
    return generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)


class _Budget:
    """The evaluation log of one search: distinct configurations in the order they were evaluated."""

    def __init__(self, target: np.ndarray, min_evals: int) -> None:
        self.target, self.min_evals = np.asarray(target, dtype=bool), min_evals
        self.order: list[int] = []
        self.seen = np.zeros(self.target.size, dtype=bool)
        self.hit = False

    def done(self) -> bool:
        return (self.hit and len(self.order) >= self.min_evals) or len(self.order) == self.target.size

    def add(self, i: int) -> None:
        if not self.seen[i] and not self.done():
            self.seen[i] = True
            self.order.append(int(i))
            self.hit |= bool(self.target[i])


def _check_target(target: np.ndarray) -> np.ndarray:
    target = np.asarray(target, dtype=bool)
    if target.ndim != 1 or not target.any():
        raise ValueError("The 'target' parameter of a search must be a 1-D boolean mask with at least one True.")
    return target


def random_search(target: np.ndarray, *, min_evals: int = 0,
                  generator: np.random.Generator | int | None = None) -> np.ndarray:
    """Configurations in a seeded random order, up to the first on target (and at least ``min_evals``)."""
    log = _Budget(_check_target(target), min_evals)
    for i in _as_rng(generator).permutation(log.target.size):
        log.add(i)
        if log.done():
            break
    return np.array(log.order)


def genetic_search(codes: np.ndarray, values: np.ndarray, target: np.ndarray, *, population: int = 8,
                   mutation: float = 0.2, min_evals: int = 0,
                   generator: np.random.Generator | int | None = None) -> np.ndarray:
    """A generational genetic algorithm over the grid's genes, fitness = ``values`` (looked up).

    Binary tournaments pick two parents, uniform crossover mixes their genes, each gene mutates to a uniformly drawn
    level with probability ``mutation``; the next population is the best ``population`` distinct configurations of
    parents and children (elitist). Re-visiting a configuration costs nothing; a generation that proposes nothing
    new gets one random unevaluated configuration (an immigrant), so the search always progresses.
    """
    rng, codes = _as_rng(generator), np.asarray(codes)
    log = _Budget(_check_target(target), min_evals)
    n_levels = codes.max(axis=0) + 1
    lookup = {tuple(c): i for i, c in enumerate(codes.tolist())}
    pop = list(rng.choice(len(codes), size=min(population, len(codes)), replace=False))
    for i in pop:
        log.add(i)
    while not log.done():
        children = []
        for _ in range(population):
            a, b = (max(rng.choice(pop, size=2), key=lambda k: values[k]) for _ in range(2))
            child = np.where(rng.random(codes.shape[1]) < 0.5, codes[a], codes[b])
            flip = rng.random(codes.shape[1]) < mutation
            child[flip] = rng.integers(0, n_levels[flip])
            children.append(lookup[tuple(child.tolist())])
        if all(log.seen[c] for c in children):
            children.append(int(rng.choice(np.flatnonzero(~log.seen))))
        for c in children:
            log.add(c)
        pool = sorted(set(pop) | {c for c in children if log.seen[c]}, key=lambda k: (-values[k], k))
        pop = pool[:population]
    return np.array(log.order)


def xgb_search(features: np.ndarray, values: np.ndarray, target: np.ndarray, *, n_init: int = 8, top_k: int = 4,
               min_evals: int = 0, generator: np.random.Generator | int | None = None) -> np.ndarray:
    """Quantune's loop: evaluate ``n_init`` random configurations, then repeatedly fit an XGBoost regressor
    (``XGB_PARAMS``) to the evaluated (features, value) pairs and evaluate the ``top_k`` unevaluated configurations
    it predicts best (ties broken by a seeded shuffle)."""
    from xgboost import XGBRegressor

    rng = _as_rng(generator)
    log = _Budget(_check_target(target), min_evals)
    for i in rng.permutation(log.target.size)[:n_init]:
        log.add(i)
    while not log.done():
        seen = np.array(log.order)
        model = XGBRegressor(**XGB_PARAMS, random_state=int(rng.integers(2**31 - 1)))
        model.fit(features[seen], values[seen])
        rest = rng.permutation(np.flatnonzero(~log.seen))
        pred = model.predict(features[rest])
        for i in rest[np.argsort(-pred, kind="stable")[:top_k]]:
            log.add(i)
    return np.array(log.order)


def evals_to_target(order: np.ndarray, target: np.ndarray) -> int:
    """1-based position of the first on-target configuration in an evaluation order (len + 1 if none)."""
    hits = np.flatnonzero(np.asarray(target, dtype=bool)[np.asarray(order, dtype=np.int64)])
    return int(hits[0]) + 1 if hits.size else len(order) + 1
