"""The HTTP API (Starlette): submit a sync, poll it, receive Strava's webhooks, connect an athlete.

Every request is one **invocation** of the platform (:class:`~syncsim.platforms.invocation.Platform`): the
request handler runs inside it, work handed to ``invocation.wait_until`` continues after the response, and the
invocation ends when both are done or its deadline kills it. A handler that itself overruns the deadline
answers 504.

Routes (the OpenAPI description at ``GET /openapi.json`` is :func:`~syncsim.api.openapi.openapi_document`):

- ``POST /api/sync`` → 202 ``{"jobId", "status", "created"}``; an active job of the user is returned
- ``GET /api/sync`` → the user's recent jobs; ``GET /api/sync/{jobId}`` → one job (404 if not theirs)
- ``DELETE /api/sync/{jobId}`` → cancels the user's pending or running job (404 if not theirs)
- ``GET|POST /api/strava/webhook[/<secret>]`` → Strava's challenge; events (:class:`~syncsim.api.strava.StravaRoutes`)
- ``POST /api/strava/connect`` → OAuth code exchange; tokens are stored, never echoed
- ``GET /healthz`` (checks the store; 503 when it is down), ``GET /openapi.json``

What a user may submit is an allowlist (:mod:`syncsim.api.submissions`): production servers run Strava syncs
only; the built-in ``demo``/``noop`` jobs only on a server started for a demo.

Every error is JSON ``{"error": "<one line>"}`` with a 4xx/5xx status; no error message carries a secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
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
from syncsim.api.cron import CRON_SECRET_ENV, CronRoutes, Upkeep
from syncsim.api.http import (
    ApiError,
    InvocationMiddleware,
    RequestReader,
    error_response,
    exception_handlers,
    job_json,
    json_response,
    one_line,
    only_query,
    parse_query_int,
)
from syncsim.api.openapi import openapi_document
from syncsim.api.strava import (
    MAX_STRAVA_ID,
    WEBHOOK_SECRET_ENV,
    WEBHOOK_SUBSCRIPTION_ENV,
    WEBHOOK_VERIFY_TOKEN_ENV,
    StravaConnector,
    StravaRoutes,
)
from syncsim.api.submissions import DEMO_JOB_TYPES, USER_JOB_TYPES, SubmissionRules
from syncsim.clock import Clock, SystemClock
from syncsim.defaults import MAX_LIST_LIMIT
from syncsim.errors import ConfigError
from syncsim.job_types import default_handlers
from syncsim.jobs.runner import JobRunner
from syncsim.jobs.service import JobService
from syncsim.platforms.invocation import Platform
from syncsim.stores.protocol import Store
from syncsim.strava.trace import Trace
from syncsim.strava.upkeep import strava_upkeep

__all__ = ["CANCELLED_REASON", "HEALTH_CHECK_TIMEOUT_S", "SyncRoutes", "build_app", "create_app"]

log = logging.getLogger("syncsim.api")

#: The error a job cancelled by its user ends with.
CANCELLED_REASON = "cancelled by the user"
#: ``/healthz`` answers 503 when the store has not answered within this long (seconds): a load balancer's
#: check must get an answer well before its own timeout.
HEALTH_CHECK_TIMEOUT_S = 5.0
#: The id ``/healthz`` looks up: no job has it, so the check reads one index entry and nothing else.
_NO_JOB = uuid.UUID(int=0)


class SyncRoutes:
    """``/api/sync`` and ``/api/sync/{jobId}``: submit a job, list the user's jobs, read one, cancel one."""

    def __init__(self, *, service: JobService, reader: RequestReader, job_types: SubmissionRules) -> None:
        self.service = service
        self.reader = reader
        self.job_types = job_types

    async def collection(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.submit(request)
        return await self.list_jobs(request)

    async def submit(self, request: Request) -> Response:
        user = self.reader.user(request)
        only_query(request)
        body = await self.reader.json_body(request, required=False) or {}
        submission = self.job_types.parse(body)
        job, created = await self.service.submit(
            user,
            submission.payload,
            invocation=self.reader.invocation(request),
            type=submission.type,
            max_attempts=submission.max_attempts,
        )
        return json_response(
            {"jobId": str(job.id), "status": job.status.value, "created": created},
            202,
            {"Location": f"/api/sync/{job.id}"},
        )

    async def list_jobs(self, request: Request) -> Response:
        user = self.reader.user(request)
        only_query(request, "limit")
        raw = request.query_params.get("limit")
        limit = defaults.LIST_LIMIT
        if raw is not None:
            limit = parse_query_int(raw, name="limit", minimum=1, maximum=MAX_LIST_LIMIT)
        jobs = await self.service.list(user, limit=limit)
        return json_response({"jobs": [job_json(job) for job in jobs]})

    async def job(self, request: Request) -> Response:
        if request.method == "DELETE":
            return await self.cancel(request)
        return await self.status(request)

    async def cancel(self, request: Request) -> Response:
        """``DELETE /api/sync/{jobId}``: the user's pending or running job ends ``failed``, "cancelled by the
        user"; the runner holding it loses its lease, so nothing it does afterwards changes the row."""
        user = self.reader.user(request)
        only_query(request)
        job_id = _job_id(request.path_params["jobId"])
        if job_id is None:
            raise ApiError(404, "no such job")
        job, cancelled = await self.service.cancel(job_id, user_id=user, reason=CANCELLED_REASON)
        if job is None:
            raise ApiError(404, "no such job")
        if not cancelled:
            raise ApiError(409, f"the job is already {job.status.value}: only pending or running jobs can be cancelled")
        return json_response(job_json(job))

    async def status(self, request: Request) -> Response:
        """``GET /api/sync/{jobId}``; under ``resumable`` a due job is continued by this request's invocation."""
        user = self.reader.user(request)
        only_query(request)
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
    body_timeout_s: float = defaults.BODY_READ_TIMEOUT_S,
    webhook_subscription_id: int | None = None,
    webhook_secret: str | None = None,
    cron_secret: str | None = None,
    upkeep: Upkeep | None = None,
    clock: Clock | None = None,
    lifespan: Callable[[Starlette], Any] | None = None,
    job_types: SubmissionRules = USER_JOB_TYPES,
) -> Starlette:
    """The ASGI app over ``service`` on ``platform``.

    ``jwt_secret`` verifies users' HS256 tokens; ``webhook_verify_token`` answers Strava's subscription
    challenge (unset: the challenge answers 503); ``webhook_subscription_id``, when set, ignores events of
    any other subscription; ``webhook_secret`` makes ``/api/strava/webhook/<secret>`` the only path whose events
    are acted on (without it, ``/api/strava/webhook``); ``strava`` exchanges OAuth codes (unset: connect answers
    503); ``cron_secret`` is the bearer of ``/api/cron/tick`` (unset: the tick answers 503), whose ``upkeep``
    submits jobs before it continues due ones; bodies above ``max_body_bytes`` answer 413, and bodies that take
    longer than ``body_timeout_s`` (seconds) to arrive 408. Token expiry is
    checked against ``clock`` (default: the platform's). ``job_types`` is what users may submit (default: Strava
    syncs only; :data:`DEMO_JOB_TYPES` for a demo).
    """
    if max_body_bytes < 1:
        raise ConfigError("max_body_bytes must be >= 1")
    if not body_timeout_s > 0:
        raise ConfigError("body_timeout_s must be > 0")
    check_secret(jwt_secret)  # fail at start-up on a missing or weak secret, not on every request
    clock = clock or platform.clock
    reader = RequestReader(
        jwt_secret=jwt_secret, clock=clock, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s
    )
    sync = SyncRoutes(service=service, reader=reader, job_types=job_types)
    strava_routes = StravaRoutes(
        service=service,
        reader=reader,
        clock=clock,
        strava=strava,
        webhook_verify_token=webhook_verify_token,
        webhook_subscription_id=webhook_subscription_id,
        webhook_secret=webhook_secret,
    )
    cron = CronRoutes(service=service, reader=reader, secret=cron_secret, upkeep=upkeep)
    store = service.runner.store

    async def health(request: Request) -> Response:
        """Whether this server can reach its store; anyone may ask, so it names no host, user or database."""
        only_query(request)
        try:
            await asyncio.wait_for(store.get_job(_NO_JOB), HEALTH_CHECK_TIMEOUT_S)
        except Exception as exc:  # any failure of the check is the answer, not a crash of the check
            reason = "no answer in time" if isinstance(exc, TimeoutError) else one_line(str(exc))
            log.warning("healthz: the store is unavailable: %s: %s", type(exc).__name__, reason)
            return error_response(503, "the job store is unavailable", {"Retry-After": "5"})
        return json_response({"status": "ok", "platform": platform.spec.name, "strategy": service.strategy})

    document = openapi_document(job_types)

    async def openapi(request: Request) -> Response:
        only_query(request)
        return json_response(document)

    routes = [
        Route("/api/sync/{jobId}", sync.job, methods=["GET", "DELETE"]),
        Route("/api/sync", sync.collection, methods=["GET", "POST"]),
        Route("/api/strava/webhook", strava_routes.webhook, methods=["GET", "POST"]),
        Route("/api/strava/webhook/{secret}", strava_routes.webhook, methods=["GET", "POST"]),
        Route("/api/strava/connect", strava_routes.connect, methods=["POST"]),
        Route("/api/cron/tick", cron.tick, methods=["GET", "POST"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    # The webhook's callback secret is in its path: the logs show ``/api/strava/webhook/***``.
    middleware = [Middleware(InvocationMiddleware, platform=platform, secret_prefixes=("/api/strava/webhook/",))]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers=exception_handlers(clock), lifespan=lifespan
    )
    # A trailing slash gets a 404, not Starlette's redirect: its absolute Location names whatever host the
    # request's Host header gave, before any check.
    app.router.redirect_slashes = False
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
    demo: bool = False,
    **runner_options: Any,
) -> Starlette:
    """The whole server from a store URL: store, runner with every handler, platform, clock, Strava client.

    ``platform`` is a preset name (its limit multiplied by ``time_scale``), ``"vercel"``, or a Platform.
    ``jwt_secret`` defaults to ``$SYNCSIM_JWT_SECRET``, ``webhook_verify_token`` to
    ``$STRAVA_WEBHOOK_VERIFY_TOKEN``; Strava's client credentials come from ``$STRAVA_CLIENT_ID`` /
    ``$STRAVA_CLIENT_SECRET``. With ``migrate`` the store is migrated at start-up (ASGI lifespan).
    ``max_background_jobs`` bounds the syncs this process runs at once (see :class:`JobService`).
    ``strava_trace`` records every request the Strava client sends (no tokens). With ``demo`` users may also
    submit the built-in ``demo`` and ``noop`` jobs (:data:`~syncsim.api.submissions.DEMO_JOB_TYPES`).
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
    subscription = (os.environ.get(WEBHOOK_SUBSCRIPTION_ENV) or "").strip()
    if subscription and (
        re.fullmatch(r"[0-9]{1,19}", subscription) is None or not 1 <= int(subscription) <= MAX_STRAVA_ID
    ):
        raise ConfigError(f"{WEBHOOK_SUBSCRIPTION_ENV} must be an integer between 1 and {MAX_STRAVA_ID}")

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
        webhook_secret=os.environ.get(WEBHOOK_SECRET_ENV) or None,
        cron_secret=os.environ.get(CRON_SECRET_ENV) or None,
        upkeep=strava_upkeep,
        strava=strava,
        clock=clock,
        lifespan=lifespan,
        job_types=DEMO_JOB_TYPES if demo else USER_JOB_TYPES,
    )


def _build_runner(store: Store, **options: Any) -> JobRunner:
    """A runner with every job type syncsim ships."""
    return JobRunner(store, handlers=default_handlers(), **options)
