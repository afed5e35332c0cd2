"""A long-running worker: claims due jobs, runs them with leases, reaps expired ones.

On SIGTERM it stops claiming, lets running jobs finish for ``grace_s`` seconds, then exits; a job it could not
finish keeps its lease until expiry and is then reclaimed by any runner — never lost. With ``burst=True`` it
exits once no job is pending or running (waiting for backoffs and expired leases first), like rq's burst mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass

from syncsim import defaults
from syncsim.jobs.model import JobStatus
from syncsim.jobs.runner import JobRunner

__all__ = ["Worker", "WorkerStats"]

#: After finding nothing to claim, look again this soon, then back off (doubling) to ``poll_s``. A burst
#: worker waiting for the last jobs of other workers thus exits within about the time they still take,
#: instead of up to a whole ``poll_s`` later; an idle worker still settles at one look per ``poll_s``.
IDLE_POLL_FIRST_S = 0.01


@dataclass
class WorkerStats:
    jobs_run: int = 0
    completed: int = 0
    failed: int = 0
    rescheduled: int = 0


class Worker:
    """Runs ``concurrency`` claim loops over one :class:`JobRunner`."""

    def __init__(
        self,
        runner: JobRunner,
        *,
        concurrency: int = 1,
        burst: bool = False,
        poll_s: float = defaults.WORKER_POLL_S,
        grace_s: float = 5.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.runner = runner
        self.concurrency = concurrency
        self.burst = burst
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.stats = WorkerStats()
        self._stopping = asyncio.Event()
        self._busy = 0

    def stop(self) -> None:
        """Stop claiming new jobs (what SIGTERM does)."""
        self._stopping.set()

    async def run(self, *, install_signal_handlers: bool = False) -> WorkerStats:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        loops = [asyncio.ensure_future(self._claim_loop()) for _ in range(self.concurrency)]
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([*loops, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if stop_wait in done:
                # Let running jobs finish within the grace period; the rest lapse and are reclaimed later.
                _, pending = await asyncio.wait(loops, timeout=self.grace_s)
                for task in pending:
                    task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for task in loops:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop_wait.cancel()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
        return self.stats

    async def _claim_loop(self) -> None:
        idle_s = min(IDLE_POLL_FIRST_S, self.poll_s)
        while not self._stopping.is_set():
            self._busy += 1
            try:
                job = await self.runner.run_next()
            finally:
                self._busy -= 1
            if job is not None:
                idle_s = min(IDLE_POLL_FIRST_S, self.poll_s)
                self.stats.jobs_run += 1
                if job.status is JobStatus.COMPLETED:
                    self.stats.completed += 1
                elif job.status is JobStatus.FAILED:
                    self.stats.failed += 1
                else:
                    self.stats.rescheduled += 1
                continue
            if self.burst and self._busy == 0 and not await self._work_remains():
                self._stopping.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=idle_s)
            idle_s = min(idle_s * 2, self.poll_s)

    async def _work_remains(self) -> bool:
        store = self.runner.store
        for status in (JobStatus.PENDING, JobStatus.RUNNING):
            if await store.list_jobs(status=status, limit=1):
                return True
        return False
