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


# ------------------------------------------------------------------------------------------ calibration and QAT
# Used by P15 (Quantune, arXiv 2202.05048) and available to every study: the range a b-bit grid covers is chosen
# by a calibration method (min-max, percentile, MSE-optimal clipping) from a tensor (weights) or from activations
# observed on calibration data; fake quantization then rounds to that grid with a straight-through gradient.
CALIBRATIONS = ("minmax", "percentile", "mse")


def _channels_first(x: torch.Tensor, per_channel: bool, axis: int, fn: str) -> tuple[torch.Tensor, list[int]]:
    """``x`` as (C, rest) with C = 1 per tensor, and the shape a (C,) statistic broadcasts back to."""
    if not per_channel or x.ndim == 0:
        return x.reshape(1, -1), [1] * x.ndim
    dims = _reduce_dims(x, True, axis, fn)
    ax = next(d for d in range(x.ndim) if d not in dims)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    return x.movedim(ax, 0).reshape(x.shape[ax], -1), shape


def calibrate_range(
    x: torch.Tensor,
    bits: int = 8,
    *,
    method: str = "minmax",
    symmetric: bool = True,
    per_channel: bool = False,
    axis: int = 0,
    percentile: float = 99.99,
    n_grid: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipping range (lo, hi) of a b-bit grid for ``x``, each broadcastable against ``x``.

    Parameters
    ----------
    method : {"minmax", "percentile", "mse"}
        ``"minmax"``: the observed extremes. ``"percentile"``: the ``percentile``-th percentile of |x| (symmetric)
        or the (100 - p)-th and p-th percentiles (asymmetric). ``"mse"``: the min-max range shrunk by the factor
        α ∈ {1/n_grid, 2/n_grid, ..., 1} that minimises ‖Q(x) − x‖² (clipping traded against rounding error).
    symmetric : bool
        Symmetric ranges are (-hi, hi); asymmetric ones are widened to include 0.
    per_channel, axis
        One range per slice along ``axis``, or one for the tensor.
    bits : int
        Needed by ``"mse"`` (the grid whose error is minimised).
    """
    fn = "calibrate_range"
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"The 'x' parameter of {fn} must be a floating-point tensor. Got {type(x).__name__}.")
    if method not in CALIBRATIONS:
        raise ValueError(f"The 'method' parameter of {fn} must be one of {', '.join(map(repr, CALIBRATIONS))}. "
                         f"Got {method!r} instead.")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 50 < percentile <= 100:
        raise ValueError(f"The 'percentile' parameter of {fn} must be a float in (50, 100]. Got {percentile!r}.")
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 1:
        raise ValueError(f"The 'n_grid' parameter of {fn} must be an int in [1, inf). Got {n_grid!r} instead.")
    bits = _check_bits(bits, fn, 2 if symmetric else 1)
    flat, shape = _channels_first(x.detach(), per_channel, axis, fn)  # (C, N)
    if method == "percentile":
        q = percentile / 100
        if symmetric:
            hi = torch.quantile(flat.abs().double(), q, dim=1).to(flat.dtype)
            lo = -hi
        else:
            lo = torch.quantile(flat.double(), 1 - q, dim=1).to(flat.dtype)
            hi = torch.quantile(flat.double(), q, dim=1).to(flat.dtype)
    else:
        if symmetric:
            hi = flat.abs().amax(dim=1)
            lo = -hi
        else:
            lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    if not symmetric:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    if method == "mse":
        alphas = torch.arange(1, n_grid + 1, dtype=flat.dtype, device=flat.device) / n_grid  # (G,)
        # (G, C) candidate ranges, errors summed over each channel's values
        los, his = alphas[:, None] * lo, alphas[:, None] * hi
        err = torch.stack([
            ((fake_quantize(flat, *range_to_qparams(los[g][:, None], his[g][:, None], bits, symmetric=symmetric),
                            bits, symmetric=symmetric) - flat) ** 2).sum(dim=1)
            for g in range(n_grid)
        ])
        best = err.argmin(dim=0)  # (C,): the first (smallest) α on ties
        idx = torch.arange(flat.shape[0], device=flat.device)
        lo, hi = los[best, idx], his[best, idx]
    return lo.reshape(shape), hi.reshape(shape)


def range_to_qparams(
    lo: torch.Tensor, hi: torch.Tensor, bits: int, *, symmetric: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale s and zero point z of the b-bit grid covering [lo, hi], with the conventions of :func:`quantize`.

    Symmetric: s = max(|lo|, |hi|) / (2^(b-1) - 1), z = 0 (grid {-n..n}·s). Asymmetric: s = (hi - lo) / (2^b - 1),
    z = round(-lo / s) (grid {0..2^b-1}, value (q - z)·s), so 0 is exactly representable. An empty range gets s = 1.
    """
    bits = _check_bits(bits, "range_to_qparams", 2 if symmetric else 1)
    if symmetric:
        scale = torch.maximum(lo.abs(), hi.abs()) / (2 ** (bits - 1) - 1)
        zero = torch.zeros_like(scale)
    else:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        scale = (hi - lo) / (2**bits - 1)
        zero = torch.where(scale > 0, torch.round(-lo / torch.where(scale > 0, scale, 1)), torch.zeros_like(lo))
    return torch.where(scale > 0, scale, torch.ones_like(scale)), zero


class _FakeQuantSTE(torch.autograd.Function):
    """Forward: round to the grid and clamp; backward: identity where x/s + z is inside [qmin, qmax], 0 outside."""

    @staticmethod
    def forward(ctx, x, scale, zero, qmin, qmax):  # noqa: D102
        y = x / scale + zero
        inside = (y >= qmin) & (y <= qmax)
        ctx.save_for_backward(inside)
        return (torch.clamp(torch.round(y), qmin, qmax) - zero) * scale

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, *, symmetric: bool = True
) -> torch.Tensor:
    """``x`` rounded to the grid (scale, zero point), differentiable by the straight-through estimator.

    The gradient is 1 where x lies inside the clipping range [(qmin - z)·s, (qmax - z)·s] and 0 outside
    (qmin, qmax = -n, n symmetric with n = 2^(b-1) - 1, or 0, 2^b - 1 asymmetric).
    """
    bits = _check_bits(bits, "fake_quantize", 2 if symmetric else 1)
    qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    return _FakeQuantSTE.apply(x, scale.to(x.dtype), zero.to(x.dtype), qmin, qmax)


class FakeQuant(nn.Module):
    """Fake quantization of whatever passes through: a calibrated activation quantizer or a weight quantizer.

    As an activation quantizer, call :meth:`observe` (or run data through while ``calibrating`` is True) and then
    :meth:`freeze`; the range comes from all the observed values. As a weight quantizer (``dynamic=True``, used as a
    parametrization by :func:`fake_quant_model`), the range is recomputed from the tensor on every call, so that
    QAT through ``training.fit`` keeps the grid in step with the float weights (straight-through gradients).
    """

    def __init__(self, bits: int = 8, *, method: str = "minmax", symmetric: bool = True, per_channel: bool = False,
                 axis: int = 0, percentile: float = 99.99, dynamic: bool = False) -> None:
        super().__init__()
        _check_bits(bits, "FakeQuant", 2 if symmetric else 1)
        if method not in CALIBRATIONS:
            raise ValueError(f"The 'method' parameter of FakeQuant must be one of "
                             f"{', '.join(map(repr, CALIBRATIONS))}. Got {method!r} instead.")
        self.bits, self.method, self.symmetric = bits, method, symmetric
        self.per_channel, self.axis, self.percentile, self.dynamic = per_channel, axis, percentile, dynamic
        self.calibrating = not dynamic
        self._seen: list[torch.Tensor] = []
        self.register_buffer("scale", None)
        self.register_buffer("zero", None)

    def _qparams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = calibrate_range(x, self.bits, method=self.method, symmetric=self.symmetric,
                                 per_channel=self.per_channel, axis=self.axis, percentile=self.percentile)
        return range_to_qparams(lo, hi, self.bits, symmetric=self.symmetric)

    def observe(self, x: torch.Tensor) -> None:
        """Record activations for calibration (detached)."""
        self._seen.append(x.detach())

    def freeze(self) -> FakeQuant:
        """Fix the grid from everything observed (concatenated along the batch axis) and stop calibrating."""
        if not self._seen:
            raise RuntimeError("FakeQuant.freeze needs observed data: run calibration inputs through it first.")
        self.scale, self.zero = self._qparams(torch.cat(self._seen))
        self._seen, self.calibrating = [], False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            return fake_quantize(x, *self._qparams(x), self.bits, symmetric=self.symmetric)
        if self.calibrating:
            self.observe(x)
            return x
        return fake_quantize(x, self.scale, self.zero, self.bits, symmetric=self.symmetric)


def fake_quant_model(
    model: nn.Module,
    *,
    weight_bits: int | Mapping[str, int] | None = 8,
    act_bits: int | None = None,
    symmetric: bool = True,
    per_channel: bool = True,
    weight_method: str = "minmax",
    act_method: str = "minmax",
    percentile: float = 99.99,
    calibration_data: torch.Tensor | None = None,
    act_symmetric: bool | None = None,
) -> nn.Module:
    """A deep copy of ``model`` with fake-quantized weights and (optionally) inputs of its Linear/Conv layers.

    Weights are quantized through a parametrization (``torch.nn.utils.parametrize``) whose range is recomputed
    on each forward: post-training quantization is simply evaluating the copy, and straight-through QAT is training
    it with ``training.fit`` (the float weights are the parameters). With ``act_bits``, each quantizable layer's
    input passes a :class:`FakeQuant` calibrated on ``calibration_data`` (per tensor; asymmetric unless
    ``act_symmetric``) before the copy is returned.

    Parameters
    ----------
    weight_bits : int, mapping layer-weight name → int, or None
        One bit width for every quantizable layer, one per layer (unnamed layers stay in float), or none.
    """
    from torch.nn.utils import parametrize

    fn = "fake_quant_model"
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model)}.")
    layers = quantizable_layers(model)
    if weight_bits is None:
        wbits: dict[str, int] = {}
    elif isinstance(weight_bits, Mapping):
        unknown = [n for n in weight_bits if n not in layers]
        if unknown:
            raise ValueError(f"The 'weight_bits' parameter of {fn} must name quantizable weights "
                             f"({', '.join(layers)}). Got {unknown!r} instead.")
        wbits = dict(weight_bits)
    else:
        wbits = {n: _check_bits(weight_bits, fn, 2 if symmetric else 1) for n in layers}
    if act_bits is not None and calibration_data is None:
        raise ValueError(f"The 'calibration_data' parameter of {fn} is required when act_bits is set.")
    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    for name, b in wbits.items():
        mod = mods[name.rsplit(".", 1)[0] if "." in name else ""]
        parametrize.register_parametrization(
            mod, "weight", FakeQuant(b, method=weight_method, symmetric=symmetric, per_channel=per_channel,
                                     axis=0, percentile=percentile, dynamic=True))
    if act_bits is not None:
        sym = bool(act_symmetric) if act_symmetric is not None else False
        for name in layers:
            mod = mods[name.rsplit(".", 1)[0] if "." in name else ""]
            mod.act_quant = FakeQuant(act_bits, method=act_method, symmetric=sym, percentile=percentile)
            mod.register_forward_pre_hook(lambda m, args: (m.act_quant(args[0]),) + tuple(args[1:]))
        was = out.training
        out.eval()
        with torch.no_grad():
            out(calibration_data)
        for name in layers:
            mods[name.rsplit(".", 1)[0] if "." in name else ""].act_quant.freeze()
        out.train(was)
    return out


# ------------------------------------------------------------------------------------- entropy (KL) calibration
# Used by P15 (Quantune, arXiv 2202.05048): the clipping threshold of TensorRT-style "entropy" calibration
# (Migacz, 2017), written from the description: the histogram of |x| is cut at a candidate bin i (what lies above
# is piled into the last kept bin), the kept histogram is coarsened to the grid's levels, and the cut whose
# coarsened version loses the least information (smallest KL divergence) sets the threshold.
def kl_threshold_bin(hist: object, n_levels: int) -> int:
    """The number of histogram bins i (n_levels ≤ i ≤ len(hist)) whose clipped histogram is best kept by
    ``n_levels`` levels, i.e. the cut minimising KL(P_i ‖ Q_i).

    P_i is ``hist[:i]`` with the mass of ``hist[i:]`` added to its last bin. Q_i splits ``hist[:i]`` (without that
    added mass) into ``n_levels`` consecutive groups (group j covers bins ⌊j·i/n⌋ ... ⌊(j+1)·i/n⌋ − 1) and spreads
    each group's mass evenly over the group's bins that are non-empty in P_i. Both are normalised; where P_i > 0 but
    Q_i = 0 (a group holding only piled-up mass), Q_i is floored at 1e-10 before renormalising. The first i wins ties.
    With ``n_levels ≥ len(hist)`` nothing is coarsened and all bins are kept.
    """
    import numpy as np

    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 1 or hist.size < 1 or np.any(hist < 0) or not np.isfinite(hist).all():
        raise ValueError("The 'hist' parameter of kl_threshold_bin must be a 1-D array of non-negative counts.")
    if isinstance(n_levels, bool) or not isinstance(n_levels, int) or n_levels < 1:
        raise ValueError(f"The 'n_levels' parameter of kl_threshold_bin must be an int in [1, inf). "
                         f"Got {n_levels!r} instead.")
    n_bins, total = hist.size, hist.sum()
    if n_levels >= n_bins or total == 0:
        return n_bins
    xlogx = lambda v: v * np.log(np.where(v > 0, v, 1.0))  # noqa: E731  (0·log 0 = 0)
    cum = np.concatenate([[0.0], np.cumsum(hist)])  # cum[k] = hist[:k].sum()
    cum_nz = np.concatenate([[0], np.cumsum(hist > 0)])
    cum_hl = np.concatenate([[0.0], np.cumsum(xlogx(hist))])
    cuts = np.arange(n_levels, n_bins + 1)  # (I,) candidate numbers of kept bins
    tail = total - cum[cuts]  # mass piled into the last kept bin
    edges = (np.arange(n_levels + 1)[None, :] * cuts[:, None]) // n_levels  # (I, n+1) group boundaries
    mass = cum[edges[:, 1:]] - cum[edges[:, :-1]]  # (I, n) kept mass per group
    count = (cum_nz[edges[:, 1:]] - cum_nz[edges[:, :-1]]).astype(np.float64)  # non-empty bins of P per group
    count[:, -1] += (hist[cuts - 1] == 0) & (tail > 0)  # the last bin is non-empty in P once mass is piled on it
    big_p = mass.copy()
    big_p[:, -1] += tail  # (I, n) P's mass per group
    q = np.divide(mass, count, out=np.zeros_like(mass), where=count > 0)  # Q's value on each non-empty bin
    floor = np.where(cum[cuts] > 0, 1e-10 * cum[cuts], 1.0)
    floored = (q[:, -1] <= 0) & (big_p[:, -1] > 0)  # only a last group holding nothing but piled mass
    q[:, -1] = np.where(floored, floor, q[:, -1])
    q_sum = cum[cuts] + floored * floor
    p_log_p = cum_hl[cuts - 1] + xlogx(hist[cuts - 1] + tail)
    p_log_q = np.sum(big_p * np.log(np.where(big_p > 0, q, 1.0)), axis=1)
    # KL(P/|P| ‖ Q/|Q|) = (Σ p log p − Σ p log q)/|P| − log |P| + log |Q|, with |P| = total
    kl = (p_log_p - p_log_q) / total - np.log(total) + np.log(q_sum)
    return int(cuts[np.flatnonzero(kl <= kl.min() + 1e-12)[0]])


def entropy_range(
    x: torch.Tensor, bits: int = 8, *, symmetric: bool = True, n_bins: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor clipping range (lo, hi) by KL-divergence ("entropy") calibration, shaped (1,) like
    :func:`calibrate_range`'s per-tensor output.

    The threshold T is the upper edge of the last bin kept by :func:`kl_threshold_bin` on the ``n_bins``-bin
    histogram of |x| over [0, max|x|], coarsened to the levels one sign of the grid has: 2^(b-1) when the grid is
    symmetric or ``x`` has both signs, 2^b for an asymmetric grid on non-negative data (e.g. after a ReLU).
    Symmetric: (−T, T). Asymmetric: the min-max range (widened to include 0) clipped to [−T, T].
    """
    import numpy as np

    fn = "entropy_range"
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"The 'x' parameter of {fn} must be a floating-point tensor. Got {type(x).__name__}.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
        raise ValueError(f"The 'n_bins' parameter of {fn} must be an int in [2, inf). Got {n_bins!r} instead.")
    bits = _check_bits(bits, fn, 2 if symmetric else 1)
    flat = x.detach().reshape(-1).double()
    lo, hi = flat.min().clamp(max=0), flat.max().clamp(min=0)
    top = torch.maximum(-lo, hi)
    if top == 0:
        zero = torch.zeros(1, dtype=x.dtype, device=x.device)
        return zero, zero.clone()
    hist = torch.histc(flat.abs(), bins=n_bins, min=0.0, max=float(top)).cpu().numpy()
    n_levels = 2**bits if (not symmetric and lo == 0) else 2 ** (bits - 1)
    t = top * kl_threshold_bin(np.asarray(hist), n_levels) / n_bins
    if symmetric:
        lo, hi = -t, t
    else:
        lo, hi = torch.maximum(lo, -t), torch.minimum(hi, t)
    return lo.reshape(1).to(x.dtype), hi.reshape(1).to(x.dtype)
