"""FakeStrava's content: the seeded, deterministic JSON text of athletes and their activities.

Everything here turns (seed, athlete, index) into Strava JSON, with no HTTP, tokens or rate limits: the
splitmix hashing, fast ISO timestamps, the sport table and the seeded activity bodies (``VARIANTS`` per seed),
default activity names, time zones and start points, and :class:`AthleteState`, one athlete's state (the
generation parameters, its edits, and its credentials, which :mod:`syncsim.strava.fake.oauth` manages).

Activities are never materialized: generated activity *i* of an athlete is a pure function of
(seed, athlete, i), and generated start times grow with *i* (:func:`start_of`), so pages can be located by
binary search. Activities uploaded later keep their own start time, which may lie anywhere in the history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIVITY_ID_BASE",
    "ACTIVITY_ID_STRIDE",
    "ATHLETE_ID_BASE",
    "COMPACT_SUMMARY_KEYS",
    "MASK",
    "VARIANTS",
    "AthleteState",
    "athlete_json",
    "generated_text",
    "iso",
    "mix",
    "new_athlete",
    "start_of",
    "unit",
]

ACTIVITY_ID_BASE = 10**10  # Strava activity ids are 64-bit and well past 32 bits today
ACTIVITY_ID_STRIDE = 1 << 24  # up to 16.7 M activities per fake athlete; the id encodes (athlete, index)
ATHLETE_ID_BASE = 10_000_000

# -- seeded randomness without materializing anything ------------------------------------------------------

MASK = (1 << 64) - 1


def mix(x: int) -> int:
    """splitmix64: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def unit(h: int) -> float:
    """The top 53 bits of a 64-bit hash as a float in [0, 1)."""
    return (h >> 11) / 9007199254740992.0


def _day_text(day: int) -> str:
    t = time.gmtime(day * 86_400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"


_HH = tuple(f"{h:02d}" for h in range(24))
_MMSS = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))
_DAYS: dict[int, str] = {}  # day number -> "YYYY-MM-DD"; a few thousand entries per simulated decade


def iso(ts: float) -> str:
    """UTC epoch seconds -> ``2018-05-02T12:15:09Z`` (whole seconds): a cached day and two table lookups, since
    every served activity formats two times."""
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
    h = mix(mix(seed & MASK) ^ v)
    h2 = mix(h)
    kind, sport_type, _, v_lo, v_hi, t_lo, t_hi, climb, outdoor = _SPORT_TABLE[h % len(_SPORT_TABLE)]
    moving = t_lo + (h2 & 0xFFFF) * (t_hi - t_lo) // 0xFFFF
    speed = v_lo + ((h2 >> 16) & 0xFFFF) * (v_hi - v_lo) // 0xFFFF  # mm/s
    distance = speed * moving // 100  # dm
    elevation = distance * climb * ((h >> 36) & 0xFF) // 128_000  # dm
    max_speed = speed * 9 // 5
    hr = (h2 >> 42) & 0x3F
    private = ((h >> 58) & 0xF) == 0
    elapsed = moving + ((h2 >> 32) & 0x3FF) % (moving // 8 + 1)
    stats = (distance // 10, distance % 10, moving, elapsed, elevation // 10, elevation % 10, kind, sport_type)
    compact = _ITEM_COMPACT_BODY % stats
    body = _ITEM_BODY % (
        *stats,
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


@dataclass(slots=True)
class AthleteState:
    """One fake athlete's state: how its history is generated, the edits to it, and its credentials."""

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
    #: Uploaded activities: index -> start, and (start, index) of those not deleted, sorted.
    extra_starts: dict[int, float] = field(default_factory=dict)
    extras: list[tuple[int, int]] = field(default_factory=list)
    updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)  # sorted indices
    refresh_token: str | None = None
    access_token: str | None = None
    expires_at: float = 0.0
    code: str | None = None
    revoked: bool = False


def new_athlete(seed: int, seq: int, athlete_id: int, activities: int, now: float) -> AthleteState:
    """The ``seq``-th athlete's state, with ``activities`` activities ending a day before ``now``.

    The history spans up to about eight years (3 h to 3 days between activities); the name, time zone and
    start points are a function of (seed, athlete id). No credentials yet.
    """
    key = mix((seed & MASK) ^ mix(athlete_id))
    gap = min(_MAX_GAP_S, max(_MIN_GAP_S, _HISTORY_S / max(activities, 1)))
    state = AthleteState(
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
        f"[{lat + ((mix(key + k) & 0xFF) - 128) / 4000.0:.5f},"
        f"{lng + (((mix(key + k) >> 8) & 0xFF) - 128) / 4000.0:.5f}]"
        for k in range(16)
    )
    return state


def start_of(a: AthleteState, index: int, h: int) -> int:
    """Start (UTC epoch s) of activity ``index`` whose hash is ``h``: evenly spaced, jittered by up to ±40 %
    of the gap, so strictly increasing with the index; uploaded activities keep their own start."""
    if index < a.generated:
        return int(a.first_start + index * a.gap_s + ((h >> 11) / 9007199254740992.0 - 0.5) * 0.8 * a.gap_s)
    return int(a.extra_starts[index])


def generated_text(
    seed: int, variants: list[tuple[str, bool, str, str] | None], a: AthleteState, index: int, *, compact: bool = False
) -> str:
    """SummaryActivity JSON text of generated activity ``index`` (full, or the compact one), before any edits.

    ``variants`` is the caller's cache of ``_variant(seed, v)``, ``VARIANTS`` slots filled on first use.
    """
    h = mix(a.key ^ index)
    start = start_of(a, index, h)
    v = h % VARIANTS
    variant = variants[v]
    if variant is None:
        variant = variants[v] = _variant(seed, v)
    sport_type, outdoor, body, compact_body = variant
    local = start + a.zone[1]
    aid = ACTIVITY_ID_BASE + a.seq * ACTIVITY_ID_STRIDE + index
    name = _NAMES[sport_type][(local // 3600) % 24]
    if compact:
        return (
            f'{a.head}{name}","id":{aid},"start_date":"{iso(start)}","start_date_local":"{iso(local)}",'
            f"{a.compact_place}{compact_body}"
        )
    latlng = a.spots[(h >> 20) & 0xF] if outdoor else "[]"
    return (
        f'{a.head}{name}","id":{aid},"external_id":"garmin_push_{aid}","upload_id":{aid + 7_000_000_000},'
        f'"start_date":"{iso(start)}","start_date_local":"{iso(local)}",{a.place}'
        f'"start_latlng":{latlng},"end_latlng":{latlng},'
        f'"map":{{"id":"a{aid}","summary_polyline":"","resource_state":2}},{body}'
    )


def athlete_json(a: AthleteState) -> dict[str, Any]:
    """The athlete's DetailedAthlete JSON (``GET /athlete``): a function of (seed, athlete id, history)."""
    created = iso(a.created_at)
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
