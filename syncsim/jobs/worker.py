"""A long-running worker: claims due jobs, runs them with leases, reaps expired ones.

On SIGTERM it stops claiming, lets running jobs finish for ``grace_s`` seconds, then cancels the rest, gives them
back (``pending``, due at once, continued from their last checkpoint by any runner, no attempt spent and no crash
counted) and exits; if the store cannot take them back, their leases lapse and they are reclaimed, never lost. With
``burst=True`` it exits once no job is pending or running (waiting for backoffs and expired leases first), like
rq's burst mode.

An idle worker looks for work once per ``poll_s``, whatever its ``concurrency``: one idle claim loop looks, the
others wait until it finds a job, then wake one by one as long as each finds one. N loops each looking on their
own put N claim queries per ``poll_s`` on the store of a worker with nothing to do (on a free-tier database, its
whole load, for no job), while a new job is still found within ``poll_s`` either way.

A failing store does not stop it: a claim loop whose store fails (down, restarting, unreachable) backs off and
tries again for as long as the outage lasts, and the worker logs one line when the store fails and one when it
answers again. A job whose run the store failed is given back once it answers, rather than left ``running``.
Any other error that ends a claim loop is a bug: the worker logs it at once, stops as on SIGTERM, and ``run()``
raises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import signal
from collections import deque
from dataclasses import dataclass
from typing import Any

from syncsim import defaults
from syncsim.errors import InvalidInput, InvocationKilled, StoreError
from syncsim.jobs.model import Job, JobStatus
from syncsim.jobs.runner import JobRunner
from syncsim.retry import describe

__all__ = ["Worker", "WorkerStats"]

log = logging.getLogger("syncsim.worker")

#: After finding nothing to claim, look again this soon, then back off (doubling) to ``poll_s``. A burst
#: worker waiting for the last jobs of other workers thus exits within about the time they still take,
#: instead of up to a whole ``poll_s`` later; an idle worker still settles at one look per ``poll_s``.
IDLE_POLL_FIRST_S = 0.01
#: Once the grace period is over, the cancellation of a claim loop still running is repeated this often until
#: the loop ends: one cancellation can be lost (see ``JobRunner._keep_lease``), and a lost one must not keep
#: the worker alive.
CANCEL_REPEAT_S = 0.1
#: How long a stopping worker tries to give its unfinished jobs back (seconds): past it (a store still down), their
#: leases lapse and they are reclaimed, as any crashed worker's are.
GIVE_BACK_ON_STOP_S = 5.0
#: What a job given back says (its ``error`` while it waits; cleared when it completes).
STOPPED_REASON = "the worker stopped before the run finished; continued from its last checkpoint"
OUTAGE_REASON = "the store failed during the run; continued from its last checkpoint"


@dataclass
class WorkerStats:
    jobs_run: int = 0
    completed: int = 0
    failed: int = 0
    rescheduled: int = 0
    #: Runs whose job another runner claimed meanwhile (this one's lease lapsed: a pause, a lost store): what
    #: became of the job is that runner's to count.
    taken_over: int = 0
    #: Calls to the store that failed (each claim loop's, while the store was down or refused them).
    store_errors: int = 0
    #: Jobs whose run ended without the runner putting them back (the worker stopped past its grace, or the store
    #: failed as the runner tried), given back as ``pending`` here: continued from their checkpoint, no attempt
    #: spent, no crash counted, and at once rather than when their lease lapses.
    given_back: int = 0


class Worker:
    """Runs ``concurrency`` claim loops over one :class:`JobRunner`."""

    def __init__(
        self,
        runner: JobRunner,
        *,
        concurrency: int = 1,
        burst: bool = False,
        poll_s: float = defaults.WORKER_POLL_S,
        grace_s: float = defaults.WORKER_GRACE_S,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInput(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if not 0 < poll_s < math.inf:  # 0 would make an idle worker spin on its store
            raise InvalidInput(f"poll_s must be a positive number of seconds, got {poll_s!r}")
        if not 0 <= grace_s < math.inf:
            raise InvalidInput(f"grace_s must be a number of seconds >= 0, got {grace_s!r}")
        self.runner = runner
        # A job's run paused for its store is an outage as much as a failed claim: the same one line reports it.
        runner.on_store_unavailable = self._store_failed
        self.concurrency = concurrency
        self.burst = burst
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.stats = WorkerStats()
        self._stopping = asyncio.Event()
        self._busy = 0
        #: Whether an idle claim loop is looking for work (pausing between claims); the other idle loops wait in
        #: ``_idle`` until a claim finds a job.
        self._looking = False
        self._idle: deque[asyncio.Future[None]] = deque()
        #: The looking loop's pause: doubles after each claim that finds nothing, back to the first after one
        #: that finds a job.
        self._idle_s = min(IDLE_POLL_FIRST_S, poll_s)
        #: When the current store outage began (the runner's clock), ``None`` while the store answers.
        self._outage_since: float | None = None
        #: When the store last answered again after an outage.
        self._answered_at = float("-inf")
        #: Jobs claimed by runs that ended without the runner putting them back, to give back (:meth:`_give_back`).
        self._stranded: list[Job] = []
        self._giving_back = asyncio.Lock()

    def stop(self) -> None:
        """Stop claiming new jobs (what SIGTERM does)."""
        self._stopping.set()
        while self._idle:
            self._wake_one()  # the loops waiting for work end

    async def run(self, *, install_signal_handlers: bool = False) -> WorkerStats:
        """Run the claim loops until :meth:`stop` (or, in burst mode, until no work remains); return the stats.

        If a claim loop ends in an error, the worker stops as ``stop()`` makes it, and the error is raised once
        the other loops have ended (within ``grace_s`` seconds).
        """
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        loops = [asyncio.ensure_future(self._claim_loop()) for _ in range(self.concurrency)]
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        failure: BaseException | None = None
        try:
            # Watch the stop event and every loop together, so that a loop that dies stops the worker at once
            # and a stop is never missed while the other loops are still running jobs.
            running = set(loops)
            while running and not self._stopping.is_set():
                done, _ = await asyncio.wait([*running, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop_wait}:
                    running.discard(task)
                    failure = failure or self._loop_ended(task)
            # Let running jobs finish within the grace period; the rest are cut off, and given back below.
            ending = set(running)
            if running:
                _, running = await asyncio.wait(running, timeout=self.grace_s)
            while running:
                for task in running:
                    task.cancel()
                _, running = await asyncio.wait(running, timeout=CANCEL_REPEAT_S)
            for task in ending:
                failure = failure or self._loop_ended(task)
            if self._stranded:
                with contextlib.suppress(TimeoutError):  # a store still down: their leases lapse, as before
                    async with self._giving_back:
                        await asyncio.wait_for(self._give_back(STOPPED_REASON), timeout=GIVE_BACK_ON_STOP_S)
        finally:
            stop_wait.cancel()
            for task in loops:
                task.cancel()  # a no-op for ended loops; ends them if run() itself was cancelled
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
        if failure is not None:
            raise failure
        return self.stats

    def _loop_ended(self, task: asyncio.Future[Any]) -> BaseException | None:
        """The error that ended a claim loop (logged, and the worker stopped), or ``None`` if it ended well."""
        if task.cancelled():
            if self._stopping.is_set():
                return None  # cut off at the end of the grace period
            error: BaseException = RuntimeError("a claim loop was cancelled while the worker was running")
        else:
            exception = task.exception()
            if exception is None:
                return None
            error = exception
        self.stop()
        if not isinstance(error, InvocationKilled):  # the worker's own process was killed: that is no news
            log.error("worker %s: a claim loop failed, stopping: %s", self.runner.worker_id, describe(error))
        return error

    async def _claim_loop(self) -> None:
        retry_s = defaults.WORKER_STORE_RETRY_FIRST_S
        while not self._stopping.is_set():
            # Before any claim, which would reclaim a stranded job's lapsed lease as a crash: give it back. The
            # other loops wait for that (an uncontended lock takes no turn of the event loop).
            async with self._giving_back:
                given = await self._give_back(OUTAGE_REASON) if self._stranded else True
            if not given:
                await self._pause(retry_s)
                retry_s = min(retry_s * 2, defaults.WORKER_STORE_RETRY_MAX_S)
                continue
            called_at = self.runner.clock.now()
            types = self.runner.claimable_types(called_at)
            pause_ends_at = None if types else self.runner.pause_ends_at()
            if pause_ends_at is not None:  # every type waits for a rate-limit window: claim nothing before it ends
                await self._pause(pause_ends_at - called_at)
                continue
            self._busy += 1
            claimed: list[Job] = []
            try:
                job = await self.runner.run_next(on_claim=functools.partial(self._claimed, into=claimed), types=types)
            except StoreError as exc:
                # A run the store failed (the runner could not put its job back): the job is given back once the
                # store answers, instead of staying `running` until its lease lapses and counting a crash.
                self._stranded.extend(claimed)
                self._store_failed(exc, called_at)
                await self._pause(retry_s)
                retry_s = min(retry_s * 2, defaults.WORKER_STORE_RETRY_MAX_S)
                continue
            except asyncio.CancelledError:
                self._stranded.extend(claimed)  # stopped past the grace period: given back by run()
                raise
            finally:
                self._busy -= 1
            retry_s = defaults.WORKER_STORE_RETRY_FIRST_S
            if job is not None:
                self.stats.jobs_run += 1
                if claimed and job.runs > claimed[0].runs:  # claimed again by another runner since this run's claim
                    self.stats.taken_over += 1
                elif job.status is JobStatus.COMPLETED:
                    self.stats.completed += 1
                elif job.status is JobStatus.FAILED:
                    self.stats.failed += 1
                else:
                    self.stats.rescheduled += 1
                continue
            if self.burst and self._busy == 0:
                called_at = self.runner.clock.now()
                try:
                    remains = await self._work_remains()
                except StoreError as exc:
                    self._store_failed(exc, called_at)
                    await self._pause(retry_s)
                    continue
                self._store_answered()
                if not remains:
                    self.stop()
                    return
            await self._wait_for_work()

    async def _give_back(self, reason: str) -> bool:
        """Put the stranded jobs back as ``pending``, due now, where this worker's run still holds the lease
        (``reschedule_job`` changes nothing otherwise: another runner has taken the job, or it ended); whether
        the store took them all (``False``: it failed, and the rest wait for the next try)."""
        store, clock = self.runner.store, self.runner.clock
        while self._stranded:
            job = self._stranded[0]
            now = clock.now()
            try:
                if job.locked_by and await store.reschedule_job(
                    job.id, worker_id=job.locked_by, at=now, reason=reason, now=now
                ):
                    self.stats.given_back += 1
            except StoreError as exc:
                self._store_failed(exc, now)
                return False
            self._stranded.pop(0)
        self._store_answered()
        return True

    def _claimed(self, job: Job | None, *, into: list[Job]) -> None:
        """A claim answered: the store works; a job found (kept in ``into``) means more may be due, so one waiting
        loop looks too."""
        self._store_answered()
        if job is not None:
            into.append(job)
            self._idle_s = min(IDLE_POLL_FIRST_S, self.poll_s)
            self._wake_one()

    async def _wait_for_work(self) -> None:
        """After a claim that found nothing: look again after the idle pause, or, if another loop is looking
        already, wait until a claim finds a job."""
        if self._looking:
            waiting = asyncio.get_running_loop().create_future()
            self._idle.append(waiting)
            try:
                await waiting
            finally:
                with contextlib.suppress(ValueError):  # still there if cancelled while waiting (the worker ends)
                    self._idle.remove(waiting)
            return
        self._looking = True
        try:
            await self._pause(self._idle_s)
        finally:
            self._looking = False
        self._idle_s = min(self._idle_s * 2, self.poll_s)

    def _wake_one(self) -> None:
        while self._idle:
            waiting = self._idle.popleft()
            if not waiting.done():  # a cancelled loop's future is done already
                waiting.set_result(None)
                return

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the worker is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _store_failed(self, error: StoreError, called_at: float | None = None) -> None:
        """Count a failed call made at ``called_at`` (default: now); the first of an outage is logged, and the
        outage counted from now (a job's run may have gone on for long before the call that failed). A call made
        before the store answered again belongs to the outage that has just ended: it starts no new one."""
        now = self.runner.clock.now()
        self.stats.store_errors += 1
        if self._outage_since is None and (now if called_at is None else called_at) >= self._answered_at:
            self._outage_since = now
            log.warning(
                "worker %s: the store failed, claiming paused and retried until it answers: %s",
                self.runner.worker_id,
                describe(error),
            )

    def _store_answered(self) -> None:
        if self._outage_since is not None:
            self._answered_at = self.runner.clock.now()
            log.warning(
                "worker %s: the store answers again after %.1f s, claiming resumed",
                self.runner.worker_id,
                self._answered_at - self._outage_since,
            )
            self._outage_since = None

    async def _work_remains(self) -> bool:
        store = self.runner.store
        for status in (JobStatus.PENDING, JobStatus.RUNNING):
            if await store.list_jobs(status=status, limit=1):
                return True
        return False
