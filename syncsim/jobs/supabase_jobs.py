"""SupabaseStore's job queue over REST: ``sync_jobs`` through PostgREST, the state machine by RPC.

Creating, reading, listing and cancelling jobs are plain table requests; claiming, leases, progress, retries
and failure call the SQL functions of migration ``0005_functions`` (``syncsim_claim_job`` …), so both
PostgreSQL stores share one implementation of them. Rows as PostgREST JSON become
:class:`~syncsim.jobs.model.Job` objects in :func:`~syncsim.jobs.model.job_from_mapping` only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from postgrest.types import CountMethod, ReturnMethod
from supabase import AsyncClient

from syncsim.errors import InvalidInput, StoreError
from syncsim.jobs.model import Job, JobStatus, job_from_mapping
from syncsim.jobs.supabase_rest import _iso, _SupabaseRest, _UniqueViolation

#: How often create_job retries when the user's active job finishes between a refused insert and the select.
CREATE_RACE_RETRIES = 5


class _SupabaseJobs(_SupabaseRest):
    """The job-queue part of :class:`~syncsim.jobs.supabase.SupabaseStore` (a base class, no state of its own)."""

    # -- jobs ----------------------------------------------------------------------------------------------
    async def create_job(
        self, *, user_id: uuid.UUID, type: str, payload: dict[str, Any], max_attempts: int, now: float
    ) -> tuple[Job, bool]:
        """Insert a pending job; a 409 on the one-active-job index returns the user's active job instead."""
        if not isinstance(payload, dict):
            raise InvalidInput(f"job payload must be a JSON object, got {payload.__class__.__name__}")
        if max_attempts < 1:
            raise InvalidInput(f"max_attempts must be at least 1, got {max_attempts}")
        at = _iso(now)
        row = {
            "user_id": str(user_id),
            "type": type,
            "status": JobStatus.PENDING.value,
            "payload": payload,
            "created_at": at,
            "attempts": 0,
            "max_attempts": max_attempts,
            "next_attempt_at": at,
            "progress": {},
            "runs": 0,
            "updated_at": at,
        }
        doing = f"create {type} job for user {user_id}"

        async def insert(client: AsyncClient) -> Any:
            return await client.table("sync_jobs").insert(row, returning=ReturnMethod.representation).execute()

        async def active(client: AsyncClient) -> Any:
            return (
                await client.table("sync_jobs")
                .select("*")
                .eq("user_id", str(user_id))
                .eq("type", type)
                .in_("status", ["pending", "running"])
                .execute()
            )

        for _ in range(CREATE_RACE_RETRIES):
            try:
                created = await self._with_user(doing, user_id, insert)
                return job_from_mapping(created.data[0]), True
            except _UniqueViolation:
                pass
            found = await self._run(doing, active)
            if found.data:
                return job_from_mapping(found.data[0]), False
        raise StoreError(f"supabase store {self.url}: {doing} kept racing with the user's active job")

    async def get_job(self, job_id: uuid.UUID) -> Job | None:
        async def get(client: AsyncClient) -> Any:
            return await client.table("sync_jobs").select("*").eq("id", str(job_id)).limit(1).execute()

        rows = (await self._run(f"get job {job_id}", get)).data
        return job_from_mapping(rows[0]) if rows else None

    async def list_jobs(
        self, *, user_id: uuid.UUID | None = None, status: JobStatus | None = None, limit: int = 20
    ) -> list[Job]:
        """Newest first (``created_at``, then ``updated_at``); a user store sees only its own jobs (RLS)."""

        async def select(client: AsyncClient) -> Any:
            query = client.table("sync_jobs").select("*")
            if user_id is not None:
                query = query.eq("user_id", str(user_id))
            if status is not None:
                query = query.eq("status", str(status))
            return (
                await query.order("created_at", desc=True)
                .order("updated_at", desc=True)
                .order("id")
                .limit(limit)
                .execute()
            )

        return [job_from_mapping(r) for r in (await self._run("list jobs", select)).data]

    async def claim_job(
        self,
        *,
        worker_id: str,
        now: float,
        lease_s: float,
        job_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
    ) -> Job | None:
        """RPC ``syncsim_claim_job``: reclaim expired leases, then lease one due job (``SKIP LOCKED``)."""
        rows = await self._rpc(
            "claim job",
            "syncsim_claim_job",
            {
                "p_worker": worker_id,
                "p_now": _iso(now),
                "p_lease_s": lease_s,
                "p_job_id": None if job_id is None else str(job_id),
                "p_types": list(types) if types else None,
            },
        )
        return job_from_mapping(rows[0]) if rows else None

    async def extend_lease(self, job_id: uuid.UUID, *, worker_id: str, now: float, lease_s: float) -> bool:
        params = {"p_job_id": str(job_id), "p_worker": worker_id, "p_now": _iso(now), "p_lease_s": lease_s}
        return bool(await self._rpc(f"extend lease of job {job_id}", "syncsim_extend_lease", params))

    async def save_progress(self, job_id: uuid.UUID, *, worker_id: str, progress: dict[str, Any], now: float) -> bool:
        params = {"p_job_id": str(job_id), "p_worker": worker_id, "p_progress": progress, "p_now": _iso(now)}
        return bool(await self._rpc(f"save progress of job {job_id}", "syncsim_save_progress", params))

    async def complete_job(self, job_id: uuid.UUID, *, worker_id: str, result: dict[str, Any], now: float) -> bool:
        params = {"p_job_id": str(job_id), "p_worker": worker_id, "p_result": result, "p_now": _iso(now)}
        return bool(await self._rpc(f"complete job {job_id}", "syncsim_complete_job", params))

    async def retry_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, retry_at: float, now: float) -> bool:
        params = {
            "p_job_id": str(job_id),
            "p_worker": worker_id,
            "p_error": error,
            "p_retry_at": _iso(retry_at),
            "p_now": _iso(now),
        }
        return bool(await self._rpc(f"retry job {job_id}", "syncsim_retry_job", params))

    async def reschedule_job(self, job_id: uuid.UUID, *, worker_id: str, at: float, reason: str, now: float) -> bool:
        params = {
            "p_job_id": str(job_id),
            "p_worker": worker_id,
            "p_at": _iso(at),
            "p_reason": reason,
            "p_now": _iso(now),
        }
        return bool(await self._rpc(f"reschedule job {job_id}", "syncsim_reschedule_job", params))

    async def fail_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, now: float) -> bool:
        params = {"p_job_id": str(job_id), "p_worker": worker_id, "p_error": error, "p_now": _iso(now)}
        return bool(await self._rpc(f"fail job {job_id}", "syncsim_fail_job", params))

    async def reclaim_expired(self, *, now: float) -> int:
        return int(await self._rpc("reclaim expired leases", "syncsim_reclaim_expired", {"p_now": _iso(now)}) or 0)

    async def cancel_user_jobs(self, user_id: uuid.UUID, *, reason: str, now: float) -> int:
        at = _iso(now)

        async def update(client: AsyncClient) -> Any:
            return (
                await client.table("sync_jobs")
                .update(
                    {"status": "failed", "error": reason, "completed_at": at, "updated_at": at},
                    count=CountMethod.exact,
                    returning=ReturnMethod.minimal,
                )
                .eq("user_id", str(user_id))
                .eq("status", "pending")
                .execute()
            )

        return (await self._run(f"cancel jobs of user {user_id}", update)).count or 0
