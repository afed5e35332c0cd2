"""PostgresStore's job queue: creating, listing, claiming and finishing ``sync_jobs`` rows.

The state machine (claim, leases, progress, retries, failure) is the SQL functions of migration
``0005_functions``, shared with the Supabase REST store; these methods only call them. Creating a job relies on
the one-active-job-per-user-and-type unique index: a refused insert returns the user's active job instead. On
plain PostgreSQL the user row is added by the same statement. Rows become :class:`~syncsim.jobs.model.Job`
objects (times as UTC datetimes) in :func:`~syncsim.jobs.model.job_from_mapping` only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from psycopg.rows import dict_row

from syncsim.clock import to_datetime
from syncsim.errors import InvalidInput, StoreError
from syncsim.jobs.model import Job, JobStatus, job_from_mapping
from syncsim.jobs.postgres_pool import _PostgresPool

_ACTIVE = "status in ('pending', 'running')"
_JOB_FIELDS = (
    "id", "user_id", "type", "status", "payload", "result", "error", "created_at", "started_at",
    "completed_at", "attempts", "max_attempts", "locked_by", "locked_until", "next_attempt_at", "progress",
    "runs", "updated_at",
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


class _PostgresJobs(_PostgresPool):
    """The job-queue part of :class:`~syncsim.jobs.postgres.PostgresStore` (a base class, no state of its own)."""

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

    # -- jobs ----------------------------------------------------------------------------------------------
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

    async def save_progress(self, job_id: uuid.UUID, *, worker_id: str, progress: dict[str, Any], now: float) -> bool:
        return await self._call_bool(
            f"save progress of job {job_id}",
            "syncsim_save_progress(%s, %s, %s::jsonb, %s)",
            (job_id, worker_id, _json(progress, "job progress"), to_datetime(now)),
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

    async def cancel_user_jobs(self, user_id: uuid.UUID, *, reason: str, now: float) -> int:
        async with self._connection(f"cancel jobs of user {user_id}") as conn:
            cur = await conn.execute(
                """update sync_jobs set status = 'failed', error = %s, completed_at = %s, updated_at = %s
                   where user_id = %s and status = 'pending'""",
                (reason, to_datetime(now), to_datetime(now), user_id),
            )
            return cur.rowcount
