"""The HTTP API (Starlette): submit a sync, poll it, receive Strava's webhooks, connect an athlete.

Every request is one **invocation** of the platform (:class:`~syncsim.platform.Platform`): the request handler
runs inside it, work handed to ``invocation.wait_until`` continues after the response, and the invocation
ends when both are done or its deadline kills it. A handler that itself overruns the deadline answers 504.

Routes (the OpenAPI description at ``GET /openapi.json`` is :func:`openapi_document`):

- ``POST /api/sync`` → 202 ``{"jobId", "status", "created"}``; an active job of the user is returned
- ``GET /api/sync`` → the user's recent jobs; ``GET /api/sync/{jobId}`` → one job (404 if not theirs)
- ``GET|POST /api/strava/webhook`` → Strava's challenge; events → incremental syncs, deauthorization
- ``POST /api/strava/connect`` → OAuth code exchange; tokens are stored, never echoed
- ``GET /healthz``, ``GET /openapi.json``

Every error is JSON ``{"error": "<one line>"}`` with a 4xx/5xx status; no error message carries a secret.

The module is one noun, the app; its parts live in sibling modules, and every name they define that callers use
is re-exported here:

- :mod:`syncsim.api_http` holds the JSON answers and errors (:class:`ApiError`, :func:`job_json`), reading a
  request (user, invocation, JSON body), the error-to-status mapping and :class:`InvocationMiddleware`;
- :mod:`syncsim.api_strava` answers the webhook and connect routes (a base class of :class:`_Api`);
- :mod:`syncsim.api_docs` holds the OpenAPI document.

This module keeps the job routes, health and the OpenAPI route (:class:`_Api`), :func:`create_app` and
:func:`build_app`.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncsim import defaults
from syncsim.api_docs import openapi_document
from syncsim.api_http import (
    INVOCATION_KEY,
    ApiError,
    InvocationMiddleware,
    StatusRoute,
    _exception_handlers,
    _json_type,
    job_json,
    json_response,
    respond_after_work,
)
from syncsim.api_http import error_response as error_response
from syncsim.api_http import log as log
from syncsim.api_strava import DEAUTHORIZED_REASON as DEAUTHORIZED_REASON
from syncsim.api_strava import MAX_CODE_CHARS as MAX_CODE_CHARS
from syncsim.api_strava import (
    WEBHOOK_SUBSCRIPTION_ENV,
    WEBHOOK_VERIFY_TOKEN_ENV,
    StravaConnector,
    _Strava,
)
from syncsim.auth import check_secret, jwt_secret_from_env
from syncsim.clock import Clock, SystemClock
from syncsim.defaults import MAX_ATTEMPTS_LIMIT, MAX_LIST_LIMIT
from syncsim.errors import ConfigError
from syncsim.handlers import default_handlers
from syncsim.jobs.model import Job
from syncsim.jobs.store import Store, redact_url
from syncsim.platform import Invocation, Platform
from syncsim.runner import JobRunner
from syncsim.service import JobService
from syncsim.strava.trace import Trace

__all__ = [
    "INVOCATION_KEY",
    "MAX_LIST_LIMIT",
    "StravaConnector",
    "build_app",
    "create_app",
    "job_json",
    "openapi_document",
    "respond_after_work",
]

_SUBMIT_FIELDS = frozenset({"type", "payload", "maxAttempts"})
#: At most this many status bodies are kept for reuse (one per polled job; the lot is dropped when full).
STATUS_BODIES_KEPT = 10_000


# -- request handlers ----------------------------------------------------------------------------------------
class _Api(_Strava):
    """The request handlers: the job routes, health and OpenAPI here; Strava's in :class:`_Strava`."""

    def __init__(
        self,
        *,
        service: JobService,
        platform: Platform,
        jwt_secret: str,
        clock: Clock,
        webhook_verify_token: str | None,
        webhook_subscription_id: int | None,
        strava: StravaConnector | None,
        max_body_bytes: int,
    ) -> None:
        self.service = service
        self.platform = platform
        self.jwt_secret = jwt_secret
        self.clock = clock
        self.webhook_verify_token = webhook_verify_token
        self.webhook_subscription_id = webhook_subscription_id
        self.strava = strava
        self.max_body_bytes = max_body_bytes
        #: The body last sent for each polled job, with the Job it was rendered from (see :meth:`job_status`).
        self._bodies: dict[uuid.UUID, tuple[Job, bytes]] = {}

    # -- /api/sync
    async def sync_collection(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.submit(request)
        return await self.list_jobs(request)

    async def submit(self, request: Request) -> Response:
        user = self._user(request)
        body = await self._json_body(request, required=False) or {}
        unknown = sorted(set(body) - _SUBMIT_FIELDS)
        if unknown:
            raise ApiError(422, f"unknown field(s): {', '.join(unknown)}; allowed: type, payload, maxAttempts")
        job_type = body.get("type", defaults.JOB_TYPE)
        if not isinstance(job_type, str):
            raise ApiError(422, f"type must be a string, got {_json_type(job_type)}")
        payload = body.get("payload", {})
        if not isinstance(payload, dict):
            raise ApiError(422, f"payload must be a JSON object, got {_json_type(payload)}")
        max_attempts = body.get("maxAttempts", defaults.MAX_ATTEMPTS)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise ApiError(422, f"maxAttempts must be an integer, got {_json_type(max_attempts)}")
        if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ApiError(422, f"maxAttempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {max_attempts}")
        job, created = await self.service.submit(
            user, payload, invocation=self._invocation(request), type=job_type, max_attempts=max_attempts
        )
        return json_response(
            {"jobId": str(job.id), "status": job.status.value, "created": created},
            202,
            {"Location": f"/api/sync/{job.id}"},
        )

    async def list_jobs(self, request: Request) -> Response:
        user = self._user(request)
        raw = request.query_params.get("limit")
        limit = defaults.LIST_LIMIT
        if raw is not None:
            if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
                raise ApiError(422, f"limit must be an integer between 1 and {MAX_LIST_LIMIT}")
            limit = int(raw)
        jobs = await self.service.list(user, limit=limit)
        return json_response({"jobs": [job_json(job) for job in jobs]})

    async def job_status(self, request: Request) -> Response:
        body = await self.status_body(
            request.headers.get("authorization"), request.path_params["jobId"], self._invocation(request)
        )
        return Response(body, media_type="application/json")

    async def status_body(self, authorization: str | None, raw_id: str, invocation: Invocation) -> bytes:
        """``GET /api/sync/{jobId}``'s body for that Authorization header and id, or the error to answer.

        Both ways to the route call it: :meth:`job_status` through Starlette's router and :class:`StatusRoute`
        straight from the ASGI scope.
        """
        user = self._user_of(authorization)
        job_id = _job_id(raw_id)
        job = None
        if job_id is not None:
            job = await self.service.status(job_id, user_id=user, invocation=invocation)
        if job is None:
            raise ApiError(404, "no such job")
        # A store may hand back the very Job object it returned before (SQLiteStore(":memory:") does while no
        # row changed): then so is its body. Keyed by identity, not equality, and bounded.
        sent = self._bodies.get(job.id)
        if sent is not None and sent[0] is job:
            return sent[1]
        body = orjson.dumps(job_json(job))
        if len(self._bodies) >= STATUS_BODIES_KEPT:
            self._bodies.clear()
        self._bodies[job.id] = (job, body)
        return body

    # -- service
    async def health(self, request: Request) -> Response:
        return json_response(
            {
                "status": "ok",
                "store": redact_url(self.store.url),
                "platform": self.platform.spec.name,
                "strategy": self.service.strategy,
            }
        )

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())


def _parse_job_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


_cached_job_id = functools.lru_cache(maxsize=STATUS_BODIES_KEPT)(_parse_job_id)


def _job_id(raw: str) -> uuid.UUID | None:
    """A path's job id, or ``None`` if it is not a UUID (parses of short ones are cached: polls repeat them)."""
    return _cached_job_id(raw) if len(raw) <= 64 else _parse_job_id(raw)


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
    status_route: bool = True,
) -> Starlette:
    """The ASGI app over ``service`` on ``platform``.

    ``jwt_secret`` verifies users' HS256 tokens; ``webhook_verify_token`` answers Strava's subscription
    challenge (unset: the challenge answers 503); ``webhook_subscription_id``, when set, ignores events of
    any other subscription; ``strava`` exchanges OAuth codes (unset: connect answers 503); bodies above
    ``max_body_bytes`` answer 413. Token expiry is checked against ``clock`` (default: the platform's).
    ``status_route`` answers status polls ahead of the router (:class:`StatusRoute`: the same answers, for less
    CPU); ``False`` sends them through Starlette's routing like every other request.
    """
    if max_body_bytes < 1:
        raise ConfigError("max_body_bytes must be >= 1")
    check_secret(jwt_secret)  # fail at start-up on a missing or weak secret, not on every request
    clock = clock or platform.clock
    api = _Api(
        service=service,
        platform=platform,
        jwt_secret=jwt_secret,
        clock=clock,
        webhook_verify_token=webhook_verify_token,
        webhook_subscription_id=webhook_subscription_id,
        strava=strava,
        max_body_bytes=max_body_bytes,
    )
    routes = [
        # The status poll first: the busiest route is matched with one pattern, not two.
        Route("/api/sync/{jobId}", api.job_status, methods=["GET"]),
        Route("/api/sync", api.sync_collection, methods=["GET", "POST"]),
        Route("/api/strava/webhook", api.webhook, methods=["GET", "POST"]),
        Route("/api/strava/connect", api.connect, methods=["POST"]),
        Route("/healthz", api.health, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
    ]
    handlers = _exception_handlers(clock)
    middleware = [Middleware(InvocationMiddleware, platform=platform)]
    if status_route:
        middleware.append(
            Middleware(StatusRoute, prefix="/api/sync/", status_body=api.status_body, exception_handlers=handlers)
        )
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)
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
    from syncsim.jobs.store import open_store
    from syncsim.platform import LocalPlatform, platform_spec
    from syncsim.strava.client import STRAVA_BASE_URL, StravaClient

    if time_scale <= 0:
        raise ConfigError(f"time_scale must be > 0, got {time_scale}")
    clock = clock or SystemClock()
    secret = jwt_secret if jwt_secret is not None else jwt_secret_from_env()
    the_platform: Platform
    if isinstance(platform, str) and platform == "vercel":
        from syncsim.vercel import VercelPlatform

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
