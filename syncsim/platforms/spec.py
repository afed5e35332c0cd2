"""Platform presets: how long an invocation may run, its memory, the plan's price and free allowances.

The presets live in ``syncsim/data/platforms.csv``, each row with its source: ``hobby`` 10 s and ``pro`` 300 s
(the design's figures), ``hobby-fluid`` 300 s and ``pro-fluid`` 800 s (Vercel's current ones), ``unlimited``,
and ``worker-vm`` (the always-on machine the ``worker`` strategy needs, a cost reference).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from functools import cache

from syncsim.data import data_dir
from syncsim.errors import ConfigError

__all__ = ["PlatformSpec", "load_platforms", "platform_spec"]


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


@dataclass(frozen=True, kw_only=True, slots=True)
class PlatformSpec:
    """One platform preset from ``syncsim/data/platforms.csv`` (times in seconds, money in USD per month)."""

    name: str
    max_duration_s: float | None
    memory_mb: int
    monthly_price_usd: float
    included_invocations: float | None = None
    included_gb_hours: float | None = None
    included_active_cpu_hours: float | None = None
    always_on: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        # A limit of 0, -5 or NaN would time out every request while the metrics still passed; a negative price
        # would pay the user. Times and amounts must be finite and positive (a limit: None for no limit).
        if self.max_duration_s is not None and not _positive(self.max_duration_s):
            raise ConfigError(
                f"platform {self.name!r}: max_duration_s must be seconds > 0, or None for no limit, "
                f"got {self.max_duration_s!r}"
            )
        if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int) or self.memory_mb < 1:
            raise ConfigError(f"platform {self.name!r}: memory_mb must be a whole number >= 1, got {self.memory_mb!r}")
        amounts = ("monthly_price_usd", "included_invocations", "included_gb_hours", "included_active_cpu_hours")
        for name in amounts:
            value = getattr(self, name)
            if (value is not None or name == "monthly_price_usd") and not (value == 0 or _positive(value)):
                raise ConfigError(f"platform {self.name!r}: {name} must be a finite number >= 0, got {value!r}")

    def with_limit(self, max_duration_s: float | None) -> PlatformSpec:
        """The same platform with another time limit (scaled-down validation runs)."""
        return replace(self, max_duration_s=max_duration_s)


@cache
def load_platforms() -> dict[str, PlatformSpec]:
    """All presets, by name."""
    specs: dict[str, PlatformSpec] = {}
    with open(data_dir() / "platforms.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            specs[row["platform"]] = PlatformSpec(
                name=row["platform"],
                max_duration_s=_optional_float(row["max_duration_s"]),
                memory_mb=int(row["memory_mb"]),
                monthly_price_usd=float(row["monthly_price_usd"]),
                included_invocations=_optional_float(row["included_invocations"]),
                included_gb_hours=_optional_float(row["included_gb_hours"]),
                included_active_cpu_hours=_optional_float(row["included_active_cpu_hours"]),
                always_on=row["always_on"].strip().lower() == "true",
                source=row["source"],
            )
    return specs


def platform_spec(name: str | PlatformSpec) -> PlatformSpec:
    """A preset by name (``hobby``, ``pro``, ``hobby-fluid``, ``pro-fluid``, ``unlimited``)."""
    if isinstance(name, PlatformSpec):
        return name
    specs = load_platforms()
    if name not in specs:
        raise ConfigError(f"unknown platform {name!r}; choose one of: {', '.join(sorted(specs))}")
    return specs[name]
