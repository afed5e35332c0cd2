"""PostgresStore's connections: the lazily opened psycopg pool, error mapping, migrations and closing.

A store opens its ``AsyncConnectionPool`` on first use, after one direct probe connection so that an
unreachable server or a bad password is one clear error. Every psycopg error leaves a pooled connection as a
one-line :class:`~syncsim.errors.StoreError` (or :class:`~syncsim.errors.InvalidInput` for a user missing from
``auth.users``) with the password masked. ``migrate()`` applies the ``postgres`` migration files under an
advisory lock. On plain PostgreSQL (the compat migration's ``auth.users``) a user id is added on demand.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from syncsim.errors import InvalidInput, StoreError
from syncsim.sql import migration_files

#: Key of the advisory lock that serializes concurrent ``migrate()`` calls on one database ("syncsim").
MIGRATION_LOCK_KEY = 0x73796E6373696D

_COMPAT_MARK = "syncsim compat:"
_ENSURE_USER = "insert into auth.users (id) values (%s) on conflict (id) do nothing"


async def _configure(conn: AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)


class _PostgresPool:
    """The connection half of :class:`~syncsim.jobs.postgres.PostgresStore` (a base class of it).

    The attributes below are PostgresStore's, set up by its ``__init__``.
    """

    url: str
    _conninfo: str
    _password: str
    _min_size: int
    _max_size: int
    _connect_timeout: float
    _prepare_threshold: int | None
    _pool: AsyncConnectionPool[AsyncConnection[Any]] | None
    _open_lock: asyncio.Lock
    _adds_users: bool | None

    # -- connections ---------------------------------------------------------------------------------------
    def _fail(self, exc: BaseException, doing: str) -> StoreError:
        return StoreError(f"postgres store {self.url}: {doing} failed: {_one_line(str(exc), self._password)}")

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
                    raise StoreError(
                        f"cannot connect to postgres store {self.url}: {_one_line(str(exc), self._password)}"
                    ) from None
                await probe.close()
                pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                    self._conninfo,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    kwargs={"autocommit": True, "prepare_threshold": self._prepare_threshold},
                    configure=_configure,
                    timeout=self._connect_timeout,
                    open=False,
                    name="syncsim",
                )
                await pool.open(wait=False)
                self._pool = pool
        assert self._pool is not None
        return self._pool

    @asynccontextmanager
    async def _connection(self, doing: str) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection (autocommit); psycopg errors leave as one-line :class:`StoreError`."""
        pool = await self._open_pool()
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StoreError(
                f"postgres store {self.url}: no connection free within {self._connect_timeout:g} s ({doing})"
            ) from None
        except psycopg.errors.ForeignKeyViolation:
            raise InvalidInput(f"{doing}: the user does not exist in auth.users") from None
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
            raise StoreError(
                f"postgres store {self.url}: {doing} failed: {_one_line(str(exc), self._password)} "
                "(is the database migrated? run `syncsim migrate`)"
            ) from None
        except psycopg.Error as exc:
            raise self._fail(exc, doing) from None

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
            for name, sql in migration_files("postgres"):
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
                            f"postgres store {self.url}: migration {name} failed: {_one_line(str(exc), self._password)}"
                        ) from None
                    # Bookkeeping only: applied_at is the server's time, since no job time depends on it.
                    await conn.execute("insert into syncsim_migrations (name) values (%s)", (name,))
                applied.append(name)
        self._adds_users = None
        return applied

    async def close(self) -> None:
        """Close the pool; the store reopens it if used again."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def _one_line(message: str, secret: str | None = None) -> str:
    """libpq's multi-line messages as one line, with the password (if any) masked."""
    text = "; ".join(line.strip() for line in message.strip().splitlines() if line.strip()) or "unknown error"
    for variant in {secret, quote(secret, safe="")} if secret else ():
        text = text.replace(variant, "***")
    return text
