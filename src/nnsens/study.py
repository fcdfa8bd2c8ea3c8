"""The contract every study module follows, and the validation of its parameters.

A study module ``nnsens.studies.pNN_<name>`` defines

- ``Config``: a frozen dataclass deriving from :class:`StudyConfig`, fields declared with :func:`param`
  (defaults = the smoke scale);
- ``PRESETS``: ``{"smoke": Config(...), "cpu": Config(...), "paper": Config(...)}``;
- ``run(cfg) -> result``: pure; the result is any object the claims and plots read;
- ``CLAIMS``: a tuple of :class:`Claim`, the pre-registered checks of the catalog;
- ``PAPER``: a :class:`Paper`.

Validation messages follow scikit-learn's form: "The 'n_designs' parameter of P46 must be an int in [1, 4096].
Got 0 instead."
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, UNTESTABLE = "PASS", "FAIL", "NOT TESTABLE"


@dataclass(frozen=True)
class Paper:
    """Citation of the paper a study reproduces."""

    title: str
    authors: str
    year: int
    arxiv: str = ""
    doi: str = ""
    code: str = ""

    def citation(self) -> str:
        """One-line citation with arXiv id, DOI and official code where known."""
        bits = [f"{self.authors} ({self.year}). *{self.title}*."]
        if self.arxiv:
            bits.append(f"arXiv:{self.arxiv}.")
        if self.doi:
            bits.append(f"doi:{self.doi}.")
        if self.code:
            bits.append(f"Official code: {self.code}.")
        return " ".join(bits)


@dataclass(frozen=True)
class Verdict:
    """Outcome of one claim check: the measured value, the threshold it is compared with, the verdict."""

    value: float
    threshold: float | str
    verdict: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in (PASS, FAIL, UNTESTABLE):
            raise ValueError(f"verdict must be one of {PASS!r}, {FAIL!r}, {UNTESTABLE!r}. Got {self.verdict!r}.")


def compare(value: float, op: str, threshold: float, note: str = "") -> Verdict:
    """Judge ``value op threshold`` (``op`` one of ``<=, <, >=, >``); NaN never passes."""
    ops: dict[str, Callable[[float, float], bool]] = {
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
        ">=": lambda a, b: a >= b,
        ">": lambda a, b: a > b,
    }
    if op not in ops:
        raise ValueError(f"op must be one of {sorted(ops)}. Got {op!r}.")
    value = float(value)
    ok = (not math.isnan(value)) and ops[op](value, float(threshold))
    return Verdict(value, f"{op} {threshold:g}", PASS if ok else FAIL, note)


@dataclass(frozen=True)
class Claim:
    """A pre-registered claim check: a short name, the claim in our words, and a function of the result."""

    name: str
    statement: str
    check: Callable[[Any], Verdict]


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple | None = None,
    doc: str = "",
) -> Any:
    """Declare a Config field with its valid range or choices (checked by :class:`StudyConfig`)."""
    meta = {"low": low, "high": high, "choices": choices, "doc": doc}
    return field(default=default, metadata=meta)


_TYPE_NAMES = {int: "an int", float: "a float", bool: "a bool", str: "a str"}


def _describe(tp: Any, meta: Mapping[str, Any]) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        plural = {int: "ints", float: "floats", bool: "bools", str: "strs"}.get(inner, str(inner))
        return f"a non-empty comma-separated list of {plural}" + _range(meta)
    return _TYPE_NAMES.get(tp, str(tp)) + _range(meta)


def _range(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("low"), meta.get("high")
    if lo is None and hi is None:
        return ""
    return f" in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"


def _plain(value: Any) -> Any:
    """numpy scalars and arrays become Python values (papermill would inject ``np.int64(3)`` as ``"3"``)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "tolist"):
        return tuple(value.tolist())
    return value


def _coerce_one(tp: Any, value: Any) -> Any:
    """Coerce ``value`` (possibly a CLI string) to the scalar type ``tp``, or raise TypeError/ValueError."""
    value = _plain(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise TypeError
    if tp is int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise TypeError
    if tp is float:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


def coerce(study: str, name: str, tp: Any, meta: Mapping[str, Any], value: Any) -> Any:
    """Coerce and validate one parameter value; raise a message naming the parameter and what is valid."""
    what = _describe(tp, meta)
    shown = value if isinstance(value, str) else _plain(value)
    error = ValueError(f"The {name!r} parameter of {study} must be {what}. Got {shown!r} instead.")
    try:
        if typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            items = value.split(",") if isinstance(value, str) else _plain(value)
            if not isinstance(items, (tuple, list)) or len(items) == 0:
                raise TypeError
            out: Any = tuple(_coerce_one(inner, v) for v in items)
            checked = out
        else:
            out = _coerce_one(tp, value)
            checked = (out,)
    except (TypeError, ValueError, AttributeError):
        raise error from None
    for v in checked:
        if meta.get("choices") is not None and v not in meta["choices"]:
            raise error
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):
                raise error
            if meta.get("low") is not None and v < meta["low"]:
                raise error
            if meta.get("high") is not None and v > meta["high"]:
                raise error
    return out


def study_id_of(cls: type) -> str:
    """``P46`` for a class defined in ``nnsens.studies.p46_sobol_attribution``; the class name otherwise."""
    stem = cls.__module__.rsplit(".", 1)[-1]
    head = stem.split("_", 1)[0]
    return head.upper() if head[:1] == "p" and head[1:].isdigit() else cls.__qualname__


@dataclass(frozen=True)
class StudyConfig:
    """Base of every study's frozen ``Config``: validates each field on construction.

    Every study has a ``seed`` and a ``device`` (``"auto"`` picks CUDA when present).
    """

    seed: int = param(0, low=0, high=2**31 - 1, doc="master seed")
    device: str = param("auto", choices=("auto", "cpu", "cuda"), doc="where tensors live")

    def __post_init__(self) -> None:
        study = study_id_of(type(self))
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = coerce(study, f.name, hints[f.name], f.metadata, getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    def to_params(self) -> dict[str, Any]:
        """Plain-Python parameters (tuples as lists), as a notebook's parameters cell holds them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def validate_params(study_id: str, config_cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check names, types and ranges of ``params`` against ``config_cls``; return the coerced values.

    Raises
    ------
    ValueError
        For an unknown name (listing the valid ones) or a value of the wrong type or out of range.
    """
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {}
    for name, value in params.items():
        if name not in fields:
            raise ValueError(
                f"{study_id} has no parameter {name!r}. Valid parameters: {', '.join(sorted(fields))}."
            )
        out[name] = coerce(study_id, name, hints[name], fields[name].metadata, value)
    return out


def resolve_device(device: str) -> typing.Any:
    """Map ``"auto" | "cpu" | "cuda"`` to a ``torch.device``; ``"cuda"`` without CUDA is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("The 'device' parameter is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'.")
    return torch.device(device)
