"""``syncsim schedule``: the tick's schedule in the database (Supabase Cron), installed or removed."""

from __future__ import annotations

import argparse
import asyncio
import os
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


def register_cli(sub: Any) -> dict[str, Command]:
    """Add ``schedule`` to ``syncsim``'s sub-parsers; return its handler by name."""
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
    return {"schedule": _schedule}
