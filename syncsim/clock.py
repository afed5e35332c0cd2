"""Time, behind one seam.

No code outside this module reads the wall clock or sleeps directly: it asks a :class:`Clock`. The real
clock is :class:`SystemClock`; the simulator runs the same code on a virtual-time event loop with a
:class:`LoopClock`, whose ``now()`` advances only when the loop jumps to its next timer.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["BehindClock", "Clock", "LoopClock", "SystemClock", "from_datetime", "to_datetime"]


@runtime_checkable
class Clock(Protocol):
    """A source of time: ``now()`` in UTC epoch seconds, and ``sleep()``."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The wall clock and the running asyncio loop's sleep."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class LoopClock:
    """Epoch time read from the running event loop's own clock.

    ``now() = epoch + (loop.time() - loop time at the first reading)``. On a normal loop this tracks the
    wall clock; on a virtual-time loop (the simulator's) it is simulated time, so every timestamp the runner
    writes is simulated too.
    """

    def __init__(self, epoch: float, *, origin: float | None = None) -> None:
        self.epoch = epoch
        self._origin: float | None = origin

    def now(self) -> float:
        loop_time = asyncio.get_running_loop().time()
        if self._origin is None:
            self._origin = loop_time
        return self.epoch + (loop_time - self._origin)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return f"LoopClock(epoch={self.epoch!r})"


class BehindClock:
    """Another server's reading of ``clock``: ``behind_s`` seconds behind it (negative: ahead), sleeping alike.

    Two servers' clocks are never quite the same; a fake Strava on this clock resets its rate-limit windows by its
    own time, as Strava does."""

    def __init__(self, clock: Clock, behind_s: float) -> None:
        self._clock = clock
        self._behind_s = behind_s

    def now(self) -> float:
        return self._clock.now() - self._behind_s

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(seconds)

    def __repr__(self) -> str:
        return f"BehindClock({self._clock!r}, behind_s={self._behind_s!r})"


def to_datetime(ts: float) -> datetime:
    """UTC epoch seconds → an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def from_datetime(dt: datetime) -> float:
    """An aware datetime → UTC epoch seconds."""
    return dt.timestamp()
