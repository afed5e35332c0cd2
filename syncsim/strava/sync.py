"""The ``strava_sync`` job: list an athlete's activities by keyset, store them, checkpoint after every page.

Modes (``payload["mode"]``):

``full``
    The whole history, **newest page first** (``GET /athlete/activities?before=B``): the first page stored is the
    athlete's most recent activities, each next page backfills older ones. Every listed activity is written;
    once the listing reaches its end, the athlete's stored activities that it did not see are removed (Strava no
    longer has them).
``reconcile``
    The same listing, writing only what differs: activities missing from the store or stale (any stored field
    differs from Strava's) are written, those Strava no longer has are removed. An unchanged history costs its
    list pages and nothing else: no detail request, no write but the marks of what was seen.
``incremental``
    New and late uploads: ``GET /athlete/activities?after=A``, oldest first, from the newest stored start minus
    ``lookback_s`` (default :data:`~syncsim.defaults.INCREMENTAL_LOOKBACK_S`), so an activity uploaded days
    late with an older start is still caught. Nothing is removed (webhooks and reconciliation do that).
``auto``
    ``incremental`` once a complete listing of the user's history ended (a ``full`` or ``reconcile`` sync, which
    records when: ``Store.mark_reconciled``), else ``full``. Activities stored by webhooks alone do not count: a
    history is only known complete once it was listed to its end.

With ``payload["detail"]`` each activity to write is first read in full (``GET /activities/{id}``), up to
``payload["concurrency"]`` (default :data:`~syncsim.defaults.DETAIL_CONCURRENCY`) at a time, inside the
app-wide rate budget that every request reserves from. A page's details are all stored before the cursor
moves past it; an activity whose detail answers 404 was deleted meanwhile and is removed.

**Keyset paging.** The cursor is a start time, never a page number, so deletions and uploads during the sync
cannot shift what is fetched. Strava's ``before``/``after`` are exclusive and in whole seconds, and several
activities may start in the same second, so a page may end inside such a tie: the next request re-reads the
boundary second (``before`` = the page's oldest second + 1; ``after`` = its newest second − 1) and skips the
ids already seen in it (idempotent upserts make the overlap harmless). A page holding nothing but that second
(a tie larger than a page) asks for the next page of the same bound, and so does a whole page of the boundary
second all seen (its first page came without that bound: the newest page, say); any other page that brings
nothing new closes the second, and the next request excludes it. Paging stops only at an **empty** page (Strava
may answer a short page before the end). Within a tie larger than a page the pages are numbered, so there a
deletion during the listing can shift one: Strava offers no finer order inside a second (a known limit).

**Requests.** A listing of N activities at distinct seconds, pages of P = 200, costs
``list_requests_needed(N)``: 1 request for N = 0; else ``ceil((N − P) / (P − 1)) + 3`` for N > P and 3 for
1 ≤ N ≤ P — the first page brings P new activities, each later one P − 1 (it re-reads the boundary), then one
page re-reads only the boundary and an empty page ends the listing. A detail sync adds one request per
activity written.

**Fair turns.** When Strava's budget, not time, is the limit, every waiting athlete gets their newest page
before anyone gets a second, and then they take turns, a page each: the store claims jobs that never stored a
page first; a sync already served does not start a request while the never-served syncs are at least as many as
the reads left in the window (it waits for the next window); and when fewer reads are left than syncs are due,
a sync gives its turn away after each page (:class:`~syncsim.errors.YieldTurn`) and continues in the next
window, behind the syncs that got no read in this one.

**Order of writes.** A page's activities are written (and the seen ones marked) before the checkpoint that moves
the cursor past them: a run killed between the two re-reads that page and writes the same rows again, so
nothing is lost or duplicated. Removal happens only after the listing's empty page, for activities not seen
since the listing began (a write by a webhook during the listing counts as seen).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from typing import Any

from syncsim import defaults
from syncsim.errors import InvalidInput, JobError, OutOfTime, PermanentError, UnusableResponse, YieldTurn
from syncsim.jobs.handlers import HandlerRegistry
from syncsim.jobs.runner import JobContext
from syncsim.options import whole
from syncsim.strava.client import LIST_ENDPOINT, ActivityPage, StravaClient, StravaRejected
from syncsim.strava.models import Activity
from syncsim.strava.ratelimit import QUARTER_HOUR_S

__all__ = [
    "JOB_TYPE",
    "MODES",
    "PER_PAGE",
    "list_requests_needed",
    "register_strava_sync",
    "strava_sync",
]

JOB_TYPE = defaults.JOB_TYPE
#: Strava's maximum page size.
PER_PAGE = 200
#: What a user may ask for (``auto`` picks ``incremental`` or ``full``).
MODES = ("auto", "full", "incremental", "reconcile")
#: Before the first measured request, assume one request takes this long (seconds).
INITIAL_REQUEST_ESTIMATE_S = 1.0


def list_requests_needed(activities: int, per_page: int = PER_PAGE) -> int:
    """List requests a full listing of ``activities`` activities at distinct seconds needs (module docstring)."""
    whole("activities", activities, lowest=0)
    whole("per_page", per_page, lowest=2)  # a page of one could not move past a second's boundary
    if activities == 0:
        return 1
    if activities <= per_page:
        return 3
    return math.ceil((activities - per_page) / (per_page - 1)) + 3


def register_strava_sync(registry: HandlerRegistry) -> HandlerRegistry:
    """Add the ``strava_sync`` job type to ``registry``."""
    registry.register(JOB_TYPE, strava_sync)
    return registry


async def strava_sync(ctx: JobContext) -> dict[str, Any]:
    """Sync one athlete's activities into the store; see the module docstring.

    Payload: ``{"mode": "auto" | "full" | "incremental" | "reconcile", "detail": false, "concurrency": 4,
    "lookback_s": 259200}``. Needs ``ctx.resources["strava"]``: a :class:`~syncsim.strava.client.StravaClient`.
    """
    client = ctx.resources.get("strava")
    if not isinstance(client, StravaClient):
        raise PermanentError("strava_sync needs a Strava client; none is configured for this runner")
    if ctx.outage is not None:  # another process found Strava down: its next failure here is the next look
        client.remember_outage(looks=ctx.outage.looks, until=ctx.outage.until, since=ctx.outage.paused_at)
    await client.load_tokens(ctx.user_id)  # the stored tokens, not ones remembered from an earlier run
    return await _Sync(ctx, client).run()


class _Sync:
    """One run of a ``strava_sync`` job (one invocation's share of it): the listing loop and its checkpoint."""

    def __init__(self, ctx: JobContext, client: StravaClient) -> None:
        self.ctx = ctx
        self.client = client
        payload = ctx.payload
        self.detail = bool(payload.get("detail", False))
        self.concurrency = _positive_int(payload, "concurrency", defaults.DETAIL_CONCURRENCY)
        self.lookback_s = float(payload.get("lookback_s", defaults.INCREMENTAL_LOOKBACK_S))
        self.progress = dict(ctx.progress)
        self.estimate_s = float(self.progress.get("request_s", INITIAL_REQUEST_ESTIMATE_S))
        #: Set when a detail sync stopped within a page (out of time, a rate limit, a failed request): stop once what
        #: was fetched is stored, so that the next run does not fetch it again.
        self.stopped: JobError | None = None

    @property
    def user(self) -> uuid.UUID:
        return self.ctx.user_id

    async def run(self) -> dict[str, Any]:
        ctx, progress = self.ctx, self.progress
        if "mode" not in progress:
            await self._start()
        elif int(progress.get("pages", 0)) > 0 and (at := await self._leave_window(first=False)) is not None:
            raise YieldTurn("syncs not yet served get what is left of Strava's window: continuing in the next", at=at)
        # The first request of an invocation only needs the margin: an estimate larger than a short limit must not
        # stop every invocation before it starts (no progress, ever).
        ctx.ensure_time(0.0)
        pending: asyncio.Task[ActivityPage] | None = self._request(self._cursor())
        try:
            while pending is not None:
                cursor = self._cursor()
                try:
                    answered = await pending
                finally:
                    # The request's exception, if any, holds this frame in its traceback: the task holding the
                    # exception must not stay in it, or the cycle keeps the last page alive until a GC runs.
                    pending = None
                self.estimate_s = max(0.001, 0.7 * self.estimate_s + 0.3 * answered.latency_s)
                turn_over = await self._turn_over()
                # The next cursor can be read from the page's last item before the whole page is parsed: ask for the
                # next page at once, so that Strava answers while this one is parsed and stored. (Not in a detail
                # sync: its page's details come first, and may not all fit in this invocation.)
                guess = None if self.detail or turn_over is not None else self._next_cursor_guess(answered, cursor)
                stop: OutOfTime | None = None
                if guess is not None:
                    pending, stop = self._request_if_time(guess)
                    # Let the request go out before this page is parsed and stored (CPU work that holds the loop).
                    await asyncio.sleep(0)
                activities = _within_bound(answered, cursor)
                next_cursor = await self._store_page(activities, cursor)
                if self.stopped is not None:  # a detail page not finished: its cursor stays
                    await ctx.checkpoint(progress)
                    try:
                        raise self.stopped
                    finally:
                        self.stopped = None
                if pending is not None and next_cursor != guess:
                    pending.cancel()  # the guess was wrong (a page out of order): ask for the right one
                    await asyncio.gather(pending, return_exceptions=True)
                    pending = None
                if next_cursor is None:  # the empty page: the listing is complete
                    break
                if not _advances(cursor, next_cursor):
                    # Asking again would bring the same page: fail rather than spend the app's budget on it.
                    raise UnusableResponse(
                        f"GET {LIST_ENDPOINT} {answered.where}: the page does not move the listing past its bound"
                    )
                self._move(next_cursor, activities)
                await ctx.checkpoint(progress)
                if turn_over is not None:
                    raise YieldTurn("others wait for Strava's budget: this sync's turn is over", at=turn_over)
                if pending is None and stop is None:
                    pending, stop = self._request_if_time(self._cursor())
                if stop is not None:
                    try:
                        raise stop
                    finally:
                        stop = None  # as above: the raised exception's traceback holds this frame
        finally:
            if pending is not None:  # the next page asked ahead, when this sync ends otherwise
                pending.cancel()
                # Awaited even when done: a request that failed on its own (a store outage as it takes its
                # rate-limit slot, say) would otherwise be logged as an exception nobody retrieved.
                await asyncio.gather(pending, return_exceptions=True)
        removed = 0
        if progress["mode"] in ("full", "reconcile"):
            removed = await ctx.store.delete_activities_unseen_since(self.user, float(progress["listing_started_at"]))
            await ctx.store.mark_reconciled(self.user, now=ctx.clock.now())
        total = await ctx.store.count_activities(self.user)
        return {
            "mode": progress["mode"],
            "activities": int(progress["activities"]),
            "removed": removed + int(progress.get("removed", 0)),
            "pages": int(progress["pages"]),
            "requests": int(progress["requests"]),
            "total_activities": total,
        }

    async def _turn_over(self) -> float | None:
        """When this sync continues if it gives its turn away after the page at hand (``None``: it goes on).

        When Strava's budget, not time, is the limit: a sync that has had its newest page leaves the rest of the
        window to the syncs that have not (:meth:`_leave_window`); otherwise, when fewer requests are left in the
        window than syncs are due, it continues at once behind them (the store claims never-served jobs first,
        then the one due first), so the syncs take turns, a page each."""
        now = self.ctx.clock.now()
        at = await self._leave_window(first=int(self.progress.get("pages", 0)) == 0)
        if at is not None:
            return at
        budget = self.client.budget
        left = budget.reads_left(now)
        waiting = await self.ctx.others_waiting(left + 1)
        if waiting <= 0 or waiting < left:
            return None
        # The jobs due before this one take what is left of the window: continue in the next one, behind the jobs
        # that got no read in this one (a rate-limited job is due at the window's start) and in the order the
        # syncs gave their turns away (the offset, under a second, keeps it). Due at once instead, every sync
        # would be due all the time and its client would poll for a turn that cannot come before the window.
        return budget.next_window(now, reads=waiting) + (now % QUARTER_HOUR_S) / 1000.0

    async def _leave_window(self, *, first: bool) -> float | None:
        """The start of the next rate-limit window if the syncs never served (``first``: this one among them,
        its page at hand not yet stored) are at least as many as the reads left in this one; else ``None``.

        Their requests race this sync's at a window's reset (claims are fair, requests are concurrent), so a
        sync already served waits for the next window rather than take a read a newer sync needs for its first
        page. A never-served job that is not due yet (an error's backoff) is counted too: the cost is a little
        of the window left unused, never an athlete left without a first page."""
        now = self.ctx.clock.now()
        budget = self.client.budget
        left = budget.reads_left(now)
        unserved = await self.ctx.unserved_waiting(left + 2) - (1 if first else 0)
        if unserved <= 0 or unserved < left:
            return None
        return budget.next_window(now, reads=unserved)

    async def _start(self) -> None:
        """A first run: decide the mode and where the listing starts."""
        mode = self.ctx.payload.get("mode", "auto")
        if mode not in MODES:
            raise InvalidInput(f"strava_sync mode must be one of {', '.join(MODES)}, got {mode!r}")
        progress = self.progress
        if mode == "auto":
            mode = "incremental" if await self.ctx.store.reconciled_at(self.user) is not None else "full"
        if mode == "incremental":
            latest = await self.ctx.store.latest_activity_start(self.user)
            after = 0 if latest is None else int(latest.timestamp() - self.lookback_s)
            progress["after"] = max(0, after)
        progress.update(
            mode=mode,
            seen=[],
            tie_page=1,
            pages=0,
            activities=0,
            requests=0,
            listing_started_at=self.ctx.clock.now(),
        )

    # -- the cursor ------------------------------------------------------------------------------------------

    def _cursor(self) -> tuple[str, int | None, int]:
        """(``"before"`` or ``"after"``, the bound, the page number within the bound)."""
        progress = self.progress
        if "after" in progress:
            return "after", int(progress["after"]), int(progress["tie_page"])
        before = progress.get("before")
        return "before", None if before is None else int(before), int(progress["tie_page"])

    def _next_cursor_guess(self, answered: ActivityPage, cursor: tuple[str, int | None, int]) -> Any:
        """The cursor after this page, from the start time of its last item alone; ``None`` if it cannot be read
        that way, or the page may end in its boundary second (then what it brings decides). Checked against the
        parsed page before the request is trusted."""
        last = answered.last_start()
        kind, bound, _ = cursor
        if last is None:
            return None
        # At the boundary second, the page may end in a tie; beyond the bound, Strava ignored it (nothing to ask).
        if bound is not None and (last >= bound - 1 if kind == "before" else last <= bound + 1):
            return None
        return (kind, last + 1 if kind == "before" else last - 1, 1)

    def _request(self, cursor: tuple[str, int | None, int]) -> asyncio.Task[ActivityPage]:
        kind, bound, page = cursor
        return asyncio.ensure_future(
            self.client.request_activities(
                self.user,
                page=page,
                per_page=PER_PAGE,
                before=bound if kind == "before" else None,
                after=bound if kind == "after" else None,
                deadline=self.ctx.work_deadline,
                answer_by=self.ctx.answer_deadline,
                max_wait_s=self.ctx.rate_wait_s,
            )
        )

    def _request_if_time(self, cursor: Any) -> tuple[asyncio.Task[ActivityPage] | None, OutOfTime | None]:
        """Ask for the page at ``cursor`` now; or, if it may not make the deadline (resumable), the reason to stop
        after the current one."""
        try:
            self.ctx.ensure_time(self.estimate_s)
        except OutOfTime as exc:
            return None, exc
        return self._request(cursor), None

    def _move(self, cursor: tuple[str, int | None, int], activities: list[Activity]) -> None:
        """Move the checkpoint's cursor to ``cursor``, remembering the ids seen in its boundary second."""
        progress = self.progress
        kind, bound, page = cursor
        assert bound is not None
        boundary = bound - 1 if kind == "before" else bound + 1
        seen = {a.id for a in activities if int(a.start_date.timestamp()) == boundary}
        if page > 1:  # the same bound, the next page of a tie
            seen |= set(progress["seen"])
        progress[kind] = bound
        progress.update(seen=sorted(seen), tie_page=page)

    # -- one page --------------------------------------------------------------------------------------------

    async def _store_page(
        self, activities: list[Activity], cursor: tuple[str, int | None, int]
    ) -> tuple[str, int | None, int] | None:
        """Write what this page brings; return the cursor of the next request, ``None`` after the empty page."""
        progress = self.progress
        progress["requests"] = int(progress["requests"]) + 1
        progress["request_s"] = round(self.estimate_s, 4)
        if not activities:
            return None
        kind, bound, page = cursor
        seen = set(progress["seen"])
        new = [a for a in activities if a.id not in seen]
        written, removed = await self._write(new)
        progress.update(
            activities=int(progress["activities"]) + written, removed=int(progress.get("removed", 0)) + removed
        )
        if self.stopped is not None:
            return cursor  # the page is not done: it is listed again, and what was stored is skipped
        progress["pages"] = int(progress["pages"]) + 1
        seconds = [int(a.start_date.timestamp()) for a in activities]
        edge = min(seconds) if kind == "before" else max(seconds)
        boundary = None if bound is None else (bound - 1 if kind == "before" else bound + 1)
        only_boundary = boundary is not None and all(second == boundary for second in seconds)
        if not new:
            if page == 1 and only_boundary and len(activities) == PER_PAGE:
                # A whole page of the boundary second, all seen: the page before it was the same second's first
                # page (it had no bound, or did not start at this one), so the second holds more than a page:
                # its next page, by number, rather than closing it on the first.
                return (kind, bound, 2)
            # Only the boundary second, all seen: it is closed; exclude it from now on.
            return (kind, edge, 1)
        if only_boundary:
            return (kind, bound, page + 1)  # a tie larger than a page: the next page of the same bound
        return (kind, edge + 1 if kind == "before" else edge - 1, 1)

    async def _write(self, activities: list[Activity]) -> tuple[int, int]:
        """Store the page's new activities as the mode says; mark the rest seen. (written, removed)."""
        if not activities:
            return 0, 0
        ctx, mode = self.ctx, self.progress["mode"]
        now = ctx.clock.now
        if mode == "full" and not self.detail:
            return await ctx.store.upsert_activities(self.user, activities, now=now()), 0
        stored = await ctx.store.stored_activities(self.user, [a.id for a in activities])
        to_write = [a for a in activities if _differs(a, stored.get(a.id), detail=self.detail, mode=mode)]
        writing = {a.id for a in to_write}
        unchanged = [a.id for a in activities if a.id in stored and a.id not in writing]
        removed = 0
        if self.detail and to_write:
            to_write, gone = await self._details(to_write)
            for activity_id in gone:
                removed += await ctx.store.delete_activity(self.user, activity_id)
        written = await ctx.store.upsert_activities(self.user, to_write, now=now()) if to_write else 0
        if unchanged:
            await ctx.store.mark_activities_seen(self.user, unchanged, now=now())
        return written, removed

    async def _details(self, summaries: Sequence[Activity]) -> tuple[list[Activity], list[int]]:
        """``GET /activities/{id}`` for each, ``concurrency`` at a time: (the detailed ones, the ids that 404).

        The rounds stop when the next may not finish in time (under a deadline-aware strategy) or a request fails
        (a rate limit above all: a page may hold more activities than a window has reads): what was fetched is
        returned to be stored, and the reason is raised once it is (``self.stopped``)."""
        ctx, client = self.ctx, self.client
        gone: list[int] = []
        detailed: list[Activity] = []

        async def one(summary: Activity) -> None:
            try:
                detailed.append(
                    await client.get_activity(
                        self.user,
                        summary.id,
                        deadline=ctx.work_deadline,
                        answer_by=ctx.answer_deadline,
                        max_wait_s=ctx.rate_wait_s,
                    )
                )
            except StravaRejected as exc:
                if exc.status != 404:
                    raise
                gone.append(summary.id)  # deleted since it was listed

        for start in range(0, len(summaries), self.concurrency):
            batch = summaries[start : start + self.concurrency]
            try:
                ctx.ensure_time(self.estimate_s)
            except OutOfTime as exc:
                self.stopped = exc
                break
            started = ctx.clock.now()
            # Every request of the batch is awaited, even after one fails: those in flight are paid for (a 429
            # from the local budget fails at once; the others were sent), and what they bring is kept.
            outcomes = await asyncio.gather(*(one(s) for s in batch), return_exceptions=True)
            self.progress["requests"] = int(self.progress["requests"]) + len(batch)
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                failure = next((f for f in failures if not isinstance(f, JobError)), failures[0])
                if not isinstance(failure, JobError):
                    raise failure  # not Strava's answer (a cancellation, a bug): nothing to keep
                self.stopped = failure
                break
            self.estimate_s = max(0.001, 0.7 * self.estimate_s + 0.3 * (ctx.clock.now() - started))
        order = {s.id: i for i, s in enumerate(summaries)}
        detailed.sort(key=lambda a: order.get(a.id, 0))
        return detailed, gone


def _within_bound(answered: ActivityPage, cursor: tuple[str, int | None, int]) -> list[Activity]:
    """The page's activities that start within the bound asked for (Strava's ``before``/``after`` are exclusive).

    One at or beyond the bound is dropped: kept, it would move the cursor back, and the same page be asked for
    again and again. A page that brings activities but none within the bound ignored it: taken for empty, it would
    end the listing early (and a full sync would remove every activity it did not reach), so it is an
    :class:`UnusableResponse`."""
    activities = answered.activities()
    kind, bound, _ = cursor
    if bound is None or not activities:
        return activities
    if kind == "before":
        inside = [a for a in activities if int(a.start_date.timestamp()) < bound]
    else:
        inside = [a for a in activities if int(a.start_date.timestamp()) > bound]
    if not inside:
        raise UnusableResponse(
            f"GET {LIST_ENDPOINT} {answered.where}: none of the page's {len(activities)} activities starts "
            f"{kind} its bound; Strava ignored it"
        )
    return inside


def _advances(cursor: tuple[str, int | None, int], following: tuple[str, int | None, int]) -> bool:
    """Whether ``following`` asks for activities ``cursor`` has not: a bound strictly past the one used (the
    first page has none), or the next page of the same bound (a tie larger than a page, module docstring)."""
    kind, bound, page = cursor
    next_kind, next_bound, next_page = following
    if next_kind != kind or next_bound is None:
        return False
    if bound is None:
        return True
    if next_bound == bound:
        return next_page > page
    return next_bound < bound if kind == "before" else next_bound > bound


def _differs(activity: Activity, stored: Any, *, detail: bool, mode: str) -> bool:
    """Whether ``activity`` (listed) must be written: it is not stored, a field differs, a detail sync lacks its
    detail (a detail request is only spent on those), or a summary mode that writes everything it lists."""
    if stored is None or stored.fields != activity.fields:
        return True
    if detail:
        return not stored.detailed
    return mode in ("full", "incremental")


def _positive_int(payload: dict[str, Any], key: str, default: int) -> int:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"strava_sync {key} must be an integer >= 1, got {value!r}")
    return value
