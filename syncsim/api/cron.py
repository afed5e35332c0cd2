"""``GET|POST /api/cron/tick``: a scheduled invocation that keeps every job moving, with nobody watching.

Authorised by ``Authorization: Bearer $CRON_SECRET`` (Vercel Cron's convention: Vercel sends that header, and
Supabase Cron's job sends it from Vault, see :mod:`syncsim.stores.cron`), compared in constant time. Without a
configured secret the route answers 503; with a wrong or missing bearer, 401 with the same body whatever the
state of the queue: it continues nothing and tells nothing. GET is what Vercel Cron sends, POST what pg_net does.

Each call runs in its own invocation: the upkeep (:mod:`syncsim.strava.upkeep`) submits what should be due,
then :meth:`~syncsim.jobs.service.JobService.tick` reclaims expired leases and continues due jobs under
``resumable`` rules until the invocation's deadline margin, and the route answers with a JSON summary. Ticks may
overlap: claims take the lease/``SKIP LOCKED`` path, so two never run the same job.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from syncsim.api.auth import AuthError, bearer_token
from syncsim.api.http import ApiError, RequestReader, json_response, only_query
from syncsim.errors import ConfigError
from syncsim.jobs.runner import JobRunner
from syncsim.jobs.service import JobService

__all__ = ["CRON_SECRET_ENV", "MIN_CRON_SECRET_CHARS", "CronRoutes"]

CRON_SECRET_ENV = "CRON_SECRET"
#: Vercel suggests a random string of at least 16 characters.
MIN_CRON_SECRET_CHARS = 16

Upkeep = Callable[[JobRunner], Awaitable[dict[str, Any]]]


class CronRoutes:
    """The tick route over ``service``; ``upkeep`` submits jobs first (Strava's: events and reconciles)."""

    def __init__(
        self, *, service: JobService, reader: RequestReader, secret: str | None, upkeep: Upkeep | None = None
    ) -> None:
        if secret is not None and len(secret) < MIN_CRON_SECRET_CHARS:
            raise ConfigError(f"{CRON_SECRET_ENV} must be at least {MIN_CRON_SECRET_CHARS} characters")
        self.service = service
        self.reader = reader
        self.secret = secret
        self.upkeep = upkeep

    async def tick(self, request: Request) -> Response:
        if not self.secret:
            raise ConfigError(f"the tick is not configured: set {CRON_SECRET_ENV} (the bearer its scheduler sends)")
        try:
            given = bearer_token(request.headers.get("authorization"))
        except AuthError:
            given = ""
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            raise ApiError(401, "the tick needs its bearer secret", headers={"WWW-Authenticate": "Bearer"})
        only_query(request)
        invocation = self.reader.invocation(request)
        submitted = await self.upkeep(self.service.runner) if self.upkeep is not None else {}
        summary = await self.service.tick(invocation)
        return json_response({**summary, **submitted})
