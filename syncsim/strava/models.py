"""Typed records for what syncsim keeps from Strava: activities and an athlete's tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from syncsim.errors import MalformedResponse, UnusableResponse

__all__ = ["Activity", "ActivityFields", "Athlete", "StoredActivity", "StravaTokens", "utc_time"]

_REQUIRED = ("id", "name", "sport_type", "start_date")
#: Ids and times (seconds) are stored as signed 64-bit integers (SQLite's INTEGER, PostgreSQL's bigint).
_INT64 = range(-(2**63), 2**63)


class ActivityFields(NamedTuple):
    """The fields a store keeps of an activity in its own columns (times in UTC epoch seconds): two activities
    with equal fields are the same as far as the store can tell (a sync compares them to find stale rows)."""

    name: str
    sport_type: str
    start: float
    distance: float
    moving_time: int
    elapsed_time: int
    total_elevation_gain: float


class StoredActivity(NamedTuple):
    """What a store says of one stored activity: its fields, and whether its raw JSON is Strava's detailed
    representation (``resource_state`` 3, from ``GET /activities/{id}``) rather than a list summary."""

    fields: ActivityFields
    detailed: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Activity:
    """A Strava ``SummaryActivity`` as stored: typed columns plus the raw JSON (unknown fields kept)."""

    id: int
    athlete_id: int | None
    name: str
    sport_type: str
    start_date: datetime
    distance: float
    moving_time: int
    elapsed_time: int
    total_elevation_gain: float
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def fields(self) -> ActivityFields:
        """The fields a store keeps in columns (see :class:`ActivityFields`)."""
        return ActivityFields(
            self.name,
            self.sport_type,
            self.start_date.timestamp(),
            self.distance,
            self.moving_time,
            self.elapsed_time,
            self.total_elevation_gain,
        )

    @property
    def detailed(self) -> bool:
        """Whether this is Strava's detailed representation (``resource_state`` 3)."""
        return self.raw.get("resource_state") == 3

    @classmethod
    def from_json(cls, data: object) -> Activity:
        """Parse one activity; a missing required field or a wrong type is a :class:`MalformedResponse`."""
        if not isinstance(data, dict):
            raise MalformedResponse(f"activity is not a JSON object: {type(data).__name__}")
        get = data.get
        activity_id, name, sport_type, start_raw = get("id"), get("name"), get("sport_type"), get("start_date")
        if activity_id is None or name is None or sport_type is None or start_raw is None:
            missing = [k for k in _REQUIRED if get(k) is None]
            raise MalformedResponse(f"activity {get('id', '?')} lacks required field(s): {', '.join(missing)}")
        try:
            if isinstance(activity_id, bool) or not isinstance(activity_id, int):
                raise TypeError("id must be an integer")
            athlete = get("athlete")
            athlete_id = athlete.get("id") if isinstance(athlete, dict) else None
            activity = cls(
                id=activity_id,
                athlete_id=int(athlete_id) if athlete_id is not None else None,
                name=str(name),
                sport_type=str(sport_type),
                start_date=utc_time(start_raw),
                distance=float(get("distance") or 0.0),
                moving_time=int(get("moving_time") or 0),
                elapsed_time=int(get("elapsed_time") or 0),
                total_elevation_gain=float(get("total_elevation_gain") or 0.0),
                raw=data,
            )
        except (TypeError, ValueError) as exc:
            raise MalformedResponse(f"activity {get('id', '?')} is malformed: {exc}") from None
        except OverflowError as exc:  # a time before year 1 in UTC, an infinite duration: the same again if asked
            raise UnusableResponse(f"activity {get('id', '?')} is out of range: {exc}") from None
        # A store could not keep a larger one, and would fail with nothing said of the activity.
        for key, value in (
            ("id", activity.id),
            ("athlete.id", activity.athlete_id),
            ("moving_time", activity.moving_time),
            ("elapsed_time", activity.elapsed_time),
        ):
            if value is not None and value not in _INT64:
                raise UnusableResponse(
                    f"activity {get('id', '?')} is out of range: {key} exceeds a signed 64-bit integer"
                )
        return activity


def utc_time(value: object) -> datetime:
    """An ISO 8601 time as an aware UTC datetime; without an offset it is taken as UTC (ValueError if bad).

    Strava writes ``2018-02-16T14:52:54Z``: that form is parsed without the general path's string rewrite.
    """
    text = value if type(value) is str else str(value)
    if len(text) == 20 and text[19] == "Z":
        try:
            fast = datetime.fromisoformat(text)  # Python 3.11+ reads the "Z" as UTC itself
        except ValueError:
            pass
        else:
            if fast.tzinfo is UTC:
                return fast
    start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return start.astimezone(UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class StravaTokens:
    """An athlete's OAuth tokens. Never logged, never in a job row; ``repr`` hides them."""

    athlete_id: int
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float  # UTC epoch seconds
    scope: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Athlete:
    """The authenticated athlete (``GET /athlete``): its Strava id and name, plus the raw JSON."""

    id: int
    username: str | None
    firstname: str | None
    lastname: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: object) -> Athlete:
        """Parse ``DetailedAthlete``/``SummaryAthlete``; no integer ``id`` is a :class:`MalformedResponse`."""
        if not isinstance(data, dict):
            raise MalformedResponse(f"athlete is not a JSON object: {type(data).__name__}")
        athlete_id = data.get("id")
        if isinstance(athlete_id, bool) or not isinstance(athlete_id, int):
            raise MalformedResponse("athlete lacks an integer id")

        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            id=athlete_id,
            username=text("username"),
            firstname=text("firstname"),
            lastname=text("lastname"),
            raw=data,
        )
