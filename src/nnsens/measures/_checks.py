"""Argument handling shared by every measure: parameter selection, eval mode, batch sizes, generators.

Messages follow scikit-learn's form: "The 'internal_batch_size' parameter of fisher_diagonal must be an int in
[1, inf) or None. Got 0 instead."
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class InvalidParameterError(ValueError, TypeError):
    """A bad argument value or type (both a ValueError and a TypeError, as in scikit-learn)."""


def check_int(value: object, name: str, fn: str, low: int = 1, high: float | None = None) -> int:
    """An int in [low, high] (high None or inf: unbounded), else :class:`InvalidParameterError`."""
    high = math.inf if high is None else high
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        rng = f"[{low}, inf)" if high == math.inf else f"[{low}, {int(high)}]"
        raise InvalidParameterError(f"The {name!r} parameter of {fn} must be an int in {rng}. Got {value!r} instead.")
    return int(value)


def check_float(value: object, name: str, fn: str, low: float = 0.0, *, low_open: bool = True) -> float:
    """A finite real number above ``low`` (at or above when ``low_open=False``), else :class:`InvalidParameterError`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    if not ok:
        bracket = "(" if low_open else "["
        raise InvalidParameterError(
            f"The {name!r} parameter of {fn} must be a float in {bracket}{low}, inf). Got {value!r} instead."
        )
    return float(value)


def select_params(model: nn.Module, params: Sequence[str] | str | None, fn: str) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs a measure differentiates with respect to (default: all requiring grad)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    named = dict(model.named_parameters())
    if params is None:
        out = [(n, p) for n, p in named.items() if p.requires_grad]
    else:
        names = [params] if isinstance(params, str) else list(params)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"The 'params' parameter of {fn} must name parameters of the model "
                             f"({', '.join(named)}). Got {unknown!r} instead.")
        frozen = [n for n in names if not named[n].requires_grad]
        if frozen:
            raise ValueError(f"The 'params' parameter of {fn} names parameters without requires_grad: {frozen!r}.")
        out = [(n, named[n]) for n in dict.fromkeys(names)]
    if not out:
        raise ValueError(f"{fn} needs at least one parameter with requires_grad=True.")
    return out


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluate in eval mode (no dropout, running BatchNorm statistics), then restore ``model.training``."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def check_internal_batch_size(value: object, fn: str) -> int | None:
    """``None`` (everything in one pass) or a positive int."""
    if value is None:
        return None
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"The 'internal_batch_size' parameter of {fn} must be an int in [1, inf) or None. "
                         f"Got {value!r} instead.")
    return int(value)


def chunks(n: int, size: int | None) -> list[slice]:
    """Slices covering ``range(n)`` in pieces of ``size`` (one piece when ``size`` is None)."""
    size = n if size is None else size
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def as_generator(generator: torch.Generator | int | None, fn: str = "this measure", *,
                 device: torch.device | str = "cpu", required: bool = False) -> torch.Generator:
    """An int seed or a Generator → a Generator; ``None`` → a fresh, non-deterministically seeded one (an error
    when ``required``, for measures whose result would otherwise not be reproducible)."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None and not required:
        gen = torch.Generator(device=device)
        gen.seed()
        return gen
    if isinstance(generator, int) and not isinstance(generator, bool) and generator >= 0:
        return torch.Generator(device=device).manual_seed(generator)
    what = "a non-negative int seed or a torch.Generator" + ("" if required else " or None")
    raise TypeError(f"The 'generator' parameter of {fn} must be {what}. Got {generator!r} instead.")
