"""Inject notebook parameters as Python literals (``repr``), so a value is always data, never code.

papermill's own Python translator builds string literals by hand-escaping quotes; ``repr`` of a ``str``, ``int``,
``float``, ``bool``, ``None``, ``list`` or ``dict`` of those is a valid literal by construction, and numpy scalars
are turned into Python values first (papermill would inject ``np.int64(3)`` as the string ``"3"``).
"""

from __future__ import annotations

from typing import Any

from papermill.translators import PythonTranslator, papermill_translators


def to_literal(value: Any) -> str:
    """Python source that evaluates to ``value`` (plain types only)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        value = value.item()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_literal(k)}: {to_literal(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise TypeError(f"Notebook parameters must be plain Python values. Got {type(value).__name__}: {value!r}.")


class LiteralTranslator(PythonTranslator):
    """papermill translator for Python kernels that writes ``name = repr(value)``."""

    @classmethod
    def translate(cls, val: Any) -> str:
        return to_literal(val)


def install() -> None:
    """Register the translator for the ``python`` language (idempotent)."""
    papermill_translators.register("python", LiteralTranslator)
