"""Vercel's entry: the syncsim API as an ASGI app configured from the environment (``api/index.py`` serves it)."""

from __future__ import annotations

import os
from typing import Any

from syncsim.errors import ConfigError
from syncsim.platforms.vercel import STRATEGY_ENV

__all__ = ["STRAVA_URL_ENV", "build_vercel_app"]

#: Strava's base URL, for a deployment that talks to a stand-in (a FakeStrava); default https://www.strava.com.
STRAVA_URL_ENV = "SYNCSIM_STRAVA_URL"


def build_vercel_app() -> Any:
    """The ASGI app for ``api/index.py``, from the environment.

    ``SYNCSIM_STORE`` (the Supabase Postgres connection string), ``SYNCSIM_JWT_SECRET`` (the project's JWT
    secret), ``SYNCSIM_STRATEGY`` (``waituntil`` or ``resumable``; default ``waituntil``), and optionally
    ``STRAVA_CLIENT_ID``/``STRAVA_CLIENT_SECRET``, ``STRAVA_WEBHOOK_VERIFY_TOKEN``, ``SYNCSIM_PLATFORM``,
    ``CRON_SECRET`` (the tick's bearer) and ``SYNCSIM_STRAVA_URL`` (``syncsim serve --strava-url``'s counterpart).
    Migrations are not run per cold start: run ``syncsim migrate --store …`` once per release.
    """
    from syncsim.api.app import build_app

    store = os.environ.get("SYNCSIM_STORE")
    if not store:
        raise ConfigError("set SYNCSIM_STORE to the Supabase Postgres connection string")
    strategy = os.environ.get(STRATEGY_ENV) or "waituntil"
    if strategy not in ("waituntil", "resumable"):
        raise ConfigError(f"{STRATEGY_ENV} must be 'waituntil' or 'resumable' on Vercel, got {strategy!r}")
    strava_url = os.environ.get(STRAVA_URL_ENV) or None
    return build_app(store, platform="vercel", strategy=strategy, strava_url=strava_url, migrate=False)
