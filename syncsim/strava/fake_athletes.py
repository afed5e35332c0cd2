"""FakeStrava's athletes and their activity histories: creating athletes, editing histories, and paging.

:class:`_Athletes` is the part of :class:`~syncsim.strava.fake.FakeStrava` that keeps the athletes (the
:class:`FakeAthlete` records it hands out, uploads, edits and deletions) and serves their activities: as
SummaryActivity JSON (full, or cut to ``COMPACT_SUMMARY_KEYS``), as DetailedActivity, and in pages.
Paging: ``per_page`` capped by the caller; newest first, oldest first with ``after=``; ``before``/``after``
filter; pages located by binary search over start times, with seeded short non-final pages
(``Faults.short_pages``). The JSON text itself comes from :mod:`syncsim.strava.fake_data`.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import orjson

from syncsim.clock import Clock
from syncsim.errors import InvalidInput
from syncsim.strava.fake_config import Faults
from syncsim.strava.fake_data import (
    _MASK,
    ACTIVITY_ID_BASE,
    ACTIVITY_ID_STRIDE,
    ATHLETE_ID_BASE,
    COMPACT_SUMMARY_KEYS,
    _Athlete,
    _generated_text,
    _mix,
    _new_athlete,
    _start_of,
    _unit,
)
from syncsim.strava.fake_tokens import _Credentials
from syncsim.strava.models import StravaTokens


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
    """Serialized list pages of unedited histories, for several FakeStrava instances of one process to share.

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


class _Athletes(_Credentials):
    """The athletes half of :class:`~syncsim.strava.fake.FakeStrava` (a base class of it, no state of its own).

    The attributes below are FakeStrava's, set up by its ``__init__``.
    """

    clock: Clock
    compact: bool
    faults: Faults
    seed: int
    page_cache: PageCache | None
    _by_seq: list[_Athlete]
    _variants: list[tuple[str, bool, str, str] | None]

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
        now = self.clock.now()
        state = _new_athlete(self.seed, seq, athlete_id, activities, now)
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
            generated = orjson.loads(_generated_text(self.seed, self._variants, a, index))
            return orjson.dumps({**generated, **a.updates[index]}).decode()
        return _generated_text(self.seed, self._variants, a, index)

    def _list_item_text(self, a: _Athlete, index: int) -> str:
        """An activity as a list page serves it: the full summary, or the compact one (``compact=True``)."""
        if not self.compact:
            return self._summary_text(a, index)
        if a.updates and index in a.updates:
            edits = {k: v for k, v in a.updates[index].items() if k in COMPACT_SUMMARY_KEYS}
            generated = orjson.loads(_generated_text(self.seed, self._variants, a, index, compact=True))
            return orjson.dumps({**generated, **edits}).decode()
        return _generated_text(self.seed, self._variants, a, index, compact=True)

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
        return self._page_body(
            a, self.page_indices(athlete_id, page=page, per_page=per_page, after=after, before=before)
        )

    def _page_body(self, a: _Athlete, indices: list[int]) -> bytes:
        """The list page of activities ``indices`` of ``a``, serialized; shared through ``page_cache`` if any."""
        cache = self.page_cache
        if cache is None or not indices or a.updates or a.deleted or a.count != a.generated:
            return ("[" + ",".join([self._list_item_text(a, i) for i in indices]) + "]").encode()
        # An unedited history's indices run in one direction without gaps: the ends and the length say which.
        athlete = (self.seed, self.compact, a.athlete_id, a.seq, a.generated, a.first_start, a.gap_s)
        key = (*athlete, indices[0], indices[-1], len(indices))
        body = cache.get(key)
        if body is None:
            body = ("[" + ",".join([self._list_item_text(a, i) for i in indices]) + "]").encode()
            cache.put(key, body)
        return body
