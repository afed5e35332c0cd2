"""The async Strava API client: OAuth tokens, one page at a time, the app-wide rate budget, and retries.

Everything that can go wrong talking to Strava is translated by this client, once, into :mod:`syncsim.errors`:

- ``Unauthorized``      no connection for the user, a 401 after one refresh, a refused refresh, a 403;
- ``RateLimited``       the app-wide window is spent and the caller's deadline comes before its reset, or the
  reset is further away than the caller may wait (``max_wait_s``);
- ``StravaUnavailable`` 5xx, timeouts and connection errors, after ``max_retries`` retries (``StravaNoTimeToRetry``
  when the next retry could not be answered before the caller's deadline; ``StravaDown``, not retried, once
  attempts in a row have failed, several athletes' requests or one athlete's and a probe of another of theirs: an
  outage, waited out by the job's runner);
- ``MalformedResponse`` bad JSON, a page that is not a list, an activity without its required fields;
- ``StravaRejected``    any other 4xx (a 404 for a deleted activity, for instance).

Every message is one line that names the method and endpoint, and never contains a token or the client
secret. Waiting (backoff, rate-limit resets) goes through the injected :class:`~syncsim.clock.Clock`, so the
same code runs in real and in simulated time. The network sits behind an httpx transport, which tests and
the simulator replace with :class:`~syncsim.strava.fake.FakeStrava`.

How one request is sent: a slot is reserved in the shared :class:`RateLimitBudget`, then the first answer that
is neither a 429 nor a 5xx is returned. A 429 blocks the budget and waits for the window's reset (or raises
``RateLimited`` if that comes after the caller's deadline or beyond its ``max_wait_s``); 5xx, timeouts and
connection errors are retried ``max_retries`` times with the backoff of :data:`REQUEST_RETRY`, then raise
``StravaUnavailable``; a retry is tried only if its backoff and the request (as long as the failed attempt took)
end before the deadline, since the platform would cut off one that does not. Every attempt is recorded in the
:class:`~syncsim.strava.trace.Trace` if one is given.

Tokens: the client remembers each user's tokens between requests, but the
:class:`~syncsim.strava.tokens.TokenStore` is the truth: a job run starts with :meth:`StravaClient.load_tokens`,
which replaces what the client remembers with the stored row (or forgets it, and refuses, when the row is
gone), so no run trusts tokens older than the store's, whichever process deleted or replaced them. An access
token is refreshed :data:`REFRESH_MARGIN_S` before it expires — once per user even when several tasks ask at
the same time, re-reading the store first because Strava invalidates a rotated refresh token at once — and the
result saved. A refused grant is ``Unauthorized`` unless the store holds another refresh token by then (another
process refreshed first: its tokens are used), rejected application credentials (or missing ones) a
``ConfigError``.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

import httpx
import orjson

from syncsim.clock import Clock
from syncsim.errors import (
    ConfigError,
    InvalidInput,
    MalformedResponse,
    PermanentError,
    RateLimited,
    StravaDown,
    StravaError,
    StravaNoTimeToRetry,
    StravaUnavailable,
    Unauthorized,
)
from syncsim.retry import RetryPolicy
from syncsim.strava.models import Activity, Athlete, StravaTokens, utc_time
from syncsim.strava.ratelimit import RateLimitBudget, RateSlots, parse_pair, reset_after_429
from syncsim.strava.tokens import MemoryTokenStore, TokenStore
from syncsim.strava.trace import Trace, TraceRecord

__all__ = [
    "CLIENT_ID_ENV",
    "CLIENT_SECRET_ENV",
    "REQUEST_RETRY",
    "STRAVA_BASE_URL",
    "ActivityPage",
    "MemoryTokenStore",
    "StravaClient",
    "StravaRejected",
    "TokenStore",
    "strava_base_url",
]

#: Strava's host; the API lives under ``/api/v3`` (``API_PREFIX``), the OAuth token endpoint at ``/oauth/token``
#: (``TOKEN_PATH``).
STRAVA_BASE_URL = "https://www.strava.com"
API_PREFIX = "/api/v3"
TOKEN_PATH = "/oauth/token"
#: Strava serves at most 200 activities per page.
PER_PAGE_MAX = 200
LIST_ENDPOINT = "/athlete/activities"
CLIENT_ID_ENV = "STRAVA_CLIENT_ID"
CLIENT_SECRET_ENV = "STRAVA_CLIENT_SECRET"
#: Retries of one request after 5xx, timeouts and connection errors: 0.5 s, 1 s, 2 s … capped at 8 s, ±25 %.
#: Short, since the caller (a job with its own retries and an invocation deadline) is waiting.
REQUEST_RETRY = RetryPolicy(base_s=0.5, factor=2.0, max_s=8.0, jitter=0.25)
#: A token grant (``POST /oauth/token``) is sent, after a rate-limit wait or as a retry too, only with this much
#: time left before the caller's deadline: its answer carries the only copy of the new refresh token (Strava
#: invalidates the old one at once), so one cut off by a killed invocation disconnects the athlete.
TOKEN_GRANT_MIN_S = 2.0
#: Strava is taken for down after this many failed attempts in a row (5xx, timeouts, connection errors, with no
#: answer in between) from at least ``OUTAGE_USERS`` athletes' requests: at a 20 % failure rate, random failures do
#: that once in 400,000 attempts; an outage, within seconds of a few syncs' requests. One athlete's requests alone
#: are no evidence (their page may be what Strava cannot serve): the client then asks Strava for something else of
#: that athlete's (a probe, one read) and takes Strava for down only if that fails too, so a deployment with one
#: athlete waits out an outage as well, and a page that always fails still fails its job.
OUTAGE_FAILURES = 8
OUTAGE_USERS = 2
#: A request that gives up after at least this many attempts, all failed and none answered in between (Strava's
#: own answer to anyone included), probes as well: serverless instances count their failures apart, so with a few
#: of them no one process may see 8 (a deployment's only athlete, whose attempts land on a new instance each time,
#: then spent all its attempts in an outage). Random failures rarely do it: 4 in a row and a failed probe are
#: 1 request in 3,000 at a 20 % failure rate, 1 in 3 million at 5 %.
GIVE_UP_PROBE_FAILURES = 4
#: A probe (see above) is sent only with this much time left before the caller's deadline: Strava answers in well
#: under a second, and a probe cut off before its answer proves nothing but spends a read.
PROBE_MIN_S = 1.0
#: While Strava is down its jobs wait, then look again: 30 s, 1 min, 2 min, 4 min, then every 5 min (±25 %), the
#: count growing with each look that finds it still down. A short outage costs a short wait, a long one a few
#: requests every 5 min.
OUTAGE_RETRY = RetryPolicy(base_s=30.0, factor=2.0, max_s=300.0, jitter=0.25)
#: How long after the read timeout the bound on a whole answer (headers and body) ends (seconds; see
#: :meth:`StravaClient._exchange`).
WHOLE_ANSWER_SLACK_S = 0.001
#: Refresh an access token this long before it expires (seconds): a 200-item page takes ~1 s, so five
#: minutes leaves room for a whole batch of pages without a 401 in the middle.
REFRESH_MARGIN_S = 300.0
#: A refused refresh may be another process's race (it refreshed first, and has not saved yet): the store is looked
#: at for this long, every ``REFRESH_RACE_LOOK_S``, before the refusal is final (seconds).
REFRESH_RACE_WAIT_S = 2.0
REFRESH_RACE_LOOK_S = 0.25


def strava_base_url(url: str | None, *, setting: str) -> str:
    """``url`` (``STRAVA_BASE_URL`` if empty) once it is an http(s) URL with a host; else a one-line
    :class:`ConfigError` naming ``setting`` (the flag or variable it came from). Refused up front: httpx would
    refuse every request to it, and taken for Strava failing, that would hold every sync for ever."""
    if not url:
        return STRAVA_BASE_URL
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"{setting} must be an http:// or https:// URL with a host (e.g. {STRAVA_BASE_URL}), got {url!r}"
        )
    return url


class StravaRejected(StravaError, PermanentError):
    """Strava refused the request with a 4xx other than 401/403/429 (e.g. 404 for a deleted activity)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Answer:
    """A response, when its attempt was sent and how long Strava took to answer it."""

    response: httpx.Response
    sent_at: float
    latency_s: float
    attempt: int


class ActivityPage:
    """One answered ``GET /athlete/activities`` page, not parsed yet (see :meth:`StravaClient.request_activities`)."""

    __slots__ = ("_answer", "_client", "page", "where")

    def __init__(self, client: StravaClient, answer: _Answer, page: int, where: str | None = None) -> None:
        self._client = client
        self._answer = answer
        self.page = page
        #: Which page, for messages: its bounds and number (``before 2026-01-04T10:00:00Z page 1``).
        self.where = where or f"page {page}"

    @property
    def latency_s(self) -> float:
        """How long Strava took to answer the attempt that succeeded (seconds)."""
        return self._answer.latency_s

    def last_start(self) -> int | None:
        """The start (UTC epoch seconds) of the page's last activity, read from the body without parsing it all;
        ``None`` for an empty page or a body where it cannot be found. A pager uses it to ask for the next page
        while this one is parsed, and checks it against the parsed page."""
        body = self._answer.response.content
        at = body.rfind(b'"start_date":"')
        if at < 0 or not body.rstrip().endswith(b"]"):
            return None
        start = at + len(b'"start_date":"')
        end = body.find(b'"', start)
        try:
            return int(utc_time(body[start:end].decode()).timestamp())
        except (ValueError, UnicodeDecodeError):
            return None

    def activities(self) -> list[Activity]:
        """The page's activities, parsed and recorded in the trace; a bad page is a :class:`MalformedResponse`."""
        client, answer, page, where = self._client, self._answer, self.page, self.where
        data = client._parse_json(answer, "GET", LIST_ENDPOINT, page=page, where=where)
        if not isinstance(data, list):
            client._record(answer, "GET", LIST_ENDPOINT, page=page, error="MalformedResponse")
            raise MalformedResponse(f"GET {LIST_ENDPOINT} {where}: expected a JSON list, got {type(data).__name__}")
        activities: list[Activity] = []
        for item in data:
            try:
                activities.append(Activity.from_json(item))
            except MalformedResponse as exc:
                client._record(answer, "GET", LIST_ENDPOINT, page=page, items=len(data), error="MalformedResponse")
                raise type(exc)(f"GET {LIST_ENDPOINT} {where}: {_one_line(str(exc))}") from None
        client._record(answer, "GET", LIST_ENDPOINT, page=page, items=len(activities))
        return activities


class StravaClient:
    """Talks to Strava for many users at once; one instance per process, sharing one :class:`RateLimitBudget`.

    Every request method takes the syncsim ``user_id`` whose tokens to use (from ``tokens``) and an optional
    ``deadline`` (UTC epoch seconds) — the end of the caller's invocation. The client sleeps through a
    rate-limit window only if the window resets (plus :data:`~syncsim.strava.ratelimit.CLOCK_SKEW_S`) by the
    deadline; otherwise it raises :class:`~syncsim.errors.RateLimited` with that time, so the job can be
    rescheduled. The API reads' ``max_wait_s`` bounds that sleep for a caller whose job something else continues
    (a worker, the tick): a reset further away raises ``RateLimited`` at once, and the job waits in the store, not
    in this process. They
    also take ``answer_by``, for a caller that the platform kills at a hard limit: a request still unanswered then
    is given up (its timeout cut to end then) and raises :class:`~syncsim.errors.StravaNoTimeToRetry`, so that the
    caller ends on its own, with what it has stored, rather than be killed waiting for a Strava that hangs.
    """

    def __init__(
        self,
        *,
        tokens: TokenStore,
        clock: Clock,
        client_id: str | None = None,
        client_secret: str | None = None,
        budget: RateLimitBudget | None = None,
        base_url: str = STRAVA_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        rng: random.Random | None = None,
        trace: Trace | None = None,
        refresh_margin_s: float = REFRESH_MARGIN_S,
        on_rate_limit_wait: Callable[[uuid.UUID | None, float], None] | None = None,
        share_budget: bool = True,
    ) -> None:
        """Create a client.

        ``client_id``/``client_secret`` default to ``$STRAVA_CLIENT_ID``/``$STRAVA_CLIENT_SECRET`` and are
        needed only to refresh or exchange tokens. ``timeout_s`` applies to every request (seconds);
        ``max_retries`` bounds the retries of 5xx, timeouts and connection errors; ``rng`` draws the backoff
        jitter (inject a seeded one for determinism). ``transport`` replaces the network (FakeStrava).
        ``on_rate_limit_wait(user_id, seconds)`` is called each time the client is about to sleep until a rate-limit
        window resets, for the user whose request waits (``None`` for a token exchange); metrics, not control.
        With ``share_budget`` (the default) and a token store that counts rate-limit slots (every syncsim store
        does), each request also takes a slot in the store, so that every instance of the app counts it.
        """
        if max_retries < 0:
            raise InvalidInput("max_retries must be >= 0")
        if not 0 < timeout_s < math.inf:
            raise InvalidInput(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if not 0 <= refresh_margin_s < math.inf:
            raise InvalidInput(f"refresh_margin_s must be a number of seconds >= 0, got {refresh_margin_s!r}")
        self._store = tokens
        #: Where every process counts the app-wide budget: the token store, if it can (every syncsim store can).
        #: Looked up as an attribute, not by isinstance: from Python 3.12 a runtime protocol check does not see
        #: methods a wrapper provides through __getattr__ (the simulator's observed store is one).
        can_count = callable(getattr(tokens, "take_rate_slot", None))
        self._slots = cast(RateSlots, tokens) if share_budget and can_count else None
        self._clock = clock
        self._client_id = client_id if client_id is not None else os.environ.get(CLIENT_ID_ENV)
        self._client_secret = client_secret if client_secret is not None else os.environ.get(CLIENT_SECRET_ENV)
        self.budget = budget if budget is not None else RateLimitBudget()
        self.base_url = strava_base_url(base_url, setting="the Strava base URL").rstrip("/")
        self.trace = trace
        self._timeout_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s)
        self._max_retries = max_retries
        self._rng = rng if rng is not None else random.Random()
        self._refresh_margin_s = refresh_margin_s
        self.on_rate_limit_wait = on_rate_limit_wait
        self._cache: dict[uuid.UUID, StravaTokens] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        #: Failed attempts in a row (none answered since the first), when the first failed, and whose requests.
        self._failures_in_a_row = 0
        self._failing_since = 0.0
        self._failing_users: set[uuid.UUID | None] = set()
        #: Whether a probe (another request of the one failing athlete) failed too since the first; one at a time.
        self._probe_failed = False
        self._probing = False
        #: Looks that found Strava down in a row, none answered since (so a failure is the next look), and when the
        #: last wait ends (a failure before then is the same look).
        self._outage_looks = 0
        self._outage_until = 0.0
        #: The looks above were another process's (see :meth:`remember_outage`).
        self._down_elsewhere = False
        #: When Strava last answered a request of this client (UTC epoch s).
        self._answered_at = -math.inf
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            timeout=self._timeout,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "syncsim"},
        )

    async def __aenter__(self) -> StravaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"StravaClient(base_url={self.base_url!r}, budget={self.budget!r})"

    # -- the API --------------------------------------------------------------------------------------------

    async def get_athlete(
        self,
        user_id: uuid.UUID,
        *,
        deadline: float | None = None,
        answer_by: float | None = None,
        max_wait_s: float | None = None,
    ) -> Athlete:
        """``GET /athlete``: the athlete connected to ``user_id``."""
        answer = await self._get(
            user_id, "/athlete", "/athlete", None, deadline=deadline, answer_by=answer_by, max_wait_s=max_wait_s
        )
        data = self._parse_json(answer, "GET", "/athlete")
        try:
            athlete = Athlete.from_json(data)
        except MalformedResponse as exc:
            self._record(answer, "GET", "/athlete", error="MalformedResponse")
            raise MalformedResponse(f"GET /athlete: {exc}") from None
        self._record(answer, "GET", "/athlete")
        return athlete

    async def list_activities(
        self,
        user_id: uuid.UUID,
        *,
        page: int,
        per_page: int = PER_PAGE_MAX,
        after: float | None = None,
        before: float | None = None,
        deadline: float | None = None,
        answer_by: float | None = None,
        max_wait_s: float | None = None,
    ) -> list[Activity]:
        """``GET /athlete/activities``: one page (1-based) of summary activities, parsed.

        Newest first; with ``after`` (UTC epoch seconds) oldest first, as Strava orders them. A page may be
        shorter than ``per_page`` before the end: the caller pages until a page is **empty**.
        """
        answered = await self.request_activities(
            user_id,
            page=page,
            per_page=per_page,
            after=after,
            before=before,
            deadline=deadline,
            answer_by=answer_by,
            max_wait_s=max_wait_s,
        )
        return answered.activities()

    async def request_activities(
        self,
        user_id: uuid.UUID,
        *,
        page: int,
        per_page: int = PER_PAGE_MAX,
        after: float | None = None,
        before: float | None = None,
        deadline: float | None = None,
        answer_by: float | None = None,
        max_wait_s: float | None = None,
    ) -> ActivityPage:
        """:meth:`list_activities` in two steps: this one returns as soon as Strava has answered (an
        :class:`ActivityPage` that says whether the page looks empty), and ``.activities()`` parses it.

        A pager can ask for the next page between the two and parse this one while Strava answers.
        """
        if page < 1:
            raise InvalidInput(f"page must be >= 1, got {page}")
        if not 1 <= per_page <= PER_PAGE_MAX:
            raise InvalidInput(f"per_page must be within 1..{PER_PAGE_MAX}, got {per_page}")
        params: dict[str, int] = {"page": page, "per_page": per_page}
        if after is not None:
            params["after"] = int(after)
        if before is not None:
            params["before"] = int(before)
        answer = await self._get(
            user_id,
            LIST_ENDPOINT,
            LIST_ENDPOINT,
            params,
            deadline=deadline,
            answer_by=answer_by,
            max_wait_s=max_wait_s,
            page=page,
        )
        bounds = [f"{name} {_iso(params[name])}" for name in ("after", "before") if name in params]
        return ActivityPage(self, answer, page, " ".join([*bounds, f"page {page}"]))

    async def get_activity(
        self,
        user_id: uuid.UUID,
        activity_id: int,
        *,
        deadline: float | None = None,
        answer_by: float | None = None,
        max_wait_s: float | None = None,
    ) -> Activity:
        """``GET /activities/{id}``: one activity in detail (``DetailedActivity``), parsed."""
        endpoint = "/activities/{id}"
        path = f"/activities/{int(activity_id)}"
        answer = await self._get(
            user_id, endpoint, path, None, deadline=deadline, answer_by=answer_by, max_wait_s=max_wait_s
        )
        data = self._parse_json(answer, "GET", endpoint)
        try:
            activity = Activity.from_json(data)
        except MalformedResponse as exc:
            self._record(answer, "GET", endpoint, error="MalformedResponse")
            raise type(exc)(f"GET {endpoint} ({activity_id}): {_one_line(str(exc))}") from None
        self._record(answer, "GET", endpoint)
        return activity

    # -- requests -------------------------------------------------------------------------------------------

    async def _get(
        self,
        user_id: uuid.UUID,
        endpoint: str,
        path: str,
        params: dict[str, int] | None,
        *,
        deadline: float | None,
        answer_by: float | None = None,
        max_wait_s: float | None = None,
        page: int | None = None,
    ) -> _Answer:
        """GET an API path as ``user_id``: refresh before expiry, and once more on a 401.

        Returns the answer, a 2xx; the caller parses it and records the attempt once it knows the outcome.
        """
        tokens = await self._valid_tokens(user_id, deadline=deadline)
        refreshed_on_401 = False
        while True:
            answer = await self._send(
                "GET",
                endpoint,
                API_PREFIX + path,
                read=True,
                deadline=deadline,
                answer_by=answer_by,
                max_wait_s=max_wait_s,
                params=params,
                headers={"Authorization": f"Bearer {tokens.access_token}"},
                page=page,
                user_id=user_id,
            )
            status = answer.response.status_code
            if status == 401:
                self._record(answer, "GET", endpoint, page=page, error="Unauthorized")
                if refreshed_on_401:
                    raise Unauthorized(
                        f"GET {endpoint}: Strava rejected the access token of user {user_id} (HTTP 401) "
                        "even after a refresh: access was revoked or the token is invalid"
                    )
                refreshed_on_401 = True
                tokens = await self._refresh(user_id, stale=tokens, deadline=deadline)
                continue
            if status == 403:
                self._record(answer, "GET", endpoint, page=page, error="Unauthorized")
                raise Unauthorized(
                    f"GET {endpoint}: Strava refused access for user {user_id} (HTTP 403): "
                    "the token lacks the activity:read scope or the application is inactive"
                )
            self._raise_for_other_4xx(answer, "GET", endpoint, page=page)
            return answer

    # -- OAuth ----------------------------------------------------------------------------------------------

    async def exchange_code(self, user_id: uuid.UUID, code: str, *, deadline: float | None = None) -> StravaTokens:
        """First connection: trade an OAuth authorization ``code`` for tokens; save them for ``user_id``."""
        tokens = await self._token_grant(
            user_id, {"grant_type": "authorization_code", "code": code}, athlete_id=None, deadline=deadline
        )
        if tokens.athlete_id < 0:
            athlete = await self._athlete_with(tokens.access_token, deadline=deadline)
            tokens = _with_athlete(tokens, athlete.id)
        await self._save(user_id, tokens)
        return tokens

    async def connect_with_refresh_token(
        self, user_id: uuid.UUID, refresh_token: str, *, deadline: float | None = None
    ) -> StravaTokens:
        """Connect ``user_id`` from a refresh token (e.g. ``$STRAVA_REFRESH_TOKEN``): refresh, then save.

        A refresh response carries no athlete, so the athlete id comes from ``GET /athlete`` with the new
        access token (or from tokens already stored for the user) before the tokens are saved.
        """
        known = await self._store.get_tokens(user_id)
        tokens = await self._token_grant(
            user_id,
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            athlete_id=known.athlete_id if known is not None else None,
            deadline=deadline,
        )
        if tokens.athlete_id < 0:
            athlete = await self._athlete_with(tokens.access_token, deadline=deadline)
            tokens = _with_athlete(tokens, athlete.id)
        await self._save(user_id, tokens)
        return tokens

    async def load_tokens(self, user_id: uuid.UUID) -> StravaTokens:
        """Read the user's tokens from the store, replacing what this client remembers of them; ``Unauthorized``
        (and nothing remembered) when the store has none. A job run calls this before its first request, so
        tokens deleted since the last run (the athlete disconnected, here or in another process) are not used.
        """
        tokens = await self._store.get_tokens(user_id)
        if tokens is None:
            self._cache.pop(user_id, None)
            raise Unauthorized(f"no Strava connection for user {user_id}")
        self._cache[user_id] = tokens
        return tokens

    def forget(self, user_id: uuid.UUID) -> None:
        """Drop what this client remembers of the user's tokens (they were deleted)."""
        self._cache.pop(user_id, None)

    async def authorization_revoked(self, user_id: uuid.UUID, *, deadline: float | None = None) -> bool:
        """Ask Strava whether the athlete revoked this app: a refresh of their token that Strava refuses is the
        proof (a webhook's deauthorization event is unsigned, so anyone could send one). A refresh Strava grants
        is saved, as every refresh is. ``True`` too when the user has no tokens left to protect."""
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            tokens = await self._store.get_tokens(user_id)
            if tokens is None:
                return True
            try:
                fresh, granted = await self._refresh_grant(user_id, tokens, deadline=deadline)
            except Unauthorized:
                return True
            if granted:
                await self._save(user_id, fresh)
            return False

    async def _valid_tokens(self, user_id: uuid.UUID, *, deadline: float | None) -> StravaTokens:
        tokens = self._cache.get(user_id)
        if tokens is None:
            tokens = await self._store.get_tokens(user_id)
            if tokens is None:
                raise Unauthorized(f"no Strava connection for user {user_id}")
            self._cache[user_id] = tokens
        if self._expiring(tokens):
            tokens = await self._refresh(user_id, stale=tokens, deadline=deadline)
        return tokens

    def _expiring(self, tokens: StravaTokens) -> bool:
        return tokens.expires_at - self._refresh_margin_s <= self._clock.now()

    async def _refresh(self, user_id: uuid.UUID, *, stale: StravaTokens, deadline: float | None) -> StravaTokens:
        """Refresh ``stale`` once, even when several tasks of this process ask at the same time."""
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            # Another task, or another process, may have refreshed while we waited: Strava invalidates a
            # rotated refresh token at once, so using the stale one now would log the athlete out.
            latest = await self._store.get_tokens(user_id)
            if latest is None:
                raise Unauthorized(f"no Strava connection for user {user_id}")
            if latest.access_token != stale.access_token and not self._expiring(latest):
                self._cache[user_id] = latest
                return latest
            tokens, granted = await self._refresh_grant(user_id, latest, deadline=deadline)
            if granted:
                await self._save(user_id, tokens)
            else:
                self._cache[user_id] = tokens
            return tokens

    async def _refresh_grant(
        self, user_id: uuid.UUID, sent: StravaTokens, *, deadline: float | None
    ) -> tuple[StravaTokens, bool]:
        """Refresh ``sent``: (the tokens to use, whether Strava granted them here and they are to be saved).

        The lock above is this process's: another process may refresh the same athlete at the same time, and
        Strava voids a refresh token the moment it issues the next, so it refuses the second grant. A refusal
        is final only if the store still holds the refresh token sent: otherwise the other process's tokens are
        used (refreshed in turn if they too are expiring)."""
        try:
            return await self._grant_refresh(user_id, sent, deadline=deadline), True
        except Unauthorized:
            # The other process may be between Strava's grant and its save: look again for a moment before the
            # refusal is taken as final (for a deauthorization's check, final means the tokens are deleted).
            wait = REFRESH_RACE_WAIT_S
            if deadline is not None:  # not past the caller's deadline, with a second to spare for the rest
                wait = min(wait, max(0.0, deadline - self._clock.now() - 1.0))
            looks = max(1, round(wait / REFRESH_RACE_LOOK_S))
            for look in range(looks):
                stored = await self._store.get_tokens(user_id)
                if stored is None or stored.refresh_token != sent.refresh_token:
                    break
                if look < looks - 1:
                    await self._clock.sleep(REFRESH_RACE_LOOK_S)
            if stored is None or stored.refresh_token == sent.refresh_token:
                raise
        if not self._expiring(stored):
            return stored, False
        return await self._grant_refresh(user_id, stored, deadline=deadline), True

    async def _grant_refresh(self, user_id: uuid.UUID, tokens: StravaTokens, *, deadline: float | None) -> StravaTokens:
        return await self._token_grant(
            user_id,
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
            athlete_id=tokens.athlete_id,
            deadline=deadline,
            scope=tokens.scope,
        )

    async def _save(self, user_id: uuid.UUID, tokens: StravaTokens) -> None:
        await self._store.save_tokens(user_id, tokens, now=self._clock.now())
        self._cache[user_id] = tokens

    def _credentials(self) -> tuple[str, str]:
        if not self._client_id or not self._client_secret:
            raise ConfigError(
                f"Strava client credentials are missing: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} "
                "to refresh or exchange Strava tokens"
            )
        return self._client_id, self._client_secret

    async def _token_grant(
        self,
        user_id: uuid.UUID,
        form: dict[str, str],
        *,
        athlete_id: int | None,
        deadline: float | None,
        scope: str = "",
    ) -> StravaTokens:
        """POST /oauth/token; ``athlete_id`` is -1 if neither the answer nor the caller knew it."""
        client_id, client_secret = self._credentials()
        grant = form["grant_type"]
        what = "refresh token" if grant == "refresh_token" else "authorization code"
        answer = await self._send(
            "POST",
            TOKEN_PATH,
            TOKEN_PATH,
            read=False,
            deadline=deadline,
            data={"client_id": client_id, "client_secret": client_secret, **form},
            grant=True,
        )
        status = answer.response.status_code
        if status in (400, 401, 403):
            errors = _fault_errors(answer.response)
            if any(e.get("resource") == "Application" for e in errors):
                self._record(answer, "POST", TOKEN_PATH, error="ConfigError")
                raise ConfigError(
                    f"POST {TOKEN_PATH}: Strava rejected the application credentials (HTTP {status}); "
                    f"check {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}"
                )
            self._record(answer, "POST", TOKEN_PATH, error="Unauthorized")
            raise Unauthorized(
                f"POST {TOKEN_PATH}: Strava refused the {what} of user {user_id} (HTTP {status}): "
                "access was revoked or the token is invalid; the athlete must reconnect"
            )
        self._raise_for_other_4xx(answer, "POST", TOKEN_PATH)
        data = self._parse_json(answer, "POST", TOKEN_PATH)
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            access, refresh, expires_at = data["access_token"], data["refresh_token"], data["expires_at"]
            if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
                raise TypeError("tokens are not strings")
            if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
                raise TypeError("expires_at is not a number")
            athlete = data.get("athlete")
            if isinstance(athlete, dict) and isinstance(athlete.get("id"), int):
                athlete_id = int(athlete["id"])
        except (KeyError, TypeError) as exc:
            self._record(answer, "POST", TOKEN_PATH, error="MalformedResponse")
            # Name only the missing/ill-typed field: the values are secrets.
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise MalformedResponse(f"POST {TOKEN_PATH}: token response is malformed ({detail})") from None
        self._record(answer, "POST", TOKEN_PATH)
        return StravaTokens(
            athlete_id=athlete_id if athlete_id is not None else -1,
            access_token=access,
            refresh_token=refresh,
            expires_at=float(expires_at),
            scope=str(data.get("scope") or scope),
        )

    async def _athlete_with(self, access_token: str, *, deadline: float | None) -> Athlete:
        """GET /athlete with a token that is not (yet) in the store."""
        endpoint = "/athlete"
        answer = await self._send(
            "GET",
            endpoint,
            API_PREFIX + endpoint,
            read=True,
            deadline=deadline,
            headers={"Authorization": f"Bearer {access_token}"},
        )
        if answer.response.status_code in (401, 403):
            self._record(answer, "GET", endpoint, error="Unauthorized")
            raise Unauthorized(f"GET {endpoint}: Strava refused a freshly issued access token")
        self._raise_for_other_4xx(answer, "GET", endpoint)
        data = self._parse_json(answer, "GET", endpoint)
        self._record(answer, "GET", endpoint)
        try:
            return Athlete.from_json(data)
        except MalformedResponse as exc:
            raise MalformedResponse(f"GET {endpoint}: {exc}") from None

    # -- sending one request --------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        read: bool,
        deadline: float | None,
        answer_by: float | None = None,
        max_wait_s: float | None = None,
        params: dict[str, int] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        page: int | None = None,
        user_id: uuid.UUID | None = None,
        grant: bool = False,
    ) -> _Answer:
        """Send one request through the budget; retry 5xx/timeouts/connection errors; wait out 429s.

        Returns the first answer that is neither a 429 nor a 5xx. ``grant``: a token grant (see
        :data:`TOKEN_GRANT_MIN_S`). ``answer_by``: an attempt still unanswered then is given up (see
        :class:`StravaClient`); not for a grant, whose answer is the only copy of the new refresh token.
        ``max_wait_s``: the longest rate-limit wait to sleep through here (see :class:`StravaClient`).
        """
        if grant and deadline is not None:
            # Every decision below (the first send, a rate-limit wait, a retry) keeps the grant's time to spare.
            deadline -= TOKEN_GRANT_MIN_S
            if self._clock.now() > deadline:
                raise StravaNoTimeToRetry(
                    f"{method} {endpoint}: too little time left before the deadline to risk the refresh token on it"
                )
        assert answer_by is None or not grant, "a token grant's answer is never given up"
        attempt = 0
        failures = 0
        while True:
            if answer_by is not None and self._clock.now() >= answer_by:  # before a rate-limit slot is spent on it
                raise StravaNoTimeToRetry(f"{method} {endpoint}: no time left for an answer before the deadline")
            await self._reserve(method, endpoint, read=read, deadline=deadline, max_wait_s=max_wait_s, user_id=user_id)
            attempt += 1
            sent_at = self._clock.now()
            timeout, cut = self._timeout, None
            if answer_by is not None and answer_by - sent_at < self._timeout_s:
                cut = answer_by - sent_at
                if cut <= 0:  # a rate-limit wait ended after it (a caller's answer_by before its deadline)
                    raise StravaNoTimeToRetry(f"{method} {endpoint}: no time left for an answer before the deadline")
                timeout = httpx.Timeout(cut)
            try:
                answer = await self._exchange(
                    method, path, sent_at, attempt, timeout, params=params, data=data, headers=headers
                )
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                # The URL, not Strava: asking again would fail the same way.
                raise ConfigError(f"{method} {endpoint}: {self.base_url!r} cannot be requested: {exc}") from None
            except httpx.TransportError as exc:
                latency = self._clock.now() - sent_at
                failures += 1
                reason = type(exc).__name__
                self._add(TraceRecord(sent_at, method, endpoint, None, latency, attempt, page, error=reason))
                if cut is not None and isinstance(exc, httpx.TimeoutException):
                    raise StravaNoTimeToRetry(
                        f"{method} {endpoint}: no answer within the {cut:.1f} s left before the deadline"
                    ) from None
                await self._failed(method, endpoint, reason, failures, user_id, sent_at, headers, deadline, answer_by)
                await self._retry_or_raise(method, endpoint, failures, reason, deadline, took=latency)
                continue
            except httpx.DecodingError:
                raise MalformedResponse(f"{method} {endpoint}: response body could not be decoded") from None
            response = answer.response
            status = response.status_code
            if status < 500:  # Strava answered: whatever failed before, it is up
                self._up(answer.sent_at + answer.latency_s)
            if status == 429:
                reset_at = _reset_after_429(response.headers, answer.sent_at)
                self.budget.block_until(reset_at)
                self._record(answer, method, endpoint, page=page, error="RateLimited")
                await self._wait_for_reset(
                    method,
                    endpoint,
                    reset_at,
                    deadline,
                    why="Strava answered 429, the app-wide rate limit is spent",
                    max_wait_s=max_wait_s,
                    user_id=user_id,
                )
                continue
            if status >= 500:
                failures += 1
                self._record(answer, method, endpoint, page=page, error="StravaUnavailable")
                reason = f"HTTP {status}"
                await self._failed(method, endpoint, reason, failures, user_id, sent_at, headers, deadline, answer_by)
                await self._retry_or_raise(method, endpoint, failures, reason, deadline, took=answer.latency_s)
                continue
            return answer

    async def _failed(
        self,
        method: str,
        endpoint: str,
        reason: str,
        failures: int,
        user_id: uuid.UUID | None,
        sent_at: float,
        headers: dict[str, str] | None,
        deadline: float | None,
        answer_by: float | None,
    ) -> None:
        """Count a failed attempt (5xx, timeout, connection error) in the failures in a row; once they say that
        Strava is down, raise :class:`StravaDown` instead of retrying: a retry would fail too, and spend a slot of
        the rate budget that the syncs need once Strava is back."""
        if self._failures_in_a_row == 0:
            self._failing_since = sent_at
            self._failing_users.clear()
            self._probe_failed = False
        self._failures_in_a_row += 1
        self._failing_users.add(user_id)
        athletes = len(self._failing_users)
        if self._outage_looks:  # down at the last look, and nothing answered since: this failure is the next look
            by = ", by another process" if self._down_elsewhere else ""
            evidence = f"down at the last look ({self._outage_looks} in a row{by})"
        elif self._failures_in_a_row >= OUTAGE_FAILURES and athletes >= OUTAGE_USERS:
            evidence = f"{athletes} athletes' requests"
        else:
            # Too little evidence alone: ask Strava for something else, once there are 8 failures in a row, or
            # when this request gives up with none answered since its first attempt (another process may have
            # seen the failures before, as serverless instances count theirs apart).
            giving_up = failures > self._max_retries and self._failures_in_a_row >= failures >= GIVE_UP_PROBE_FAILURES
            if self._failures_in_a_row < OUTAGE_FAILURES and not giving_up:
                return
            if not (self._probe_failed or await self._probe(endpoint, headers, deadline, answer_by)):
                return
            whose = "one athlete's" if athletes == 1 else f"{athletes} athletes'"
            evidence = f"{whose} requests and a probe of another of theirs"
        now = self._clock.now()
        if now >= self._outage_until:  # a new look (not another request of the look that found it down)
            self._outage_looks += 1
        at = now + OUTAGE_RETRY.delay(self._outage_looks, self._rng)
        self._outage_until = max(self._outage_until, at)
        raise StravaDown(
            f"{method} {endpoint}: {reason} after {failures} attempts; Strava is down: {self._failures_in_a_row} "
            f"attempts in a row failed since {_iso(self._failing_since)}, {evidence}; looking again at {_iso(at)}",
            at=at,
            looks=self._outage_looks,
        )

    async def _probe(
        self, endpoint: str, headers: dict[str, str] | None, deadline: float | None, answer_by: float | None
    ) -> bool:
        """Whether Strava fails another request of the one athlete whose requests keep failing: ``GET /athlete``
        (a one-item page of activities if ``/athlete`` is what fails), with the same token. A failure too says
        Strava is down (and counts in the failures in a row); any answer says it is up, and only that athlete's
        request fails. No probe (so no evidence) without a token, while another is in flight, without a rate-limit
        slot, or with less than :data:`PROBE_MIN_S` left before the caller's deadline; a probe is cut off then, and
        if that ends it, it proves nothing either (Strava may be slow, not down).
        """
        authorization = (headers or {}).get("Authorization")
        if authorization is None or self._probing:
            return False
        ends = [t for t in (deadline, answer_by) if t is not None]

        def time_left(at: float) -> float:
            return min(ends) - at if ends else self._timeout_s

        sent_at = self._clock.now()
        if time_left(sent_at) < PROBE_MIN_S:
            return False
        probe, params = ("/athlete/activities", {"per_page": 1}) if endpoint == "/athlete" else ("/athlete", None)
        self._probing = True  # before the store is asked for a slot: one probe at a time
        try:
            if await self._held_back(sent_at, read=True) is not None:
                return False
            sent_at = self._clock.now()  # after the store's round trip, if it was asked
            left = time_left(sent_at)
            if left < PROBE_MIN_S:
                return False
            answer = await self._exchange(
                "GET",
                API_PREFIX + probe,
                sent_at,
                1,
                httpx.Timeout(min(left, self._timeout_s)),
                params=params,
                headers={"Authorization": authorization},
            )
        except httpx.TransportError as exc:
            latency = self._clock.now() - sent_at
            self._add(TraceRecord(sent_at, "GET", probe, None, latency, 1, error=type(exc).__name__))
            if isinstance(exc, httpx.TimeoutException) and left < self._timeout_s:
                return False  # cut off: no evidence either way
            failed = True
        else:
            failed = answer.response.status_code >= 500
            self._record(answer, "GET", probe, error="StravaUnavailable" if failed else None)
            if answer.response.status_code == 429:
                self.budget.block_until(_reset_after_429(answer.response.headers, answer.sent_at))
        finally:
            self._probing = False
        if failed:
            self._failures_in_a_row += 1
            self._probe_failed = True
        else:  # Strava answered: it is up
            self._up(answer.sent_at + answer.latency_s)
        return failed

    def _up(self, answered_at: float) -> None:
        """Strava answered: whatever failed before, it is up."""
        self._failures_in_a_row = self._outage_looks = 0
        self._down_elsewhere = False
        self._answered_at = answered_at

    def remember_outage(self, *, looks: int, until: float, since: float) -> None:
        """Another process found Strava down at ``looks`` looks in a row, at ``since``, and waits until ``until``
        (a stored :class:`~syncsim.jobs.model.TypePause`). Unless this client has heard from Strava since, or
        knows of as many looks itself, its next failure is taken as the next look: it raises
        :class:`StravaDown` at once, with the wait grown from that count, rather than after a job's retries, which
        would spend the job's attempt and slots of the rate budget. Any answer from Strava ends it."""
        if self._answered_at >= since or self._outage_looks >= looks:
            return
        self._outage_looks = looks
        self._outage_until = max(self._outage_until, until)
        self._down_elsewhere = True

    async def _exchange(
        self,
        method: str,
        path: str,
        sent_at: float,
        attempt: int,
        timeout: httpx.Timeout,
        *,
        params: dict[str, int] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Answer:
        """One attempt on the wire, sent at ``sent_at``: the answer read, and its rate-limit headers observed.

        httpx's timeout bounds each read, not the answer: a body that trickles in a few bytes at a time would hold
        the attempt (and a caller's ``answer_by``) for ever. So the whole answer, headers and body, is bounded by
        the same time, and one that takes longer is an ``httpx.ReadTimeout`` like any other. The bound ends just
        after the read timeout, so that the two never race: a read that times out is reported by httpx."""
        bound = timeout.read if timeout.read is not None else self._timeout_s
        whole = asyncio.timeout(bound + WHOLE_ANSWER_SLACK_S)
        try:
            async with whole:
                response = await self._http.request(
                    method, path, params=params, data=data, headers=headers, timeout=timeout
                )
        except TimeoutError:
            if not whole.expired():
                raise
            raise httpx.ReadTimeout(f"no whole answer within {bound:.1f} s") from None
        # httpx binds a response's stream back to the response (a reference cycle), so every page would stay in
        # memory until the cyclic GC ran; the body is read already: a plain stream of it breaks the cycle.
        response.stream = httpx.ByteStream(response.content)
        received_at = self._clock.now()
        self.budget.observe(response.headers, received_at, sent_at=sent_at, served=response.status_code != 429)
        return _Answer(response, sent_at, received_at - sent_at, attempt)

    async def _reserve(
        self,
        method: str,
        endpoint: str,
        *,
        read: bool,
        deadline: float | None,
        max_wait_s: float | None,
        user_id: uuid.UUID | None,
    ) -> None:
        while (held := await self._held_back(self._clock.now(), read=read)) is not None:
            reset_at, why = held
            await self._wait_for_reset(
                method, endpoint, reset_at, deadline, why=why, max_wait_s=max_wait_s, user_id=user_id
            )

    async def _held_back(self, now: float, *, read: bool) -> tuple[float, str] | None:
        """Count a request about to go at ``now`` in the local budget, then in the store's count when the store keeps
        one; ``None`` if it may go, else when it may (UTC epoch s) and why not now."""
        reset_at = self.budget.reserve(now, read=read)
        if reset_at is not None:
            return reset_at, "the app-wide rate limit is spent (local budget)"
        if self._slots is not None:
            reset_at = await self.budget.take_slot(self._slots, now, read=read)
            if reset_at is not None:
                return reset_at, "the app-wide rate limit is spent (the store's count of every instance's requests)"
        return None

    async def _wait_for_reset(
        self,
        method: str,
        endpoint: str,
        reset_at: float,
        deadline: float | None,
        *,
        why: str,
        max_wait_s: float | None = None,
        user_id: uuid.UUID | None = None,
    ) -> None:
        """Sleep until ``reset_at`` (the budget's time, a little after the window's reset) if the deadline and
        ``max_wait_s`` allow, else raise :class:`RateLimited`."""
        if deadline is not None and reset_at > deadline:
            raise RateLimited(
                f"{method} {endpoint}: {why}; it may go again at {_iso(reset_at)}, after the invocation's deadline",
                reset_at=reset_at,
            )
        wait = max(0.0, reset_at - self._clock.now())
        if max_wait_s is not None and wait > max_wait_s:
            raise RateLimited(
                f"{method} {endpoint}: {why}; it may go again at {_iso(reset_at)}, in {wait:.0f} s: the job waits"
                " in the store until then",
                reset_at=reset_at,
            )
        if self.on_rate_limit_wait is not None:
            self.on_rate_limit_wait(user_id, wait)
        await self._clock.sleep(wait)

    async def _retry_or_raise(
        self, method: str, endpoint: str, failures: int, reason: str, deadline: float | None, *, took: float
    ) -> None:
        """Sleep the backoff before retrying a request whose attempt failed after ``took`` seconds; or raise.

        The retry is expected to take as long as the failed attempt: one that could not be answered before the
        deadline is not tried (the platform would kill the invocation in the middle of it, and lose the page).
        """
        if failures > self._max_retries:
            raise StravaUnavailable(f"{method} {endpoint}: {reason} after {failures} attempts")
        delay = REQUEST_RETRY.delay(failures, self._rng)
        if deadline is not None and self._clock.now() + delay + took >= deadline:
            raise StravaNoTimeToRetry(
                f"{method} {endpoint}: {reason} after {failures} attempts; no time left to retry before the deadline"
            )
        await self._clock.sleep(delay)

    def _raise_for_other_4xx(self, answer: _Answer, method: str, endpoint: str, *, page: int | None = None) -> None:
        status = answer.response.status_code
        if 400 <= status < 500:
            self._record(answer, method, endpoint, page=page, error="StravaRejected")
            what = "not found" if status == 404 else "request rejected"
            raise StravaRejected(f"{method} {endpoint}: {what} (HTTP {status})", status=status)

    def _parse_json(
        self, answer: _Answer, method: str, endpoint: str, *, page: int | None = None, where: str | None = None
    ) -> Any:
        try:
            return orjson.loads(answer.response.content)
        except orjson.JSONDecodeError:
            self._record(answer, method, endpoint, page=page, error="MalformedResponse")
            if where is None and page is not None:
                where = f"page {page}"
            raise MalformedResponse(
                f"{method} {endpoint}{' ' + where if where else ''}: response is not valid JSON "
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


def _fault_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The ``errors`` list of a Strava ``Fault`` body, or ``[]``."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _with_athlete(tokens: StravaTokens, athlete_id: int) -> StravaTokens:
    return StravaTokens(
        athlete_id=athlete_id,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        scope=tokens.scope,
    )


def _reset_after_429(headers: httpx.Headers, sent_at: float) -> float:
    """When a 429 for a request sent at ``sent_at`` ends: the day's reset if the headers say a daily limit is
    spent, else the quarter hour's (:func:`~syncsim.strava.ratelimit.reset_after_429`)."""
    pairs = [
        (parse_pair(headers.get(f"{prefix}-limit")), parse_pair(headers.get(f"{prefix}-usage")))
        for prefix in ("x-ratelimit", "x-readratelimit")
    ]
    # A limit below 1 is no limit Strava has (see RateLimitBudget.observe): it says nothing of the day.
    daily = any(
        limit is not None and min(limit) >= 1 and usage is not None and usage[1] >= limit[1] for limit, usage in pairs
    )
    return reset_after_429(sent_at, daily=daily)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str) -> str:
    return " ".join(text.split())
