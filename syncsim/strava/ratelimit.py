"""Strava's app-wide rate limits, as one budget shared by every job of a process.

Strava limits an *application*, not an athlete: overall 200 requests / 15 min and 2,000 / day, and of
those, reads 100 / 15 min and 1,000 / day (the figures change; the ``X-RateLimit-*`` and
``X-ReadRateLimit-*`` headers of every response carry the current limits and usage as "15min,daily"). The
15-minute window resets at :00, :15, :30 and :45 UTC (epoch multiples of 900 s), the daily one at midnight
UTC.

:class:`RateLimitBudget` counts each request locally *before* it is sent, so concurrent jobs of one process
never overshoot between two header updates, and takes the larger of its own count and Strava's reported
usage, so requests made by other processes of the same application are accounted for too.

Headers come too late at a reset, though: serverless instances share nothing but the store, every instance's
held-back jobs go at once, and each instance believes the new window is its own. Strava answers the excess 429 and
still counts it against the day. So a request this budget lets go then takes a slot from :class:`RateSlots` (the
store, :meth:`RateLimitBudget.take_slot`), where every process counts, and waits as for a spent window if there is
none (what that is worth on many instances: docs/performance.md, "Instances at a reset").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CLOCK_SKEW_S",
    "DAY_S",
    "QUARTER_HOUR_S",
    "RateLimitBudget",
    "RateSlots",
    "RateUsage",
    "SlotRequest",
    "next_quarter_hour",
    "next_utc_midnight",
    "parse_pair",
    "quarter_hour_start",
    "reset_after_429",
    "utc_day_start",
]

#: Length of Strava's short window, in seconds; it starts at every epoch multiple (:00/:15/:30/:45 UTC).
QUARTER_HOUR_S = 900.0
#: Length of the daily window, in seconds; epoch multiples are UTC midnights (epoch time has no leap seconds).
DAY_S = 86_400.0
#: How far Strava's clock may run behind ours (seconds). A request sent in the first CLOCK_SKEW_S of a window by
#: our clock may still count in Strava's window before it. So every time the budget gives a request held back by a
#: spent window is CLOCK_SKEW_S after the reset, any other request goes in that second only if the window before
#: had room too, and the usage an answer reports, or a 429 for a spent daily limit, may be the window before's.
#: Without this allowance, jobs held back until a reset (and a scheduler's tick, which fires on the clock) would
#: send right at it, and a skew of a few milliseconds would cost them the window, at midnight the day.
CLOCK_SKEW_S = 1.0


def quarter_hour_start(ts: float) -> float:
    """Start (UTC epoch seconds) of the 15-minute window that contains ``ts``."""
    return math.floor(ts / QUARTER_HOUR_S) * QUARTER_HOUR_S


def next_quarter_hour(ts: float) -> float:
    """The next :00/:15/:30/:45 UTC strictly after ``ts`` (UTC epoch s): when the short window resets."""
    return quarter_hour_start(ts) + QUARTER_HOUR_S


def utc_day_start(ts: float) -> float:
    """The UTC midnight (epoch seconds) that starts the day containing ``ts``."""
    return math.floor(ts / DAY_S) * DAY_S


def next_utc_midnight(ts: float) -> float:
    """The next UTC midnight strictly after ``ts`` (UTC epoch seconds): when the daily window resets."""
    return utc_day_start(ts) + DAY_S


def reset_after_429(sent_at: float, *, daily: bool) -> float:
    """When a request sent at ``sent_at`` (UTC epoch s) and refused with a 429 may go again: :data:`CLOCK_SKEW_S`
    after the end of the window it was sent in (the day's if ``daily``, the headers saying the daily limit is
    spent), even if the answer came after it.

    A 429 for a spent daily limit, to a request sent in a day's first :data:`CLOCK_SKEW_S`, is the day before's,
    which has ended. A 429 for a spent 15-minute limit is believed even in a window's first second: there it is
    more likely other instances' burst at the reset than a skew, and each request it refuses again would count
    against the day.
    """
    if daily:
        return next_utc_midnight(sent_at - CLOCK_SKEW_S) + CLOCK_SKEW_S
    return next_quarter_hour(sent_at) + CLOCK_SKEW_S


def parse_pair(value: str | None) -> tuple[int, int] | None:
    """Parse a rate-limit header value ``"15min,daily"`` (e.g. ``"100,1000"``); ``None`` if absent or bad."""
    if not value:
        return None
    parts = value.split(",")
    if len(parts) != 2:
        return None
    try:
        short, daily = int(parts[0].strip()), int(parts[1].strip())
    except ValueError:
        return None
    if short < 0 or daily < 0:
        return None
    return short, daily


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A request's claim on the app-wide budget: the overall limits (and, for a ``read``, the read limits), each
    ``(per 15 min, per UTC day)``, counted in the window and the day that start at ``window_start`` and
    ``day_start`` (UTC epoch seconds, by the caller's clock).

    ``assumed``: the caller has not read these limits from Strava's headers yet (a cold process has only the
    defaults). The store then compares the count with the limits last stored by a caller that had read them, if
    any: an app's raised limits are the deployment's, and a cold start that took the defaults for them would hold
    back (and pause) every sync. Limits that were read are stored with the count."""

    read: bool
    window_start: float
    day_start: float
    overall_limits: tuple[int, int]
    read_limits: tuple[int, int]
    assumed: bool = False


class RateSlots(Protocol):
    """Where every process takes the slots of the app-wide budget: a store (``Store.take_rate_slot``)."""

    async def take_rate_slot(self, slot: SlotRequest) -> str | None: ...


@dataclass(slots=True)
class _Counter:
    """Limits and usage of one kind of request (overall or read) in the current windows and the ones before."""

    limit_15min: int
    limit_daily: int
    #: Whether the limits were read from Strava's headers (else they are the defaults, assumed).
    seen: bool = False
    used_15min: int = 0
    used_daily: int = 0
    #: Usage of the window and the day before the current ones (while a request may still land in them).
    before_15min: int = 0
    before_daily: int = 0

    def has_room(self) -> bool:
        return self.used_15min < self.limit_15min and self.used_daily < self.limit_daily

    def had_room(self, *, window: bool, day: bool) -> bool:
        """Whether the window (and the day) before had room: a request sent in the first :data:`CLOCK_SKEW_S` of
        the current ones may count there."""
        return (not window or self.before_15min < self.limit_15min) and (
            not day or self.before_daily < self.limit_daily
        )

    def daily_spent(self) -> bool:
        return self.used_daily >= self.limit_daily


@dataclass(frozen=True, slots=True)
class RateUsage:
    """A snapshot of the budget: limits and usage per window, and the window starts (UTC epoch seconds)."""

    overall_limit: tuple[int, int]
    overall_used: tuple[int, int]
    read_limit: tuple[int, int]
    read_used: tuple[int, int]
    window_start: float
    day_start: float
    blocked_until: float | None


class RateLimitBudget:
    """The application's Strava request budget, shared by every client and job of one process.

    Call :meth:`reserve` before each request (it counts the request at once) and :meth:`observe` with each
    response's headers (it learns the real limits and the usage of the whole application). All times are UTC
    epoch seconds from the caller's clock, so the same budget works in real and in simulated time.

    POST /oauth/token counts toward the overall limits only (``reserve(now, read=False)``); every other
    request syncsim makes is a read and counts toward both.
    """

    def __init__(
        self,
        *,
        overall_limits: tuple[int, int] = (200, 2000),
        read_limits: tuple[int, int] = (100, 1000),
    ) -> None:
        """``*_limits`` are (requests per 15 min, requests per UTC day) until headers say otherwise."""
        self._overall = _Counter(*overall_limits)
        self._read = _Counter(*read_limits)
        self._window_start = -math.inf
        self._day_start = -math.inf
        self._blocked_until: float | None = None
        self.refused = 0  # requests refused locally, for metrics

    def _roll(self, now: float) -> None:
        window = quarter_hour_start(now)
        if window > self._window_start:
            adjacent = window - self._window_start == QUARTER_HOUR_S
            for c in (self._overall, self._read):
                c.before_15min = c.used_15min if adjacent else 0
                c.used_15min = 0
            self._window_start = window
        day = utc_day_start(now)
        if day > self._day_start:
            adjacent = day - self._day_start == DAY_S
            for c in (self._overall, self._read):
                c.before_daily = c.used_daily if adjacent else 0
                c.used_daily = 0
            self._day_start = day
        if self._blocked_until is not None and now >= self._blocked_until:
            self._blocked_until = None

    def reserve(self, now: float, *, read: bool = True) -> float | None:
        """Count one request about to be sent at ``now``.

        Returns ``None`` if it may go (and counts it), else the UTC epoch time from which it may (and counts
        nothing): :data:`CLOCK_SKEW_S` after the next quarter hour, or after the next UTC midnight if a daily
        limit is spent. In a window's first :data:`CLOCK_SKEW_S` a request goes only if the window before had
        room too (Strava's clock may still be in it), and counts in both; else it may go at the end of that second.
        """
        self._roll(now)
        counters = (self._overall, self._read) if read else (self._overall,)
        if self._blocked_until is None and all(c.has_room() for c in counters):
            window_opening = now - self._window_start < CLOCK_SKEW_S
            day_opening = now - self._day_start < CLOCK_SKEW_S
            if not window_opening or all(c.had_room(window=window_opening, day=day_opening) for c in counters):
                for c in counters:
                    c.used_15min += 1
                    c.used_daily += 1
                    if window_opening:
                        c.before_15min += 1
                    if day_opening:
                        c.before_daily += 1
                return None
            self.refused += 1
            return self._window_start + CLOCK_SKEW_S
        self.refused += 1
        return self._reset_at(now, counters)

    async def take_slot(self, slots: RateSlots, now: float, *, read: bool = True) -> float | None:
        """Take the slot of a request :meth:`reserve` has just let go from ``slots``, where every process counts.

        Returns ``None`` if it may go, else the UTC epoch time from which it may (:data:`CLOCK_SKEW_S` after the
        next quarter hour, or after the next UTC midnight if a daily limit is spent), and refuses every request of
        this process until then: the other processes have spent the window.
        """
        o, r = self._overall, self._read
        slot = SlotRequest(
            read,
            quarter_hour_start(now),
            utc_day_start(now),
            (o.limit_15min, o.limit_daily),
            (r.limit_15min, r.limit_daily),
            assumed=not (o.seen and (r.seen or not read)),
        )
        spent = await slots.take_rate_slot(slot)
        if spent is None:
            return None
        reset = (next_utc_midnight(now) if spent == "day" else next_quarter_hour(now)) + CLOCK_SKEW_S
        self.block_until(reset)
        self.refused += 1
        return reset

    def _reset_at(self, now: float, counters: tuple[_Counter, ...]) -> float:
        reset = next_quarter_hour(now)
        if any(c.daily_spent() for c in counters):
            reset = next_utc_midnight(now)
        reset += CLOCK_SKEW_S
        if self._blocked_until is not None:
            reset = max(reset, self._blocked_until)
        return reset

    def reset_at(self, now: float, *, read: bool = True) -> float:
        """When a request refused at ``now`` may go (UTC epoch s); counts nothing.

        :data:`CLOCK_SKEW_S` after the next quarter hour, or after the next UTC midnight if a daily limit is spent.
        """
        self._roll(now)
        return self._reset_at(now, (self._overall, self._read) if read else (self._overall,))

    def next_window(self, now: float, *, reads: int) -> float:
        """When the next window that may hold ``reads`` more reads can take a request held back now (UTC epoch s):
        :data:`CLOCK_SKEW_S` after the next quarter hour, or after the next UTC midnight if fewer than ``reads``
        are left in the day."""
        self._roll(now)
        day_left = min(c.limit_daily - c.used_daily for c in (self._overall, self._read))
        return (next_utc_midnight(now) if day_left < reads else next_quarter_hour(now)) + CLOCK_SKEW_S

    def observe(
        self, headers: Mapping[str, str], now: float, *, sent_at: float | None = None, served: bool = False
    ) -> None:
        """Learn limits and usage from a response's ``X-RateLimit-*`` / ``X-ReadRateLimit-*`` headers.

        Usage only ever raises the local counts (it includes other processes' requests; the local count
        includes this process's requests still in flight). It counts for the window the request was sent
        (``sent_at``) in, if that is the current one or the one before; a request sent in a window's first
        :data:`CLOCK_SKEW_S` may have counted in the window before (Strava's clock a little behind ours), so its
        usage is taken for that one: taken for the current window, the usage of a window spent or nearly spent
        would hold back most of the new one (at midnight, most of the day).

        A limit below 1 is ignored, and so is, for a request Strava ``served`` (not a 429), usage above the
        limit: either says the app may send nothing, which Strava's own answer contradicts, and taken at its word
        one bogus header would hold back every request until UTC midnight. What was known is kept.
        """
        self._roll(now)
        sent = now if sent_at is None else sent_at
        window = _counted_in(sent, quarter_hour_start(sent), QUARTER_HOUR_S)
        day = _counted_in(sent, utc_day_start(sent), DAY_S)
        for counter, prefix in ((self._overall, "x-ratelimit"), (self._read, "x-readratelimit")):
            limit = parse_pair(_header(headers, f"{prefix}-limit"))
            if limit is not None and min(limit) >= 1:
                counter.limit_15min, counter.limit_daily = limit
                counter.seen = True
            usage = parse_pair(_header(headers, f"{prefix}-usage"))
            if usage is None:
                continue
            used_15min, used_daily = usage
            if served and (used_15min > counter.limit_15min or used_daily > counter.limit_daily):
                continue
            if window == self._window_start:
                counter.used_15min = max(counter.used_15min, used_15min)
            elif window == self._window_start - QUARTER_HOUR_S:
                counter.before_15min = max(counter.before_15min, used_15min)
            if day == self._day_start:
                counter.used_daily = max(counter.used_daily, used_daily)
            elif day == self._day_start - DAY_S:
                counter.before_daily = max(counter.before_daily, used_daily)

    def block_until(self, reset_at: float) -> None:
        """Refuse every request until ``reset_at`` (UTC epoch seconds): Strava answered 429."""
        if self._blocked_until is None or reset_at > self._blocked_until:
            self._blocked_until = reset_at

    def reads_left(self, now: float) -> int:
        """Read requests this process may still send in the current windows (the 15-minute one and the day's)."""
        self._roll(now)
        if self._blocked_until is not None:
            return 0
        counters = (self._overall, self._read)
        return max(0, min(min(c.limit_15min - c.used_15min, c.limit_daily - c.used_daily) for c in counters))

    def usage(self, now: float) -> RateUsage:
        """The current limits and usage, after rolling the windows to ``now``."""
        self._roll(now)
        o, r = self._overall, self._read
        return RateUsage(
            overall_limit=(o.limit_15min, o.limit_daily),
            overall_used=(o.used_15min, o.used_daily),
            read_limit=(r.limit_15min, r.limit_daily),
            read_used=(r.used_15min, r.used_daily),
            window_start=self._window_start,
            day_start=self._day_start,
            blocked_until=self._blocked_until,
        )

    def __repr__(self) -> str:
        o, r = self._overall, self._read
        return (
            f"RateLimitBudget(overall={o.used_15min}/{o.limit_15min},{o.used_daily}/{o.limit_daily}, "
            f"read={r.used_15min}/{r.limit_15min},{r.used_daily}/{r.limit_daily})"
        )


def _counted_in(sent: float, start: float, length: float) -> float:
    """The start of the window whose usage an answer to a request sent at ``sent`` reports, for a window of
    ``length`` that starts at ``start`` and contains ``sent``: the window before if it was sent in the first
    :data:`CLOCK_SKEW_S`, which Strava's clock may not have reached."""
    return start - length if sent - start < CLOCK_SKEW_S else start


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works for httpx.Headers and plain dicts alike."""
    value = headers.get(name)
    if value is None:
        for key, val in headers.items():
            if key.lower() == name:
                return val
    return value
