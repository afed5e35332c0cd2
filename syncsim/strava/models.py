"""Typed records for what syncsim keeps from Strava: activities and an athlete's tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncsim.errors import MalformedResponse

__all__ = ["Activity", "Athlete", "StravaTokens"]

_REQUIRED = ("id", "name", "sport_type", "start_date")


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

    @classmethod
    def from_json(cls, data: object) -> Activity:
        """Parse one activity; a missing required field or a wrong type is a :class:`MalformedResponse`."""
        if not isinstance(data, dict):
            raise MalformedResponse(f"activity is not a JSON object: {type(data).__name__}")
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            ident = data.get("id", "?")
            raise MalformedResponse(f"activity {ident} lacks required field(s): {', '.join(missing)}")
        try:
            activity_id = data["id"]
            if isinstance(activity_id, bool) or not isinstance(activity_id, int):
                raise TypeError("id must be an integer")
            athlete = data.get("athlete")
            athlete_id = athlete.get("id") if isinstance(athlete, dict) else None
            start = datetime.fromisoformat(str(data["start_date"]).replace("Z", "+00:00"))
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
            return cls(
                id=activity_id,
                athlete_id=int(athlete_id) if athlete_id is not None else None,
                name=str(data["name"]),
                sport_type=str(data["sport_type"]),
                start_date=start.astimezone(UTC),
                distance=float(data.get("distance") or 0.0),
                moving_time=int(data.get("moving_time") or 0),
                elapsed_time=int(data.get("elapsed_time") or 0),
                total_elevation_gain=float(data.get("total_elevation_gain") or 0.0),
                raw=data,
            )
        except (TypeError, ValueError) as exc:
            raise MalformedResponse(f"activity {data.get('id', '?')} is malformed: {exc}") from None


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
