"""The job record and its statuses, as the `sync_jobs` table stores them."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from syncsim import defaults
from syncsim.errors import InvalidInput

__all__ = ["ACTIVE_STATUSES", "FINAL_STATUSES", "Job", "JobStatus", "TypePause", "parse_user_id"]


class JobStatus(StrEnum):
    """The four statuses of the design; the strings match the database."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One row of `sync_jobs`.

    The first twelve fields are the design's schema; the rest are what the runner added by migration:
    the lease (``locked_by`` until ``locked_until``), the next-attempt time, the checkpoint/progress
    document, ``runs`` (how many invocations or workers picked the job up) and ``crashes`` (how many times its
    lease lapsed: the invocation or worker running it was killed or lost its store). ``attempts`` counts the
    handler's runs, bounded by ``max_attempts``; a crash gives its attempt back and is bounded by ``max_crashes``.
    """

    id: uuid.UUID
    user_id: uuid.UUID
    type: str
    status: JobStatus
    payload: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = 3
    locked_by: str | None = None
    locked_until: datetime | None = None
    next_attempt_at: datetime | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    runs: int = 0
    updated_at: datetime | None = None
    crashes: int = 0
    max_crashes: int = defaults.MAX_CRASHES
    #: When the job first saved progress (a sync: its first page stored); until then its claims come first.
    served_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def evolve(self, **changes: Any) -> Job:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: uuids and datetimes as strings (ISO 8601, UTC)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, uuid.UUID):
                value = str(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, JobStatus):
                value = value.value
            out[f.name] = value
        return out


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _as_utc(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime: a driver's datetime or PostgREST's ISO 8601 text."""
    if value is None:
        return None
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).astimezone(UTC)


def job_from_mapping(row: Mapping[str, Any]) -> Job:
    """A :class:`Job` from a ``sync_jobs`` row as a mapping of its columns: psycopg's (UUIDs, datetimes) or
    PostgREST's JSON (strings); times become aware UTC datetimes."""
    created = _as_utc(row["created_at"])
    if created is None:
        raise ValueError("a sync_jobs row without created_at")
    return Job(
        id=_as_uuid(row["id"]),
        user_id=_as_uuid(row["user_id"]),
        type=row["type"],
        status=JobStatus(row["status"]),
        payload=row["payload"] or {},
        result=row["result"],
        error=row["error"],
        created_at=created,
        started_at=_as_utc(row["started_at"]),
        completed_at=_as_utc(row["completed_at"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        locked_by=row["locked_by"],
        locked_until=_as_utc(row["locked_until"]),
        next_attempt_at=_as_utc(row["next_attempt_at"]),
        progress=row["progress"] or {},
        runs=row["runs"],
        updated_at=_as_utc(row["updated_at"]),
        crashes=row["crashes"],
        max_crashes=row["max_crashes"],
        served_at=_as_utc(row["served_at"]),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class TypePause:
    """One row of `job_type_pauses`: every job of ``type`` waits until ``until`` (UTC epoch s) for a cause they
    all share (a spent app-wide rate limit, a service that is down). A runner writes it when one job meets that
    cause, so that other processes claim none of those jobs before ``until`` instead of each learning the cause
    on a job of its own. ``looks`` counts the looks that found the service down in a row (0 for a rate limit, and
    once a look found it up again): a process that looks next continues the count, so its wait keeps growing."""

    type: str
    until: float
    looks: int
    reason: str
    #: When the pause was last written (UTC epoch s).
    paused_at: float


def parse_user_id(value: object) -> uuid.UUID:
    """A user id as a UUID, or :class:`InvalidInput` saying what was wrong."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput(f"user id must be a UUID, got {str(value)[:60]!r}") from None
