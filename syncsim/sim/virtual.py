"""Virtual time: run asyncio code on a loop whose clock jumps to the next timer whenever every task waits.

Built on looptime (MIT). The code under test is unchanged: it sleeps through its :class:`~syncsim.clock.Clock`
(a :class:`~syncsim.clock.LoopClock` here), arms deadlines with ``loop.call_later`` and awaits as usual; only
the loop's notion of time differs. A simulated hour of waiting costs microseconds of wall time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from syncsim.clock import LoopClock

__all__ = ["VIRTUAL_EPOCH", "run_virtual", "virtual_clock"]

T = TypeVar("T")

#: Simulations start at 2026-01-05 00:00:00 UTC (a Monday, on a quarter hour and a UTC midnight), so Strava's
#: rate-limit windows line up with round numbers in charts.
VIRTUAL_EPOCH = 1767571200.0


def virtual_clock(epoch: float = VIRTUAL_EPOCH) -> LoopClock:
    """A clock reading the running (virtual) loop; ``now()`` starts at ``epoch``."""
    return LoopClock(epoch, origin=0.0)  # the virtual loop starts at 0


def _run_on_new_loop(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    import looptime

    loop = looptime.new_event_loop(start=0.0, noop_cycles=1)
    try:
        return loop.run_until_complete(factory())
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def run_virtual(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``factory()`` to completion on a fresh virtual-time loop and return its result.

    Works from plain code and from a Jupyter cell (where a loop is already running): there it runs the
    virtual loop in a helper thread and waits for it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_new_loop(factory)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = _run_on_new_loop(factory)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="syncsim-virtual-time")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
