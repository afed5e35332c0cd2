"""How the HTTP API speaks HTTP: JSON answers and errors, reading a request, one invocation per request.

Every answer is JSON: :func:`json_response`, and :func:`error_response` for ``{"error": "<one line>"}``;
:func:`job_json` is a job as the API shows it. Request handlers raise :class:`ApiError` (or any
:mod:`syncsim.errors` error), which :func:`exception_handlers` maps to a status. :class:`RequestReader` reads
what every route needs from a request: its user, its invocation and its size-limited JSON body.

:class:`InvocationMiddleware` runs each request in a new platform invocation (stored in the ASGI scope under
:data:`INVOCATION_KEY`) and answers 504 when the handler overruns its deadline; :func:`respond_after_work` is
the anti-pattern kept for benchmarks. The API logs as ``syncsim.api``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncsim import defaults
from syncsim.api.auth import AuthError, bearer_token, verify_token
from syncsim.clock import Clock
from syncsim.errors import (
    ConfigError,
    InvalidInput,
    InvocationKilled,
    PermanentError,
    Reschedule,
    RetryableError,
    StoreError,
)
from syncsim.jobs.model import Job, JobStatus
from syncsim.platforms.invocation import Invocation, Platform

__all__ = [
    "INVOCATION_KEY",
    "ApiError",
    "InvocationMiddleware",
    "RequestReader",
    "error_response",
    "exception_handlers",
    "job_json",
    "json_int",
    "json_response",
    "json_type",
    "loggable_path",
    "one_line",
    "only_query",
    "parse_query_int",
    "respond_after_work",
]

log = logging.getLogger("syncsim.api")

#: Where the request's :class:`Invocation` lives in the ASGI scope.
INVOCATION_KEY = "syncsim.invocation"
#: Where the ASGI scope keeps the path prefixes whose next segment is a secret (see :func:`loggable_path`).
SECRET_PREFIXES_KEY = "syncsim.secret_prefixes"
#: The longest path a log line shows (the rest is cut): a path is the client's to choose.
MAX_LOGGED_PATH_CHARS = 200


class ApiError(Exception):
    """An HTTP error with a one-line message, raised by request handlers."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def loggable_path(path: str, secret_prefixes: tuple[str, ...] = ()) -> str:
    """``path`` as a log line may show it: the segment after any of ``secret_prefixes`` (a path that carries a
    secret, e.g. the webhook's callback secret) replaced by ``***``, control and unprintable characters escaped
    (a CR or LF in a URL would otherwise start a forged log line), and cut to :data:`MAX_LOGGED_PATH_CHARS`."""
    for prefix in secret_prefixes:
        if path.startswith(prefix) and len(path) > len(prefix):
            rest = path[len(prefix) :]
            path = prefix + "***" + rest[rest.index("/") :] if "/" in rest else prefix + "***"
            break
    if not path.isprintable():
        path = "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
    return path if len(path) <= MAX_LOGGED_PATH_CHARS else path[: MAX_LOGGED_PATH_CHARS - 1] + "…"


def _request_path(request: Request) -> str:
    """The request's path as log lines show it (made safe only when a line is written: most requests log none)."""
    return loggable_path(request.scope.get("path", ""), request.scope.get(SECRET_PREFIXES_KEY, ()))


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": one_line(message)}, status, headers)


def job_json(job: Job) -> dict[str, Any]:
    """A job as the API shows it: camelCase; ``nextAttemptAt`` only while pending. Its id and times stay a UUID
    and UTC datetimes: orjson writes them as the API shows them (canonical UUID text, ISO 8601 with ``+00:00``,
    the same text as ``isoformat()``), without a string built for each on every poll."""
    return {
        "jobId": job.id,
        "status": job.status.value,
        "type": job.type,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "progress": job.progress,
        "result": job.result,
        "error": job.error,
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "completedAt": job.completed_at,
        "nextAttemptAt": job.next_attempt_at if job.status is JobStatus.PENDING else None,
        "runs": job.runs,
    }


def json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


#: Integers in query strings and headers: ASCII digits only (``str.isdigit`` also accepts "²" and other
#: Unicode digits that ``int`` refuses), and few enough of them that ``int`` never meets Python's 4,300-digit
#: conversion limit.
_DIGITS = re.compile(r"[0-9]{1,18}")


def only_query(request: Request, *allowed: str) -> None:
    """A 400 naming the query parameters a route does not take: a misspelt ``?limt=5`` must not pass as the
    default, and the OpenAPI description lists every parameter there is."""
    if not request.scope.get("query_string"):
        # Nearly every request has no query (a status poll never has one): nothing to parse, nothing unknown.
        return
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise ApiError(400, f"unknown query parameter(s) {names}; allowed: {', '.join(allowed) or 'none'}")


def parse_query_int(raw: str, *, name: str, minimum: int, maximum: int) -> int:
    """A query parameter as an integer in ``minimum..maximum``, or a 400 saying what is allowed."""
    if _DIGITS.fullmatch(raw) is None or not minimum <= int(raw) <= maximum:
        raise ApiError(400, f"{name} must be an integer between {minimum} and {maximum}, got {raw[:20]!r}")
    return int(raw)


def json_int(value: object, *, name: str, minimum: int, maximum: int) -> int:
    """A JSON body field as an integer in ``minimum..maximum``, or a 422 saying what is allowed.

    A number with no fractional part (``3.0``) is an integer, as JSON Schema counts it; booleans are not."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(422, f"{name} must be an integer, got {json_type(value)}")
    if not minimum <= value <= maximum:
        shown = str(value) if len(str(value)) <= 30 else "a larger number"
        raise ApiError(422, f"{name} must be between {minimum} and {maximum}, got {shown}")
    return value


# -- the invocation around each request ----------------------------------------------------------------------
class InvocationMiddleware:
    """Runs each HTTP request in a new platform invocation; logs one access line (no query, no headers, the path
    as :func:`loggable_path` shows it, ``secret_prefixes`` naming the paths that carry a secret).

    ``finish_response()`` is called once the last body chunk is sent, so background work continues alone. If
    the handler is still running at the invocation's deadline it is cancelled and answered with 504. An
    exception no handler answered is logged here once, with its traceback, and answered with 500: it goes no
    further, so the server does not log it a second time.
    """

    def __init__(self, app: ASGIApp, *, platform: Platform, secret_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.platform = platform
        self.secret_prefixes = secret_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        invocation = self.platform.start_invocation()
        scope[INVOCATION_KEY] = invocation
        scope[SECRET_PREFIXES_KEY] = self.secret_prefixes
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
        except Exception as exc:
            path = loggable_path(scope.get("path", ""), self.secret_prefixes)
            log.error("%s %s -> 500: %s", scope.get("method"), path, type(exc).__name__, exc_info=exc)
            if status != 0:  # the answer had begun: the server can only cut the connection
                raise
            await _send_error(send, 500, "internal server error")
            status = 500
        finally:
            if not invocation.responded:
                invocation.finish_response()
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %s %.1fms invocation=%s",
                scope.get("method"),
                loggable_path(scope.get("path", ""), self.secret_prefixes),
                status or "-",
                (invocation.clock.now() - invocation.started_at) * 1000,
                invocation.id,
            )


async def _send_error(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": one_line(message)})
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


# -- reading a request ---------------------------------------------------------------------------------------
class RequestReader:
    """Reads what every route needs from a request: the user its bearer token names (HS256 with ``jwt_secret``,
    expiry checked against ``clock``), the invocation it runs in, and its JSON body (at most
    ``max_body_bytes``, arriving within ``body_timeout_s`` seconds)."""

    def __init__(
        self,
        *,
        jwt_secret: str,
        clock: Clock,
        max_body_bytes: int,
        body_timeout_s: float = defaults.BODY_READ_TIMEOUT_S,
    ) -> None:
        self.jwt_secret = jwt_secret
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    def user(self, request: Request) -> uuid.UUID:
        """The user whose valid token the request's ``Authorization`` header carries, or :class:`AuthError`."""
        return verify_token(bearer_token(request.headers.get("authorization")), self.jwt_secret, now=self.clock.now())

    @staticmethod
    def invocation(request: Request) -> Invocation:
        invocation = request.scope.get(INVOCATION_KEY)
        if not isinstance(invocation, Invocation):  # pragma: no cover - the middleware always sets it
            raise RuntimeError("request is not running inside an invocation")
        return invocation

    async def json_body(self, request: Request, *, required: bool) -> dict[str, Any] | None:
        """The body as a JSON object; the size limit is enforced while reading, not trusted from headers, and the
        body must arrive within ``body_timeout_s``."""
        limit = self.max_body_bytes
        too_big = ApiError(413, f"request body is larger than the {limit}-byte limit")
        declared = request.headers.get("content-length")
        if declared is not None:
            declared = declared.strip()
            if re.fullmatch(r"[0-9]+", declared) is None:
                raise ApiError(400, "Content-Length is not a number")
            if _DIGITS.fullmatch(declared) is None or int(declared) > limit:  # a giant number is never parsed
                raise too_big
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type != "application/json" and not content_type.endswith("+json"):
            raise ApiError(415, f"request body must be application/json, got {content_type[:60]!r}")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise too_big
                    chunks.append(chunk)
        except ClientDisconnect:
            raise ApiError(400, "the client disconnected before sending the whole body") from None
        except TimeoutError:
            raise ApiError(408, f"the body did not arrive within {self.body_timeout_s:g} s") from None
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
            raise ApiError(400, f"request body must be a JSON object, got {json_type(data)}")
        return data


# -- errors --------------------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, str(exc), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(404, f"no route for {loggable_path(request.url.path)}")
    if exc.status_code == 405:
        allowed = ", ".join(sorted(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m))
        message = f"method {request.method} is not allowed here; allowed: {allowed}"
        return error_response(405, message, {"Allow": allowed})
    return error_response(exc.status_code, str(exc.detail), exc.headers)


def _syncsim_error(status: int, *, headers: Mapping[str, str] | None = None) -> Callable[..., Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        if status >= 500:
            log.warning("%s %s -> %d: %s: %s", request.method, _request_path(request), status, type(exc).__name__, exc)
        return error_response(status, str(exc), headers)

    return handle


async def _store_error(request: Request, exc: Exception) -> Response:
    """The store's own message names its host, database and user: it goes to the log, not to the client."""
    log.warning("%s %s -> 503: %s: %s", request.method, _request_path(request), type(exc).__name__, one_line(str(exc)))
    return error_response(503, "the job store is unavailable; try again shortly", {"Retry-After": "5"})


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    """A client that hangs up mid-request is routine: no traceback, and the answer goes nowhere."""
    log.info("%s %s: the client disconnected before the request was read", request.method, _request_path(request))
    return error_response(400, "the client disconnected")


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s -> 500: %s", request.method, _request_path(request), type(exc).__name__, exc_info=exc)
    return error_response(500, "internal server error")


def exception_handlers(clock: Clock) -> dict[Any, Callable[..., Awaitable[Response]]]:
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
        StoreError: _store_error,
        ClientDisconnect: _client_disconnect,
        InvocationKilled: _syncsim_error(504),
        Exception: _internal_error,
    }
