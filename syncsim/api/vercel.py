"""Vercel's entry: the syncsim API as an ASGI app configured from the environment (``api/index.py`` serves it)."""

from __future__ import annotations

import logging
import os
from typing import Any

from syncsim.errors import ConfigError, SyncsimError
from syncsim.platforms.vercel import STRATEGY_ENV

__all__ = ["STRAVA_URL_ENV", "build_vercel_app"]

#: Strava's base URL, for a deployment that talks to a stand-in (a FakeStrava); default https://www.strava.com.
STRAVA_URL_ENV = "SYNCSIM_STRAVA_URL"

log = logging.getLogger(__name__)


def build_vercel_app() -> Any:
    """The ASGI app for ``api/index.py``, from the environment.

    ``SYNCSIM_STORE`` (the Supabase Postgres connection string), ``SYNCSIM_JWT_SECRET`` (the project's JWT
    secret, at least 32 bytes), ``SYNCSIM_STRATEGY`` (``waituntil`` or ``resumable``; default ``waituntil``), and
    optionally ``STRAVA_CLIENT_ID``/``STRAVA_CLIENT_SECRET``, ``STRAVA_WEBHOOK_VERIFY_TOKEN``, ``SYNCSIM_PLATFORM``,
    ``CRON_SECRET`` (the tick's bearer, at least 16 characters) and ``SYNCSIM_STRAVA_URL`` (``syncsim serve
    --strava-url``'s counterpart). Migrations are not run per cold start: run ``syncsim migrate --store …`` once
    per release.

    A configuration it cannot serve (a variable missing or invalid) gives an app that answers every request 503
    and logs the reason once, in one line. Raising at import instead made Vercel's runtime report a traceback and
    fail every route, ``/healthz`` included, with nothing in the answer to say that the deployment, not the
    request, was at fault.
    """
    try:
        return _app_from_environment()
    except SyncsimError as exc:
        reason = " ".join(str(exc).split())
        log.error("syncsim is misconfigured; every request answers 503 until it is fixed: %s", reason)
        return _misconfigured()


def _misconfigured() -> Any:
    """An app answering every request 503, saying the deployment is misconfigured (why is in the log: not told
    to clients)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from syncsim.api.http import error_response

    async def answer(request: Request) -> Response:
        return error_response(503, "the server is misconfigured: its log says why")

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", answer, methods=methods)])


def _app_from_environment() -> Any:
    """The app the environment describes (see :func:`build_vercel_app`); a SyncsimError if it cannot."""
    from syncsim.api.app import build_app
    from syncsim.strava.client import strava_base_url

    store = os.environ.get("SYNCSIM_STORE")
    if not store:
        raise ConfigError("set SYNCSIM_STORE to the Supabase Postgres connection string")
    strategy = os.environ.get(STRATEGY_ENV) or "waituntil"
    if strategy not in ("waituntil", "resumable"):
        raise ConfigError(f"{STRATEGY_ENV} must be 'waituntil' or 'resumable' on Vercel, got {strategy!r}")
    strava_url = strava_base_url(os.environ.get(STRAVA_URL_ENV), setting=STRAVA_URL_ENV)
    return build_app(store, platform="vercel", strategy=strategy, strava_url=strava_url, migrate=False)
