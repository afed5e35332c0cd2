"""What the simulator observes: a store wrapper and a platform that record every step of every job.

The runner, the service and the API are not instrumented: the simulator watches them from the two seams it
already owns. :class:`ObservedStore` wraps the run's store (claims, checkpoints, retries, reschedules,
completions — each is a store call) and adds the modelled **store latency**: each call first sleeps
``latency_s`` seconds of simulated time (one database round trip; Supabase from a Vercel function is a few
ms). :class:`ObservedPlatform` is :class:`~syncsim.platforms.LocalPlatform` (it *is* the simulated platform)
that also records each invocation's start, end and kill, and which job it was running.

Which invocation a store call comes from is read from a context variable set when the invocation starts: the
request task sets it, and the background tasks ``wait_until`` creates inherit it (asyncio copies the context
into each new task). Calls made outside any invocation (the worker) see ``None``.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import uuid
from collections.abc import Awaitable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncsim.clock import Clock
from syncsim.jobs.model import Job
from syncsim.platforms import Invocation, LocalPlatform, PlatformSpec
from syncsim.stores import Store
from syncsim.strava.models import Activity, StravaTokens

__all__ = ["JobTrace", "ObservedPlatform", "ObservedStore", "Recorder"]


class _NoWait:
    """An awaitable that completes at once, without yielding to the loop (as an ``async def`` with no await)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


_NO_WAIT = _NoWait()

_current_invocation: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "syncsim_sim_invocation", default=None
)


@dataclass(slots=True)
class JobTrace:
    """What the simulator saw of one job (times in simulated seconds since the run started)."""

    job_id: uuid.UUID
    user_id: uuid.UUID
    created_s: float
    claims: int = 0
    killed_invocations: int = 0
    rate_limited: int = 0
    retries: int = 0
    compute_s: float = 0.0
    claim_started_s: float | None = None
    invocations: set[int] = field(default_factory=set)
    completed_s: float | None = None
    first_progress_s: float | None = None


class Recorder:
    """The run's timeline (``events``) and per-job traces; ``t0`` is the run's start (UTC epoch seconds)."""

    def __init__(self, clock: Clock, t0: float, *, keep_events: bool = True) -> None:
        self.clock = clock
        self.t0 = t0
        self.keep_events = keep_events
        self.events: list[tuple[float, str | None, str | None, str, str]] = []
        self.jobs: dict[uuid.UUID, JobTrace] = {}
        self.invocation_job: dict[int, uuid.UUID] = {}
        #: Each user's latest job (rate-limit waits inside the Strava client are reported by user).
        self.user_job: dict[uuid.UUID, uuid.UUID] = {}
        self.invocations = 0
        self.invocation_s = 0.0
        self.killed = 0

    def t(self) -> float:
        return self.clock.now() - self.t0

    def event(
        self, kind: str, *, user: uuid.UUID | None = None, job: uuid.UUID | None = None, detail: str = ""
    ) -> None:
        if self.keep_events:
            self.events.append(
                (
                    round(self.t(), 6),
                    None if user is None else str(user),
                    None if job is None else str(job),
                    kind,
                    detail,
                )
            )

    # -- job steps, from the store ----------------------------------------------------------------------------
    def created(self, job: Job, created: bool) -> None:
        if created and job.id not in self.jobs:
            self.jobs[job.id] = JobTrace(job.id, job.user_id, self.t())
            self.user_job[job.user_id] = job.id

    def rate_limit_wait(self, user_id: uuid.UUID | None, seconds: float) -> None:
        """The Strava client is about to sleep ``seconds`` for a window reset, for ``user_id``'s job."""
        job_id = self.user_job.get(user_id) if user_id is not None else None
        trace = self.jobs.get(job_id) if job_id is not None else None
        if trace is None:
            return
        trace.rate_limited += 1
        self.event("rate_limit_wait", user=user_id, job=job_id, detail=f"{seconds:.1f} s")

    def progressed(self, job_id: uuid.UUID) -> None:
        """The job saved progress (a sync: a page stored); the first time is its time to first page."""
        trace = self.jobs.get(job_id)
        if trace is not None and trace.first_progress_s is None:
            trace.first_progress_s = self.t()

    def claimed(self, job: Job) -> None:
        trace = self.jobs.get(job.id)
        if trace is None:
            trace = self.jobs[job.id] = JobTrace(job.id, job.user_id, self.t())
            self.user_job[job.user_id] = job.id
        trace.claims += 1
        trace.claim_started_s = self.t()
        invocation = _current_invocation.get()
        if invocation is not None:
            trace.invocations.add(invocation.id)
            self.invocation_job[invocation.id] = job.id
        self.event("claimed", user=job.user_id, job=job.id, detail=f"attempt {job.attempts}")

    def released(self, job_id: uuid.UUID, kind: str, detail: str = "") -> None:
        trace = self.jobs.get(job_id)
        if trace is None:
            return
        if trace.claim_started_s is not None:
            trace.compute_s += self.t() - trace.claim_started_s
            trace.claim_started_s = None
        if kind == "rescheduled" and "RateLimited" in detail:
            trace.rate_limited += 1
            kind = "rate_limited"
        elif kind == "retry":
            trace.retries += 1
        elif kind == "completed":
            trace.completed_s = self.t()
        self.event(kind, user=trace.user_id, job=job_id, detail=detail[:200])

    # -- invocations, from the platform -----------------------------------------------------------------------
    def invocation_started(self, invocation: Invocation) -> None:
        self.invocations += 1
        if self.keep_events:
            self.event("invocation_start", detail=f"invocation {invocation.id}")

    def invocation_ended(self, invocation: Invocation) -> None:
        started = invocation.started_at
        ended = invocation.ended_at if invocation.ended_at is not None else self.clock.now()
        self.invocation_s += ended - started
        job_id = self.invocation_job.pop(invocation.id, None)
        trace = self.jobs.get(job_id) if job_id is not None else None
        user = trace.user_id if trace is not None else None
        if invocation.killed:
            self.killed += 1
            if trace is not None and trace.claim_started_s is not None:
                trace.killed_invocations += 1
                trace.compute_s += self.t() - trace.claim_started_s
                trace.claim_started_s = None
            self.event("killed", user=user, job=job_id, detail=invocation.kill_reason or "")
        if self.keep_events:
            self.event("invocation_end", user=user, job=job_id, detail=f"invocation {invocation.id}")


class ObservedPlatform(LocalPlatform):
    """:class:`LocalPlatform` (kills at the deadline) that reports every invocation to a :class:`Recorder`.

    With ``kill_rate`` an invocation is also killed, with that probability, at a seeded random moment within its
    time limit (60 s without one): an instance that crashes or is recycled, as SIGKILL would end it.
    """

    def __init__(
        self,
        spec: PlatformSpec | str,
        *,
        clock: Clock,
        recorder: Recorder,
        kill_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(spec, clock=clock)
        self.keep_history = False  # the recorder keeps what the metrics need
        self.recorder = recorder
        self.kill_rate = kill_rate
        self.rng = rng or random.Random(0)
        #: Invocations not yet ended (the run drains them before it stops).
        self.active: set[Invocation] = set()
        self._end_callback = self._ended  # one bound method for every invocation

    def start_invocation(self) -> Invocation:
        invocation = super().start_invocation()
        if self.kill_rate > 0 and self.rng.random() < self.kill_rate:
            at = self.rng.uniform(0.0, self.spec.max_duration_s or 60.0)
            asyncio.get_running_loop().call_later(at, invocation.kill, "the instance crashed")
        _current_invocation.set(invocation)
        self.recorder.invocation_started(invocation)
        self.active.add(invocation)
        invocation.on_end(self._end_callback)
        return invocation

    def _ended(self, invocation: Invocation) -> None:
        self.recorder.invocation_ended(invocation)
        self.active.discard(invocation)


#: Store methods that change no job row: calls to them keep :class:`ObservedStore`'s job reads.
_LEAVES_JOBS = frozenset(
    {
        "get_tokens",
        "save_tokens",
        "delete_tokens",
        "user_for_athlete",
        "upsert_activities",
        "delete_activity",
        "count_activities",
        "latest_activity_start",
        "list_jobs",
        "migrate",
        "due_summary",
        "unserved_jobs",
        "stored_activities",
        "mark_activities_seen",
        "delete_activities_unseen_since",
        "add_activity_events",
        "pending_activity_events",
        "clear_activity_events",
        "users_with_activity_events",
        "take_event_quota",
        "take_rate_slot",
        "mark_reconciled",
        "reconciled_at",
        "users_to_reconcile",
        "mark_reconcile_asked",
        # The job type's shared pause is a row of its own table: a runner reads it before every job run.
        "job_type_pause",
        "type_pauses",
        "pause_job_type",
        "clear_type_outage",
    }
)


class ObservedStore:
    """A :class:`~syncsim.stores.Store` that sleeps ``latency_s`` per call and reports job steps.

    It also remembers the jobs it read, until a call that may change them: the run's store belongs to the
    simulation alone and every call goes through this wrapper, so a job read since its last change is returned
    as it was read, without a query (most of a run's status polls read a row nothing wrote since the last poll).
    The round trip's simulated latency is paid either way, so the run's timing does not depend on it.
    """

    def __init__(self, store: Store, *, clock: Clock, recorder: Recorder, latency_s: float = 0.0) -> None:
        self.inner = store
        self.clock = clock
        self.recorder = recorder
        self.latency_s = latency_s
        self._jobs_read: dict[uuid.UUID, Job | None] = {}
        #: The jobs in ``_jobs_read`` read while running: the only ones a claim's reclaim of lapsed leases changes.
        self._running_read: set[uuid.UUID] = set()

    def _rtt(self) -> Awaitable[None]:
        """One database round trip of simulated time, to await (without latency, it completes at once)."""
        return self.clock.sleep(self.latency_s) if self.latency_s > 0 else _NO_WAIT

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._rtt()
            if name not in _LEAVES_JOBS:
                self._jobs_read.clear()
                self._running_read.clear()
            return await target(*args, **kwargs)

        return call

    async def create_job(self, **kwargs: Any) -> tuple[Job, bool]:
        await self._rtt()
        job, created = await self.inner.create_job(**kwargs)
        self.recorder.created(job, created)
        return job, created

    async def get_job(self, job_id: uuid.UUID) -> Job | None:
        await self._rtt()
        if job_id in self._jobs_read:
            return self._jobs_read[job_id]
        job = self._jobs_read[job_id] = await self.inner.get_job(job_id)
        if job is not None and job.status == "running":
            self._running_read.add(job_id)
        return job

    async def claim_job(self, **kwargs: Any) -> Job | None:
        await self._rtt()
        # A claim changes the job it takes and, first, every running job whose lease lapsed; a pending, completed
        # or failed job read before stays as read. A worker claims every second while idle and at every turn, so
        # forgetting every read here sent nearly all of a worker run's status polls to SQLite.
        for job_id in self._running_read:
            self._jobs_read.pop(job_id, None)
        self._running_read.clear()
        try:
            job = await self.inner.claim_job(**kwargs)
        except BaseException:
            self._jobs_read.clear()
            raise
        if job is not None:
            self._jobs_read.pop(job.id, None)
            self.recorder.claimed(job)
        return job

    async def extend_lease(self, job_id: uuid.UUID, **kwargs: Any) -> bool:
        await self._rtt()
        self._jobs_read.pop(job_id, None)
        return await self.inner.extend_lease(job_id, **kwargs)

    async def save_progress(self, job_id: uuid.UUID, **kwargs: Any) -> bool:
        await self._rtt()
        self._jobs_read.pop(job_id, None)
        ok = await self.inner.save_progress(job_id, **kwargs)
        if ok:
            self.recorder.progressed(job_id)
            self.recorder.event("checkpoint", job=job_id, detail=f"page {kwargs['progress'].get('pages')}")
        return ok

    async def complete_job(self, job_id: uuid.UUID, **kwargs: Any) -> bool:
        await self._rtt()
        self._jobs_read.pop(job_id, None)
        ok = await self.inner.complete_job(job_id, **kwargs)
        if ok:
            self.recorder.released(job_id, "completed")
        return ok

    async def retry_job(self, job_id: uuid.UUID, **kwargs: Any) -> bool:
        await self._rtt()
        self._jobs_read.pop(job_id, None)
        ok = await self.inner.retry_job(job_id, **kwargs)
        if ok:
            self.recorder.released(job_id, "retry", kwargs.get("error", ""))
        return ok

    async def reschedule_job(self, job_id: uuid.UUID, **kwargs: Any) -> bool:
        await self._rtt()
        self._jobs_read.pop(job_id, None)
        ok = await self.inner.reschedule_job(job_id, **kwargs)
        if ok:
            self.recorder.released(job_id, "rescheduled", kwargs.get("reason", ""))
        return ok

    async def fail_job(self, job_id: uuid.UUID, **kwargs: Any) -> bool:
        await self._rtt()
        self._jobs_read.pop(job_id, None)
        ok = await self.inner.fail_job(job_id, **kwargs)
        if ok:
            self.recorder.released(job_id, "failed", kwargs.get("error", ""))
        return ok

    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None:
        await self._rtt()
        return await self.inner.get_tokens(user_id)

    async def upsert_activities(self, user_id: uuid.UUID, activities: Sequence[Activity], **kwargs: Any) -> int:
        await self._rtt()
        return await self.inner.upsert_activities(user_id, activities, **kwargs)
