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

The module is long because FakeStrava is one noun with one state (athletes, tokens, usage, faults) that
every endpoint reads and writes; the sections below are data generation, paging, tokens, rate limits, the
request core, and the two adapters.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import statistics
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

import httpx
import orjson

from syncsim.clock import Clock
from syncsim.errors import InvalidInput
from syncsim.strava.models import StravaTokens
from syncsim.strava.ratelimit import quarter_hour_start, utc_day_start

__all__ = [
    "COMPACT_SUMMARY_KEYS",
    "FakeAthlete",
    "FakeRequest",
    "FakeResponse",
    "FakeStrava",
    "FakeStravaTransport",
    "Faults",
    "LatencyModel",
]

ACCESS_TOKEN_TTL_S = 21_600  # Strava's access tokens last 6 h
SAME_TOKEN_IF_LEFT_S = 3_600  # a refresh with more than 1 h left returns the same access token
ACTIVITY_ID_BASE = 10**10  # Strava activity ids are 64-bit and well past 32 bits today
ACTIVITY_ID_STRIDE = 1 << 24  # up to 16.7 M activities per fake athlete; the id encodes (athlete, index)
ATHLETE_ID_BASE = 10_000_000
DEFAULT_PER_PAGE = 30  # swagger: per_page "Defaults to 30"

JSON = {"content-type": "application/json; charset=utf-8"}
#: Strava's exact bodies (shared/strava/README.md).
BODY_401 = (
    b'{"message":"Authorization Error","errors":[{"resource":"Athlete","field":"access_token","code":"invalid"}]}'
)
BODY_429 = (
    b'{"message":"Rate Limit Exceeded","errors":[{"resource":"Application","field":"rate limit","code":"exceeded"}]}'
)
BODY_404 = b'{"message":"Record Not Found","errors":[{"resource":"Activity","field":"id","code":"invalid"}]}'
BODY_500 = b'{"message":"Internal Server Error","errors":[]}'
BODY_502 = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def _bad_request(resource: str, field_name: str) -> bytes:
    return orjson.dumps(
        {"message": "Bad Request", "errors": [{"resource": resource, "field": field_name, "code": "invalid"}]}
    )


# -- seeded randomness without materializing anything ------------------------------------------------------

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _unit(h: int) -> float:
    """The top 53 bits of a 64-bit hash as a float in [0, 1)."""
    return (h >> 11) / 9007199254740992.0


def _day_text(day: int) -> str:
    t = time.gmtime(day * 86_400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"


_HH = tuple(f"{h:02d}" for h in range(24))
_MMSS = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))
_DAYS: dict[int, str] = {}  # day number -> "YYYY-MM-DD"; a few thousand entries per simulated decade


def _iso(ts: float) -> str:
    """UTC epoch seconds -> ``2018-05-02T12:15:09Z`` (whole seconds), ~10x faster than strftime."""
    day, sec = divmod(int(ts), 86_400)
    text = _DAYS.get(day)
    if text is None:
        text = _DAYS[day] = _day_text(day)
    hour, rest = divmod(sec, 3_600)
    return f"{text}T{_HH[hour]}:{_MMSS[rest]}Z"


# (type, sport_type, weight, speed mm/s low, high, moving time s low, high, climb m per km, outdoor)
_SPORTS: tuple[tuple[str, str, int, int, int, int, int, int, bool], ...] = (
    ("Run", "Run", 30, 2400, 4200, 1500, 5400, 8, True),
    ("Ride", "Ride", 22, 5500, 9000, 2400, 12600, 10, True),
    ("Ride", "MountainBikeRide", 6, 3200, 6000, 2400, 9000, 25, True),
    ("Ride", "GravelRide", 5, 4500, 7500, 2400, 10800, 12, True),
    ("VirtualRide", "VirtualRide", 8, 6000, 9500, 1800, 5400, 6, False),
    ("Walk", "Walk", 10, 1100, 1600, 1200, 5400, 5, True),
    ("Hike", "Hike", 6, 700, 1400, 3600, 18000, 60, True),
    ("Run", "TrailRun", 5, 2000, 3400, 2400, 9000, 40, True),
    ("Swim", "Swim", 5, 600, 1100, 1200, 3600, 0, False),
    ("WeightTraining", "WeightTraining", 3, 0, 0, 1800, 4200, 0, False),
)
_SPORT_TABLE = tuple(s for s in _SPORTS for _ in range(s[2]))  # weighted lookup by hash


def _part_of_day(local_hour: int) -> str:
    if 5 <= local_hour < 11:
        return "Morning"
    if 11 <= local_hour < 14:
        return "Lunch"
    if 14 <= local_hour < 18:
        return "Afternoon"
    if 18 <= local_hour < 22:
        return "Evening"
    return "Night"


#: Strava's default activity names ("Morning Run"), by sport type and local hour.
_NAMES = {sport[1]: tuple(f"{_part_of_day(h)} {sport[1]}" for h in range(24)) for sport in _SPORTS}

#: SummaryActivity as in the swagger example, in three parts: a per-athlete head and middle (filled once
#: per athlete), the per-activity fields (id, dates, name, place), and one of ``VARIANTS`` seeded bodies
#: with the sport and its statistics. Formatting a few strings beats building a dict of 50 keys and
#: serializing it several times over, and the simulator serves ~500,000 activities a run.
_ITEM_HEAD = '{"resource_state":2,"athlete":{"id":@ATHLETE@,"resource_state":1},"name":"'
_ITEM_PLACE = (
    '"timezone":"@TZ@","utc_offset":@OFFSET@.0,"location_city":null,"location_state":null,'
    '"location_country":"@COUNTRY@",'
)
_ITEM_BODY = (
    '"distance":%d.%d,"moving_time":%d,"elapsed_time":%d,"total_elevation_gain":%d.%d,'
    '"type":"%s","sport_type":"%s","workout_type":null,"achievement_count":%d,"kudos_count":%d,'
    '"comment_count":%d,"athlete_count":%d,"photo_count":0,"trainer":%s,"commute":%s,"manual":false,'
    '"private":%s,"visibility":"%s","flagged":false,"gear_id":null,"from_accepted_tag":false,'
    '"average_speed":%d.%03d,"max_speed":%d.%03d,"has_heartrate":true,"average_heartrate":%d.0,'
    '"max_heartrate":%d.0,"heartrate_opt_out":false,"display_hide_heartrate_option":true,'
    '"elev_high":%d.0,"elev_low":%d.0,"pr_count":%d,"total_photo_count":0,"has_kudoed":false}'
)
#: The fields of a compact list item (``FakeStrava(compact=True)``), in the order they are written.
COMPACT_SUMMARY_KEYS = (
    "resource_state", "athlete", "name", "id", "start_date", "start_date_local", "timezone", "utc_offset",
    "distance", "moving_time", "elapsed_time", "total_elevation_gain", "type", "sport_type",
)  # fmt: skip
_ITEM_COMPACT_PLACE = '"timezone":"@TZ@","utc_offset":@OFFSET@.0,'
_ITEM_COMPACT_BODY = (
    '"distance":%d.%d,"moving_time":%d,"elapsed_time":%d,"total_elevation_gain":%d.%d,"type":"%s","sport_type":"%s"}'
)
#: How many distinct activity bodies (sport and statistics) a FakeStrava draws from, per seed.
VARIANTS = 4096


def _variant(seed: int, v: int) -> tuple[str, bool, str, str]:
    """(sport_type, outdoor, JSON body text, compact body text) of body variant ``v``: a function of (seed, v)."""
    h = _mix(_mix(seed & _MASK) ^ v)
    h2 = _mix(h)
    kind, sport_type, _, v_lo, v_hi, t_lo, t_hi, climb, outdoor = _SPORT_TABLE[h % len(_SPORT_TABLE)]
    moving = t_lo + (h2 & 0xFFFF) * (t_hi - t_lo) // 0xFFFF
    speed = v_lo + ((h2 >> 16) & 0xFFFF) * (v_hi - v_lo) // 0xFFFF  # mm/s
    distance = speed * moving // 100  # dm
    elevation = distance * climb * ((h >> 36) & 0xFF) // 128_000  # dm
    max_speed = speed * 9 // 5
    hr = (h2 >> 42) & 0x3F
    private = ((h >> 58) & 0xF) == 0
    elapsed = moving + ((h2 >> 32) & 0x3FF) % (moving // 8 + 1)
    compact = _ITEM_COMPACT_BODY % (
        distance // 10,
        distance % 10,
        moving,
        elapsed,
        elevation // 10,
        elevation % 10,
        kind,
        sport_type,
    )
    body = _ITEM_BODY % (
        distance // 10,
        distance % 10,
        moving,
        elapsed,
        elevation // 10,
        elevation % 10,
        kind,
        sport_type,
        (h >> 44) & 0x3,
        (h >> 46) & 0x1F,
        (h >> 51) & 0x3,
        1 + ((h >> 53) & 0x1),
        "false" if outdoor else "true",
        "true" if ((h >> 54) & 0xF) == 0 else "false",
        "true" if private else "false",
        "only_me" if private else "everyone",
        speed // 1000,
        speed % 1000,
        max_speed // 1000,
        max_speed % 1000,
        120 + hr,
        150 + hr,
        50 + ((h >> 12) & 0xFF),
        10 + ((h >> 4) & 0x1F),
        (h >> 62) & 0x3,
    )
    return sport_type, outdoor, body, compact


_TIMEZONES = (
    ("(GMT-08:00) America/Los_Angeles", -28800, 37.77, -122.42, "United States"),
    ("(GMT-05:00) America/New_York", -18000, 40.71, -74.01, "United States"),
    ("(GMT+00:00) Europe/London", 0, 51.51, -0.13, "United Kingdom"),
    ("(GMT+01:00) Europe/Berlin", 3600, 52.52, 13.40, "Germany"),
    ("(GMT+01:00) Europe/Paris", 3600, 48.86, 2.35, "France"),
    ("(GMT+09:00) Asia/Tokyo", 32400, 35.68, 139.69, "Japan"),
    ("(GMT+10:00) Australia/Sydney", 36000, -33.87, 151.21, "Australia"),
    ("(GMT-03:00) America/Sao_Paulo", -10800, -23.55, -46.63, "Brazil"),
)
_FIRST = ("Marianne", "Kilian", "Jasmin", "Tadej", "Courtney", "Eliud", "Sifan", "Wout", "Annemiek", "Jakob")
_LAST = ("Teutenberg", "Jornet", "Paris", "Pogacar", "Dauwalter", "Kipchoge", "Hassan", "Vos", "Ingebrigtsen")
_MAX_GAP_S = 3 * 86_400.0
_MIN_GAP_S = 3 * 3_600.0
_HISTORY_S = 8 * 365 * 86_400.0  # a heavy user's history spans about eight years


# -- configuration ----------------------------------------------------------------------------------------


@dataclass
class LatencyModel:
    """How long FakeStrava takes to answer, in seconds: ``median_s * exp(sigma * Z) + per_item_s * items``.

    The time runs from the request's arrival to the answer and includes the fake's own work (building a page),
    as a real server's latency includes its own.

    ``sigma = 0`` is a constant latency; otherwise lognormal with the given median, drawn from a generator
    seeded with ``seed``. Calibrate it from a real sync's trace with :meth:`from_latencies`.
    """

    median_s: float = 0.0
    sigma: float = 0.0
    per_item_s: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.median_s < 0 or self.sigma < 0 or self.per_item_s < 0:
            raise InvalidInput("latency parameters must be >= 0")
        self._rng = random.Random(self.seed)

    def sample(self, items: int = 0) -> float:
        """One request's latency in seconds for a response of ``items`` activities."""
        base = self.median_s
        if self.sigma > 0 and base > 0:
            base *= math.exp(self.sigma * self._rng.gauss(0.0, 1.0))
        return base + self.per_item_s * items

    @classmethod
    def from_latencies(cls, latencies_s: Iterable[float], *, seed: int = 0) -> LatencyModel:
        """Fit a lognormal (median, sigma of the log) to observed latencies in seconds, e.g. a Trace's."""
        logs = [math.log(x) for x in latencies_s if x > 0]
        if not logs:
            raise InvalidInput("no positive latencies to fit")
        sigma = statistics.pstdev(logs) if len(logs) > 1 else 0.0
        return cls(median_s=math.exp(statistics.median(logs)), sigma=sigma, seed=seed)


@dataclass
class Faults:
    """What goes wrong, seeded by the FakeStrava's seed. Mutable: switch faults on and off at any time.

    Rates are fractions of requests in [0, 1]. ``malformed_pages`` is either a set of (athlete_id, page)
    pages that are always malformed, or a rate of activity-list pages malformed at random; ``malformed_mode``
    says how. ``short_pages`` is the fraction of non-final pages served with fewer than ``per_page`` items
    (every activity is still served exactly once). ``storm`` answers every API request with a 429 (until
    ``storm_until``, UTC epoch seconds, if set). ``revoke_at`` revokes an athlete's authorization once the
    clock passes the given time. A timeout holds the request past the client's read timeout in-process, or
    for ``hang_s`` seconds on loopback.
    """

    error_rate: float = 0.0
    timeout_rate: float = 0.0
    malformed_pages: set[tuple[int, int]] | float = field(default_factory=set)
    malformed_mode: Literal["truncated_json", "missing_id", "not_a_list"] = "truncated_json"
    short_pages: float = 0.0
    storm: bool = False
    storm_until: float | None = None
    revoke_at: dict[int, float] = field(default_factory=dict)
    hang_s: float = 30.0


@dataclass(frozen=True, slots=True)
class FakeAthlete:
    """A fake athlete as created: its Strava id, history size and credentials (fake ones, safe to print)."""

    athlete_id: int
    activity_count: int
    refresh_token: str = field(repr=False)
    code: str = field(repr=False)
    access_token: str = field(repr=False)
    expires_at: float

    def tokens(self) -> StravaTokens:
        """These credentials as the record a TokenStore keeps."""
        return StravaTokens(
            athlete_id=self.athlete_id,
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            expires_at=self.expires_at,
            scope="read,activity:read_all",
        )


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """One request FakeStrava answered (path without query string: no token can appear)."""

    ts: float
    method: str
    path: str
    status: int
    athlete_id: int | None


@dataclass(slots=True)
class FakeResponse:
    """What the core decided: status, headers, body, how long to take (s), and whether to hang instead."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay_s: float = 0.0
    hang: bool = False


@dataclass(slots=True)
class _Athlete:
    seq: int
    athlete_id: int
    key: int
    generated: int
    count: int
    first_start: float
    gap_s: float
    zone: tuple[str, int, float, float, str]
    first_name: str
    last_name: str
    created_at: float
    head: str = ""
    place: str = ""
    compact_place: str = ""
    spots: tuple[str, ...] = ()
    extra_starts: dict[int, float] = field(default_factory=dict)
    updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)  # sorted indices
    refresh_token: str | None = None
    access_token: str | None = None
    expires_at: float = 0.0
    code: str | None = None
    revoked: bool = False


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
    ) -> None:
        """``*_limits`` are (per 15 min, per UTC day); ``latency`` is seconds or a model (seconds).

        ``compact`` serves activity lists with only :data:`COMPACT_SUMMARY_KEYS` per item (module docstring).
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
        self.compact = compact
        self.requests: list[FakeRequest] = []
        self.counts: Counter[str] = Counter()
        self._athletes: dict[int, _Athlete] = {}
        self._by_seq: list[_Athlete] = []
        self._access: dict[str, tuple[int, float]] = {}  # access token -> (athlete id, expires_at)
        self._refresh: dict[str, int] = {}
        self._codes: dict[str, int] = {}
        self._usage = _Usage()
        self._asked: Counter[tuple[Any, ...]] = Counter()
        self._token_serial = 0
        self._variants: list[tuple[str, bool, str, str] | None] = [None] * VARIANTS

    # -- athletes and their activities -----------------------------------------------------------------------

    def add_athlete(self, *, activities: int, athlete_id: int | None = None) -> FakeAthlete:
        """Create an athlete with ``activities`` activities (generated lazily), connected to the fake app.

        The history ends a day before the clock's now and spans up to about eight years (3 h to 3 days
        between activities). The athlete gets a refresh token, a valid 6-hour access token and a one-time
        authorization code.
        """
        if activities < 0 or activities >= ACTIVITY_ID_STRIDE:
            raise InvalidInput(f"activities must be within 0..{ACTIVITY_ID_STRIDE - 1}")
        seq = len(self._by_seq)
        if athlete_id is None:
            athlete_id = ATHLETE_ID_BASE + seq
            while athlete_id in self._athletes:
                athlete_id += 1_000_003
        if athlete_id in self._athletes:
            raise InvalidInput(f"athlete {athlete_id} already exists")
        key = _mix((self.seed & _MASK) ^ _mix(athlete_id))
        now = self.clock.now()
        gap = min(_MAX_GAP_S, max(_MIN_GAP_S, _HISTORY_S / max(activities, 1)))
        state = _Athlete(
            seq=seq,
            athlete_id=athlete_id,
            key=key,
            generated=activities,
            count=activities,
            first_start=now - 86_400.0 - gap * (max(activities - 1, 0) + 0.4),  # newest <= a day ago
            gap_s=gap,
            zone=_TIMEZONES[key % len(_TIMEZONES)],
            first_name=_FIRST[(key >> 8) % len(_FIRST)],
            last_name=_LAST[(key >> 16) % len(_LAST)],
            created_at=now - 86_400.0 - gap * max(activities, 1) - 86_400.0 * 30,
        )
        tz, offset, lat, lng, country = state.zone
        state.head = _ITEM_HEAD.replace("@ATHLETE@", str(athlete_id))
        state.place = _ITEM_PLACE.replace("@TZ@", tz).replace("@OFFSET@", str(offset)).replace("@COUNTRY@", country)
        state.compact_place = _ITEM_COMPACT_PLACE.replace("@TZ@", tz).replace("@OFFSET@", str(offset))
        # Sixteen favourite start points within ~3 km of home (start_latlng = end_latlng: loops).
        state.spots = tuple(
            f"[{lat + ((_mix(key + k) & 0xFF) - 128) / 4000.0:.5f},"
            f"{lng + (((_mix(key + k) >> 8) & 0xFF) - 128) / 4000.0:.5f}]"
            for k in range(16)
        )
        self._athletes[athlete_id] = state
        self._by_seq.append(state)
        state.refresh_token = self._new_token("refresh", athlete_id)
        self._refresh[state.refresh_token] = athlete_id
        self._issue_access(state, now)
        state.code = self.new_code(athlete_id)
        return self.athlete(athlete_id)

    def athlete(self, athlete_id: int) -> FakeAthlete:
        """The athlete's current credentials and history size."""
        a = self._state(athlete_id)
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
        return [a.athlete_id for a in self._by_seq]

    def tokens(self, athlete_id: int) -> StravaTokens:
        """The athlete's current tokens, as a TokenStore would hold them after connecting."""
        return self.athlete(athlete_id).tokens()

    def new_code(self, athlete_id: int) -> str:
        """A fresh one-time authorization code (what Strava's OAuth redirect carries), e.g. to reconnect."""
        a = self._state(athlete_id)
        a.code = self._new_token("code", athlete_id)
        self._codes[a.code] = athlete_id
        return a.code

    def revoke(self, athlete_id: int) -> None:
        """The athlete deauthorizes the app: every access and refresh token of theirs stops working now."""
        a = self._state(athlete_id)
        a.revoked = True
        for token in [t for t, (aid, _) in self._access.items() if aid == athlete_id]:
            del self._access[token]
        if a.refresh_token is not None:
            self._refresh.pop(a.refresh_token, None)
        a.access_token = a.refresh_token = None
        self.counts["revocations"] += 1

    def invalidate_access_token(self, athlete_id: int) -> None:
        """Strava drops the athlete's access tokens (not the refresh token): the next API call gets a 401."""
        a = self._state(athlete_id)
        for token in [t for t, (aid, _) in self._access.items() if aid == athlete_id]:
            del self._access[token]
        a.access_token = None

    def spend_rate_limit(self, requests: int, *, read: bool = True) -> None:
        """Count ``requests`` made by other clients of the same application in the current windows."""
        self._roll_usage(self.clock.now())
        u = self._usage
        u.overall_15 += requests
        u.overall_day += requests
        if read:
            u.read_15 += requests
            u.read_day += requests

    def add_activity(self, athlete_id: int, *, start_date: float | None = None, **fields: Any) -> dict[str, Any]:
        """Upload a new activity (the athlete's newest) at ``start_date`` (UTC epoch s; default now)."""
        a = self._state(athlete_id)
        start = self.clock.now() if start_date is None else start_date
        if a.count and start < self._start(a, a.count - 1):
            raise InvalidInput("a new activity must start after the athlete's newest one")
        index = a.count
        a.extra_starts[index] = float(start)
        a.count += 1
        if fields:
            a.updates[index] = dict(fields)
        return self._summary(a, index)

    def update_activity(self, activity_id: int, **fields: Any) -> dict[str, Any]:
        """Edit an activity's fields (not ``id``/``start_date``: the history's order is fixed)."""
        if {"id", "start_date", "athlete"} & fields.keys():
            raise InvalidInput("id, start_date and athlete cannot be updated")
        a, index = self._locate(activity_id)
        a.updates.setdefault(index, {}).update(fields)
        return self._summary(a, index)

    def delete_activity(self, activity_id: int) -> None:
        """Delete an activity: it disappears from lists and its detail answers 404."""
        a, index = self._locate(activity_id)
        bisect.insort(a.deleted, index)

    def activity(self, activity_id: int) -> dict[str, Any]:
        """An existing activity's SummaryActivity JSON (KeyError if unknown or deleted)."""
        a, index = self._locate(activity_id)
        return self._summary(a, index)

    def activity_ids(self, athlete_id: int) -> list[int]:
        """Every visible activity id of the athlete, newest first (materializes: for tests)."""
        a = self._state(athlete_id)
        deleted = set(a.deleted)
        return [self._activity_id(a, i) for i in range(a.count - 1, -1, -1) if i not in deleted]

    def _state(self, athlete_id: int) -> _Athlete:
        try:
            return self._athletes[athlete_id]
        except KeyError:
            raise KeyError(f"no fake athlete {athlete_id}") from None

    def _activity_id(self, a: _Athlete, index: int) -> int:
        return ACTIVITY_ID_BASE + a.seq * ACTIVITY_ID_STRIDE + index

    def _locate(self, activity_id: int) -> tuple[_Athlete, int]:
        seq, index = divmod(activity_id - ACTIVITY_ID_BASE, ACTIVITY_ID_STRIDE)
        if activity_id < ACTIVITY_ID_BASE or seq >= len(self._by_seq):
            raise KeyError(f"no activity {activity_id}")
        a = self._by_seq[seq]
        pos = bisect.bisect_left(a.deleted, index)
        if index >= a.count or (pos < len(a.deleted) and a.deleted[pos] == index):
            raise KeyError(f"no activity {activity_id}")
        return a, index

    def _start(self, a: _Athlete, index: int) -> float:
        """Start time (UTC epoch s) of activity ``index``; strictly increasing with the index."""
        return float(_start_of(a, index, _mix(a.key ^ index)))

    def _summary_text(self, a: _Athlete, index: int) -> str:
        """SummaryActivity JSON text of activity ``index``: a function of (seed, athlete, index, edits)."""
        if a.updates and index in a.updates:
            return orjson.dumps({**orjson.loads(self._generated_text(a, index)), **a.updates[index]}).decode()
        return self._generated_text(a, index)

    def _list_item_text(self, a: _Athlete, index: int) -> str:
        """An activity as a list page serves it: the full summary, or the compact one (``compact=True``)."""
        if not self.compact:
            return self._summary_text(a, index)
        if a.updates and index in a.updates:
            edits = {k: v for k, v in a.updates[index].items() if k in COMPACT_SUMMARY_KEYS}
            return orjson.dumps({**orjson.loads(self._generated_text(a, index, compact=True)), **edits}).decode()
        return self._generated_text(a, index, compact=True)

    def _generated_text(self, a: _Athlete, index: int, *, compact: bool = False) -> str:
        h = _mix(a.key ^ index)
        start = _start_of(a, index, h)
        v = h % VARIANTS
        variant = self._variants[v]
        if variant is None:
            variant = self._variants[v] = _variant(self.seed, v)
        sport_type, outdoor, body, compact_body = variant
        local = start + a.zone[1]
        aid = ACTIVITY_ID_BASE + a.seq * ACTIVITY_ID_STRIDE + index
        name = _NAMES[sport_type][(local // 3600) % 24]
        if compact:
            return (
                f'{a.head}{name}","id":{aid},"start_date":"{_iso(start)}","start_date_local":"{_iso(local)}",'
                f"{a.compact_place}{compact_body}"
            )
        latlng = a.spots[(h >> 20) & 0xF] if outdoor else "[]"
        return (
            f'{a.head}{name}","id":{aid},"external_id":"garmin_push_{aid}","upload_id":{aid + 7_000_000_000},'
            f'"start_date":"{_iso(start)}","start_date_local":"{_iso(local)}",{a.place}'
            f'"start_latlng":{latlng},"end_latlng":{latlng},'
            f'"map":{{"id":"a{aid}","summary_polyline":"","resource_state":2}},{body}'
        )

    def _summary(self, a: _Athlete, index: int) -> dict[str, Any]:
        """SummaryActivity JSON of activity ``index`` as a dict."""
        data: dict[str, Any] = orjson.loads(self._summary_text(a, index))
        return data

    def _detail(self, a: _Athlete, index: int) -> dict[str, Any]:
        """DetailedActivity JSON: the summary plus the detail-only fields."""
        item = self._summary(a, index)
        item["resource_state"] = 3
        item["description"] = ""
        item["calories"] = round(item["moving_time"] * 0.18, 1)
        item["device_name"] = "Garmin Forerunner 955"
        item["segment_efforts"] = []
        item["splits_metric"] = []
        item["laps"] = []
        item["photos"] = {"primary": None, "count": 0}
        item["map"] = {**item["map"], "resource_state": 3, "polyline": ""}
        return item

    def _athlete_json(self, a: _Athlete) -> dict[str, Any]:
        created = _iso(a.created_at)
        return {
            "id": a.athlete_id,
            "username": f"{a.first_name.lower()}_{a.athlete_id}",
            "resource_state": 3,
            "firstname": a.first_name,
            "lastname": a.last_name,
            "bio": None,
            "city": None,
            "state": None,
            "country": a.zone[4],
            "sex": "F" if a.key & 1 else "M",
            "premium": bool(a.key & 2),
            "summit": bool(a.key & 2),
            "created_at": created,
            "updated_at": created,
            "badge_type_id": 0,
            "weight": 0.0,
            "profile_medium": "avatar/athlete/medium.png",
            "profile": "avatar/athlete/large.png",
            "friend": None,
            "follower": None,
            "follower_count": int(a.key >> 40) % 300,
            "friend_count": int(a.key >> 48) % 300,
            "mutual_friend_count": 0,
            "athlete_type": 1,
            "date_preference": "%m/%d/%Y",
            "measurement_preference": "meters",
            "clubs": [],
            "ftp": None,
            "bikes": [],
            "shoes": [],
        }

    # -- paging ----------------------------------------------------------------------------------------------

    def page_indices(
        self,
        athlete_id: int,
        *,
        page: int,
        per_page: int,
        after: float | None = None,
        before: float | None = None,
    ) -> list[int]:
        """The activity indices that page ``page`` serves (the paging rules, without building JSON)."""
        a = self._state(athlete_id)
        lo = 0 if after is None else bisect.bisect_right(range(a.count), after, key=lambda i: self._start(a, i))
        hi = a.count if before is None else bisect.bisect_left(range(a.count), before, key=lambda i: self._start(a, i))
        if hi <= lo:
            return []
        deleted = a.deleted
        d_lo, d_hi = bisect.bisect_left(deleted, lo), bisect.bisect_left(deleted, hi)
        visible = (hi - lo) - (d_hi - d_lo)
        offset, size = self._page_span(a, page, per_page, visible)
        if size <= 0:
            return []
        ascending = after is not None  # Strava: with after= the oldest first, else newest first
        out: list[int] = []
        if ascending:
            idx, j = lo + offset, d_lo
            while j < d_hi and deleted[j] <= idx:
                idx, j = idx + 1, j + 1
            while len(out) < size and idx < hi:
                if j < d_hi and deleted[j] == idx:
                    j += 1
                else:
                    out.append(idx)
                idx += 1
        else:
            idx, j = hi - 1 - offset, d_hi - 1
            while j >= d_lo and deleted[j] >= idx:
                idx, j = idx - 1, j - 1
            while len(out) < size and idx >= lo:
                if j >= d_lo and deleted[j] == idx:
                    j -= 1
                else:
                    out.append(idx)
                idx -= 1
        return out

    def _page_span(self, a: _Athlete, page: int, per_page: int, visible: int) -> tuple[int, int]:
        """(offset, size) of a page among the ``visible`` activities, with seeded short non-final pages."""
        rate = self.faults.short_pages
        if rate <= 0 or per_page <= 1:
            return (page - 1) * per_page, min(per_page, max(0, visible - (page - 1) * per_page))
        offset = 0
        for k in range(1, page + 1):
            size = per_page
            if offset + per_page < visible:  # non-final: may come short
                h = _mix(a.key ^ _mix(k * 1_000_003 + per_page) ^ (self.seed & _MASK))
                if _unit(h) < rate:
                    size = 1 + (h & 0xFFFF) % (per_page - 1)
            size = min(size, max(0, visible - offset))
            if k == page:
                return offset, size
            offset += size
        return offset, 0

    def page_json(
        self,
        athlete_id: int,
        *,
        page: int,
        per_page: int,
        after: float | None = None,
        before: float | None = None,
    ) -> bytes:
        """One ``GET /athlete/activities`` page, serialized (the hot path of the simulator)."""
        a = self._state(athlete_id)
        indices = self.page_indices(athlete_id, page=page, per_page=per_page, after=after, before=before)
        return ("[" + ",".join([self._list_item_text(a, i) for i in indices]) + "]").encode()

    # -- tokens ----------------------------------------------------------------------------------------------

    def _new_token(self, kind: str, athlete_id: int) -> str:
        self._token_serial += 1
        raw = f"{self.seed}:{kind}:{athlete_id}:{self._token_serial}".encode()
        return hashlib.blake2b(raw, digest_size=20).hexdigest()  # 40 hex characters, like Strava's

    def _issue_access(self, a: _Athlete, now: float) -> None:
        a.access_token = self._new_token("access", a.athlete_id)
        a.expires_at = float(int(now) + ACCESS_TOKEN_TTL_S)
        self._access[a.access_token] = (a.athlete_id, a.expires_at)

    def _athlete_for_token(self, token: str | None, now: float) -> _Athlete | None:
        if not token:
            return None
        entry = self._access.get(token)
        if entry is None:
            return None
        athlete_id, expires_at = entry
        if now >= expires_at:
            return None
        a = self._athletes[athlete_id]
        return None if a.revoked else a

    def _token_response(self, a: _Athlete, now: float, *, with_athlete: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": a.access_token,
            "expires_at": int(a.expires_at),
            "expires_in": int(a.expires_at - now),
            "refresh_token": a.refresh_token,
        }
        if with_athlete:
            summary = self._athlete_json(a)
            summary["resource_state"] = 2
            body["athlete"] = summary
        return body

    def _grant(self, params: Mapping[str, str], now: float) -> tuple[int, bytes, int | None]:
        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            field_name = "client_id" if params.get("client_id") != self.client_id else "client_secret"
            return 401, _bad_request("Application", field_name), None
        grant = params.get("grant_type")
        if grant == "authorization_code":
            athlete_id = self._codes.pop(params.get("code") or "", None)
            if athlete_id is None:
                return 400, _bad_request("AuthorizationCode", "code"), None
            a = self._athletes[athlete_id]
            a.code, a.revoked = None, False
            if a.refresh_token is None:
                a.refresh_token = self._new_token("refresh", athlete_id)
                self._refresh[a.refresh_token] = athlete_id
            self._issue_access(a, now)
            self.counts["token_grants"] += 1
            return 200, orjson.dumps(self._token_response(a, now, with_athlete=True)), athlete_id
        if grant == "refresh_token":
            athlete_id = self._refresh.get(params.get("refresh_token") or "")
            if athlete_id is None:
                return 400, _bad_request("RefreshToken", "refresh_token"), None
            a = self._athletes[athlete_id]
            current = self._athlete_for_token(a.access_token, now)
            if current is None or a.expires_at - now <= SAME_TOKEN_IF_LEFT_S:
                self._issue_access(a, now)
                if self.rotate_refresh_tokens:
                    old = a.refresh_token
                    if old is not None:
                        del self._refresh[old]
                    a.refresh_token = self._new_token("refresh", athlete_id)
                    self._refresh[a.refresh_token] = athlete_id
                    self.counts["refresh_rotations"] += 1
            self.counts["token_refreshes"] += 1
            return 200, orjson.dumps(self._token_response(a, now, with_athlete=False)), athlete_id
        return 400, _bad_request("Application", "grant_type"), None

    # -- rate limits -----------------------------------------------------------------------------------------

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
            h = _mix(h ^ (part & _MASK))
        return _unit(_mix(h ^ (self.seed & _MASK)))

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
        if path in ("/oauth/token", "/api/v3/oauth/token", "/oauth/deauthorize", "/api/v3/oauth/deauthorize"):
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
            if athlete_id in self._athletes:
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
        merged.update(_form_or_json(headers.get("content-type", ""), body))
        self._count(now, read=False)
        fault = self._transient_fault("oauth", (zlib.crc32(merged.get("refresh_token", "").encode()),))
        if fault is not None:
            return fault, None
        if path.endswith("/deauthorize"):
            token = merged.get("access_token") or _bearer(headers)
            a = self._athlete_for_token(token, now)
            if a is None:
                return FakeResponse(401, dict(JSON), BODY_401), None
            self.revoke(a.athlete_id)
            return FakeResponse(200, dict(JSON), orjson.dumps({"access_token": token})), a.athlete_id
        status, payload, athlete_id = self._grant(merged, now)
        return FakeResponse(status, dict(JSON), payload, delay_s=self.latency.sample()), athlete_id

    def _api(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str], now: float
    ) -> tuple[FakeResponse, int | None]:
        allowed = self._count(now, read=method == "GET")
        storm = self.faults.storm and (self.faults.storm_until is None or now < self.faults.storm_until)
        if not allowed or storm:
            self.counts["rate_limited"] += 1
            return FakeResponse(429, {**JSON, **self.rate_headers()}, BODY_429), None
        a = self._athlete_for_token(_bearer(headers) or params.get("access_token"), now)
        if a is None:
            return FakeResponse(401, {**JSON, **self.rate_headers()}, BODY_401), None
        resp = self._route(method, path, params, a)
        resp.headers.update(self.rate_headers())
        return resp, a.athlete_id

    def _route(self, method: str, path: str, params: dict[str, str], a: _Athlete) -> FakeResponse:
        if method == "GET" and path == "/api/v3/athlete/activities":
            try:
                page = max(1, int(params.get("page") or 1))
                per_page = int(params.get("per_page") or DEFAULT_PER_PAGE)
                after = float(params["after"]) if params.get("after") else None
                before = float(params["before"]) if params.get("before") else None
            except ValueError:
                return FakeResponse(400, dict(JSON), _bad_request("Application", "page"))
            per_page = min(per_page if per_page > 0 else DEFAULT_PER_PAGE, self.page_size_cap)
            key = (a.athlete_id, page, per_page)
            fault = self._transient_fault("page", key)
            if fault is not None:
                return fault
            indices = self.page_indices(a.athlete_id, page=page, per_page=per_page, after=after, before=before)
            delay = self.latency.sample(len(indices))
            self.counts["pages"] += 1
            self.counts["activities_served"] += len(indices)
            if self._malformed(a.athlete_id, page):
                items = [orjson.loads(self._list_item_text(a, i)) for i in indices]
                return FakeResponse(200, dict(JSON), self._malform(items), delay_s=delay)
            body = ("[" + ",".join([self._list_item_text(a, i) for i in indices]) + "]").encode()
            return FakeResponse(200, dict(JSON), body, delay_s=delay)
        if method == "GET" and path == "/api/v3/athlete":
            fault = self._transient_fault("athlete", (a.athlete_id,))
            if fault is not None:
                return fault
            return FakeResponse(200, dict(JSON), orjson.dumps(self._athlete_json(a)), delay_s=self.latency.sample())
        if method == "GET" and path.startswith("/api/v3/activities/"):
            try:
                activity_id = int(path.rsplit("/", 1)[1])
            except ValueError:
                return FakeResponse(404, dict(JSON), BODY_404)
            fault = self._transient_fault("activity", (activity_id,))
            if fault is not None:
                return fault
            try:
                owner, index = self._locate(activity_id)
            except KeyError:
                return FakeResponse(404, dict(JSON), BODY_404)
            detail = self._detail(owner, index)
            return FakeResponse(200, dict(JSON), orjson.dumps(detail), delay_s=self.latency.sample(1))
        return FakeResponse(
            404,
            dict(JSON),
            b'{"message":"Resource Not Found","errors":[{"resource":"resource","code":"not found"}]}',
        )

    def _malformed(self, athlete_id: int, page: int) -> bool:
        spec = self.faults.malformed_pages
        if isinstance(spec, set | frozenset):
            return (athlete_id, page) in spec
        return spec > 0 and self._roll("malformed", athlete_id, page) < spec

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

    async def asgi_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """This FakeStrava as a plain ASGI 3 app, for uvicorn on loopback."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        received_at = self.clock.now()
        resp = self.respond(scope["method"], scope["path"], query, headers, b"".join(chunks))
        await self.clock.sleep(self.faults.hang_s if resp.hang else self.remaining_delay(resp, received_at))
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
        await send({"type": "http.response.start", "status": resp.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": resp.body})


def _start_of(a: _Athlete, index: int, h: int) -> int:
    """Start (UTC epoch s) of activity ``index`` whose hash is ``h``: evenly spaced, jittered by up to ±40 %
    of the gap, so strictly increasing with the index; uploaded activities keep their own start."""
    if index < a.generated:
        return int(a.first_start + index * a.gap_s + ((h >> 11) / 9007199254740992.0 - 0.5) * 0.8 * a.gap_s)
    return int(a.extra_starts[index])


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def _form_or_json(content_type: str, body: bytes) -> dict[str, str]:
    if not body:
        return {}
    if "json" in content_type:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


class FakeStravaTransport(httpx.AsyncBaseTransport):
    """FakeStrava as an httpx transport: no sockets, latency and timeouts in the fake's clock."""

    def __init__(self, fake: FakeStrava) -> None:
        self.fake = fake

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received_at = self.fake.clock.now()
        resp = self.fake.respond(request.method, request.url.path, request.url.query.decode(), headers, body)
        timeout = request.extensions.get("timeout", {}).get("read")
        if resp.hang or (timeout is not None and resp.delay_s > timeout):
            await self.fake.clock.sleep(timeout if timeout is not None else self.fake.faults.hang_s)
            raise httpx.ReadTimeout("FakeStrava did not answer within the read timeout", request=request)
        delay = self.fake.remaining_delay(resp, received_at)
        if delay > 0:
            await self.fake.clock.sleep(delay)
        return httpx.Response(resp.status, headers=resp.headers, content=resp.body, request=request)
