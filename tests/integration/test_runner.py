"""The runner on every store: lifecycle, retries, deadlines and kills, concurrency, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from typing import Any, TypeVar

import pytest

from syncsim.errors import InvalidInput, StoreUnavailable
from syncsim.jobs.model import Job, JobStatus
from syncsim.jobs.runner import HandlerRegistry, JobContext, JobRunner
from syncsim.jobs.service import JobService
from syncsim.jobs.worker import Worker
from syncsim.platforms import LocalPlatform, platform_spec
from syncsim.retry import RetryPolicy
from syncsim.sim.virtual import run_virtual, virtual_clock
from syncsim.stores import Store, open_store
from syncsim.stores.sqlite import SQLiteStore
from syncsim.strava.models import Activity
from tests.support.clocks import StalledClock
from tests.support.jobs import wait_for_job
from tests.support.sqlite import full_disk, write_lock_held

NO_WAIT = RetryPolicy(base_s=0.0, jitter=0.0)
T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
T = TypeVar("T")


def _runner(store: Store, handlers: HandlerRegistry, **options: object) -> JobRunner:
    options.setdefault("retry", NO_WAIT)
    return JobRunner(store, handlers=handlers, **options)  # type: ignore[arg-type]


async def test_lifecycle_pending_running_completed_with_timestamps(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    runner = _runner(store, handlers)
    job, created = await runner.submit(user_id, {"steps": 2, "step_s": 0.01}, type="demo")
    assert created and job.status is JobStatus.PENDING
    seen: list[dict[str, object]] = []
    done = await runner.run_next(on_progress=seen.append)
    assert done is not None and done.id == job.id
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"steps_done": 2} and done.error is None
    assert seen == [{"steps_done": 1}, {"steps_done": 2}]
    assert done.started_at is not None and done.completed_at is not None
    assert job.created_at <= done.started_at <= done.completed_at
    assert (done.attempts, done.runs, done.locked_by) == (1, 1, None)


async def test_failing_job_is_retried_then_failed_with_a_reason(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    runner = _runner(store, handlers)
    job, _ = await runner.submit(user_id, {"fail_attempts": 9}, type="demo", max_attempts=3)
    statuses = []
    for _ in range(3):
        ran = await runner.run_next()
        assert ran is not None
        statuses.append(ran.status)
    assert statuses == [JobStatus.PENDING, JobStatus.PENDING, JobStatus.FAILED]
    final = await store.get_job(job.id)
    assert final is not None and final.attempts == 3 and final.completed_at is not None
    assert final.error == (
        "attempt 3 of 3 failed, no attempts left: RetryableError: scripted demo failure on attempt 3"
    )
    assert await runner.run_next() is None


async def test_stored_backoff_delays_the_next_attempt(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    runner = _runner(store, handlers, retry=RetryPolicy(base_s=60, jitter=0))
    _job, _ = await runner.submit(user_id, {"fail_attempts": 1, "steps": 1, "step_s": 0}, type="demo")
    first = await runner.run_next()
    assert first is not None and first.status is JobStatus.PENDING
    assert first.next_attempt_at is not None
    assert first.next_attempt_at.timestamp() - first.updated_at.timestamp() == pytest.approx(60)  # type: ignore[union-attr]
    assert "retrying in 60.0 s" in (first.error or "")
    assert await runner.run_next() is None  # not due yet


async def test_inline_retries_sleep_inside_the_invocation(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    runner = _runner(store, handlers, strategy="waituntil", retry=RetryPolicy(base_s=0.05, jitter=0))
    job, _ = await runner.submit(user_id, {"fail_attempts": 2, "steps": 1, "step_s": 0}, type="demo")
    done = await runner.run_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert (done.attempts, done.runs) == (3, 3)


async def test_invocation_killed_at_its_deadline_is_reclaimed_and_completed(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    platform = LocalPlatform(platform_spec("hobby").with_limit(0.3))
    runner = _runner(store, handlers, strategy="waituntil", lease_s=0.6)
    service = JobService(runner)
    invocation = platform.start_invocation()
    job, _ = await service.submit(user_id, {"steps": 8, "step_s": 0.1}, type="demo", invocation=invocation)
    invocation.finish_response()
    await invocation.drain()
    assert invocation.killed
    killed_row = await store.get_job(job.id)
    assert killed_row is not None and killed_row.status is JobStatus.RUNNING  # left running, as on Vercel
    assert 1 <= killed_row.progress["steps_done"] < 8
    # Nothing the killed invocation did after its deadline reached the store.
    assert killed_row.updated_at is not None and invocation.deadline is not None
    assert killed_row.updated_at.timestamp() <= invocation.deadline
    await asyncio.sleep(0.7)  # the lease lapses
    done = await _runner(store, handlers).run_next()
    assert done is not None and done.id == job.id and done.status is JobStatus.COMPLETED
    assert (done.attempts, done.runs, done.crashes) == (1, 2, 1)  # the kill was a crash, not a spent attempt
    assert done.result == {"steps_done": 8}


async def test_resumable_stops_before_the_deadline_and_the_next_poll_continues(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    platform = LocalPlatform(platform_spec("hobby").with_limit(0.35))
    runner = _runner(store, handlers, strategy="resumable", deadline_margin_s=0.05)
    service = JobService(runner)
    first = platform.start_invocation()
    job, _ = await service.submit(user_id, {"steps": 6, "step_s": 0.1}, type="demo", invocation=first)
    first.finish_response()
    await first.drain()
    assert not first.killed
    paused = await store.get_job(job.id)
    assert paused is not None and paused.status is JobStatus.PENDING and paused.attempts == 0
    invocations = 1
    while True:
        poll = platform.start_invocation()
        row = await service.status(job.id, user_id=user_id, invocation=poll)
        poll.finish_response()
        await poll.drain()
        invocations += 1
        assert not poll.killed
        row = await store.get_job(job.id)
        assert row is not None
        if row.status is JobStatus.COMPLETED:
            break
        assert invocations < 10
    assert row.result == {"steps_done": 6}
    assert row.attempts == 1 and row.runs == invocations  # no attempt spent on clean stops
    assert invocations == 3  # 0.35 s limit, 0.05 s margin: 2 or 3 steps of 0.1 s per invocation


async def test_two_workers_never_run_the_same_job(store_url: str, handlers: HandlerRegistry) -> None:
    stores = [open_store(store_url) for _ in range(2)]
    await stores[0].migrate()
    submitter = _runner(stores[0], handlers)
    ids = [(await submitter.submit(uuid.uuid4(), {"steps": 1, "step_s": 0.01}, type="demo"))[0].id for _ in range(24)]
    workers = [Worker(_runner(s, handlers), concurrency=3, burst=True, poll_s=0.01) for s in stores]
    stats = await asyncio.gather(*(w.run() for w in workers))
    assert sum(s.jobs_run for s in stats) == 24
    assert all(s.jobs_run > 0 for s in stats)
    for job_id in ids:
        row = await stores[0].get_job(job_id)
        assert row is not None and row.status is JobStatus.COMPLETED and row.runs == 1
    for s in stores:
        await s.close()


@pytest.mark.parametrize(
    ("user", "payload", "job_type", "max_attempts", "message"),
    [
        ("not-a-uuid", {}, "demo", 3, "user id must be a UUID"),
        (str(uuid.uuid4()), [1, 2], "demo", 3, "payload must be a JSON object"),
        (str(uuid.uuid4()), {"x": object()}, "demo", 3, "payload is not JSON-serializable"),
        (str(uuid.uuid4()), {}, "mystery", 3, "unknown job type 'mystery'"),
        (str(uuid.uuid4()), {}, "demo", 0, "max_attempts must be an integer >= 1"),
    ],
)
async def test_bad_input_gives_one_clear_error_and_writes_nothing(
    store: Store,
    handlers: HandlerRegistry,
    user: str,
    payload: object,
    job_type: str,
    max_attempts: int,
    message: str,
) -> None:
    runner = _runner(store, handlers)
    with pytest.raises(InvalidInput, match=message) as info:
        await runner.submit(user, payload, type=job_type, max_attempts=max_attempts)
    assert "\n" not in str(info.value)
    assert await store.list_jobs() == []


async def test_a_bounded_service_runs_background_jobs_one_slot_at_a_time(
    store: Store, handlers: HandlerRegistry
) -> None:
    service = JobService(_runner(store, handlers, strategy="waituntil"), max_background_jobs=1)
    platform = LocalPlatform("unlimited")
    invocations, ids = [], []
    for _ in range(3):
        invocation = platform.start_invocation()
        job, _ = await service.submit(uuid.uuid4(), {"steps": 2, "step_s": 0.02}, type="demo", invocation=invocation)
        invocation.finish_response()
        invocations.append(invocation)
        ids.append(job.id)
    for invocation in invocations:
        await invocation.drain()
    rows = [await store.get_job(job_id) for job_id in ids]
    assert all(r is not None and r.status is JobStatus.COMPLETED for r in rows)
    spans = sorted((r.started_at, r.completed_at) for r in rows if r is not None)
    for (_, first_done), (second_start, _) in itertools.pairwise(spans):
        assert first_done is not None and second_start is not None and second_start >= first_done
    with pytest.raises(InvalidInput, match="max_background_jobs must be >= 1 or None, got 0"):
        JobService(_runner(store, handlers), max_background_jobs=0)
    with pytest.raises(InvalidInput, match="tick_lookahead_s must be at least 0 and under a minute, got 60"):
        JobService(_runner(store, handlers), tick_lookahead_s=60)


async def test_get_shows_a_job_only_to_its_owner_whatever_form_the_ids_take(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    runner = _runner(store, handlers)
    job, _ = await runner.submit(user_id, {"steps": 1}, type="demo")
    for owner in (user_id, str(user_id), uuid.UUID(str(user_id)), None):
        for jid in (job.id, str(job.id)):
            found = await runner.get(jid, user_id=owner)
            assert found is not None and found.id == job.id
    assert await runner.get(job.id, user_id=uuid.uuid4()) is None
    assert await runner.get(job.id, user_id=str(uuid.uuid4())) is None
    assert await runner.get("not-a-uuid", user_id=user_id) is None
    assert await runner.get(uuid.uuid4(), user_id=user_id) is None
    with pytest.raises(InvalidInput, match="user id must be a UUID"):
        await runner.get(job.id, user_id="not-a-user")


# -- issue #16: leases and claim loops that must end -----------------------------------------------------------


async def _result_even_if_cancelled(call: asyncio.Future[T]) -> T:
    """Await ``call`` as ``asyncio.wait_for`` does on Python 3.11: a cancellation that arrives once ``call`` is
    done is dropped and ``call``'s result returned (its ``except CancelledError: if fut.done(): return
    fut.result()``). psycopg_pool waits for a free connection with ``wait_for``, so a lease renewal cancelled
    just as its connection arrives loses the cancellation."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    call.add_done_callback(lambda _: waiter.done() or waiter.set_result(None))
    try:
        await waiter
    except asyncio.CancelledError:
        if call.done():
            return call.result()
        call.cancel()
        raise
    return call.result()


class RenewalsThatLoseACancel:
    """A real store whose lease renewals lose a cancellation that arrives just as they complete.

    The race is made certain instead of rare: a renewal writes the new lease, tells the handler (``renewed``)
    and answers only when the handler lets it (``release``), so its answer is ready in the very loop iteration
    in which the runner, seeing the handler end, cancels the heartbeat; the cancellation then meets Python
    3.11's ``wait_for`` rule above. Everything else is the store itself.
    """

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.renewed = asyncio.Event()
        self.release = asyncio.Event()
        self.renewals = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def extend_lease(self, job_id: uuid.UUID, **kwargs: Any) -> bool:
        async def renew() -> bool:
            ok = await self.inner.extend_lease(job_id, **kwargs)
            self.renewals += 1
            self.renewed.set()
            await self.release.wait()
            return ok

        return await _result_even_if_cancelled(asyncio.ensure_future(renew()))


async def test_a_heartbeat_ends_with_its_job_even_when_its_cancellation_is_lost(
    store: Store, user_id: uuid.UUID
) -> None:
    """Issue #16, W1: the heartbeat must end when its job ends, whatever happens to its cancellation.

    On the code before, the heartbeat ended only by being cancelled; when the cancellation was lost it went on
    renewing the finished job's lease for ever, and the runner, waiting for it, never wrote the result: the job
    stayed ``running`` with a fresh lease, and its worker's claim loop was stuck."""
    renewals = RenewalsThatLoseACancel(store)

    async def ends_during_a_renewal(ctx: JobContext) -> dict[str, Any]:
        await renewals.renewed.wait()
        renewals.release.set()
        return {"ended": "during a renewal"}

    registry = HandlerRegistry()
    registry.register("ends_during_a_renewal", ends_during_a_renewal)
    runner = JobRunner(renewals, handlers=registry, lease_s=0.3)  # type: ignore[arg-type]
    job, _ = await runner.submit(user_id, type="ends_during_a_renewal")
    run = asyncio.ensure_future(runner.run_next())
    try:
        done, _ = await asyncio.wait([run], timeout=5.0)
        assert run in done, "run_next did not return: the heartbeat outlived its job"
    finally:
        run.cancel()
    finished = run.result()
    assert finished is not None and finished.id == job.id and finished.status is JobStatus.COMPLETED
    row = await store.get_job(job.id)
    assert row is not None and row.status is JobStatus.COMPLETED and row.locked_until is None
    renewed = renewals.renewals
    await asyncio.sleep(0.5)  # five heartbeat periods: a heartbeat still alive would renew again
    assert renewals.renewals == renewed


async def test_checkpoints_keep_the_lease_when_the_heartbeat_cannot_beat(store: Store, user_id: uuid.UUID) -> None:
    """Issue #16, W4: a checkpoint extends the lease, as its docstring says.

    The clock's sleeps never end, so the heartbeat never renews the lease: only checkpoints can, as in a
    handler that blocks its event loop between them. It checkpoints every 20 s of a 30 s lease while another
    worker tries to claim the job every 20 s. On the code before, checkpoints left the lease as the claim set
    it: it ran out at 30 s, the other worker took the job at 40 s, and this run lost it mid-way."""
    clock = StalledClock(T0)
    taken: list[Job | None] = []

    async def slow_steps(ctx: JobContext) -> dict[str, Any]:
        for step in (1, 2, 3):
            clock.advance(20)
            taken.append(await store.claim_job(worker_id="other", now=clock.now(), lease_s=30))
            await ctx.checkpoint({"step": step})
        return {"steps": 3}

    registry = HandlerRegistry()
    registry.register("slow_steps", slow_steps)
    runner = JobRunner(store, handlers=registry, clock=clock, lease_s=30)
    job, _ = await runner.submit(user_id, type="slow_steps")
    done = await runner.run_next()
    assert taken == [None, None, None]
    assert done is not None and done.id == job.id and done.status is JobStatus.COMPLETED
    assert (done.runs, done.crashes, done.result) == (1, 0, {"steps": 3})


class EscapedTheRunner(BaseException):
    """A fault the runner does not catch (not an ``Exception``): it ends the claim loop it happens in, as a bug
    in the worker's own code would."""


async def test_a_claim_loop_that_dies_stops_the_worker_and_reports_its_error_at_once(
    store: Store, handlers: HandlerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #16, W2: when one claim loop dies, the worker logs the error at once, stops as SIGTERM stops it
    (running jobs get the grace period) and ``run()`` raises the error.

    On the code before, ``run()`` waited for the other loops and no longer watched the stop event: the error
    stayed hidden while the other loop went on claiming, and the worker never stopped."""

    async def escapes(ctx: JobContext) -> dict[str, Any]:
        raise EscapedTheRunner("a fault escaped the runner")

    handlers.register("escapes", escapes)
    runner = _runner(store, handlers)
    long_job, _ = await runner.submit(uuid.uuid4(), {"steps": 200, "step_s": 0.05}, type="demo")  # 10 s
    await runner.submit(uuid.uuid4(), type="escapes")
    worker = Worker(runner, concurrency=2, poll_s=0.01, grace_s=0.5)
    caplog.set_level(logging.WARNING, logger="syncsim.worker")
    started = time.monotonic()
    run = asyncio.ensure_future(worker.run())
    try:
        done, _ = await asyncio.wait([run], timeout=5.0)
        assert run in done, "the worker did not stop after one of its claim loops died"
    finally:
        run.cancel()
    took = time.monotonic() - started
    with pytest.raises(EscapedTheRunner, match="a fault escaped the runner"):
        run.result()
    assert took < 0.5 + 2.0  # the grace period, not the 10 s job
    errors = [r.getMessage() for r in caplog.records if r.name == "syncsim.worker" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "EscapedTheRunner: a fault escaped the runner" in errors[0], errors
    assert "\n" not in errors[0]
    # The long job was cut off at the end of the grace period and given back: pending, due now, no crash.
    row = await store.get_job(long_job.id)
    assert row is not None and row.status is JobStatus.PENDING and 0 < row.progress["steps_done"] < 200
    assert (row.locked_by, row.crashes, row.attempts) == (None, 0, 0), row


@pytest.mark.parametrize("strategy", ["waituntil", "worker"])
async def test_a_handler_cut_off_by_its_store_is_paused_without_spending_an_attempt(
    store: Store, user_id: uuid.UUID, strategy: str
) -> None:
    """Issue #16, W3/W5: a store that cannot be reached is no fault of the job. Its handler's first run meets
    one; the run is paused without spending an attempt: retried inline after the backoff under ``waituntil``
    (nothing else continues a job there), stored as due a little later under the other strategies."""
    runs: list[int] = []

    async def meets_an_outage_once(ctx: JobContext) -> dict[str, Any]:
        runs.append(ctx.job.attempts)
        if len(runs) == 1:
            raise StoreUnavailable("postgres store postgresql://db: upsert activities failed, the server is down")
        return {"runs": len(runs)}

    registry = HandlerRegistry()
    registry.register("meets_an_outage_once", meets_an_outage_once)
    runner = _runner(store, registry, strategy=strategy, retry=RetryPolicy(base_s=0.05, jitter=0))
    job, _ = await runner.submit(user_id, type="meets_an_outage_once")
    first = await runner.run_job(job.id)
    assert first is not None
    if strategy == "waituntil":
        assert first.status is JobStatus.COMPLETED and first.result == {"runs": 2}
    else:
        assert first.status is JobStatus.PENDING and first.attempts == 0
        assert (first.error or "").startswith("paused while the store was unavailable: StoreUnavailable: ")
        assert first.next_attempt_at is not None and first.updated_at is not None
        assert first.next_attempt_at.timestamp() - first.updated_at.timestamp() == pytest.approx(0.05, abs=1e-3)
        await asyncio.sleep(0.06)
        first = await runner.run_job(job.id)
        assert first is not None and first.status is JobStatus.COMPLETED
    assert runs == [1, 1]  # the second run is on the same attempt
    assert (first.attempts, first.runs, first.crashes, first.error) == (1, 2, 0, None)


@pytest.mark.parametrize("cause", ["full disk", "write lock held"])
async def test_a_sqlite_write_meeting_a_full_disk_or_a_held_lock_spends_no_attempt(
    sqlite_url: str, user_id: uuid.UUID, cause: str
) -> None:
    """A handler's write meets a full disk, or another process's write lock held past the store's busy timeout
    (a migration, a backup): the store is unavailable, the job's first run is paused without spending an
    attempt, and the next stores its page once."""
    store = SQLiteStore.from_url(sqlite_url, busy_timeout_s=0.2)
    await store.migrate()
    page = [
        Activity.from_json({"id": i, "name": "Run", "sport_type": "Run", "start_date": "2026-01-01T00:00:00Z"})
        for i in range(1, 201)
    ]
    runs: list[int] = []

    async def stores_a_page(ctx: JobContext) -> dict[str, Any]:
        runs.append(ctx.job.attempts)
        fault = full_disk(store) if cause == "full disk" else write_lock_held(store.path)
        with fault if len(runs) == 1 else contextlib.nullcontext():
            stored = await ctx.store.upsert_activities(ctx.job.user_id, page, now=time.time())
        return {"stored": stored}

    registry = HandlerRegistry()
    registry.register("stores_a_page", stores_a_page)
    runner = _runner(store, registry, strategy="worker", retry=RetryPolicy(base_s=0.05, jitter=0))
    job, _ = await runner.submit(user_id, type="stores_a_page")
    first = await runner.run_job(job.id)
    assert first is not None and (first.status, first.attempts) == (JobStatus.PENDING, 0), first
    assert (first.error or "").startswith(
        f"paused while the store was unavailable: StoreUnavailable: sqlite store {store.path!r}"
    ), first.error
    await asyncio.sleep(0.06)
    done = await runner.run_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == {"stored": 200}
    assert (done.attempts, done.runs, done.crashes, runs) == (1, 2, 0, [1, 1])
    assert await store.count_activities(user_id) == 200
    await store.close()


async def test_a_worker_claims_nothing_of_a_type_paused_by_a_shared_wait_until_the_pause_ends(
    store: Store, handlers: HandlerRegistry, user_id: uuid.UUID
) -> None:
    """A shared wait (an app-wide rate limit spent) pauses every job of its type: a worker claims none of them
    before the pause ends, then runs them at once. Before, its claim loops went on claiming them, each claim
    only to be put back until the window reset."""
    runner = _runner(store, handlers)
    job, _ = await runner.submit(user_id, {"steps": 1, "step_s": 0.0}, type="demo")
    pause_s = 0.4
    runner.paused_until["demo"] = runner.clock.now() + pause_s
    worker = Worker(runner, concurrency=2, poll_s=0.01, grace_s=0.5)
    run = asyncio.ensure_future(worker.run())
    try:
        await asyncio.sleep(pause_s / 2)
        held = await store.get_job(job.id)
        assert held is not None and held.status is JobStatus.PENDING
        assert (held.runs, held.attempts, held.locked_by) == (0, 0, None)  # never claimed
        assert worker.stats.jobs_run == 0
        done = await wait_for_job(
            store, job.id, lambda j: j.status is JobStatus.COMPLETED, timeout_s=pause_s + 5.0, what="completed"
        )
    finally:
        worker.stop()
        await asyncio.wait_for(run, timeout=5.0)
    assert (done.runs, done.attempts) == (1, 1)


def test_an_idle_worker_looks_for_work_once_a_poll_whatever_its_concurrency(handlers: HandlerRegistry) -> None:
    """An idle worker with 8 claim loops puts one claim per ``poll_s`` on its store, not 8 (on a free-tier
    database, 8 queries a second for no work at all); a job submitted meanwhile still starts within ``poll_s``, and
    a burst of jobs still runs 8 at a time. In virtual time (the simulator's loop), so that counts are exact.
    Idle loops that each looked on their own would make about 8 claims a second."""
    claims: list[float] = []

    class CountingStore(SQLiteStore):
        async def claim_job(self, **kwargs: Any) -> Job | None:
            claims.append(kwargs["now"])
            return await super().claim_job(**kwargs)

    async def main() -> None:
        clock = virtual_clock()
        store = CountingStore(":memory:")
        await store.migrate()
        runner = _runner(store, handlers, clock=clock)
        worker = Worker(runner, concurrency=8, poll_s=1.0)
        run = asyncio.ensure_future(worker.run())
        try:
            await asyncio.sleep(60.0)
            # A start (8 loops' first claims, then the first looks back off from 0.01 s to 1 s), then one a second.
            assert len(claims) <= 8 + 7 + 60, f"{len(claims)} claims in 60 idle seconds"
            assert len(claims) >= 55
            job, _ = await runner.submit(uuid.uuid4(), {"steps": 1, "step_s": 0.0}, type="demo")
            submitted_at = clock.now()
            done = await wait_for_job(store, job.id, lambda j: j.is_final, timeout_s=10.0, what="the job to run")
            assert done.status is JobStatus.COMPLETED and done.started_at is not None
            assert done.started_at.timestamp() - submitted_at <= 1.0 + 1e-6
            burst = [await runner.submit(uuid.uuid4(), {"steps": 1, "step_s": 30.0}, type="demo") for _ in range(9)]
            await asyncio.sleep(5.0)
            rows = [await store.get_job(submitted.id) for submitted, _ in burst]
            running = [row for row in rows if row is not None and row.status is JobStatus.RUNNING]
            assert len(running) == 8, rows  # every loop took one; the ninth waits for a free loop
        finally:
            worker.stop()
            await asyncio.wait_for(run, timeout=60.0)
            await store.close()

    run_virtual(main)
