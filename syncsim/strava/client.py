"""The async Strava API client: OAuth tokens, one page at a time, the app-wide rate budget, and retries.

Everything that can go wrong talking to Strava is translated by this client, once, into :mod:`syncsim.errors`:

- ``Unauthorized``      no connection for the user, a 401 after one refresh, a refused refresh, a 403;
- ``RateLimited``       the app-wide window is spent and the caller's deadline comes before its reset;
- ``StravaUnavailable`` 5xx, timeouts and connection errors, after ``max_retries`` retries;
- ``MalformedResponse`` bad JSON, a page that is not a list, an activity without its required fields;
- ``StravaRejected``    any other 4xx (a 404 for a deleted activity, for instance).

Every message is one line that names the method and endpoint, and never contains a token or the client
secret. Waiting (backoff, rate-limit resets) goes through the injected :class:`~syncsim.clock.Clock`, so the
same code runs in real and in simulated time. The network sits behind an httpx transport, which tests and
the simulator replace with :class:`~syncsim.strava.fake.FakeStrava`.

:class:`StravaClient` is one noun; to keep each module short its parts live in sibling modules, and every
name they define that callers use is re-exported here:

- :mod:`syncsim.strava.tokens` holds :class:`TokenStore` and :class:`MemoryTokenStore`, where tokens are kept;
- :mod:`syncsim.strava.oauth` connects athletes and keeps their access tokens fresh (the OAuth grants);
- :mod:`syncsim.strava.http` sends one request through the rate budget, with retries, rate-limit waits and
  the trace, and defines :class:`StravaRejected`.

This module keeps :class:`StravaClient` itself (its setup and the API methods) and :class:`ActivityPage`.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Callable
from types import TracebackType

import httpx

from syncsim.clock import Clock
from syncsim.errors import InvalidInput, MalformedResponse, Unauthorized
from syncsim.strava.http import API_PREFIX, StravaRejected, _Answer
from syncsim.strava.http import RESET_SLACK_S as RESET_SLACK_S
from syncsim.strava.http import RETRY_BASE_S as RETRY_BASE_S
from syncsim.strava.http import RETRY_JITTER as RETRY_JITTER
from syncsim.strava.http import RETRY_MAX_S as RETRY_MAX_S
from syncsim.strava.models import Activity, Athlete, StravaTokens
from syncsim.strava.oauth import CLIENT_ID_ENV, CLIENT_SECRET_ENV, REFRESH_MARGIN_S, _OAuth
from syncsim.strava.oauth import TOKEN_PATH as TOKEN_PATH
from syncsim.strava.ratelimit import RateLimitBudget
from syncsim.strava.tokens import MemoryTokenStore, TokenStore
from syncsim.strava.trace import Trace

__all__ = [
    "CLIENT_ID_ENV",
    "CLIENT_SECRET_ENV",
    "STRAVA_BASE_URL",
    "ActivityPage",
    "MemoryTokenStore",
    "StravaClient",
    "StravaRejected",
    "TokenStore",
]

#: Strava's host; the API lives under ``/api/v3`` (``API_PREFIX``), the OAuth token endpoint at ``/oauth/token``
#: (``TOKEN_PATH``).
STRAVA_BASE_URL = "https://www.strava.com"
#: Strava serves at most 200 activities per page.
PER_PAGE_MAX = 200
LIST_ENDPOINT = "/athlete/activities"


class ActivityPage:
    """One answered ``GET /athlete/activities`` page, not parsed yet (see :meth:`StravaClient.request_activities`)."""

    __slots__ = ("_answer", "_client", "page")

    def __init__(self, client: StravaClient, answer: _Answer, page: int) -> None:
        self._client = client
        self._answer = answer
        self.page = page

    @property
    def latency_s(self) -> float:
        """How long Strava took to answer the attempt that succeeded (seconds)."""
        return self._answer.latency_s

    @property
    def looks_nonempty(self) -> bool:
        """Whether the body looks like a JSON list with items in it, without parsing it: ``[`` … ``]`` and not
        ``[]``. False for the empty page that ends paging, and for a body that is plainly not a list."""
        body = self._answer.response.content.strip()
        return len(body) > 2 and body[:1] == b"[" and body[-1:] == b"]" and body[1:-1].strip() != b""

    def activities(self) -> list[Activity]:
        """The page's activities, parsed and recorded in the trace; a bad page is a :class:`MalformedResponse`."""
        client, answer, page = self._client, self._answer, self.page
        data = client._parse_json(answer, "GET", LIST_ENDPOINT, page=page)
        if not isinstance(data, list):
            client._record(answer, "GET", LIST_ENDPOINT, page=page, error="MalformedResponse")
            raise MalformedResponse(f"GET {LIST_ENDPOINT} page {page}: expected a JSON list, got {type(data).__name__}")
        activities: list[Activity] = []
        for item in data:
            try:
                activities.append(Activity.from_json(item))
            except MalformedResponse as exc:
                client._record(answer, "GET", LIST_ENDPOINT, page=page, items=len(data), error="MalformedResponse")
                raise MalformedResponse(f"GET {LIST_ENDPOINT} page {page}: {_one_line(str(exc))}") from None
        client._record(answer, "GET", LIST_ENDPOINT, page=page, items=len(activities))
        return activities


class StravaClient(_OAuth):
    """Talks to Strava for many users at once; one instance per process, sharing one :class:`RateLimitBudget`.

    Every request method takes the syncsim ``user_id`` whose tokens to use (from ``tokens``) and an optional
    ``deadline`` (UTC epoch seconds) — the end of the caller's invocation. The client sleeps through a
    rate-limit window only if the window resets (plus one second) by the deadline; otherwise it raises
    :class:`~syncsim.errors.RateLimited` with the reset time, so the job can be rescheduled.
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
    ) -> None:
        """Create a client.

        ``client_id``/``client_secret`` default to ``$STRAVA_CLIENT_ID``/``$STRAVA_CLIENT_SECRET`` and are
        needed only to refresh or exchange tokens. ``timeout_s`` applies to every request (seconds);
        ``max_retries`` bounds the retries of 5xx, timeouts and connection errors; ``rng`` draws the backoff
        jitter (inject a seeded one for determinism). ``transport`` replaces the network (FakeStrava).
        ``on_rate_limit_wait(user_id, seconds)`` is called each time the client is about to sleep until a rate-limit
        window resets, for the user whose request waits (``None`` for a token exchange); metrics, not control.
        """
        if max_retries < 0:
            raise InvalidInput("max_retries must be >= 0")
        if timeout_s <= 0:
            raise InvalidInput("timeout_s must be > 0")
        self._store = tokens
        self._clock = clock
        self._client_id = client_id if client_id is not None else os.environ.get(CLIENT_ID_ENV)
        self._client_secret = client_secret if client_secret is not None else os.environ.get(CLIENT_SECRET_ENV)
        self.budget = budget if budget is not None else RateLimitBudget()
        self.base_url = base_url.rstrip("/")
        self.trace = trace
        self._timeout = httpx.Timeout(timeout_s)
        self._max_retries = max_retries
        self._rng = rng if rng is not None else random.Random()
        self._refresh_margin_s = refresh_margin_s
        self.on_rate_limit_wait = on_rate_limit_wait
        self._cache: dict[uuid.UUID, StravaTokens] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
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

    async def get_athlete(self, user_id: uuid.UUID, *, deadline: float | None = None) -> Athlete:
        """``GET /athlete``: the athlete connected to ``user_id``."""
        answer = await self._get(user_id, "/athlete", "/athlete", None, deadline=deadline)
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
    ) -> list[Activity]:
        """``GET /athlete/activities``: one page (1-based) of summary activities, parsed.

        Newest first; with ``after`` (UTC epoch seconds) oldest first, as Strava orders them. A page may be
        shorter than ``per_page`` before the end: the caller pages until a page is **empty**.
        """
        answered = await self.request_activities(
            user_id, page=page, per_page=per_page, after=after, before=before, deadline=deadline
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
        answer = await self._get(user_id, LIST_ENDPOINT, LIST_ENDPOINT, params, deadline=deadline, page=page)
        return ActivityPage(self, answer, page)

    async def get_activity(self, user_id: uuid.UUID, activity_id: int, *, deadline: float | None = None) -> Activity:
        """``GET /activities/{id}``: one activity in detail (``DetailedActivity``), parsed."""
        endpoint = "/activities/{id}"
        path = f"/activities/{int(activity_id)}"
        answer = await self._get(user_id, endpoint, path, None, deadline=deadline)
        data = self._parse_json(answer, "GET", endpoint)
        try:
            activity = Activity.from_json(data)
        except MalformedResponse as exc:
            self._record(answer, "GET", endpoint, error="MalformedResponse")
            raise MalformedResponse(f"GET {endpoint} ({activity_id}): {_one_line(str(exc))}") from None
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


def _one_line(text: str) -> str:
    return " ".join(text.split())
