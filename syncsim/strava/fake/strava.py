"""FakeStrava: a seeded, deterministic stand-in for Strava's API v3, faithful to its spec and documentation.

One request-handling core (:meth:`FakeStrava.respond`) serves two adapters: an httpx transport for
in-process use (tests, the simulator) and a plain ASGI app for loopback (``syncsim fake-strava``, stravalib).

What it models, from ``shared/strava`` (swagger + the documented facts):

- ``GET /api/v3/athlete``, ``GET /api/v3/athlete/activities``, ``GET /api/v3/activities/{id}``,
  ``POST /oauth/token`` (``authorization_code`` and ``refresh_token`` grants, form or JSON body; also at
  ``/api/v3/oauth/token``) and ``POST /oauth/deauthorize``;
- the token as ``Authorization: Bearer`` or the ``access_token`` query parameter; 6-hour access tokens; a
  refresh with more than an hour left returns the same token; a rotated refresh token invalidates the old
  one at once; Strava's exact 401 body;
- app-wide rate limits (overall and read, per quarter hour and UTC day, from the clock), the four
  ``X-RateLimit-*``/``X-ReadRateLimit-*`` headers on every API response, Strava's exact 429 body, and
  rejected requests still counted;
- paging: ``per_page`` capped at 200; newest first, oldest first with ``after=``; ``before``/``after`` filter.

``compact=True`` serves the activity lists with each SummaryActivity cut to :data:`COMPACT_SUMMARY_KEYS`:
what syncsim parses and stores as columns, plus the sport and local time a chart of the history uses. It is
still valid SummaryActivity JSON (the swagger marks no field required) and the values are the same as the full
item's; only the bytes per activity drop from ~1.1 KB to ~0.35 KB, which is most of a simulation's cost
(~550,000 activities are generated, serialized, parsed and stored per run). ``GET /activities/{id}`` and the
other endpoints are unchanged.

Activities are never materialized: activity *i* of an athlete is a pure function of (seed, athlete, i), and
start times grow with *i*, so a page is located by binary search and built on demand (a 200-item page builds
and serializes in about a millisecond). Latency and faults are seeded; fault decisions are keyed by the
request (athlete, endpoint, page, how many times it was asked), so they do not depend on how concurrent
requests of different athletes interleave.

FakeStrava composes its parts: :class:`~syncsim.strava.fake.histories.Histories` (the athletes and what they
have), :class:`~syncsim.strava.fake.oauth.Credentials` (tokens and grants), the app-wide rate limits and the
faults (here), and the two HTTP adapters of :mod:`syncsim.strava.fake.http`. The JSON text itself comes from
:mod:`syncsim.strava.fake.data`.
"""

from __future__ import annotations

import bisect
import math
import random
import zlib
from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from syncsim.clock import Clock
from syncsim.strava.fake.config import Churn, Faults, LatencyModel
from syncsim.strava.fake.data import ATHLETE_ID_BASE, COMPACT_SUMMARY_KEYS, MASK, AthleteState, athlete_json, mix, unit
from syncsim.strava.fake.histories import FakeAthlete, Histories, PageCache
from syncsim.strava.fake.http import (
    BODY_401,
    BODY_404,
    BODY_429,
    BODY_500,
    BODY_502,
    BODY_503,
    JSON,
    FakeRequest,
    FakeResponse,
    FakeStravaTransport,
    bad_request,
    bearer,
    form_or_json,
    serve_asgi,
)
from syncsim.strava.fake.oauth import Credentials
from syncsim.strava.ratelimit import quarter_hour_start, utc_day_start

if TYPE_CHECKING:
    from syncsim.strava.client import StravaClient
    from syncsim.strava.tokens import TokenStore

__all__ = ["ATHLETE_ID_BASE", "COMPACT_SUMMARY_KEYS", "FakeStrava"]

DEFAULT_PER_PAGE = 30  # swagger: per_page "Defaults to 30"


@dataclass(slots=True)
class _Usage:
    window: float = -math.inf
    day: float = -math.inf
    overall_15: int = 0
    overall_day: int = 0
    read_15: int = 0
    read_day: int = 0


class FakeStrava:
    """A seeded, deterministic Strava for tests, the simulator and loopback servers. See the module doc."""

    def __init__(
        self,
        *,
        clock: Clock,
        seed: int = 0,
        read_limits: tuple[int, int] = (100, 1000),
        overall_limits: tuple[int, int] = (200, 2000),
        latency: LatencyModel | float = 0.0,
        faults: Faults | None = None,
        client_id: str = "fake-client",
        client_secret: str = "fake-secret",
        page_size_cap: int = 200,
        rotate_refresh_tokens: bool = True,
        keep_log: bool = True,
        compact: bool = False,
        page_cache: PageCache | None = None,
    ) -> None:
        """``*_limits`` are (per 15 min, per UTC day); ``latency`` is seconds or a model (seconds).

        ``compact`` serves activity lists with only :data:`COMPACT_SUMMARY_KEYS` per item (module docstring).
        ``page_cache`` shares built list pages with other instances creating the same athletes (:class:`PageCache`).
        """
        self.clock = clock
        self.seed = seed
        self.read_limits = read_limits
        self.overall_limits = overall_limits
        self.latency = latency if isinstance(latency, LatencyModel) else LatencyModel(median_s=float(latency))
        self.faults = faults if faults is not None else Faults()
        self.client_id = client_id
        self.client_secret = client_secret
        self.page_size_cap = page_size_cap
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.keep_log = keep_log
        #: The id Strava gives the app's webhook subscription (one per app); events carry it.
        self.subscription_id = 1
        self.requests: list[FakeRequest] = []
        self.counts: Counter[str] = Counter()
        self.histories = Histories(seed=seed, faults=self.faults, compact=compact, page_cache=page_cache)
        self.credentials = Credentials(
            athletes=self.histories.athletes,
            seed=seed,
            client_id=client_id,
            client_secret=client_secret,
            rotate_refresh_tokens=rotate_refresh_tokens,
            counts=self.counts,
        )
        self._usage = _Usage()
        self._asked: Counter[tuple[Any, ...]] = Counter()

    # -- athletes and their histories ----------------------------------------------------------------------------

    def add_athlete(self, *, activities: int, athlete_id: int | None = None) -> FakeAthlete:
        """Create an athlete with ``activities`` activities (generated lazily), connected to the fake app.

        The history ends a day before the clock's now and spans up to about eight years (3 h to 3 days
        between activities). The athlete gets a refresh token, a valid 6-hour access token and a one-time
        authorization code.
        """
        now = self.clock.now()
        state = self.histories.create(activities=activities, now=now, athlete_id=athlete_id)
        self.credentials.connect(state, now)
        return self.athlete(state.athlete_id)

    def athlete(self, athlete_id: int) -> FakeAthlete:
        """The athlete's current credentials and history size."""
        a = self.histories.state(athlete_id)
        return FakeAthlete(
            athlete_id=a.athlete_id,
            activity_count=a.count - len(a.deleted),
            refresh_token=a.refresh_token or "",
            code=a.code or "",
            access_token=a.access_token or "",
            expires_at=a.expires_at,
        )

    @property
    def athlete_ids(self) -> list[int]:
        """Every athlete's id, in creation order."""
        return [a.athlete_id for a in self.histories.by_seq]

    def tokens(self, athlete_id: int) -> Any:
        """The athlete's current tokens, as a TokenStore would hold them after connecting."""
        return self.athlete(athlete_id).tokens()

    def new_code(self, athlete_id: int) -> str:
        """A fresh one-time authorization code (what Strava's OAuth redirect carries), e.g. to reconnect."""
        return self.credentials.new_code(self.histories.state(athlete_id))

    def revoke(self, athlete_id: int) -> None:
        """The athlete deauthorizes the app: every access and refresh token of theirs stops working now."""
        self.credentials.revoke(self.histories.state(athlete_id))

    def invalidate_access_token(self, athlete_id: int) -> None:
        """Strava drops the athlete's access tokens (not the refresh token): the next API call gets a 401."""
        self.credentials.invalidate_access(self.histories.state(athlete_id))

    def add_activity(self, athlete_id: int, *, start_date: float | None = None, **fields: Any) -> dict[str, Any]:
        """Upload a new activity starting at ``start_date`` (UTC epoch s; default now, but any time may be
        given: a watch that syncs days later, a manual entry of last week's run); returns its summary."""
        start = self.clock.now() if start_date is None else start_date
        activity_id = self.histories.add_activity(athlete_id, start=start, fields=fields)
        return self.activity(activity_id)

    def update_activity(self, activity_id: int, **fields: Any) -> dict[str, Any]:
        """Edit an activity's fields (not ``id``/``start_date``: an activity keeps its place)."""
        self.histories.update_activity(activity_id, fields)
        return self.activity(activity_id)

    def delete_activity(self, activity_id: int) -> None:
        """Delete an activity: it disappears from lists and its detail answers 404."""
        self.histories.delete_activity(activity_id)

    def change(self, athlete_id: int, churn: Churn, rng: random.Random) -> dict[str, Any] | None:
        """One seeded change to the athlete's history (see :class:`~syncsim.strava.fake.config.Churn`): applied
        now, and returned as the webhook event Strava sends for it, or ``None`` if Strava does not announce it
        or the announcement is lost."""
        a = self.histories.state(athlete_id)
        now = self.clock.now()
        draw = rng.random()
        existing = self._random_activity(a, rng)
        updates: dict[str, Any] = {}
        if draw < churn.create_share or existing is None:
            start = now
            if existing is not None and rng.random() < churn.late_share:
                start = float(self.histories.start_time(a, existing))
                if rng.random() >= churn.tie_share:
                    start -= rng.uniform(60.0, 14 * 86_400.0)  # minutes to two weeks before an existing one
            aspect, activity_id = "create", self.histories.add_activity(athlete_id, start=int(start))
            self.counts["churn_creates"] += 1
        elif draw < churn.create_share + churn.edit_share:
            activity_id = self.histories.activity_id(a, existing)
            updates = {"title": f"Edited {self.counts['churn_edits'] + 1}"}
            self.histories.update_activity(activity_id, {"name": updates["title"], "distance": rng.uniform(1e3, 5e4)})
            aspect = "update"
            self.counts["churn_edits"] += 1
        else:
            activity_id = self.histories.activity_id(a, existing)
            self.histories.delete_activity(activity_id)
            aspect = "delete"
            self.counts["churn_deletes"] += 1
        if rng.random() >= churn.webhook_share or rng.random() < churn.drop_share:
            self.counts["webhooks_unsent"] += 1
            return None
        return {
            "object_type": "activity",
            "object_id": activity_id,
            "aspect_type": aspect,
            "updates": updates,
            "owner_id": athlete_id,
            "subscription_id": self.subscription_id,
            "event_time": int(now),
        }

    @staticmethod
    def _random_activity(a: AthleteState, rng: random.Random) -> int | None:
        """The index of a seeded random activity the athlete still has, or ``None`` if none is left."""
        if a.count - len(a.deleted) <= 0:
            return None
        while True:
            index = rng.randrange(a.count)
            position = bisect.bisect_left(a.deleted, index)
            if position == len(a.deleted) or a.deleted[position] != index:
                return index

    def truth(self, athlete_id: int) -> dict[int, dict[str, Any]]:
        """Every activity the athlete has now, by id, as SummaryActivity JSON: what a store must equal."""
        a = self.histories.state(athlete_id)
        return {
            self.histories.activity_id(a, i): self.histories.summary(a, i)
            for i in self.histories.ordered_indices(athlete_id)
        }

    def unchanged(self, athlete_id: int) -> bool:
        """Whether nobody uploaded, edited or deleted anything in the athlete's history since it was created."""
        a = self.histories.state(athlete_id)
        return not (a.updates or a.deleted or a.count != a.generated)

    def activity(self, activity_id: int) -> dict[str, Any]:
        """An existing activity's SummaryActivity JSON (KeyError if unknown or deleted)."""
        a, index = self.histories.locate(activity_id)
        return self.histories.summary(a, index)

    def activity_ids(self, athlete_id: int) -> list[int]:
        """Every visible activity id of the athlete, newest first (materializes: for tests and checks)."""
        a = self.histories.state(athlete_id)
        return [self.histories.activity_id(a, i) for i in self.histories.ordered_indices(athlete_id)]

    def page_indices(
        self, athlete_id: int, *, page: int, per_page: int, after: float | None = None, before: float | None = None
    ) -> list[int]:
        """The activity indices that page ``page`` serves (the paging rules, without building JSON)."""
        return self.histories.page_indices(athlete_id, page=page, per_page=per_page, after=after, before=before)

    def page_json(
        self, athlete_id: int, *, page: int, per_page: int, after: float | None = None, before: float | None = None
    ) -> bytes:
        """One ``GET /athlete/activities`` page, serialized."""
        a = self.histories.state(athlete_id)
        return self.histories.page_body(
            a, self.page_indices(athlete_id, page=page, per_page=per_page, after=after, before=before)
        )

    # -- rate limits -----------------------------------------------------------------------------------------

    def spend_rate_limit(self, requests: int, *, read: bool = True) -> None:
        """Count ``requests`` made by other clients of the same application in the current windows."""
        self._roll_usage(self.clock.now())
        u = self._usage
        u.overall_15 += requests
        u.overall_day += requests
        if read:
            u.read_15 += requests
            u.read_day += requests

    def _roll_usage(self, now: float) -> None:
        u = self._usage
        window, day = quarter_hour_start(now), utc_day_start(now)
        if window > u.window:
            u.window, u.overall_15, u.read_15 = window, 0, 0
        if day > u.day:
            u.day, u.overall_day, u.read_day = day, 0, 0

    def _count(self, now: float, *, read: bool) -> bool:
        """Count one request (rejected ones too); False if it is over a limit."""
        self._roll_usage(now)
        u = self._usage
        u.overall_15 += 1
        u.overall_day += 1
        ok = u.overall_15 <= self.overall_limits[0] and u.overall_day <= self.overall_limits[1]
        if read:
            u.read_15 += 1
            u.read_day += 1
            ok = ok and u.read_15 <= self.read_limits[0] and u.read_day <= self.read_limits[1]
        return ok

    def rate_headers(self) -> dict[str, str]:
        """The four rate-limit headers as Strava would send them now."""
        u = self._usage
        return {
            "x-ratelimit-limit": f"{self.overall_limits[0]},{self.overall_limits[1]}",
            "x-ratelimit-usage": f"{u.overall_15},{u.overall_day}",
            "x-readratelimit-limit": f"{self.read_limits[0]},{self.read_limits[1]}",
            "x-readratelimit-usage": f"{u.read_15},{u.read_day}",
        }

    # -- the request-handling core ---------------------------------------------------------------------------

    def _roll(self, kind: str, *key: int) -> float:
        """A seeded uniform draw for the n-th time this exact request is asked (order-independent)."""
        self._asked[(kind, *key)] += 1
        nth = self._asked[(kind, *key)]
        h = zlib.crc32(kind.encode())
        for part in (*key, nth):
            h = mix(h ^ (part & MASK))
        return unit(mix(h ^ (self.seed & MASK)))

    def respond(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes = b""
    ) -> FakeResponse:
        """Answer one request. ``headers`` must have lower-case names; ``query`` is the raw query string.

        Both adapters call this; they only add the latency (``delay_s``) or the hang. ``delay_s`` is the whole
        time Strava takes to answer, its own work included: the adapters wait only what is left of it after
        building the response (:meth:`remaining_delay`), so a latency of L answers L after the request arrived.
        """
        now = self.clock.now()
        params = dict(parse_qsl(query, keep_blank_values=True))
        self._apply_scheduled_revocations(now)
        down = self.faults.down
        if down is not None and down[0] <= now < down[1]:
            self.counts["errors_5xx"] += 1
            resp, athlete_id = FakeResponse(503, {"content-type": "text/html"}, BODY_503), None
        elif path in ("/oauth/token", "/api/v3/oauth/token", "/oauth/deauthorize", "/api/v3/oauth/deauthorize"):
            resp, athlete_id = self._oauth(method, path, params, headers, body, now)
        else:
            resp, athlete_id = self._api(method, path, params, headers, now)
        self.counts[f"status_{resp.status}"] += 1
        if self.keep_log:
            self.requests.append(FakeRequest(now, method, path, resp.status, athlete_id))
        return resp

    def _apply_scheduled_revocations(self, now: float) -> None:
        due = [aid for aid, at in self.faults.revoke_at.items() if at <= now]
        for athlete_id in due:
            del self.faults.revoke_at[athlete_id]
            if athlete_id in self.histories.athletes:
                self.revoke(athlete_id)

    def _transient_fault(self, kind: str, key: tuple[int, ...]) -> FakeResponse | None:
        f = self.faults
        if f.timeout_rate > 0 and self._roll(f"timeout:{kind}", *key) < f.timeout_rate:
            self.counts["timeouts"] += 1
            return FakeResponse(504, dict(JSON), BODY_500, hang=True)
        if f.error_rate > 0:
            draw = self._roll(f"error:{kind}", *key)
            if draw < f.error_rate:
                self.counts["errors_5xx"] += 1
                if draw < f.error_rate / 2:
                    return FakeResponse(502, {"content-type": "text/html"}, BODY_502)
                return FakeResponse(500, dict(JSON), BODY_500)
        return None

    def _oauth(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        now: float,
    ) -> tuple[FakeResponse, int | None]:
        if method != "POST":
            return FakeResponse(404, dict(JSON), BODY_404), None
        merged = dict(params)
        merged.update(form_or_json(headers.get("content-type", ""), body))
        self._count(now, read=False)
        fault = self._transient_fault("oauth", (zlib.crc32(merged.get("refresh_token", "").encode()),))
        if fault is not None:
            return fault, None
        if path.endswith("/deauthorize"):
            token = merged.get("access_token") or bearer(headers)
            a = self.credentials.athlete_for_token(token, now)
            if a is None:
                return FakeResponse(401, dict(JSON), BODY_401), None
            self.revoke(a.athlete_id)
            return FakeResponse(200, dict(JSON), orjson.dumps({"access_token": token})), a.athlete_id
        status, payload, athlete_id = self.credentials.grant(merged, now)
        return FakeResponse(status, dict(JSON), payload, delay_s=self.latency.sample()), athlete_id

    def _api(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str], now: float
    ) -> tuple[FakeResponse, int | None]:
        allowed = self._count(now, read=method == "GET")
        storm = self.faults.storm and (self.faults.storm_until is None or now < self.faults.storm_until)
        if not allowed or storm:
            self.counts["rate_limited"] += 1
            return FakeResponse(429, {**JSON, **self.rate_headers()}, BODY_429), None
        a = self.credentials.athlete_for_token(bearer(headers) or params.get("access_token"), now)
        if a is None:
            return FakeResponse(401, {**JSON, **self.rate_headers()}, BODY_401), None
        resp = self._route(method, path, params, a)
        resp.headers.update(self.rate_headers())
        return resp, a.athlete_id

    def _route(self, method: str, path: str, params: dict[str, str], a: AthleteState) -> FakeResponse:
        if method == "GET" and path == "/api/v3/athlete/activities":
            try:
                page = max(1, int(params.get("page") or 1))
                per_page = int(params.get("per_page") or DEFAULT_PER_PAGE)
                after = float(params["after"]) if params.get("after") else None
                before = float(params["before"]) if params.get("before") else None
            except ValueError:
                return FakeResponse(400, dict(JSON), bad_request("Application", "page"))
            per_page = min(per_page if per_page > 0 else DEFAULT_PER_PAGE, self.page_size_cap)
            key = (a.athlete_id, page, per_page)
            fault = self._transient_fault("page", key)
            if fault is not None:
                return fault
            indices = self.page_indices(a.athlete_id, page=page, per_page=per_page, after=after, before=before)
            if self._named_page(self.faults.failing_pages, a, per_page, indices):
                self.counts["errors_5xx"] += 1
                return FakeResponse(500, dict(JSON), BODY_500)
            delay = self.latency.sample(len(indices))
            self.counts["pages"] += 1
            self.counts["activities_served"] += len(indices)
            if self._malformed(a, page, per_page, indices):
                items = [orjson.loads(self.histories.list_item_text(a, i)) for i in indices]
                return FakeResponse(200, dict(JSON), self._malform(items), delay_s=delay)
            return FakeResponse(200, dict(JSON), self.histories.page_body(a, indices), delay_s=delay)
        if method == "GET" and path == "/api/v3/athlete":
            fault = self._transient_fault("athlete", (a.athlete_id,))
            if fault is not None:
                return fault
            return FakeResponse(200, dict(JSON), orjson.dumps(athlete_json(a)), delay_s=self.latency.sample())
        if method == "GET" and path.startswith("/api/v3/activities/"):
            try:
                activity_id = int(path.rsplit("/", 1)[1])
            except ValueError:
                return FakeResponse(404, dict(JSON), BODY_404)
            fault = self._transient_fault("activity", (activity_id,))
            if fault is not None:
                return fault
            try:
                owner, index = self.histories.locate(activity_id)
            except KeyError:
                return FakeResponse(404, dict(JSON), BODY_404)
            detail = self.histories.detail(owner, index)
            return FakeResponse(200, dict(JSON), orjson.dumps(detail), delay_s=self.latency.sample(1))
        return FakeResponse(
            404,
            dict(JSON),
            b'{"message":"Resource Not Found","errors":[{"resource":"resource","code":"not found"}]}',
        )

    def _malformed(self, a: AthleteState, page: int, per_page: int, indices: list[int]) -> bool:
        """Whether this list page is served malformed: named in ``Faults.malformed_pages`` (see
        :meth:`_named_page`), or a seeded draw at the given rate."""
        spec = self.faults.malformed_pages
        if isinstance(spec, set | frozenset):
            return self._named_page(spec, a, per_page, indices)
        return spec > 0 and self._roll("malformed", a.athlete_id, page) < spec

    def _named_page(self, named: Set[tuple[int, int]], a: AthleteState, per_page: int, indices: list[int]) -> bool:
        """Whether this list page holds the first activity of a page of ``named`` (athlete_id, page): counted newest
        first, as page-number paging would serve it, so the fault follows the activities whatever bounds the
        request used."""
        pages = [n for athlete, n in named if athlete == a.athlete_id]
        if not pages or not indices:
            return False
        order = self.histories.ordered_indices(a.athlete_id)
        firsts = {order[(n - 1) * per_page] for n in pages if 0 <= (n - 1) * per_page < len(order)}
        return not firsts.isdisjoint(indices)

    def _malform(self, items: list[dict[str, Any]]) -> bytes:
        self.counts["malformed"] += 1
        mode = self.faults.malformed_mode
        if mode == "missing_id" and items:
            broken = [dict(item) for item in items]
            del broken[len(broken) // 2]["id"]
            return orjson.dumps(broken)
        if mode == "not_a_list":
            return orjson.dumps({"activities": items})
        body = orjson.dumps(items)
        return body[: max(1, len(body) // 2)]  # truncated mid-stream

    # -- the two adapters ------------------------------------------------------------------------------------

    def remaining_delay(self, resp: FakeResponse, received_at: float) -> float:
        """What is left of ``resp.delay_s`` now, for a request received at ``received_at`` (clock time)."""
        return max(0.0, resp.delay_s - (self.clock.now() - received_at))

    def transport(self) -> FakeStravaTransport:
        """An httpx transport answering from this FakeStrava (for ``StravaClient(transport=...)``)."""
        return FakeStravaTransport(self)

    def client(self, *, tokens: TokenStore, **options: Any) -> StravaClient:
        """A :class:`~syncsim.strava.client.StravaClient` talking to this FakeStrava in-process: its transport,
        its app credentials and (unless ``options`` say otherwise) its clock; ``options`` as for the client."""
        from syncsim.strava.client import StravaClient

        options.setdefault("clock", self.clock)
        return StravaClient(
            tokens=tokens,
            base_url="http://fake-strava.local",
            transport=self.transport(),
            client_id=self.client_id,
            client_secret=self.client_secret,
            **options,
        )

    async def asgi_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """This FakeStrava as a plain ASGI 3 app, for uvicorn on loopback."""
        await serve_asgi(self, scope, receive, send)
