"""The Store protocol: everything the runner and the sync need from a database, and ``open_store(url)``.

Implementations: :mod:`syncsim.jobs.sqlite` (``sqlite:///path``, the embedded default),
:mod:`syncsim.jobs.postgres` (``postgresql://…``) and :mod:`syncsim.jobs.supabase` (``supabase://…``).
Every time is passed in by the caller (``now``, UTC epoch seconds) so that stores never read a clock:
under the simulator their timestamps are simulated time.

Writes by a runner name the lease owner (``worker_id``); a write whose owner no longer holds the lease
(it expired and another runner took the job) changes nothing and returns ``False``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from syncsim import defaults
from syncsim.errors import ConfigError
from syncsim.jobs.model import Job, JobStatus
from syncsim.strava.models import Activity, StravaTokens

__all__ = ["Store", "default_store_url", "open_store", "redact_url"]


class Store(Protocol):
    """What the runner, the API and the Strava sync need from a store."""

    url: str  # redacted: safe to print

    async def migrate(self) -> list[str]:
        """Apply pending migrations idempotently; return the names applied now."""
        ...

    async def close(self) -> None: ...

    # -- jobs ---------------------------------------------------------------------------------------------
    async def create_job(
        self, *, user_id: uuid.UUID, type: str, payload: dict[str, Any], max_attempts: int, now: float
    ) -> tuple[Job, bool]:
        """Insert a pending job, or return the user's active job of that type. ``(job, created)``."""
        ...

    async def get_job(self, job_id: uuid.UUID) -> Job | None: ...

    async def list_jobs(
        self, *, user_id: uuid.UUID | None = None, status: JobStatus | None = None, limit: int = 20
    ) -> list[Job]:
        """Newest first."""
        ...

    async def claim_job(
        self,
        *,
        worker_id: str,
        now: float,
        lease_s: float,
        job_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
    ) -> Job | None:
        """Reclaim expired leases, then take a due pending job (``job_id`` if given) and lease it.

        Claiming sets ``running``, ``attempts += 1``, ``runs += 1``, ``started_at`` if unset, and the lease.
        Two concurrent claims never return the same job.
        """
        ...

    async def extend_lease(self, job_id: uuid.UUID, *, worker_id: str, now: float, lease_s: float) -> bool: ...

    async def save_progress(
        self, job_id: uuid.UUID, *, worker_id: str, progress: dict[str, Any], now: float
    ) -> bool: ...

    async def complete_job(self, job_id: uuid.UUID, *, worker_id: str, result: dict[str, Any], now: float) -> bool: ...

    async def retry_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, retry_at: float, now: float) -> bool:
        """Back to ``pending`` with ``next_attempt_at = retry_at``; the spent attempt stays counted."""
        ...

    async def reschedule_job(self, job_id: uuid.UUID, *, worker_id: str, at: float, reason: str, now: float) -> bool:
        """Back to ``pending`` at ``at`` without spending an attempt (rate limit, deadline)."""
        ...

    async def fail_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, now: float) -> bool: ...

    async def reclaim_expired(self, *, now: float) -> int:
        """Expired leases: back to ``pending`` (the attempt counts), or ``failed`` when none remain."""
        ...

    async def cancel_user_jobs(self, user_id: uuid.UUID, *, reason: str, now: float) -> int:
        """End the user's pending jobs as ``failed`` with ``reason`` (e.g. the athlete deauthorized)."""
        ...

    # -- Strava data ---------------------------------------------------------------------------------------
    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None: ...

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None: ...

    async def delete_tokens(self, user_id: uuid.UUID) -> bool: ...

    async def user_for_athlete(self, athlete_id: int) -> uuid.UUID | None: ...

    async def upsert_activities(self, user_id: uuid.UUID, activities: Sequence[Activity], *, now: float) -> int:
        """Insert or update by activity id, in one batch; return how many rows were written."""
        ...

    async def delete_activity(self, user_id: uuid.UUID, activity_id: int) -> bool: ...

    async def count_activities(self, user_id: uuid.UUID) -> int: ...

    async def latest_activity_start(self, user_id: uuid.UUID) -> datetime | None: ...


def default_store_url() -> str:
    """``$SYNCSIM_STORE`` if set, else the embedded SQLite file."""
    return os.environ.get(defaults.STORE_ENV) or defaults.STORE_URL


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def open_store(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names (not yet connected for network stores; call ``migrate()`` or use it).

    ``sqlite:///path.db`` (``sqlite://:memory:`` for a private in-memory one), ``postgresql://…`` or
    ``postgres://…``, ``supabase://<project-host>``. Anything else is a :class:`ConfigError`.
    """
    url = url or default_store_url()
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from syncsim.jobs.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **options)
    if scheme in {"postgresql", "postgres"}:
        try:
            from syncsim.jobs.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(f"postgresql stores need psycopg: pip install 'syncsim[postgres]' ({exc})") from None
        return PostgresStore.from_url(url, **options)
    if scheme == "supabase":
        try:
            from syncsim.jobs.supabase import SupabaseStore
        except ImportError as exc:  # pragma: no cover
            raise ConfigError(f"supabase stores need supabase-py: pip install 'syncsim[supabase]' ({exc})") from None
        return SupabaseStore.from_url(url, **options)
    raise ConfigError(
        f"unsupported store URL {redact_url(url)!r}: use sqlite:///path.db, postgresql://… or supabase://…"
    )
