"""How the Strava client sends one request: the app-wide rate budget, retries, rate-limit waits and the trace.

:class:`_Http` is the bottom part of :class:`~syncsim.strava.client.StravaClient` (a base class of it, no
state of its own). :meth:`_Http._send` reserves a slot in the shared :class:`RateLimitBudget`, sends, and
returns the first answer that is neither a 429 nor a 5xx: a 429 blocks the budget and waits for the window's
reset (or raises ``RateLimited`` if that comes after the caller's deadline); 5xx, timeouts and connection
errors are retried ``max_retries`` times with jittered exponential backoff, then raise
``StravaUnavailable``. The helpers beside it turn a remaining 4xx into :class:`StravaRejected` and a body
that is not JSON into ``MalformedResponse``, and record every attempt in the :class:`Trace`. All waiting goes
through the injected clock. The error-mapping contract as a whole is documented in
:mod:`syncsim.strava.client`, which re-exports the names defined here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from syncsim.clock import Clock
from syncsim.errors import MalformedResponse, PermanentError, RateLimited, StravaError, StravaUnavailable
from syncsim.strava.ratelimit import RateLimitBudget, next_quarter_hour, next_utc_midnight, parse_pair
from syncsim.strava.trace import Trace, TraceRecord

__all__ = ["StravaRejected"]

#: Strava's API lives under ``/api/v3`` on its host (the OAuth token endpoint does not).
API_PREFIX = "/api/v3"
#: Retry backoff after the n-th failure: ``min(RETRY_MAX_S, RETRY_BASE_S * 2**(n-1))`` seconds, times a
#: uniform jitter factor in ``[1 - RETRY_JITTER, 1 + RETRY_JITTER]``.
RETRY_BASE_S = 0.5
RETRY_MAX_S = 8.0
RETRY_JITTER = 0.25
#: Wake this long after a rate-limit reset (seconds), so a small clock skew with Strava does not land the
#: first request of the new window in the old one.
RESET_SLACK_S = 1.0


class StravaRejected(StravaError, PermanentError):
    """Strava refused the request with a 4xx other than 401/403/429 (e.g. 404 for a deleted activity)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Answer:
    """A response that is neither 429 nor 5xx, and when its attempt was sent."""

    response: httpx.Response
    sent_at: float
    latency_s: float
    attempt: int


class _Http:
    """The request half of :class:`~syncsim.strava.client.StravaClient` (a base class of it, no state of its own).

    The attributes below are StravaClient's, set up by its ``__init__``.
    """

    budget: RateLimitBudget
    trace: Trace | None
    on_rate_limit_wait: Callable[[uuid.UUID | None, float], None] | None
    _clock: Clock
    _http: httpx.AsyncClient
    _timeout: httpx.Timeout
    _max_retries: int
    _rng: random.Random

    async def _send(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        read: bool,
        deadline: float | None,
        params: dict[str, int] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        page: int | None = None,
        user_id: uuid.UUID | None = None,
    ) -> _Answer:
        """Send one request through the budget; retry 5xx/timeouts/connection errors; wait out 429s.

        Returns the first answer that is neither a 429 nor a 5xx.
        """
        attempt = 0
        failures = 0
        while True:
            await self._reserve(method, endpoint, read=read, deadline=deadline, user_id=user_id)
            attempt += 1
            sent_at = self._clock.now()
            try:
                response = await self._http.request(
                    method, path, params=params, data=data, headers=headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:
                latency = self._clock.now() - sent_at
                failures += 1
                reason = type(exc).__name__
                self._add(TraceRecord(sent_at, method, endpoint, None, latency, attempt, page, error=reason))
                await self._retry_or_raise(method, endpoint, failures, reason, deadline)
                continue
            except httpx.DecodingError:
                raise MalformedResponse(f"{method} {endpoint}: response body could not be decoded") from None
            # httpx binds a response's stream back to the response (a reference cycle), so every page would stay
            # in memory until the cyclic GC ran; the body is read already: a plain stream of it breaks the cycle.
            response.stream = httpx.ByteStream(response.content)
            received_at = self._clock.now()
            self.budget.observe(response.headers, received_at, sent_at=sent_at)
            answer = _Answer(response, sent_at, received_at - sent_at, attempt)
            status = response.status_code
            if status == 429:
                reset_at = _reset_after_429(response.headers, received_at)
                self.budget.block_until(reset_at)
                self._record(answer, method, endpoint, page=page, error="RateLimited")
                await self._wait_for_reset(
                    method,
                    endpoint,
                    reset_at,
                    deadline,
                    why="Strava answered 429, the app-wide rate limit is spent",
                    user_id=user_id,
                )
                continue
            if status >= 500:
                failures += 1
                self._record(answer, method, endpoint, page=page, error="StravaUnavailable")
                await self._retry_or_raise(method, endpoint, failures, f"HTTP {status}", deadline)
                continue
            return answer

    async def _reserve(
        self, method: str, endpoint: str, *, read: bool, deadline: float | None, user_id: uuid.UUID | None
    ) -> None:
        while True:
            reset_at = self.budget.reserve(self._clock.now(), read=read)
            if reset_at is None:
                return
            await self._wait_for_reset(
                method,
                endpoint,
                reset_at,
                deadline,
                why="the app-wide rate limit is spent (local budget)",
                user_id=user_id,
            )

    async def _wait_for_reset(
        self,
        method: str,
        endpoint: str,
        reset_at: float,
        deadline: float | None,
        *,
        why: str,
        user_id: uuid.UUID | None = None,
    ) -> None:
        """Sleep until ``reset_at`` (+1 s) if the deadline allows, else raise :class:`RateLimited`."""
        if deadline is not None and reset_at + RESET_SLACK_S > deadline:
            raise RateLimited(
                f"{method} {endpoint}: {why}; it resets at {_iso(reset_at)}, after the invocation's deadline",
                reset_at=reset_at,
            )
        wait = max(0.0, reset_at + RESET_SLACK_S - self._clock.now())
        if self.on_rate_limit_wait is not None:
            self.on_rate_limit_wait(user_id, wait)
        await self._clock.sleep(wait)

    async def _retry_or_raise(
        self, method: str, endpoint: str, failures: int, reason: str, deadline: float | None
    ) -> None:
        if failures > self._max_retries:
            raise StravaUnavailable(f"{method} {endpoint}: {reason} after {failures} attempts")
        delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (failures - 1))
        delay *= 1.0 + RETRY_JITTER * (2.0 * self._rng.random() - 1.0)
        if deadline is not None and self._clock.now() + delay >= deadline:
            raise StravaUnavailable(
                f"{method} {endpoint}: {reason} after {failures} attempts; no time left to retry before the deadline"
            )
        await self._clock.sleep(delay)

    def _raise_for_other_4xx(self, answer: _Answer, method: str, endpoint: str, *, page: int | None = None) -> None:
        status = answer.response.status_code
        if 400 <= status < 500:
            self._record(answer, method, endpoint, page=page, error="StravaRejected")
            what = "not found" if status == 404 else "request rejected"
            raise StravaRejected(f"{method} {endpoint}: {what} (HTTP {status})", status=status)

    def _parse_json(self, answer: _Answer, method: str, endpoint: str, *, page: int | None = None) -> Any:
        try:
            return orjson.loads(answer.response.content)
        except orjson.JSONDecodeError:
            self._record(answer, method, endpoint, page=page, error="MalformedResponse")
            where = f" page {page}" if page is not None else ""
            raise MalformedResponse(
                f"{method} {endpoint}{where}: response is not valid JSON "
                f"(HTTP {answer.response.status_code}, {len(answer.response.content)} bytes)"
            ) from None

    # -- trace ----------------------------------------------------------------------------------------------

    def _record(
        self,
        answer: _Answer,
        method: str,
        endpoint: str,
        *,
        page: int | None = None,
        items: int | None = None,
        error: str | None = None,
    ) -> None:
        if self.trace is None:
            return
        headers = answer.response.headers
        usage = parse_pair(headers.get("x-ratelimit-usage")) or (None, None)
        read_usage = parse_pair(headers.get("x-readratelimit-usage")) or (None, None)
        self.trace.add(
            TraceRecord(
                ts=answer.sent_at,
                method=method,
                endpoint=endpoint,
                status=answer.response.status_code,
                latency_s=answer.latency_s,
                attempt=answer.attempt,
                page=page,
                items=items,
                usage_15min=usage[0],
                usage_daily=usage[1],
                read_usage_15min=read_usage[0],
                read_usage_daily=read_usage[1],
                error=error,
            )
        )

    def _add(self, record: TraceRecord) -> None:
        if self.trace is not None:
            self.trace.add(record)


def _reset_after_429(headers: httpx.Headers, now: float) -> float:
    """When a 429 ends: the next UTC midnight if a daily limit is spent per the headers, else the next :15."""
    for prefix in ("x-ratelimit", "x-readratelimit"):
        limit = parse_pair(headers.get(f"{prefix}-limit"))
        usage = parse_pair(headers.get(f"{prefix}-usage"))
        if limit is not None and usage is not None and usage[1] >= limit[1]:
            return next_utc_midnight(now)
    return next_quarter_hour(now)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
