"""syncsim: a background-job system for syncing Strava histories on serverless platforms, and its simulator."""

from __future__ import annotations

__version__ = "0.1.0"
