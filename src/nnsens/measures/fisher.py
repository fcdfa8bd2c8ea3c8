"""Fisher information of a classifier's parameters: diagonal, Kronecker factors (K-FAC), exact small blocks.

For a classifier with logits z(x; θ) and per-sample negative log-likelihood ℓ(x, y) = −log softmax(z)_y,

- the **empirical** Fisher is F̂ = (1/N) Σ_n ∇ℓ(x_n, y_n) ∇ℓ(x_n, y_n)ᵀ, at the given targets;
- the **true** Fisher is F = (1/N) Σ_n Σ_c p_c(x_n) ∇ℓ(x_n, c) ∇ℓ(x_n, c)ᵀ, the expectation over the model's own
  predicted class distribution, summed exactly over the C classes (no sampling).

:func:`fisher_diagonal` returns diag(F) per parameter tensor. For an ``nn.Linear`` applied once per sample to a
(N, in) input a, the per-sample weight gradient is the outer product g aᵀ of the output gradient g = ∂ℓ/∂z_layer and
the input, so the mean of its squares is ((g²)ᵀ(a²))/N: one forward pass with hooks, one backward pass to the
layer outputs and one matmul of squares, about the cost of one gradient (measured in benchmarks/bench_fisher.py).
Other parameters (convolutions, a Linear applied to sequences or twice, tied weights, ...) fall back to per-sample
gradients with ``torch.func`` (vmap over grad, or over jacrev of the log-probabilities for the true Fisher).

:func:`kfac_factors` returns the Kronecker factors A = E[ā āᵀ] (ā = [a, 1] with a bias) and G = E[g gᵀ] of each
Linear layer (Martens & Grosse 2015, arXiv 1503.05671), :func:`kfac_fisher` the product G ⊗ A, and
:func:`exact_fisher` the full Fisher of a few small tensors from per-sample gradients, the reference for tests.
:func:`linear_layer_terms` exposes the per-sample inputs and (probability-weighted) output gradients the others are
built on, for methods that need more than second moments (P53's nearest Kronecker product).

No function has side effects: the model is evaluated in eval mode and restored, gradients are taken with
``torch.autograd.grad`` or ``torch.func`` (``.grad`` is never written), and hooks are removed on exit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from nnsens.measures._checks import check_internal_batch_size
from nnsens.measures._checks import chunks as _chunks
from nnsens.measures._checks import eval_mode as _eval_mode
from nnsens.measures._checks import select_params as _select

KINDS = ("empirical", "true")


# --------------------------------------------------------------------------------------------------- validation
def _check_common(model: object, inputs: object, target: object, kind: object, internal_batch_size: object,
                  fn: str) -> int | None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1 or inputs.shape[0] < 1:
        raise TypeError(f"The 'inputs' parameter of {fn} must be a tensor with a non-empty batch dimension. "
                        f"Got {inputs!r:.60} instead.")
    if kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of {fn} must be one of 'empirical', 'true'. Got {kind!r} instead.")
    if kind == "empirical":
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"The 'target' parameter of {fn} must be a tensor of class indices when "
                            f"kind='empirical'. Got {type(target).__name__} instead.")
    if isinstance(target, torch.Tensor):
        if target.dim() != 1 or target.shape[0] != inputs.shape[0]:
            raise ValueError(f"The 'target' parameter of {fn} must be a 1-D tensor with one class index per input "
                             f"({inputs.shape[0]}). Got shape {tuple(target.shape)} instead.")
        if target.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
            raise TypeError(f"The 'target' parameter of {fn} must hold integer class indices. Got {target.dtype}.")
    return check_internal_batch_size(internal_batch_size, fn)


# ----------------------------------------------------------------------------- linear layers: a and g per sample
def _fast_linears(model: nn.Module, names: set[str]) -> dict[str, nn.Linear]:
    """Linear modules (by module name) whose weight or bias is requested and not shared with another module."""
    owners: dict[int, int] = {}
    for _, mod in model.named_modules(remove_duplicate=False):
        for p in mod.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    out = {}
    for mname, mod in model.named_modules():
        if type(mod) is nn.Linear:
            pnames = [f"{mname}.{k}" if mname else k for k, _ in mod.named_parameters(recurse=False)]
            if any(n in names for n in pnames) and all(owners[id(p)] == 1 for p in mod.parameters(recurse=False)):
                out[mname] = mod
    return out


def _capture(model: nn.Module, x: torch.Tensor, linears: dict[str, nn.Linear]):
    """Forward ``x`` with hooks on ``linears``: logits, and per module (input, output, number of calls)."""
    seen: dict[str, list] = {name: [] for name in linears}

    def hook(name):
        def f(mod, args, output):
            seen[name].append((args[0], output))
            return output.clone()  # downstream in-place ops (ReLU(inplace=True)) must not touch the captured output
        return f

    handles = [mod.register_forward_hook(hook(name)) for name, mod in linears.items()]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def _weighted_logit_grads(logits: torch.Tensor, y: torch.Tensor | None, kind: str) -> torch.Tensor:
    """(K, N, C) gradients of ℓ w.r.t. the logits, weighted so that the Fisher is Σ_k (J s_k)(J s_k)ᵀ.

    empirical: K = 1, s = p − e_y. true: K = C, s_c = √p_c (p − e_c), since Σ_c p_c (p − e_c)(p − e_c)ᵀ.
    """
    p = torch.softmax(logits.detach(), dim=-1)  # (N, C)
    c = p.shape[-1]
    if kind == "empirical":
        return (p - nn.functional.one_hot(y, c).to(p.dtype)).unsqueeze(0)
    eye = torch.eye(c, dtype=p.dtype, device=p.device)
    s = p.unsqueeze(0) - eye.unsqueeze(1)  # (C, N, C): class c, sample n
    return s * p.T.sqrt().unsqueeze(-1)


def _linear_chunk(model, x, y, kind, linears):
    """For one chunk: ``{module: (a (n, in), g (K, n, out))}`` for the modules where the outer-product form is exact,
    and the set of modules that were not (applied twice or to a non-2-D input)."""
    logits, seen = _capture(model, x, linears)
    ok = {m: v[0] for m, v in seen.items() if len(v) == 1 and v[0][0].dim() == 2}
    bad = set(linears) - set(ok)
    if not ok:
        return {}, bad
    outs = [ok[m][1] for m in ok]
    s = _weighted_logit_grads(logits, y, kind)  # (K, n, C)
    if s.shape[0] == 1:
        gs = torch.autograd.grad(logits, outs, grad_outputs=s[0], allow_unused=True)
        gk = [torch.zeros_like(o) if g is None else g for g, o in zip(gs, outs)]
        gk = [g.unsqueeze(0) for g in gk]  # (1, n, out)
    else:  # the C class-weighted backward passes, vectorized over the leading dimension of s
        gs = torch.autograd.grad(logits, outs, grad_outputs=s, allow_unused=True, is_grads_batched=True)
        gk = [o.new_zeros(s.shape[0], *o.shape) if g is None else g for g, o in zip(gs, outs)]
    res = {m: (ok[m][0].detach(), gk[i]) for i, m in enumerate(ok)}
    return res, bad


def linear_layer_terms(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    kind: str = "empirical",
    layers: Sequence[str] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-sample inputs and weighted output gradients of ``nn.Linear`` layers.

    Returns ``{module name: (a, g)}`` with ``a`` (N, in) the layer's inputs and ``g`` (K, N, out) the gradients of
    the per-sample NLL w.r.t. the layer's outputs, weighted so that the per-sample weight gradients are
    ``g[k, n] a[n]ᵀ`` and the Fisher of the weight is (1/N) Σ_{k,n} vec(g a_nᵀ) vec(g a_nᵀ)ᵀ (K = 1 for the
    empirical Fisher; K = C with weights √p_c for the true Fisher).

    Parameters
    ----------
    layers : sequence of str, optional
        Module names of the Linear layers (default: every ``nn.Linear``). Each must be applied exactly once per
        forward pass to a 2-D input, else a ValueError says so.
    """
    fn = "linear_layer_terms"
    _check_common(model, inputs, target, kind, None, fn)
    mods = {n: m for n, m in model.named_modules() if type(m) is nn.Linear}
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        unknown = [n for n in layers if n not in mods]
        if unknown:
            raise ValueError(f"The 'layers' parameter of {fn} must name nn.Linear modules ({', '.join(mods)}). "
                             f"Got {unknown!r} instead.")
        mods = {n: mods[n] for n in layers}
    if not mods:
        raise ValueError(f"{fn} found no nn.Linear layer in the model.")
    with _eval_mode(model):
        res, bad = _linear_chunk(model, inputs, target, kind, mods)
    if bad:
        raise ValueError(f"{fn}: layers {sorted(bad)!r} are not applied exactly once to a 2-D input per forward "
                         "pass, so their per-sample gradients are not outer products.")
    return res


# ------------------------------------------------------------------------------------------ per-sample gradients
def _per_sample_terms(model, x, y, kind, names) -> dict[str, torch.Tensor]:
    """``{name: (K, n, *shape)}`` weighted per-sample gradients of the chosen parameters, with torch.func."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    chosen = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in chosen}

    def logp(ps, xi):  # log-probabilities of one sample, (C,)
        out = functional_call(model, ({**rest, **ps}, buffers), (xi.unsqueeze(0),))
        return torch.log_softmax(out.squeeze(0), dim=-1)

    if kind == "empirical":
        def nll(ps, xi, yi):
            return -logp(ps, xi).gather(0, yi.unsqueeze(0)).squeeze(0)
        g = vmap(grad(nll), in_dims=(None, 0, 0))(chosen, x, y)  # name -> (n, *shape)
        return {k: v.unsqueeze(0) for k, v in g.items()}
    with torch.no_grad():
        p = torch.softmax(functional_call(model, (params, buffers), (x,)), dim=-1)  # (n, C)
    jac = vmap(jacrev(logp), in_dims=(None, 0))(chosen, x)  # name -> (n, C, *shape): ∇ log p_c
    w = p.T.sqrt()  # (C, n)
    return {k: -v.movedim(1, 0) * w.view(*w.shape, *([1] * (v.dim() - 2))) for k, v in jac.items()}


# ------------------------------------------------------------------------------------------------------- diagonal
def fisher_diagonal(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    kind: str = "empirical",
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    method: str = "auto",
) -> dict[str, torch.Tensor]:
    """Diagonal of the Fisher information of a classifier's parameters (mean over samples).

    Parameters
    ----------
    model : nn.Module
        Maps ``inputs`` (N, ...) to logits (N, C). Samples must not interact (it is evaluated in eval mode).
    inputs : Tensor
    target : Tensor, optional
        Class indices (N,); required for ``kind="empirical"``, ignored for ``kind="true"``.
    kind : {"empirical", "true"}
        Squared gradients of the NLL at the given targets, or their expectation over the predicted class
        distribution (summed exactly over classes: C vectorized backward passes instead of one).
    params : sequence of str, optional
        Parameter names (default: all with requires_grad).
    internal_batch_size : int, optional
        Process the inputs in chunks of this size (same result, less memory).
    method : {"auto", "per_sample"}
        ``"auto"`` uses the outer-product form for Linear layers where it is exact and per-sample gradients
        elsewhere; ``"per_sample"`` uses per-sample gradients (torch.func) for everything (the reference).

    Returns
    -------
    dict[str, Tensor]
        Parameter name → tensor shaped like the parameter.
    """
    fn = "fisher_diagonal"
    bs = _check_common(model, inputs, target, kind, internal_batch_size, fn)
    if method not in ("auto", "per_sample"):
        raise ValueError(f"The 'method' parameter of {fn} must be one of 'auto', 'per_sample'. Got {method!r}.")
    named = _select(model, params, fn)
    names = [n for n, _ in named]
    linears = _fast_linears(model, set(names)) if method == "auto" else {}
    n_total = inputs.shape[0]
    out = {n: torch.zeros_like(p, memory_format=torch.contiguous_format).detach() for n, p in named}
    with _eval_mode(model):
        # Which Linear layers are exact is a property of the model's forward pass: decided on the first chunk.
        fast: dict[str, nn.Linear] | None = None
        for sl in _chunks(n_total, bs):
            x, y = inputs[sl], None if target is None or kind == "true" else target[sl]
            done: set[str] = set()
            if linears:
                terms, bad = _linear_chunk(model, x, y, kind, linears if fast is None else fast)
                if fast is None:
                    fast = {m: linears[m] for m in terms}
                for m, (a, g) in terms.items():
                    prefix = f"{m}." if m else ""
                    g2 = g.square().sum(0)  # (n, out): Σ_k g_k²
                    if prefix + "weight" in out:
                        out[prefix + "weight"] += g2.T @ a.square()  # (out, n) @ (n, in)
                        done.add(prefix + "weight")
                    if prefix + "bias" in out:
                        out[prefix + "bias"] += g2.sum(0)
                        done.add(prefix + "bias")
                linears = fast
            rest = [n for n in names if n not in done]
            if rest:
                for k, v in _per_sample_terms(model, x, y, kind, rest).items():
                    out[k] += v.square().sum((0, 1))
    return {k: v / n_total for k, v in out.items()}


# ------------------------------------------------------------------------------------------------------- K-FAC
@dataclass(frozen=True)
class KFACFactors:
    """Kronecker factors of one Linear layer's Fisher, F ≈ G ⊗ A over vec_row([W | b]).

    Attributes
    ----------
    A : Tensor
        E[ā āᵀ], (in + 1, in + 1) with the bias augmentation (ā = [a, 1]), else (in, in).
    G : Tensor
        E[g gᵀ] over samples (and over classes, probability-weighted, for the true Fisher), (out, out).
    bias : bool
        Whether A carries the bias augmentation.
    """

    A: torch.Tensor
    G: torch.Tensor
    bias: bool


def kfac_factors(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    kind: str = "empirical",
    layers: Sequence[str] | None = None,
    augment_bias: bool = True,
    internal_batch_size: int | None = None,
) -> dict[str, KFACFactors]:
    """K-FAC factors A = E[ā āᵀ] and G = E[g gᵀ] of each ``nn.Linear`` layer (module name → :class:`KFACFactors`).

    ``augment_bias=True`` appends a constant 1 to the inputs of layers with a bias, so that
    :func:`kfac_fisher` approximates the Fisher of [W | b]; ``False`` gives the factors of the weight alone.
    The product G ⊗ A is exact for a single sample, and whenever g and a are independent over the samples.
    """
    fn = "kfac_factors"
    bs = _check_common(model, inputs, target, kind, internal_batch_size, fn)
    if not isinstance(augment_bias, bool):
        raise TypeError(f"The 'augment_bias' parameter of {fn} must be a bool. Got {augment_bias!r} instead.")
    n_total = inputs.shape[0]
    sums: dict[str, list[torch.Tensor]] = {}
    mods: dict[str, nn.Linear] = {}
    for sl in _chunks(n_total, bs):
        y = None if target is None or kind == "true" else target[sl]
        terms = linear_layer_terms(model, inputs[sl], target=y, kind=kind, layers=layers)
        for m, (a, g) in terms.items():
            mods[m] = dict(model.named_modules())[m]
            if augment_bias and mods[m].bias is not None:
                a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)  # ā = [a, 1]
            gf = g.reshape(-1, g.shape[-1])  # (K·n, out)
            part = [a.T @ a, gf.T @ gf]
            sums[m] = part if m not in sums else [s + q for s, q in zip(sums[m], part)]
    return {m: KFACFactors(A / n_total, G / n_total, augment_bias and mods[m].bias is not None)
            for m, (A, G) in sums.items()}


def kfac_fisher(factors: KFACFactors) -> torch.Tensor:
    """The K-FAC approximation G ⊗ A of a layer's Fisher, indexed by vec_row([W | b]) (row i of W, then its bias)."""
    if not isinstance(factors, KFACFactors):
        raise TypeError(f"The 'factors' parameter of kfac_fisher must be a KFACFactors. Got {type(factors).__name__}.")
    return torch.kron(factors.G, factors.A)


# ------------------------------------------------------------------------------------------------------ exact
def exact_fisher(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    kind: str = "empirical",
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    max_size: int = 8192,
) -> torch.Tensor:
    """The full Fisher (P, P) of the chosen parameter tensors from per-sample gradients (the reference).

    The parameters are flattened row-major and concatenated in the order of ``params``. ``max_size`` guards
    against forming a huge matrix by mistake.
    """
    fn = "exact_fisher"
    bs = _check_common(model, inputs, target, kind, internal_batch_size, fn)
    named = _select(model, params, fn)
    size = sum(p.numel() for _, p in named)
    if size > max_size:
        raise ValueError(f"The 'params' parameter of {fn} selects {size} parameters, more than max_size={max_size}; "
                         "choose a smaller layer or raise max_size.")
    names = [n for n, _ in named]
    p0 = named[0][1]
    out = torch.zeros(size, size, dtype=p0.dtype, device=p0.device)
    with _eval_mode(model):
        for sl in _chunks(inputs.shape[0], bs):
            y = None if target is None or kind == "true" else target[sl]
            terms = _per_sample_terms(model, inputs[sl], y, kind, names)
            k, n = terms[names[0]].shape[:2]
            flat = torch.cat([terms[m].reshape(k * n, -1) for m in names], dim=1)  # (K·n, P)
            out += flat.T @ flat
    return out / inputs.shape[0]

