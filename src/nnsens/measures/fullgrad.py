"""FullGrad: full-gradient saliency, arXiv 1905.00780 (Srinivas & Fleuret, NeurIPS 2019).

For a network built from affine layers and ReLU-like, positively homogeneous nonlinearities (ReLU, leaky ReLU,
max / average pooling), the output is piecewise linear in the input *and* in every bias, so on each linear piece

    f(x) = sum_i x_i * df/dx_i  +  sum_layers sum_units b_u * df/dz_u        (completeness)

where z is the output of an affine layer and b its bias, broadcast over the layer's spatial positions. A BatchNorm in
eval mode is affine too, ``y = a x + c`` with ``a = gamma / sqrt(var + eps)`` and ``c = beta - a * mean``: its shift
``c`` is a bias like any other (forgetting it breaks completeness). :func:`fullgrad_parts` returns the input part
``x * grad`` and one bias part ``b * grad`` per affine layer, so the identity can be tested; :func:`fullgrad` turns them
into the paper's map: |input part| and the |bias part| of every spatial (convolutional or BatchNorm) layer, each
normalised to [0, 1] per image, summed over channels and (bias parts) bilinearly resized to the input, then added.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nnsens.measures._checks import check_internal_batch_size, chunks, eval_mode
from nnsens.measures.perturbation import TargetType

# Modules with a bias that enter the decomposition (BatchNorm's bias is its eval-mode shift, see _bias_of).
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Parameter-free modules that keep the network piecewise linear and positively homogeneous.
_SAFE = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Flatten,
         nn.Identity, nn.Dropout, nn.Dropout2d)


@dataclass(frozen=True)
class FullGradParts:
    """The terms of the full-gradient decomposition of one output per example.

    Attributes
    ----------
    input : Tensor, shape of ``inputs``: ``x * df/dx``.
    biases : dict, layer name -> Tensor (N, *layer output shape): ``b * df/dz`` (a layer called k > 0 times more in one
        forward gets entries ``name#k``).
    output : Tensor (N,): the explained output ``f(x)[target]``.
    """

    input: torch.Tensor
    biases: dict[str, torch.Tensor]
    output: torch.Tensor

    def total(self) -> torch.Tensor:
        """Sum of all parts per example, (N,): equals ``output`` when completeness holds."""
        s = self.input.flatten(1).sum(1)
        for b in self.biases.values():
            s = s + b.flatten(1).sum(1)
        return s

    def relative_error(self) -> torch.Tensor:
        """|total - output| / |output| per example, (N,) (the official code's check uses rel_tol 1e-4)."""
        return (self.total() - self.output).abs() / self.output.abs().clamp_min(torch.finfo(self.output.dtype).tiny)


def check_relu_network(model: nn.Module, fn: str = "fullgrad") -> list[tuple[str, nn.Module]]:
    """The named affine layers of ``model``; raise if a module could break piecewise linearity.

    Only modules are inspected: a nonlinearity applied functionally inside ``forward`` (``torch.sigmoid(x)``) cannot
    be seen here, so the completeness identity (``FullGradParts.relative_error``) remains the real test.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    affine = []
    for name, m in model.named_modules():
        if isinstance(m, _AFFINE):
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats:
                raise ValueError(f"{fn} needs BatchNorm layers with running statistics (an eval-mode affine map); "
                                 f"{name!r} has track_running_stats=False.")
            affine.append((name, m))
        elif isinstance(m, _SAFE):
            continue
        elif any(True for _ in m.parameters(recurse=False)) or not any(True for _ in m.children()):
            # a leaf we do not know, or a container with its own parameters (custom layer)
            raise ValueError(f"{fn} supports networks of Linear / Conv / BatchNorm layers and ReLU-like, piecewise "
                             f"linear modules only (completeness needs a positively homogeneous network). Module "
                             f"{name!r} is a {type(m).__name__}.")
    return affine


def _bias_of(m: nn.Module, like: torch.Tensor) -> torch.Tensor | None:
    """The bias of an affine layer, shaped to broadcast over its output ``like`` (None when it has none)."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        scale = torch.rsqrt(m.running_var + m.eps)
        gamma = m.weight if m.weight is not None else torch.ones_like(scale)
        beta = m.bias if m.bias is not None else torch.zeros_like(scale)
        b = beta - gamma * scale * m.running_mean  # the eval-mode shift c of y = a x + c
    else:
        b = m.bias
        if b is None:
            return None
    return b.detach().to(like.dtype).reshape(1, -1, *([1] * (like.ndim - 2)))


def _targets(target: TargetType | None, logits: torch.Tensor, fn: str) -> torch.Tensor:
    n = logits.shape[0]
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1).to(logits.device)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n or (t < 0).any() or (t >= logits.shape[1]).any():
        raise ValueError(f"The 'target' parameter of {fn} must be None, a class index or {n} class indices in "
                         f"[0, {logits.shape[1] - 1}]. Got {target!r} instead.")
    return t


def _parts_one(model: nn.Module, x: torch.Tensor, target: TargetType | None,
               affine: list[tuple[str, nn.Module]], fn: str) -> FullGradParts:
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, args: object, out: torch.Tensor) -> None:
            k = counts.get(name, 0)
            counts[name] = k + 1
            seen.append((name if k == 0 else f"{name}#{k}", module, out))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in affine]
    try:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = model(xg)
            if logits.ndim != 2:
                raise ValueError(f"{fn} needs a model returning (N, n_outputs). Got {tuple(logits.shape)}.")
            t = _targets(target, logits, fn)
            out = logits.gather(1, t[:, None])[:, 0]
            # each example's output depends on its own row only, so the gradient of the sum is per example
            grads = torch.autograd.grad(out.sum(), [xg] + [z for _, _, z in seen], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    biases = {}
    for (name, m, z), g in zip(seen, grads[1:], strict=True):
        b = _bias_of(m, z)
        if b is not None:
            biases[name] = (torch.zeros_like(z) if g is None else g * b).detach()
    return FullGradParts(input=(grads[0] * x).detach(), biases=biases, output=out.detach())


def fullgrad_parts(model: nn.Module, inputs: torch.Tensor, *, target: TargetType | None = None,
                   internal_batch_size: int | None = None) -> FullGradParts:
    """Input-gradient and bias-gradient parts of the target output, in eval mode.

    Parameters
    ----------
    model : nn.Module
        Linear / Conv / BatchNorm layers and ReLU-like modules only (else ``ValueError``).
    inputs : Tensor (N, ...)
    target : int, sequence of N ints or Tensor, optional
        Output index explained per example; default: the predicted class.
    internal_batch_size : int, optional
        Examples per forward/backward pass (default: all at once).

    Returns
    -------
    FullGradParts
        ``parts.total()`` equals ``parts.output`` up to rounding (completeness).
    """
    fn = "fullgrad_parts"
    affine = check_relu_network(model, fn)
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or not inputs.is_floating_point():
        raise ValueError(f"The 'inputs' parameter of {fn} must be a floating tensor (N, ...). "
                         f"Got {type(inputs).__name__ if not isinstance(inputs, torch.Tensor) else inputs.shape}.")
    size = check_internal_batch_size(internal_batch_size, fn)
    n = inputs.shape[0]
    tgt = None if target is None else torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if tgt is not None and tgt.numel() not in (1, n):
        raise ValueError(f"The 'target' parameter of {fn} must be None, a class index or {n} class indices. "
                         f"Got {tgt.numel()} indices instead.")
    pieces = []
    with eval_mode(model):
        for sl in chunks(n, size):
            t = None if tgt is None else (tgt if tgt.numel() == 1 else tgt[sl])
            pieces.append(_parts_one(model, inputs[sl], t, affine, fn))
    if len(pieces) == 1:
        return pieces[0]
    return FullGradParts(input=torch.cat([p.input for p in pieces]),
                         biases={k: torch.cat([p.biases[k] for p in pieces]) for k in pieces[0].biases},
                         output=torch.cat([p.output for p in pieces]))


def _normalise(t: torch.Tensor) -> torch.Tensor:
    """|t| rescaled to [0, 1] per example (over all its channels and positions); all-zero rows stay 0."""
    a = t.abs().flatten(1)
    lo, hi = a.min(1, keepdim=True).values, a.max(1, keepdim=True).values
    return ((a - lo) / (hi - lo).clamp_min(torch.finfo(a.dtype).tiny)).reshape(t.shape)


def fullgrad(model: nn.Module, inputs: torch.Tensor, *, target: TargetType | None = None,
             internal_batch_size: int | None = None) -> torch.Tensor:
    """The FullGrad saliency map of images, shaped like ``inputs`` (the map repeated over input channels).

    map = norm(|x * df/dx|) summed over channels + sum over spatial layers of resize(norm(|b * df/dz|) summed over
    channels), ``norm`` a per-image min-max rescaling to [0, 1] and ``resize`` bilinear (corners aligned). Bias parts
    without spatial extent (of Linear layers) enter completeness but not the map.

    Parameters
    ----------
    model, target, internal_batch_size : see :func:`fullgrad_parts`.
    inputs : Tensor (N, C, H, W)

    Returns
    -------
    Tensor (N, C, H, W), non-negative.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"The 'inputs' parameter of fullgrad must be a floating tensor (N, C, H, W). Got {got}.")
    check_relu_network(model, "fullgrad")
    parts = fullgrad_parts(model, inputs, target=target, internal_batch_size=internal_batch_size)
    h, w = inputs.shape[-2:]
    sal = _normalise(parts.input).sum(1, keepdim=True)  # (N, 1, H, W)
    for b in parts.biases.values():
        if b.ndim == 4:
            sal = sal + F.interpolate(_normalise(b).sum(1, keepdim=True), size=(h, w), mode="bilinear",
                                      align_corners=True)
    return sal.expand_as(inputs).clone()
