"""What a tick does for Strava before it continues due jobs: no webhook event left without a job to re-read it,
and every athlete's history reconciled now and then.

Webhooks can be lost (Strava does not resend an event it got no answer for, and one sent while the app was down
is never seen), so :func:`strava_upkeep` submits a ``reconcile`` sync for athletes whose history was not listed
to its end for ``reconcile_every_s`` (at most ``reconciles_per_tick`` a tick; one athlete is asked again no
sooner than a day, or ``reconcile_every_s`` if shorter, after the last time, so a reconcile that keeps failing
does not take every tick). And an event recorded just as its athlete's ``strava_events`` job ended would wait
for the next event: the upkeep submits that job for every athlete with events waiting. Submitting is all it does;
the tick's own continuation runs the jobs, in the store's fair order.
"""

from __future__ import annotations

from typing import Any

from syncsim import defaults
from syncsim.jobs.runner import JobRunner
from syncsim.strava.events import EVENTS_JOB_TYPE

__all__ = ["RECONCILE_RETRY_S", "strava_upkeep"]

#: A reconcile asked for is asked for again no sooner than this long after (seconds), or ``reconcile_every_s`` if
#: that is shorter (a period shorter than the retry must not be stretched to it).
RECONCILE_RETRY_S = 86_400.0


async def strava_upkeep(
    runner: JobRunner,
    *,
    reconcile_every_s: float = defaults.RECONCILE_EVERY_S,
    reconciles_per_tick: int = defaults.RECONCILES_PER_TICK,
) -> dict[str, Any]:
    """Submit the jobs a tick should find due (see the module docstring); how many of each were submitted."""
    store, now = runner.store, runner.clock.now()
    events = 0
    for user in await store.users_with_activity_events(limit=reconciles_per_tick):
        _, created = await runner.submit(user, {}, type=EVENTS_JOB_TYPE)
        events += created
    reconciles = 0
    users = await store.users_to_reconcile(
        before=now - reconcile_every_s,
        asked_before=now - min(RECONCILE_RETRY_S, reconcile_every_s),
        limit=reconciles_per_tick,
    )
    for user in users:
        _, created = await runner.submit(user, {"mode": "reconcile"})
        await store.mark_reconcile_asked(user, now=now)
        reconciles += created
    return {"eventJobs": events, "reconciles": reconciles}
