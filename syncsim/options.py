"""Options given as plain values (numbers, dicts of a dataclass's fields), checked so that a mistake is refused in
one line naming the option: a notebook user's ``faults={"error_rate": "0.1"}`` would otherwise fail deep inside
with a ``TypeError`` from a comparison, and ``{"eror_rate": 0.1}`` with one from ``__init__``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeGuard, TypeVar

from syncsim.errors import InvalidInput

__all__ = ["from_options", "is_number", "is_whole", "whole"]

T = TypeVar("T")


def from_options(cls: type[T], spec: Mapping[str, Any], *, what: str) -> T:
    """``cls(**spec)`` for a dataclass ``cls``, refusing keys that are not its fields (``what`` names the option)."""
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"{what} must be a dict of its fields, got {spec!r}")
    known = {f.name for f in fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(str(key) for key in spec if key not in known)
    if unknown:
        raise InvalidInput(f"unknown {what} field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**spec)


def is_number(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite real number (an int or a float, not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int (not a bool): 2.5 athletes or a limit of 100.5 requests is a mistake to refuse,
    not a number to round."""
    return isinstance(value, int) and not isinstance(value, bool)


def whole(name: str, value: object, *, lowest: int | None = None) -> int:
    """``value`` if it is a whole number (at least ``lowest``), else :class:`InvalidInput` naming ``name``."""
    if not is_whole(value) or (lowest is not None and value < lowest):
        at_least = "" if lowest is None else f" >= {lowest}"
        raise InvalidInput(f"{name} must be a whole number{at_least}, got {value!r}")
    return value
