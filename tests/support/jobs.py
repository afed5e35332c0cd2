"""Waiting on a job's row from a test while another process works on it. (No tests here.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from syncsim.jobs.model import Job
from syncsim.stores import Store

__all__ = ["wait_for_job"]


async def wait_for_job(
    store: Store,
    job_id: uuid.UUID,
    ok: Callable[[Job], bool],
    *,
    timeout_s: float,
    what: str = "the job",
    every_s: float = 0.02,
    context: Callable[[], str] = lambda: "",
) -> Job:
    """Read the job's row every ``every_s`` seconds until ``ok(row)``; after ``timeout_s`` seconds, fail with the
    last row seen and ``context()`` (a server's log, say)."""
    give_up = time.monotonic() + timeout_s
    while True:
        job = await store.get_job(job_id)
        assert job is not None, f"job {job_id} is not in the store"
        if ok(job):
            return job
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last row: {job}\n{context()}")
        await asyncio.sleep(every_s)
