"""The Vercel platform: invocations on Vercel's Python runtime, with ``wait_until`` and the real deadline.

On Vercel an invocation is the function's handling of one request; work registered with
``vercel.functions.wait_until`` keeps the function alive after the response, up to its maximum duration, and
the runtime then freezes or kills it. :class:`VercelPlatform` gives the API the same
:class:`~syncsim.platforms.invocation.Invocation` it gets locally, wired to those two runtime hooks:

- every background task is also handed to ``vercel.functions.wait_until``, so Vercel waits for it;
- the deadline is ``vercel.functions.get_deadline()`` when the runtime provides it, else
  ``$VERCEL_FUNCTION_MAX_DURATION`` seconds from the start, else the preset's limit (``$SYNCSIM_PLATFORM``,
  default ``hobby``). The local kill is armed at that deadline too: nothing is written after it, as on Vercel.

The ``vercel`` package is imported lazily: ``pip install vercel`` where this runs (Vercel), not everywhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncsim.clock import Clock, SystemClock
from syncsim.errors import ConfigError
from syncsim.platforms.invocation import Invocation
from syncsim.platforms.spec import PlatformSpec, platform_spec

__all__ = [
    "MAX_DURATION_ENV",
    "PLATFORM_ENV",
    "STRATEGY_ENV",
    "VercelFunctions",
    "VercelInvocation",
    "VercelPlatform",
    "load_vercel_functions",
]

#: The function's configured maximum duration in seconds, when the runtime cannot tell the deadline itself.
MAX_DURATION_ENV = "VERCEL_FUNCTION_MAX_DURATION"
#: Which preset's limits describe this deployment (``hobby``, ``pro``, ``hobby-fluid``, ``pro-fluid``).
PLATFORM_ENV = "SYNCSIM_PLATFORM"
#: Which strategy the deployment runs (``waituntil`` or ``resumable``).
STRATEGY_ENV = "SYNCSIM_STRATEGY"


@dataclass(frozen=True, slots=True)
class VercelFunctions:
    """The two runtime hooks syncsim uses (from ``vercel.functions``, or injected by tests)."""

    wait_until: Callable[[Awaitable[Any]], None]
    get_deadline: Callable[[], datetime | None] | None = None


def load_vercel_functions() -> VercelFunctions:
    """``vercel.functions.wait_until`` (and ``get_deadline`` where the package has it), or a ConfigError."""
    try:
        from vercel import functions  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ConfigError("the Vercel platform needs the vercel package: pip install vercel") from None
    wait_until = getattr(functions, "wait_until", None)
    if not callable(wait_until):
        raise ConfigError("vercel.functions has no wait_until: pip install --upgrade vercel")
    get_deadline = getattr(functions, "get_deadline", None)
    return VercelFunctions(wait_until=wait_until, get_deadline=get_deadline if callable(get_deadline) else None)


@dataclass(eq=False)
class VercelInvocation(Invocation):
    """An :class:`Invocation` whose background tasks Vercel's runtime also waits for."""

    runtime_wait_until: Callable[[Awaitable[Any]], None] | None = None

    def wait_until(self, work: Awaitable[Any], *, label: str = "background work") -> asyncio.Task[Any]:
        task = super().wait_until(work, label=label)
        if self.runtime_wait_until is not None:
            # The task, not the coroutine: it is already running, and vercel closes bare coroutines when it
            # has no request context (outside Vercel), which would silently drop the work.
            self.runtime_wait_until(task)
        return task


class VercelPlatform:
    """The :class:`~syncsim.platforms.invocation.Platform` protocol on Vercel's Python runtime.

    ``spec`` names the plan (its limit is the last-resort deadline); ``functions`` replaces the runtime hooks
    (tests, or a runtime that exposes them elsewhere).
    """

    def __init__(
        self,
        spec: PlatformSpec | str | None = None,
        *,
        clock: Clock | None = None,
        functions: VercelFunctions | None = None,
    ) -> None:
        self.spec = platform_spec(spec or os.environ.get(PLATFORM_ENV) or "hobby")
        self.clock: Clock = clock or SystemClock()
        self.functions = functions or load_vercel_functions()

    def _deadline(self, now: float) -> float | None:
        if self.functions.get_deadline is not None:
            deadline = self.functions.get_deadline()
            if deadline is not None:
                return deadline.timestamp()
        configured = os.environ.get(MAX_DURATION_ENV)
        if configured:
            try:
                seconds = float(configured)
            except ValueError:
                raise ConfigError(f"{MAX_DURATION_ENV} must be a number of seconds, got {configured!r}") from None
            if seconds > 0:
                return now + seconds
        limit = self.spec.max_duration_s
        return None if limit is None else now + limit

    def start_invocation(self) -> Invocation:
        now = self.clock.now()
        invocation = VercelInvocation(
            clock=self.clock,
            started_at=now,
            deadline=self._deadline(now),
            platform=f"vercel:{self.spec.name}",
            runtime_wait_until=self.functions.wait_until,
        )
        invocation.arm()
        return invocation

    def __repr__(self) -> str:
        return f"VercelPlatform({self.spec.name!r})"
