"""asyncio helpers that more than one part of syncsim needs."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

__all__ = ["gather_or_cancel"]


async def gather_or_cancel(calls: Sequence[Coroutine[Any, Any, Any]]) -> None:
    """Run ``calls`` at once; if one fails, cancel the others, wait for them, and raise the first failure (not
    an ExceptionGroup: a rate limit or the deadline must reach the runner as itself). A bare ``gather`` would
    leave the others running, and their own failures unretrieved (logged as such at shutdown)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
