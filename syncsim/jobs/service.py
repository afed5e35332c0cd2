"""The job-service interface of the design: the API talks to this, never to the platform or the runner.

``submit`` writes the row and hands the work to the invocation's ``wait_until``; ``status`` reads the row and,
under the ``resumable`` strategy, continues a due job in the polling request's invocation. Swapping the
platform (local, Vercel, simulated) or the strategy changes nothing above this class.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

from syncsim import defaults
from syncsim.clock import to_datetime
from syncsim.errors import InvalidInput
from syncsim.jobs.model import Job, JobStatus, parse_user_id
from syncsim.jobs.runner import ContinueSummary, JobRunner
from syncsim.platforms import Invocation

__all__ = ["JobService"]


class JobService:
    """Submit jobs, report their status, and keep them moving within the platform's invocations."""

    def __init__(
        self,
        runner: JobRunner,
        *,
        max_background_jobs: int | None = None,
        tick_lookahead_s: float = defaults.TICK_LOOKAHEAD_S,
    ) -> None:
        """``max_background_jobs`` bounds the jobs this process runs at once in the background (``None``: no
        bound). One server process shares its CPU between answering requests and syncing; without a bound, a
        burst of syncs (each page is parsing and writing) starves the requests. On a serverless platform each
        invocation is its own instance and no bound is needed; the simulator models that. A tick waits for a job
        due within ``tick_lookahead_s`` (:data:`~syncsim.defaults.TICK_LOOKAHEAD_S`).
        """
        if max_background_jobs is not None and max_background_jobs < 1:
            raise InvalidInput(f"max_background_jobs must be >= 1 or None, got {max_background_jobs!r}")
        if not 0 <= tick_lookahead_s < 60:
            raise InvalidInput(f"tick_lookahead_s must be at least 0 and under a minute, got {tick_lookahead_s!r}")
        self.runner = runner
        self.max_background_jobs = max_background_jobs
        self.tick_lookahead_s = tick_lookahead_s
        self._slots: asyncio.Semaphore | None = None

    @property
    def strategy(self) -> str:
        return self.runner.strategy.name

    async def submit(
        self,
        user_id: uuid.UUID | str,
        payload: object = None,
        *,
        invocation: Invocation,
        type: str = defaults.JOB_TYPE,
        max_attempts: int = defaults.MAX_ATTEMPTS,
    ) -> tuple[Job, bool]:
        """Write the job (or find the user's active one) and start it in the background; ``(job, created)``."""
        job, created = await self.runner.submit(user_id, payload, type=type, max_attempts=max_attempts)
        if created or self._continues(job):
            self.start_in_background(job.id, invocation)
        return job, created

    async def status(
        self, job_id: uuid.UUID | str, *, user_id: uuid.UUID | str, invocation: Invocation | None = None
    ) -> Job | None:
        """The user's job (``None`` for an unknown job or another user's); may continue a due job.

        A due job whose type this runner holds back (a shared wait: the app-wide rate limit is spent) is shown
        with that wait's end as its next attempt, so that its client waits for it rather than poll for a turn
        that cannot come sooner; nothing is started for it."""
        job = await self.runner.get(job_id, user_id=user_id)
        if job is None:
            return None
        held = self.runner.paused_until.get(job.type, 0.0)
        if held > self.runner.clock.now() and job.status is JobStatus.PENDING and self.runner.is_due(job):
            return job.evolve(next_attempt_at=to_datetime(held))
        if invocation is not None and self._continues(job):
            self.start_in_background(job.id, invocation)
        return job

    async def list(self, user_id: uuid.UUID | str, *, limit: int = defaults.LIST_LIMIT) -> list[Job]:
        return await self.runner.store.list_jobs(user_id=parse_user_id(user_id), limit=limit)

    async def cancel(self, job_id: uuid.UUID, *, user_id: uuid.UUID | str, reason: str) -> tuple[Job | None, bool]:
        """End the user's pending or running job as ``failed`` with ``reason``; ``(job as stored, cancelled)``.

        ``(None, False)`` for an unknown job or another user's; ``(job, False)`` when it was already final. A
        runner holding the job loses its lease: its later checkpoints and its result change nothing.
        """
        uid = parse_user_id(user_id)
        cancelled = await self.runner.store.cancel_job(job_id, user_id=uid, reason=reason, now=self.runner.clock.now())
        return await self.runner.get(job_id, user_id=uid), cancelled

    def _continues(self, job: Job) -> bool:
        strategy = self.runner.strategy
        return not strategy.uses_worker and strategy.continue_on_poll and self.runner.is_due(job)

    def start_in_background(self, job_id: uuid.UUID, invocation: Invocation, **options: Any) -> None:
        """Hand the work a request starts to its invocation's ``wait_until``: under ``waituntil`` the job itself;
        under ``resumable`` the next due job in the store's fair order (the request's own when nothing is due
        before it: see :meth:`JobRunner.continue_due`), so that no request jumps the queue of a scarce budget;
        under ``worker`` nothing (a worker claims it)."""
        strategy = self.runner.strategy
        if strategy.uses_worker:
            return
        if strategy.continue_on_poll:
            work: Awaitable[Any] = self.runner.continue_due(invocation, max_jobs=1)
            label = f"continue due jobs (for job {job_id})"
        else:
            work = self.runner.run_job(job_id, invocation=invocation, **options)
            label = f"job {job_id}"
        invocation.wait_until(work if self.max_background_jobs is None else self._in_slot(work), label=label)

    async def tick(self, invocation: Invocation, *, concurrency: int = defaults.TICK_CONCURRENCY) -> dict[str, Any]:
        """A scheduled invocation's work: reclaim expired leases, continue due jobs under ``resumable`` rules until
        the invocation's deadline margin, and report. The summary: jobs ``continued``, ``completed`` and ``failed``
        by this tick, jobs ``reclaimed``, jobs ``still_due`` (counted up to 1,000), ``next_due_at`` (ISO 8601
        UTC, the next pending job not due yet) and ``paused``: the job types that wait for a shared cause (a spent
        rate limit, Strava down), each with its end and its reason, so that a deployment's logs say why nothing
        moves.

        Most ticks find nothing due: they count first and continue only when something is, so such a tick costs
        two statements (reclaim, count) rather than a claim by each of its ``concurrency`` loops as well. A job due
        within ``tick_lookahead_s`` (and the deadline margin) is waited for: a scheduler fires on the clock, so
        right at a rate-limit window's reset, and the jobs that window held back come due a moment later."""
        runner = self.runner
        clock = runner.clock
        reclaimed = await runner.store.reclaim_expired(now=clock.now())
        due, next_due = await runner.store.due_summary(now=clock.now(), limit=1000)
        summary = ContinueSummary()
        while True:
            if due:
                more = await runner.continue_due(invocation, concurrency=concurrency)
                summary.continued += more.continued
                summary.completed += more.completed
                summary.failed += more.failed
                if not more.continued:  # none claimable here: a type paused by a shared wait, or no time left
                    break
            elif next_due is not None and self._can_wait_for(next_due, invocation):
                await clock.sleep(next_due - clock.now())
            else:
                break
            due, next_due = await runner.store.due_summary(now=clock.now(), limit=1000)
        return {
            "continued": summary.continued,
            "completed": summary.completed,
            "failed": summary.failed,
            "reclaimed": reclaimed,
            "stillDue": due,
            "nextDueAt": None if next_due is None else to_datetime(next_due).isoformat(),
            "paused": [
                {"type": p.type, "until": to_datetime(p.until).isoformat(), "reason": p.reason}
                for p in await runner.store.type_pauses(now=runner.clock.now())
            ],
        }

    def _can_wait_for(self, due_at: float, invocation: Invocation) -> bool:
        """Whether a tick may wait for a job due at ``due_at``: within the lookahead, and with time to run it."""
        wait = due_at - self.runner.clock.now()
        room = invocation.time_left() - self.runner.deadline_margin_s
        return wait <= self.tick_lookahead_s and wait < room

    async def _in_slot(self, work: Awaitable[Any]) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_background_jobs or 1)
        async with self._slots:
            return await work
