"""The PostgreSQL schema: the design's table unchanged, safe migrations, the one-active-job rule, and RLS
proven with Supabase's real roles (``set role authenticated`` + the JWT claims PostgREST sets)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from syncsim.stores.postgres import PostgresStore
from syncsim.stores.sql import migration_files

pytestmark = pytest.mark.postgres

#: The design's ``sync_jobs``: (column, type, nullable, default), in order.
DESIGNED_SYNC_JOBS = [
    ("id", "uuid", "NO", "gen_random_uuid()"),
    ("user_id", "uuid", "NO", None),
    ("type", "text", "NO", "'strava_sync'::text"),
    ("status", "text", "NO", "'pending'::text"),
    ("payload", "jsonb", "NO", "'{}'::jsonb"),
    ("result", "jsonb", "YES", None),
    ("error", "text", "YES", None),
    ("created_at", "timestamp with time zone", "NO", "now()"),
    ("started_at", "timestamp with time zone", "YES", None),
    ("completed_at", "timestamp with time zone", "YES", None),
    ("attempts", "integer", "NO", "0"),
    ("max_attempts", "integer", "NO", "3"),
]
COLUMNS_SQL = """
    select column_name, data_type, is_nullable, column_default from information_schema.columns
    where table_schema = 'public' and table_name = 'sync_jobs' order by ordinal_position
"""


def _apply(url: str, names: set[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name, sql in migration_files("postgres"):
            if name in names:
                with conn.transaction():
                    conn.execute(sql.encode())


def test_first_migration_creates_sync_jobs_exactly_as_designed(pg_empty_url: str) -> None:
    _apply(pg_empty_url, {"0000_supabase_compat", "0001_sync_jobs"})
    with psycopg.connect(pg_empty_url) as conn:
        assert conn.execute(COLUMNS_SQL).fetchall() == DESIGNED_SYNC_JOBS
        constraints = conn.execute(
            """select contype, pg_get_constraintdef(oid) from pg_constraint
               where conrelid = 'sync_jobs'::regclass order by contype"""
        ).fetchall()
        assert constraints == [
            ("f", "FOREIGN KEY (user_id) REFERENCES auth.users(id)"),
            ("p", "PRIMARY KEY (id)"),
        ]
        indexes = conn.execute("select indexname from pg_indexes where tablename = 'sync_jobs'").fetchall()
        assert indexes == [("sync_jobs_pkey",)]


def test_later_migrations_only_add_to_the_designed_table(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        columns = conn.execute(COLUMNS_SQL).fetchall()
    assert columns[: len(DESIGNED_SYNC_JOBS)] == DESIGNED_SYNC_JOBS
    assert [c[0] for c in columns[len(DESIGNED_SYNC_JOBS) :]] == [
        "locked_by", "locked_until", "next_attempt_at", "progress", "runs", "updated_at", "crashes", "max_crashes",
        "served_at",
    ]  # fmt: skip


def test_all_migrations_build_the_expected_schema(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables: dict[str, bool] = dict(
            conn.execute(
                """select c.oid::regclass::text, c.relrowsecurity from pg_class c
                   join pg_namespace n on n.oid = c.relnamespace
                   where c.relkind = 'r' and n.nspname in ('public', 'auth')"""
            ).fetchall()
        )
        indexes = {r[0] for r in conn.execute("select indexname from pg_indexes where schemaname = 'public'")}
        functions = {
            r[0]
            for r in conn.execute(
                """select p.oid::regprocedure::text from pg_proc p
                   join pg_namespace n on n.oid = p.pronamespace
                   where n.nspname = 'public' and p.proname like 'syncsim\\_%'"""
            )
        }
        roles: dict[str, bool] = dict(
            conn.execute(
                """select rolname, rolbypassrls from pg_roles
                   where rolname in ('anon', 'authenticated', 'service_role')"""
            ).fetchall()
        )
        applied = [r[0] for r in conn.execute("select name from syncsim_migrations order by name")]
    assert tables == {
        "auth.users": False,
        "sync_jobs": True,
        "strava_tokens": True,
        "strava_activities": True,
        "strava_activity_events": True,
        "job_type_pauses": True,
        "strava_rate_slots": True,
        "syncsim_migrations": True,
    }
    assert {
        "sync_jobs_pending_fair_idx",
        "sync_jobs_unserved_idx",
        "sync_jobs_running_lease_idx",
        "sync_jobs_user_created_idx",
        "sync_jobs_one_active_per_user_type",
        "strava_activities_user_start_idx",
        "strava_tokens_athlete_id_key",
    } <= indexes
    assert functions == {
        "syncsim_claim_job(text,timestamp with time zone,double precision,uuid,text[])",
        "syncsim_reclaim_expired(timestamp with time zone)",
        "syncsim_extend_lease(uuid,text,timestamp with time zone,double precision)",
        "syncsim_save_progress(uuid,text,jsonb,timestamp with time zone,double precision)",
        "syncsim_complete_job(uuid,text,jsonb,timestamp with time zone)",
        "syncsim_retry_job(uuid,text,text,timestamp with time zone,timestamp with time zone)",
        "syncsim_reschedule_job(uuid,text,timestamp with time zone,text,timestamp with time zone)",
        "syncsim_fail_job(uuid,text,text,timestamp with time zone)",
        "syncsim_ensure_user(uuid)",
        "syncsim_take_event_quota(uuid,timestamp with time zone,integer,integer)",
        "syncsim_due_summary(timestamp with time zone,integer)",
        "syncsim_unserved_jobs(integer)",
        "syncsim_pause_job_type(text,timestamp with time zone,integer,text,timestamp with time zone)",
        "syncsim_clear_type_outage(text,timestamp with time zone)",
        "syncsim_take_rate_slot(boolean,timestamp with time zone,timestamp with time zone,"
        "integer,integer,integer,integer,boolean)",
        # 0017's, which a syncsim of before 0018 calls (see the test below)
        "syncsim_take_rate_slot(boolean,timestamp with time zone,timestamp with time zone,"
        "integer,integer,integer,integer)",
        "syncsim_users_to_reconcile(timestamp with time zone,timestamp with time zone,integer)",
    }
    assert roles == {"anon": False, "authenticated": False, "service_role": True}
    assert applied == [name for name, _ in migration_files("postgres")]


async def test_concurrent_migrations_apply_each_file_once_and_rerun_is_a_no_op(pg_empty_url: str) -> None:
    stores = [PostgresStore.from_url(pg_empty_url, min_size=0, max_size=1) for _ in range(3)]
    try:
        first, second = await asyncio.gather(stores[0].migrate(), stores[1].migrate())
        names = [name for name, _ in migration_files("postgres")]
        assert sorted(first + second) == names  # every file applied, none twice
        assert await stores[2].migrate() == []
    finally:
        for store in stores:
            await store.close()


def test_the_compat_migration_is_idempotent(pg_url: str) -> None:
    _apply(pg_url, {"0000_supabase_compat"})  # everything it would create exists: no error, no change
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select count(*) from pg_proc where proname = 'uid'").fetchone() == (1,)


def test_at_most_one_pending_or_running_job_per_user_and_type(pg_url: str) -> None:
    user = uuid.uuid4()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("insert into auth.users (id) values (%s)", (user,))
        first = conn.execute("insert into sync_jobs (user_id) values (%s) returning id", (user,)).fetchone()
        assert first is not None
        for status in ("pending", "running"):
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("insert into sync_jobs (user_id, status) values (%s, %s)", (user, status))
        conn.execute("insert into sync_jobs (user_id, type) values (%s, 'other')", (user,))
        conn.execute("update sync_jobs set status = 'completed' where id = %s", (first[0],))
        conn.execute("insert into sync_jobs (user_id) values (%s)", (user,))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into sync_jobs (user_id, status) values (%s, 'finished')", (user,))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into sync_jobs (user_id, type, payload) values (%s, 'x', '[]')", (user,))


# -- row-level security, with the roles and settings Supabase's PostgREST uses ------------------------------


@dataclass(frozen=True)
class TwoUsers:
    url: str
    a: uuid.UUID
    b: uuid.UUID
    job_a: uuid.UUID
    job_b: uuid.UUID


@pytest.fixture
def two_users(pg_url: str) -> Iterator[TwoUsers]:
    """Users A and B, each with a job, Strava tokens and an activity (written as the superuser)."""
    a, b = uuid.uuid4(), uuid.uuid4()
    jobs = {}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for n, user in enumerate((a, b)):
            conn.execute("insert into auth.users (id) values (%s)", (user,))
            row = conn.execute("insert into sync_jobs (user_id) values (%s) returning id", (user,)).fetchone()
            assert row is not None
            jobs[user] = row[0]
            conn.execute(
                """insert into strava_tokens
                     (user_id, athlete_id, access_token, refresh_token, expires_at, updated_at)
                   values (%s, %s, 'access', 'refresh', now(), now())""",
                (user, 100 + n),
            )
            conn.execute(
                """insert into strava_activities (id, user_id, name, sport_type, start_date, raw, synced_at)
                   values (%s, %s, 'Run', 'Run', now(), '{}', now())""",
                (1000 + n, user),
            )
    yield TwoUsers(pg_url, a, b, jobs[a], jobs[b])


def _connect_as(url: str, role: str, claims: tuple[str, str] | None = None) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    if claims is not None:
        conn.execute("select set_config(%s, %s, false)", claims)
    conn.execute(f"set role {role}".encode())
    return conn


@pytest.mark.parametrize("claims_form", ["request.jwt.claims", "request.jwt.claim.sub"])
def test_authenticated_user_reads_only_their_own_rows_and_writes_none(two_users: TwoUsers, claims_form: str) -> None:
    u = two_users
    value = f'{{"sub": "{u.a}", "role": "authenticated"}}' if claims_form == "request.jwt.claims" else str(u.a)
    with _connect_as(u.url, "authenticated", (claims_form, value)) as conn:
        assert conn.execute("select auth.uid()").fetchone() == (u.a,)
        assert conn.execute("select id from sync_jobs").fetchall() == [(u.job_a,)]
        assert conn.execute("select id from sync_jobs where id = %s", (u.job_b,)).fetchall() == []
        assert conn.execute("select user_id from strava_activities").fetchall() == [(u.a,)]
        # Jobs are written by the server only (issue #16, D4): not even one's own.
        for statement in (
            "update sync_jobs set error = 'mine' where user_id = auth.uid()",
            "delete from sync_jobs where user_id = auth.uid()",
            "insert into sync_jobs (user_id, type) values (auth.uid(), 'other')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.encode())
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from strava_tokens")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from syncsim_claim_job('me', now(), 30)")
    with psycopg.connect(u.url) as conn:
        assert conn.execute("select count(*), count(error) from sync_jobs").fetchone() == (2, 0)
        assert conn.execute("select count(*) from strava_tokens").fetchone() == (2,)


def test_anon_gets_nothing_and_service_role_bypasses_rls(two_users: TwoUsers) -> None:
    u = two_users
    with _connect_as(u.url, "anon") as conn:
        for table in ("sync_jobs", "strava_tokens", "strava_activities", "job_type_pauses", "strava_rate_slots"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select * from {table}".encode())
    with _connect_as(u.url, "authenticated") as conn:  # signed in with no sub: sees no one's rows
        assert conn.execute("select count(*) from sync_jobs").fetchone() == (0,)
    # nor can an athlete hold everyone's syncs back
    with _connect_as(u.url, "authenticated") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select syncsim_pause_job_type('strava_sync', now() + interval '1 day', 0, 'x', now())")
    # nor spend the app's Strava budget
    with _connect_as(u.url, "authenticated") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select syncsim_take_rate_slot(true, now(), now(), 0, 0, 0, 0, false)")
    with _connect_as(u.url, "authenticated") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select syncsim_take_rate_slot(true, now(), now(), 0, 0, 0, 0)")  # 0017's
    with _connect_as(u.url, "service_role") as conn:
        assert conn.execute("select count(*) from sync_jobs").fetchone() == (2,)
        assert conn.execute("select count(*) from strava_tokens").fetchone() == (2,)
        claimed = conn.execute("select user_id from syncsim_claim_job('server', now(), 30)").fetchall()
        assert len(claimed) == 1


def test_save_progress_called_without_a_lease_length_leaves_the_lease(pg_url: str) -> None:
    """A runner of an earlier release calls ``syncsim_save_progress`` with four arguments while migration 0008
    is rolled out: its progress is saved and its lease left as it was, as before."""
    user = uuid.uuid4()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("insert into auth.users (id) values (%s)", (user,))
        conn.execute("insert into sync_jobs (user_id, next_attempt_at) values (%s, '2026-01-01T00:00:00Z')", (user,))
        claimed = conn.execute(
            "select id, locked_until from syncsim_claim_job('old', '2026-01-05T00:00:00Z', 30)"
        ).fetchone()
        assert claimed is not None
        saved = conn.execute(
            """select syncsim_save_progress(%s, 'old', '{"pages": 1}', '2026-01-05T00:00:20Z')""", (claimed[0],)
        ).fetchone()
        row = conn.execute("select progress, locked_until from sync_jobs where id = %s", (claimed[0],)).fetchone()
    assert saved == (True,)
    assert row == ({"pages": 1}, claimed[1])


def test_a_syncsim_of_before_0018_still_takes_rate_slots_after_it(pg_url: str) -> None:
    """Found by probing: 0018 dropped 0017's seven-argument rate-slot function, so every instance not yet
    redeployed when the migration landed failed every Strava sync (and spent its attempts). It stays: it takes
    slots as before, stores no limits (it cannot say whether it read them), and is held to those stored."""
    window = "'2026-01-05T00:00:00Z'"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # A new instance has read raised limits (600 reads / 15 min) from Strava's headers and stored them.
        read_them = f"select syncsim_take_rate_slot(true, {window}, {window}, 1200, 12000, 600, 6000, false)"
        assert conn.execute(read_them).fetchone() == (None,)
        # An old one, with the defaults (100 reads / 15 min), takes slots under the stored limits.
        old = f"select syncsim_take_rate_slot(true, {window}, {window}, 200, 2000, 100, 1000)"
        taken = [conn.execute(old).fetchone()[0] for _ in range(150)]
        stored = conn.execute(
            "select used_15min, limit_15min, limit_daily from strava_rate_slots where kind = 'read'"
        ).fetchone()
    assert taken == [None] * 150
    assert stored == (151, 600, 6000)
