"""The ``strava_sync`` job: page through an athlete's activities, upsert them idempotently, checkpoint, resume.

Every sync pages with ``after=`` (Strava then answers oldest first), so a page number under a fixed ``after``
is a stable position: the checkpoint is ``{"after": …, "page": …}`` and a resumed run asks for exactly the next
page. A full sync starts at ``after=0``; an incremental one at the newest stored ``start_date`` (Strava's
``after`` is exclusive). Paging stops only at an **empty** page — a short page is not the end — so an athlete
with N activities costs ``ceil(N / 200) + 1`` list requests.

Each page is upserted in one batch *before* the checkpoint that moves past it is written: a run killed between
the two re-reads that page and upserts the same rows again, so nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from syncsim import defaults
from syncsim.errors import InvalidInput, OutOfTime, PermanentError
from syncsim.jobs.runner import HandlerRegistry, JobContext
from syncsim.strava.client import ActivityPage, StravaClient

__all__ = ["JOB_TYPE", "PER_PAGE", "register_strava_sync", "strava_sync"]

JOB_TYPE = defaults.JOB_TYPE
#: Strava's maximum page size.
PER_PAGE = 200
#: Before the first measured request, assume one list request takes this long (seconds).
INITIAL_REQUEST_ESTIMATE_S = 1.0


def _mode(payload: dict[str, Any]) -> str:
    mode = payload.get("mode", "auto")
    if mode not in {"auto", "full", "incremental"}:
        raise InvalidInput(f"strava_sync mode must be auto, full or incremental, got {mode!r}")
    return str(mode)


async def strava_sync(ctx: JobContext) -> dict[str, Any]:
    """Sync one athlete's activities into the store; see the module docstring.

    Payload: ``{"mode": "auto" | "full" | "incremental", "detail": false}``. ``auto`` is incremental when the
    user already has activities stored, else full. ``detail`` also fetches ``GET /activities/{id}`` for each.
    Needs ``ctx.resources["strava"]``: a :class:`~syncsim.strava.client.StravaClient`.
    """
    client = ctx.resources.get("strava")
    if not isinstance(client, StravaClient):
        raise PermanentError("strava_sync needs a Strava client; none is configured for this runner")
    payload = ctx.payload
    detail = bool(payload.get("detail", False))
    progress = dict(ctx.progress)
    now = ctx.clock.now

    if "after" not in progress:  # a first run: decide where to start
        mode = _mode(payload)
        latest = await ctx.store.latest_activity_start(ctx.user_id)
        if mode == "full" or (mode == "auto" and latest is None):
            progress.update(mode="full", after=0)
        else:
            progress.update(mode="incremental", after=int(latest.timestamp()) if latest else 0)
        progress.update(page=1, pages=0, activities=0, requests=0)

    estimate_s = float(progress.get("request_s", INITIAL_REQUEST_ESTIMATE_S))

    def fetch(page: int) -> asyncio.Task[ActivityPage]:
        return asyncio.ensure_future(
            client.request_activities(
                ctx.user_id, page=page, per_page=PER_PAGE, after=progress["after"], deadline=ctx.deadline
            )
        )

    def fetch_next_if_time() -> tuple[asyncio.Task[ActivityPage] | None, OutOfTime | None]:
        """Ask for the page after the current one now, so that Strava answers while this one is parsed and
        stored; or, if the next request may not make the deadline (resumable), the reason to stop after it."""
        try:
            ctx.ensure_time(estimate_s * (3 if detail else 1))
        except OutOfTime as exc:
            return None, exc
        return fetch(int(progress["page"]) + 1), None

    # The first request of an invocation only needs the margin: an estimate larger than a short limit must not
    # stop every invocation before it starts (no progress, ever).
    ctx.ensure_time(0.0)
    pending: asyncio.Task[ActivityPage] | None = fetch(int(progress["page"]))
    try:
        while pending is not None:
            try:
                answered = await pending
            except BaseException:
                # The request failed (rate limit, deadline, Strava's error): its exception's traceback now holds
                # this frame, so the task holding the exception must not stay in it. The cycle (frame, task,
                # exception, traceback) would keep the last page alive until the garbage collector ran.
                if pending.done():
                    pending = None
                raise
            pending = None
            stop: OutOfTime | None = None
            estimate_s = max(0.001, 0.7 * estimate_s + 0.3 * answered.latency_s)
            # Pipelining: a summary page that looks non-empty is followed by the next request before it is even
            # parsed. (Detail syncs fetch each activity first; they ask for the next page after that.)
            early = not detail and answered.looks_nonempty
            if early:
                pending, stop = fetch_next_if_time()
                await asyncio.sleep(0)  # let the request go out before parsing and the (possibly blocking) write
            activities = answered.activities()
            requests = 1
            if detail and activities:
                detailed, spent = [], 0.0
                for summary in activities:
                    ctx.ensure_time(estimate_s)
                    started = now()
                    detailed.append(await client.get_activity(ctx.user_id, summary.id, deadline=ctx.deadline))
                    spent += now() - started
                    requests += 1
                activities = detailed
                estimate_s = max(0.001, 0.7 * estimate_s + 0.3 * spent / (requests - 1))
            progress["requests"] = int(progress["requests"]) + requests
            progress["request_s"] = round(estimate_s, 4)
            if not activities:
                break
            if not early:
                pending, stop = fetch_next_if_time()
                await asyncio.sleep(0)
            written = await ctx.store.upsert_activities(ctx.user_id, activities, now=now())
            progress.update(
                page=int(progress["page"]) + 1,
                pages=int(progress["pages"]) + 1,
                activities=int(progress["activities"]) + written,
            )
            await ctx.checkpoint(progress)
            if stop is not None:
                try:
                    raise stop
                finally:
                    stop = None  # as above: the raised exception's traceback holds this frame
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

    total = await ctx.store.count_activities(ctx.user_id)
    return {
        "mode": progress["mode"],
        "activities": int(progress["activities"]),
        "pages": int(progress["pages"]),
        "requests": int(progress["requests"]),
        "total_activities": total,
    }


def list_requests_needed(activities: int, per_page: int = PER_PAGE) -> int:
    """List requests a full sync of ``activities`` needs: every page, then the empty one that ends it."""
    return math.ceil(activities / per_page) + 1


def register_strava_sync(registry: HandlerRegistry) -> HandlerRegistry:
    """Add the ``strava_sync`` job type to ``registry``."""
    registry.register(JOB_TYPE, strava_sync)
    return registry
