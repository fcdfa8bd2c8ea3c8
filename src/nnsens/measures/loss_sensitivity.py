"""Loss-based sensitivity of each parameter: gradient magnitude, Taylor, SNIP and OBD saliencies.

Each score is a dict ``parameter name -> tensor shaped like the parameter`` (detached, on the parameter's device and
dtype), computed from the loss ``L = loss_fn(model(inputs), target)`` (a mean over samples; cross-entropy by default):

- :func:`gradient_sensitivity`: |∂L/∂w|, the sensitivity LOBSTER regularises with (arXiv 2011.09905);
- :func:`taylor_sensitivity`: |w·∂L/∂w|, the first-order Taylor estimate of the loss change when w is set to 0
  (Molchanov et al., arXiv 1611.06440, per weight);
- :func:`snip_scores`: SNIP's connection sensitivity |w·∂L/∂w| / Σ|w·∂L/∂w| over all scored parameters (Lee et al.,
  arXiv 1810.02340). SNIP scores a network *at initialisation*: pass the untrained model; the function itself
  scores whatever weights it is given;
- :func:`obd_saliency`: Optimal Brain Damage's ½·h_ii·w² (LeCun et al., NeurIPS 1989). OBD computes h_ii by a
  backward pass that drops the second derivatives of the network, i.e. the diagonal of the Gauss–Newton matrix
  JᵀH_zJ (H_z: the Hessian of the loss w.r.t. the outputs): that is ``curvature="gauss_newton"`` (the default),
  computed exactly (sum over the eigen-directions of each sample's H_z: for cross-entropy it is the "true" Fisher
  diagonal). ``curvature="hessian"`` takes the exact diagonal of the Hessian instead (one Hessian-vector product
  per parameter entry: small models only). For a ReLU network the two coincide: its outputs are multilinear in
  the weights, so ∂²z/∂w_i² = 0 and the dropped term vanishes on the diagonal.

No function has side effects: the model is evaluated in eval mode and its ``training`` flag restored, gradients
come from ``torch.autograd.grad`` / ``torch.func`` (``.grad`` is never written).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, hessian, vmap

from nnsens.measures._checks import check_internal_batch_size as _check_batch
from nnsens.measures._checks import chunks as _chunks
from nnsens.measures._checks import eval_mode as _eval_mode
from nnsens.measures._checks import select_params as _named

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Scores = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------------- validation


def _check_data(inputs: object, target: object, fn: str) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"The 'inputs' parameter of {fn} must be a torch.Tensor. Got {type(inputs).__name__}.")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"The 'target' parameter of {fn} must be a torch.Tensor. Got {type(target).__name__}.")
    if inputs.shape[0] < 1 or target.shape[0] != inputs.shape[0]:
        raise ValueError(f"The 'target' parameter of {fn} must have one entry per input row "
                         f"({inputs.shape[0]}). Got shape {tuple(target.shape)} instead.")


# ----------------------------------------------------------------------------------------------------- gradients
def loss_gradient(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | str | None = None,
    internal_batch_size: int | None = None,
) -> Scores:
    """∂L/∂w for each parameter (signed), the loss a mean over ``inputs``.

    With ``internal_batch_size`` the gradient is accumulated chunk by chunk, weighted by chunk size (exact for a
    mean-reduced loss).
    """
    return _gradient(model, inputs, target, loss_fn, params, internal_batch_size, "loss_gradient")


def _gradient(model, inputs, target, loss_fn, params, internal_batch_size, fn: str) -> Scores:
    _check_data(inputs, target, fn)
    size = _check_batch(internal_batch_size, fn)
    named = _named(model, params, fn)
    loss_fn = loss_fn or nn.functional.cross_entropy
    tensors = [p for _, p in named]
    total = [torch.zeros_like(p) for p in tensors]
    n = inputs.shape[0]
    with _eval_mode(model):
        for sl in _chunks(n, size):
            loss = loss_fn(model(inputs[sl]), target[sl])
            gs = torch.autograd.grad(loss, tensors, allow_unused=True)
            w = (sl.stop - sl.start) / n
            for t, g in zip(total, gs, strict=True):
                if g is not None:
                    t.add_(g.detach(), alpha=w)
    return {name: t for (name, _), t in zip(named, total, strict=True)}


def gradient_sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | str | None = None,
    internal_batch_size: int | None = None,
) -> Scores:
    """|∂L/∂w| per parameter entry (LOBSTER's sensitivity).

    Parameters
    ----------
    model : nn.Module
    inputs : Tensor
        A batch, (N, ...); the loss is its mean.
    target : Tensor
        (N,) class labels (or whatever ``loss_fn`` takes).
    loss_fn : callable, optional
        ``loss_fn(outputs, target) -> scalar``, mean-reduced; cross-entropy by default.
    params : sequence of str, optional
        Names of the parameters to score (default: all with ``requires_grad``).
    internal_batch_size : int, optional
        Chunk size for the forward/backward passes.

    Returns
    -------
    dict[str, Tensor]
    """
    g = _gradient(model, inputs, target, loss_fn, params, internal_batch_size, "gradient_sensitivity")
    return {n: t.abs() for n, t in g.items()}


def taylor_sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | str | None = None,
    internal_batch_size: int | None = None,
) -> Scores:
    """|w·∂L/∂w|: the first-order Taylor estimate of the loss change when the entry is zeroed (same arguments as
    :func:`gradient_sensitivity`)."""
    g = _gradient(model, inputs, target, loss_fn, params, internal_batch_size, "taylor_sensitivity")
    named = dict(model.named_parameters())
    return {n: (named[n].detach() * t).abs() for n, t in g.items()}


def snip_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | str | None = None,
    internal_batch_size: int | None = None,
) -> Scores:
    """SNIP's connection sensitivity: |w·∂L/∂w| normalised to sum to 1 over all scored entries.

    SNIP differentiates the loss w.r.t. a multiplicative gate c = 1 on each connection, ∂L/∂c = w·∂L/∂w, and is
    meant to be applied to the network at initialisation (pass the untrained model). A network whose scores are
    all zero (e.g. a constant model) gets all-zero scores rather than a division by zero.
    """
    t = taylor_sensitivity(model, inputs, target=target, loss_fn=loss_fn, params=params,
                           internal_batch_size=internal_batch_size)
    total = sum(float(s.double().sum()) for s in t.values())
    if total == 0.0:
        return t
    return {n: s / total for n, s in t.items()}


# ----------------------------------------------------------------------------------------------------------- OBD
def _gauss_newton_diagonal(model, inputs, target, loss_fn, named, size) -> Scores:
    """diag(JᵀH_zJ) averaged over samples, exactly: H_z(n) = Σ_k λ_k u_k u_kᵀ, so the diagonal is
    Σ_n Σ_k λ_k (J_nᵀu_k)² / N, with J_nᵀu_k the per-sample gradient of the output projected on u_k."""
    names = [n for n, _ in named]
    all_params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    free = {k: all_params[k] for k in names}
    fixed = {k: v for k, v in all_params.items() if k not in free}

    def out_one(p, x):  # one sample -> its output vector (C,)
        return functional_call(model, ({**fixed, **p}, buffers), (x.unsqueeze(0),)).squeeze(0)

    def proj(p, x, u):  # zᵀu for one sample and one direction
        return (out_one(p, x) * u).sum()

    loss_one = lambda z, y: loss_fn(z.unsqueeze(0), y.unsqueeze(0))  # noqa: E731
    per_grad = vmap(grad(proj), in_dims=(None, 0, 0))
    total = {k: torch.zeros_like(v) for k, v in free.items()}
    n = inputs.shape[0]
    for sl in _chunks(n, size):
        x, y = inputs[sl], target[sl]
        with torch.no_grad():
            z = vmap(out_one, in_dims=(None, 0))(free, x)  # (B, C)
            hz = vmap(hessian(loss_one))(z, y)  # (B, C, C), symmetric
            lam, u = torch.linalg.eigh(hz)  # (B, C), (B, C, C): columns are eigenvectors
            lam = lam.clamp_min(0.0)  # a convex loss in z has H_z ⪰ 0; clip round-off
        for k in range(z.shape[1]):
            gk = per_grad(free, x, u[:, :, k])  # name -> (B, *shape)
            for name, g in gk.items():
                w = lam[:, k].reshape((-1,) + (1,) * (g.dim() - 1))
                total[name] += (w * g.detach() ** 2).sum(0)
    return {k: v / n for k, v in total.items()}


def _hessian_diagonal(model, inputs, target, loss_fn, named, size) -> Scores:
    """Exact diag(H), one Hessian-vector product with each unit vector (row by row)."""
    tensors = [p for _, p in named]
    out = {name: torch.zeros_like(p) for name, p in named}
    n = inputs.shape[0]
    for sl in _chunks(n, size):
        loss = loss_fn(model(inputs[sl]), target[sl])
        gs = torch.autograd.grad(loss, tensors, create_graph=True, allow_unused=True)
        w = (sl.stop - sl.start) / n
        for (name, p), g in zip(named, gs, strict=True):
            if g is None or not g.requires_grad:
                continue
            flat = g.reshape(-1)
            diag = out[name].reshape(-1)
            for i in range(flat.numel()):
                (row,) = torch.autograd.grad(flat[i], p, retain_graph=True, allow_unused=True)
                if row is not None:
                    diag[i] += w * row.reshape(-1)[i].detach()
    return out


def obd_saliency(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | str | None = None,
    curvature: str = "gauss_newton",
    internal_batch_size: int | None = None,
    return_curvature: bool = False,
) -> Scores | tuple[Scores, Scores]:
    """Optimal Brain Damage saliency ½·h_ii·w_i² per parameter entry.

    Parameters
    ----------
    curvature : {"gauss_newton", "hessian"}
        ``"gauss_newton"`` (OBD's own approximation, the default): the exact diagonal of the Gauss–Newton matrix
        JᵀH_zJ, through per-sample gradients (``torch.func``); needs a ``loss_fn`` that is a mean of per-sample
        terms and convex in the outputs (cross-entropy, squared error). ``"hessian"``: the exact Hessian diagonal,
        one HVP per entry (only for small parameter sets).
    return_curvature : bool
        Also return the diagonal itself.
    Other parameters are as in :func:`gradient_sensitivity`.

    Returns
    -------
    dict[str, Tensor] or (dict, dict)
        Saliencies (and the diagonal when ``return_curvature``).
    """
    fn = "obd_saliency"
    _check_data(inputs, target, fn)
    size = _check_batch(internal_batch_size, fn)
    if curvature not in ("gauss_newton", "hessian"):
        raise ValueError(f"The 'curvature' parameter of {fn} must be one of 'gauss_newton', 'hessian'. "
                         f"Got {curvature!r} instead.")
    named = _named(model, params, fn)
    loss_fn = loss_fn or nn.functional.cross_entropy
    with _eval_mode(model):
        if curvature == "gauss_newton":
            diag = _gauss_newton_diagonal(model, inputs, target, loss_fn, named, size)
        else:
            diag = _hessian_diagonal(model, inputs, target, loss_fn, named, size)
    sal = {name: 0.5 * diag[name] * p.detach() ** 2 for name, p in named}
    return (sal, diag) if return_curvature else sal


def flatten_scores(scores: Scores) -> torch.Tensor:
    """All entries of a score dict as one 1-D tensor (in the dict's order)."""
    if not scores:
        raise ValueError("The 'scores' parameter of flatten_scores must be a non-empty dict.")
    return torch.cat([s.reshape(-1) for s in scores.values()])


__all__ = [
    "flatten_scores",
    "gradient_sensitivity",
    "loss_gradient",
    "obd_saliency",
    "snip_scores",
    "taylor_sensitivity",
]
