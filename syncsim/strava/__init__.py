"""Strava: the API client, its rate-limit budget and trace, FakeStrava, and the records syncsim keeps."""

from __future__ import annotations

from syncsim.strava.client import MemoryTokenStore, StravaClient, StravaRejected, TokenStore
from syncsim.strava.fake import FakeAthlete, FakeStrava, FakeStravaTransport, Faults, LatencyModel
from syncsim.strava.fake_server import running_fake_strava, serve_fake_strava
from syncsim.strava.models import Activity, Athlete, StravaTokens
from syncsim.strava.ratelimit import RateLimitBudget, next_quarter_hour, next_utc_midnight
from syncsim.strava.trace import Trace, TraceRecord

__all__ = [
    "Activity",
    "Athlete",
    "FakeAthlete",
    "FakeStrava",
    "FakeStravaTransport",
    "Faults",
    "LatencyModel",
    "MemoryTokenStore",
    "RateLimitBudget",
    "StravaClient",
    "StravaRejected",
    "StravaTokens",
    "TokenStore",
    "Trace",
    "TraceRecord",
    "next_quarter_hour",
    "next_utc_midnight",
    "running_fake_strava",
    "serve_fake_strava",
]
