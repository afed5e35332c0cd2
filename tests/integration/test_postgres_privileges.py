"""Privileges under Supabase's defaults (issue #16, D3 and D4): what the ``anon`` and ``authenticated`` roles,
which Supabase's REST API lets anyone (anon) or any signed-in user (authenticated) act as, can do to syncsim's
tables and functions.

On Supabase every new table and function in ``public`` starts with everything granted to those roles. The
fixture applies those same default privileges to a fresh database on the throwaway cluster *before* migrating,
so the migrations must take back what they do not mean to give.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from syncsim.stores.postgres import PostgresStore
from syncsim.testing.postgres import TemporaryPostgres

pytestmark = pytest.mark.postgres

#: Supabase's default privileges in schema public (as its platform sets them for new projects).
SUPABASE_DEFAULT_GRANTS = """
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
"""
_ROLES = """
do $$
begin
  create role anon nologin noinherit;
exception when duplicate_object or unique_violation then null;
end $$;
do $$
begin
  create role authenticated nologin noinherit;
exception when duplicate_object or unique_violation then null;
end $$;
do $$
begin
  create role service_role nologin noinherit bypassrls;
exception when duplicate_object or unique_violation then null;
end $$;
"""
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


async def _migrate(url: str) -> list[str]:
    store = PostgresStore.from_url(url, min_size=0, max_size=1)
    try:
        return await store.migrate()
    finally:
        await store.close()


@pytest.fixture
def supabase_like_url(pg_server: TemporaryPostgres) -> Iterator[str]:
    """A database with Supabase's default privileges in force, then every migration applied."""
    name = f"syncsim_supabase_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_ROLES.encode())
        conn.execute(SUPABASE_DEFAULT_GRANTS.encode())
    asyncio.run(_migrate(url))
    yield url
    pg_server.drop_database(name)


def _as(url: str, role: str, user: uuid.UUID | None = None) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    if user is not None:
        conn.execute("select set_config('request.jwt.claims', %s, false)", (f'{{"sub": "{user}"}}',))
    conn.execute(f"set role {role}".encode())
    return conn


def _privileges(url: str, role: str) -> dict[str, set[str]]:
    """What ``role`` may do to each table and syncsim function in public (only the non-empty entries)."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")]
        functions = [
            r[0]
            for r in conn.execute(
                """select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                   where n.nspname = 'public' and p.proname like 'syncsim\\_%'"""
            )
        ]
        found: dict[str, set[str]] = {}
        for table in tables:
            granted = {
                privilege
                for privilege in TABLE_PRIVILEGES
                if conn.execute("select has_table_privilege(%s, %s, %s)", (role, table, privilege)).fetchone()
                == (True,)
            }
            if granted:
                found[table] = granted
        for function in functions:
            if conn.execute("select has_function_privilege(%s, %s, 'EXECUTE')", (role, function)).fetchone() == (True,):
                found[function] = {"EXECUTE"}
    return found


def test_under_supabase_defaults_anon_can_do_nothing_and_users_can_only_read(supabase_like_url: str) -> None:
    """D3 and D4. Before: anon could read, insert and delete ``syncsim_migrations``; authenticated could insert,
    update, delete and truncate ``sync_jobs``, and use every privilege the defaults gave on it."""
    assert _privileges(supabase_like_url, "anon") == {}
    assert _privileges(supabase_like_url, "authenticated") == {
        "sync_jobs": {"SELECT"},
        "strava_activities": {"SELECT"},
    }


def test_anon_cannot_touch_the_migration_record_and_migrate_still_works(supabase_like_url: str) -> None:
    """D3. Before: anon deleted the rows of ``syncsim_migrations``, and the next ``syncsim migrate`` (and
    ``serve``) failed on "relation sync_jobs already exists"."""
    for role in ("anon", "authenticated"):
        with _as(supabase_like_url, role) as conn:
            for statement in (
                "select * from syncsim_migrations",
                "delete from syncsim_migrations",
                "insert into syncsim_migrations (name) values ('0001_sync_jobs')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement.encode())
    assert asyncio.run(_migrate(supabase_like_url)) == []


def test_a_signed_in_user_reads_their_own_jobs_and_cannot_write_any(supabase_like_url: str) -> None:
    """D4. Before: a user could raise ``max_attempts`` to 2^31-1, move ``next_attempt_at`` back to jump the
    queue, delete their jobs, or insert jobs without limit through Supabase's REST API."""
    me, other = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(supabase_like_url, autocommit=True) as conn:
        jobs = {}
        for user in (me, other):
            conn.execute("insert into auth.users (id) values (%s)", (user,))
            row = conn.execute("insert into sync_jobs (user_id) values (%s) returning id", (user,)).fetchone()
            assert row is not None
            jobs[user] = row[0]
            conn.execute(
                """insert into strava_activities (id, user_id, name, sport_type, start_date, raw, synced_at)
                   values (%s, %s, 'Run', 'Run', now(), '{}', now())""",
                (abs(hash(user)) % 10**9, user),
            )
    with _as(supabase_like_url, "authenticated", me) as conn:
        assert conn.execute("select id from sync_jobs").fetchall() == [(jobs[me],)]
        assert conn.execute("select user_id from strava_activities").fetchall() == [(me,)]
        for statement, params in [
            ("update sync_jobs set max_attempts = 2147483647 where id = %s", (jobs[me],)),
            ("update sync_jobs set next_attempt_at = '2000-01-01' where id = %s", (jobs[me],)),
            ("delete from sync_jobs where id = %s", (jobs[me],)),
            ("insert into sync_jobs (user_id, type) values (%s, 'other')", (me,)),
            ("truncate sync_jobs", ()),
            ("update strava_activities set name = 'x' where user_id = %s", (me,)),
            ("delete from strava_activities where user_id = %s", (me,)),
            (
                "insert into strava_tokens (user_id, athlete_id, access_token, refresh_token, expires_at, updated_at)"
                " values (%s, 1, 'a', 'r', now(), now())",
                (me,),
            ),
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.encode(), params)
    with _as(supabase_like_url, "service_role") as conn:  # the server still does everything
        assert conn.execute("update sync_jobs set max_attempts = 5 where id = %s", (jobs[me],)).rowcount == 1
        assert conn.execute("select count(*) from syncsim_claim_job('server', now(), 30)").fetchone() == (1,)
