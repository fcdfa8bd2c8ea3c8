"""Curvature of the loss with respect to the parameters: Hessian-vector products and what they estimate.

Everything here is built on one Hessian-vector product (HVP), the "double backward" trick: take the gradient
g(θ) = ∇_θ L with ``create_graph=True``, then differentiate g·v once more, which gives H v without forming H
(Pearlmutter 1994; the trace and power-iteration logic follow PyHessian, arXiv 2006.07040, and HAWQ-V1/V2,
arXiv 1905.03696 / 1911.03852). :func:`make_hvp` returns that product as a reusable operator over a chosen list of
parameter tensors (it counts the products it computes); the trace, the top eigenvalues and the spectral density
are all estimated on top of that one operator. The win over PyHessian-style loops is fewer HVPs, not batching.

- :func:`hessian_trace`: Tr(H) by Hutch++ (Meyer, Musco, Musco & Woodruff 2021, arXiv 2010.09649; the default):
  a sketch Q of the range of H is traced exactly and Hutchinson's estimator (Rademacher probes) handles the
  deflated rest (I − QQᵀ)H(I − QQᵀ); or by plain Hutchinson (``method="hutchinson"``); whole, per parameter tensor
  or per output channel (:func:`channel_hessian_traces`, HAP's structured-pruning sensitivity), with a standard
  error and optional stopping once that error is small relative to the estimate (``rtol``).
  :func:`layer_hessian_traces`: per tensor block, with probes restricted to the block (lower variance).
- the top eigenvalues (Lanczos, power iteration) and the spectral density (SLQ) live in
  :mod:`nnsens.measures.spectrum`, on the same operator.
- :func:`exact_hessian` / :func:`exact_layer_traces`: a small tensor's Hessian block, row by row (one HVP per row).

No function has side effects: the model is put in eval mode and restored, gradients are taken with
``torch.autograd.grad`` (``.grad`` is never written), and randomness comes only from ``generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnsens.measures._checks import as_generator as _as_generator
from nnsens.measures._checks import check_float as _check_float
from nnsens.measures._checks import check_int as _check_int
from nnsens.measures._checks import eval_mode as _eval_mode
from nnsens.measures._checks import select_params as _select_params

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic trace estimate (Hutchinson or Hutch++).

    Attributes
    ----------
    mean : float or dict[str, float] or dict[str, numpy.ndarray]
        The estimate (per parameter name when ``by_layer``; per name, one value per output channel, from
        :func:`channel_hessian_traces`).
    std : same structure as ``mean``
        Its standard error. Hutchinson: the sample standard deviation of the per-probe values over
        sqrt(number of probes). Hutch++: that of the Hutchinson part on the deflated operator (the sketched part is
        exact given the sketch, see :func:`hessian_trace`). NaN with fewer than two (deflated) probes.
    n_samples : int
        Number of Hessian-vector products used (for Hutchinson, the number of probes).
    """

    mean: float | dict[str, float] | dict[str, np.ndarray]
    std: float | dict[str, float] | dict[str, np.ndarray]
    n_samples: int


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
        self.n_hvp = 0  # Hessian-vector products computed so far (a batched call of B vectors counts B)
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
        self.n_hvp += v[0].shape[0] if batched else 1
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

    # Flat views: the estimators below work on one vector of all selected parameters, in float64.
    @property
    def numel(self) -> int:
        """Dimension n of H (total number of selected parameter elements)."""
        return sum(p.numel() for p in self.params)

    def flatten(self, v: Sequence[torch.Tensor]) -> torch.Tensor:
        """A list of parameter-shaped tensors → one float64 vector (n,) on the parameters' device."""
        return torch.cat([x.reshape(-1).to(torch.float64) for x in v])

    def unflatten(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One vector (n,) → parameter-shaped tensors in each parameter's dtype and device."""
        out, i = [], 0
        for p in self.params:
            out.append(x[i : i + p.numel()].reshape(p.shape).to(p))
            i += p.numel()
        return out

    def mv(self, x: torch.Tensor) -> torch.Tensor:
        """H x for a flat vector x (n,), returned as float64 (n,) (the HVP itself runs in the parameters' dtype)."""
        return self.flatten(self(self.unflatten(x)))


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
METHODS = ("hutch++", "hutchinson")
_MIN_PROBES = 10  # with rtol, the standard error is not trusted (nor used to stop) before this many probes

# A reduction maps one probe v and its product H v (lists of parameter-shaped tensors) to a float64 CPU vector of
# group contributions (one per tensor, or per output channel) that add up to vᵀHv.
Reduce = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]


def _per_tensor(v: Sequence[torch.Tensor], hv: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([(a * b).sum().double().cpu() for a, b in zip(v, hv)])


def _per_channel(v: Sequence[torch.Tensor], hv: Sequence[torch.Tensor]) -> torch.Tensor:
    # (out, ...) → (out,): channel c's part v_cᵀ(Hv)_c, summed over the channel's weights
    return torch.cat([(a * b).reshape(a.shape[0], -1).sum(1).double().cpu() for a, b in zip(v, hv)])


def _rademacher(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    """±1 probes, drawn on the generator's device (same seed → same probes on CPU and GPU)."""
    return [(torch.randint(0, 2, p.shape, generator=gen, device=gen.device) * 2 - 1).to(p) for p in params]


def _check_method(method: object, fn: str) -> str:
    if method not in METHODS:
        raise ValueError(f"The 'method' parameter of {fn} must be one of {', '.join(map(repr, METHODS))}. "
                         f"Got {method!r} instead.")
    return str(method)


def _trace_options(method, n_samples, rtol, sketch_size, fn) -> tuple[str, int, float | None, int]:
    """Validate the shared options; return (method, n_samples, rtol, sketch size)."""
    method = _check_method(method, fn)
    n_samples = _check_int(n_samples, "n_samples", fn, 1)
    if rtol is not None:
        rtol = _check_float(rtol, "rtol", fn, 0.0)
    if method == "hutchinson":
        if sketch_size is not None:
            raise ValueError(f"The 'sketch_size' parameter of {fn} only applies to method='hutch++'. "
                             f"Got {sketch_size!r} with method='hutchinson'.")
        return method, n_samples, rtol, 0
    if sketch_size is None:  # Hutch++'s split: a third of the budget sketches, a third traces the sketch
        # With rtol, n_samples is only a cap: sketch about as many directions as a trained classifier's Hessian
        # typically has outlier eigenvalues (about one per class, Papyan 2019, arXiv 1901.08244).
        sketch_size = n_samples // 3 if rtol is None else min(n_samples // 3, 10)
    else:
        sketch_size = _check_int(sketch_size, "sketch_size", fn, 0, (n_samples - 1) // 2)
    return method, n_samples, rtol, sketch_size


def _estimate_trace(
    hvp: HessianVectorProduct,
    reduce: Reduce,
    n_samples: int,
    rtol: float | None,
    sketch_size: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, float, float, int]:
    """The shared trace loop. Returns per-group (mean, standard error), the total's (mean, standard error), HVPs.

    With ``sketch_size = k > 0`` (Hutch++): Y = H S for k Rademacher probes S (k HVPs), Q = orth(Y), the sketched
    part Tr(QᵀHQ) exactly (k HVPs, split into groups as Σ_j q_jᵀ E_g H q_j), then Rademacher probes g projected
    onto the complement, g̃ = (I − QQᵀ)g, for the deflated part Tr((I − QQᵀ)H(I − QQᵀ)) (one HVP each). Both
    parts and their group splits are unbiased given Q, so the whole is unbiased for Tr(H) and for each Tr(E_g H).
    With k = 0 it is Hutchinson's estimator. With ``rtol``, probes stop once SE/|mean| < rtol (after at least
    ``_MIN_PROBES`` probes), ``n_samples`` being the cap on HVPs.
    """
    start = hvp.n_hvp
    exact: torch.Tensor | float = 0.0
    q = None
    k = min(sketch_size, hvp.numel)
    if k > 0:
        y = torch.stack([hvp.mv(hvp.flatten(_rademacher(hvp.params, gen))) for _ in range(k)], dim=1)  # (n, k)
        q, _ = torch.linalg.qr(y)  # (n, k), orthonormal columns spanning (most of) the dominant range of H
        cols = [hvp.unflatten(q[:, j]) for j in range(k)]
        exact = torch.stack([reduce(c, hvp(c)) for c in cols]).sum(0)  # (G,)
        exact_total = float(exact.sum())
    else:
        exact_total = 0.0
    values, s1, s2 = [], 0.0, 0.0  # per-probe group values; running sums of the per-probe totals
    for i in range(n_samples - 2 * k):
        v = _rademacher(hvp.params, gen)
        if q is not None:
            g = hvp.flatten(v)
            v = hvp.unflatten(g - q @ (q.T @ g))  # (I − QQᵀ) g
        values.append(reduce(v, hvp(v)))
        if rtol is not None:
            t = float(values[-1].sum())
            s1, s2 = s1 + t, s2 + t * t
            m = i + 1
            if m >= max(2, _MIN_PROBES):
                var = max(s2 - s1 * s1 / m, 0.0) / (m - 1)
                if math.sqrt(var / m) < rtol * abs(exact_total + s1 / m):
                    break
    vals = torch.stack(values)  # (K, G)
    m = vals.shape[0]
    # column by column, as the pre-Hutch++ code did, so that Hutchinson results are bit-for-bit unchanged
    se_of = lambda x: float(x.std(unbiased=True) / math.sqrt(m)) if m > 1 else math.nan  # noqa: E731
    total = vals.sum(1)  # (K,)
    mean = exact + torch.stack([vals[:, j].mean() for j in range(vals.shape[1])])
    se = torch.tensor([se_of(vals[:, j]) for j in range(vals.shape[1])], dtype=torch.float64)
    return mean, se, float(exact_total + total.mean()), se_of(total), hvp.n_hvp - start


def hessian_trace(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    n_samples: int = 100,
    by_layer: bool = False,
    params: Sequence[str] | None = None,
    method: str = "hutch++",
    rtol: float | None = None,
    sketch_size: int | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> TraceEstimate:
    """Stochastic estimate of the Hessian trace Tr(H), by Hutch++ (default) or Hutchinson's estimator.

    Hutchinson: Tr(H) ≈ mean_k v_kᵀ H v_k over Rademacher probes v_k, variance 2(‖H‖_F² − Σ H_ii²)/n.
    Hutch++ (arXiv 2010.09649) spends ``sketch_size`` HVPs on a sketch H S, orthonormalises it (Q), traces QᵀHQ
    exactly (``sketch_size`` more HVPs) and runs Hutchinson on the deflated operator P H P, P = I − QQᵀ, with the
    rest of the budget. When H has a few dominant eigenvalues (a trained network's Hessian does), Q captures them,
    ‖PHP‖_F ≪ ‖H‖_F, and the same number of HVPs gives a much smaller error.

    Standard error of Hutch++: given the sketch, Tr(QᵀHQ) is exact and Tr(H) = Tr(QᵀHQ) + Tr(PHP), so the
    estimator is unbiased conditionally on Q and all its randomness (given Q) is in the Hutchinson part. We report
    that part's standard error, sd(g̃ᵀHg̃)/sqrt(K) over its K deflated probes g̃ = Pg. Because the conditional mean
    is Tr(H) for every Q, the sketch adds no variance of its own (Var = E_Q[Var(· | Q)]): the squared reported error
    is an unbiased estimate of the estimator's variance, as for plain Hutchinson.

    Parameters
    ----------
    n_samples : int
        Budget of Hessian-vector products (for Hutchinson: the number of probes). With ``rtol``, the cap.
    by_layer : bool
        Also split the estimate into per-tensor parts Tr(H_ii) (each probe's v_iᵀ(Hv)_i, and the sketch's
        q_iᵀ(Hq)_i), unbiased because a probe's blocks are independent with zero mean. All tensors share the same
        HVPs.
    params : sequence of str, optional
        Restrict H to these parameter tensors (see :func:`make_hvp`).
    method : {"hutch++", "hutchinson"}
    rtol : float, optional
        Stop drawing probes once the standard error is below ``rtol`` × |estimate| (checked after each probe, from
        the tenth on). This is a stop on the estimator's own error, not on the change between iterations.
    sketch_size : int, optional
        Hutch++ sketch size k (2k HVPs; at most (n_samples − 1) // 2). Default n_samples // 3 (Hutch++'s
        thirds), or min(n_samples // 3, 10) with ``rtol`` (about one direction per outlier eigenvalue of a
        10-class classifier's Hessian; pass more for more classes or a heavier top of the spectrum). 0 gives
        Hutchinson.
    generator : torch.Generator or int, optional
        Draws the probes (on the generator's device, then moved to each parameter's device and dtype), so a given
        seed gives the same probes on CPU and GPU. Plain Hutchinson draws exactly the probes it did before Hutch++
        was added.

    Returns
    -------
    TraceEstimate
        ``mean`` and ``std`` (the standard error of ``mean``) as floats, or dicts of parameter name → float when
        ``by_layer``; ``n_samples`` the HVPs used.
    """
    fn = "hessian_trace"
    method, n_samples, rtol, k = _trace_options(method, n_samples, rtol, sketch_size, fn)
    if not isinstance(by_layer, bool):
        raise TypeError(f"The 'by_layer' parameter of {fn} must be a bool. Got {by_layer!r} instead.")
    gen = _as_generator(generator, fn)
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=params,
                   internal_batch_size=internal_batch_size, fn=fn)
    mean, se, total, total_se, used = _estimate_trace(hvp, _per_tensor, n_samples, rtol, k, gen)
    if by_layer:
        return TraceEstimate({n: float(mean[j]) for j, n in enumerate(hvp.names)},
                             {n: float(se[j]) for j, n in enumerate(hvp.names)}, used)
    return TraceEstimate(total, total_se, used)


def channel_hessian_traces(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    n_samples: int = 100,
    params: Sequence[str] | None = None,
    method: str = "hutch++",
    rtol: float | None = None,
    sketch_size: int | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> TraceEstimate:
    """Per-output-channel Hessian traces, Tr(H_cc) for each slice ``w[c]`` of each weight (HAP, arXiv 2101.08940).

    Channel c's estimate is the probes' mean of v_cᵀ(Hv)_c (plus, for Hutch++, the sketch's exact part), where v
    is a probe over all selected tensors jointly and (Hv)_c the product's slice for that channel, as HAP's code
    computes it with PyHessian; the channels of one tensor add up to its ``by_layer`` trace.

    Parameters
    ----------
    params : sequence of str, optional
        Default: the ``weight`` of every ``nn.Conv*d`` and ``nn.Linear`` module (only these enter HAP's Hessian).
        A channel is an index along dim 0 (a conv's output channel, a linear layer's output unit).

    Other parameters are those of :func:`hessian_trace`.

    Returns
    -------
    TraceEstimate
        ``mean`` and ``std``: dicts of parameter name → float64 array (out_channels,); ``n_samples`` the HVPs used.
    """
    fn = "channel_hessian_traces"
    method, n_samples, rtol, k = _trace_options(method, n_samples, rtol, sketch_size, fn)
    gen = _as_generator(generator, fn)
    if params is None and isinstance(model, nn.Module):
        kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
        params = [f"{name}.weight" if name else "weight" for name, mod in model.named_modules()
                  if isinstance(mod, kinds) and mod.weight.requires_grad]
        if not params:
            raise ValueError(f"{fn} found no nn.Conv*d or nn.Linear weight in the model; pass 'params'.")
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=params,
                   internal_batch_size=internal_batch_size, fn=fn)
    mean, se, _, _, used = _estimate_trace(hvp, _per_channel, n_samples, rtol, k, gen)
    out_mean, out_se, i = {}, {}, 0
    for name, p in zip(hvp.names, hvp.params):
        c = p.shape[0] if p.dim() else 1
        out_mean[name], out_se[name] = mean[i : i + c].numpy().copy(), se[i : i + c].numpy().copy()
        i += c
    return TraceEstimate(out_mean, out_se, used)


def layer_hessian_traces(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    n_samples: int = 100,
    params: Sequence[str] | None = None,
    method: str = "hutchinson",
    rtol: float | None = None,
    sketch_size: int | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> TraceEstimate:
    """Estimate of each parameter tensor's block trace Tr(H_ii), with probes restricted to that block.

    Unlike ``hessian_trace(..., by_layer=True)``, which splits one whole-model probe into blocks (one HVP per
    probe, but each block's estimate also carries the variance of the cross-blocks H_ij, j ≠ i), every tensor here
    gets its own ``n_samples`` HVPs on its own block, v_i ↦ H_ii v_i (the estimator HAWQ-style per-layer
    sensitivities use). With Hutchinson (the default here, as before ``method`` existed) its variance is
    2(‖H_ii‖_F² − Σ_k (H_ii)_kk²) / n_samples; ``method="hutch++"`` deflates each block (see :func:`hessian_trace`).
    A block HVP only back-propagates as deep as its tensor, so the blocks of layers near the output are cheap and
    the whole sweep costs about as much as the joint estimate.

    Returns
    -------
    TraceEstimate
        ``mean`` and ``std`` (standard error) as dicts of parameter name → float; ``n_samples`` the largest
        number of HVPs spent on one block.
    """
    fn = "layer_hessian_traces"
    method, n_samples, rtol, k = _trace_options(method, n_samples, rtol, sketch_size, fn)
    gen = _as_generator(generator, fn)
    names = [n for n, _ in _select_params(model, params, fn)]
    mean, std, most = {}, {}, 0
    for name in names:
        hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=[name],
                       internal_batch_size=internal_batch_size, fn=fn)
        _, _, mean[name], std[name], used = _estimate_trace(hvp, _per_tensor, n_samples, rtol, k, gen)
        most = max(most, used)
    return TraceEstimate(mean, std, most)


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
