"""The ``strava_events`` job: re-read the activities Strava's webhooks named, and store what Strava says now.

A webhook event (``create``, ``update`` or ``delete`` of an activity) is only a hint: it is unsigned, so anyone
may send one, and it may be the last of several about the same activity. So the webhook route records the
activity id (one pending row per activity: repeated events collapse into one) and submits this job for the
athlete's user, and the job asks Strava for each activity by id (``GET /activities/{id}``, one request each):
an activity Strava has is stored whatever its start date (a late upload too), one it answers 404 for is removed,
one of another athlete is left alone. An event renewed while its activity is being read stays pending and is
read again. While a sync of the athlete is under way the events wait for it to end: one of its pages, listed
before a change, could otherwise be written after the event's re-read and undo it.

Each athlete may spend at most :data:`~syncsim.defaults.WEBHOOK_READS_PER_WINDOW` requests a quarter hour on
this and on confirming a deauthorization (``Store.take_event_quota``), the last of them kept for the
confirmation: a flood of events for one athlete, forged or not, waits for the next windows instead of spending
the app's whole budget. Rate limits and deadlines stop the job with its events still
pending; the next run (or the tick) goes on where it stopped.
"""

from __future__ import annotations

import asyncio
from typing import Any

from syncsim import defaults
from syncsim.aio import gather_or_cancel
from syncsim.errors import PermanentError, Reschedule
from syncsim.jobs.handlers import HandlerRegistry
from syncsim.jobs.model import JobStatus
from syncsim.jobs.runner import JobContext
from syncsim.strava.client import StravaClient, StravaRejected
from syncsim.strava.models import Activity
from syncsim.strava.ratelimit import next_quarter_hour, quarter_hour_start

__all__ = ["EVENTS_JOB_TYPE", "register_strava_events", "strava_events"]

EVENTS_JOB_TYPE = "strava_events"
#: Events read per round; each round takes its share of the athlete's quota first.
BATCH = 20


def register_strava_events(registry: HandlerRegistry) -> HandlerRegistry:
    """Add the ``strava_events`` job type to ``registry``."""
    registry.register(EVENTS_JOB_TYPE, strava_events)
    return registry


async def strava_events(ctx: JobContext) -> dict[str, Any]:
    """Re-read the user's pending webhook activities; see the module docstring."""
    client = ctx.resources.get("strava")
    if not isinstance(client, StravaClient):
        raise PermanentError("strava_events needs a Strava client; none is configured for this runner")
    user, store, clock = ctx.user_id, ctx.store, ctx.clock
    if await _sync_under_way(ctx):
        raise Reschedule(
            "a sync of this athlete is listing their history: its webhook events are read after it",
            at=clock.now() + defaults.EVENTS_WAIT_FOR_SYNC_S,
        )
    tokens = await client.load_tokens(user)
    stored = removed = ignored = 0
    while True:
        pending = await store.pending_activity_events(user, limit=BATCH)
        if not pending:
            break
        now = clock.now()
        # The window's last slot is left for a deauthorization's confirmation (see the webhook route): activity
        # events that spent the whole quota dropped the athlete's genuine deauthorization.
        activity_limit = defaults.WEBHOOK_READS_PER_WINDOW - 1
        granted = await store.take_event_quota(
            user, window=quarter_hour_start(now), limit=activity_limit, wanted=len(pending)
        )
        if granted == 0:
            raise Reschedule(
                f"{len(pending)}+ webhook activities of this athlete wait for the next quarter hour's share",
                at=next_quarter_hour(now),
            )
        batch = pending[:granted]
        found: list[Activity] = []
        gone: list[int] = []
        try:
            await _read(ctx, client, [activity_id for activity_id, _ in batch], found, gone)
        finally:
            # What was read is kept even if the round was cut short; its events are cleared below only if every
            # read of the round finished.
            mine = [a for a in found if a.athlete_id in (None, tokens.athlete_id)]
            ignored += len(found) - len(mine)
            if mine:
                stored += await store.upsert_activities(user, mine, now=clock.now())
            for activity_id in gone:
                removed += await store.delete_activity(user, activity_id)
        await store.clear_activity_events(user, batch)
    return {"stored": stored, "removed": removed, "ignored": ignored}


async def _sync_under_way(ctx: JobContext) -> bool:
    """Whether a ``strava_sync`` of the user is pending or running. Its pages may have been listed before the
    changes the events announce and be written after the events are read: a deleted activity would come back,
    an edit would be undone. Read after the sync, the events leave the store exact; a sync that starts after they
    are read lists what Strava has after the changes."""
    for status in (JobStatus.RUNNING, JobStatus.PENDING):
        jobs = await ctx.store.list_jobs(user_id=ctx.user_id, status=status, limit=10)
        if any(job.type == defaults.JOB_TYPE for job in jobs):
            return True
    return False


async def _read(
    ctx: JobContext, client: StravaClient, activity_ids: list[int], found: list[Activity], gone: list[int]
) -> None:
    """``GET /activities/{id}`` for each, a few at a time: what Strava has goes to ``found``, what it answers
    404 for to ``gone``."""
    slots = asyncio.Semaphore(defaults.DETAIL_CONCURRENCY)

    async def read(activity_id: int) -> None:
        async with slots:
            ctx.ensure_time()
            try:
                found.append(
                    await client.get_activity(
                        ctx.user_id,
                        activity_id,
                        deadline=ctx.work_deadline,
                        answer_by=ctx.answer_deadline,
                        max_wait_s=ctx.rate_wait_s,
                    )
                )
            except StravaRejected as exc:
                if exc.status != 404:
                    raise
                gone.append(activity_id)

    await gather_or_cancel([read(activity_id) for activity_id in activity_ids])
