"""Virtual time: run asyncio code on a loop whose clock jumps to the next timer whenever every task waits.

The code under test is unchanged: it sleeps through its :class:`~syncsim.clock.Clock` (a
:class:`~syncsim.clock.LoopClock` here), arms deadlines with ``loop.call_at`` and awaits as usual; only the
loop's notion of time differs. A simulated hour of waiting costs microseconds of wall time.

How, through asyncio's public hooks only: :class:`VirtualTimeLoop` is the standard selector loop with

- ``time()`` reading a count of microseconds that only the loop moves;
- ``call_at`` (so also ``call_later``, ``asyncio.sleep`` and ``asyncio.timeout``) putting its timer on a
  timeline of the loop's own instead of asyncio's heap; clock sleeps (:meth:`VirtualTimeLoop.sleep_future`)
  wait there too, as bare futures, which makes a simulated sleep cheaper than an asyncio timer;
- a selector (the loop's ``selector=`` argument) that never waits. asyncio asks it to wait only when no
  callback is ready, i.e. when every task is blocked; it then serves real I/O if some is ready, and otherwise
  moves the clock to the timeline's next entry and queues what has come due (with ``call_soon``). The jump is
  exact: nothing runs "between" two instants. With nothing on the timeline it waits for the outside world in
  real time, so a thread calling ``call_soon_threadsafe`` still wakes the loop.

At each instant the timers due run first, in the order of their time and then of scheduling, and then the
sleepers due wake in the order they went to sleep. Same seed, same run, on every Python the package supports.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import Context, copy_context
from typing import Any, TypeVar, TypeVarTuple

from syncsim.clock import LoopClock

__all__ = ["VIRTUAL_EPOCH", "VirtualTimeLoop", "run_virtual", "virtual_clock"]

T = TypeVar("T")
_Ts = TypeVarTuple("_Ts")

#: Simulations start at 2026-01-05 00:00:00 UTC (a Monday, on a quarter hour and a UTC midnight), so Strava's
#: rate-limit windows line up with round numbers in charts.
VIRTUAL_EPOCH = 1767571200.0
#: The virtual clock's resolution: one microsecond.
TICKS_PER_S = 1_000_000
#: A timer is due once the clock is this close to its time: ``loop.time() + delay`` can land a few float ulps past
#: the tick it means. asyncio allows its monotonic clock's resolution (a nanosecond on Linux); a constant keeps a
#: run the same on every platform.
_DUE_TOLERANCE_S = 1e-9
#: As asyncio does: cancelled timers are swept off the heap once they are most of a heap of more than this many.
_SWEEP_MIN_CANCELLED = 100


class _Timer(asyncio.TimerHandle):
    """asyncio's ``TimerHandle`` for a timer on the virtual timeline.

    The timeline queues the call with ``call_soon`` when it comes due; cancelling the timer then cancels the
    queued call, so a timer cancelled in the instant it comes due never runs, as with asyncio's own timers.
    """

    __slots__ = ("_due_call", "_queued_call", "_timeline")

    def __init__(
        self, when: float, callback: Callable[..., object], args: tuple[Any, ...], timeline: _Timeline, context: Context
    ) -> None:
        super().__init__(when, callback, args, timeline.loop, context)
        #: What to queue when due; None once queued or cancelled.
        self._due_call: tuple[Callable[..., object], tuple[Any, ...], Context] | None = (callback, args, context)
        self._queued_call: asyncio.Handle | None = None
        self._timeline = timeline

    def cancel(self) -> None:
        if not self.cancelled():
            if self._queued_call is not None:
                self._queued_call.cancel()
            elif self._due_call is not None:
                self._due_call = None
                self._timeline.cancelled_timers += 1
        super().cancel()


class _Timeline:
    """The virtual clock, in integer microseconds, and what waits on it: loop timers and clock sleepers.

    A sleep of ``t`` seconds ends ``round(t * 1e6)`` ticks from now, at least one for a positive ``t``, so sleeps
    less than half a microsecond apart end at the same instant and wake in the order they began, not in the order
    floating-point rounding would give them. A timer fires at the first tick at or after its time. Both heaps hold
    tuples with a sequence number after the time, compared in C, so ties break in scheduling order.
    """

    __slots__ = ("cancelled_timers", "loop", "sequence", "sleepers", "ticks", "timers")

    def __init__(self, loop: VirtualTimeLoop, ticks: int) -> None:
        self.loop = loop
        self.ticks = ticks
        #: ``call_at`` timers as (when in loop seconds, sequence number, timer).
        self.timers: list[tuple[float, int, _Timer]] = []
        #: Clock sleeps as (tick due, sequence number, future); a cancelled sleep's future is done.
        self.sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self.sequence = itertools.count()
        self.cancelled_timers = 0

    def add_timer(self, timer: _Timer) -> None:
        timers = self.timers
        if self.cancelled_timers > _SWEEP_MIN_CANCELLED and 2 * self.cancelled_timers > len(timers):
            timers[:] = [entry for entry in timers if entry[2]._due_call is not None]
            heapq.heapify(timers)
            self.cancelled_timers = 0
        heapq.heappush(timers, (timer.when(), next(self.sequence), timer))

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.Future(loop=self.loop)
        step = round(seconds * TICKS_PER_S)
        if seconds > 0 and step < 1:
            step = 1
        heapq.heappush(self.sleepers, (self.ticks + max(0, step), next(self.sequence), future))
        return future

    def advance(self, seconds: float) -> None:
        step = round(seconds * TICKS_PER_S)
        if seconds > 0 and step < 1:  # a timer closer than one tick must still come due
            step = 1
        self.ticks += step

    def release_due(self) -> bool:
        """Queue the timers due now, then wake the sleepers due now; whether any callback became ready."""
        released = False
        timers, sleepers, now = self.timers, self.sleepers, self.ticks
        if timers and timers[0][0] < now / TICKS_PER_S + _DUE_TOLERANCE_S:
            end = now / TICKS_PER_S + _DUE_TOLERANCE_S
            call_soon = self.loop.call_soon
            while timers and timers[0][0] < end:
                timer = heapq.heappop(timers)[2]
                call = timer._due_call
                if call is None:
                    self.cancelled_timers -= 1
                    continue
                timer._due_call = None
                callback, args, context = call
                timer._queued_call = call_soon(callback, *args, context=context)
                released = True
        while sleepers and sleepers[0][0] <= now:
            future = heapq.heappop(sleepers)[2]
            if not future.done():
                future.set_result(None)
                released = True
        return released

    def next_wait(self) -> float | None:
        """Seconds until the earliest live timer or sleeper, or None when nothing waits on the clock."""
        timers, sleepers = self.timers, self.sleepers
        while timers and timers[0][2]._due_call is None:
            heapq.heappop(timers)
            self.cancelled_timers -= 1
        while sleepers and sleepers[0][2].done():
            heapq.heappop(sleepers)
        wait = max(0.0, timers[0][0] - self.ticks / TICKS_PER_S) if timers else None
        if sleepers:
            due = (sleepers[0][0] - self.ticks) / TICKS_PER_S
            wait = due if wait is None else min(wait, due)
        return wait


class _JumpingSelector(selectors.BaseSelector):
    """The loop's selector: it never waits while anything waits on the timeline, it jumps the clock instead.

    asyncio calls ``select`` once per loop iteration, before it runs the callbacks that are ready: with
    ``timeout=0`` when some are, otherwise with the time until its own next timer (``None`` here, as every
    timer is on the timeline).
    """

    def __init__(self, inner: selectors.BaseSelector, timeline: _Timeline) -> None:
        self._inner = inner
        self._timeline = timeline
        #: How many file objects are registered, and how many when nothing but the loop's wake-up pipe is.
        self._watched = 0
        self.quiet = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        timeline = self._timeline
        if timeline.release_due() or timeout == 0:
            # Callbacks are ready and run first; real I/O is polled before the clock next moves.
            return []
        # Every task waits. Real I/O is served before the clock moves, if there is any to poll: the wake-up pipe
        # alone only says that another thread called call_soon_threadsafe, whose callback is already queued.
        if self._watched > self.quiet:
            events = self._inner.select(0)
            if events:
                return events
        wait = timeline.next_wait()
        if timeout is not None:  # a selector never waits longer than asked
            wait = timeout if wait is None else min(wait, timeout)
        if wait is None:
            # Nothing waits on the clock: only the outside world can wake the loop, so wait for it.
            return self._inner.select(None)
        timeline.advance(wait)
        timeline.release_due()
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._inner.register(fileobj, events, data)
        self._watched += 1
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._inner.unregister(fileobj)
        self._watched -= 1
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time starting at ``start`` (seconds); see the module docstring.

    Time is kept as an integer number of microseconds: sleeps less than half a microsecond apart end at the same
    instant, and what comes due at one instant runs in the order it was scheduled, timers before sleepers. Same
    seed, same run.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._timeline = _Timeline(self, round(start * TICKS_PER_S))
        selector = _JumpingSelector(selectors.DefaultSelector(), self._timeline)
        super().__init__(selector)
        selector.quiet = len(selector.get_map())  # the wake-up pipe that the loop has just registered

    def time(self) -> float:
        return self._timeline.ticks / TICKS_PER_S

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (what waiting that long would do)."""
        self._timeline.advance(seconds)

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """Schedule ``callback(*args)`` at loop time ``when`` (seconds), on the virtual timeline."""
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        timeline = self._timeline
        timer = _Timer(when, callback, args, timeline, copy_context() if context is None else context)
        timeline.add_timer(timer)
        return timer

    def sleep_future(self, seconds: float) -> asyncio.Future[None]:
        """A future that resolves ``seconds`` of virtual time from now: ``asyncio.sleep`` without its timer.

        :class:`~syncsim.clock.LoopClock` sleeps through this when the loop offers it: a tuple on a heap instead
        of a ``TimerHandle`` and the callback that resolves the future. Cancelling the waiting task cancels the
        future, which then neither wakes anything nor moves the clock.
        """
        return self._timeline.sleep(seconds)


class _BoundVirtualClock(LoopClock):
    """A :class:`LoopClock` of one :class:`VirtualTimeLoop`: reads its ticks and sleeps on it directly.

    The same readings and sleeps as ``LoopClock(epoch, origin=0.0)`` on that loop, without looking the running
    loop up on every call (a simulation reads its clock a dozen times per request).
    """

    def __init__(self, epoch: float, loop: VirtualTimeLoop) -> None:
        super().__init__(epoch, origin=0.0)
        self._timeline = loop._timeline

    def now(self) -> float:
        return self.epoch + self._timeline.ticks / TICKS_PER_S

    def sleep(self, seconds: float) -> Awaitable[None]:  # type: ignore[override]
        """The sleep future itself (a coroutine around it would be one more frame on every wake-up)."""
        if seconds > 0:
            return self._timeline.sleep(seconds)
        return asyncio.sleep(0)


def virtual_clock(epoch: float = VIRTUAL_EPOCH) -> LoopClock:
    """A clock reading the running (virtual) loop; ``now()`` starts at ``epoch``.

    Made inside a :class:`VirtualTimeLoop`, it belongs to that loop (for use within that run); made outside
    one, it reads whichever loop is running when asked.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if isinstance(loop, VirtualTimeLoop):
        return _BoundVirtualClock(epoch, loop)
    return LoopClock(epoch, origin=0.0)  # the virtual loop starts at 0


def _run_on_new_loop(
    factory: Callable[[], Coroutine[Any, Any, T]],
    started: Callable[[VirtualTimeLoop, asyncio.Task[T]], None] | None = None,
) -> T:
    loop = VirtualTimeLoop(start=0.0)
    try:
        main = loop.create_task(factory())
        if started is not None:
            started(loop, main)
        return loop.run_until_complete(main)
    except BaseException:
        # Interrupted (or failed): the run's leftovers are cancelled below, and a cancelled gather that nobody
        # reads would otherwise print a page of "exception was never retrieved" after the interrupt's own line.
        loop.set_exception_handler(_quiet_cancellations)
        raise
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


def _quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def run_virtual(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``factory()`` to completion on a fresh virtual-time loop and return its result.

    Works from plain code and from a Jupyter cell (where a loop is already running): there it runs the
    virtual loop in a helper thread and waits for it. Interrupting the wait (Jupyter's interrupt, Ctrl-C)
    cancels the run in that thread and waits for it to stop, then raises the interrupt.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_new_loop(factory)
    box: dict[str, Any] = {}
    lock = threading.Lock()

    def started(loop: VirtualTimeLoop, main: asyncio.Task[T]) -> None:
        with lock:
            box["stop"] = lambda: loop.call_soon_threadsafe(main.cancel)
            if box.get("interrupted"):  # the interrupt came before the run started
                main.cancel()

    # Waited for with an Event, not Thread.join(): a join that an interrupt cuts short can leave the thread marked
    # as ended while it still runs (CPython's bpo-45274 handling), and the second join would not wait.
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = _run_on_new_loop(factory, started)
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="syncsim-virtual-time").start()
    try:
        done.wait()
    except BaseException:
        with lock:
            box["interrupted"] = True
            stop = box.get("stop")
        if stop is not None:
            stop()
        done.wait()
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
