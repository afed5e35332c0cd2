"""The Store protocol over Supabase's REST API (PostgREST), through supabase-py's async client.

``supabase://<project-host>`` → ``https://<project-host>`` (``supabase://abcd.supabase.co``; a bare project
ref ``supabase://abcd`` means ``abcd.supabase.co``; ``supabase://127.0.0.1:54321?scheme=http`` for a local
stack). The key comes from ``$SUPABASE_KEY``: the service-role key for the runner, which bypasses RLS and
checks ``user_id`` itself. :meth:`SupabaseStore.for_user` makes a store that reads on a user's behalf with
the user's JWT, so row-level security applies.

Plain table operations go through PostgREST (``sync_jobs``, ``strava_tokens``, ``strava_activities``); the
job state machine is the SQL functions of migration ``0005_functions``, called by RPC, so both PostgreSQL
stores share one implementation of claiming, leases and retries. Every time is the caller's clock, sent as
ISO 8601 UTC. Migrations cannot run over REST: apply them with ``syncsim migrate`` on the project's
``postgresql://`` connection string.

The HTTP client is injectable (``http_client=`` or ``transport=``): tests route it to
:class:`syncsim.testing.postgrest.PostgrestTransport`, which executes PostgREST's API on a real PostgreSQL.

SupabaseStore is one noun; to keep each module short its methods live in base classes in sibling modules:

- :mod:`syncsim.jobs.supabase_rest` creates the client, maps PostgREST errors, checks the schema and closes;
- :mod:`syncsim.jobs.supabase_jobs` is the job queue (``sync_jobs`` and the state-machine RPCs);
- :mod:`syncsim.jobs.supabase_strava` is the Strava tables (tokens, activities).

This module keeps :class:`SupabaseStore` itself: the ``supabase://`` URL, the key, and its state.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from supabase import AsyncClient

from syncsim.errors import ConfigError, InvalidInput
from syncsim.jobs.store import redact_url
from syncsim.jobs.supabase_jobs import CREATE_RACE_RETRIES as CREATE_RACE_RETRIES
from syncsim.jobs.supabase_jobs import _SupabaseJobs
from syncsim.jobs.supabase_strava import _SupabaseStrava

__all__ = ["KEY_ENV", "SupabaseStore"]

#: The environment variable holding the project's API key (service-role key for the runner).
KEY_ENV = "SUPABASE_KEY"
#: Seconds before a REST call gives up; a serverless invocation has only a few seconds to spare.
TIMEOUT_S = 30.0


def _project_url(url: str) -> str:
    """``supabase://host[:port][/path][?scheme=http]`` → the project's HTTP(S) base URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "supabase" or not parts.hostname:
        raise ConfigError(f"bad supabase URL {redact_url(url)!r}: use supabase://<project-ref>.supabase.co")
    scheme = (parse_qs(parts.query).get("scheme") or ["https"])[0].lower()
    if scheme not in {"http", "https"}:
        raise ConfigError(f"bad supabase URL {redact_url(url)!r}: scheme must be http or https")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad supabase URL {redact_url(url)!r}: the port is not a number") from None
    host = parts.hostname
    if "." not in host and host != "localhost" and port is None:
        host = f"{host}.supabase.co"  # a bare project ref
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


class SupabaseStore(_SupabaseJobs, _SupabaseStrava):
    """The Store protocol over Supabase REST with supabase-py's :class:`~supabase.AsyncClient`.

    ``url`` is safe to print (it never holds the key). Pass ``http_client`` (owned by the caller) or
    ``transport`` (wrapped in a client this store owns and closes) to route requests elsewhere. With
    ``user_jwt`` every request carries the user's token in ``Authorization``, so RLS applies.
    """

    def __init__(
        self,
        project_url: str,
        key: str,
        *,
        url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        user_jwt: str | None = None,
        timeout: float = TIMEOUT_S,
    ) -> None:
        if not key:
            raise ConfigError(f"supabase store needs an API key: set {KEY_ENV}")
        if http_client is not None and transport is not None:
            raise ConfigError("supabase store: pass http_client or transport, not both")
        self.url = redact_url(url or f"supabase://{urlsplit(project_url).netloc}")
        #: The project's HTTP(S) base URL (no secret in it).
        self.project_url = project_url
        self._key = key
        self._user_jwt = user_jwt
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=timeout)
        self._client: AsyncClient | None = None
        self._client_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, key: str | None = None, **options: Any) -> SupabaseStore:
        """``supabase://<project-host>``; the key is ``key`` or ``$SUPABASE_KEY``. ``options``:
        ``http_client``, ``transport``, ``user_jwt``, ``timeout`` (seconds)."""
        allowed = {"http_client", "transport", "user_jwt", "timeout"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown supabase store option(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}"
            )
        project_url = _project_url(url)
        key = key or os.environ.get(KEY_ENV, "")
        if not key:
            raise ConfigError(f"supabase store {redact_url(url)}: {KEY_ENV} is not set (the project's API key)")
        return cls(project_url, key, url=url, **options)

    def for_user(self, jwt: str) -> SupabaseStore:
        """A store that acts as the user whose JWT this is (RLS applies); it shares this store's HTTP client."""
        if not jwt:
            raise InvalidInput("for_user needs the user's JWT")
        return SupabaseStore(self.project_url, self._key, url=self.url, http_client=self._http, user_jwt=jwt)

    def __repr__(self) -> str:
        return f"SupabaseStore({self.url!r}{', as user' if self._user_jwt else ''})"
