"""What only the PostgreSQL store must prove: concurrent claimers on separate connections, batched upserts,
users on demand (plain PostgreSQL) versus Supabase's auth.users, and connection errors as one clean line.

The shared behaviour of every store is in ``test_store_behaviour.py``."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from syncsim.errors import ConfigError, InvalidInput, StoreError
from syncsim.stores import open_store
from syncsim.stores.postgres import PostgresStore
from syncsim.strava.models import Activity, StravaTokens
from syncsim.testing.postgres import TemporaryPostgres

pytestmark = pytest.mark.postgres

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
SECRET = "s3cr3t-Pa55word"


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore.from_url(pg_url)
    yield store
    await store.close()


def _activities(n: int, *, name: str = "Morning Run") -> list[Activity]:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return [
        Activity.from_json(
            {
                "id": 9_000_000 + i,
                "name": f"{name} {i}",
                "sport_type": "Run",
                "start_date": (start + timedelta(hours=i)).isoformat(),
                "distance": 5000.0 + i,
                "moving_time": 1500,
                "elapsed_time": 1600,
                "total_elevation_gain": 12.5,
                "athlete": {"id": 42},
                "map": {"summary_polyline": "abc"},
            }
        )
        for i in range(n)
    ]


async def test_concurrent_claimers_never_take_the_same_job(pg_store: PostgresStore, pg_url: str) -> None:
    jobs = [
        (await pg_store.create_job(user_id=uuid.uuid4(), type="demo", payload={}, max_attempts=3, now=T0))[0]
        for _ in range(20)
    ]
    claimers = [PostgresStore.from_url(pg_url, min_size=1, max_size=1) for _ in range(4)]
    claimed: list[uuid.UUID] = []

    async def claim_loop(store: PostgresStore, worker: str) -> None:
        while (job := await store.claim_job(worker_id=worker, now=T0 + 1, lease_s=30)) is not None:
            assert job.locked_by == worker
            claimed.append(job.id)

    try:
        await asyncio.gather(*(claim_loop(s, f"w{i}") for i, s in enumerate(claimers)))
    finally:
        for store in claimers:
            await store.close()
    assert Counter(claimed) == Counter(job.id for job in jobs)  # each exactly once


async def test_upserting_the_same_activities_twice_keeps_one_row_each(pg_store: PostgresStore) -> None:
    user = uuid.uuid4()
    assert await pg_store.upsert_activities(user, _activities(5000), now=T0) == 5000
    assert await pg_store.upsert_activities(user, _activities(5000, name="Renamed"), now=T0 + 60) == 5000
    assert await pg_store.count_activities(user) == 5000
    assert await pg_store.latest_activity_start(user) == datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=4999)
    async with await psycopg.AsyncConnection.connect(pg_store._conninfo) as conn:
        cur = await conn.execute(
            """select name, synced_at, raw -> 'map' ->> 'summary_polyline'
               from strava_activities where id = %s""",
            (9_000_007,),
        )
        assert await cur.fetchone() == ("Renamed 7", datetime.fromtimestamp(T0 + 60, UTC), "abc")


async def test_a_repeated_activity_in_one_batch_keeps_its_last_version(pg_store: PostgresStore) -> None:
    user = uuid.uuid4()
    first, renamed = _activities(1)[0], _activities(1, name="Later")[0]
    assert await pg_store.upsert_activities(user, [first, renamed], now=T0) == 1
    assert await pg_store.count_activities(user) == 1
    assert await pg_store.delete_activity(user, first.id)
    assert not await pg_store.delete_activity(user, first.id)


async def test_plain_postgres_adds_users_on_demand_but_supabase_users_must_exist(pg_url: str) -> None:
    store = PostgresStore.from_url(pg_url)
    try:
        user = uuid.uuid4()
        job, created = await store.create_job(user_id=user, type="demo", payload={}, max_attempts=3, now=T0)
        assert created and job.user_id == user
        tokens = StravaTokens(athlete_id=7, access_token="a", refresh_token="r", expires_at=T0 + 3600)
        await store.save_tokens(uuid.uuid4(), tokens, now=T0)
    finally:
        await store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # now auth.users is Supabase's, not ours
        conn.execute("comment on table auth.users is null")
    store = PostgresStore.from_url(pg_url)
    try:
        stranger = uuid.uuid4()
        with pytest.raises(InvalidInput, match=r"does not exist in auth\.users"):
            await store.create_job(user_id=stranger, type="demo", payload={}, max_attempts=3, now=T0)
        with pytest.raises(InvalidInput, match=r"does not exist in auth\.users"):
            await store.upsert_activities(stranger, _activities(3), now=T0)
        again, created = await store.create_job(user_id=user, type="other", payload={}, max_attempts=3, now=T0)
        assert created and again.user_id == user
    finally:
        await store.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("where", ["unreachable", "missing-database"])
async def test_connection_errors_are_one_line_without_the_password(where: str, pg_server: TemporaryPostgres) -> None:
    port = _closed_port() if where == "unreachable" else pg_server.port
    if port is None:  # an external server: the database part is all we can vary
        port = int(str(pg_server.url).rsplit(":", 1)[1].split("/")[0])
    store = open_store(f"postgresql://syncsim:{SECRET}@127.0.0.1:{port}/no_such_database", connect_timeout=3)
    assert SECRET not in store.url and SECRET not in repr(store)
    try:
        with pytest.raises(StoreError) as caught:
            await store.get_job(uuid.uuid4())
    finally:
        await store.close()
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message
    assert "127.0.0.1" in message and (
        "refused" in message if where == "unreachable" else "no_such_database" in message
    )


@pytest.mark.parametrize(
    ("url", "options", "expected"),
    [
        (f"postgresql://u:{SECRET}@localhost:notaport/db", {}, "bad postgres URL"),
        (f"postgresql://u:{SECRET}@localhost/db", {"pool": 3}, "unknown postgres store option"),
        (f"postgresql://u:{SECRET}@localhost/db", {"min_size": 5, "max_size": 2}, "pool sizes"),
    ],
)
def test_bad_configuration_is_a_config_error_without_the_password(
    url: str, options: dict[str, int], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        PostgresStore.from_url(url, **options)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


async def test_an_unmigrated_database_says_to_migrate(pg_empty_url: str) -> None:
    store = PostgresStore.from_url(pg_empty_url)
    try:
        with pytest.raises(StoreError, match="syncsim migrate"):
            await store.list_jobs()
    finally:
        await store.close()
