"""Strava: the API client, FakeStrava and the records syncsim keeps."""

from __future__ import annotations

from syncsim.strava.models import Activity, StravaTokens

__all__ = ["Activity", "StravaTokens"]
