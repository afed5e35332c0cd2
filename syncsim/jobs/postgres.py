"""The Store protocol on PostgreSQL (any server, including a Supabase project's connection string).

psycopg 3 in async mode over an ``AsyncConnectionPool`` that opens on first use, so creating a store costs
nothing until it is needed. The job state machine lives in SQL functions (migration ``0005_functions``)
shared with the Supabase REST store; this module only calls them. Every time is written from the caller's
clock (epoch seconds → ``timestamptz``), never the database's ``now()``, so simulated runs store simulated
time.

On plain PostgreSQL the compatibility migration creates ``auth.users`` and marks it with a comment; only
then does the store add a user id to it on demand. On Supabase, ``auth.users`` belongs to Supabase Auth: a
job or token for an unknown user is an :class:`~syncsim.errors.InvalidInput`.

PostgresStore is one noun; to keep each module short its methods live in base classes in sibling modules:

- :mod:`syncsim.jobs.postgres_pool` opens the pool, maps psycopg errors, migrates and closes;
- :mod:`syncsim.jobs.postgres_jobs` is the job queue (``sync_jobs`` and the state-machine functions);
- :mod:`syncsim.jobs.postgres_strava` is the Strava tables (tokens, activities by binary ``COPY``).

This module keeps :class:`PostgresStore` itself: its configuration (URL, pool sizes, timeouts) and state.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from syncsim.errors import ConfigError
from syncsim.jobs.postgres_jobs import _PostgresJobs
from syncsim.jobs.postgres_pool import MIGRATION_LOCK_KEY as MIGRATION_LOCK_KEY
from syncsim.jobs.postgres_pool import _one_line
from syncsim.jobs.postgres_strava import _PostgresStrava
from syncsim.jobs.store import redact_url

__all__ = ["PostgresStore"]

#: A serverless invocation needs one connection; a worker or the simulator a few. Small enough for the
#: free tier's connection limit (Supabase: 60 direct) to hold many stores at once.
MIN_POOL_SIZE = 1
MAX_POOL_SIZE = 10
#: Fail fast, with libpq's reason, when the server cannot be reached.
CONNECT_TIMEOUT_S = 10.0
#: Supabase's transaction pooler (port 6543) cannot keep server-side prepared statements between
#: transactions, so statements are never prepared there; psycopg's default threshold elsewhere.
TRANSACTION_POOLER_PORT = 6543
PREPARE_THRESHOLD = 5


class PostgresStore(_PostgresJobs, _PostgresStrava):
    """The Store protocol on PostgreSQL through a lazily opened psycopg async pool.

    ``url`` is the redacted URL (safe to print). A store belongs to the event loop that first uses it.
    Its methods live in the base classes (see the module docstring).
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
        self._password = unquote(urlsplit(url).password or "")
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._prepare_threshold = prepare_threshold
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._open_lock = asyncio.Lock()
        self._adds_users: bool | None = None  # learnt from auth.users' comment on first need

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """``postgresql://user:password@host:port/dbname?…`` (or ``postgres://``); ``options`` are
        ``min_size``, ``max_size``, ``connect_timeout`` (seconds) and ``prepare_threshold``."""
        safe = redact_url(url)
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a non-numeric port
            conninfo_to_dict(url)
        except (ValueError, psycopg.ProgrammingError) as exc:
            raise ConfigError(
                f"bad postgres URL {safe!r}: {_one_line(str(exc), unquote(parts.password or ''))}"
            ) from None
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
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"
