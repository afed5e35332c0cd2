"""FakeStrava's athletes and their activity histories: creating athletes, changing histories, and paging.

:class:`Histories` keeps every athlete's state (:class:`~syncsim.strava.fake.data.AthleteState`) and serves
their activities as SummaryActivity JSON (full, or cut to ``COMPACT_SUMMARY_KEYS``), as DetailedActivity, and
in pages. It is the single source of truth for what each athlete has on Strava.

Order and paging, as Strava's: activities are ordered by start time (ties by id); a list is newest first,
or oldest first when ``after`` is given; ``after``/``before`` filter by start time (both exclusive);
``per_page`` is capped by the caller; seeded short non-final pages (``Faults.short_pages``) still serve every
activity exactly once. Generated activities are never materialized (their start grows with their index, so a
window is found by binary search); uploads keep their own start time, anywhere in the history, in a sorted
list merged into the walk.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from syncsim.errors import InvalidInput
from syncsim.strava.fake.config import Faults
from syncsim.strava.fake.data import (
    ACTIVITY_ID_BASE,
    ACTIVITY_ID_STRIDE,
    ATHLETE_ID_BASE,
    COMPACT_SUMMARY_KEYS,
    MASK,
    VARIANTS,
    AthleteState,
    generated_text,
    mix,
    new_athlete,
    start_of,
    unit,
)
from syncsim.strava.models import StravaTokens

__all__ = ["FakeAthlete", "Histories", "PageCache"]


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


class PageCache:
    """Serialized list pages of unchanged histories, for several FakeStrava instances of one process to share.

    A page of an athlete whose history nobody edited, deleted from or uploaded to is a function of the seed,
    the athlete's creation (id, order, size, time) and the request, so FakeStrava instances that create the
    same athletes (the runs of a sweep: same workload and seed, other platform or strategy) serve the same
    bytes. Each run still asks for, counts, rate-limits and waits for every page; only building the bytes is
    saved. Least recently used pages are dropped beyond ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self._pages: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        body = self._pages.get(key)
        if body is not None:
            self._pages.move_to_end(key)
            self.hits += 1
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes or key in self._pages:
            return
        self._pages[key] = body
        self.size += len(body)
        while self.size > self.max_bytes:
            self.size -= len(self._pages.popitem(last=False)[1])


class Histories:
    """Every fake athlete's state and activity history (see the module docstring)."""

    def __init__(
        self, *, seed: int, faults: Faults, compact: bool = False, page_cache: PageCache | None = None
    ) -> None:
        self.seed = seed
        self.faults = faults
        self.compact = compact
        self.page_cache = page_cache
        #: Athletes by Strava id, and in creation order (an athlete's order numbers its activity ids).
        self.athletes: dict[int, AthleteState] = {}
        self.by_seq: list[AthleteState] = []
        self._variants: list[tuple[str, bool, str, str] | None] = [None] * VARIANTS

    # -- athletes ----------------------------------------------------------------------------------------------

    def create(self, *, activities: int, now: float, athlete_id: int | None = None) -> AthleteState:
        """A new athlete with ``activities`` activities (generated lazily) ending a day before ``now``."""
        if activities < 0 or activities >= ACTIVITY_ID_STRIDE:
            raise InvalidInput(f"activities must be within 0..{ACTIVITY_ID_STRIDE - 1}")
        seq = len(self.by_seq)
        if athlete_id is None:
            athlete_id = ATHLETE_ID_BASE + seq
            while athlete_id in self.athletes:
                athlete_id += 1_000_003
        if athlete_id in self.athletes:
            raise InvalidInput(f"athlete {athlete_id} already exists")
        state = new_athlete(self.seed, seq, athlete_id, activities, now)
        self.athletes[athlete_id] = state
        self.by_seq.append(state)
        return state

    def state(self, athlete_id: int) -> AthleteState:
        try:
            return self.athletes[athlete_id]
        except KeyError:
            raise KeyError(f"no fake athlete {athlete_id}") from None

    def visible_count(self, athlete_id: int) -> int:
        """How many activities the athlete has now."""
        a = self.state(athlete_id)
        return a.count - len(a.deleted)

    # -- changing a history ----------------------------------------------------------------------------------

    def add_activity(self, athlete_id: int, *, start: float, fields: dict[str, Any] | None = None) -> int:
        """Upload an activity starting at ``start`` (UTC epoch s; any time, older ones too); returns its id."""
        a = self.state(athlete_id)
        index = a.count
        if index >= ACTIVITY_ID_STRIDE:
            raise InvalidInput(f"athlete {athlete_id} has no room for another activity")
        a.extra_starts[index] = float(start)
        bisect.insort(a.extras, (int(start), index))
        a.count += 1
        if fields:
            a.updates[index] = dict(fields)
        return self.activity_id(a, index)

    def update_activity(self, activity_id: int, fields: dict[str, Any]) -> None:
        """Edit an activity's fields (not ``id``/``start_date``/``athlete``: an activity keeps its place)."""
        if {"id", "start_date", "athlete"} & fields.keys():
            raise InvalidInput("id, start_date and athlete cannot be updated")
        a, index = self.locate(activity_id)
        a.updates.setdefault(index, {}).update(fields)

    def delete_activity(self, activity_id: int) -> None:
        """Delete an activity: it disappears from lists and its detail answers 404."""
        a, index = self.locate(activity_id)
        bisect.insort(a.deleted, index)
        if index >= a.generated:
            a.extras.remove((self.start_time(a, index), index))

    # -- reading activities ------------------------------------------------------------------------------------

    def activity_id(self, a: AthleteState, index: int) -> int:
        return ACTIVITY_ID_BASE + a.seq * ACTIVITY_ID_STRIDE + index

    def locate(self, activity_id: int) -> tuple[AthleteState, int]:
        """(athlete, index) of a visible activity; KeyError if unknown or deleted."""
        seq, index = divmod(activity_id - ACTIVITY_ID_BASE, ACTIVITY_ID_STRIDE)
        if activity_id < ACTIVITY_ID_BASE or seq >= len(self.by_seq):
            raise KeyError(f"no activity {activity_id}")
        a = self.by_seq[seq]
        pos = bisect.bisect_left(a.deleted, index)
        if index >= a.count or (pos < len(a.deleted) and a.deleted[pos] == index):
            raise KeyError(f"no activity {activity_id}")
        return a, index

    def summary(self, a: AthleteState, index: int) -> dict[str, Any]:
        """SummaryActivity JSON of activity ``index`` as a dict (the full one, edits applied)."""
        data: dict[str, Any] = orjson.loads(self._summary_text(a, index))
        return data

    def detail(self, a: AthleteState, index: int) -> dict[str, Any]:
        """DetailedActivity JSON: the summary plus the detail-only fields."""
        item = self.summary(a, index)
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

    def ordered_indices(self, athlete_id: int, *, newest_first: bool = True) -> list[int]:
        """Every visible activity's index, in Strava's order (materializes the history: for tests and checks)."""
        a = self.state(athlete_id)
        return list(self._walk(a, -float("inf"), float("inf"), ascending=not newest_first))

    def start_time(self, a: AthleteState, index: int) -> int:
        """Start time (UTC epoch s) of activity ``index``."""
        return start_of(a, index, mix(a.key ^ index))

    def _summary_text(self, a: AthleteState, index: int) -> str:
        """SummaryActivity JSON text of activity ``index``: a function of (seed, athlete, index, edits)."""
        if a.updates and index in a.updates:
            generated = orjson.loads(generated_text(self.seed, self._variants, a, index))
            return orjson.dumps({**generated, **a.updates[index]}).decode()
        return generated_text(self.seed, self._variants, a, index)

    def list_item_text(self, a: AthleteState, index: int) -> str:
        """An activity as a list page serves it: the full summary, or the compact one (``compact=True``)."""
        if not self.compact:
            return self._summary_text(a, index)
        if a.updates and index in a.updates:
            edits = {k: v for k, v in a.updates[index].items() if k in COMPACT_SUMMARY_KEYS}
            generated = orjson.loads(generated_text(self.seed, self._variants, a, index, compact=True))
            return orjson.dumps({**generated, **edits}).decode()
        return generated_text(self.seed, self._variants, a, index, compact=True)

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
        a = self.state(athlete_id)
        ascending = after is not None  # Strava: with after= the oldest first, else newest first
        if not a.extras:
            return self._generated_page(a, page, per_page, after, before, ascending)
        lo_t = -float("inf") if after is None else after
        hi_t = float("inf") if before is None else before
        visible = self._generated_in_window(a, after, before)[2] + self._extras_in_window(a, lo_t, hi_t)
        offset, size = self._page_span(a, page, per_page, visible, (after, before))
        if size <= 0:
            return []
        return list(itertools.islice(self._walk(a, lo_t, hi_t, ascending=ascending), offset, offset + size))

    def page_body(self, a: AthleteState, indices: list[int]) -> bytes:
        """The list page of activities ``indices`` of ``a``, serialized; shared through ``page_cache`` if any."""
        cache = self.page_cache
        if cache is None or not indices or a.updates or a.deleted or a.count != a.generated:
            return ("[" + ",".join([self.list_item_text(a, i) for i in indices]) + "]").encode()
        # An unchanged history's indices run in one direction without gaps: the ends and the length say which.
        athlete = (self.seed, self.compact, a.athlete_id, a.seq, a.generated, a.first_start, a.gap_s)
        key = (*athlete, indices[0], indices[-1], len(indices))
        body = cache.get(key)
        if body is None:
            body = ("[" + ",".join([self.list_item_text(a, i) for i in indices]) + "]").encode()
            cache.put(key, body)
        return body

    def _generated_in_window(self, a: AthleteState, after: float | None, before: float | None) -> tuple[int, int, int]:
        """(lo, hi, visible): the generated indices in the window are ``lo..hi-1``, ``visible`` of them live."""
        start: Callable[[int], int] = lambda i: self.start_time(a, i)  # noqa: E731
        lo = 0 if after is None else bisect.bisect_right(range(a.generated), after, key=start)
        hi = a.generated if before is None else bisect.bisect_left(range(a.generated), before, key=start)
        if hi <= lo:
            return lo, lo, 0
        deleted = a.deleted
        return lo, hi, (hi - lo) - (bisect.bisect_left(deleted, hi) - bisect.bisect_left(deleted, lo))

    @staticmethod
    def _extras_in_window(a: AthleteState, lo_t: float, hi_t: float) -> int:
        extras = a.extras
        first = bisect.bisect_right(extras, (lo_t, ACTIVITY_ID_STRIDE))
        return max(0, bisect.bisect_left(extras, (hi_t, -1)) - first)

    def _generated_page(
        self, a: AthleteState, page: int, per_page: int, after: float | None, before: float | None, ascending: bool
    ) -> list[int]:
        """A page of a history without uploads: offsets into the generated indices, skipping deletions."""
        lo, hi, visible = self._generated_in_window(a, after, before)
        if visible <= 0:
            return []
        offset, size = self._page_span(a, page, per_page, visible, (after, before))
        if size <= 0:
            return []
        deleted = a.deleted
        d_lo, d_hi = bisect.bisect_left(deleted, lo), bisect.bisect_left(deleted, hi)
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

    def _walk(self, a: AthleteState, lo_t: float, hi_t: float, *, ascending: bool) -> Iterator[int]:
        """Every visible activity with ``lo_t < start < hi_t``, in order of (start, index), ascending or not."""
        after = None if lo_t == -float("inf") else lo_t
        before = None if hi_t == float("inf") else hi_t
        lo, hi, _ = self._generated_in_window(a, after, before)
        deleted = set(a.deleted)
        first = bisect.bisect_right(a.extras, (lo_t, ACTIVITY_ID_STRIDE))
        last = bisect.bisect_left(a.extras, (hi_t, -1))
        if ascending:
            generated = ((self.start_time(a, i), i) for i in range(lo, hi) if i not in deleted)
            extras = iter(a.extras[first:last])
            merged = heapq.merge(generated, extras)
        else:
            generated = ((self.start_time(a, i), i) for i in range(hi - 1, lo - 1, -1) if i not in deleted)
            extras = reversed(a.extras[first:last])
            merged = heapq.merge(generated, extras, reverse=True)
        return (index for _, index in merged)

    def _page_span(
        self, a: AthleteState, page: int, per_page: int, visible: int, window: tuple[float | None, float | None]
    ) -> tuple[int, int]:
        """(offset, size) of a page among the ``visible`` activities of ``window`` (after, before), with seeded
        short non-final pages: whether a page comes short depends on the athlete, the window and the page."""
        rate = self.faults.short_pages
        if rate <= 0 or per_page <= 1:
            return (page - 1) * per_page, min(per_page, max(0, visible - (page - 1) * per_page))
        offset = 0
        for k in range(1, page + 1):
            size = per_page
            if offset + per_page < visible:  # non-final: may come short
                h = mix(a.key ^ mix(k * 1_000_003 + per_page) ^ (self.seed & MASK) ^ _window_key(window))
                if unit(h) < rate:
                    size = 1 + (h & 0xFFFF) % (per_page - 1)
            size = min(size, max(0, visible - offset))
            if k == page:
                return offset, size
            offset += size
        return offset, 0


def _window_key(window: tuple[float | None, float | None]) -> int:
    """A hash of a listing's (after, before) bounds; 0 for an unbounded listing."""
    after, before = window
    if after is None and before is None:
        return 0
    return mix(mix(int(after or -1) & MASK) ^ (int(before or -1) & MASK))
