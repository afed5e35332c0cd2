"""Every job type syncsim ships, in one registry: the composition of :mod:`syncsim.jobs` (which knows no job
type of Strava's) and :mod:`syncsim.strava` (whose sync and events register themselves there)."""

from __future__ import annotations

from syncsim.jobs.handlers import HandlerRegistry, register_builtin_handlers
from syncsim.strava.events import register_strava_events
from syncsim.strava.sync import register_strava_sync

__all__ = ["default_handlers"]


def default_handlers() -> HandlerRegistry:
    """Every job type syncsim ships: ``strava_sync``, ``strava_events``, ``demo`` and ``noop``."""
    return register_strava_events(register_strava_sync(register_builtin_handlers(HandlerRegistry())))
