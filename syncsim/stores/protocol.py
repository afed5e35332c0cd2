"""The Store protocol: everything the runner, the API and the Strava sync need from a database.

Implementations: :mod:`syncsim.stores.sqlite` (``sqlite:///path``, the embedded default),
:mod:`syncsim.stores.postgres` (``postgresql://…``) and :mod:`syncsim.stores.supabase` (``supabase://…``);
:func:`syncsim.stores.open_store` picks one by URL.
Every time is passed in by the caller (``now``, UTC epoch seconds) so that stores never read a clock:
under the simulator their timestamps are simulated time.

Writes by a runner name the lease owner (``worker_id``); a write whose owner no longer holds the lease
(it expired and another runner took the job) changes nothing and returns ``False``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from syncsim.jobs.model import Job, JobStatus, TypePause
from syncsim.strava.models import Activity, StoredActivity, StravaTokens
from syncsim.strava.ratelimit import SlotRequest

__all__ = ["Store"]


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
        Reclaiming is :meth:`reclaim_expired`'s.
        Two concurrent claims never return the same job.
        """
        ...

    async def extend_lease(self, job_id: uuid.UUID, *, worker_id: str, now: float, lease_s: float) -> bool:
        """The lease now runs until ``now + lease_s``."""
        ...

    async def save_progress(
        self, job_id: uuid.UUID, *, worker_id: str, progress: dict[str, Any], now: float, lease_s: float
    ) -> bool:
        """Replace the job's progress document and extend the lease to ``now + lease_s``, as a heartbeat does."""
        ...

    async def complete_job(self, job_id: uuid.UUID, *, worker_id: str, result: dict[str, Any], now: float) -> bool: ...

    async def retry_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, retry_at: float, now: float) -> bool:
        """Back to ``pending`` with ``next_attempt_at = retry_at``; the spent attempt stays counted."""
        ...

    async def reschedule_job(self, job_id: uuid.UUID, *, worker_id: str, at: float, reason: str, now: float) -> bool:
        """Back to ``pending`` at ``at`` without spending an attempt (rate limit, deadline)."""
        ...

    async def fail_job(self, job_id: uuid.UUID, *, worker_id: str, error: str, now: float) -> bool: ...

    async def reclaim_expired(self, *, now: float) -> int:
        """Expired leases are crashes: back to ``pending`` with ``crashes += 1`` and the claim's attempt given
        back (``attempts -= 1``), or ``failed`` once ``crashes`` reaches ``max_crashes``."""
        ...

    async def cancel_job(self, job_id: uuid.UUID, *, user_id: uuid.UUID, reason: str, now: float) -> bool:
        """End ``user_id``'s pending or running job as ``failed`` with ``reason``, releasing its lease, so the
        runner holding it can write nothing more to it. ``False``: not that user's job, or already final."""
        ...

    async def due_summary(self, *, now: float, limit: int) -> tuple[int, float | None]:
        """How many pending jobs are due at ``now`` (counted up to ``limit``), and when the next one that is not
        due yet will be (UTC epoch s; ``None`` if none waits)."""
        ...

    async def unserved_jobs(self, *, limit: int) -> int:
        """How many pending or running jobs have never saved a checkpoint (no page served yet), counted up to
        ``limit``: the syncs a scarce rate-limit window is kept for (see :mod:`syncsim.strava.sync`)."""
        ...

    async def pause_job_type(self, type: str, *, until: float, looks: int, reason: str, now: float) -> None:
        """Hold every job of ``type`` until ``until`` (a pause already longer keeps its end), with ``looks`` and
        ``reason`` as given: see :class:`~syncsim.jobs.model.TypePause`."""
        ...

    async def job_type_pause(self, type: str) -> TypePause | None:
        """The pause last written for ``type`` (it may have ended), or ``None``."""
        ...

    async def type_pauses(self, *, now: float) -> list[TypePause]:
        """The pauses that last beyond ``now``, of every type."""
        ...

    async def clear_type_outage(self, type: str, *, now: float) -> None:
        """A service the type needs answered again: set the looks of a pause of ``type`` that has ended by ``now``
        to 0 (a pause still running was written since, and is left as it is)."""
        ...

    async def take_rate_slot(self, slot: SlotRequest) -> str | None:
        """Take a slot of Strava's app-wide budget for one request about to go, where every process counts (a
        window another caller has already moved past stays). Returns ``None`` if the slot is taken, else which
        limit is spent, ``"day"`` before ``"window"``, and takes nothing. The limits of a slot not ``assumed`` are
        stored with the count, and bind the callers whose limits are ``assumed`` (:class:`SlotRequest`)."""
        ...

    async def cancel_user_jobs(self, user_id: uuid.UUID, *, reason: str, now: float) -> int:
        """End the user's pending jobs as ``failed`` with ``reason`` (e.g. the athlete deauthorized)."""
        ...

    # -- Strava data ---------------------------------------------------------------------------------------
    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None: ...

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None: ...

    async def delete_tokens(self, user_id: uuid.UUID) -> bool:
        """Forget the user's Strava connection, and the webhook events waiting for it (without tokens they cannot
        be read, and the upkeep would submit a failing job for them at every tick)."""
        ...

    async def user_for_athlete(self, athlete_id: int) -> uuid.UUID | None: ...

    async def upsert_activities(self, user_id: uuid.UUID, activities: Sequence[Activity], *, now: float) -> int:
        """Insert or update by activity id, in one batch; return how many rows were written."""
        ...

    async def delete_activity(self, user_id: uuid.UUID, activity_id: int) -> bool: ...

    async def stored_activities(
        self, user_id: uuid.UUID, activity_ids: Sequence[int] | None = None
    ) -> dict[int, StoredActivity]:
        """The user's stored activities by id (only ``activity_ids`` if given): their fields, and whether each
        holds Strava's detailed representation."""
        ...

    async def mark_activities_seen(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        """Record that a listing of Strava saw these activities at ``now`` (upserts record it too)."""
        ...

    async def delete_activities_unseen_since(self, user_id: uuid.UUID, since: float) -> int:
        """Remove the user's activities that no listing saw and no write touched since ``since`` (UTC epoch s):
        what Strava no longer has, once a complete listing that started at ``since`` is done. Returns how many."""
        ...

    async def count_activities(self, user_id: uuid.UUID) -> int: ...

    # -- webhook events and reconciliation ---------------------------------------------------------------------
    async def add_activity_events(self, user_id: uuid.UUID, activity_ids: Sequence[int], *, now: float) -> None:
        """Remember that Strava named these activities (to be re-read); one row per activity, the latest time."""
        ...

    async def pending_activity_events(self, user_id: uuid.UUID, *, limit: int) -> list[tuple[int, float]]:
        """The user's activities waiting to be re-read, oldest event first: (activity id, received at)."""
        ...

    async def clear_activity_events(self, user_id: uuid.UUID, events: Sequence[tuple[int, float]]) -> None:
        """Forget these events once handled; one renewed since (a newer received_at) stays."""
        ...

    async def users_with_activity_events(self, *, limit: int) -> list[uuid.UUID]:
        """Users with activities waiting to be re-read, the longest waiting first."""
        ...

    async def take_event_quota(self, user_id: uuid.UUID, *, window: float, limit: int, wanted: int) -> int:
        """Grant up to ``wanted`` webhook re-reads for the user within ``limit`` per window (the window starting
        at ``window``, UTC epoch s); returns how many were granted (0 for a user without tokens)."""
        ...

    async def mark_reconciled(self, user_id: uuid.UUID, *, now: float) -> None:
        """Record that a complete listing of the user's history (full or reconcile) ended at ``now``."""
        ...

    async def reconciled_at(self, user_id: uuid.UUID) -> float | None:
        """When a complete listing of the user's history last ended (UTC epoch s), or ``None`` if none did."""
        ...

    async def users_to_reconcile(self, *, before: float, asked_before: float, limit: int) -> list[uuid.UUID]:
        """Connected users whose history was not reconciled since ``before`` (never first), and for whom no
        reconcile was asked since ``asked_before``."""
        ...

    async def mark_reconcile_asked(self, user_id: uuid.UUID, *, now: float) -> None:
        """Record that a reconcile of the user's history was asked for at ``now``."""
        ...

    async def latest_activity_start(self, user_id: uuid.UUID) -> datetime | None: ...
