"""``/api/cron/tick``: every job keeps moving with nobody watching, and only the tick's scheduler may ask.

Over an httpx ASGI transport to the real app, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from datetime import datetime
from typing import Any, cast

import pytest

from syncsim.defaults import EVENTS_WAIT_FOR_SYNC_S, TICK_LOOKAHEAD_S
from syncsim.job_types import default_handlers
from syncsim.jobs.model import JobStatus
from syncsim.jobs.runner import JobRunner
from syncsim.stores import Store, open_store
from syncsim.strava.events import EVENTS_JOB_TYPE
from tests.support.api import CRON_SECRET, ApiHarness, assert_json_error
from tests.support.clocks import ManualClock

TICK = "/api/cron/tick"
BEARER = {"Authorization": f"Bearer {CRON_SECRET}"}
#: What the upkeep reports when it submits nothing.
NOTHING_SUBMITTED = {"eventJobs": 0, "reconciles": 0}


async def _pending_demo_jobs(api: ApiHarness, n: int, **payload: object) -> list[uuid.UUID]:
    """``n`` demo jobs of ``n`` users, written but not started (nobody polls them)."""
    return [(await api.runner.submit(uuid.uuid4(), dict(payload), type="demo"))[0].id for _ in range(n)]


async def test_a_tick_continues_every_due_job_and_says_what_it_did(store: Store) -> None:
    api = ApiHarness(store, strategy="resumable", demo=True)
    jobs = await _pending_demo_jobs(api, 5, steps=2, step_s=0.01)
    async with api.client() as client:
        answer = await client.post(TICK, headers=BEARER)
        again = await client.get(TICK, headers=BEARER)  # Vercel Cron sends GET
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert (summary["continued"], summary["completed"], summary["failed"]) == (5, 5, 0)
    assert (summary["stillDue"], summary["nextDueAt"]) == (0, None)
    for job_id in jobs:
        job = await store.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
    assert again.status_code == 200 and again.json()["continued"] == 0  # nothing due: a cheap no-op


async def test_a_tick_waits_out_a_pause_another_process_stored_and_says_why(store: Store) -> None:
    """Another instance found Strava down and stored the pause of its job type: the tick (a process that never met
    the outage) runs none of that type's due jobs before the pause ends, spends none of their attempts, and its
    answer names the pause, its end and its reason. After the pause it runs them."""
    api = ApiHarness(store, strategy="resumable", demo=True)
    api.service.tick_lookahead_s = 0.5  # the pause ends after it: the tick does not wait for it
    jobs = await _pending_demo_jobs(api, 3, steps=1, step_s=0.0)
    now = api.clock.now()
    reason = "StravaDown: GET /athlete/activities: HTTP 503 after 4 attempts; Strava is down"
    await store.pause_job_type("demo", until=now + 1.0, looks=1, reason=reason, now=now)
    async with api.client() as client:
        held = (await client.post(TICK, headers=BEARER)).json()
        for job_id in jobs:
            job = await store.get_job(job_id)
            assert job is not None and job.status is JobStatus.PENDING and job.attempts == 0
        await asyncio.sleep(max(0.0, now + 1.0 - api.clock.now()) + 0.05)
        after = (await client.post(TICK, headers=BEARER)).json()
    assert held["completed"] == 0  # due, but held back: stillDue counts them
    [pause] = held["paused"]
    assert pause["type"] == "demo" and pause["reason"] == reason
    assert abs(datetime.fromisoformat(pause["until"]).timestamp() - (now + 1.0)) < 0.001
    assert (after["completed"], after["stillDue"], after["paused"]) == (3, 0, [])
    for job_id in jobs:
        job = await store.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.attempts == 1


class _CountingStore:
    """``store`` as is, counting the calls made of each of its methods."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target):
            return target

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await target(*args, **kwargs)

        return counted


async def _job_retried_at(api: ApiHarness, store: Store, user_id: uuid.UUID, delay_s: float) -> tuple[uuid.UUID, float]:
    """A demo job an earlier invocation ran and put back until ``delay_s`` from now: (its id, when it is due)."""
    job, _ = await api.runner.submit(user_id, {"steps": 1, "step_s": 0.0}, type="demo")
    claimed = await store.claim_job(worker_id="an-earlier-invocation", now=api.clock.now(), lease_s=60.0)
    assert claimed is not None and claimed.id == job.id
    retry_at = api.clock.now() + delay_s
    assert await store.retry_job(job.id, worker_id="an-earlier-invocation", error="5xx", retry_at=retry_at, now=0.0)
    return job.id, retry_at


async def test_a_tick_with_nothing_due_claims_nothing_and_says_when_the_next_job_is_due(
    store: Store, user_id: uuid.UUID
) -> None:
    """Nothing due, nor about to be: the same summary as ever, for no claim at all, answered at once."""
    counting = _CountingStore(store)
    api = ApiHarness(cast(Store, counting), strategy="resumable", demo=True)
    job_id, retry_at = await _job_retried_at(api, store, user_id, TICK_LOOKAHEAD_S + 60.0)
    counting.calls.clear()
    started = api.clock.now()
    async with api.client() as client:
        quiet = (await client.post(TICK, headers=BEARER)).json()
    assert counting.calls["claim_job"] == 0 and api.clock.now() - started < TICK_LOOKAHEAD_S
    next_due_at = quiet.pop("nextDueAt")
    assert abs(datetime.fromisoformat(next_due_at).timestamp() - retry_at) < 0.001
    assert quiet == {
        "continued": 0,
        "completed": 0,
        "failed": 0,
        "reclaimed": 0,
        "stillDue": 0,
        "paused": [],
        **NOTHING_SUBMITTED,
    }
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING and job.runs == 1


async def test_a_tick_waits_for_a_job_due_within_its_lookahead_and_runs_it(store: Store, user_id: uuid.UUID) -> None:
    """A scheduler fires on the clock, right at a rate-limit window's reset, and the jobs that window held back are
    due a moment later: the tick waits for them rather than leave them to the next tick, a minute later."""
    api = ApiHarness(store, strategy="resumable", demo=True)
    job_id, retry_at = await _job_retried_at(api, store, user_id, 0.5)
    async with api.client() as client:
        summary = (await client.post(TICK, headers=BEARER)).json()
    assert api.clock.now() >= retry_at
    assert (summary["continued"], summary["completed"], summary["stillDue"], summary["nextDueAt"]) == (1, 1, 0, None)
    done = await store.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.runs == 2


async def test_a_tick_does_not_wait_for_a_job_it_would_have_no_time_to_run(store: Store, user_id: uuid.UUID) -> None:
    """On a 3 s platform with a 1 s margin, a job due in 2.5 s is left to the next tick: the tick answers at once."""
    from syncsim.platforms.spec import platform_spec

    api = ApiHarness(store, strategy="resumable", demo=True, platform=platform_spec("hobby").with_limit(3.0))
    api.runner.deadline_margin_s = 1.0
    job_id, retry_at = await _job_retried_at(api, store, user_id, 2.5)
    async with api.client() as client:
        summary = (await client.post(TICK, headers=BEARER)).json()
    assert api.clock.now() < retry_at and summary["continued"] == 0
    assert abs(datetime.fromisoformat(summary["nextDueAt"]).timestamp() - retry_at) < 0.001
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret-of-the-same-length!"}, {"Authorization": f"Basic {CRON_SECRET}"}],
)
async def test_a_missing_or_wrong_secret_continues_nothing_and_reveals_nothing(
    store: Store, headers: dict[str, str]
) -> None:
    api = ApiHarness(store, strategy="resumable", demo=True)
    answers = []
    async with api.client() as client:
        answers.append(await client.post(TICK, headers=headers))  # the queue is empty
        jobs = await _pending_demo_jobs(api, 2, steps=1, step_s=0.0)
        answers.append(await client.post(TICK, headers=headers))  # two jobs are due
        answers.append(await client.get(TICK, headers=headers))
    assert len({(a.status_code, a.text) for a in answers}) == 1
    assert_json_error(answers[0], 401)
    for job_id in jobs:
        job = await store.get_job(job_id)
        assert job is not None and job.status is JobStatus.PENDING and job.runs == 0


async def test_without_a_configured_secret_the_tick_is_a_clear_503(store: Store) -> None:
    api = ApiHarness(store, strategy="resumable", demo=True, cron_secret=None)
    jobs = await _pending_demo_jobs(api, 1, steps=1, step_s=0.0)
    async with api.client() as client:
        answer = await client.post(TICK, headers=BEARER)
    assert "CRON_SECRET" in assert_json_error(answer, 503)
    job = await store.get_job(jobs[0])
    assert job is not None and job.status is JobStatus.PENDING


async def test_a_tick_on_an_unmigrated_sqlite_store_is_a_503_that_says_to_migrate(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As ``/healthz`` on such a store: a one-line 503, and a log line saying what to do, not a traceback."""
    store = open_store(sqlite_url)
    api = ApiHarness(store, strategy="resumable", demo=True)
    caplog.set_level(logging.WARNING, logger="syncsim.api")
    async with api.client() as client:
        answer = await client.get(TICK, headers=BEARER)
    assert_json_error(answer, 503)
    [logged] = [r for r in caplog.records if r.name == "syncsim.api"]
    assert logged.exc_info is None and "run `syncsim migrate`" in logged.getMessage(), logged.getMessage()
    await store.close()


async def test_a_tick_stops_at_its_deadline_margin_and_leaves_the_rest_due(store: Store) -> None:
    """On a 3 s platform with a 1 s margin a tick has about 2 s: jobs of 0.4 s steps stop cleanly (resumable),
    and the next tick goes on where they stopped."""
    from syncsim.platforms.spec import platform_spec

    api = ApiHarness(store, strategy="resumable", demo=True, platform=platform_spec("hobby").with_limit(3.0))
    api.runner.deadline_margin_s = 1.0
    jobs = await _pending_demo_jobs(api, 2, steps=8, step_s=0.4)
    async with api.client() as client:
        first = (await client.post(TICK, headers=BEARER)).json()
        assert first["completed"] == 0 and first["stillDue"] >= 1
        for _ in range(10):
            summary = (await client.post(TICK, headers=BEARER)).json()
            if summary["stillDue"] == 0 and summary["continued"] == 0:
                break
    for job_id in jobs:
        job = await store.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.progress == {"steps_done": 8}
        assert job.crashes == 0  # stopped before the deadline, never killed
    assert not any(invocation.killed for invocation in api.platform.invocations)


async def test_concurrent_ticks_never_run_one_job_twice(store: Store) -> None:
    api = ApiHarness(store, strategy="resumable", demo=True)
    jobs = await _pending_demo_jobs(api, 12, steps=2, step_s=0.02)
    async with api.client() as client:
        answers = await asyncio.gather(*(client.post(TICK, headers=BEARER) for _ in range(4)))
    assert sum(a.json()["completed"] for a in answers) == 12
    for job_id in jobs:
        job = await store.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.runs == 1


async def test_a_tick_reclaims_a_killed_invocations_job_and_finishes_it(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, strategy="resumable", demo=True, lease_s=0.2)
    job, _ = await api.runner.submit(user_id, {"steps": 2, "step_s": 0.01}, type="demo")
    claimed = await store.claim_job(worker_id="a-killed-invocation", now=api.clock.now(), lease_s=0.2)
    assert claimed is not None and claimed.id == job.id
    await asyncio.sleep(0.3)  # its lease lapses
    async with api.client() as client:
        summary = (await client.post(TICK, headers=BEARER)).json()
    assert summary["completed"] == 1
    done = await store.get_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.crashes == 1 and done.attempts == 1


async def test_the_upkeep_asks_for_reconciles_and_a_job_for_waiting_webhook_events(store: Store) -> None:
    from tests.integration.test_api_strava import StravaWorld

    world = StravaWorld(store, strategy="resumable")
    users = [uuid.uuid4() for _ in range(2)]
    athlete_ids = [await world.connected_athlete(user, activities=20) for user in users]
    # An event recorded as its job ended: nothing would re-read it until the next event.
    [activity_id] = world.fake.activity_ids(athlete_ids[1])[:1]
    await store.add_activity_events(users[1], [activity_id], now=world.api.clock.now())
    async with world.api.client() as client:
        summary = (await client.post(TICK, headers=BEARER)).json()
        assert (summary["reconciles"], summary["eventJobs"]) == (2, 1)
        again = (await client.post(TICK, headers=BEARER)).json()
    assert (again["reconciles"], again["eventJobs"]) == (0, 0)  # reconciled now, and no event waits
    for user in users:
        assert await store.count_activities(user) == 20
        assert await store.reconciled_at(user) is not None
    jobs = [job for user in users for job in await store.list_jobs(user_id=user)]
    kinds = sorted((job.type, job.payload.get("mode")) for job in jobs)
    assert kinds == [(EVENTS_JOB_TYPE, None), ("strava_sync", "reconcile"), ("strava_sync", "reconcile")]
    # The event waited for the reconcile the same tick submitted (a page listed before a change, written after the
    # event's re-read, would undo it), and is read once its job comes due again.
    [events_job] = [job for job in jobs if job.type == EVENTS_JOB_TYPE]
    assert events_job.status is JobStatus.PENDING and "read after it" in (events_job.error or ""), events_job
    assert await store.pending_activity_events(users[1], limit=10) != []
    later = JobRunner(
        store,
        handlers=default_handlers(),
        clock=ManualClock(world.api.clock.now() + EVENTS_WAIT_FOR_SYNC_S + 1),
        resources={"strava": world.client},
    )
    done = await later.run_job(events_job.id)
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert await store.pending_activity_events(users[1], limit=10) == []
    await world.client.aclose()


def test_the_tick_route_is_described_with_its_own_bearer() -> None:
    from syncsim.api.openapi import openapi_document

    document = openapi_document()
    operation = document["paths"][TICK]["post"]
    assert operation["security"] == [{"cronSecret": []}] and set(document["paths"][TICK]) == {"get", "post"}
    assert {"200", "401", "503"} <= set(operation["responses"])


async def test_a_poll_of_a_job_held_back_by_a_spent_rate_limit_shows_when_and_starts_nothing(store: Store) -> None:
    """While the app-wide budget is spent, nothing can continue a due job before the window's reset: the status
    poll says so (nextAttemptAt = the reset), so the client waits for it instead of polling for nothing."""
    api = ApiHarness(store, strategy="resumable", demo=True)
    user = uuid.uuid4()
    job, _ = await api.runner.submit(user, {"steps": 1, "step_s": 0.0}, type="demo")
    reset = api.clock.now() + 600.0
    api.runner.paused_until["demo"] = reset
    async with api.client() as client:
        held = await client.get(f"/api/sync/{job.id}", headers=api.auth(user))
        await api.drain()
        assert held.status_code == 200, held.text
        assert datetime.fromisoformat(held.json()["nextAttemptAt"]).timestamp() == pytest.approx(reset, abs=1e-3)
        stored = await store.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.PENDING and stored.attempts == 0  # not started
        api.runner.paused_until.clear()  # the window reset: the next poll continues it
        await client.get(f"/api/sync/{job.id}", headers=api.auth(user))
        await api.drain()
    done = await store.get_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED
