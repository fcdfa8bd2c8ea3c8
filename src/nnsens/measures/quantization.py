"""Uniform weight quantization, simulated ("fake-quant"): weights are rounded to a b-bit grid and kept in float.

:func:`quantize` is a pure function on tensors, Q_b(w); :func:`quantize_model` returns a quantized copy of a model
for a per-tensor bit configuration (the model itself is untouched). The default scheme is the one HAWQ-V2
(arXiv 1911.03852) uses for weights: symmetric, per output channel, with a scale set by the channel's largest
magnitude, so that the grid is {-n, ..., n}·s with n = 2^(b-1) - 1 and s = max|w| / n (2^b - 1 levels).
The asymmetric (min/max with a zero point) and per-tensor variants share the same interface.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

_MAX_BITS = 32


def _check_bits(bits: object, fn: str, low: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= _MAX_BITS:
        raise ValueError(f"The 'bits' parameter of {fn} must be an int in [{low}, {_MAX_BITS}]. Got {bits!r} instead.")
    return bits


def _reduce_dims(w: torch.Tensor, per_channel: bool, axis: int, fn: str) -> tuple[int, ...]:
    """The dimensions a scale is shared over: all but ``axis`` (per channel) or all (per tensor)."""
    if not per_channel or w.ndim == 0:
        return tuple(range(w.ndim))
    if isinstance(axis, bool) or not isinstance(axis, int) or not -w.ndim <= axis < w.ndim:
        raise ValueError(
            f"The 'axis' parameter of {fn} must be an int in [{-w.ndim}, {w.ndim - 1}]. Got {axis!r} instead."
        )
    axis %= w.ndim
    return tuple(d for d in range(w.ndim) if d != axis)


def quantization_scale(
    w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = True, axis: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of the b-bit grid for ``w``, broadcastable against ``w``.

    Symmetric: s = max|w| / (2^(b-1) - 1), zero point 0. Asymmetric: s = (max w - min w) / (2^b - 1) over a range
    widened to include 0, zero point z = round(-min w / s), so that 0 is exactly representable. A channel of zeros
    gets s = 1 (it quantizes to itself).
    """
    return _scale(w, bits, symmetric, per_channel, axis, "quantization_scale")


def _scale(
    w: torch.Tensor, bits: int, symmetric: bool, per_channel: bool, axis: int, fn: str
) -> tuple[torch.Tensor, torch.Tensor]:
    bits = _check_bits(bits, fn, 2 if symmetric else 1)
    dims = _reduce_dims(w, per_channel, axis, fn)
    w = w.detach()
    if symmetric:
        top = w.abs().amax(dim=dims, keepdim=True) if dims else w.abs()
        scale = top / (2 ** (bits - 1) - 1)
        zero = torch.zeros_like(scale)
    else:
        lo = (w.amin(dim=dims, keepdim=True) if dims else w).clamp(max=0)
        hi = (w.amax(dim=dims, keepdim=True) if dims else w).clamp(min=0)
        scale = (hi - lo) / (2**bits - 1)
        zero = torch.where(scale > 0, torch.round(-lo / torch.where(scale > 0, scale, 1)), torch.zeros_like(lo))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, zero


def quantize(
    w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = True, axis: int = 0
) -> torch.Tensor:
    """Q_b(w): ``w`` rounded to its b-bit uniform grid, returned in ``w``'s dtype (fake quantization).

    Parameters
    ----------
    w : Tensor
        Weights, e.g. (out, in) for a linear layer or (out, in, kh, kw) for a convolution.
    bits : int
        Bit width b (≥ 2 for the symmetric grid, which has 2^b - 1 levels; ≥ 1 for the asymmetric one, 2^b levels).
    symmetric : bool
        Symmetric grid around 0 (default) or asymmetric min/max grid with a zero point.
    per_channel : bool
        One scale per slice along ``axis`` (default: per output channel) or one for the whole tensor.
    axis : int
        The channel axis when ``per_channel``.

    Returns
    -------
    Tensor
        A new tensor (no gradient history) with the same shape, dtype and device. Quantizing it again returns it
        unchanged (up to float rounding of the scale).
    """
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"The 'w' parameter of quantize must be a floating-point tensor. Got {type(w).__name__}.")
    scale, zero = _scale(w, bits, symmetric, per_channel, axis, "quantize")
    w = w.detach()
    if symmetric:
        n = 2 ** (bits - 1) - 1
        q = torch.clamp(torch.round(w / scale), -n, n)
        return (q * scale).to(w.dtype)
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
    return ((q - zero) * scale).to(w.dtype)


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the weight tensors of the model's Linear and Conv layers, in definition order."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [f"{name}.weight" if name else "weight" for name, mod in model.named_modules() if isinstance(mod, kinds)]


def quantize_model(
    model: nn.Module, bits: Mapping[str, int], *, symmetric: bool = True, per_channel: bool = True, axis: int = 0
) -> nn.Module:
    """A deep copy of ``model`` whose named weight tensors are replaced by Q_b(w); ``model`` is not modified.

    Parameters
    ----------
    bits : mapping of parameter name → int
        The bit width of each tensor to quantize (e.g. ``{"conv1.weight": 4, "fc1.weight": 2}``); tensors not
        named stay in full precision.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of quantize_model must be a torch.nn.Module. Got {type(model)}.")
    if not isinstance(bits, Mapping):
        raise TypeError(f"The 'bits' parameter of quantize_model must be a mapping name → int. Got {bits!r} instead.")
    named = dict(model.named_parameters())
    unknown = [n for n in bits if n not in named]
    if unknown:
        raise ValueError(
            f"The 'bits' parameter of quantize_model must name parameters of the model ({', '.join(named)}). "
            f"Got {unknown!r} instead."
        )
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name, b in bits.items():
            params[name].copy_(quantize(params[name], b, symmetric=symmetric, per_channel=per_channel, axis=axis))
    return out
