"""Invocations: one request's lifetime on a platform, its background work, and its kill at the deadline.

An *invocation* starts when a request arrives; its deadline is start + the platform's maximum duration. Work
handed to :meth:`Invocation.wait_until` runs after the response is sent, until it finishes or the deadline
hits. At the deadline the invocation is **killed**, as Vercel does: its tasks are cancelled and every store it
was given (:func:`guard_store`) refuses all further calls, so nothing it does afterwards (no ``finally``
clean-up) reaches the store. The API and the simulator know platforms only through :class:`Platform`.

Background work runs after its response was sent, so nobody is left to see it fail: a failure is logged once,
as ``syncsim.platforms``, with the label the work was handed over with (a job id, a webhook event), never with
its arguments.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncsim.clock import Clock
from syncsim.errors import InvocationKilled, SyncsimError
from syncsim.platforms.spec import PlatformSpec

__all__ = ["Invocation", "Platform", "guard_store"]

log = logging.getLogger("syncsim.platforms")

_DEADLINE_REACHED = "reached the platform's time limit"

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
    #: What each background task is, for the log line if it fails.
    _labels: dict[asyncio.Task[Any], str] = field(default_factory=dict)
    #: The task answering the request (see :meth:`serve`): the kill cancels it too.
    _handler: asyncio.Task[Any] | None = None
    #: Whether the kill cancelled the handler (so its CancelledError is the deadline, not a shutdown).
    handler_cancelled: bool = False
    _on_end: list[Callable[[Invocation], None]] = field(default_factory=list)
    #: The loop timer that kills the invocation at its deadline (see :meth:`arm`).
    _timer: asyncio.TimerHandle | None = None

    def time_left(self) -> float:
        """Seconds until the deadline (``inf`` without one)."""
        return math.inf if self.deadline is None else self.deadline - self.clock.now()

    def check_alive(self) -> None:
        if self.killed:
            raise InvocationKilled(f"invocation {self.id} was killed: {self.kill_reason}")

    def wait_until(self, work: Awaitable[Any], *, label: str = "background work") -> asyncio.Task[Any]:
        """Run ``work`` after the response, within this invocation's deadline (Vercel's ``waitUntil``).

        ``label`` names the work in the log line written if it fails (e.g. ``"job <id>"``): no secrets."""
        self.check_alive()
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        self._labels[task] = label
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        label = self._labels.pop(task, "background work")
        if not task.cancelled():
            exc = task.exception()  # retrieved, so a failed task does not warn again at garbage collection
            if exc is not None:
                self._log_failure(label, exc)
        if not self._tasks and self.responded and self.ended_at is None:
            self._end()

    def _log_failure(self, label: str, exc: BaseException) -> None:
        """Once per failed background task. The kill is the platform's doing, not a failure; syncsim's own
        errors carry a one-line message without secrets; anything else is a bug and gets its traceback."""
        if isinstance(exc, InvocationKilled):
            return
        if isinstance(exc, SyncsimError):
            text = " ".join(str(exc).split())
            log.error("invocation %s: %s failed: %s: %s", self.id, label, type(exc).__name__, text)
        else:
            log.error("invocation %s: %s failed: %s", self.id, label, type(exc).__name__, exc_info=exc)

    def arm(self, now: float | None = None) -> None:
        """Schedule the kill at the deadline on the running loop; ``now``: the clock's reading, if the caller
        has just taken it."""
        if self.deadline is None:
            return
        if now is None:
            now = self.clock.now()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, self.deadline - now), self.kill, _DEADLINE_REACHED)

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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
