"""HAWQ-V2 (arXiv 1911.03852): Hessian-trace-weighted selection of per-layer bit widths.

Each quantizable layer i at bit width b gets a second-order sensitivity

    Ω_i(b) = (Tr(H_i) / n_i) · ‖Q_b(W_i) − W_i‖²        (HAWQ-V2: mean Hessian eigenvalue of the layer's block)
    Ω_i(b) = λ_max(H_i)      · ‖Q_b(W_i) − W_i‖²        (HAWQ-V1's top eigenvalue, for comparison)

and a bit configuration (b_1, ..., b_L) the total ΣΩ = Σ_i Ω_i(b_i), traded against its size, the parameter-weighted
average bit width. The Pareto frontier of (size, ΣΩ) over all B^L configurations gives, for a size budget, the
configuration with the least ΣΩ. This module holds that arithmetic, the baseline selectors (uniform precision,
random, reversed ranking), and a fast evaluator of all configurations for chain-structured models (activations of
a prefix of layers are shared by all configurations that agree on that prefix).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from nnsens.measures.quantization import quantize

SELECTORS = ("trace", "eig", "uniform", "random", "reversed")
Stage = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------- Ω and size
def perturbation_sq(weights: Sequence[torch.Tensor], bits: Sequence[int], **quant_kw) -> np.ndarray:
    """‖Q_b(W_i) − W_i‖² for each layer i (rows) and bit width b (columns): an (L, B) array."""
    return np.array([[float((quantize(w, b, **quant_kw) - w.detach()).pow(2).sum()) for b in bits] for w in weights])


def layer_omega(sensitivity: Sequence[float], delta_sq: np.ndarray) -> np.ndarray:
    """Ω_i(b) = s_i · ‖Q_b(W_i) − W_i‖² (L, B), for per-layer sensitivities s_i (Tr(H_i)/n_i or λ_max(H_i))."""
    s = np.asarray(sensitivity, dtype=float)
    if s.shape != (delta_sq.shape[0],):
        raise ValueError(f"sensitivity needs one value per layer ({delta_sq.shape[0]}). Got shape {s.shape}.")
    return s[:, None] * delta_sq


def enumerate_configs(n_layers: int, n_bits: int) -> np.ndarray:
    """All n_bits^n_layers configurations as bit-width *indices*, (C, L), in lexicographic (itertools) order."""
    if n_layers < 1 or n_bits < 1:
        raise ValueError(f"enumerate_configs needs n_layers >= 1 and n_bits >= 1. Got {n_layers}, {n_bits}.")
    return np.array(list(itertools.product(range(n_bits), repeat=n_layers)), dtype=np.int64)


def config_size(configs: np.ndarray, bits: Sequence[int], n_params: Sequence[int]) -> np.ndarray:
    """Parameter-weighted average bit width Σ_i b_i n_i / Σ_i n_i of each configuration (C,)."""
    b = np.asarray(bits, dtype=float)[configs]  # (C, L) bit widths
    n = np.asarray(n_params, dtype=float)
    return b @ n / n.sum()


def total_omega(configs: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """ΣΩ of each configuration (C,) from the per-layer table Ω_i(b) (L, B)."""
    return omega[np.arange(omega.shape[0])[None, :], configs].sum(1)


def pareto_front(size: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the configurations no other beats on both size and cost, sorted by increasing size."""
    order = np.lexsort((cost, size))  # by size, then cost
    front, best = [], np.inf
    for i in order:
        if cost[i] < best:
            front.append(i)
            best = cost[i]
    return np.array(front, dtype=np.int64)


def argmin_within(size: np.ndarray, cost: np.ndarray, budget: float) -> int:
    """The configuration of least cost with size ≤ budget (ties: smaller size, then lower index); -1 if none."""
    ok = np.flatnonzero(size <= budget + 1e-9)
    if ok.size == 0:
        return -1
    pick = np.lexsort((ok, size[ok], cost[ok]))[0]
    return int(ok[pick])


def reversed_sensitivity(sensitivity: Sequence[float]) -> np.ndarray:
    """Sensitivities re-assigned in reversed rank order: the most sensitive layer gets the smallest value."""
    s = np.asarray(sensitivity, dtype=float)
    out = np.empty_like(s)
    order = np.argsort(s)
    out[order] = s[order[::-1]]
    return out


def select(
    selector: str,
    *,
    configs: np.ndarray,
    size: np.ndarray,
    budget: float,
    omega_trace: np.ndarray,
    omega_eig: np.ndarray,
    omega_reversed: np.ndarray,
    generator: np.random.Generator | None = None,
) -> int:
    """Index of the configuration a selector picks within a size budget (-1 when nothing fits).

    ``trace`` / ``eig`` / ``reversed``: least ΣΩ with the trace, top-eigenvalue or rank-reversed trace table (each a
    (L, B) per-layer Ω table). ``uniform``: the highest precision with every layer at the same bit width.
    ``random``: a configuration drawn uniformly among those within the budget (needs ``generator``).
    """
    if selector not in SELECTORS:
        raise ValueError(f"The 'selector' parameter of select must be one of {SELECTORS}. Got {selector!r} instead.")
    if selector in ("trace", "eig", "reversed"):
        table = {"trace": omega_trace, "eig": omega_eig, "reversed": omega_reversed}[selector]
        return argmin_within(size, total_omega(configs, table), budget)
    ok = size <= budget + 1e-9
    if selector == "uniform":
        uniform = ok & (configs == configs[:, :1]).all(1)
        idx = np.flatnonzero(uniform)
        return int(idx[np.argmax(size[idx])]) if idx.size else -1
    if generator is None:
        raise ValueError("The 'generator' parameter of select is required for the 'random' selector.")
    idx = np.flatnonzero(ok)
    return int(generator.choice(idx)) if idx.size else -1


# ---------------------------------------------------------------------------------- evaluating configurations
def _layer_stage(module: nn.Module, after: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> Stage:
    def stage(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h = functional_call(module, {"weight": w}, (h,), strict=False)
        for f in after:
            h = f(h)
        return h

    return stage


def chain_stages(model: nn.Module) -> tuple[list[str], list[Stage]]:
    """Split a chain-structured model into one stage per quantizable layer: ``stage(h, weight) -> h``.

    Supported: ``nn.Sequential`` of Linear/Conv layers and parameter-free modules (each stage is one layer and the
    parameter-free modules after it), and :class:`nnsens.models.SmallCNN` with ``pool="flatten"``. Returns the
    weight names (in order) and the stages; composing the stages with the model's own weights gives ``model(x)``.
    """
    from nnsens.models import SmallCNN

    if isinstance(model, SmallCNN) and model.pool == "flatten":
        act = model.act
        return ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"], [
            _layer_stage(model.conv1, [act]),
            _layer_stage(model.conv2, [act, lambda h: h.flatten(1)]),
            _layer_stage(model.fc1, [act]),
            _layer_stage(model.fc2, []),
        ]
    if isinstance(model, nn.Sequential):
        kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        names: list[str] = []
        groups: list[tuple[nn.Module, list]] = []
        for name, mod in model.named_children():
            if isinstance(mod, kinds):
                names.append(f"{name}.weight")
                groups.append((mod, []))
            elif groups and not any(True for _ in mod.parameters()):
                groups[-1][1].append(mod)
            else:
                raise ValueError(f"chain_stages cannot split {type(model).__name__}: unexpected child {name!r}.")
        return names, [_layer_stage(m, after) for m, after in groups]
    raise ValueError(f"chain_stages supports nn.Sequential and SmallCNN(pool='flatten'). Got {type(model).__name__}.")


@torch.no_grad()
def evaluate_chain(
    stages: Sequence[Stage],
    qweights: Sequence[Sequence[torch.Tensor]],
    x: torch.Tensor,
    score: Callable[[torch.Tensor], Sequence[float]],
) -> np.ndarray:
    """``score(output)`` for every configuration, (B^L, k), in :func:`enumerate_configs` order.

    ``qweights[i][j]`` is layer i's weight at bit-width index j. A depth-first walk reuses each prefix's activation,
    so layer i runs B^(i+1) times instead of B^L.
    """
    out: list[Sequence[float]] = []

    def walk(depth: int, h: torch.Tensor) -> None:
        for w in qweights[depth]:
            nxt = stages[depth](h, w)
            if depth == len(stages) - 1:
                out.append(score(nxt))
            else:
                walk(depth + 1, nxt)

    walk(0, x)
    return np.asarray(out, dtype=float)
