"""Retry decisions as values.

The backoff for the retry after failed attempt ``n`` (1-based) is::

    delay(n) = min(max_s, base_s * factor ** (n - 1)) * (1 + jitter * u),   u ~ Uniform(-1, 1)

With the defaults (2 s, ×2, capped at 300 s, ±25 %): about 2 s, 4 s, 8 s, … A policy is a frozen value; the
random source is passed in, so tests assert the exact sequence of waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from syncsim import defaults
from syncsim.errors import InvalidInput, Outage, PermanentError, Reschedule
from syncsim.options import is_number

__all__ = ["Fail", "Retry", "RetryDecision", "RetryPolicy", "Wait"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Retry:
    """Try again in ``retry_in`` seconds; the failed attempt stays counted."""

    retry_in: float
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Wait:
    """Stop without spending an attempt and continue at ``at`` (UTC epoch seconds); ``shared``: every job of
    the same type waits for the same thing (see :class:`~syncsim.errors.Reschedule`)."""

    at: float
    reason: str
    shared: bool = False
    #: For an outage: the looks that found the service down in a row, this one included (0 otherwise).
    looks: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Fail:
    """Give up: the job ends ``failed`` with ``reason``."""

    reason: str


RetryDecision = Retry | Wait | Fail


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter (see the module docstring for the formula)."""

    base_s: float = defaults.BACKOFF_BASE_S
    factor: float = defaults.BACKOFF_FACTOR
    max_s: float = defaults.BACKOFF_MAX_S
    jitter: float = defaults.BACKOFF_JITTER

    def __post_init__(self) -> None:
        finite = all(is_number(v) for v in (self.base_s, self.max_s, self.factor, self.jitter))
        if not finite or self.base_s < 0 or self.max_s < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise InvalidInput(
                "RetryPolicy needs finite base_s >= 0, max_s >= 0 and factor >= 1, and 0 <= jitter <= 1, got "
                f"{self.base_s!r}, {self.max_s!r}, {self.factor!r}, {self.jitter!r}"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        raw = min(self.max_s, self.base_s * self.factor ** max(0, attempt - 1))
        if self.jitter and rng is not None:
            raw *= 1 + self.jitter * rng.uniform(-1.0, 1.0)
        return raw

    def decide(
        self,
        error: BaseException,
        *,
        attempt: int,
        max_attempts: int,
        rng: random.Random | None = None,
        continued: bool = True,
    ) -> RetryDecision:
        """What to do after ``error`` ended attempt ``attempt`` of ``max_attempts``. ``continued``: whether something
        continues a job that waits (not under inline retries); if not, an :class:`~syncsim.errors.Outage` is decided
        as the failure it also is."""
        message = describe(error)
        if isinstance(error, Reschedule) and (continued or not isinstance(error, Outage)):
            looks = error.looks if isinstance(error, Outage) else 0
            return Wait(at=error.at, reason=message, shared=error.shared, looks=looks)
        if isinstance(error, PermanentError):
            return Fail(reason=f"attempt {attempt} of {max_attempts} failed, not retried: {message}")
        if attempt >= max_attempts:
            return Fail(reason=f"attempt {attempt} of {max_attempts} failed, no attempts left: {message}")
        delay = self.delay(attempt, rng)
        return Retry(
            retry_in=delay,
            reason=f"attempt {attempt} of {max_attempts} failed, retrying in {delay:.1f} s: {message}",
        )


def describe(error: BaseException) -> str:
    """One line: the error's class and message, newlines folded."""
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"[:500]
