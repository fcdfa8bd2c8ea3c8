"""Curvature of the loss with respect to the parameters: Hessian-vector products and what they estimate.

Everything here is built on one Hessian-vector product (HVP), the "double backward" trick: take the gradient
g(θ) = ∇_θ L with ``create_graph=True``, then differentiate g·v once more, which gives H v without forming H
(Pearlmutter 1994; the trace and power-iteration logic follow PyHessian, arXiv 2006.07040, and HAWQ-V1/V2,
arXiv 1905.03696 / 1911.03852). :func:`make_hvp` returns that product as a reusable closure over a chosen list of
parameter tensors, so that other estimators (Lanczos, spectral density) can be added on top of it.

- :func:`hessian_trace`: Hutchinson's estimator Tr(H) ≈ mean_k v_kᵀ H v_k with Rademacher probes, whole or per
  parameter tensor (from the same probes), with its standard error; :func:`layer_hessian_traces`: the same per
  tensor block, with probes restricted to the block (lower variance).
- :func:`hessian_top_eigenvalue` / :func:`layer_top_eigenvalues`: power iteration on H or on one tensor's block.
- :func:`exact_hessian` / :func:`exact_layer_traces`: a small tensor's Hessian block, row by row (one HVP per row).

No function has side effects: the model is put in eval mode and restored, gradients are taken with
``torch.autograd.grad`` (``.grad`` is never written), and randomness comes only from ``generator``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TraceEstimate:
    """A Hutchinson trace estimate.

    Attributes
    ----------
    mean : float or dict[str, float]
        The estimate (per parameter name when ``by_layer``).
    std : float or dict[str, float]
        Its standard error: sample standard deviation of the per-probe values divided by sqrt(n_samples)
        (NaN when ``n_samples == 1``). Same structure as ``mean``.
    n_samples : int
        Number of probes.
    """

    mean: float | dict[str, float]
    std: float | dict[str, float]
    n_samples: int


# --------------------------------------------------------------------------------------------------- validation
def _check_int(value: object, name: str, fn: str, low: int, high: float = math.inf) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        rng = f"[{low}, inf)" if high == math.inf else f"[{low}, {int(high)}]"
        raise ValueError(f"The {name!r} parameter of {fn} must be an int in {rng}. Got {value!r} instead.")
    return int(value)


def _check_float(value: object, name: str, fn: str, low: float, low_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"The {name!r} parameter of {fn} must be a float in {bracket}{low}, inf). Got {value!r} instead."
        )
    return float(value)


def _as_generator(generator: torch.Generator | int | None, fn: str) -> torch.Generator:
    """An int seed or a Generator → a Generator (None → a freshly, non-deterministically seeded one)."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        gen = torch.Generator()
        gen.seed()
        return gen
    if isinstance(generator, int) and not isinstance(generator, bool) and generator >= 0:
        return torch.Generator().manual_seed(generator)
    raise TypeError(
        f"The 'generator' parameter of {fn} must be a torch.Generator, a non-negative int or None. "
        f"Got {generator!r} instead."
    )


def _select_params(model: nn.Module, params: Sequence[str] | None, fn: str) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs the Hessian is taken with respect to (default: all requiring grad)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    named = dict(model.named_parameters())
    if params is None:
        out = [(n, p) for n, p in named.items() if p.requires_grad]
    else:
        if isinstance(params, str):
            params = [params]
        unknown = [n for n in params if n not in named]
        if unknown:
            raise ValueError(
                f"The 'params' parameter of {fn} must name parameters of the model ({', '.join(named)}). "
                f"Got {unknown!r} instead."
            )
        frozen = [n for n in params if not named[n].requires_grad]
        if frozen:
            raise ValueError(f"The 'params' parameter of {fn} names parameters without requires_grad: {frozen!r}.")
        out = [(n, named[n]) for n in dict.fromkeys(params)]
    if not out:
        raise ValueError(f"{fn} needs at least one parameter with requires_grad=True.")
    return out


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluate in eval mode (no dropout, running BatchNorm statistics), then restore ``model.training``."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


# ------------------------------------------------------------------------------------------------------ the HVP
class HessianVectorProduct:
    """The map v ↦ H v for the Hessian of ``loss_fn(model(inputs), target)`` w.r.t. a list of parameter tensors.

    Built by :func:`make_hvp`. ``v`` and the result are lists of tensors shaped like :attr:`params`. Without
    ``internal_batch_size`` the gradient graph is built once and reused by every call; with it, every call
    re-runs the forward pass chunk by chunk (less memory, more time) and averages the chunks' products weighted by
    chunk size, which is exact for mean-reduced losses.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        target: torch.Tensor,
        loss_fn: LossFn,
        named_params: list[tuple[str, nn.Parameter]],
        internal_batch_size: int | None,
    ) -> None:
        self.model, self.inputs, self.target, self.loss_fn = model, inputs, target, loss_fn
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.internal_batch_size = internal_batch_size
        self._grads: tuple[torch.Tensor, ...] | None = None
        if internal_batch_size is None:
            self._grads = self._gradient(inputs, target)

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with _eval_mode(self.model):
            loss = self.loss_fn(self.model(x), y)
        # allow_unused: a parameter the loss does not touch has a zero gradient (and a zero Hessian block).
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        return tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params))

    @staticmethod
    def _second(grads: tuple[torch.Tensor, ...], params: list, v: Sequence[torch.Tensor], batched: bool) -> list:
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        out = [torch.zeros_like(v[i]) for i in range(len(params))]
        if not live:  # the loss is at most linear in these parameters: H = 0
            return out
        hv = torch.autograd.grad(
            [grads[i] for i in live], params, grad_outputs=[v[i] for i in live],
            retain_graph=True, allow_unused=True, is_grads_batched=batched,
        )
        return [o if h is None else h.detach() for o, h in zip(out, hv)]

    def __call__(self, v: Sequence[torch.Tensor], *, batched: bool = False) -> list[torch.Tensor]:
        """H v, one tensor per parameter. With ``batched=True`` each ``v[i]`` carries a leading batch dimension
        (B, *param.shape) and the B products are computed in one vectorized double backward."""
        if self._grads is not None:
            return self._second(self._grads, self.params, v, batched)
        n, bs = self.inputs.shape[0], self.internal_batch_size
        total = [torch.zeros_like(x) for x in v]
        for i in range(0, n, bs):
            x, y = self.inputs[i : i + bs], self.target[i : i + bs]
            part = self._second(self._gradient(x, y), self.params, v, batched)
            w = x.shape[0] / n  # chunks of a mean-reduced loss are weighted by their share of the batch
            total = [t + w * h for t, h in zip(total, part)]
        return total


def make_hvp(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    fn: str = "make_hvp",
) -> HessianVectorProduct:
    """Return the Hessian-vector product v ↦ H v of the loss over ``(inputs, target)`` as a reusable closure.

    Parameters
    ----------
    model : nn.Module
    inputs : Tensor
        A batch (N, ...); the model's parameters must live on its device and dtype.
    target : Tensor
        What ``loss_fn`` compares the outputs with (class indices for the default cross-entropy).
    loss_fn : callable, optional
        ``loss_fn(outputs, target) -> scalar``; defaults to mean cross-entropy.
    params : sequence of str, optional
        Names of the parameter tensors the Hessian is taken with respect to (default: all with requires_grad).
        Restricting to one tensor gives that tensor's diagonal block H_ii, which is cheaper to apply.
    internal_batch_size : int, optional
        Evaluate the loss in chunks of this size on every call instead of keeping one graph.
    """
    if not isinstance(inputs, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"The 'inputs' and 'target' parameters of {fn} must be tensors.")
    if inputs.shape[0] != target.shape[0]:
        raise ValueError(
            f"The 'target' parameter of {fn} must have one entry per input. "
            f"Got {target.shape[0]} for {inputs.shape[0]} inputs instead."
        )
    if internal_batch_size is not None:
        internal_batch_size = _check_int(internal_batch_size, "internal_batch_size", fn, 1)
    named = _select_params(model, params, fn)
    return HessianVectorProduct(
        model, inputs, target, loss_fn or nn.functional.cross_entropy, named, internal_batch_size
    )


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------------- trace
def hessian_trace(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    n_samples: int = 100,
    by_layer: bool = False,
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> TraceEstimate:
    """Hutchinson estimate of the Hessian trace, E[vᵀ H v] = Tr(H) for Rademacher v.

    Parameters
    ----------
    n_samples : int
        Number of Rademacher probes (one HVP each).
    by_layer : bool
        Also split each probe value vᵀHv into per-tensor parts v_iᵀ(Hv)_i, whose expectation is Tr(H_ii) because
        the probe's blocks are independent with zero mean. All tensors share the same probes (one HVP per probe).
    params : sequence of str, optional
        Restrict H to these parameter tensors (see :func:`make_hvp`).
    generator : torch.Generator or int, optional
        Draws the probes (on the generator's device, then moved to each parameter's device and dtype), so a given
        seed gives the same probes on CPU and GPU.

    Returns
    -------
    TraceEstimate
        ``mean`` and ``std`` (the standard error of ``mean``) as floats, or dicts of parameter name → float when
        ``by_layer``.
    """
    fn = "hessian_trace"
    n_samples = _check_int(n_samples, "n_samples", fn, 1)
    if not isinstance(by_layer, bool):
        raise TypeError(f"The 'by_layer' parameter of {fn} must be a bool. Got {by_layer!r} instead.")
    gen = _as_generator(generator, fn)
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=params,
                   internal_batch_size=internal_batch_size, fn=fn)
    values = torch.empty(n_samples, len(hvp.params), dtype=torch.float64)  # (probe, tensor)
    for k in range(n_samples):
        v = [(torch.randint(0, 2, p.shape, generator=gen, device=gen.device) * 2 - 1).to(p) for p in hvp.params]
        hv = hvp(v)
        values[k] = torch.stack([(a * b).sum().double().cpu() for a, b in zip(v, hv)])
    std_of = lambda x: float(x.std(unbiased=True) / math.sqrt(n_samples)) if n_samples > 1 else math.nan
    if by_layer:
        mean = {n: float(values[:, j].mean()) for j, n in enumerate(hvp.names)}
        std = {n: std_of(values[:, j]) for j, n in enumerate(hvp.names)}
        return TraceEstimate(mean, std, n_samples)
    total = values.sum(1)
    return TraceEstimate(float(total.mean()), std_of(total), n_samples)


def layer_hessian_traces(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    n_samples: int = 100,
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> TraceEstimate:
    """Hutchinson estimate of each parameter tensor's block trace Tr(H_ii), with probes restricted to that block.

    Unlike ``hessian_trace(..., by_layer=True)``, which splits one whole-model probe into blocks (one HVP per
    probe, but each block's estimate also carries the variance of the cross-blocks H_ij, j ≠ i), every tensor here
    gets its own ``n_samples`` probes and its own block HVP, v_i ↦ H_ii v_i (the estimator HAWQ-style per-layer
    sensitivities use). Its variance is 2(‖H_ii‖_F² − Σ_k (H_ii)_kk²) / n_samples. A block HVP only back-propagates
    as deep as its tensor, so the blocks of layers near the output are cheap and the whole sweep costs about as
    much as the joint estimate.

    Returns
    -------
    TraceEstimate
        ``mean`` and ``std`` (standard error) as dicts of parameter name → float.
    """
    fn = "layer_hessian_traces"
    n_samples = _check_int(n_samples, "n_samples", fn, 1)
    gen = _as_generator(generator, fn)
    names = [n for n, _ in _select_params(model, params, fn)]
    mean, std = {}, {}
    for name in names:
        hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=[name],
                       internal_batch_size=internal_batch_size, fn=fn)
        p = hvp.params[0]
        values = torch.empty(n_samples, dtype=torch.float64)
        for k in range(n_samples):
            v = (torch.randint(0, 2, p.shape, generator=gen, device=gen.device) * 2 - 1).to(p)
            values[k] = (v * hvp([v])[0]).sum().double().cpu()
        mean[name] = float(values.mean())
        std[name] = float(values.std(unbiased=True) / math.sqrt(n_samples)) if n_samples > 1 else math.nan
    return TraceEstimate(mean, std, n_samples)


# ------------------------------------------------------------------------------------------ top eigenvalue
def _power_iteration(hvp: HessianVectorProduct, max_iter: int, tol: float, gen: torch.Generator) -> float:
    v = [torch.randn(p.shape, generator=gen, device=gen.device).to(p) for p in hvp.params]
    norm = torch.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    eig: float | None = None
    for _ in range(max_iter):
        hv = hvp(v)
        new = float(_dot(v, hv))  # Rayleigh quotient vᵀHv with ‖v‖ = 1
        norm = torch.sqrt(_dot(hv, hv))
        if float(norm) == 0.0:  # H v = 0: v is in the null space; for a zero Hessian the answer is exactly 0
            return 0.0 if eig is None else eig
        v = [x / norm for x in hv]
        if eig is not None and abs(new - eig) <= tol * (abs(eig) + 1e-12):
            return new
        eig = new
    return float(eig)  # type: ignore[arg-type]


def hessian_top_eigenvalue(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> float:
    """Dominant Hessian eigenvalue by power iteration (HAWQ-V1's sensitivity), with relative-change stopping.

    Power iteration converges to the eigenvalue of largest magnitude: λ_max whenever the positive curvature
    dominates, which is the case near a trained minimum. It stops when the Rayleigh quotient changes by less than
    ``tol`` relative to its previous value, or after ``max_iter`` HVPs. ``params`` restricts H to a block.
    """
    fn = "hessian_top_eigenvalue"
    max_iter = _check_int(max_iter, "max_iter", fn, 1)
    tol = _check_float(tol, "tol", fn, 0.0)
    gen = _as_generator(generator, fn)
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=params,
                   internal_batch_size=internal_batch_size, fn=fn)
    return _power_iteration(hvp, max_iter, tol, gen)


def layer_top_eigenvalues(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> dict[str, float]:
    """Top eigenvalue of each parameter tensor's own Hessian block H_ii (the HVP restricted to that tensor)."""
    fn = "layer_top_eigenvalues"
    max_iter = _check_int(max_iter, "max_iter", fn, 1)
    tol = _check_float(tol, "tol", fn, 0.0)
    gen = _as_generator(generator, fn)
    names = [n for n, _ in _select_params(model, params, fn)]
    out = {}
    for name in names:
        hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=[name],
                       internal_batch_size=internal_batch_size, fn=fn)
        out[name] = _power_iteration(hvp, max_iter, tol, gen)
    return out


# ------------------------------------------------------------------------------------------- exact blocks
def exact_hessian(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    param: str,
    loss_fn: LossFn | None = None,
    max_params: int = 4096,
    chunk_size: int = 8,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """The Hessian block H_ii (n, n) of one parameter tensor (n elements, flattened), one HVP per row.

    Rows are computed ``chunk_size`` at a time with a vectorized (batched) double backward. ``max_params`` guards
    against accidentally asking for a large block: n HVPs and n² memory.
    """
    fn = "exact_hessian"
    max_params = _check_int(max_params, "max_params", fn, 1)
    chunk_size = _check_int(chunk_size, "chunk_size", fn, 1)
    if not isinstance(param, str):
        raise TypeError(f"The 'param' parameter of {fn} must be a parameter name (str). Got {param!r} instead.")
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=[param],
                   internal_batch_size=internal_batch_size, fn=fn)
    p = hvp.params[0]
    n = p.numel()
    if n > max_params:
        raise ValueError(
            f"The 'param' parameter of {fn} names a tensor with {n} elements, more than max_params={max_params}."
        )
    eye = torch.eye(n, dtype=p.dtype, device=p.device)
    rows = []
    for i in range(0, n, chunk_size):
        basis = eye[i : i + chunk_size].reshape(-1, *p.shape)  # (B, *param.shape): unit vectors e_i
        rows.append(hvp([basis], batched=True)[0].reshape(basis.shape[0], n))
    return torch.cat(rows)


def exact_layer_traces(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    params: Sequence[str],
    loss_fn: LossFn | None = None,
    max_params: int = 4096,
    chunk_size: int = 8,
    internal_batch_size: int | None = None,
) -> dict[str, float]:
    """Exact Tr(H_ii) of each named (small) parameter tensor, from its row-wise Hessian block."""
    names = [n for n, _ in _select_params(model, params, "exact_layer_traces")]
    return {
        n: float(torch.diagonal(exact_hessian(
            model, inputs, target=target, param=n, loss_fn=loss_fn, max_params=max_params,
            chunk_size=chunk_size, internal_batch_size=internal_batch_size,
        )).sum())
        for n in names
    }
