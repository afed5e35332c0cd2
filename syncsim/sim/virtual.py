"""Virtual time: run asyncio code on a loop whose clock jumps to the next timer whenever every task waits.

The code under test is unchanged: it sleeps through its :class:`~syncsim.clock.Clock` (a
:class:`~syncsim.clock.LoopClock` here), arms deadlines with ``loop.call_later`` and awaits as usual; only the
loop's notion of time differs. A simulated hour of waiting costs microseconds of wall time.

How: :class:`VirtualTimeLoop` is the standard selector loop with two changes. ``time()`` returns a number
that only the loop moves. While callbacks are ready its selector returns at once; otherwise it first polls
for real I/O without waiting, and when nothing is ready and
asyncio would sleep ``timeout`` seconds until its next timer, the clock jumps by ``timeout`` instead. asyncio
asks to sleep only when no callback is ready, i.e. when every task is blocked on a timer, so the jump is
exact: the next timer fires at once and nothing runs "between" two instants. Real I/O (a thread calling
``call_soon_threadsafe``) is still served; with no timer left the loop waits for it in real time.

The simulator used looptime before; this keeps its time arithmetic (integer microseconds, so a run gives
exactly the same results) and drops the rest (idle steps, no-op cycles before each jump, executor
tracking): a loop iteration costs one non-blocking ``select`` and no bookkeeping, which matters at the
~1,000,000 timers of a simulated launch.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
import threading
from asyncio import format_helpers
from asyncio.base_events import (  # type: ignore[attr-defined]
    _MIN_CANCELLED_TIMER_HANDLES_FRACTION,
    _MIN_SCHEDULED_TIMER_HANDLES,
    MAXIMUM_SELECT_TIMEOUT,
)
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import copy_context
from typing import Any, TypeVar

from syncsim.clock import LoopClock

__all__ = ["VIRTUAL_EPOCH", "VirtualTimeLoop", "run_virtual", "virtual_clock"]

T = TypeVar("T")
_Future = asyncio.Future
_Handle = asyncio.Handle
_new_handle = object.__new__

#: Simulations start at 2026-01-05 00:00:00 UTC (a Monday, on a quarter hour and a UTC midnight), so Strava's
#: rate-limit windows line up with round numbers in charts.
VIRTUAL_EPOCH = 1767571200.0
#: The virtual clock's resolution: one microsecond.
TICKS_PER_S = 1_000_000


class _JumpingSelector(selectors.BaseSelector):
    """A selector that reports real I/O at once and turns every wait for a timer into a jump of the clock."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop
        #: What is registered when nothing but the loop's own wake-up pipe is (the loop registers it first).
        self._quiet = self._watched = len(inner.get_map())

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout == 0:
            # Callbacks are ready and run first; real I/O is polled before the clock next moves. (A simulated
            # launch runs millions of loop iterations: a system call each was a few % of the run.)
            return []
        # Before the clock moves, real I/O is polled, unless there is none to poll: the wake-up pipe alone only
        # says that another thread called call_soon_threadsafe, whose callback is already in the ready queue.
        # (The reference sweep's hobby worker run jumps the clock 209,477 times: a system call each was 2 % of its CPU.)
        ready = self._inner.select(0) if self._watched > self._quiet else []
        if ready or timeout is None:
            # I/O to serve, or no timer at all: only the outside world can wake the loop, so wait for it.
            return ready or self._inner.select(None)
        if timeout > 0:
            self._loop.advance(timeout)
        return ready

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._inner.register(fileobj, events, data)
        self._watched = len(self._inner.get_map())
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._inner.unregister(fileobj)
        self._watched = len(self._inner.get_map())
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time starting at ``start`` (seconds); see the module docstring.

    Time is kept as an integer number of microseconds, as looptime (which the simulator used first) keeps it:
    a jump of ``t`` seconds moves the clock by ``round(t * 1e6)`` ticks, at least one tick for a positive
    ``t``, so events less than half a microsecond apart happen at the same instant and run in the order
    they were scheduled, not in the order floating-point rounding would give them. Same seed, same run.
    """

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._ticks = round(start * TICKS_PER_S)
        self._selector = _JumpingSelector(self._selector, self)  # type: ignore[has-type]
        #: Futures of :meth:`sleep_future`, as a heap of (tick due, sequence number, future).
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._sleeper_seq = itertools.count()
        #: Every ``call_at``/``call_later`` timer, as a heap of (when, sequence number, handle); see :meth:`call_at`.
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._timers_cancelled = 0

    def sleep_future(self, seconds: float) -> asyncio.Future[None]:
        """A future that resolves ``seconds`` of virtual time from now: ``asyncio.sleep`` without its timer.

        :class:`~syncsim.clock.LoopClock` sleeps through this when the loop offers it. A sleeper is a tuple on a
        heap of its own, compared in C, resolved by :meth:`_run_once` the moment the clock reaches it; a
        ``TimerHandle`` costs a Python object, Python comparisons on every heap step, a cancellation on the way
        out and one more loop iteration to wake the task. Measured: about half the instructions of a sleep.
        Cancelling the waiting task cancels the future; its heap entry is skipped when it comes due.
        """
        future: asyncio.Future[None] = _Future(loop=self)
        step = round(seconds * TICKS_PER_S)
        if step <= 0 and seconds > 0:
            step = 1
        heapq.heappush(self._sleepers, (self._ticks + max(0, step), next(self._sleeper_seq), future))
        return future

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        """Schedule ``callback(*args)`` at loop time ``when``, as asyncio does, on a heap of plain tuples.

        asyncio keeps its timers on a heap of ``TimerHandle`` objects, ordered by a Python ``__lt__``: every
        push and pop makes a dozen Python calls. Here the heap holds ``(when, sequence number, handle)``,
        compared in C, and timers due at the same instant run in the order they were scheduled. Each request
        of a simulation arms one (its invocation's kill at the deadline) and cancels it when it ends; a
        cancelled handle stays on the heap until it comes due, or until cancelled ones are half the heap.
        """
        self._check_closed()  # type: ignore[attr-defined]
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        timer._scheduled = True  # type: ignore[attr-defined]  # so that cancel() reports back
        heapq.heappush(self._timers, (when, next(self._sleeper_seq), timer))
        return timer

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        """asyncio's ``call_soon`` in one Python call instead of three (every task step of a run comes here)."""
        if self._debug:  # type: ignore[attr-defined]
            return super().call_soon(callback, *args, context=context)
        if self._closed:  # type: ignore[attr-defined]
            raise RuntimeError("Event loop is closed")
        # What Handle(callback, args, self, context) sets, without its __init__ frame and the get_debug() call
        # it makes (this loop is not in debug mode here: the debug path above takes asyncio's own call_soon).
        handle = _new_handle(_Handle)
        handle._callback = callback  # type: ignore[attr-defined]
        handle._args = args  # type: ignore[attr-defined]
        handle._cancelled = False  # type: ignore[attr-defined]
        handle._loop = self  # type: ignore[attr-defined]
        handle._source_traceback = None  # type: ignore[attr-defined]
        handle._repr = None  # type: ignore[attr-defined]
        handle._context = copy_context() if context is None else context  # type: ignore[attr-defined]
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        if handle._scheduled:  # type: ignore[attr-defined]
            self._timers_cancelled += 1

    def _run_once(self) -> None:
        """One iteration: asyncio's own (``BaseEventLoop._run_once`` of CPython 3.11), with the sleepers.

        The changes: timers live on the tuple heap of :meth:`call_at`; the clock may jump to the earliest
        sleeper as it does to the earliest timer; the sleepers that are due are resolved before the ready
        callbacks run, so their tasks resume in this iteration. Debug-mode slow-callback logging is left out.
        """
        timers = self._timers
        count = len(timers)
        if (
            count > _MIN_SCHEDULED_TIMER_HANDLES
            and self._timers_cancelled / count > _MIN_CANCELLED_TIMER_HANDLES_FRACTION
        ):
            kept = []
            for entry in timers:
                if entry[2]._cancelled:  # type: ignore[attr-defined]
                    entry[2]._scheduled = False  # type: ignore[attr-defined]
                else:
                    kept.append(entry)
            heapq.heapify(kept)
            self._timers = timers = kept
            self._timers_cancelled = 0
        else:
            while timers and timers[0][2]._cancelled:  # type: ignore[attr-defined]
                self._timers_cancelled -= 1
                heapq.heappop(timers)[2]._scheduled = False  # type: ignore[attr-defined]

        sleepers = self._sleepers
        ready = self._ready  # type: ignore[attr-defined]
        timeout: float | None = None
        if ready or self._stopping:  # type: ignore[attr-defined]
            timeout = 0
        else:
            if timers:
                timeout = min(max(0.0, timers[0][0] - self._ticks / TICKS_PER_S), MAXIMUM_SELECT_TIMEOUT)
            if sleepers:
                due = max(0, sleepers[0][0] - self._ticks) / TICKS_PER_S
                timeout = due if timeout is None else min(timeout, due)

        selector = self._selector
        if timeout is None or selector._watched > selector._quiet:
            # Real I/O is watched, or only the outside world can wake the loop: ask the selector.
            self._process_events(selector.select(timeout))  # type: ignore[attr-defined]
        elif timeout > 0:
            # Nothing but the wake-up pipe is watched and every task waits: what the selector would do (jump
            # the clock; no events), without calling it and _process_events. A loop iteration with callbacks
            # ready (timeout 0) polls nothing either.
            self.advance(timeout)

        end_time = self._ticks / TICKS_PER_S + self._clock_resolution  # type: ignore[attr-defined]
        while timers and timers[0][0] < end_time:
            timer = heapq.heappop(timers)[2]
            if timer._cancelled:  # type: ignore[attr-defined]
                self._timers_cancelled -= 1
            else:
                ready.append(timer)
            timer._scheduled = False  # type: ignore[attr-defined]
        now = self._ticks
        while sleepers and sleepers[0][0] <= now:
            future = heapq.heappop(sleepers)[2]
            if not future.done():
                future.set_result(None)

        # Each ready callback runs as Handle._run would run it, without its Python frame (one per task step).
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                try:
                    handle._context.run(handle._callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _report_callback_error(handle, exc)
        handle = None

    def time(self) -> float:
        return self._ticks / TICKS_PER_S

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (what waiting that long would do)."""
        step = round(seconds * TICKS_PER_S)
        if 0 < seconds < 1 / TICKS_PER_S:  # a timer closer than one tick must still come due
            step += 1
        self._ticks += step


def _report_callback_error(handle: asyncio.Handle, exc: BaseException) -> None:
    """What ``Handle._run`` does with an exception its callback raised: the loop's exception handler gets it."""
    callback = format_helpers._format_callback_source(handle._callback, handle._args)  # type: ignore[attr-defined]
    context: dict[str, Any] = {"message": f"Exception in callback {callback}", "exception": exc, "handle": handle}
    if handle._source_traceback:  # type: ignore[attr-defined]
        context["source_traceback"] = handle._source_traceback  # type: ignore[attr-defined]
    handle._loop.call_exception_handler(context)  # type: ignore[attr-defined]


class _BoundVirtualClock(LoopClock):
    """A :class:`LoopClock` of one :class:`VirtualTimeLoop`: reads its ticks and sleeps on it directly.

    The same readings and sleeps as ``LoopClock(epoch, origin=0.0)`` on that loop, without looking the running
    loop up on every call (a simulation reads its clock a dozen times per request).
    """

    def __init__(self, epoch: float, loop: VirtualTimeLoop) -> None:
        super().__init__(epoch, origin=0.0)
        self._loop = loop

    def now(self) -> float:
        return self.epoch + self._loop._ticks / TICKS_PER_S

    def sleep(self, seconds: float) -> Awaitable[None]:  # type: ignore[override]
        """The loop's sleep future itself (a coroutine around it would be one more frame on every wake-up)."""
        if seconds > 0:
            return self._loop.sleep_future(seconds)
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


def _run_on_new_loop(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualTimeLoop(start=0.0)
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
