"""Low-precision floating-point emulation ("chopping"): any (exponent bits, mantissa bits) format, five roundings.

Used by P40 (arXiv 1805.01078, numerical precision in DNN training) and P45 (arXiv 2504.07835, pychop). A value is
rounded to the format in float64 and returned in the input's dtype, so a float32 network *computes* in float32 but
every chopped tensor holds only values of the emulated format.

The format is IEEE-754-like: ``exp_bits`` exponent bits with bias 2^(e-1) - 1, the top exponent reserved for
inf/NaN, so emax = 2^(e-1) - 1 and emin = 1 - emax; ``man_bits`` explicit fraction bits after a hidden leading 1
(t = man_bits is pychop's ``sig_bits``; MATLAB chop's t counts the hidden bit, t_chop = man_bits + 1). The largest
finite value is (2 - 2^-m)·2^emax, the smallest normal 2^emin, the smallest subnormal 2^(emin - m). fp16 is
(5, 10), bf16 (8, 7), tf32 (8, 10), fp32 (8, 23). fp8 "e4m3" here is the IEEE-like one (largest finite 240, not the
OCP variant's 448, which reuses the top exponent).

Roundings (``rounding=``): ``"nearest"`` (round to nearest, ties to even), ``"toward_zero"`` (truncation),
``"up"`` (toward +inf), ``"down"`` (toward -inf) and ``"stochastic"`` (up with probability equal to the distance
from the lower neighbour in ulps, so E[round(x)] = x; takes a ``generator``).

Subnormals: with ``subnormals=True`` (default) values below 2^emin are rounded on the fixed grid of spacing
2^(emin - m) (gradual underflow); with ``False`` a result whose magnitude is below 2^emin is flushed to a signed 0.

Overflow: with ``overflow="inf"`` (default, IEEE) a result that rounds beyond the largest finite value becomes ±inf
when the rounding goes away from zero (nearest, stochastic, "up" for positives, "down" for negatives) and ±max
otherwise (toward_zero, "down" for positives, "up" for negatives); with ``overflow="saturate"`` it is ±max always.
Infinite inputs stay infinite and NaN stays NaN in both cases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from nnsens.measures._checks import as_generator

ROUNDINGS = ("nearest", "toward_zero", "up", "down", "stochastic")
_ALIASES = {"rne": "nearest", "rn": "nearest", "rz": "toward_zero", "truncate": "toward_zero", "ru": "up",
            "rd": "down", "sr": "stochastic"}


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: ``exp_bits`` in [2, 11], ``man_bits`` (explicit fraction bits) in [0, 52]."""

    exp_bits: int
    man_bits: int

    def __post_init__(self) -> None:
        for name, val, lo, hi in (("exp_bits", self.exp_bits, 2, 11), ("man_bits", self.man_bits, 0, 52)):
            if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
                raise ValueError(f"The '{name}' parameter of FloatFormat must be an int in [{lo}, {hi}]. "
                                 f"Got {val!r} instead.")

    @property
    def emax(self) -> int:
        return 2 ** (self.exp_bits - 1) - 1

    @property
    def emin(self) -> int:
        return 1 - self.emax

    @property
    def max_finite(self) -> float:
        return (2.0 - 2.0 ** -self.man_bits) * 2.0**self.emax

    @property
    def min_normal(self) -> float:
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.man_bits)

    @property
    def eps(self) -> float:
        """Unit roundoff of round-to-nearest, 2^-(m+1)."""
        return 2.0 ** -(self.man_bits + 1)

    def __str__(self) -> str:
        return f"e{self.exp_bits}m{self.man_bits}"


FORMATS = {
    "fp64": FloatFormat(11, 52), "fp32": FloatFormat(8, 23), "tf32": FloatFormat(8, 10), "bf16": FloatFormat(8, 7),
    "fp16": FloatFormat(5, 10), "fp8_e5m2": FloatFormat(5, 2), "fp8_e4m3": FloatFormat(4, 3),
}


def as_format(fmt: FloatFormat | str | tuple[int, int], fn: str = "round_to_format") -> FloatFormat:
    """A :class:`FloatFormat` from itself, a name in :data:`FORMATS`, or an ``(exp_bits, man_bits)`` pair."""
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str) and fmt in FORMATS:
        return FORMATS[fmt]
    if isinstance(fmt, tuple) and len(fmt) == 2:
        return FloatFormat(*fmt)
    raise ValueError(f"The 'fmt' parameter of {fn} must be a FloatFormat, one of {', '.join(FORMATS)}, or an "
                     f"(exp_bits, man_bits) pair. Got {fmt!r} instead.")


def _rounding(rounding: str, fn: str) -> str:
    r = _ALIASES.get(rounding, rounding) if isinstance(rounding, str) else rounding
    if r not in ROUNDINGS:
        raise ValueError(f"The 'rounding' parameter of {fn} must be one of {', '.join(map(repr, ROUNDINGS))}. "
                         f"Got {rounding!r} instead.")
    return r


def _generator(generator: torch.Generator | int | None, device: torch.device, fn: str) -> torch.Generator:
    # stochastic rounding without a generator would not be reproducible: one is required
    return as_generator(generator, fn, device=device, required=True)


_DTYPE_FORMATS = {torch.float64: FloatFormat(11, 52), torch.float32: FloatFormat(8, 23),
                  torch.bfloat16: FloatFormat(8, 7), torch.float16: FloatFormat(5, 10)}


def _fits(fmt: FloatFormat, dtype: torch.dtype) -> bool:
    """Whether every value of ``fmt`` and every scaled value x / ulp (< 2^(m+1)) is exact in ``dtype``."""
    d = _DTYPE_FORMATS.get(dtype)
    return d is not None and fmt.exp_bits <= d.exp_bits and fmt.man_bits < d.man_bits


def round_to_format(
    x: torch.Tensor,
    fmt: FloatFormat | str | tuple[int, int],
    *,
    rounding: str = "nearest",
    generator: torch.Generator | int | None = None,
    subnormals: bool = True,
    overflow: str = "inf",
) -> torch.Tensor:
    """``x`` rounded to the float format ``fmt`` (see the module docstring), in ``x``'s dtype, shape and device.

    Parameters
    ----------
    x : Tensor
        Floating-point values. The result is exact when ``fmt`` fits in ``x``'s dtype (e.g. any format with
        ≤ 8 exponent and ≤ 23 mantissa bits for float32); otherwise the final cast rounds it once more.
    fmt : FloatFormat, str or (int, int)
    rounding : {"nearest", "toward_zero", "up", "down", "stochastic"}
    generator : torch.Generator or int, optional
        Required for ``rounding="stochastic"`` (ignored otherwise).
    subnormals : bool
        Gradual underflow (default) or flush results below 2^emin to zero.
    overflow : {"inf", "saturate"}

    Returns
    -------
    Tensor
        A new tensor with no gradient history.
    """
    fn = "round_to_format"
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"The 'x' parameter of {fn} must be a floating-point tensor. Got {type(x).__name__}.")
    fmt = as_format(fmt, fn)
    rounding = _rounding(rounding, fn)
    if overflow not in ("inf", "saturate"):
        raise ValueError(f"The 'overflow' parameter of {fn} must be one of 'inf', 'saturate'. Got {overflow!r}.")
    work = x.dtype if _fits(fmt, x.dtype) else torch.float64  # every step below is exact in a dtype that holds fmt
    v = x.detach().to(work)
    a = v.abs()
    # binade exponent floor(log2|x|) (frexp: |x| = f·2^k with f in [0.5, 1)), clamped at emin for subnormals
    e = torch.frexp(a)[1] - 1
    e = torch.clamp(e, min=fmt.emin)
    ulp = torch.ldexp(torch.ones_like(v), (e - fmt.man_bits).to(torch.int32))
    y = v / ulp  # exact: division by a power of two
    if rounding == "nearest":
        r = torch.round(y)  # ties to even
    elif rounding == "toward_zero":
        r = torch.trunc(y)
    elif rounding == "up":
        r = torch.ceil(y)
    elif rounding == "down":
        r = torch.floor(y)
    else:
        gen = _generator(generator, x.device, fn)
        u = torch.rand(y.shape, generator=gen, dtype=work, device=gen.device).to(y.device)
        lo = torch.floor(y)
        r = lo + (u < (y - lo)).to(work)
    out = r * ulp  # round/trunc/ceil/floor keep the sign of a zero result; floor + 1 (stochastic) does not
    if rounding == "stochastic":
        out = torch.where(out == 0, torch.copysign(torch.zeros_like(out), v), out)
    if not subnormals:
        out = torch.where(out.abs() < fmt.min_normal, torch.copysign(torch.zeros_like(out), v), out)
    big = fmt.max_finite
    over = out.abs() > big  # also true for infinite inputs; NaN stays NaN throughout
    if bool(over.any()):
        if overflow == "saturate" or rounding == "toward_zero":
            to_inf = torch.zeros_like(over)
        elif rounding in ("nearest", "stochastic"):
            to_inf = over
        else:  # up: +inf for positives; down: -inf for negatives
            to_inf = over & ((v > 0) if rounding == "up" else (v < 0))
        sat = torch.where(to_inf, torch.copysign(torch.full_like(out, float("inf")), v),
                          torch.copysign(torch.full_like(out, big), v))
        out = torch.where(over, sat, out)
        out = torch.where(torch.isinf(v), v, out)  # infinite inputs stay infinite
    return out.to(x.dtype)


class _RoundSTE(torch.autograd.Function):
    """Forward: round to the format; backward: the identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x, fmt, rounding, generator, subnormals, overflow):  # noqa: D102
        return round_to_format(x, fmt, rounding=rounding, generator=generator, subnormals=subnormals,
                               overflow=overflow)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad, None, None, None, None, None


def round_ste(
    x: torch.Tensor,
    fmt: FloatFormat | str | tuple[int, int],
    *,
    rounding: str = "nearest",
    generator: torch.Generator | int | None = None,
    subnormals: bool = True,
    overflow: str = "inf",
) -> torch.Tensor:
    """:func:`round_to_format` in the forward pass with a straight-through (identity) gradient, for training."""
    fmt = as_format(fmt, "round_ste")
    rounding = _rounding(rounding, "round_ste")
    return _RoundSTE.apply(x, fmt, rounding, generator, subnormals, overflow)


def _params(model: nn.Module, params: Iterable[str] | None, fn: str) -> list[tuple[str, nn.Parameter]]:
    named = dict(model.named_parameters())
    if params is None:
        return list(named.items())
    params = list(params)
    unknown = [p for p in params if p not in named]
    if unknown:
        raise ValueError(f"The 'params' parameter of {fn} must name parameters of the model. Got {unknown!r}.")
    return [(p, named[p]) for p in params]


@torch.no_grad()
def round_parameters_(
    model: nn.Module,
    fmt: FloatFormat | str | tuple[int, int],
    *,
    rounding: str = "nearest",
    generator: torch.Generator | int | None = None,
    params: Iterable[str] | None = None,
    subnormals: bool = True,
    overflow: str = "inf",
) -> nn.Module:
    """Round the model's parameters (all, or those named in ``params``) to ``fmt`` in place; return the model."""
    fmt = as_format(fmt, "round_parameters_")
    rounding = _rounding(rounding, "round_parameters_")
    ps = [p for _, p in _params(model, params, "round_parameters_")]
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in ps:
        groups.setdefault((p.dtype, p.device), []).append(p)
    for (_, device), group in groups.items():  # one call per dtype and device: the per-call overhead dominates
        gen = _generator(generator, device, "round_parameters_") if rounding == "stochastic" else None
        flat = round_to_format(torch.cat([p.detach().reshape(-1) for p in group]), fmt, rounding=rounding,
                               generator=gen, subnormals=subnormals, overflow=overflow)
        for p, new in zip(group, flat.split([p.numel() for p in group])):
            p.copy_(new.view_as(p))
    return model


def weight_rounding_hook(
    fmt: FloatFormat | str | tuple[int, int],
    *,
    rounding: str = "nearest",
    generator: torch.Generator | int | None = None,
    params: Iterable[str] | None = None,
    subnormals: bool = True,
    overflow: str = "inf",
) -> Callable[[nn.Module, int], None]:
    """A callback ``hook(model, step)`` that rounds the weights to ``fmt`` (for ``training.fit``'s ``after_step``).

    Passed as ``fit(..., after_step=hook)`` it stores the weights in the format after every optimizer step (the
    optimizer's own state, e.g. momentum, stays in float32). A stochastic hook draws from one generator across
    steps, created once from an int seed.
    """
    fmt = as_format(fmt, "weight_rounding_hook")
    rounding = _rounding(rounding, "weight_rounding_hook")
    names = None if params is None else list(params)
    state: dict[str, torch.Generator | int | None] = {"gen": generator}

    def hook(model: nn.Module, step: int) -> None:
        if rounding == "stochastic" and not isinstance(state["gen"], torch.Generator):
            dev = next(model.parameters()).device
            state["gen"] = _generator(state["gen"], dev, "weight_rounding_hook")
        round_parameters_(model, fmt, rounding=rounding, generator=state["gen"], params=names,
                          subnormals=subnormals, overflow=overflow)

    return hook


@contextlib.contextmanager
def round_activations(
    model: nn.Module,
    fmt: FloatFormat | str | tuple[int, int],
    *,
    rounding: str = "nearest",
    generator: torch.Generator | int | None = None,
    modules: Iterable[str] | None = None,
    inputs: bool = False,
    subnormals: bool = True,
    overflow: str = "inf",
) -> Iterator[list[torch.utils.hooks.RemovableHandle]]:
    """Within the ``with`` block, the outputs of the model's layers are rounded to ``fmt`` (forward hooks).

    Parameters
    ----------
    modules : iterable of str, optional
        Names of the submodules whose outputs are rounded; default: every leaf module.
    inputs : bool
        Also round the input of the model itself (a forward pre-hook on ``model``).

    The rounding has a straight-through gradient (:func:`round_ste`), so training inside the block sees
    low-precision activations with float32 gradients. The hooks are removed on exit, even after an exception.
    """
    fn = "round_activations"
    fmt = as_format(fmt, fn)
    rounding = _rounding(rounding, fn)
    named = dict(model.named_modules())
    if modules is None:
        names = [n for n, m in named.items() if n and not list(m.children())]
        if not names:  # the model is itself a leaf
            names = [""]
    else:
        names = list(modules)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"The 'modules' parameter of {fn} must name submodules of the model. Got {unknown!r}.")
    gen = generator
    if rounding == "stochastic":
        dev = next(iter(model.parameters()), torch.empty(0)).device
        gen = _generator(generator, dev, fn)
    chop = lambda t: round_ste(t, fmt, rounding=rounding, generator=gen, subnormals=subnormals,  # noqa: E731
                               overflow=overflow) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
    handles = [named[n].register_forward_hook(lambda mod, args, out: chop(out)) for n in names]
    if inputs:
        handles.append(model.register_forward_pre_hook(lambda mod, args: tuple(chop(a) for a in args)))
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()
