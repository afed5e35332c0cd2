"""``syncsim tick`` (the tick's continuation, in this process, on a schedule) and ``syncsim schedule`` (the
tick's schedule in the database itself: Supabase Cron, installed or removed)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
from typing import Any

from syncsim.cli.common import Command

__all__ = ["CRON_SECRET_ENV", "register_cli"]

#: The tick route's bearer secret (Vercel Cron's convention).
CRON_SECRET_ENV = "CRON_SECRET"


def _schedule(args: argparse.Namespace) -> int:
    from syncsim.errors import InvalidInput
    from syncsim.stores import default_store_url
    from syncsim.stores.cron import install_tick_schedule, remove_tick_schedule

    store = args.store or default_store_url()
    if args.remove:
        removed = asyncio.run(remove_tick_schedule(store))
        print("tick schedule removed" if removed else "no tick schedule to remove")
        return 0
    if not args.url:
        raise InvalidInput("--url is required: the app's tick route, e.g. https://<app>/api/cron/tick")
    schedule = asyncio.run(
        install_tick_schedule(store, tick_url=args.url, secret=os.environ.get(CRON_SECRET_ENV, ""), every=args.every)
    )
    print(
        f"tick scheduled: pg_cron job {schedule.job_id} '{schedule.name}' ({schedule.schedule}) POSTs {schedule.url}; "
        f"its bearer is read from Vault at run time"
    )
    return 0


def _tick(args: argparse.Namespace) -> int:
    import logging
    import signal

    from syncsim.cli.common import StoreOutage
    from syncsim.cli.jobs import build_runner
    from syncsim.clock import SystemClock
    from syncsim.errors import InvalidInput, InvocationKilled, StoreError
    from syncsim.jobs.service import JobService
    from syncsim.platforms.local import LocalPlatform
    from syncsim.platforms.spec import platform_spec
    from syncsim.stores import open_store
    from syncsim.strava.client import StravaClient, strava_base_url
    from syncsim.strava.upkeep import strava_upkeep

    if not (args.every > 0 and math.isfinite(args.every)):  # nan would tick without pause
        raise InvalidInput(f"--every must be a finite number of seconds > 0, got {args.every}")
    limit = args.limit if args.limit is not None else args.every
    if not (limit > 0 and math.isfinite(limit)):
        raise InvalidInput(f"--limit must be a finite number of seconds > 0, got {limit}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> int:
        clock = SystemClock()
        store = open_store(args.store)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        ticks = 0
        try:
            await store.migrate()
            strava = StravaClient(
                tokens=store, clock=clock, base_url=strava_base_url(args.strava_url, setting="--strava-url")
            )
            runner = build_runner(store, clock=clock, strategy="resumable", resources={"strava": strava})
            service = JobService(runner)
            # Each tick is an invocation with the schedule's period as its limit: it stops cleanly before the next.
            platform = LocalPlatform(platform_spec("unlimited").with_limit(limit), clock=clock)
            platform.keep_history = False
            print(f"ticking every {args.every:g} s on {store.url} (each tick at most {limit:g} s)", flush=True)
            # A store outage skips ticks, it does not end them: this process is what moves resumable jobs along.
            outage = StoreOutage(clock, lambda line: print(f"tick: {line}", file=sys.stderr, flush=True))
            try:
                while not stopping.is_set():
                    started = clock.now()
                    invocation = platform.start_invocation()
                    try:
                        submitted = await strava_upkeep(runner)
                        summary = {**await service.tick(invocation), **submitted}
                    except StoreError as exc:
                        if args.once:
                            raise
                        outage.failed(exc)
                        summary = None
                    except InvocationKilled as exc:
                        # A store call that outlasted the tick's limit (a lock, an outage not yet noticed) cut the
                        # tick short: skip it, as a failed one, rather than end the process that moves the jobs.
                        if args.once or not invocation.killed:
                            raise
                        print(f"tick: {' '.join(str(exc).split())}; skipped, the next tick in {args.every:g} s",
                              file=sys.stderr, flush=True)  # fmt: skip
                        summary = None
                    finally:
                        invocation.finish_response()
                        await invocation.drain()
                    if summary is not None:
                        outage.answered()
                        ticks += 1
                        paused = summary.pop("paused")
                        print("tick: " + ", ".join(f"{k} {v}" for k, v in summary.items()), flush=True)
                        for pause in paused:  # why nothing of that type moves: a spent rate limit, Strava down
                            print(f"  {pause['type']} jobs wait until {pause['until']}: {pause['reason']}", flush=True)
                        if args.once:
                            break
                    wait = max(0.0, started + args.every - clock.now())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), timeout=wait)
            finally:
                await strava.aclose()
        finally:
            await store.close()
        return ticks

    ticks = asyncio.run(run())
    print(f"stopped after {ticks} tick(s)")
    return 0


def register_cli(sub: Any) -> dict[str, Command]:
    """Add ``tick`` and ``schedule`` to ``syncsim``'s sub-parsers; return their handlers by name."""
    p = sub.add_parser(
        "tick",
        help="keep every job moving from this process: reclaim, continue due jobs, every --every seconds",
        description=(
            "What POST /api/cron/tick does, run in this process on a schedule (a server, a VM, or your laptop): "
            "submit due reconciles and webhook re-reads, reclaim expired leases, and continue due jobs under "
            "resumable rules, each tick within --limit seconds."
        ),
    )
    p.add_argument("--store", default=None, help="store URL (default: $SYNCSIM_STORE or the embedded SQLite file)")
    p.add_argument("--every", type=float, default=60.0, help="seconds between ticks (default 60)")
    p.add_argument("--limit", type=float, default=None, help="seconds a tick may run (default: --every)")
    p.add_argument("--once", action="store_true", help="tick once and exit")
    p.add_argument("--strava-url", help="Strava's base URL (default https://www.strava.com; e.g. a fake-strava)")
    p = sub.add_parser(
        "schedule",
        help="install (or --remove) the database's own schedule of POST /api/cron/tick (Supabase Cron)",
        description=(
            "Make the database call the app's tick route on a schedule, with pg_cron and pg_net (free on Supabase). "
            f"The bearer secret is ${CRON_SECRET_ENV}; it is kept in Vault, never in the job's text."
        ),
    )
    p.add_argument("--store", default=None, help="the database's postgresql:// URL (default: $SYNCSIM_STORE)")
    p.add_argument("--url", help="the tick route, e.g. https://<app>/api/cron/tick")
    p.add_argument("--every", default="1m", help="how often: 30s, 1m (default), 5m, 1h ...")
    p.add_argument("--remove", action="store_true", help="remove the schedule and its secret")
    return {"tick": _tick, "schedule": _schedule}
