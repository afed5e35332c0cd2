"""The job runner: submit, claim with a lease, run within the invocation's deadline, retry, recover.

Three strategies (design.md, "Platform and strategies") share this one code path and differ only in values:

- ``waituntil`` — the approved design: the invocation that accepted the request runs the whole job; a failure
  is retried inline (sleep the backoff, then run again inside the same invocation). A killed invocation leaves
  the row ``running`` until its lease expires.
- ``resumable`` — checkpoints after every step, stops cleanly before the deadline (``OutOfTime``), and is
  continued by a new invocation (the client's next status poll, or a self-chained request); backoff is a
  stored next-attempt time, not a sleep.
- ``worker`` — a long-running worker with no time limit claims due jobs (``syncsim worker``).

A running job's lease is renewed by a heartbeat and by every checkpoint. A lease that lapses is a *crash*: the
invocation or worker running the job was killed, or lost its store. The next claim reclaims the job, gives back
the attempt the crashed run had counted and counts the crash instead (``crashes``, bounded by ``max_crashes``),
so faults of the infrastructure do not use up the attempts that bound the handler's own failures. A store that
cannot be reached while the handler runs (:class:`~syncsim.errors.StoreUnavailable`) pauses the job without
spending an attempt either, and so does an outage of a service the job needs (:class:`~syncsim.errors.Outage`,
such as Strava down): every job of its type waits, except under inline retries, where nothing would continue it.
Such a shared wait (an outage, a spent app-wide rate limit) is written to the store as the type's pause, and a
runner in another process reads it before it runs a job of the type: it waits too, without learning the cause
again at the cost of a request or an attempt (:class:`~syncsim.jobs.model.TypePause`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from syncsim import defaults
from syncsim.aio import gather_or_cancel
from syncsim.clock import Clock, SystemClock, to_datetime
from syncsim.errors import InvalidInput, InvocationKilled, NoTimeToRetry, OutOfTime, StoreError, StoreUnavailable
from syncsim.jobs.handlers import HandlerRegistry
from syncsim.jobs.model import Job, JobStatus, TypePause, parse_user_id
from syncsim.platforms.invocation import Invocation, guard_store
from syncsim.retry import Fail, Retry, RetryDecision, RetryPolicy, Wait, describe
from syncsim.stores.protocol import Store

__all__ = ["STRATEGIES", "ContinueSummary", "JobContext", "JobRunner", "Strategy", "resolve_strategy"]

log = logging.getLogger("syncsim.runner")


@dataclass(frozen=True, kw_only=True, slots=True)
class Strategy:
    """How jobs are executed relative to the platform's invocations."""

    name: str
    #: Retry by sleeping inside the same invocation (True) or by a stored next-attempt time (False).
    inline_retries: bool
    #: Stop cleanly with progress saved when the deadline is near, to be continued by a new invocation.
    stop_before_deadline: bool
    #: A status poll for a due job continues it in the polling request's invocation.
    continue_on_poll: bool
    #: Jobs are run by a long-running worker, not by the request's invocation.
    uses_worker: bool = False


STRATEGIES: dict[str, Strategy] = {
    "waituntil": Strategy(name="waituntil", inline_retries=True, stop_before_deadline=False, continue_on_poll=False),
    "resumable": Strategy(name="resumable", inline_retries=False, stop_before_deadline=True, continue_on_poll=True),
    "worker": Strategy(
        name="worker",
        inline_retries=False,
        stop_before_deadline=False,
        continue_on_poll=False,
        uses_worker=True,
    ),
}


def resolve_strategy(name: str | Strategy) -> Strategy:
    """A strategy by name (``waituntil``, ``resumable``, ``worker``)."""
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name]
    except KeyError:
        raise InvalidInput(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}") from None


@dataclass(kw_only=True)
class JobContext:
    """What a handler sees: its job, a store that dies with the invocation, the clock and the deadline."""

    job: Job
    store: Store
    clock: Clock
    worker_id: str
    deadline: float | None
    strategy: Strategy
    resources: Mapping[str, Any] = field(default_factory=dict)
    on_progress: Callable[[dict[str, Any]], None] | None = None
    deadline_margin_s: float = defaults.DEADLINE_MARGIN_S
    lease_s: float = defaults.LEASE_S
    #: How many other jobs are due now, counted up to a limit (the runner's, briefly remembered); see
    #: :meth:`others_waiting`.
    waiting: Callable[[int], Awaitable[int]] | None = None
    #: How many active jobs were never served, counted up to a limit (briefly remembered); see :meth:`unserved`.
    unserved: Callable[[int], Awaitable[int]] | None = None
    #: Called when the job's first checkpoint is stored (it leaves the unserved).
    on_served: Callable[[], None] | None = None
    #: An outage of a service the job's type needs, as another process's last look found it (looks > 0), when this
    #: process has not met it itself: the handler tells its client, whose next failure is then the next look.
    outage: TypePause | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self.job.user_id

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def progress(self) -> dict[str, Any]:
        """The last checkpoint saved (empty on a first run)."""
        return self.job.progress

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock.now()

    @property
    def work_deadline(self) -> float | None:
        """When a step's outside calls (Strava's requests, their retries and rate-limit waits) must be answered by:
        under a deadline-aware strategy the deadline less the margin, left to store and checkpoint what they bring
        (as :meth:`ensure_time` leaves it); under any other, the deadline."""
        if self.deadline is None or not self.strategy.stop_before_deadline:
            return self.deadline
        return self.deadline - self.deadline_margin_s

    @property
    def answer_deadline(self) -> float | None:
        """When an outside call still waiting for its answer is given up (a Strava request's timeout is cut to end
        then): under a deadline-aware strategy, half the margin before the deadline, so the other half stores and
        checkpoints what came before it and the invocation ends on its own instead of being killed in the middle of
        the request; under any other, ``None`` (the calls' own timeouts; the platform's limit ends what they
        don't)."""
        if self.deadline is None or not self.strategy.stop_before_deadline:
            return None
        return self.deadline - self.deadline_margin_s / 2

    @property
    def rate_wait_s(self) -> float | None:
        """The longest rate-limit wait for a step's outside calls to sleep through (``None``: as long as the work
        deadline allows). Under a strategy that retries inline nothing else would continue the job, so it waits
        here; under any other the job waits in the store beyond
        :data:`~syncsim.defaults.RATE_WAIT_IN_PROCESS_S`."""
        return None if self.strategy.inline_retries else defaults.RATE_WAIT_IN_PROCESS_S

    async def others_waiting(self, limit: int) -> int:
        """How many other jobs are due and waiting for a turn (counted up to ``limit``); 0 under a strategy that
        retries inline (nothing would continue a job that gave its turn away)."""
        if self.waiting is None or self.strategy.inline_retries:
            return 0
        return await self.waiting(limit)

    async def unserved_waiting(self, limit: int) -> int:
        """How many active jobs (pending or running, this one included if it has not checkpointed yet) have not
        been served a first step, counted up to ``limit``; 0 under a strategy that retries inline."""
        if self.unserved is None or self.strategy.inline_retries:
            return 0
        return await self.unserved(limit)

    def ensure_time(self, needed_s: float = 0.0) -> None:
        """Under a deadline-aware strategy, stop (``OutOfTime``) when the next step may not finish in time."""
        if not self.strategy.stop_before_deadline or self.deadline is None:
            return
        if self.time_left() < needed_s + self.deadline_margin_s:
            raise OutOfTime("stopped before the invocation's deadline; continuing in a new one", at=self.clock.now())

    async def checkpoint(self, progress: dict[str, Any]) -> None:
        """Save progress to the job row and extend the lease by ``lease_s`` seconds from now, then tell the
        progress callback. Raises :class:`InvocationKilled` if another runner owns the job now."""
        now = self.clock.now()
        ok = await self.store.save_progress(
            self.job.id, worker_id=self.worker_id, progress=progress, now=now, lease_s=self.lease_s
        )
        if not ok:
            raise InvocationKilled(f"lost the lease on job {self.job.id}: another runner owns it now")
        if self.job.served_at is None:  # its first step is stored: it no longer counts among the unserved
            self.job = self.job.evolve(progress=progress, served_at=to_datetime(now))
            if self.on_served is not None:
                self.on_served()
        else:
            self.job = self.job.evolve(progress=progress)
        if self.on_progress is not None:
            self.on_progress(progress)


@dataclass
class ContinueSummary:
    """What :meth:`JobRunner.continue_due` did: jobs continued, and of those, completed and failed."""

    continued: int = 0
    completed: int = 0
    failed: int = 0


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    """Creates, claims, runs, retries and recovers jobs in one store.

    ``submit`` only writes the row; ``run_job`` / ``run_next`` execute within an optional
    :class:`~syncsim.platforms.invocation.Invocation` whose deadline bounds them and whose kill silences them.
    """

    def __init__(
        self,
        store: Store,
        *,
        handlers: HandlerRegistry,
        clock: Clock | None = None,
        strategy: Strategy | str = "worker",
        retry: RetryPolicy | None = None,
        lease_s: float = defaults.LEASE_S,
        rng: random.Random | None = None,
        resources: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
        deadline_margin_s: float = defaults.DEADLINE_MARGIN_S,
    ) -> None:
        if not 0 < lease_s < math.inf:  # a lease that has lapsed as it is taken lets a second runner run the job
            raise InvalidInput(f"lease_s must be a positive number of seconds, got {lease_s!r}")
        if not math.isfinite(deadline_margin_s):  # negative is allowed: a runner that overruns, for tests
            raise InvalidInput(f"deadline_margin_s must be a finite number of seconds, got {deadline_margin_s!r}")
        self.store = store
        self.handlers = handlers
        self.clock: Clock = clock or SystemClock()
        self.strategy = resolve_strategy(strategy)
        self.retry = retry or RetryPolicy()
        self.lease_s = lease_s
        self.rng = rng or random.Random()
        self.resources: dict[str, Any] = dict(resources or {})
        self.worker_id = worker_id or _default_worker_id()
        self.deadline_margin_s = deadline_margin_s
        self._runs = 0
        #: Job types none of whose jobs this runner claims before the given time (UTC epoch s): a job of that
        #: type was rescheduled for a reason every one of them shares (an app-wide rate limit), here or, as the
        #: store's pause of the type said, in another process.
        self.paused_until: dict[str, float] = {}
        #: The end of the last pause of each type that this runner wrote to the store: a stored pause that ends
        #: then is this runner's own, and tells it nothing new.
        self._paused_here: dict[str, float] = {}
        self._due = _RecentCount(self._count_due, self.clock)
        self._unserved = _RecentCount(self._count_unserved, self.clock)
        #: Told when a job's run stops for its store (the run is paused, and nothing leaves the runner): a worker
        #: reports the outage from it, as it does when a claim fails.
        self.on_store_unavailable: Callable[[StoreError], None] | None = None

    # -- submit --------------------------------------------------------------------------------------------------
    async def submit(
        self,
        user_id: uuid.UUID | str,
        payload: object = None,
        *,
        type: str = defaults.JOB_TYPE,
        max_attempts: int = defaults.MAX_ATTEMPTS,
    ) -> tuple[Job, bool]:
        """Validate and write a pending job; return ``(job, created)``. An active job of the user is returned."""
        uid = parse_user_id(user_id)
        self.handlers.get(type)
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise InvalidInput(f"payload must be a JSON object, got {payload.__class__.__name__}")
        try:
            payload_json: dict[str, Any] = orjson.loads(orjson.dumps(payload))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidInput(f"payload is not JSON-serializable: {exc}") from None
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        return await self.store.create_job(
            user_id=uid, type=type, payload=payload_json, max_attempts=max_attempts, now=self.clock.now()
        )

    # -- run -----------------------------------------------------------------------------------------------------
    def _runner_id(self) -> str:
        self._runs += 1
        return f"{self.worker_id}#{self._runs}"

    async def run_next(
        self,
        *,
        invocation: Invocation | None = None,
        job_id: uuid.UUID | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        on_claim: Callable[[Job | None], None] | None = None,
        types: Sequence[str] | None = None,
    ) -> Job | None:
        """Claim one due job (``job_id`` if given; of ``types`` if given) and run it; ``None`` when nothing was due.

        ``on_claim`` is told the claim's answer (the job, or ``None``) before the job runs: a worker learns
        from it that its store answers again after an outage. A :class:`~syncsim.errors.StoreError` that
        leaves this method means the store failed the runner: a job it had claimed keeps its lease, for the
        caller to give back once the store answers (:class:`~syncsim.jobs.worker.Worker` does), or until the
        lease lapses and it is reclaimed as a crash.
        """
        store = guard_store(self.store, invocation)
        runner_id = self._runner_id()
        job = await store.claim_job(
            worker_id=runner_id,
            now=self.clock.now(),
            lease_s=self.lease_s,
            job_id=job_id,
            types=self.handlers.types if types is None else types,
        )
        if on_claim is not None:
            on_claim(job)
        if job is None:
            return None
        try:
            return await self._execute(job, store, runner_id, invocation, on_progress)
        except InvocationKilled:
            if invocation is not None and invocation.killed:
                raise
            # This runner lost its lease (it expired and another runner took the job): stop quietly.
            return await self.store.get_job(job.id)

    async def run_job(
        self,
        job_id: uuid.UUID,
        *,
        invocation: Invocation | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Job | None:
        """Run one job if it is due; what ``wait_until`` is handed after a submit or a poll."""
        return await self.run_next(invocation=invocation, job_id=job_id, on_progress=on_progress)

    async def _execute(
        self,
        job: Job,
        store: Store,
        runner_id: str,
        invocation: Invocation | None,
        on_progress: Callable[[dict[str, Any]], None] | None,
    ) -> Job | None:
        handler = self.handlers.get(job.type)
        deadline = invocation.deadline if invocation is not None else None
        pause = None if self.strategy.inline_retries else await self._stored_pause(store, job.type)
        outage = None
        if pause is not None and not self._own(pause):
            now = self.clock.now()
            if pause.until > now:
                # Another process met a cause every job of the type shares (a spent rate limit, Strava down):
                # this one waits for it too, without running the job or spending its attempt.
                self.paused_until[job.type] = max(self.paused_until.get(job.type, 0.0), pause.until)
                await store.reschedule_job(job.id, worker_id=runner_id, at=pause.until, reason=pause.reason, now=now)
                return await store.get_job(job.id)
            if pause.looks:
                outage = pause
        while True:
            ctx = JobContext(
                job=job,
                store=store,
                clock=self.clock,
                worker_id=runner_id,
                deadline=deadline,
                strategy=self.strategy,
                resources=self.resources,
                on_progress=on_progress,
                deadline_margin_s=self.deadline_margin_s,
                lease_s=self.lease_s,
                waiting=self._due.count,
                unserved=self._unserved.count,
                on_served=self._unserved.forget,
                outage=outage,
            )
            handler_done = asyncio.Event()
            heartbeat = asyncio.ensure_future(self._keep_lease(job.id, store, runner_id, handler_done))
            decision: RetryDecision | None = None
            store_failed = False
            result: dict[str, Any] = {}
            try:
                result = await handler(ctx)
            except (InvocationKilled, asyncio.CancelledError):
                raise
            except StoreUnavailable as exc:
                # The store failed the job, not the job itself: continue soon, without spending an attempt.
                store_failed = True
                if self.on_store_unavailable is not None:
                    self.on_store_unavailable(exc)
                decision = Wait(
                    at=self.clock.now() + self.retry.delay(1, self.rng),
                    reason=f"paused while the store was unavailable: {describe(exc)}",
                )
            except Exception as exc:
                decision = self._decide(exc, job)
            finally:
                await _end_heartbeat(heartbeat, handler_done)

            now = self.clock.now()
            if pause is not None and pause.looks and pause.until <= now and not _is_outage(decision):
                # A look after a stored outage ended otherwise than by the outage: the service is up again, and a
                # process that starts later need not take its first failure for the next look.
                await self._forget_outage(store, job.type, now)
                pause = None
            if decision is None:
                if not await store.complete_job(job.id, worker_id=runner_id, result=result, now=now):
                    return await store.get_job(job.id)  # the lease was lost meanwhile: report what is stored
                # The row is now exactly this: no read-back needed.
                done_at = to_datetime(now)
                return ctx.job.evolve(
                    status=JobStatus.COMPLETED,
                    result=result,
                    error=None,
                    completed_at=done_at,
                    locked_by=None,
                    locked_until=None,
                    updated_at=done_at,
                )
            if isinstance(decision, Fail):
                await store.fail_job(job.id, worker_id=runner_id, error=decision.reason, now=now)
                return await store.get_job(job.id)
            if isinstance(decision, Wait):
                if decision.shared:  # every job of this type waits for the same thing: claim none before it
                    self.paused_until[job.type] = max(self.paused_until.get(job.type, 0.0), decision.at)
                    await self._pause_type(store, job.type, decision, now)
                await store.reschedule_job(job.id, worker_id=runner_id, at=decision.at, reason=decision.reason, now=now)
                # A job paused for its store is retried inline like a failed one (nothing else continues it
                # under inline retries); a rate-limited one waits for its window in the store.
                if not (store_failed and self.strategy.inline_retries):
                    return await store.get_job(job.id)
                retry_in = decision.at - now
            else:
                assert isinstance(decision, Retry)
                retry_in = decision.retry_in
                retry_at = now + retry_in
                await store.retry_job(job.id, worker_id=runner_id, error=decision.reason, retry_at=retry_at, now=now)
                if not self.strategy.inline_retries:
                    return await store.get_job(job.id)
            # The approved design's inline retry: sleep the backoff inside this invocation, then run again.
            await self.clock.sleep(retry_in)
            claimed = await store.claim_job(
                worker_id=runner_id, now=self.clock.now(), lease_s=self.lease_s, job_id=job.id
            )
            if claimed is None:  # someone else took it meanwhile
                return await store.get_job(job.id)
            job = claimed

    async def _stored_pause(self, store: Store, type: str) -> TypePause | None:
        """The store's pause of ``type``; ``None`` if the store cannot say (the run goes on as without one)."""
        try:
            return await store.job_type_pause(type)
        except StoreError as exc:
            log.warning("runner %s: could not read the pause of %s jobs: %s", self.worker_id, type, describe(exc))
            return None

    async def _pause_type(self, store: Store, type: str, decision: Wait, now: float) -> None:
        """Tell other processes that every job of ``type`` waits until ``decision.at``. This runner holds the
        type back already; a store that fails the write costs them the cause's discovery, not this job's run."""
        self._paused_here[type] = max(self._paused_here.get(type, 0.0), decision.at)
        try:
            await store.pause_job_type(type, until=decision.at, looks=decision.looks, reason=decision.reason, now=now)
        except StoreError as exc:
            log.warning("runner %s: could not store the pause of %s jobs: %s", self.worker_id, type, describe(exc))

    async def _forget_outage(self, store: Store, type: str, now: float) -> None:
        try:
            await store.clear_type_outage(type, now=now)
        except StoreError as exc:
            log.warning("runner %s: could not clear the outage of %s jobs: %s", self.worker_id, type, describe(exc))

    def _own(self, pause: TypePause) -> bool:
        """Whether ``pause`` is the last one this runner wrote (it ends when that one does, to the store's
        precision): nothing in it is news here."""
        return abs(pause.until - self._paused_here.get(pause.type, -math.inf)) < 1e-3

    def _decide(self, error: Exception, job: Job) -> RetryDecision:
        """What to do after the handler raised ``error``. (A method of its own: a local of the run's frame would keep
        the error, and through its traceback that frame, alive in a reference cycle.)"""
        if isinstance(error, NoTimeToRetry) and self.strategy.stop_before_deadline:
            # A retry that the deadline left no time for is the next invocation's to make, without spending an
            # attempt: the step ran out of time, it did not fail.
            error = OutOfTime(f"{describe(error)}; continuing in a new invocation", at=self.clock.now())
        return self.retry.decide(
            error,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            rng=self.rng,
            continued=not self.strategy.inline_retries,
        )

    async def _keep_lease(self, job_id: uuid.UUID, store: Store, runner_id: str, handler_done: asyncio.Event) -> None:
        """Extend the lease while the handler runs; a killed invocation stops extending and the lease lapses.

        It ends when ``handler_done`` is set, checked after every wait, and not only when it is cancelled: a
        cancellation can be lost (Python 3.11's ``asyncio.wait_for`` drops one that arrives as the call it waits
        for completes, and psycopg_pool waits for a connection with it), and a heartbeat that outlives its
        handler renews a finished job's lease for ever. A renewal that the store fails is tried again at the
        next beat; if the store keeps failing, the lease lapses and the job is reclaimed.
        """
        every = self.lease_s / 3
        while not handler_done.is_set():
            await self.clock.sleep(every)
            if handler_done.is_set():
                return
            try:
                ok = await store.extend_lease(job_id, worker_id=runner_id, now=self.clock.now(), lease_s=self.lease_s)
            except StoreError:
                continue
            if not ok:
                return

    def claimable_types(self, now: float) -> list[str]:
        """The job types this runner may claim at ``now``: every handled type not paused by a shared wait (a spent
        rate limit) that lasts beyond ``now``. Claiming a paused type would only put the job back until the pause
        ends: a claim, a reschedule and a lost turn, for nothing."""
        return [t for t in self.handlers.types if self.paused_until.get(t, 0.0) <= now]

    def pause_ends_at(self) -> float | None:
        """When the earliest shared pause of a handled type ends (``None`` without one)."""
        ends = [self.paused_until[t] for t in self.handlers.types if t in self.paused_until]
        return min(ends) if ends else None

    async def _count_due(self, limit: int) -> int:
        count, _ = await self.store.due_summary(now=self.clock.now(), limit=limit)
        return count

    async def _count_unserved(self, limit: int) -> int:
        return await self.store.unserved_jobs(limit=limit)

    async def continue_due(
        self, invocation: Invocation | None = None, *, concurrency: int = 1, max_jobs: int | None = None
    ) -> ContinueSummary:
        """Claim due jobs in the store's fair order and run each for its turn, ``concurrency`` at a time, until none
        is due, ``max_jobs`` have run, or ``invocation``'s deadline is within its margin (each job's handler stops
        on its own before it, step by step). What a tick does, and, under ``resumable``, what any request's
        invocation does with its spare time. Jobs of a type paused by a shared wait (a rate limit) are not claimed
        before it ends.
        """
        summary = ContinueSummary()

        def claimable() -> list[str] | None:
            if max_jobs is not None and summary.continued >= max_jobs:
                return None
            if invocation is not None and invocation.time_left() <= self.deadline_margin_s:
                return None
            return self.claimable_types(self.clock.now()) or None

        async def loop() -> None:
            while (types := claimable()) is not None:
                summary.continued += 1
                job = await self.run_next(invocation=invocation, types=types)
                if job is None:
                    summary.continued -= 1
                    return
                if job.status is JobStatus.COMPLETED:
                    summary.completed += 1
                elif job.status is JobStatus.FAILED:
                    summary.failed += 1

        await gather_or_cancel([loop() for _ in range(max(1, concurrency))])
        return summary

    async def get(self, job_id: uuid.UUID | str, *, user_id: uuid.UUID | str | None = None) -> Job | None:
        """The job, or ``None`` if it does not exist or belongs to another user."""
        if isinstance(job_id, uuid.UUID):
            jid = job_id
        else:
            try:
                jid = uuid.UUID(str(job_id))
            except ValueError:
                return None
        job = await self.store.get_job(jid)
        if job is None:
            return None
        if user_id is not None and job.user_id != parse_user_id(user_id):
            return None
        return job

    def is_due(self, job: Job) -> bool:
        """Can a new invocation continue this job now (pending and due, or running with an expired lease)?"""
        now = self.clock.now()
        if job.status is JobStatus.PENDING:
            return job.next_attempt_at is None or job.next_attempt_at.timestamp() <= now
        if job.status is JobStatus.RUNNING:
            return job.locked_until is not None and job.locked_until.timestamp() < now
        return False


def _is_outage(decision: RetryDecision | None) -> bool:
    return isinstance(decision, Wait) and decision.looks > 0


class _RecentCount:
    """A count of jobs (counted up to a limit) remembered for :data:`~syncsim.defaults.WAITING_TTL_S`: a handler
    asks after every step whether others wait, and the queue changes slowly compared with that."""

    def __init__(self, count: Callable[[int], Awaitable[int]], clock: Clock) -> None:
        self._count = count
        self._clock = clock
        self._seen: tuple[float, int, int] = (-float("inf"), 0, 0)  # (when, up to, how many)

    def forget(self) -> None:
        """The count changed here: ask the store next time."""
        self._seen = (-float("inf"), 0, 0)

    async def count(self, limit: int) -> int:
        now = self._clock.now()
        seen_at, seen_limit, count = self._seen
        if now - seen_at < defaults.WAITING_TTL_S and (count < seen_limit or seen_limit >= limit):
            return min(count, limit)
        count = await self._count(limit)
        self._seen = (now, limit, count)
        return count


async def _end_heartbeat(heartbeat: asyncio.Future[None], handler_done: asyncio.Event) -> None:
    """Stop a job's heartbeat and wait for it, however it ends: the flag ends it even if the cancellation is
    lost, and ``asyncio.wait`` neither raises the heartbeat's error nor swallows a cancellation of the caller."""
    handler_done.set()
    heartbeat.cancel()
    await asyncio.wait([heartbeat])
    if not heartbeat.cancelled():
        heartbeat.exception()  # retrieved: a heartbeat's own failure (a killed invocation's store) is no news
