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
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncsim import defaults
from syncsim.api_docs import openapi_document
from syncsim.auth import AuthError, bearer_token, check_secret, jwt_secret_from_env, verify_token
from syncsim.clock import Clock, SystemClock
from syncsim.defaults import MAX_ATTEMPTS_LIMIT, MAX_LIST_LIMIT
from syncsim.errors import (
    ConfigError,
    InvalidInput,
    InvocationKilled,
    PermanentError,
    Reschedule,
    RetryableError,
    StoreError,
    SyncsimError,
)
from syncsim.handlers import default_handlers
from syncsim.jobs.model import Job, JobStatus
from syncsim.jobs.store import Store, redact_url
from syncsim.platform import Invocation, Platform, guard_store
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

log = logging.getLogger("syncsim.api")

#: Where the request's :class:`Invocation` lives in the ASGI scope.
INVOCATION_KEY = "syncsim.invocation"
#: An OAuth authorization code is ~40 characters; anything much longer is not one.
MAX_CODE_CHARS = 512
WEBHOOK_VERIFY_TOKEN_ENV = "STRAVA_WEBHOOK_VERIFY_TOKEN"
WEBHOOK_SUBSCRIPTION_ENV = "STRAVA_WEBHOOK_SUBSCRIPTION_ID"
DEAUTHORIZED_REASON = "athlete deauthorized on Strava"
_SUBMIT_FIELDS = frozenset({"type", "payload", "maxAttempts"})
_EVENT_FIELDS = (
    "object_type",
    "object_id",
    "aspect_type",
    "updates",
    "owner_id",
    "subscription_id",
    "event_time",
)


class StravaConnector(Protocol):
    """What ``POST /api/strava/connect`` needs: trade an OAuth code for tokens and store them for the user."""

    async def exchange_code(self, user_id: uuid.UUID, code: str) -> Any:
        """Returns the saved tokens (anything with an ``athlete_id``)."""
        ...


class ApiError(Exception):
    """An HTTP error with a one-line message, raised by request handlers."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": _one_line(message)}, status, headers)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def job_json(job: Job) -> dict[str, Any]:
    """A job as the API shows it: camelCase, ISO 8601 UTC times; ``nextAttemptAt`` only while pending."""
    return {
        "jobId": str(job.id),
        "status": job.status.value,
        "type": job.type,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "progress": job.progress,
        "result": job.result,
        "error": job.error,
        "createdAt": _iso(job.created_at),
        "startedAt": _iso(job.started_at),
        "completedAt": _iso(job.completed_at),
        "nextAttemptAt": _iso(job.next_attempt_at) if job.status is JobStatus.PENDING else None,
        "runs": job.runs,
    }


# -- the invocation around each request ----------------------------------------------------------------------
class InvocationMiddleware:
    """Runs each HTTP request in a new platform invocation; logs one access line (no query, no headers).

    ``finish_response()`` is called once the last body chunk is sent, so background work continues alone. If
    the handler is still running at the invocation's deadline it is cancelled and answered with 504.
    """

    def __init__(self, app: ASGIApp, *, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        invocation = self.platform.start_invocation()
        scope[INVOCATION_KEY] = invocation
        status = 0

        async def send_and_finish(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                invocation.finish_response()

        try:
            try:
                overran = await invocation.serve(self.app(scope, receive, send_and_finish))
            except InvocationKilled:  # a store call refused after the kill: the handler overran too
                overran = True
            if overran:
                invocation.kill("the request handler overran the invocation's deadline")
                if status == 0:
                    limit = self.platform.spec.max_duration_s
                    message = f"the request did not finish within the platform's time limit ({limit} s)"
                    await _send_error(send, 504, message)
                    status = 504
        finally:
            if not invocation.responded:
                invocation.finish_response()
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %s %.1fms invocation=%s",
                scope.get("method"),
                scope.get("path"),
                status or "-",
                (invocation.clock.now() - invocation.started_at) * 1000,
                invocation.id,
            )


async def _send_error(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": _one_line(message)})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def respond_after_work(app: ASGIApp) -> ASGIApp:
    """Wrap an app so each response is held until the invocation's background work is done.

    The anti-pattern the design avoids (the sync runs *before* the response), kept for side-by-side
    benchmarks: same app, same handlers, only the moment of the answer differs.
    """

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        messages: list[Message] = []

        async def hold(message: Message) -> None:
            messages.append(message)

        await app(scope, receive, hold)
        invocation = scope.get(INVOCATION_KEY)
        if isinstance(invocation, Invocation):
            await invocation.drain()
        for message in messages:
            await send(message)

    return held


# -- request handlers ----------------------------------------------------------------------------------------
class _Api:
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

    @property
    def store(self) -> Store:
        return self.service.runner.store

    # -- helpers
    def _user(self, request: Request) -> uuid.UUID:
        token = bearer_token(request.headers.get("authorization"))
        return verify_token(token, self.jwt_secret, now=self.clock.now())

    @staticmethod
    def _invocation(request: Request) -> Invocation:
        invocation = request.scope.get(INVOCATION_KEY)
        if not isinstance(invocation, Invocation):  # pragma: no cover - the middleware always sets it
            raise RuntimeError("request is not running inside an invocation")
        return invocation

    async def _json_body(self, request: Request, *, required: bool) -> dict[str, Any] | None:
        """The body as a JSON object; the size limit is enforced while reading, not trusted from headers."""
        limit = self.max_body_bytes
        too_big = ApiError(413, f"request body is larger than the {limit}-byte limit")
        declared = request.headers.get("content-length")
        if declared is not None:
            declared = declared.strip()
            if not declared.isdigit():
                raise ApiError(400, "Content-Length is not a number")
            if len(declared) > 18 or int(declared) > limit:  # 18 digits: no giant int to parse
                raise too_big
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type != "application/json" and not content_type.endswith("+json"):
            raise ApiError(415, f"request body must be application/json, got {content_type[:60]!r}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            if required:
                raise ApiError(400, "request body is empty: send a JSON object")
            return None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"request body must be a JSON object, got {_json_type(data)}")
        return data

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
        user = self._user(request)
        raw = request.path_params["jobId"]
        try:
            job_id = uuid.UUID(raw)
        except ValueError:
            job_id = None
        job = None
        if job_id is not None:
            job = await self.service.status(job_id, user_id=user, invocation=self._invocation(request))
        if job is None:
            raise ApiError(404, "no such job")
        return json_response(job_json(job))

    # -- Strava
    async def webhook(self, request: Request) -> Response:
        if request.method == "GET":
            return self._webhook_challenge(request)
        return await self._webhook_event(request)

    def _webhook_challenge(self, request: Request) -> Response:
        if not self.webhook_verify_token:
            raise ConfigError(f"the webhook verify token is not configured (set {WEBHOOK_VERIFY_TOKEN_ENV})")
        params = request.query_params
        if params.get("hub.mode") != "subscribe":
            raise ApiError(400, "hub.mode must be 'subscribe'")
        challenge = params.get("hub.challenge")
        if not challenge:
            raise ApiError(400, "hub.challenge is missing")
        given = params.get("hub.verify_token", "")
        if not hmac.compare_digest(given.encode(), self.webhook_verify_token.encode()):
            raise ApiError(403, "hub.verify_token does not match")
        return json_response({"hub.challenge": challenge})

    async def _webhook_event(self, request: Request) -> Response:
        event = _parse_event(await self._json_body(request, required=True) or {})
        if self.webhook_subscription_id is not None and event.get("subscription_id") != self.webhook_subscription_id:
            log.warning("webhook event for another subscription ignored")
            return json_response({"status": "ignored"})
        invocation = self._invocation(request)
        invocation.wait_until(self._handle_event(event, invocation))
        return json_response({"status": "accepted"})

    async def _handle_event(self, event: dict[str, Any], invocation: Invocation) -> None:
        """The work behind a webhook event, after its 200: look up the user, then sync or disconnect."""
        store = guard_store(self.store, invocation)
        kind = f"{event['object_type']}/{event['aspect_type']}"
        try:
            user = await store.user_for_athlete(event["owner_id"])
            if user is None:
                log.info("webhook %s for an unknown athlete ignored", kind)
                return
            if event["object_type"] == "athlete":
                if str(event["updates"].get("authorized", "")).lower() == "false":
                    await store.delete_tokens(user)
                    ended = await store.cancel_user_jobs(user, reason=DEAUTHORIZED_REASON, now=self.clock.now())
                    log.info("athlete deauthorized: tokens removed, %d pending job(s) ended", ended)
                return
            job, created = await self.service.submit(
                user, {"mode": "incremental", "trigger": event}, invocation=invocation, type=defaults.JOB_TYPE
            )
            log.info("webhook %s -> job %s (%s)", kind, job.id, "new" if created else "already active")
        except InvocationKilled:
            raise
        except SyncsimError as exc:
            log.warning("webhook %s not handled: %s: %s", kind, type(exc).__name__, _one_line(str(exc)))

    async def connect(self, request: Request) -> Response:
        user = self._user(request)
        body = await self._json_body(request, required=True) or {}
        code = body.get("code")
        if not isinstance(code, str) or not code.strip() or len(code) > MAX_CODE_CHARS:
            raise ApiError(422, "code must be a non-empty string (the OAuth authorization code)")
        if self.strava is None:
            raise ConfigError("Strava is not configured on this server")
        tokens = await self.strava.exchange_code(user, code.strip())
        return json_response({"athleteId": tokens.athlete_id})

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


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _parse_event(body: dict[str, Any]) -> dict[str, Any]:
    """A Strava webhook event, checked and reduced to its documented fields (nothing else is kept)."""
    object_type = body.get("object_type")
    if object_type not in ("activity", "athlete"):
        raise ApiError(422, "object_type must be 'activity' or 'athlete'")
    if body.get("aspect_type") not in ("create", "update", "delete"):
        raise ApiError(422, "aspect_type must be 'create', 'update' or 'delete'")
    for key in ("object_id", "owner_id"):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(422, f"{key} must be an integer")
    for key in ("subscription_id", "event_time"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ApiError(422, f"{key} must be an integer")
    updates = body.get("updates", {})
    if updates is None:
        updates = {}
    if not isinstance(updates, dict):
        raise ApiError(422, "updates must be a JSON object")
    event = {key: body.get(key) for key in _EVENT_FIELDS}
    event["updates"] = updates
    return event


# -- errors --------------------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, str(exc), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(404, f"no route for {request.url.path[:200]}")
    if exc.status_code == 405:
        allowed = ", ".join(sorted(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m))
        message = f"method {request.method} is not allowed here; allowed: {allowed}"
        return error_response(405, message, {"Allow": allowed})
    return error_response(exc.status_code, str(exc.detail), exc.headers)


def _syncsim_error(status: int, *, headers: Mapping[str, str] | None = None) -> Callable[..., Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        if status >= 500:
            log.warning("%s %s -> %d: %s: %s", request.method, request.url.path, status, type(exc).__name__, exc)
        return error_response(status, str(exc), headers)

    return handle


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s -> 500: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return error_response(500, "internal server error")


def _exception_handlers(clock: Clock) -> dict[Any, Callable[..., Awaitable[Response]]]:
    """syncsim's error tree → HTTP statuses (most specific class wins)."""

    async def rescheduled(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Reschedule)
        wait = max(1, math.ceil(exc.at - clock.now()))
        return error_response(503, str(exc), {"Retry-After": str(wait)})

    return {
        ApiError: _api_error,
        HTTPException: _http_error,
        AuthError: _syncsim_error(401, headers={"WWW-Authenticate": "Bearer"}),
        InvalidInput: _syncsim_error(422),
        PermanentError: _syncsim_error(400),  # e.g. Strava refused the authorization code
        RetryableError: _syncsim_error(502),  # Strava unavailable
        Reschedule: rescheduled,  # Strava's rate limit: try again after the window resets
        ConfigError: _syncsim_error(503),
        StoreError: _syncsim_error(503),
        InvocationKilled: _syncsim_error(504),
        Exception: _internal_error,
    }


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
        Route("/api/sync", api.sync_collection, methods=["GET", "POST"]),
        Route("/api/sync/{jobId}", api.job_status, methods=["GET"]),
        Route("/api/strava/webhook", api.webhook, methods=["GET", "POST"]),
        Route("/api/strava/connect", api.connect, methods=["POST"]),
        Route("/healthz", api.health, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(InvocationMiddleware, platform=platform)],
        exception_handlers=_exception_handlers(clock),
        lifespan=lifespan,
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
