"""Fast construction of the frozen, slotted dataclass records that hot paths build by the million.

A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__`` (the frozen guard forbids
plain assignment): for :class:`~syncsim.jobs.model.Job`'s 18 fields that is most of the cost of reading a job
row, which every status poll does. :func:`positional_builder` generates, once per class, a function that sets
each slot through its descriptor directly — the same object, about a fifth of the time — for values the
caller has already validated (a store's row, a parsed Strava page). The record stays frozen afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["positional_builder"]

T = TypeVar("T")


def positional_builder(cls: type[T]) -> Callable[..., T]:
    """``build(*values)`` for the slotted dataclass ``cls``: one value per field, in field order, every field
    given (no defaults, no ``__post_init__``). Equal to ``cls(**dict(zip(field_names, values)))``."""
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} must be a slotted dataclass without __post_init__")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, Any] = {f"_set_{n}": cls.__dict__[n].__set__ for n in names}
    namespace.update(_new=object.__new__, _cls=cls)
    body = "".join(f"    _set_{n}(record, {n})\n" for n in names)
    source = f"def build_{cls.__name__}({', '.join(names)}):\n    record = _new(_cls)\n{body}    return record\n"
    exec(source, namespace)
    build: Callable[..., T] = namespace[f"build_{cls.__name__}"]
    build.__doc__ = f"A {cls.__name__} from its {len(names)} field values, in order (see positional_builder)."
    return build
