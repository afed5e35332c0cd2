"""Clocks for tests: time that moves only when the code under test sleeps or the test says so."""

from __future__ import annotations

import asyncio

__all__ = ["ManualClock", "StalledClock"]


class ManualClock:
    """A :class:`~syncsim.clock.Clock` whose ``sleep`` advances ``now`` at once instead of waiting.

    ``now()`` is UTC epoch seconds, starting at ``start``. Every ``sleep(s)`` adds ``s`` to now, records
    ``s`` in :attr:`sleeps` (so a test can assert the exact sequence of waits), and yields to the event loop
    once. Concurrent sleepers each advance the clock by their own amount: it is meant for sequential code;
    the simulator's virtual-time loop is the tool for concurrent time.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.sleeps.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` without recording a sleep."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += seconds

    def set(self, ts: float) -> None:
        """Jump to ``ts`` (UTC epoch seconds), never backwards."""
        self.advance(ts - self._now)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"


class StalledClock(ManualClock):
    """A :class:`ManualClock` whose sleeps never end (until cancelled): code that sleeps, such as a lease
    heartbeat, never runs again, as in an event loop starved by blocking work. Time moves only by
    :meth:`advance` and :meth:`set`."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(max(0.0, float(seconds)))
        await asyncio.Event().wait()
