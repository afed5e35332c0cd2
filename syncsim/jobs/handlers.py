"""Job handlers by type: the :class:`HandlerRegistry`, and the small built-in types ``demo`` (steps,
checkpoints, scripted failures) and ``noop`` (measures the queue itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from syncsim.errors import InvalidInput, RetryableError

if TYPE_CHECKING:
    from syncsim.jobs.runner import JobContext

__all__ = [
    "Handler",
    "HandlerRegistry",
    "demo_handler",
    "noop_handler",
    "register_builtin_handlers",
]

#: A job handler: runs one job (one attempt) and returns its result document.
Handler = Callable[["JobContext"], Awaitable[dict[str, Any]]]


class HandlerRegistry:
    """Job handlers by job type."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, job_type: str, handler: Handler) -> None:
        self._handlers[job_type] = handler

    def get(self, job_type: str) -> Handler:
        try:
            return self._handlers[job_type]
        except KeyError:
            raise InvalidInput(
                f"unknown job type {job_type!r}; registered: {', '.join(sorted(self._handlers)) or 'none'}"
            ) from None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._handlers

    @property
    def types(self) -> list[str]:
        return sorted(self._handlers)


async def demo_handler(ctx: JobContext) -> dict[str, Any]:
    """``payload = {"steps": 3, "step_s": 0.1, "fail_attempts": 0}``.

    Does ``steps`` steps of ``step_s`` seconds each, checkpointing after every step and resuming from the
    checkpoint; fails with a retryable error on its first ``fail_attempts`` attempts.
    """
    steps = ctx.payload.get("steps", 3)
    step_s = ctx.payload.get("step_s", 0.1)
    fail_attempts = ctx.payload.get("fail_attempts", 0)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (steps, step_s, fail_attempts)):
        raise InvalidInput("demo payload fields steps, step_s, fail_attempts must be numbers")
    if ctx.job.attempts <= fail_attempts:
        raise RetryableError(f"scripted demo failure on attempt {ctx.job.attempts}")
    done = int(ctx.progress.get("steps_done", 0))
    while done < steps:
        ctx.ensure_time(step_s)
        await ctx.clock.sleep(step_s)
        done += 1
        await ctx.checkpoint({"steps_done": done})
    return {"steps_done": done}


async def noop_handler(ctx: JobContext) -> dict[str, Any]:
    """Does nothing: measures the queue itself."""
    return {}


def register_builtin_handlers(registry: HandlerRegistry) -> HandlerRegistry:
    registry.register("demo", demo_handler)
    registry.register("noop", noop_handler)
    return registry
