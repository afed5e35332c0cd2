"""Platforms: where an invocation runs, how long it may run, and what happens at its deadline.

An *invocation* starts when a request arrives; its deadline is start + the platform's maximum duration. Work
handed to :meth:`Invocation.wait_until` runs after the response is sent, until it finishes or the deadline
hits. At the deadline the invocation is **killed**, as Vercel does: its tasks are cancelled and every store it
was given refuses all further calls, so nothing it does afterwards (no ``finally`` clean-up) reaches the store.

:class:`LocalPlatform` does this on the running asyncio loop: the deadlines of a loop's invocations wait on one
heap, behind one loop timer (:class:`_Deadlines`); on the simulator's virtual-time loop the very same class is
the simulated platform.
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from syncsim.clock import Clock, SystemClock
from syncsim.errors import ConfigError, InvocationKilled

__all__ = [
    "Invocation",
    "LocalPlatform",
    "Platform",
    "PlatformSpec",
    "data_dir",
    "guard_store",
    "load_platforms",
    "platform_spec",
]


def data_dir() -> Path:
    """The repository's ``data/`` folder (workloads, platform limits)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "data", here.parent / "data"):
        if (candidate / "platforms.csv").is_file():
            return candidate
    raise ConfigError(f"syncsim's data folder is missing (looked beside {here}); reinstall from a checkout")


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


@dataclass(frozen=True, kw_only=True, slots=True)
class PlatformSpec:
    """One platform preset from ``data/platforms.csv`` (times in seconds, money in USD per month)."""

    name: str
    max_duration_s: float | None
    memory_mb: int
    monthly_price_usd: float
    included_invocations: float | None = None
    included_gb_hours: float | None = None
    included_active_cpu_hours: float | None = None
    always_on: bool = False
    source: str = ""

    def with_limit(self, max_duration_s: float | None) -> PlatformSpec:
        """The same platform with another time limit (scaled-down validation runs)."""
        from dataclasses import replace

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


_invocation_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class Invocation:
    """One request's lifetime on a platform: its deadline, its background work, and its kill switch."""

    clock: Clock
    started_at: float
    deadline: float | None
    platform: str = "local"
    id: int = field(default_factory=_invocation_ids.__next__)
    killed: bool = False
    kill_reason: str | None = None
    ended_at: float | None = None
    responded: bool = False
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: The task answering the request (see :meth:`serve`): the kill cancels it too.
    _handler: asyncio.Task[Any] | None = None
    #: Whether the kill cancelled the handler (so its CancelledError is the deadline, not a shutdown).
    handler_cancelled: bool = False
    _on_end: list[Callable[[Invocation], None]] = field(default_factory=list)

    def time_left(self) -> float:
        """Seconds until the deadline (``inf`` without one)."""
        return math.inf if self.deadline is None else self.deadline - self.clock.now()

    def check_alive(self) -> None:
        if self.killed:
            raise InvocationKilled(f"invocation {self.id} was killed: {self.kill_reason}")

    def wait_until(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``work`` after the response, within this invocation's deadline (Vercel's ``waitUntil``)."""
        self.check_alive()
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed background task must not warn at garbage collection
        if not self._tasks and self.responded and self.ended_at is None:
            self._end()

    def arm(self, now: float | None = None) -> None:
        """Schedule the kill at the deadline on the running loop (see :class:`_Deadlines`); ``now``: the clock's
        reading, if the caller has just taken it."""
        if self.deadline is None:
            return
        if now is None:
            now = self.clock.now()
        _Deadlines.of(asyncio.get_running_loop()).watch(self, max(0.0, self.deadline - now))

    def kill(self, reason: str = "killed") -> None:
        """Kill now: cancel every background task; stores given to this invocation refuse further calls."""
        if self.killed or self.ended_at is not None:
            return
        self.killed = True
        self.kill_reason = reason
        if self._handler is not None:
            self.handler_cancelled = True
            self._handler.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._end()

    async def serve(self, handler: Awaitable[None]) -> bool:
        """Await the request's ``handler`` in the current task; the kill at the deadline cancels it.

        Returns ``False`` if the handler completed, ``True`` if the kill cut it short (the caller answers 504).
        The invocation's own kill timer is the only timer: no second per-request timeout.
        """
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always called from a task
            raise RuntimeError("Invocation.serve() must run in a task")
        cancelling = task.cancelling()
        self._handler = task
        try:
            await handler
        except asyncio.CancelledError:
            # Ours only if the kill cancelled the handler and nobody else asked this task to stop as well.
            if self.handler_cancelled and task.uncancel() <= cancelling:
                return True
            raise
        finally:
            self._handler = None
        return False

    def finish_response(self) -> None:
        """The response was sent; the invocation ends when its background work does."""
        self.responded = True
        if not self._tasks and self.ended_at is None:
            self._end()

    def _end(self) -> None:
        self.ended_at = self.clock.now()
        for callback in self._on_end:
            callback(self)

    def on_end(self, callback: Callable[[Invocation], None]) -> None:
        self._on_end.append(callback)

    @property
    def active(self) -> bool:
        return self.ended_at is None

    async def drain(self) -> None:
        """Wait until every background task has finished or been killed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class _Deadlines:
    """One loop's invocation deadlines: a heap of ``(when, invocation id, invocation)``, and one loop timer, for
    the earliest deadline of an invocation still running.

    An invocation that ends is not taken off the heap (it is skipped when its deadline comes), so a request
    costs a push on a heap of tuples, compared in C, instead of a ``TimerHandle`` armed and cancelled: a status
    poll ends long before its deadline. Measured with 200 browsers polling through the simulator's app: 198k
    instructions a poll with a timer per invocation, 188k with this, 186k with no deadline at all. (A lone
    browser polling less often than the deadline gains nothing: each of its invocations still gets the timer.)
    An ended invocation stays referenced until its deadline passes. Invocations due at the same moment are
    killed in the order they started.
    """

    __slots__ = ("_armed_at", "_heap", "_timer", "loop")

    #: The last loop's deadlines (a new loop gets new ones; a loop's own timer keeps its heap alive).
    _last: _Deadlines | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int, Invocation]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Deadlines:
        deadlines = cls._last
        if deadlines is None or deadlines.loop is not loop:
            deadlines = cls._last = cls(loop)
        return deadlines

    def watch(self, invocation: Invocation, delay: float) -> None:
        """Kill ``invocation`` ``delay`` seconds from now (loop time) unless it has ended by then."""
        when = self.loop.time() + delay
        heapq.heappush(self._heap, (when, invocation.id, invocation))
        if when < self._armed_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        heap = self._heap
        due = max(self._armed_at, self.loop.time())
        self._timer, self._armed_at = None, math.inf
        while heap and heap[0][0] <= due:
            heapq.heappop(heap)[2].kill("reached the platform's time limit")  # no-op if it has ended
        while heap and heap[0][2].ended_at is not None:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])


class _GuardedStore:
    """A store proxy that refuses every call once its invocation is killed (checked before and after I/O)."""

    def __init__(self, store: Any, invocation: Invocation) -> None:
        self._store = store
        self._invocation = invocation

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target):
            return target
        invocation = self._invocation

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            invocation.check_alive()
            result = await target(*args, **kwargs)
            invocation.check_alive()
            return result

        return guarded


def guard_store(store: Any, invocation: Invocation | None) -> Any:
    """``store`` as seen from inside ``invocation``: dead once the invocation is killed."""
    return store if invocation is None else _GuardedStore(store, invocation)


class Platform(Protocol):
    """Starts invocations; the API and the simulator know platforms only through this."""

    spec: PlatformSpec
    clock: Clock

    def start_invocation(self) -> Invocation: ...


class LocalPlatform:
    """A platform on the running asyncio loop that enforces ``spec.max_duration_s`` by killing invocations.

    ``invocations`` keeps every invocation it started (for tests and the simulator's metrics).
    """

    def __init__(self, spec: PlatformSpec | str = "unlimited", *, clock: Clock | None = None) -> None:
        self.spec = platform_spec(spec)
        self.clock: Clock = clock or SystemClock()
        self.invocations: list[Invocation] = []
        self.keep_history = True

    def start_invocation(self) -> Invocation:
        now = self.clock.now()
        limit = self.spec.max_duration_s
        invocation = Invocation(
            clock=self.clock,
            started_at=now,
            deadline=None if limit is None else now + limit,
            platform=self.spec.name,
        )
        invocation.arm(now)
        if self.keep_history:
            self.invocations.append(invocation)
        return invocation

    def __repr__(self) -> str:
        return f"LocalPlatform({self.spec.name!r}, max_duration_s={self.spec.max_duration_s})"
