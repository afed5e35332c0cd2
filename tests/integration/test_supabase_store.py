"""The Supabase REST store.

No PostgREST server runs here (none is installable from the package sources we can reach). The REST layer
is tested against :class:`tests.support.postgrest.PostgrestTransport`, a PostgREST-compatible httpx
transport that executes each request as SQL on a real, fully migrated PostgreSQL, switching to the role named
by the request's JWT so that grants and row-level security apply for real. So these tests prove the store's
requests, the SQL functions behind its RPCs and the RLS policies; they do not prove byte-for-byte fidelity
to PostgREST itself.

The shared behavioural suite (``test_store_behaviour.py``) runs here unchanged on a SupabaseStore.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from syncsim.errors import ConfigError, InvalidInput, StoreError
from syncsim.stores import open_store
from syncsim.stores.supabase import KEY_ENV, SupabaseStore
from syncsim.strava.models import StravaTokens
from syncsim.strava.ratelimit import SlotRequest
from tests.integration.test_store_behaviour import (  # noqa: F401 - collected here to run on this store
    test_a_finished_job_does_not_block_a_new_one,
    test_a_job_crashed_max_crashes_times_is_failed,
    test_a_lapsed_lease_is_a_crash_that_gives_its_attempt_back,
    test_a_retry_waits_for_its_next_attempt_time,
    test_a_type_pause_keeps_its_longest_end_and_its_latest_looks,
    test_activity_upsert_is_idempotent,
    test_cancel_user_jobs_ends_only_that_users_pending_jobs,
    test_claim_by_id_takes_only_that_job,
    test_claim_filters_by_type,
    test_claim_leases_the_job_and_counts_the_attempt,
    test_complete_and_fail_are_final,
    test_created_job_is_pending_with_the_design_defaults,
    test_only_the_lease_owner_can_write,
    test_rate_slots_count_every_callers_requests_per_window_and_per_day,
    test_reschedule_spends_no_attempt,
    test_saving_progress_extends_the_lease,
    test_second_submit_for_an_active_user_returns_the_same_job,
    test_stored_activities_tell_fields_and_detail_and_unseen_ones_are_removed,
    test_the_event_quota_grants_at_most_the_limit_per_window,
    test_tokens_round_trip_and_never_show_in_repr,
    test_unserved_jobs_are_the_active_ones_without_a_checkpoint,
    test_users_to_reconcile_are_the_never_then_the_longest_ago,
    test_webhook_events_deduplicate_and_a_renewed_one_outlives_its_clearing,
)
from tests.support.postgrest import PostgrestTransport, sign_test_jwt

pytestmark = pytest.mark.postgres

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
SERVICE_KEY = sign_test_jwt({"role": "service_role", "iss": "supabase"})
URL = "supabase://project.supabase.co"


def _user_jwt(user_id: uuid.UUID) -> str:
    return sign_test_jwt({"role": "authenticated", "sub": str(user_id), "aud": "authenticated"})


@pytest.fixture(params=["supabase"])
async def store(pg_url: str) -> AsyncIterator[SupabaseStore]:
    """Overrides conftest's ``store``: a SupabaseStore over the PostgREST-compatible transport."""
    s = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=PostgrestTransport(pg_url))
    assert await s.migrate() == []
    yield s
    await s.close()


async def test_open_store_routes_supabase_urls_and_reads_the_key(monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    monkeypatch.setenv(KEY_ENV, SERVICE_KEY)
    s = open_store("supabase://127.0.0.1:54321?scheme=http", transport=PostgrestTransport(pg_url))
    assert isinstance(s, SupabaseStore)
    assert SERVICE_KEY not in repr(s) and SERVICE_KEY not in s.url
    assert s.project_url == "http://127.0.0.1:54321"
    assert SupabaseStore.from_url("supabase://abcd").project_url == "https://abcd.supabase.co"
    await s.close()


def test_missing_key_is_one_line_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError) as info:
        open_store(URL)
    assert KEY_ENV in str(info.value) and "\n" not in str(info.value)


async def test_refused_input_is_one_line_invalid_input_without_the_key(store: SupabaseStore) -> None:
    job, _ = await store.create_job(user_id=uuid.uuid4(), type="demo", payload={}, max_attempts=3, now=T0)
    await store.claim_job(worker_id="w", now=T0, lease_s=30)
    # progress must be a JSON object: PostgreSQL's check constraint refuses it, PostgREST reports 23514.
    with pytest.raises(InvalidInput) as info:
        await store.save_progress(job.id, worker_id="w", progress=[1], now=T0, lease_s=30)  # type: ignore[arg-type]
    message = str(info.value)
    assert "23514" in message and "\n" not in message and SERVICE_KEY not in message


async def test_unmigrated_database_is_one_line_store_error_without_the_key(pg_empty_url: str) -> None:
    s = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=PostgrestTransport(pg_empty_url))
    try:
        with pytest.raises(StoreError) as info:
            await s.migrate()
    finally:
        await s.close()
    message = str(info.value)
    assert "42P01" in message and "syncsim migrate" in message
    assert "\n" not in message and SERVICE_KEY not in message


async def test_rpc_claims_are_exclusive_under_concurrency(store: SupabaseStore) -> None:
    jobs = [
        (await store.create_job(user_id=uuid.uuid4(), type="demo", payload={}, max_attempts=3, now=T0))[0]
        for _ in range(6)
    ]
    claims = await asyncio.gather(*(store.claim_job(worker_id=f"w{i}", now=T0 + 1, lease_s=30) for i in range(8)))
    taken = [c.id for c in claims if c is not None]
    assert len(taken) == len(set(taken)) == 6
    assert set(taken) == {j.id for j in jobs}


async def test_rpc_rate_slots_are_never_given_twice_under_concurrency(store: SupabaseStore) -> None:
    slots = await asyncio.gather(
        *(store.take_rate_slot(SlotRequest(True, T0, T0, (200, 2000), (5, 1000))) for _ in range(12))
    )
    assert slots.count(None) == 5 and slots.count("window") == 7


async def test_two_concurrent_claimers_of_one_job_never_both_get_it(store: SupabaseStore) -> None:
    for _ in range(5):
        job, _ = await store.create_job(user_id=uuid.uuid4(), type="demo", payload={}, max_attempts=3, now=T0)
        a, b = await asyncio.gather(
            store.claim_job(worker_id="a", now=T0, lease_s=30, job_id=job.id),
            store.claim_job(worker_id="b", now=T0, lease_s=30, job_id=job.id),
        )
        assert sum(c is not None for c in (a, b)) == 1


async def test_a_user_store_sees_only_that_users_jobs_and_no_tokens(store: SupabaseStore) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    mine, _ = await store.create_job(user_id=alice, type="demo", payload={}, max_attempts=3, now=T0)
    theirs, _ = await store.create_job(user_id=bob, type="demo", payload={}, max_attempts=3, now=T0)
    await store.save_tokens(
        alice, StravaTokens(athlete_id=7, access_token="a", refresh_token="r", expires_at=T0), now=T0
    )
    as_alice = store.for_user(_user_jwt(alice))
    assert [j.id for j in await as_alice.list_jobs()] == [mine.id]
    assert await as_alice.get_job(mine.id) == mine
    assert await as_alice.get_job(theirs.id) is None
    with pytest.raises(StoreError) as info:
        await as_alice.get_tokens(alice)
    assert "42501" in str(info.value)  # no privilege on strava_tokens at all
    with pytest.raises(StoreError):  # only the server may claim
        await as_alice.claim_job(worker_id="user", now=T0, lease_s=30)
    await as_alice.close()  # shares the service store's client: closing it must not break the owner
    assert await store.get_tokens(alice) is not None


async def test_athlete_connected_to_another_user_is_invalid_input(store: SupabaseStore) -> None:
    tokens = StravaTokens(athlete_id=99, access_token="a", refresh_token="r", expires_at=T0)
    await store.save_tokens(uuid.uuid4(), tokens, now=T0)
    with pytest.raises(InvalidInput, match="already connected"):
        await store.save_tokens(uuid.uuid4(), tokens, now=T0)
