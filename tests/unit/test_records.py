"""syncsim.records: the fast constructors build the same frozen records as the dataclasses' own __init__."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from syncsim.jobs.model import Job, JobStatus, job_from_mapping, job_from_values
from syncsim.records import positional_builder
from syncsim.strava.models import Activity


def test_a_job_built_from_values_equals_one_built_by_init_and_stays_frozen() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    fields = {
        "id": uuid.uuid4(), "user_id": uuid.uuid4(), "type": "strava_sync", "status": JobStatus.RUNNING,
        "payload": {"mode": "full"}, "result": None, "error": "boom", "created_at": now, "started_at": now,
        "completed_at": None, "attempts": 2, "max_attempts": 5, "locked_by": "w1", "locked_until": now,
        "next_attempt_at": None, "progress": {"page": 3}, "runs": 4, "updated_at": now,
    }  # fmt: skip
    assert [f.name for f in dataclasses.fields(Job)] == list(fields)
    built = job_from_values(*fields.values())
    assert built == Job(**fields) and type(built) is Job
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.status = JobStatus.COMPLETED  # type: ignore[misc]


def test_an_activity_parsed_from_json_equals_one_built_by_init() -> None:
    raw = {"id": 7, "name": "Run", "sport_type": "Run", "start_date": "2018-02-16T14:52:54Z", "distance": 10.5}
    expected = Activity(
        id=7, athlete_id=None, name="Run", sport_type="Run", start_date=datetime(2018, 2, 16, 14, 52, 54, tzinfo=UTC),
        distance=10.5, moving_time=0, elapsed_time=0, total_elevation_gain=0.0, raw=raw,
    )  # fmt: skip
    assert Activity.from_json(raw) == expected


def test_only_slotted_dataclasses_without_post_init_get_a_builder() -> None:
    @dataclasses.dataclass
    class Plain:
        x: int

    @dataclasses.dataclass(slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            pass

    for cls in (Plain, Checked):
        with pytest.raises(TypeError, match="slotted dataclass"):
            positional_builder(cls)


def test_a_job_row_reads_the_same_from_psycopg_values_and_from_postgrest_json() -> None:
    native = {
        "id": uuid.uuid4(), "user_id": uuid.uuid4(), "type": "strava_sync", "status": "pending", "payload": None,
        "result": None, "error": None, "created_at": datetime(2026, 1, 5, 1, 0, tzinfo=UTC), "started_at": None,
        "completed_at": None, "attempts": 0, "max_attempts": 3, "locked_by": None, "locked_until": None,
        "next_attempt_at": datetime(2026, 1, 5, 1, 15, tzinfo=UTC), "progress": None, "runs": 0, "updated_at": None,
    }  # fmt: skip
    text = {**native, "id": str(native["id"]), "user_id": str(native["user_id"])}
    text.update(created_at="2026-01-05T02:00:00+01:00", next_attempt_at="2026-01-05T01:15:00+00:00")
    job = job_from_mapping(native)
    assert job == job_from_mapping(text)
    assert job.status is JobStatus.PENDING and job.payload == {} and job.progress == {}
    assert job.created_at == datetime(2026, 1, 5, 1, 0, tzinfo=UTC) and job.created_at.tzinfo is UTC
    with pytest.raises(ValueError, match="created_at"):
        job_from_mapping({**native, "created_at": None})
