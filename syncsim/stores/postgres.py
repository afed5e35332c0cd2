"""The Store protocol on PostgreSQL (any server, including a Supabase project's connection string).

psycopg 3 in async mode over an ``AsyncConnectionPool`` that opens on first use (after one direct probe
connection, so an unreachable server or a bad password is one clear error), so creating a store costs nothing
until it is needed. Every psycopg error leaves as a one-line :class:`~syncsim.errors.StoreError` (or
:class:`~syncsim.errors.InvalidInput` for a user missing from ``auth.users``) with the password masked; a
server that is down, restarting or cut the connection is a :class:`~syncsim.errors.StoreUnavailable`, which
callers may wait out. The pool checks a connection before handing it out (its socket, and a round trip only
when the server has closed it or said something), so that after a server restart no call fails on a
connection that died in the pool.

The job state machine lives in SQL functions (migrations ``0005_functions`` and ``0008_…``) shared with the
Supabase REST store; this module only calls them. Creating a job relies on the one-active-job-per-user-and-type
unique index: a refused insert returns the user's active job instead. Activities are upserted by binary ``COPY`` into a
per-connection staging temp table, then one ``INSERT … ON CONFLICT (id) DO UPDATE``. Every time is written from
the caller's clock (epoch seconds → ``timestamptz``), never the database's ``now()``, so simulated runs store
simulated time.

On plain PostgreSQL the compatibility migration creates ``auth.users`` and marks it with a comment; only then
does the store add a user id to it on demand. On Supabase, ``auth.users`` belongs to Supabase Auth: a job or
token for an unknown user is an :class:`~syncsim.errors.InvalidInput`.
"""

from __future__ import annotations

import asyncio
import select
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from syncsim.clock import to_datetime
from syncsim.errors import ConfigError, InvalidInput, StoreError, StoreUnavailable
from syncsim.jobs.model import Job, JobStatus, TypePause, job_from_mapping
from syncsim.stores.sql import pending_migrations
from syncsim.stores.urls import SECRET_PARAMETERS, redact_url
from syncsim.strava.models import Activity, ActivityFields, StoredActivity, StravaTokens
from syncsim.strava.ratelimit import SlotRequest

__all__ = ["MIGRATION_LOCK_KEY", "PostgresStore"]

#: A serverless invocation needs one connection; a worker or the simulator a few. Small enough for the
#: free tier's connection limit (Supabase: 60 direct) to hold many stores at once.
MIN_POOL_SIZE = 1
MAX_POOL_SIZE = 10
#: Fail fast, with libpq's reason, when the server cannot be reached; also how long a call waits for a pooled
#: connection (while the server is down, every call waits this long). Half the hobby plan's 10 s, so a request
#: meeting a down store is answered 503 (try again) before its invocation is killed at 10 s (504). A URL's own
#: ``connect_timeout`` parameter (libpq's) sets both.
CONNECT_TIMEOUT_S = 5.0
#: When a call's wait for a pooled connection runs out, one direct connection (with this libpq timeout, s) says
#: why: a server down, full or refusing, or a pool whose connections were all busy.
PROBE_TIMEOUT_S = 2
#: The pool retries a lost connection with doubling delays (1, 2, 4, ... s) for this long, then gives the slot up
#: and connects afresh on the next demand. Bounding it bounds how long after an outage's end the pool may still
#: be waiting out a delay: without it, the delays grow with the outage, up to psycopg_pool's five minutes.
RECONNECT_TIMEOUT_S = 10.0
#: Supabase's transaction pooler (port 6543) cannot keep server-side prepared statements between
#: transactions, so statements are never prepared there; psycopg's default threshold elsewhere.
TRANSACTION_POOLER_PORT = 6543
PREPARE_THRESHOLD = 5
#: Key of the advisory lock that serializes concurrent ``migrate()`` calls on one database ("syncsim").
MIGRATION_LOCK_KEY = 0x73796E6373696D

_COMPAT_MARK = "syncsim compat:"
_ENSURE_USER = "insert into auth.users (id) values (%s) on conflict (id) do nothing"

_ACTIVE = "status in ('pending', 'running')"
_JOB_FIELDS = (
    "id", "user_id", "type", "status", "payload", "result", "error", "created_at", "started_at",
    "completed_at", "attempts", "max_attempts", "locked_by", "locked_until", "next_attempt_at", "progress",
    "runs", "updated_at", "crashes", "max_crashes", "served_at",
)  # fmt: skip
_JOB_COLUMNS = ", ".join(_JOB_FIELDS)
_CREATE_JOB = f"""
insert into sync_jobs (user_id, type, status, payload, created_at, attempts, max_attempts, next_attempt_at,
                       progress, runs, updated_at)
values (%(user_id)s, %(type)s, 'pending', %(payload)s::jsonb, %(now)s, 0, %(max_attempts)s, %(now)s,
        '{{}}', 0, %(now)s)
on conflict (user_id, type) where {_ACTIVE} do nothing
returning {_JOB_COLUMNS}
"""
# On plain PostgreSQL the user row is ensured by the same statement: one round trip instead of a transaction's
# four (BEGIN, user, job, COMMIT), and as atomic (autocommit). The foreign key is checked at the end of the
# statement, when the CTE's row exists.
_CREATE_JOB_AND_USER = f"""
with new_user as (insert into auth.users (id) values (%(user_id)s) on conflict (id) do nothing)
{_CREATE_JOB.strip()}
"""
_ACTIVE_JOB = f"select {_JOB_COLUMNS} from sync_jobs where user_id = %s and type = %s and {_ACTIVE}"


def _json(value: Any, what: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise InvalidInput(f"{what} is not JSON-serializable: {exc}") from None


_ACTIVITY_COLUMNS = (
    "id, user_id, athlete_id, name, sport_type, start_date, distance, moving_time, elapsed_time, "
    "total_elevation_gain, raw, synced_at, seen_at"
)
#: The columns of :class:`~syncsim.strava.models.ActivityFields`, in its order (the start as epoch seconds).
_FIELD_COLUMNS = (
    "name, sport_type, extract(epoch from start_date)::float8, distance, moving_time, elapsed_time, "
    "total_elevation_gain"
)
# raw travels as orjson-encoded text and is cast once by the server (a Python str bound as jsonb would be
# stored as a JSON string, not an object).
_ACTIVITY_COPY_TYPES = [
    "int8", "uuid", "int8", "text", "text", "timestamptz", "float8", "int4", "int4", "float8", "text",
    "timestamptz", "timestamptz",
]  # fmt: skip
# Binary COPY into a per-connection staging table, then one upsert: one round trip for the rows, no statement
# per row (benchmarks/sync.py measures it).
# ``if not exists`` + ``on commit delete rows`` keeps it correct behind a transaction pooler too.
_STAGE_ACTIVITIES = """
create temp table if not exists syncsim_activities_in (
  id bigint, user_id uuid, athlete_id bigint, name text, sport_type text, start_date timestamptz,
  distance double precision, moving_time integer, elapsed_time integer, total_elevation_gain double precision,
  raw text, synced_at timestamptz, seen_at timestamptz
) on commit delete rows
"""
_UPSERT_ACTIVITIES = f"""
insert into strava_activities ({_ACTIVITY_COLUMNS})
select id, user_id, athlete_id, name, sport_type, start_date, distance, moving_time, elapsed_time,
       total_elevation_gain, raw::json, synced_at, seen_at
from syncsim_activities_in
on conflict (id) do update set
  user_id = excluded.user_id, athlete_id = excluded.athlete_id, name = excluded.name,
  sport_type = excluded.sport_type, start_date = excluded.start_date, distance = excluded.distance,
  moving_time = excluded.moving_time, elapsed_time = excluded.elapsed_time,
  total_elevation_gain = excluded.total_elevation_gain, raw = excluded.raw, synced_at = excluded.synced_at,
  seen_at = excluded.seen_at
"""
_SAVE_TOKENS = """
insert into strava_tokens (user_id, athlete_id, access_token, refresh_token, expires_at, scope, updated_at)
values (%s, %s, %s, %s, %s, %s, %s)
on conflict (user_id) do update set
  athlete_id = excluded.athlete_id, access_token = excluded.access_token,
  refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, scope = excluded.scope,
  updated_at = excluded.updated_at
"""


async def _configure(conn: AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)


_PAUSE_COLUMNS = "type, until, looks, reason, paused_at"


def _pause_from_row(row: Sequence[Any]) -> TypePause:
    return TypePause(type=row[0], until=row[1].timestamp(), looks=row[2], reason=row[3], paused_at=row[4].timestamp())


class PostgresStore:
    """The Store protocol on PostgreSQL through a lazily opened psycopg async pool.

    ``url`` is the redacted URL (safe to print). A store belongs to the event loop that first uses it.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = MIN_POOL_SIZE,
        max_size: int = MAX_POOL_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        prepare_threshold: int | None = PREPARE_THRESHOLD,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigError(f"postgres pool sizes need 0 <= min_size <= max_size >= 1, got {min_size}/{max_size}")
        self.url = redact_url(url)
        self._conninfo = url
        self._secrets = _secrets_in(url)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._prepare_threshold = prepare_threshold
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._pool_check: asyncio.Future[None] | None = None
        self._open_lock = asyncio.Lock()
        self._adds_users: bool | None = None  # learnt from auth.users' comment on first need

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """``postgresql://user:password@host:port/dbname?…`` (or ``postgres://``); ``options`` are
        ``min_size``, ``max_size``, ``connect_timeout`` (seconds; else the URL's own ``connect_timeout``
        parameter, else :data:`CONNECT_TIMEOUT_S`) and ``prepare_threshold``."""
        safe = redact_url(url)
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a non-numeric port
            params = conninfo_to_dict(url)
        except (ValueError, psycopg.ProgrammingError) as exc:
            raise ConfigError(f"bad postgres URL {safe!r}: {_one_line(str(exc), _secrets_in(url))}") from None
        if parts.scheme not in {"postgresql", "postgres"}:
            raise ConfigError(f"not a postgres URL: {safe!r} (use postgresql://user:password@host:port/dbname)")
        allowed = {"min_size", "max_size", "connect_timeout", "prepare_threshold"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown postgres store option(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}"
            )
        if "prepare_threshold" not in options and parts.port == TRANSACTION_POOLER_PORT:
            options["prepare_threshold"] = None
        if "connect_timeout" not in options and params.get("connect_timeout"):
            try:
                options["connect_timeout"] = float(str(params["connect_timeout"]))
            except (TypeError, ValueError):
                raise ConfigError(f"bad postgres URL {safe!r}: connect_timeout must be a number of seconds") from None
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    # -- connections ---------------------------------------------------------------------------------------
    def _fail(self, exc: BaseException, doing: str) -> StoreError:
        return StoreError(f"postgres store {self.url}: {doing} failed: {_one_line(str(exc), self._secrets)}")

    async def _open_pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is not None:
            return self._pool
        async with self._open_lock:
            if self._pool is None:
                # One direct connection first: an unreachable server or a bad password becomes one clear error
                # now, instead of a pool that retries in the background until its timeout.
                try:
                    probe = await AsyncConnection.connect(
                        self._conninfo, connect_timeout=max(1, round(self._connect_timeout))
                    )
                except psycopg.Error as exc:
                    raise StoreUnavailable(
                        f"cannot connect to postgres store {self.url}: {_one_line(str(exc), self._secrets)}"
                    ) from None
                await probe.close()
                pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                    self._conninfo,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    kwargs={"autocommit": True, "prepare_threshold": self._prepare_threshold},
                    configure=_configure,
                    # A connection that sat in the pool through a server restart is dead: check it before
                    # handing it out, so that a call never fails on a stale connection.
                    check=self._check_connection,
                    timeout=self._connect_timeout,
                    reconnect_timeout=RECONNECT_TIMEOUT_S,
                    open=False,
                    name="syncsim",
                )
                await pool.open(wait=False)
                self._pool = pool
        assert self._pool is not None
        return self._pool

    async def _check_connection(self, conn: AsyncConnection[Any]) -> None:
        """The pool's check of a connection it is about to hand out.

        A server that goes away (a restart, a crash, an administrator's kill) closes its connections, and a
        closed connection's socket reads as end-of-file: so a connection whose socket has nothing to read is
        handed out without a round trip, and only one with something to read gets psycopg_pool's own check,
        an empty query, which fails a dead one. The first dead one makes the pool check every idle connection
        at once, in the background: a restart killed them all, and psycopg_pool would otherwise meet them one
        per try, waiting 1, 2, 4, ... s after each, so that a call could run out of time first."""
        if not _has_input(conn):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            pool = self._pool
            if pool is not None and (self._pool_check is None or self._pool_check.done()):
                self._pool_check = asyncio.ensure_future(pool.check())
                self._pool_check.add_done_callback(_retrieve)
            raise

    @asynccontextmanager
    async def _connection(self, doing: str) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection (autocommit); psycopg errors leave as one-line :class:`StoreError`."""
        pool = await self._open_pool()
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout:
            reason = await self._why_unreachable()
            if reason is not None:
                raise StoreUnavailable(
                    f"postgres store {self.url}: {doing} failed, the server is unavailable: {reason}"
                ) from None
            raise StoreUnavailable(
                f"postgres store {self.url}: no connection free within {self._connect_timeout:g} s ({doing})"
            ) from None
        except psycopg.errors.ForeignKeyViolation:
            raise InvalidInput(f"{doing}: the user does not exist in auth.users") from None
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
            raise StoreError(
                f"postgres store {self.url}: {doing} failed: {_one_line(str(exc), self._secrets)} "
                "(is the database migrated? run `syncsim migrate`)"
            ) from None
        except psycopg.Error as exc:
            if _server_unavailable(exc):
                raise StoreUnavailable(
                    f"postgres store {self.url}: {doing} failed, the server is unavailable: "
                    f"{_one_line(str(exc), self._secrets)}"
                ) from None
            raise self._fail(exc, doing) from None

    async def _why_unreachable(self) -> str | None:
        """libpq's reason why a new connection fails ("Connection refused", "too many clients already"), or
        ``None`` if one opens: then the pool's wait ran out because every connection was busy. The pool's own
        timeout says neither; an operator needs to know which."""
        try:
            probe = await AsyncConnection.connect(self._conninfo, connect_timeout=PROBE_TIMEOUT_S)
        except psycopg.Error as exc:
            return _one_line(str(exc), self._secrets)
        await probe.close()
        return None

    async def _adds_users_on_demand(self, conn: AsyncConnection[Any]) -> bool:
        """True when ``auth.users`` is the compat migration's stand-in (plain PostgreSQL), not Supabase's."""
        if self._adds_users is None:
            cur = await conn.execute(
                "select to_regclass('auth.users') is not null, "
                "coalesce(starts_with(obj_description(to_regclass('auth.users'), 'pg_class'), %s), false)",
                (_COMPAT_MARK,),
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                return False  # not migrated yet: ask again next time
            self._adds_users = bool(row[1])
        return self._adds_users

    async def _ensure_user(self, conn: AsyncConnection[Any], user_id: uuid.UUID) -> None:
        if await self._adds_users_on_demand(conn):
            await conn.execute(_ENSURE_USER, (user_id,))

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations, each in its own transaction under an advisory lock, so concurrent
        ``migrate()`` calls (several workers starting at once) apply each file exactly once."""
        applied: list[str] = []
        async with self._connection("migrate") as conn:
            # Read first: an up-to-date database gets no write at all, so that `migrate` succeeds on a read-only
            # replica or role, and the start-up of `serve`, `worker` or `tick` costs one query, not 18 transactions.
            cur = await conn.execute("select to_regclass('syncsim_migrations') is not null")
            row = await cur.fetchone()
            done: list[str] = []
            if row is not None and row[0]:
                cur = await conn.execute("select name from syncsim_migrations")
                done = [name for (name,) in await cur.fetchall()]
            for name, sql in pending_migrations("postgres", done, store=f"postgres store {self.url}"):
                async with conn.transaction():
                    await conn.execute("select pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                    await conn.execute(
                        "create table if not exists syncsim_migrations "
                        "(name text primary key, applied_at timestamptz not null default now())"
                    )
                    cur = await conn.execute("select 1 from syncsim_migrations where name = %s", (name,))
                    if await cur.fetchone():
                        continue
                    try:
                        await conn.execute(sql.encode())
                    except psycopg.Error as exc:
                        raise StoreError(
                            f"postgres store {self.url}: migration {name} failed: {_one_line(str(exc), self._secrets)}"
                        ) from None
                    # Bookkeeping only: applied_at is the server's time, since no job time depends on it.
                    await conn.execute("insert into syncsim_migrations (name) values (%s)", (name,))
                applied.append(name)
        self._adds_users = None
        return applied

    async def close(self) -> None:
        """Close the pool; the store reopens it if used again."""
        pool, self._pool = self._pool, None
        if self._pool_check is not None:
            self._pool_check.cancel()
            self._pool_check = None
        if pool is not None:
            await pool.close()

    # -- jobs ----------------------------------------------------------------------------------------------
    async def _fetch_jobs(self, doing: str, query: str, params: Sequence[Any] | dict[str, Any]) -> list[Job]:
        async with self._connection(doing) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return [job_from_mapping(row) for row in await cur.fetchall()]

    async def _call_bool(self, doing: str, function: str, params: Sequence[Any]) -> bool:
        async with self._connection(doing) as conn:
            cur = await conn.execute(f"select {function}", params)
            row = await cur.fetchone()
            return bool(row and row[0])

    async def create_job(
        self, *, user_id: uuid.UUID, type: str, payload: dict[str, Any], max_attempts: int, now: float
    ) -> tuple[Job, bool]:
        if not isinstance(payload, dict):
            raise InvalidInput(f"job payload must be a JSON object, got {payload.__class__.__name__}")
        if max_attempts < 1:
            raise InvalidInput(f"max_attempts must be at least 1, got {max_attempts}")
        params = {
            "user_id": user_id,
            "type": type,
            "payload": _json(payload, "job payload"),
            "now": to_datetime(now),
            "max_attempts": max_attempts,
        }
        doing = f"create {type} job for user {user_id}"
        async with self._connection(doing) as conn:
            cur = conn.cursor(row_factory=dict_row)
            create = _CREATE_JOB_AND_USER if await self._adds_users_on_demand(conn) else _CREATE_JOB
            # The active job may finish between a refused insert and the select: then insert again.
            for _ in range(5):
                await cur.execute(create, params)
                row = await cur.fetchone()
                if row is not None:
                    return job_from_mapping(row), True
                await cur.execute(_ACTIVE_JOB, (user_id, type))
                row = await cur.fetchone()
                if row is not None:
                    return job_from_mapping(row), False
        raise StoreError(f"postgres store {self.url}: {doing} kept racing with the user's active job")

    async def get_job(self, job_id: uuid.UUID) -> Job | None:
        jobs = await self._fetch_jobs(
            f"get job {job_id}", f"select {_JOB_COLUMNS} from sync_jobs where id = %s", (job_id,)
        )
        return jobs[0] if jobs else None

    async def list_jobs(
        self, *, user_id: uuid.UUID | None = None, status: JobStatus | None = None, limit: int = 20
    ) -> list[Job]:
        """Newest first (by ``created_at``, then ``updated_at``)."""
        return await self._fetch_jobs(
            "list jobs",
            f"""select {_JOB_COLUMNS} from sync_jobs
                where (%(user_id)s::uuid is null or user_id = %(user_id)s::uuid)
                  and (%(status)s::text is null or status = %(status)s::text)
                order by created_at desc, updated_at desc, id
                limit %(limit)s""",
            {"user_id": user_id, "status": None if status is None else str(status), "limit": limit},
        )

    async def claim_job(
        self,
        *,
        worker_id: str,
        now: float,
        lease_s: float,
        job_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
    ) -> Job | None:
        """``syncsim_claim_job``: reclaim expired leases, then lease one due job (``SKIP LOCKED``)."""
        jobs = await self._fetch_jobs(
            "claim job",
            f"select {_JOB_COLUMNS} from syncsim_claim_job(%s, %s, %s, %s::uuid, %s::text[])",
            (worker_id, to_datetime(now), lease_s, job_id, list(types) if types else None),
        )
        return jobs[0] if jobs else None

    async def extend_lease(self, job_id: uuid.UUID, *, worker_id: str, now: float, lease_s: float) -> bool:
        return await self._call_bool(
            f"extend lease of job {job_id}",
            "syncsim_extend_lease(%s, %s, %s, %s)",
            (job_id, worker_id, to_datetime(now), lease_s),
        )

    async def save_progress(
        self, job_id: uuid.UUID, *, worker_id: str, progress: dict[str, Any], now: float, lease_s: float
    ) -> bool:
        return await self._call_bool(
            f"save progress of job {job_id}",
            "syncsim_save_progress(%s, %s, %s::jsonb, %s, %s)",
            (job_id, worker_id, _json(progress, "job progress"), to_datetime(now), lease_s),
        )

    async def complete_job(self, job_id: uuid.UUID, *, worker_id: str, result: dict[str, Any], now: float) -> bool:
        return await self._call_bool(
            f"complete job {job_id}",
            "syncsim_complete_job(%s, %s, %s::jsonb, %s)",
            (job_id, worker_id, _json(result, "job result"), to_datetime(now)),
        )

    async def retry_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, retry_at: float, now: float) -> bool:
        return await self._call_bool(
            f"retry job {job_id}",
            "syncsim_retry_job(%s, %s, %s, %s, %s)",
            (job_id, worker_id, error, to_datetime(retry_at), to_datetime(now)),
        )

    async def reschedule_job(self, job_id: uuid.UUID, *, worker_id: str, at: float, reason: str, now: float) -> bool:
        return await self._call_bool(
            f"reschedule job {job_id}",
            "syncsim_reschedule_job(%s, %s, %s, %s, %s)",
            (job_id, worker_id, to_datetime(at), reason, to_datetime(now)),
        )

    async def fail_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, now: float) -> bool:
        return await self._call_bool(
            f"fail job {job_id}",
            "syncsim_fail_job(%s, %s, %s, %s)",
            (job_id, worker_id, error, to_datetime(now)),
        )

    async def reclaim_expired(self, *, now: float) -> int:
        async with self._connection("reclaim expired leases") as conn:
            cur = await conn.execute("select syncsim_reclaim_expired(%s)", (to_datetime(now),))
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def cancel_job(self, job_id: uuid.UUID, *, user_id: uuid.UUID, reason: str, now: float) -> bool:
        async with self._connection(f"cancel job {job_id}") as conn:
            cur = await conn.execute(
                f"""update sync_jobs set status = 'failed', error = %s, completed_at = %s, locked_by = null,
                        locked_until = null, updated_at = %s
                    where id = %s and user_id = %s and {_ACTIVE}""",
                (reason, to_datetime(now), to_datetime(now), job_id, user_id),
            )
            return cur.rowcount == 1

    async def due_summary(self, *, now: float, limit: int) -> tuple[int, float | None]:
        async with self._connection("count due jobs") as conn:
            cur = await conn.execute("select due, next_due from syncsim_due_summary(%s, %s)", (to_datetime(now), limit))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), None if row[1] is None else row[1].timestamp()

    async def unserved_jobs(self, *, limit: int) -> int:
        async with self._connection("count unserved jobs") as conn:
            cur = await conn.execute("select syncsim_unserved_jobs(%s)", (limit,))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def pause_job_type(self, type: str, *, until: float, looks: int, reason: str, now: float) -> None:
        async with self._connection(f"pause jobs of type {type}") as conn:
            await conn.execute(
                "select syncsim_pause_job_type(%s, %s, %s, %s, %s)",
                (type, to_datetime(until), looks, reason, to_datetime(now)),
            )

    async def job_type_pause(self, type: str) -> TypePause | None:
        async with self._connection(f"read the pause of type {type}") as conn:
            cur = await conn.execute(f"select {_PAUSE_COLUMNS} from job_type_pauses where type = %s", (type,))
            row = await cur.fetchone()
        return None if row is None else _pause_from_row(row)

    async def type_pauses(self, *, now: float) -> list[TypePause]:
        async with self._connection("read the running pauses") as conn:
            cur = await conn.execute(
                f"select {_PAUSE_COLUMNS} from job_type_pauses where until > %s order by type", (to_datetime(now),)
            )
            return [_pause_from_row(row) for row in await cur.fetchall()]

    async def clear_type_outage(self, type: str, *, now: float) -> None:
        async with self._connection(f"clear the outage of type {type}") as conn:
            await conn.execute("select syncsim_clear_type_outage(%s, %s)", (type, to_datetime(now)))

    async def take_rate_slot(self, slot: SlotRequest) -> str | None:
        """``syncsim_take_rate_slot``: concurrent callers queue on the rows' locks, so no slot is given twice."""
        async with self._connection("take a Strava rate-limit slot") as conn:
            cur = await conn.execute(
                "select syncsim_take_rate_slot(%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    slot.read,
                    to_datetime(slot.window_start),
                    to_datetime(slot.day_start),
                    *slot.overall_limits,
                    *slot.read_limits,
                    slot.assumed,
                ),
            )
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def cancel_user_jobs(self, user_id: uuid.UUID, *, reason: str, now: float) -> int:
        async with self._connection(f"cancel jobs of user {user_id}") as conn:
            cur = await conn.execute(
                """update sync_jobs set status = 'failed', error = %s, completed_at = %s, updated_at = %s
                   where user_id = %s and status = 'pending'""",
                (reason, to_datetime(now), to_datetime(now), user_id),
            )
            return cur.rowcount

    # -- Strava data ---------------------------------------------------------------------------------------
    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None:
        async with self._connection(f"get tokens of user {user_id}") as conn:
            cur = await conn.execute(
                """select athlete_id, access_token, refresh_token, expires_at, scope
                   from strava_tokens where user_id = %s""",
                (user_id,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return StravaTokens(
            athlete_id=row[0],
            access_token=row[1],
            refresh_token=row[2],
            expires_at=row[3].timestamp(),
            scope=row[4],
        )

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None:
        doing = f"save tokens of user {user_id}"
        async with self._connection(doing) as conn:
            try:
                async with conn.transaction():
                    await self._ensure_user(conn, user_id)
                    await conn.execute(
                        _SAVE_TOKENS,
                        (
                            user_id,
                            tokens.athlete_id,
                            tokens.access_token,
                            tokens.refresh_token,
                            to_datetime(tokens.expires_at),
                            tokens.scope,
                            to_datetime(now),
                        ),
                    )
            except psycopg.errors.UniqueViolation:
                raise InvalidInput(f"Strava athlete {tokens.athlete_id} is already connected to another user") from None

    async def delete_tokens(self, user_id: uuid.UUID) -> bool:
        async with self._connection(f"delete tokens of user {user_id}") as conn, conn.transaction():
            await conn.execute("delete from strava_activity_events where user_id = %s", (user_id,))
            cur = await conn.execute("delete from strava_tokens where user_id = %s", (user_id,))
            return cur.rowcount == 1

    async def user_for_athlete(self, athlete_id: int) -> uuid.UUID | None:
        async with self._connection(f"find user of athlete {athlete_id}") as conn:
            cur = await conn.execute("select user_id from strava_tokens where athlete_id = %s", (athlete_id,))
            row = await cur.fetchone()
            return None if row is None else row[0]

    async def upsert_activities(self, user_id: uuid.UUID, activities: Sequence[Activity], *, now: float) -> int:
        """Insert or update by activity id in one transaction; return the number of distinct ids written.

        Binary ``COPY`` into a staging temp table, then one ``INSERT … ON CONFLICT (id) DO UPDATE``: the rows
        travel in one stream and the server plans one statement. A repeated id keeps its last occurrence (one
        statement may not update a row twice).
        """
        unique = {activity.id: activity for activity in activities}
        if not unique:
            return 0
        synced_at = to_datetime(now)
        rows = [
            (
                a.id,
                user_id,
                a.athlete_id,
                a.name,
                a.sport_type,
                a.start_date,
                a.distance,
                a.moving_time,
                a.elapsed_time,
                a.total_elevation_gain,
                orjson.dumps(a.raw).decode(),
                synced_at,
                synced_at,
            )
            for a in unique.values()
        ]
        copy_sql = f"copy syncsim_activities_in ({_ACTIVITY_COLUMNS}) from stdin (format binary)"
        async with self._connection(f"upsert activities of user {user_id}") as conn, conn.transaction():
            await self._ensure_user(conn, user_id)
            await conn.execute(_STAGE_ACTIVITIES)
            cur = conn.cursor()
            async with cur.copy(copy_sql) as copy:
                copy.set_types(_ACTIVITY_COPY_TYPES)
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(_UPSERT_ACTIVITIES)
            return cur.rowcount

    async def delete_activity(self, user_id: uuid.UUID, activity_id: int) -> bool:
        async with self._connection(f"delete activity {activity_id}") as conn:
            cur = await conn.execute(
                "delete from strava_activities where user_id = %s and id = %s", (user_id, activity_id)
            )
            return cur.rowcount == 1

    async def stored_activities(
        self, user_id: uuid.UUID, activity_ids: Sequence[int] | None = None
    ) -> dict[int, StoredActivity]:
        if activity_ids is not None and not activity_ids:
            return {}
        async with self._connection(f"read stored activities of user {user_id}") as conn:
            cur = await conn.execute(
                f"""select id, {_FIELD_COLUMNS}, coalesce(raw->>'resource_state' = '3', false)
                    from strava_activities
                    where user_id = %s and (%s::bigint[] is null or id = any(%s::bigint[]))""",
                (
                    user_id,
                    None if activity_ids is None else list(activity_ids),
                    None if activity_ids is None else list(activity_ids),
                ),
            )
            rows = await cur.fetchall()
        return {row[0]: StoredActivity(ActivityFields(*row[1:8]), bool(row[8])) for row in rows}

    async def mark_activities_seen(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        if not activity_ids:
            return
        async with self._connection(f"mark activities of user {user_id} seen") as conn:
            await conn.execute(
                "update strava_activities set seen_at = %s where user_id = %s and id = any(%s::bigint[])",
                (to_datetime(now), user_id, list(activity_ids)),
            )

    async def delete_activities_unseen_since(self, user_id: uuid.UUID, since: float) -> int:
        async with self._connection(f"remove activities of user {user_id} no longer on Strava") as conn:
            cur = await conn.execute(
                "delete from strava_activities where user_id = %s and seen_at < %s", (user_id, to_datetime(since))
            )
            return cur.rowcount

    async def add_activity_events(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        if not activity_ids:
            return
        async with self._connection(f"record webhook events of user {user_id}") as conn, conn.transaction():
            await self._ensure_user(conn, user_id)
            await conn.execute(
                """insert into strava_activity_events (user_id, activity_id, received_at)
                   select %s, unnest(%s::bigint[]), %s
                   on conflict (user_id, activity_id) do update set received_at = excluded.received_at""",
                (user_id, list(activity_ids), to_datetime(now)),
            )

    async def pending_activity_events(self, user_id: uuid.UUID, *, limit: int) -> list[tuple[int, float]]:
        async with self._connection(f"read webhook events of user {user_id}") as conn:
            cur = await conn.execute(
                """select activity_id, received_at from strava_activity_events where user_id = %s
                   order by received_at, activity_id limit %s""",
                (user_id, limit),
            )
            return [(row[0], row[1].timestamp()) for row in await cur.fetchall()]

    async def clear_activity_events(self, user_id: uuid.UUID, events: Sequence[tuple[int, float]]) -> None:
        if not events:
            return
        async with self._connection(f"clear webhook events of user {user_id}") as conn:
            await conn.execute(
                """delete from strava_activity_events e using unnest(%s::bigint[], %s::timestamptz[]) as d(id, at)
                   where e.user_id = %s and e.activity_id = d.id and e.received_at = d.at""",
                ([i for i, _ in events], [to_datetime(at) for _, at in events], user_id),
            )

    async def users_with_activity_events(self, *, limit: int) -> list[uuid.UUID]:
        async with self._connection("find users with webhook events") as conn:
            cur = await conn.execute(
                """select user_id from strava_activity_events group by user_id order by min(received_at) limit %s""",
                (limit,),
            )
            return [row[0] for row in await cur.fetchall()]

    async def take_event_quota(self, user_id: uuid.UUID, *, window: float, limit: int, wanted: int) -> int:
        async with self._connection(f"take webhook quota of user {user_id}") as conn:
            cur = await conn.execute(
                "select syncsim_take_event_quota(%s, %s, %s, %s)", (user_id, to_datetime(window), limit, wanted)
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def mark_reconciled(self, user_id: uuid.UUID, *, now: float) -> None:
        async with self._connection(f"mark user {user_id} reconciled") as conn:
            await conn.execute(
                "update strava_tokens set reconciled_at = %s where user_id = %s", (to_datetime(now), user_id)
            )

    async def reconciled_at(self, user_id: uuid.UUID) -> float | None:
        async with self._connection(f"read when user {user_id} was reconciled") as conn:
            cur = await conn.execute("select reconciled_at from strava_tokens where user_id = %s", (user_id,))
            row = await cur.fetchone()
        return None if row is None or row[0] is None else row[0].timestamp()

    async def users_to_reconcile(self, *, before: float, asked_before: float, limit: int) -> list[uuid.UUID]:
        async with self._connection("find users to reconcile") as conn:
            cur = await conn.execute(
                "select * from syncsim_users_to_reconcile(%s, %s, %s)",
                (to_datetime(before), to_datetime(asked_before), limit),
            )
            return [row[0] for row in await cur.fetchall()]

    async def mark_reconcile_asked(self, user_id: uuid.UUID, *, now: float) -> None:
        async with self._connection(f"mark a reconcile of user {user_id} asked") as conn:
            await conn.execute(
                "update strava_tokens set reconcile_asked_at = %s where user_id = %s", (to_datetime(now), user_id)
            )

    async def count_activities(self, user_id: uuid.UUID) -> int:
        async with self._connection(f"count activities of user {user_id}") as conn:
            cur = await conn.execute("select count(*) from strava_activities where user_id = %s", (user_id,))
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def latest_activity_start(self, user_id: uuid.UUID) -> datetime | None:
        async with self._connection(f"find latest activity of user {user_id}") as conn:
            cur = await conn.execute("select max(start_date) from strava_activities where user_id = %s", (user_id,))
            row = await cur.fetchone()
            return None if row is None or row[0] is None else row[0].astimezone(UTC)


def _has_input(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection has something to read (end-of-file, once the server has closed it) or is
    already known to be unusable."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _retrieve(task: asyncio.Future[None]) -> None:
    """Retrieve a background pool check's outcome: its failures are the outage the calls report."""
    if not task.cancelled():
        task.exception()


#: SQLSTATEs of a server going away or not there yet: admin_shutdown, crash_shutdown, cannot_connect_now.
_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})


def _server_unavailable(exc: psycopg.Error) -> bool:
    """Whether ``exc`` is the server's absence rather than the statement's fault: the connection failed or was
    cut (an operational error without SQLSTATE, or class 08), or the server is shutting down or starting."""
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in _SHUTDOWN_STATES


def _secrets_in(url: str) -> tuple[str, ...]:
    """Every secret libpq would read from ``url`` (the user info's password, ``password=``/``sslpassword=``
    parameters, decoded), as given and decoded, longest first; for masking in messages."""
    found: set[str] = set()
    try:
        found.add(unquote(urlsplit(url).password or ""))
        found.update(v for k, v in conninfo_to_dict(url).items() if k in SECRET_PARAMETERS and isinstance(v, str))
    except (psycopg.ProgrammingError, ValueError):
        pass  # a string libpq cannot parse: from_url refuses it; redact_url masks what it can see
    variants = {variant for secret in found if secret for variant in (secret, quote(secret, safe=""))}
    return tuple(sorted(variants, key=len, reverse=True))


def _one_line(message: str, secrets: tuple[str, ...] = ()) -> str:
    """libpq's multi-line messages as one line, with the store's secrets masked."""
    text = "; ".join(line.strip() for line in message.strip().splitlines() if line.strip()) or "unknown error"
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
