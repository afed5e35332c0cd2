"""The HTTP API (Starlette): submit a sync, poll it, receive Strava's webhooks, connect an athlete.

Every request is one **invocation** of the platform (:class:`~syncsim.platforms.invocation.Platform`): the
request handler runs inside it, work handed to ``invocation.wait_until`` continues after the response, and the
invocation ends when both are done or its deadline kills it. A handler that itself overruns the deadline
answers 504.

Routes (the OpenAPI description at ``GET /openapi.json`` is :func:`~syncsim.api.openapi.openapi_document`):

- ``POST /api/sync`` → 202 ``{"jobId", "status", "created"}``; an active job of the user is returned
- ``GET /api/sync`` → the user's recent jobs; ``GET /api/sync/{jobId}`` → one job (404 if not theirs)
- ``GET|POST /api/strava/webhook`` → Strava's challenge; events (:class:`~syncsim.api.strava.StravaRoutes`)
- ``POST /api/strava/connect`` → OAuth code exchange; tokens are stored, never echoed
- ``GET /healthz``, ``GET /openapi.json``

Every error is JSON ``{"error": "<one line>"}`` with a 4xx/5xx status; no error message carries a secret.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncsim import defaults
from syncsim.api.auth import check_secret, jwt_secret_from_env
from syncsim.api.http import (
    ApiError,
    InvocationMiddleware,
    RequestReader,
    exception_handlers,
    job_json,
    json_response,
    json_type,
)
from syncsim.api.openapi import openapi_document
from syncsim.api.strava import WEBHOOK_SUBSCRIPTION_ENV, WEBHOOK_VERIFY_TOKEN_ENV, StravaConnector, StravaRoutes
from syncsim.clock import Clock, SystemClock
from syncsim.defaults import MAX_ATTEMPTS_LIMIT, MAX_LIST_LIMIT
from syncsim.errors import ConfigError
from syncsim.jobs.handlers import default_handlers
from syncsim.jobs.runner import JobRunner
from syncsim.jobs.service import JobService
from syncsim.platforms.invocation import Platform
from syncsim.stores.protocol import Store
from syncsim.stores.urls import redact_url
from syncsim.strava.trace import Trace

__all__ = ["SyncRoutes", "build_app", "create_app"]

_SUBMIT_FIELDS = frozenset({"type", "payload", "maxAttempts"})


class SyncRoutes:
    """``/api/sync`` and ``/api/sync/{jobId}``: submit a job, list the user's jobs, read one."""

    def __init__(self, *, service: JobService, reader: RequestReader) -> None:
        self.service = service
        self.reader = reader

    async def collection(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.submit(request)
        return await self.list_jobs(request)

    async def submit(self, request: Request) -> Response:
        user = self.reader.user(request)
        body = await self.reader.json_body(request, required=False) or {}
        unknown = sorted(set(body) - _SUBMIT_FIELDS)
        if unknown:
            raise ApiError(422, f"unknown field(s): {', '.join(unknown)}; allowed: type, payload, maxAttempts")
        job_type = body.get("type", defaults.JOB_TYPE)
        if not isinstance(job_type, str):
            raise ApiError(422, f"type must be a string, got {json_type(job_type)}")
        payload = body.get("payload", {})
        if not isinstance(payload, dict):
            raise ApiError(422, f"payload must be a JSON object, got {json_type(payload)}")
        max_attempts = body.get("maxAttempts", defaults.MAX_ATTEMPTS)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise ApiError(422, f"maxAttempts must be an integer, got {json_type(max_attempts)}")
        if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ApiError(422, f"maxAttempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {max_attempts}")
        job, created = await self.service.submit(
            user, payload, invocation=self.reader.invocation(request), type=job_type, max_attempts=max_attempts
        )
        return json_response(
            {"jobId": str(job.id), "status": job.status.value, "created": created},
            202,
            {"Location": f"/api/sync/{job.id}"},
        )

    async def list_jobs(self, request: Request) -> Response:
        user = self.reader.user(request)
        raw = request.query_params.get("limit")
        limit = defaults.LIST_LIMIT
        if raw is not None:
            if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
                raise ApiError(422, f"limit must be an integer between 1 and {MAX_LIST_LIMIT}")
            limit = int(raw)
        jobs = await self.service.list(user, limit=limit)
        return json_response({"jobs": [job_json(job) for job in jobs]})

    async def status(self, request: Request) -> Response:
        """``GET /api/sync/{jobId}``; under ``resumable`` a due job is continued by this request's invocation."""
        user = self.reader.user(request)
        job_id = _job_id(request.path_params["jobId"])
        job = None
        if job_id is not None:
            job = await self.service.status(job_id, user_id=user, invocation=self.reader.invocation(request))
        if job is None:
            raise ApiError(404, "no such job")
        return json_response(job_json(job))


def _job_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


# -- building the app ----------------------------------------------------------------------------------------
def create_app(
    *,
    service: JobService,
    platform: Platform,
    jwt_secret: str,
    webhook_verify_token: str | None = None,
    strava: StravaConnector | None = None,
    max_body_bytes: int = 64 * 1024,
    webhook_subscription_id: int | None = None,
    clock: Clock | None = None,
    lifespan: Callable[[Starlette], Any] | None = None,
) -> Starlette:
    """The ASGI app over ``service`` on ``platform``.

    ``jwt_secret`` verifies users' HS256 tokens; ``webhook_verify_token`` answers Strava's subscription
    challenge (unset: the challenge answers 503); ``webhook_subscription_id``, when set, ignores events of
    any other subscription; ``strava`` exchanges OAuth codes (unset: connect answers 503); bodies above
    ``max_body_bytes`` answer 413. Token expiry is checked against ``clock`` (default: the platform's).
    """
    if max_body_bytes < 1:
        raise ConfigError("max_body_bytes must be >= 1")
    check_secret(jwt_secret)  # fail at start-up on a missing or weak secret, not on every request
    clock = clock or platform.clock
    reader = RequestReader(jwt_secret=jwt_secret, clock=clock, max_body_bytes=max_body_bytes)
    sync = SyncRoutes(service=service, reader=reader)
    strava_routes = StravaRoutes(
        service=service,
        reader=reader,
        clock=clock,
        strava=strava,
        webhook_verify_token=webhook_verify_token,
        webhook_subscription_id=webhook_subscription_id,
    )
    store = service.runner.store

    async def health(request: Request) -> Response:
        return json_response(
            {
                "status": "ok",
                "store": redact_url(store.url),
                "platform": platform.spec.name,
                "strategy": service.strategy,
            }
        )

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    routes = [
        Route("/api/sync/{jobId}", sync.status, methods=["GET"]),
        Route("/api/sync", sync.collection, methods=["GET", "POST"]),
        Route("/api/strava/webhook", strava_routes.webhook, methods=["GET", "POST"]),
        Route("/api/strava/connect", strava_routes.connect, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    middleware = [Middleware(InvocationMiddleware, platform=platform)]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers=exception_handlers(clock), lifespan=lifespan
    )
    app.state.service = service
    app.state.platform = platform
    return app


def build_app(
    store_url: str | None = None,
    platform: str | Platform = "unlimited",
    strategy: str = "waituntil",
    strava_url: str | None = None,
    *,
    jwt_secret: str | None = None,
    webhook_verify_token: str | None = None,
    time_scale: float = 1.0,
    clock: Clock | None = None,
    migrate: bool = True,
    max_background_jobs: int | None = defaults.MAX_BACKGROUND_JOBS,
    strava_trace: Trace | None = None,
    **runner_options: Any,
) -> Starlette:
    """The whole server from a store URL: store, runner with every handler, platform, clock, Strava client.

    ``platform`` is a preset name (its limit multiplied by ``time_scale``), ``"vercel"``, or a Platform.
    ``jwt_secret`` defaults to ``$SYNCSIM_JWT_SECRET``, ``webhook_verify_token`` to
    ``$STRAVA_WEBHOOK_VERIFY_TOKEN``; Strava's client credentials come from ``$STRAVA_CLIENT_ID`` /
    ``$STRAVA_CLIENT_SECRET``. With ``migrate`` the store is migrated at start-up (ASGI lifespan).
    ``max_background_jobs`` bounds the syncs this process runs at once (see :class:`JobService`).
    ``strava_trace`` records every request the Strava client sends (no tokens).
    """
    from syncsim.platforms.local import LocalPlatform
    from syncsim.platforms.spec import platform_spec
    from syncsim.stores import open_store
    from syncsim.strava.client import STRAVA_BASE_URL, StravaClient

    if time_scale <= 0:
        raise ConfigError(f"time_scale must be > 0, got {time_scale}")
    clock = clock or SystemClock()
    secret = jwt_secret if jwt_secret is not None else jwt_secret_from_env()
    the_platform: Platform
    if isinstance(platform, str) and platform == "vercel":
        from syncsim.platforms.vercel import VercelPlatform

        the_platform = VercelPlatform(clock=clock)
    elif isinstance(platform, str):
        spec = platform_spec(platform)
        if spec.max_duration_s is not None and time_scale != 1.0:
            spec = spec.with_limit(spec.max_duration_s * time_scale)
        local = LocalPlatform(spec, clock=clock)
        local.keep_history = False  # a server runs for days: do not keep every invocation
        the_platform = local
    else:
        the_platform = platform
    store = open_store(store_url)
    strava = StravaClient(tokens=store, clock=clock, base_url=strava_url or STRAVA_BASE_URL, trace=strava_trace)
    runner_options.setdefault("resources", {"strava": strava})
    service = JobService(
        _build_runner(store, clock=clock, strategy=strategy, **runner_options),
        max_background_jobs=max_background_jobs,
    )
    verify = webhook_verify_token if webhook_verify_token is not None else os.environ.get(WEBHOOK_VERIFY_TOKEN_ENV)
    subscription = os.environ.get(WEBHOOK_SUBSCRIPTION_ENV)
    if subscription is not None and not subscription.strip().isdigit():
        raise ConfigError(f"{WEBHOOK_SUBSCRIPTION_ENV} must be an integer")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        if migrate:
            await store.migrate()
        try:
            yield
        finally:
            await strava.aclose()
            await store.close()

    return create_app(
        service=service,
        platform=the_platform,
        jwt_secret=secret,
        webhook_verify_token=verify or None,
        webhook_subscription_id=int(subscription) if subscription else None,
        strava=strava,
        clock=clock,
        lifespan=lifespan,
    )


def _build_runner(store: Store, **options: Any) -> JobRunner:
    """A runner with every job type syncsim ships."""
    return JobRunner(store, handlers=default_handlers(), **options)
