"""One behavioural suite for every Store backend (a SQLite file, SQLite ``:memory:`` and a real PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncsim import defaults
from syncsim.errors import StoreError, StoreUnavailable
from syncsim.jobs.model import JobStatus
from syncsim.stores import Store, open_store
from syncsim.stores.sqlite import SQLiteStore
from syncsim.strava.models import Activity, StravaTokens
from syncsim.strava.ratelimit import SlotRequest, quarter_hour_start, utc_day_start
from tests.conftest import BACKENDS
from tests.support.sqlite import full_disk, write_lock_held

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z


@pytest.fixture(params=[*BACKENDS, "sqlite-memory"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The conftest's backends, plus SQLite ``:memory:`` (the simulator's store)."""
    if request.param == "sqlite-memory":
        return "sqlite:///:memory:"
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


async def _create(store: Store, user: uuid.UUID, *, type: str = "demo", max_attempts: int = 3, now: float = T0):
    return await store.create_job(user_id=user, type=type, payload={"n": 1}, max_attempts=max_attempts, now=now)


async def test_created_job_is_pending_with_the_design_defaults(store: Store, user_id: uuid.UUID) -> None:
    job, created = await _create(store, user_id)
    assert created
    assert job.status is JobStatus.PENDING
    assert (job.attempts, job.max_attempts, job.payload) == (0, 3, {"n": 1})
    assert job.created_at == datetime.fromtimestamp(T0, UTC)
    assert job.started_at is None and job.completed_at is None and job.result is None
    assert await store.get_job(job.id) == job


async def test_second_submit_for_an_active_user_returns_the_same_job(store: Store, user_id: uuid.UUID) -> None:
    first, created_first = await _create(store, user_id)
    second, created_second = await _create(store, user_id, now=T0 + 5)
    assert created_first and not created_second
    assert second.id == first.id
    other_type, created = await _create(store, user_id, type="noop")
    assert created and other_type.id != first.id
    assert len(await store.list_jobs(user_id=user_id)) == 2


async def test_a_finished_job_does_not_block_a_new_one(store: Store, user_id: uuid.UUID) -> None:
    job, _ = await _create(store, user_id)
    claimed = await store.claim_job(worker_id="w", now=T0, lease_s=30)
    assert claimed is not None
    assert await store.complete_job(job.id, worker_id="w", result={"ok": True}, now=T0 + 1)
    again, created = await _create(store, user_id, now=T0 + 2)
    assert created and again.id != job.id
    assert [j.id for j in await store.list_jobs(user_id=user_id)] == [again.id, job.id]


async def test_claim_leases_the_job_and_counts_the_attempt(store: Store, user_id: uuid.UUID) -> None:
    job, _ = await _create(store, user_id)
    claimed = await store.claim_job(worker_id="w1", now=T0 + 1, lease_s=30)
    assert claimed is not None and claimed.id == job.id
    assert claimed.status is JobStatus.RUNNING
    assert (claimed.attempts, claimed.runs, claimed.locked_by) == (1, 1, "w1")
    assert claimed.started_at == datetime.fromtimestamp(T0 + 1, UTC)
    assert claimed.locked_until == datetime.fromtimestamp(T0 + 31, UTC)
    assert await store.claim_job(worker_id="w2", now=T0 + 2, lease_s=30) is None


async def test_claim_by_id_takes_only_that_job(store: Store) -> None:
    a, _ = await _create(store, uuid.uuid4())
    b, _ = await _create(store, uuid.uuid4(), now=T0 + 1)
    claimed = await store.claim_job(worker_id="w", now=T0 + 2, lease_s=30, job_id=b.id)
    assert claimed is not None and claimed.id == b.id
    assert (await store.get_job(a.id)).status is JobStatus.PENDING  # type: ignore[union-attr]


async def test_claim_filters_by_type(store: Store) -> None:
    await _create(store, uuid.uuid4(), type="noop")
    assert await store.claim_job(worker_id="w", now=T0, lease_s=30, types=["demo"]) is None
    assert await store.claim_job(worker_id="w", now=T0, lease_s=30, types=["noop"]) is not None


async def test_claims_take_never_served_jobs_first_then_served_ones_that_are_due(store: Store) -> None:
    served, _ = await _create(store, uuid.uuid4())
    await store.claim_job(worker_id="w", now=T0, lease_s=30)
    assert await store.save_progress(served.id, worker_id="w", progress={"pages": 1}, now=T0 + 1, lease_s=30)
    assert await store.reschedule_job(served.id, worker_id="w", at=T0 + 2, now=T0 + 1, reason="turn given away")
    fresh, _ = await _create(store, uuid.uuid4(), now=T0 + 3)
    assert await store.claim_job(worker_id="w", now=T0 + 2.5, lease_s=30) is not None  # the served one, due first
    assert await store.reschedule_job(served.id, worker_id="w", at=T0 + 3, now=T0 + 2.5, reason="turn given away")
    first = await store.claim_job(worker_id="w", now=T0 + 4, lease_s=30)  # both due: the never-served one first
    second = await store.claim_job(worker_id="w", now=T0 + 4, lease_s=30)
    assert (first and first.id, second and second.id) == (fresh.id, served.id)
    assert await store.claim_job(worker_id="w", now=T0 + 4, lease_s=30) is None


async def test_a_retry_waits_for_its_next_attempt_time(store: Store, user_id: uuid.UUID) -> None:
    job, _ = await _create(store, user_id)
    await store.claim_job(worker_id="w", now=T0, lease_s=30)
    assert await store.retry_job(job.id, worker_id="w", error="boom", retry_at=T0 + 10, now=T0 + 1)
    pending = await store.get_job(job.id)
    assert pending is not None and pending.status is JobStatus.PENDING and pending.error == "boom"
    assert pending.attempts == 1
    assert await store.claim_job(worker_id="w", now=T0 + 9, lease_s=30) is None
    again = await store.claim_job(worker_id="w", now=T0 + 10, lease_s=30)
    assert again is not None and again.attempts == 2


async def test_reschedule_spends_no_attempt(store: Store, user_id: uuid.UUID) -> None:
    job, _ = await _create(store, user_id)
    await store.claim_job(worker_id="w", now=T0, lease_s=30)
    assert await store.reschedule_job(job.id, worker_id="w", at=T0 + 900, reason="rate limited", now=T0 + 1)
    row = await store.get_job(job.id)
    assert row is not None and row.attempts == 0 and row.runs == 1
    assert row.next_attempt_at == datetime.fromtimestamp(T0 + 900, UTC)


async def test_a_lapsed_lease_is_a_crash_that_gives_its_attempt_back(store: Store, user_id: uuid.UUID) -> None:
    """A lease that lapses is a crash the job did not cause (issue #16, W5): reclaiming counts it in
    ``crashes`` and gives back the attempt its claim had counted. On the code before, every lapse spent an
    attempt: the second lapse of this two-attempt job failed it with "no attempts left"."""
    job, _ = await _create(store, user_id, max_attempts=2)
    assert (job.crashes, job.max_crashes) == (0, defaults.MAX_CRASHES)
    await store.claim_job(worker_id="dead", now=T0, lease_s=10)
    assert await store.reclaim_expired(now=T0 + 5) == 0
    assert await store.reclaim_expired(now=T0 + 11) == 1
    row = await store.get_job(job.id)
    assert row is not None and row.status is JobStatus.PENDING and row.locked_by is None
    assert (row.attempts, row.crashes, row.runs) == (0, 1, 1)
    assert (row.error or "").startswith(f"lease expired on attempt 1 (crash 1 of {defaults.MAX_CRASHES})")
    # The dead owner can no longer write.
    assert not await store.complete_job(job.id, worker_id="dead", result={}, now=T0 + 12)
    second = await store.claim_job(worker_id="w2", now=T0 + 12, lease_s=10)
    assert second is not None and (second.attempts, second.crashes) == (1, 1)
    # Its lease lapses too: the claim that reclaims it takes it again, on its first attempt still.
    third = await store.claim_job(worker_id="w3", now=T0 + 30, lease_s=10)
    assert third is not None and third.id == job.id and (third.attempts, third.crashes, third.runs) == (1, 2, 3)
    # A handler failure spends the attempt as before.
    assert await store.retry_job(job.id, worker_id="w3", error="boom", retry_at=T0 + 31, now=T0 + 31)
    row = await store.get_job(job.id)
    assert row is not None and (row.status, row.attempts, row.crashes) == (JobStatus.PENDING, 1, 2)


async def test_a_job_crashed_max_crashes_times_is_failed(store: Store, user_id: uuid.UUID) -> None:
    """Crashes have their own bound (issue #16, W5): a job whose every run dies with its worker is stopped at
    ``max_crashes``, however few attempts it spent."""
    job, _ = await _create(store, user_id, max_attempts=1)
    now = T0
    for crash in range(1, defaults.MAX_CRASHES + 1):
        claimed = await store.claim_job(worker_id=f"w{crash}", now=now, lease_s=10)
        assert claimed is not None and (claimed.attempts, claimed.crashes) == (1, crash - 1)
        now += 11
        assert await store.reclaim_expired(now=now) == 1
    final = await store.get_job(job.id)
    assert final is not None and final.status is JobStatus.FAILED
    assert (final.attempts, final.crashes, final.runs) == (0, defaults.MAX_CRASHES, defaults.MAX_CRASHES)
    assert final.completed_at == datetime.fromtimestamp(now, UTC)
    crashes = f"crash {defaults.MAX_CRASHES} of {defaults.MAX_CRASHES}"
    assert crashes in (final.error or "") and "no crashes left" in (final.error or "")
    assert await store.claim_job(worker_id="w", now=now, lease_s=10) is None


async def test_saving_progress_extends_the_lease(store: Store, user_id: uuid.UUID) -> None:
    """A checkpoint renews the lease as a heartbeat does (issue #16, W4): a job saving progress every 8 s of a
    10 s lease is never reclaimed. On the code before, saving progress left the lease as it was, so this
    job's lease lapsed at T0 + 10 under a runner that was checkpointing all along."""
    job, _ = await _create(store, user_id)
    await store.claim_job(worker_id="w", now=T0, lease_s=10)
    for step in range(1, 5):
        assert await store.save_progress(job.id, worker_id="w", progress={"step": step}, now=T0 + 8 * step, lease_s=10)
        assert await store.reclaim_expired(now=T0 + 8 * step + 9) == 0
    row = await store.get_job(job.id)
    assert row is not None and row.status is JobStatus.RUNNING and row.locked_by == "w"
    assert row.locked_until == datetime.fromtimestamp(T0 + 32 + 10, UTC)
    assert (row.progress, row.crashes) == ({"step": 4}, 0)


async def test_only_the_lease_owner_can_write(store: Store, user_id: uuid.UUID) -> None:
    job, _ = await _create(store, user_id)
    await store.claim_job(worker_id="owner", now=T0, lease_s=30)
    assert not await store.save_progress(job.id, worker_id="intruder", progress={"x": 1}, now=T0 + 1, lease_s=30)
    assert not await store.fail_job(job.id, worker_id="intruder", error="no", now=T0 + 1)
    assert await store.save_progress(job.id, worker_id="owner", progress={"pages": 2}, now=T0 + 1, lease_s=30)
    assert await store.extend_lease(job.id, worker_id="owner", now=T0 + 2, lease_s=30)
    row = await store.get_job(job.id)
    assert row is not None and row.progress == {"pages": 2}
    assert row.locked_until == datetime.fromtimestamp(T0 + 32, UTC)


async def test_complete_and_fail_are_final(store: Store) -> None:
    a, _ = await _create(store, uuid.uuid4())
    b, _ = await _create(store, uuid.uuid4())
    await store.claim_job(worker_id="w", now=T0, lease_s=30, job_id=a.id)
    await store.claim_job(worker_id="w", now=T0, lease_s=30, job_id=b.id)
    assert await store.complete_job(a.id, worker_id="w", result={"activities": 3}, now=T0 + 2)
    assert await store.fail_job(b.id, worker_id="w", error="revoked", now=T0 + 3)
    done, failed = await store.get_job(a.id), await store.get_job(b.id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == {"activities": 3}
    assert done.completed_at == datetime.fromtimestamp(T0 + 2, UTC) and done.locked_by is None
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error == "revoked"
    assert await store.list_jobs(status=JobStatus.FAILED) == [failed]


async def test_cancel_user_jobs_ends_only_that_users_pending_jobs(store: Store) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    job, _ = await _create(store, mine)
    theirs, _ = await _create(store, other)
    assert await store.cancel_user_jobs(mine, reason="athlete deauthorized", now=T0 + 1) == 1
    row = await store.get_job(job.id)
    assert row is not None and row.status is JobStatus.FAILED and row.error == "athlete deauthorized"
    assert (await store.get_job(theirs.id)).status is JobStatus.PENDING  # type: ignore[union-attr]


async def test_tokens_round_trip_and_never_show_in_repr(store: Store, user_id: uuid.UUID) -> None:
    tokens = StravaTokens(athlete_id=42, access_token="acc-SECRET", refresh_token="ref-SECRET", expires_at=T0)
    assert await store.get_tokens(user_id) is None
    await store.save_tokens(user_id, tokens, now=T0)
    assert await store.get_tokens(user_id) == tokens
    assert "SECRET" not in repr(tokens)
    rotated = StravaTokens(athlete_id=42, access_token="a2", refresh_token="r2", expires_at=T0 + 21600)
    await store.save_tokens(user_id, rotated, now=T0 + 1)
    assert await store.get_tokens(user_id) == rotated
    assert await store.user_for_athlete(42) == user_id
    await store.add_activity_events(user_id, [7, 8], now=T0 + 2)
    assert await store.delete_tokens(user_id)
    assert await store.get_tokens(user_id) is None and await store.user_for_athlete(42) is None
    # Its webhook events go too: without tokens nobody can read them (the upkeep resubmitted a failing job for them).
    assert await store.pending_activity_events(user_id, limit=10) == []
    assert user_id not in await store.users_with_activity_events(limit=10)


def _activity(i: int, *, name: str = "Run") -> Activity:
    start = datetime.fromtimestamp(T0 - i * 86_400, UTC)
    raw = {"id": 10**10 + i, "name": name, "sport_type": "Run", "start_date": start.isoformat(), "extra": [i]}
    return Activity.from_json(raw)


async def test_activity_upsert_is_idempotent(store: Store, user_id: uuid.UUID) -> None:
    batch = [_activity(i) for i in range(250)]
    assert await store.upsert_activities(user_id, batch, now=T0) == 250
    assert await store.upsert_activities(user_id, batch[:100], now=T0 + 1) == 100
    assert await store.count_activities(user_id) == 250
    assert await store.latest_activity_start(user_id) == batch[0].start_date
    renamed = _activity(0, name="Renamed")
    await store.upsert_activities(user_id, [renamed], now=T0 + 2)
    assert await store.count_activities(user_id) == 250
    assert await store.delete_activity(user_id, renamed.id)
    assert await store.count_activities(user_id) == 249
    assert await store.count_activities(uuid.uuid4()) == 0
    assert await store.latest_activity_start(uuid.uuid4()) is None


async def test_stored_activities_tell_fields_and_detail_and_unseen_ones_are_removed(
    store: Store, user_id: uuid.UUID
) -> None:
    summaries = [_activity(i) for i in range(5)]
    await store.upsert_activities(user_id, summaries, now=T0)
    detailed = Activity.from_json({**summaries[0].raw, "resource_state": 3, "name": "Detailed"})
    await store.upsert_activities(user_id, [detailed], now=T0)
    stored = await store.stored_activities(user_id)
    assert set(stored) == {a.id for a in summaries}
    assert stored[detailed.id].detailed and stored[detailed.id].fields == detailed.fields
    assert not stored[summaries[1].id].detailed and stored[summaries[1].id].fields == summaries[1].fields
    assert set(await store.stored_activities(user_id, [summaries[2].id, 42])) == {summaries[2].id}
    assert await store.stored_activities(user_id, []) == {}
    # A listing that began at T0 + 10 saw three of them; the other two are gone from Strava.
    await store.mark_activities_seen(user_id, [summaries[0].id, summaries[1].id], now=T0 + 11)
    await store.upsert_activities(user_id, [summaries[2]], now=T0 + 12)
    assert await store.delete_activities_unseen_since(user_id, T0 + 10) == 2
    assert set(await store.stored_activities(user_id)) == {summaries[0].id, summaries[1].id, summaries[2].id}
    assert await store.delete_activities_unseen_since(uuid.uuid4(), T0 + 10) == 0


async def test_webhook_events_deduplicate_and_a_renewed_one_outlives_its_clearing(
    store: Store, user_id: uuid.UUID
) -> None:
    other = uuid.uuid4()
    await store.add_activity_events(user_id, [11, 12], now=T0)
    await store.add_activity_events(user_id, [12], now=T0 + 5)  # the same activity again: one row, the later time
    await store.add_activity_events(other, [21], now=T0 + 1)
    pending = await store.pending_activity_events(user_id, limit=10)
    assert pending == [(11, T0), (12, T0 + 5)]
    assert await store.users_with_activity_events(limit=10) == [user_id, other]
    await store.add_activity_events(user_id, [11], now=T0 + 7)  # renewed while being handled
    await store.clear_activity_events(user_id, pending)
    assert await store.pending_activity_events(user_id, limit=10) == [(11, T0 + 7)]
    assert await store.pending_activity_events(user_id, limit=0) == []


async def test_the_event_quota_grants_at_most_the_limit_per_window(store: Store, user_id: uuid.UUID) -> None:
    assert await store.take_event_quota(user_id, window=T0, limit=10, wanted=3) == 0  # not connected: nothing
    tokens = StravaTokens(athlete_id=7, access_token="a" * 40, refresh_token="r" * 40, expires_at=T0 + 3600)
    await store.save_tokens(user_id, tokens, now=T0)
    assert await store.take_event_quota(user_id, window=T0, limit=10, wanted=6) == 6
    assert await store.take_event_quota(user_id, window=T0, limit=10, wanted=6) == 4
    assert await store.take_event_quota(user_id, window=T0, limit=10, wanted=1) == 0
    assert await store.take_event_quota(user_id, window=T0 + 900, limit=10, wanted=3) == 3  # a new window


async def test_users_to_reconcile_are_the_never_then_the_longest_ago(store: Store) -> None:
    users = [uuid.uuid4() for _ in range(3)]
    for n, user in enumerate(users):
        tokens = StravaTokens(athlete_id=100 + n, access_token="a" * 40, refresh_token="r" * 40, expires_at=T0)
        await store.save_tokens(user, tokens, now=T0)
    await store.mark_reconciled(users[0], now=T0 + 100)
    await store.mark_reconciled(users[1], now=T0 + 10)
    assert await store.users_to_reconcile(before=T0 + 50, asked_before=T0, limit=10) == [users[2], users[1]]
    assert await store.users_to_reconcile(before=T0 + 500, asked_before=T0, limit=2) == [users[2], users[1]]
    assert await store.users_to_reconcile(before=T0, asked_before=T0, limit=10) == [users[2]]
    # A reconcile asked for recently is not asked for again until asked_before passes it.
    await store.mark_reconcile_asked(users[2], now=T0 + 20)
    assert await store.users_to_reconcile(before=T0 + 50, asked_before=T0 + 20, limit=10) == [users[1]]
    assert await store.users_to_reconcile(before=T0 + 50, asked_before=T0 + 21, limit=10) == [users[2], users[1]]


async def test_unserved_jobs_are_the_active_ones_without_a_checkpoint(store: Store) -> None:
    """What the second fair-turn rule counts: pending or running jobs that never saved progress."""
    jobs = [(await _create(store, uuid.uuid4(), now=T0 + n))[0] for n in range(4)]
    assert await store.unserved_jobs(limit=10) == 4
    assert await store.unserved_jobs(limit=2) == 2  # counted up to the limit
    first = await store.claim_job(worker_id="w", now=T0 + 10, lease_s=30, job_id=jobs[0].id)
    assert first is not None
    assert await store.unserved_jobs(limit=10) == 4  # running, not served yet
    assert await store.save_progress(first.id, worker_id="w", progress={"page": 1}, now=T0 + 11, lease_s=30)
    assert await store.unserved_jobs(limit=10) == 3
    second = await store.claim_job(worker_id="w", now=T0 + 12, lease_s=30, job_id=jobs[1].id)
    assert second is not None
    assert await store.fail_job(second.id, worker_id="w", error="gone", now=T0 + 13)
    assert await store.unserved_jobs(limit=10) == 2  # final jobs wait for nothing


async def test_a_type_pause_keeps_its_longest_end_and_its_latest_looks(store: Store) -> None:
    """What another process reads before it runs a job of the type: when the shared wait ends, and how many looks
    found the service down; a look that found it up again clears the looks of a pause that has ended, only."""
    assert await store.job_type_pause("strava_sync") is None
    await store.pause_job_type("strava_sync", until=T0 + 30, looks=1, reason="Strava is down", now=T0)
    await store.pause_job_type("strava_sync", until=T0 + 20, looks=2, reason="still down", now=T0 + 5)
    pause = await store.job_type_pause("strava_sync")
    assert pause is not None
    assert (pause.until, pause.looks, pause.reason, pause.paused_at) == (T0 + 30, 2, "still down", T0 + 5)
    assert await store.job_type_pause("other") is None  # one row per type
    await store.pause_job_type("other", until=T0 + 10, looks=0, reason="rate limit spent", now=T0)
    assert [(p.type, p.until) for p in await store.type_pauses(now=T0 + 5)] == [
        ("other", T0 + 10),
        ("strava_sync", T0 + 30),
    ]
    assert [p.type for p in await store.type_pauses(now=T0 + 10)] == ["strava_sync"]  # those still running
    await store.clear_type_outage("strava_sync", now=T0 + 29)  # still running: written since the look
    assert (await store.job_type_pause("strava_sync")).looks == 2  # type: ignore[union-attr]
    await store.clear_type_outage("strava_sync", now=T0 + 30)
    pause = await store.job_type_pause("strava_sync")
    assert pause is not None and (pause.until, pause.looks) == (T0 + 30, 0)
    await store.pause_job_type("strava_sync", until=T0 + 90, looks=0, reason="rate limit spent", now=T0 + 60)
    pause = await store.job_type_pause("strava_sync")
    assert pause is not None and (pause.until, pause.looks, pause.reason) == (T0 + 90, 0, "rate limit spent")


async def _take(store: Store, now: float, *, read: bool = True, limits: tuple[int, int] = (3, 5)) -> str | None:
    """One slot of a budget of ``limits`` reads (per 15 min, per day) and twice that overall."""
    slot = SlotRequest(read, quarter_hour_start(now), utc_day_start(now), (2 * limits[0], 2 * limits[1]), limits)
    return await store.take_rate_slot(slot)


async def test_rate_slots_count_every_callers_requests_per_window_and_per_day(store: Store) -> None:
    """The app-wide budget every instance draws on: a window's slots run out, the next window has its own, the
    day's run out across windows, and a request refused takes nothing."""
    assert [await _take(store, T0 + k) for k in range(4)] == [None, None, None, "window"]
    assert await _take(store, T0 + 899) == "window"
    assert await _take(store, T0 + 900, read=False) is None  # a token request: overall limits only
    assert [await _take(store, T0 + 900 + k) for k in range(3)] == [None, None, "day"]  # 3 + 2 = the day's 5
    assert await _take(store, T0 + 1800) == "day"  # a new window, the same spent day
    assert await _take(store, T0 + 86_400) is None  # the next day
    # A caller whose clock is behind the window another has moved to counts in that window, not an old one.
    assert [await _take(store, T0 + 86_400 - 1 - k) for k in range(3)] == [None, None, "window"]


async def test_a_caller_that_has_not_read_the_limits_is_held_to_the_ones_stored_with_the_count(store: Store) -> None:
    """A cold process knows only the default limits until Strava answers it: the store holds it to the limits
    last read from Strava's headers (an app's raised limits), and to its own only while no caller has read any."""
    window, day = quarter_hour_start(T0), utc_day_start(T0)
    cold = SlotRequest(True, window, day, (6, 50), (3, 25), assumed=True)
    assert [await store.take_rate_slot(cold) for _ in range(4)] == [None, None, None, "window"]
    warm = SlotRequest(True, window, day, (40, 400), (20, 200))  # read from Strava's headers
    assert [await store.take_rate_slot(warm) for _ in range(12)] == [None] * 12
    assert [await store.take_rate_slot(cold) for _ in range(6)] == [None] * 5 + ["window"]  # 20, not 3
    # Limits read later replace them, for every caller: here Strava lowered them.
    lowered = SlotRequest(True, window + 900, day, (20, 400), (10, 200))
    assert await store.take_rate_slot(lowered) is None
    later = SlotRequest(True, window + 900, day, (6, 50), (3, 25), assumed=True)
    assert [await store.take_rate_slot(later) for _ in range(10)] == [None] * 9 + ["window"]


@pytest.mark.postgres
async def test_concurrent_callers_never_take_more_slots_than_the_window_has(pg_url: str) -> None:
    """Forty instances at a reset, each on its own connection: ten slots, ten requests, and no more."""
    stores = [open_store(pg_url) for _ in range(40)]
    try:
        await stores[0].migrate()
        taken = await asyncio.gather(*(_take(s, T0 + 1, limits=(10, 1000)) for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert taken.count(None) == 10 and taken.count("window") == 30


async def test_a_write_that_fails_midway_leaves_nothing_of_itself(store: Store, user_id: uuid.UUID) -> None:
    """Each write is atomic: a batch whose 150th row breaks a constraint writes none of its rows, keeps every
    earlier write, and the store goes on writing."""
    await store.upsert_activities(user_id, [_activity(i) for i in range(100)], now=T0)
    job, _ = await _create(store, user_id)
    broken = [_activity(i) for i in range(100, 300)]
    broken[150] = dataclasses.replace(broken[150], name=None)  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(Exception, match=r"(?i)null"):
        await store.upsert_activities(user_id, broken, now=T0 + 1)
    assert await store.count_activities(user_id) == 100
    assert await store.latest_activity_start(user_id) == _activity(0).start_date
    assert await store.get_job(job.id) == job
    await store.upsert_activities(user_id, broken[:150], now=T0 + 2)
    assert await store.count_activities(user_id) == 250
    claimed = await store.claim_job(worker_id="w", now=T0 + 3, lease_s=30)
    assert claimed is not None and claimed.id == job.id and claimed.status is JobStatus.RUNNING


async def test_every_read_of_a_job_shows_the_changes_made_before_it(store: Store, user_id: uuid.UUID) -> None:
    job, _ = await _create(store, user_id)
    seen = [await store.get_job(job.id)]
    await store.claim_job(worker_id="w", now=T0 + 1, lease_s=30)
    seen.append(await store.get_job(job.id))
    await store.save_progress(job.id, worker_id="w", progress={"pages": 1}, now=T0 + 2, lease_s=30)
    seen.append(await store.get_job(job.id))
    seen.append(await store.get_job(job.id))  # nothing changed in between
    await store.upsert_activities(user_id, [_activity(1)], now=T0 + 3)  # another table: the job is the same
    seen.append(await store.get_job(job.id))
    await store.complete_job(job.id, worker_id="w", result={"activities": 1}, now=T0 + 4)
    seen.append(await store.get_job(job.id))
    assert [(j.status, j.progress, j.result) for j in seen if j is not None] == [
        (JobStatus.PENDING, {}, None),
        (JobStatus.RUNNING, {}, None),
        (JobStatus.RUNNING, {"pages": 1}, None),
        (JobStatus.RUNNING, {"pages": 1}, None),
        (JobStatus.RUNNING, {"pages": 1}, None),
        (JobStatus.COMPLETED, {"pages": 1}, {"activities": 1}),
    ]
    assert await store.get_job(uuid.uuid4()) is None


async def test_a_file_store_sees_what_another_connection_wrote(sqlite_url: str, user_id: uuid.UUID) -> None:
    reader, writer = open_store(sqlite_url), open_store(sqlite_url)
    await reader.migrate()
    job, _ = await _create(reader, user_id)
    assert (await reader.get_job(job.id)).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert await writer.claim_job(worker_id="other-process", now=T0 + 1, lease_s=30) is not None
    assert (await reader.get_job(job.id)).status is JobStatus.RUNNING  # type: ignore[union-attr]
    await reader.close()
    await writer.close()


async def test_a_look_that_finds_nothing_to_claim_takes_no_write_lock(sqlite_url: str, user_id: uuid.UUID) -> None:
    """An idle worker looks every second: on a store on a file, a look that finds nothing due must neither wait
    for the write lock another process holds nor take it; a claim that can lease a job still waits for it."""
    worker = SQLiteStore.from_url(sqlite_url, busy_timeout_s=0.2)
    await worker.migrate()
    job, _ = await _create(worker, user_id)
    assert await worker.claim_job(worker_id="w1", now=T0, lease_s=30) is not None  # leased until T0 + 30
    other_process = sqlite3.connect(worker.path, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # e.g. the API server writing a submission
    try:
        assert await worker.claim_job(worker_id="w2", now=T0 + 1, lease_s=30) is None
        with pytest.raises(StoreError, match="busy"):  # the lease has expired: reclaiming it needs the lock
            await worker.claim_job(worker_id="w2", now=T0 + 31, lease_s=30)
    finally:
        other_process.execute("ROLLBACK")
        other_process.close()
    reclaimed = await worker.claim_job(worker_id="w2", now=T0 + 31, lease_s=30)
    assert reclaimed is not None and (reclaimed.id, reclaimed.locked_by, reclaimed.crashes) == (job.id, "w2", 1)
    await worker.close()


async def test_a_pages_reads_and_marks_on_sqlite_do_not_grow_with_the_history(tmp_path: Path) -> None:
    """A reconcile reads and marks its history a page at a time: each page's work must be that of its 200 rows,
    not of every activity the user has (counted in SQLite VM steps, which do not depend on the machine)."""

    async def steps_per_page(history: int) -> int:
        store = SQLiteStore(str(tmp_path / f"h{history}.db"))
        await store.migrate()
        user = uuid.uuid4()
        for start in range(0, history, 1000):
            await store.upsert_activities(user, [_activity(i) for i in range(start, start + 1000)], now=T0)
        page = [_activity(i).id for i in range(history // 2, history // 2 + 200)]
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        store.conn.set_progress_handler(count, 100)
        stored = await store.stored_activities(user, page)
        await store.mark_activities_seen(user, list(stored), now=T0 + 1)
        store.conn.set_progress_handler(None, 0)
        assert len(stored) == 200 and await store.delete_activities_unseen_since(user, T0 + 1) == history - 200
        await store.close()
        return steps

    small, large = await steps_per_page(2_000), await steps_per_page(20_000)
    assert large < 1.5 * small, (small, large)


async def test_a_claim_on_a_database_without_its_tables_is_a_store_error(sqlite_url: str) -> None:
    """A file reset or replaced under a running worker: the worker backs off from a StoreError and keeps its claim
    loops, where any other error would stop it."""
    store = SQLiteStore.from_url(sqlite_url)
    await store.migrate()
    other_process = sqlite3.connect(store.path, isolation_level=None)
    other_process.execute("DROP TABLE sync_jobs")
    other_process.close()
    with pytest.raises(StoreError, match="could not be read: no such table: sync_jobs"):
        await store.claim_job(worker_id="w", now=T0, lease_s=30)
    await store.close()


async def test_a_full_disk_is_a_one_line_store_unavailable_and_loses_nothing(
    sqlite_url: str, user_id: uuid.UUID
) -> None:
    """A disk that fills up is an outage, not a fault of the write: one line naming the store, as
    :class:`StoreUnavailable` (what runners, workers and the API wait out), and SQLite's own rollback of the
    transaction does not turn into another error. Reads go on; once there is room, the same write stores every
    activity once."""
    store = SQLiteStore.from_url(sqlite_url)
    await store.migrate()
    job, _ = await _create(store, user_id)
    await store.upsert_activities(user_id, [_activity(i) for i in range(20)], now=T0)
    page = [_activity(i) for i in range(20, 220)]
    with full_disk(store):
        with pytest.raises(StoreUnavailable) as full:
            await store.upsert_activities(user_id, page, now=T0 + 1)
        assert await store.count_activities(user_id) == 20
        assert await store.get_job(job.id) == job
    message = str(full.value)
    assert "\n" not in message and message.startswith(f"sqlite store {store.path!r}, upsert activities: "), message
    assert message.endswith("database or disk is full (SQLITE_FULL)"), message
    assert await store.upsert_activities(user_id, page, now=T0 + 2) == 200
    assert sorted(await store.stored_activities(user_id)) == sorted(_activity(i).id for i in range(220))
    assert [j.id for j in await store.list_jobs()] == [job.id]
    await store.close()


async def test_a_write_waiting_for_another_process_lets_the_process_read_meanwhile(
    sqlite_url: str, user_id: uuid.UUID
) -> None:
    """Another process holds the write lock (a long write): a submit of this process waits for it, and
    meanwhile this process's status reads still answer (SQLite's own wait would sleep in the event loop's
    thread, every request with it). Once the lock is free, the submit goes through, once."""
    store = SQLiteStore.from_url(sqlite_url)
    await store.migrate()
    job, _ = await _create(store, user_id)
    other_user = uuid.uuid4()
    with write_lock_held(store.path):
        submit = asyncio.ensure_future(_create(store, other_user))
        await asyncio.sleep(0)  # the submit starts and finds the lock taken
        assert await store.get_job(job.id) == job
        assert not submit.done(), "the read answered only after the write had given up"
    created, was_created = await submit
    assert was_created and created.user_id == other_user
    assert sorted(j.user_id for j in await store.list_jobs()) == sorted([user_id, other_user])
    await store.close()


async def test_a_store_file_deleted_under_a_running_process_fails_every_call_naming_it(
    sqlite_url: str, user_id: uuid.UUID
) -> None:
    """Deleted under a running server, the file stays open and writable, and nobody opens it again: every job
    accepted into it is gone at the next start. So every call fails, in one line naming the file, and nothing is
    accepted."""
    store = SQLiteStore.from_url(sqlite_url)
    await store.migrate()
    job, _ = await _create(store, user_id)
    for suffix in ("", "-wal", "-shm"):
        Path(store.path + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreError) as refused:
        await _create(store, uuid.uuid4())
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"sqlite store {store.path!r}, create a job: "), message
    assert "the file was deleted or replaced since this process opened it" in message, message
    with pytest.raises(StoreError, match="deleted or replaced"):
        await store.get_job(job.id)
    await store.close()
    again = SQLiteStore.from_url(sqlite_url)  # the next start
    await again.migrate()
    assert await again.list_jobs() == []
    await again.close()
