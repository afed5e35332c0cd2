"""FakeStrava: a seeded, deterministic stand-in for Strava's API v3, as an httpx transport or a loopback server.

It is the single source of truth for what each fake athlete has on Strava: tests, the simulator and
``syncsim fake-strava`` read and change histories through it. See :mod:`syncsim.strava.fake.strava`.
"""

from __future__ import annotations

from syncsim.strava.fake.config import Churn, Faults, LatencyModel
from syncsim.strava.fake.data import ATHLETE_ID_BASE, COMPACT_SUMMARY_KEYS
from syncsim.strava.fake.histories import FakeAthlete, PageCache
from syncsim.strava.fake.http import FakeRequest, FakeResponse, FakeStravaTransport
from syncsim.strava.fake.strava import FakeStrava

__all__ = [
    "ATHLETE_ID_BASE",
    "COMPACT_SUMMARY_KEYS",
    "Churn",
    "FakeAthlete",
    "FakeRequest",
    "FakeResponse",
    "FakeStrava",
    "FakeStravaTransport",
    "Faults",
    "LatencyModel",
    "PageCache",
]
