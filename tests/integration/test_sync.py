"""The strava_sync job against FakeStrava, in-process, under virtual time (the simulator's loop).

Each scenario runs the real runner, store, Strava client and sync; only the clock (virtual) and Strava
(FakeStrava behind an httpx transport) are stand-ins.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
import pytest

from syncsim.clock import LoopClock
from syncsim.errors import RateLimited
from syncsim.jobs.model import JobStatus
from syncsim.jobs.runner import HandlerRegistry, JobRunner
from syncsim.jobs.service import JobService
from syncsim.platforms import LocalPlatform, platform_spec
from syncsim.retry import RetryPolicy
from syncsim.sim.virtual import run_virtual, virtual_clock
from syncsim.stores import Store, open_store
from syncsim.strava.client import StravaClient
from syncsim.strava.fake import FakeAthlete, FakeStrava, Faults, LatencyModel
from syncsim.strava.ratelimit import CLOCK_SKEW_S, RateLimitBudget, SlotRequest, quarter_hour_start, utc_day_start
from syncsim.strava.sync import list_requests_needed, register_strava_sync


def _start(activity: dict[str, Any]) -> float:
    return datetime.fromisoformat(activity["start_date"]).timestamp()


@dataclass
class Env:
    clock: LoopClock
    fake: FakeStrava
    store: Store
    client: StravaClient

    def runner(self, strategy: str = "worker", **options: Any) -> JobRunner:
        options.setdefault("retry", RetryPolicy(base_s=1.0, jitter=0.0))
        return JobRunner(
            self.store,
            handlers=register_strava_sync(HandlerRegistry()),
            clock=self.clock,
            strategy=strategy,
            resources={"strava": self.client},
            rng=random.Random(0),
            **options,
        )

    async def athlete(self, activities: int) -> tuple[uuid.UUID, FakeAthlete]:
        athlete = self.fake.add_athlete(activities=activities)
        user = uuid.uuid4()
        await self.store.save_tokens(user, athlete.tokens(), now=self.clock.now())
        return user, athlete

    def list_requests(self) -> int:
        return sum(1 for r in self.fake.requests if r.path.endswith("/athlete/activities"))


def in_virtual_time(
    store_url: str,
    scenario: Callable[[Env], Awaitable[None]],
    *,
    latency: float = 0.0,
    faults: Faults | None = None,
) -> None:
    """Run ``scenario`` under virtual time on SQLite; on PostgreSQL in real time (its network I/O would let
    the virtual clock jump ahead while a query is in flight), with latencies scaled down to keep it quick."""
    virtual = store_url.startswith("sqlite")

    async def main() -> None:
        clock = virtual_clock() if virtual else LoopClock(time.time())
        fake = FakeStrava(clock=clock, seed=7, latency=latency if virtual else 0.0, faults=faults)
        store = open_store(store_url)
        await store.migrate()
        client = fake.client(tokens=store, rng=random.Random(1))
        try:
            await scenario(Env(clock, fake, store, client))
        finally:
            await client.aclose()
            await store.close()

    if virtual:
        run_virtual(main)
    else:
        asyncio.run(main())


@pytest.mark.parametrize("n", [0, 1, 199, 200, 201, 5000])
def test_full_sync_stores_every_activity_exactly_once(store_url: str, n: int) -> None:
    async def scenario(env: Env) -> None:
        user, _athlete = await env.athlete(n)
        runner = env.runner()
        job, _ = await runner.submit(user)
        done = await runner.run_next()
        assert done is not None and done.id == job.id and done.status is JobStatus.COMPLETED, done
        assert await env.store.count_activities(user) == n
        # Keyset pages: 200 new, then 199 new after each re-read boundary; a page of the boundary alone; empty.
        assert env.list_requests() == list_requests_needed(n)
        assert done.result == {
            "mode": "full",
            "activities": n,
            "removed": 0,
            "pages": list_requests_needed(n) - 1,
            "requests": list_requests_needed(n),
            "total_activities": n,
        }

    in_virtual_time(store_url, scenario, latency=0.3)


def test_short_non_final_pages_do_not_end_the_sync(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, _ = await env.athlete(1500)
        runner = env.runner()
        await runner.submit(user)
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.COMPLETED
        assert await env.store.count_activities(user) == 1500
        assert env.list_requests() > list_requests_needed(1500)  # short pages cost extra requests

    in_virtual_time(sqlite_url, scenario, faults=Faults(short_pages=0.5))


def test_incremental_sync_fetches_only_new_activities(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(450)
        runner = env.runner()
        await runner.submit(user)
        await runner.run_next()
        for _ in range(3):  # all three in the same second: a tie the keyset re-reads and skips
            env.fake.add_activity(athlete.athlete_id)
        before = env.list_requests()
        await runner.submit(user, {"mode": "incremental"})
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result is not None and done.result["mode"] == "incremental"
        # The 3 new ones, and the stored ones within the look-back (three days before the newest stored start).
        latest = max(_start(env.fake.activity(i)) for i in env.fake.activity_ids(athlete.athlete_id)[3:])
        in_lookback = [
            i for i in env.fake.activity_ids(athlete.athlete_id) if _start(env.fake.activity(i)) > latest - 3 * 86400
        ]
        assert done.result["activities"] == len(in_lookback) >= 3
        assert await env.store.count_activities(user) == 453
        assert env.list_requests() - before == 3  # the new ones; the tie's second again, all seen; empty

    in_virtual_time(sqlite_url, scenario)


class IgnoresBefore(httpx.AsyncBaseTransport):
    """A Strava that ignores ``before``: every listing request gets the newest page."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        params = [(k, v) for k, v in request.url.params.multi_items() if k != "before"]
        request.url = request.url.copy_with(params=params)
        return await self.inner.handle_async_request(request)


def test_a_page_that_does_not_move_the_cursor_fails_the_job_at_once_naming_the_page(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(450)
        client = StravaClient(
            tokens=env.store,
            clock=env.clock,
            base_url="http://fake-strava.local",
            transport=IgnoresBefore(env.fake.transport()),
            client_id=env.fake.client_id,
            client_secret=env.fake.client_secret,
            rng=random.Random(1),
        )
        try:
            runner = replace(env, client=client).runner()
            await runner.submit(user, max_attempts=3)
            done = await runner.run_next()
        finally:
            await client.aclose()
        assert done is not None and done.status is JobStatus.FAILED and done.attempts == 1, done
        error = done.error or ""
        assert "\n" not in error and "not retried" in error, error
        assert re.search(r"UnusableResponse: GET /athlete/activities before \S+Z page 1: none of the page's 200", error)
        # The newest page, the re-read of its oldest second (all seen), then the page that ignores the bound.
        assert env.list_requests() == 3
        newest = env.fake.activity_ids(athlete.athlete_id)[:200]
        assert set((await env.store.stored_activities(user, newest)).keys()) == set(newest)
        assert await env.store.count_activities(user) == 200

    in_virtual_time(sqlite_url, scenario)


def test_a_tie_larger_than_a_page_is_paged_through_within_its_second(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(0)
        second = env.clock.now() - 86_400
        for i in range(3):
            env.fake.add_activity(athlete.athlete_id, start_date=second - 3600 * (i + 1))
        for _ in range(450):  # the second page's bound ends inside it
            env.fake.add_activity(athlete.athlete_id, start_date=second)
        for i in range(150):
            env.fake.add_activity(athlete.athlete_id, start_date=second + 60 * (i + 1))
        runner = env.runner()
        await runner.submit(user)
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.COMPLETED, done
        assert await env.store.count_activities(user) == 603

    in_virtual_time(sqlite_url, scenario)


@pytest.mark.parametrize(("tie", "older"), [(201, 0), (450, 0), (450, 300), (200, 0), (400, 7)])
def test_a_tie_larger_than_a_page_on_the_newest_page_is_paged_through(sqlite_url: str, tie: int, older: int) -> None:
    """Found by probing: the first page has no bound, so a tie on it was not paged by number: the next page
    (before the tie's second + 1) brought the same 200 activities, closed the second, and the rest of it was
    never listed (201 in one second stored 200; 450 with 300 older stored 500)."""

    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(0)
        second = env.clock.now() - 86_400
        for i in range(older):
            env.fake.add_activity(athlete.athlete_id, start_date=second - 3600 * (i + 1))
        for _ in range(tie):
            env.fake.add_activity(athlete.athlete_id, start_date=second)
        runner = env.runner()
        await runner.submit(user)
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.COMPLETED, done
        assert await env.store.count_activities(user) == tie + older

    in_virtual_time(sqlite_url, scenario)


def test_token_expiring_mid_sync_is_refreshed_and_the_rotation_saved(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(1200)
        runner = env.runner()
        job, _ = await runner.submit(user)
        expired = False

        def expire_after_two_pages(progress: dict[str, Any]) -> None:
            nonlocal expired
            if progress["pages"] == 2 and not expired:
                env.fake.invalidate_access_token(athlete.athlete_id)
                expired = True

        done = await runner.run_job(job.id, on_progress=expire_after_two_pages)
        assert expired and done is not None and done.status is JobStatus.COMPLETED
        assert await env.store.count_activities(user) == 1200
        saved = await env.store.get_tokens(user)
        assert saved is not None and saved.access_token != athlete.access_token
        assert any(r.path == "/oauth/token" and r.status == 200 for r in env.fake.requests)

    in_virtual_time(sqlite_url, scenario, latency=0.2)


def test_two_processes_refreshing_one_athletes_token_at_once_both_go_on_with_the_rotated_one(
    sqlite_url: str,
) -> None:
    """Strava voids a refresh token when it issues the next: of two processes refreshing at once, one is refused,
    and goes on with the tokens the other stored rather than disconnect the athlete."""

    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(20)
        other_store = open_store(sqlite_url)  # another process: its own connection, client and refresh lock
        other = env.fake.client(tokens=other_store, rng=random.Random(2))
        try:
            await env.clock.sleep(6 * 3600 - 200)  # inside the refresh margin, with under an hour left at Strava
            pages = await asyncio.gather(env.client.list_activities(user, page=1), other.list_activities(user, page=1))
            again = await asyncio.gather(env.client.list_activities(user, page=1), other.list_activities(user, page=1))
        finally:
            await other.aclose()
            await other_store.close()
        assert [len(p) for p in pages + again] == [20] * 4
        refused = [r for r in env.fake.requests if r.path == "/oauth/token" and r.status != 200]
        assert len(refused) == 1 and env.fake.counts["refresh_rotations"] == 1
        saved = await env.store.get_tokens(user)
        assert saved is not None and saved.refresh_token == env.fake.athlete(athlete.athlete_id).refresh_token
        assert env.fake.counts["status_401"] == 0

    in_virtual_time(sqlite_url, scenario, latency=0.3)


def test_a_refresh_refused_while_another_process_is_saving_its_grant_waits_for_that_save(sqlite_url: str) -> None:
    """The other process has Strava's grant but has not stored it yet when this one is refused: the refusal is
    not final until the store has been looked at for a moment (for a deauthorization's check, final deletes the
    athlete's tokens)."""

    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(20)
        other_store = open_store(sqlite_url)

        class SlowToSave:  # the other process: its save comes a second after Strava's grant
            def __getattr__(self, name: str) -> Any:
                return getattr(other_store, name)

            async def save_tokens(self, *args: Any, **kwargs: Any) -> None:
                await env.clock.sleep(1.0)
                await other_store.save_tokens(*args, **kwargs)

        other = env.fake.client(tokens=SlowToSave(), rng=random.Random(2))
        try:
            await env.clock.sleep(6 * 3600 - 200)  # inside the refresh margin
            first = asyncio.ensure_future(other.list_activities(user, page=1))  # its refresh reaches Strava first
            await env.clock.sleep(0.1)
            pages = [await env.client.list_activities(user, page=1), await first]
        finally:
            await other.aclose()
            await other_store.close()
        assert [len(p) for p in pages] == [20, 20]
        refused = [r for r in env.fake.requests if r.path == "/oauth/token" and r.status != 200]
        assert len(refused) == 1 and env.fake.counts["refresh_rotations"] == 1
        saved = await env.store.get_tokens(user)
        assert saved is not None and saved.refresh_token == env.fake.athlete(athlete.athlete_id).refresh_token

    in_virtual_time(sqlite_url, scenario, latency=0.3)


def test_revoked_token_fails_the_job_without_retry(store_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(300)
        env.fake.revoke(athlete.athlete_id)
        runner = env.runner()
        _job, _ = await runner.submit(user)
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.FAILED
        assert done.attempts == 1  # not retried
        error = done.error or ""
        assert "not retried" in error and "Unauthorized" in error and "\n" not in error
        assert athlete.refresh_token not in error and athlete.access_token not in error
        assert await runner.run_next() is None
        assert await env.store.count_activities(user) == 0

    in_virtual_time(store_url, scenario)


def test_rate_limit_mid_sync_reschedules_to_the_window_reset_and_completes(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        # Other users of the app already spent 95 of the 100 reads of this quarter hour.
        env.fake.spend_rate_limit(95)
        user, _ = await env.athlete(2000)  # 13 list requests
        platform = LocalPlatform("hobby", clock=env.clock)
        service = JobService(env.runner("resumable", deadline_margin_s=1.0))
        invocation = platform.start_invocation()
        job, _ = await service.submit(user, invocation=invocation)
        invocation.finish_response()
        await invocation.drain()
        paused = await env.store.get_job(job.id)
        assert paused is not None and paused.status is JobStatus.PENDING and paused.attempts == 0
        assert "RateLimited" in (paused.error or "")
        reset = paused.next_attempt_at
        assert reset is not None and reset.timestamp() % 900 == CLOCK_SKEW_S  # the next quarter hour's skew allowance
        assert 0 < reset.timestamp() - env.clock.now() <= 900
        # Five reads fitted: 200, then 199 new on each (each later one re-reads its boundary).
        assert await env.store.count_activities(user) == 200 + 4 * 199
        # The client polls every 5 s; once the window resets, the polls continue the job.
        while True:
            await env.clock.sleep(5)
            poll = platform.start_invocation()
            row = await service.status(job.id, user_id=user, invocation=poll)
            poll.finish_response()
            await poll.drain()
            row = await env.store.get_job(job.id)
            assert row is not None
            if row.status is JobStatus.COMPLETED:
                break
        assert row.completed_at is not None and row.completed_at >= reset
        assert await env.store.count_activities(user) == 2000

    in_virtual_time(sqlite_url, scenario, latency=0.2)


def test_a_worker_puts_a_rate_limited_job_back_until_the_window_instead_of_holding_it(sqlite_url: str) -> None:
    """Under a worker (no deadline) a window that resets minutes later is waited out in the store: the job shows
    pending with the reset as its next attempt, holds no lease, spends no attempt, and the type's pause tells every
    process; the worker holding it asleep would show it running, renew its lease all along, and at the daily
    limit hold it for hours."""

    async def scenario(env: Env) -> None:
        env.fake.spend_rate_limit(95)  # other users of the app spent 95 of this quarter hour's 100 reads
        user, _ = await env.athlete(2000)
        runner = env.runner("worker")
        job, _ = await runner.submit(user)
        started = env.clock.now()
        put_back = await runner.run_next()
        assert put_back is not None and put_back.id == job.id
        assert put_back.status is JobStatus.PENDING and put_back.attempts == 0 and put_back.locked_by is None
        assert "RateLimited" in (put_back.error or "") and "waits in the store" in (put_back.error or "")
        reset = put_back.next_attempt_at
        assert reset is not None and reset.timestamp() % 900 == CLOCK_SKEW_S and reset.timestamp() - started > 60
        assert env.clock.now() - started < 30  # five pages, not a sleep until the window
        assert await env.store.count_activities(user) == 200 + 4 * 199
        pause = await env.store.job_type_pause("strava_sync")
        assert pause is not None and pause.until == pytest.approx(reset.timestamp())
        assert await runner.run_next() is None  # nothing is due before the reset
        await env.clock.sleep(reset.timestamp() - env.clock.now())
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.COMPLETED and done.attempts == 1
        assert await env.store.count_activities(user) == 2000

    in_virtual_time(sqlite_url, scenario, latency=0.2)


def test_server_error_bursts_are_retried_and_the_sync_completes(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, _ = await env.athlete(3000)
        runner = env.runner()
        job, _ = await runner.submit(user)
        for _ in range(job.max_attempts):
            done = await runner.run_next()
            if done is not None and done.status is JobStatus.COMPLETED:
                break
            await env.clock.sleep(10)
        assert done is not None and done.status is JobStatus.COMPLETED, done.error
        assert await env.store.count_activities(user) == 3000
        assert sum(1 for r in env.fake.requests if r.status >= 500) > 0

    in_virtual_time(sqlite_url, scenario, faults=Faults(error_rate=0.2))


def test_malformed_page_gives_a_clear_error_and_keeps_what_was_stored(store_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(1000)
        env.fake.faults.malformed_pages = {(athlete.athlete_id, 3)}
        runner = env.runner(retry=RetryPolicy(base_s=0.0, jitter=0.0))
        _job, _ = await runner.submit(user, max_attempts=2)
        await runner.run_next()
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.FAILED
        error = done.error or ""
        assert "MalformedResponse" in error and "activities before 20" in error and "\n" not in error
        assert await env.store.count_activities(user) == 200 + 199  # the first two pages stay stored
        # The checkpoint's cursor points at the bad page: the start of the oldest stored activity, + 1 s.
        oldest = env.fake.activity(env.fake.activity_ids(athlete.athlete_id)[200 + 199 - 1])
        assert done.progress["before"] == _start(oldest) + 1

    in_virtual_time(store_url, scenario)


def test_a_page_strava_cannot_serve_fails_its_job_and_is_not_taken_for_an_outage(sqlite_url: str) -> None:
    """A deployment's only athlete, whose third page Strava answers 500 every time: as each attempt gives up, the
    client probes another request of theirs, Strava answers it, and the job fails after its attempts as it should,
    with a one-line error and the first two pages kept: it does not wait for an outage that is not there."""

    async def scenario(env: Env) -> None:
        user, athlete = await env.athlete(1000)
        env.fake.faults.failing_pages = {(athlete.athlete_id, 3)}
        runner = env.runner("worker")
        job, _ = await runner.submit(user)
        done = job
        for _ in range(job.max_attempts):
            done = await runner.run_next() or done
            await env.clock.sleep(60)
        assert done.status is JobStatus.FAILED, done
        error = done.error or ""
        assert "StravaUnavailable: GET /athlete/activities: HTTP 500 after 4 attempts" in error and "\n" not in error
        assert "Strava is down" not in error and done.attempts == job.max_attempts
        probes = [r for r in env.fake.requests if r.path == "/api/v3/athlete"]  # the sync itself asks none
        assert [r.status for r in probes] == [200, 200, 200]  # each attempt's, as it gave up: answered
        assert await env.store.count_activities(user) == 200 + 199

    in_virtual_time(sqlite_url, scenario)


def test_a_process_that_starts_during_a_strava_outage_learns_it_from_the_store(sqlite_url: str) -> None:
    """Serverless instances share nothing but the store. One instance finds Strava down; a second one, started
    cold with its own client, then runs no job into the outage: while the stored pause lasts it puts a due job back
    without a request or a spent attempt, and the look after the pause is one request that continues the first
    instance's count of looks. Once Strava is back, both syncs complete on their first attempt, every activity
    stored once, and the stored outage is cleared."""

    async def scenario(env: Env) -> None:
        started = env.clock.now()
        env.fake.faults.down = (started, started + 600)
        user_1, _ = await env.athlete(300)
        first = env.runner("resumable")
        job_1, _ = await first.submit(user_1)
        down = await first.run_next()  # 4 failures, and a probe as the request gives up: Strava is down
        assert down is not None and down.attempts == 0 and "Strava is down" in (down.error or "")
        pause = await env.store.job_type_pause("strava_sync")
        assert pause is not None and pause.looks == 1 and pause.until > env.clock.now()

        cold_client = env.fake.client(tokens=env.store, rng=random.Random(2))
        cold = JobRunner(
            env.store,
            handlers=register_strava_sync(HandlerRegistry()),
            clock=env.clock,
            strategy="resumable",
            resources={"strava": cold_client},
            retry=RetryPolicy(base_s=1.0, jitter=0.0),
            rng=random.Random(3),
        )
        try:
            user_2, _ = await env.athlete(300)
            job_2, _ = await cold.submit(user_2)
            sent = len(env.fake.requests)
            await cold.continue_due()
            held = await env.store.get_job(job_2.id)
            assert held is not None and held.status is JobStatus.PENDING and held.attempts == 0
            assert held.next_attempt_at is not None and held.next_attempt_at.timestamp() == pytest.approx(pause.until)
            assert len(env.fake.requests) == sent  # put back without asking Strava
            assert cold.paused_until["strava_sync"] == pytest.approx(pause.until)

            await env.clock.sleep(pause.until - env.clock.now() + 0.1)
            await cold.continue_due()  # the look after the pause: one request, and Strava is still down
            assert len(env.fake.requests) == sent + 1
            looked = await env.store.get_job(job_1.id)
            assert looked is not None and looked.attempts == 0, looked  # no attempt spent on the look
            assert "down at the last look (1 in a row, by another process)" in (looked.error or "")
            pause = await env.store.job_type_pause("strava_sync")
            assert pause is not None and pause.looks == 2 and pause.until - env.clock.now() > 30

            for _ in range(20):  # looks every 1, 2, 4, then 5 minutes, until Strava is back at 600 s
                jobs = [await env.store.get_job(j.id) for j in (job_1, job_2)]
                pending = [j for j in jobs if j is not None and not j.is_final]
                if not pending:
                    break
                due = min(j.next_attempt_at.timestamp() for j in pending if j.next_attempt_at is not None)
                due = max(due, cold.paused_until.get("strava_sync", 0.0))  # a job put back earlier waits too
                await env.clock.sleep(max(0.0, due - env.clock.now()) + 0.1)
                await cold.continue_due()
            done_1, done_2 = await env.store.get_job(job_1.id), await env.store.get_job(job_2.id)
            assert done_1 is not None and done_1.status is JobStatus.COMPLETED and done_1.attempts == 1, done_1
            assert done_2 is not None and done_2.status is JobStatus.COMPLETED and done_2.attempts == 1, done_2
            assert await env.store.count_activities(user_1) == await env.store.count_activities(user_2) == 300
            cleared = await env.store.job_type_pause("strava_sync")
            assert cleared is not None and cleared.looks == 0
        finally:
            await cold_client.aclose()

    in_virtual_time(sqlite_url, scenario)


async def _burst_at_a_reset(env: Env, *, share_budget: bool) -> tuple[int, int]:
    """Three instances (clients with their own budgets, on one store) each ask four first pages at once from a
    window of six reads, and may not wait for the next one; returns (pages, RateLimited raised)."""
    limits = (6, 1000)
    env.fake.read_limits = limits
    users = [(await env.athlete(50))[0] for _ in range(12)]
    clients = [
        env.fake.client(
            tokens=env.store,
            rng=random.Random(k),
            budget=RateLimitBudget(read_limits=limits),
            share_budget=share_budget,
        )
        for k in range(3)
    ]
    try:
        answers = await asyncio.gather(
            *(clients[k % 3].list_activities(user, page=1, max_wait_s=0) for k, user in enumerate(users)),
            return_exceptions=True,
        )
    finally:
        for client in clients:
            await client.aclose()
    pages = [a for a in answers if isinstance(a, list)]
    limited = [a for a in answers if isinstance(a, RateLimited)]
    assert len(pages) + len(limited) == 12 and all(len(page) == 50 for page in pages), answers
    return len(pages), len(limited)


def test_instances_take_a_windows_slots_from_the_store_and_strava_refuses_none(store_url: str) -> None:
    """Serverless instances share nothing but the store, and an instance's budget learns the others' requests only
    from Strava's answers. At a reset, three instances that each send four first pages at once would send twelve
    requests into a window of six, and Strava would refuse the excess (counting it against the day all the same).
    Every request takes a slot in the store first: six go, the other six wait for the next window (here they may
    not wait, so they raise RateLimited before any request), and Strava refuses none."""

    async def scenario(env: Env) -> None:
        assert await _burst_at_a_reset(env, share_budget=True) == (6, 6)
        assert env.fake.counts["rate_limited"] == 0
        assert env.list_requests() == 6

    in_virtual_time(store_url, scenario, latency=0.4)


def test_instances_that_count_only_their_own_requests_are_refused_the_excess(sqlite_url: str) -> None:
    """The same burst with each instance counting only its own requests (``share_budget=False``, syncsim before
    the store's count): every instance believes the window is its own and sends until a 429 teaches it otherwise,
    so Strava refuses requests beyond the six it serves (three here: Strava refuses at once, and each instance
    refused stops sending)."""

    async def scenario(env: Env) -> None:
        assert await _burst_at_a_reset(env, share_budget=False) == (6, 6)
        assert env.fake.counts["rate_limited"] == 3
        assert env.list_requests() == 9

    in_virtual_time(sqlite_url, scenario, latency=0.4)


def test_a_cold_process_uses_the_limits_other_instances_read_and_pauses_nothing(sqlite_url: str) -> None:
    """Under an app's raised limits (600 reads / 15 min), warm instances have taken 150 reads of the window. A
    process that has not had an answer from Strava yet knows only the default 100: held to it, it would wait for
    the window and pause every sync of the deployment."""

    async def scenario(env: Env) -> None:
        env.fake.read_limits, env.fake.overall_limits = (600, 6000), (1200, 12000)
        user, _ = await env.athlete(300)
        now = env.clock.now()
        warm = SlotRequest(True, quarter_hour_start(now), utc_day_start(now), (1200, 12000), (600, 6000))
        assert [await env.store.take_rate_slot(warm) for _ in range(150)] == [None] * 150
        runner = env.runner("resumable")
        await runner.submit(user)
        done = await runner.run_next()
        assert done is not None and done.status is JobStatus.COMPLETED and done.attempts == 1, done
        assert await env.store.count_activities(user) == 300
        assert await env.store.job_type_pause("strava_sync") is None
        assert env.client.budget.refused == 0  # nothing held back for the window

    in_virtual_time(sqlite_url, scenario, latency=0.3)


def test_sync_killed_mid_way_resumes_and_stores_every_activity_once(sqlite_url: str) -> None:
    async def scenario(env: Env) -> None:
        user, _athlete = await env.athlete(5000)  # 28 list requests of 1 s: far past hobby's 10 s
        platform = LocalPlatform("hobby", clock=env.clock)
        service = JobService(env.runner("waituntil", lease_s=30))
        invocation = platform.start_invocation()
        job, _ = await service.submit(user, invocation=invocation)
        invocation.finish_response()
        await invocation.drain()
        assert invocation.killed
        killed = await env.store.get_job(job.id)
        assert killed is not None and killed.status is JobStatus.RUNNING
        stored_when_killed = await env.store.count_activities(user)
        assert 0 < stored_when_killed < 5000
        assert killed.progress["activities"] == stored_when_killed
        await env.clock.sleep(31)  # the lease lapses
        done = await env.runner("worker").run_next()
        assert done is not None and done.status is JobStatus.COMPLETED
        assert (done.attempts, done.crashes) == (1, 1)  # the kill was a crash, not a spent attempt
        assert await env.store.count_activities(user) == 5000
        assert done.result is not None and done.result["total_activities"] == 5000
        # The resumed run started at the checkpoint: at most the page being stored and the one in flight at the
        # kill were asked again.
        assert env.list_requests() <= list_requests_needed(5000) + 2

    in_virtual_time(sqlite_url, scenario, latency=1.0)


@pytest.mark.parametrize(
    ("fault", "counted", "said"),
    [
        # A 5xx: the client tries no retry that could not be answered with the margin left to store the page.
        ("error_rate", "errors_5xx", "no time left to retry before the deadline"),
        # A request Strava holds unanswered (the client's timeout, 10 s, is a whole hobby invocation): given up half
        # the margin before the deadline. Before, the platform killed the invocation in the middle of it.
        ("timeout_rate", "timeouts", "no answer within the"),
    ],
)
def test_a_strava_fault_near_the_deadline_is_continued_by_the_next_invocation(
    sqlite_url: str, fault: str, counted: str, said: str
) -> None:
    """Under resumable, a page that Strava fails near the end of an invocation is the next invocation's: the
    invocation is not killed and no attempt is spent; later invocations finish the sync, storing every activity
    once."""

    async def scenario(env: Env) -> None:
        user, _ = await env.athlete(5000)  # 28 list requests of 0.8 s: three hobby invocations at least
        runner = env.runner("resumable")
        platform = LocalPlatform("hobby", clock=env.clock)
        job, _ = await runner.submit(user)
        started = env.clock.now()

        async def outage() -> None:  # every request from 6 s into the first invocation on fails
            await env.clock.sleep(6.0)
            setattr(env.fake.faults, fault, 1.0)

        outage_task = asyncio.ensure_future(outage())
        invocation = platform.start_invocation()
        paused = await runner.run_next(invocation=invocation, job_id=job.id)
        invocation.finish_response()
        await invocation.drain()
        await outage_task
        assert not invocation.killed and env.clock.now() - started < 10.0
        assert paused is not None and paused.status is JobStatus.PENDING, paused
        error = paused.error or ""
        assert "OutOfTime" in error and said in error and "\n" not in error
        assert (paused.attempts, paused.crashes) == (0, 0)  # pending again: the attempt was not spent
        assert env.fake.counts[counted] > 0
        stored = await env.store.count_activities(user)
        assert 0 < stored < 5000 and paused.progress["activities"] == stored

        setattr(env.fake.faults, fault, 0.0)
        done = paused
        for _ in range(10):
            invocation = platform.start_invocation()
            done = await runner.run_next(invocation=invocation, job_id=job.id)
            invocation.finish_response()
            await invocation.drain()
            assert not invocation.killed
            if done is not None and done.status is JobStatus.COMPLETED:
                break
        assert done is not None and done.status is JobStatus.COMPLETED, done
        assert (done.attempts, done.crashes) == (1, 0)
        assert await env.store.count_activities(user) == 5000
        assert done.result is not None and done.result["total_activities"] == 5000

    in_virtual_time(sqlite_url, scenario, latency=0.8)


def test_the_sync_runs_under_a_running_event_loop_too(sqlite_url: str) -> None:
    """run_virtual works from inside a running loop (as in a Jupyter cell)."""

    async def outer() -> None:
        async def scenario(env: Env) -> None:
            user, _ = await env.athlete(10)
            runner = env.runner()
            await runner.submit(user)
            done = await runner.run_next()
            assert done is not None and done.status is JobStatus.COMPLETED

        in_virtual_time(sqlite_url, scenario)

    asyncio.run(outer())


@pytest.mark.postgres
def test_sync_killed_mid_way_resumes_on_postgres_in_real_time(pg_url: str) -> None:
    """The same kill-and-resume on PostgreSQL, in real time scaled down 20x (0.05 s per page, 0.5 s limit)."""

    async def scenario(env: Env) -> None:
        env.fake.latency = LatencyModel(median_s=0.05)
        user, _ = await env.athlete(5000)
        platform = LocalPlatform(platform_spec("hobby").with_limit(0.5), clock=env.clock)
        service = JobService(env.runner("waituntil", lease_s=1.0))
        invocation = platform.start_invocation()
        job, _ = await service.submit(user, invocation=invocation)
        invocation.finish_response()
        await invocation.drain()
        assert invocation.killed
        stored_when_killed = await env.store.count_activities(user)
        assert 0 < stored_when_killed < 5000
        await env.clock.sleep(1.1)
        done = await env.runner("worker", lease_s=1.0).run_next()
        assert done is not None and done.id == job.id and done.status is JobStatus.COMPLETED
        assert await env.store.count_activities(user) == 5000
        assert env.list_requests() <= list_requests_needed(5000) + 2

    in_virtual_time(pg_url, scenario)


def test_a_detail_page_larger_than_the_rate_window_keeps_what_it_fetched_and_completes(sqlite_url: str) -> None:
    """A page of 200 new activities needs 200 detail reads; a quarter hour has 100. The details fetched before
    the 429 are stored with the page's cursor left where it was, so each window adds to them: before this was
    kept, the sync fetched the same first hundred every window and never finished."""

    async def scenario(env: Env) -> None:
        user, _ = await env.athlete(250)
        runner = env.runner("resumable")
        platform = LocalPlatform("hobby", clock=env.clock)
        job, _ = await runner.submit(user, {"detail": True})
        windows = 0
        for _ in range(20):
            invocation = platform.start_invocation()
            done = await runner.run_next(invocation=invocation, job_id=job.id)
            invocation.finish_response()
            await invocation.drain()
            if done is None or done.status is not JobStatus.PENDING:
                break
            assert done.next_attempt_at is not None
            windows += "RateLimited" in (done.error or "")
            await env.clock.sleep(max(0.0, done.next_attempt_at.timestamp() - env.clock.now()))
        row = await env.store.get_job(job.id)
        assert row is not None and row.status is JobStatus.COMPLETED, row
        assert windows == 2  # 1 + 253 reads: two resets of the 100-read window
        details = [r for r in env.fake.requests if r.path.startswith("/api/v3/activities/")]
        assert len(details) == len({r.path for r in details}) == 250  # none fetched twice
        stored = await env.store.stored_activities(user, [int(r.path.rsplit("/", 1)[1]) for r in details])
        assert len(stored) == 250 and all(s.detailed for s in stored.values())
        assert await env.store.count_activities(user) == 250

    in_virtual_time(sqlite_url, scenario, latency=0.1)


def test_a_turn_given_away_under_a_scarce_budget_continues_in_the_next_window(sqlite_url: str) -> None:
    """Round-robin: with fewer reads left in the window than other jobs due, a sync gives its turn away after a
    page, due again only in the next window (within a second of its start: the order turns were given away in),
    so its client does not poll for a turn that cannot come before then."""

    async def scenario(env: Env) -> None:
        # Past the window's first second: usage reported for a request sent in it counts for the window before.
        await env.clock.sleep(5.0)
        now = env.clock.now()
        for _ in range(3):  # three other syncs, served already and due again
            other, _ = await env.store.create_job(
                user_id=uuid.uuid4(), type="strava_sync", payload={}, max_attempts=3, now=now
            )
            claimed = await env.store.claim_job(worker_id="w", now=now, lease_s=30, job_id=other.id)
            assert claimed is not None
            assert await env.store.save_progress(other.id, worker_id="w", progress={"x": 1}, now=now, lease_s=30)
            assert await env.store.reschedule_job(other.id, worker_id="w", at=now, reason="turn", now=now)
        env.fake.spend_rate_limit(97)  # 3 reads left in this quarter hour: fewer than the 3 others after one
        user, _ = await env.athlete(1000)
        runner = env.runner("resumable")
        job, _ = await runner.submit(user)
        invocation = LocalPlatform("hobby", clock=env.clock).start_invocation()
        done = await runner.run_next(invocation=invocation, job_id=job.id)
        invocation.finish_response()
        await invocation.drain()
        assert done is not None and done.status is JobStatus.PENDING and "YieldTurn" in (done.error or "")
        assert done.progress["pages"] == 1 and env.list_requests() == 1
        assert done.next_attempt_at is not None
        window = (now // 900 + 1) * 900 + CLOCK_SKEW_S  # the next window, once Strava's clock is surely in it
        assert window <= done.next_attempt_at.timestamp() < window + 1.0

    in_virtual_time(sqlite_url, scenario, latency=0.1)
