"""How close a full Strava sync gets to Strava's own latency, and how fast activities are stored.

1. **Sync wall time vs its lower bound.** A heavy athlete (5,000 activities) on FakeStrava (in-process httpx
   transport, real time) answering every request ``L`` seconds after it arrived (default 0.05; building the
   page is part of ``L``, as Strava's own work is part of its latency). A full sync needs
   ``ceil(5000 / 200) + 1 = 26`` list requests, one after the other, so it cannot take less than ``26 L``.
   The ``strava_sync`` job (claim -> pages -> upserts -> checkpoints -> complete) is timed against that bound,
   on SQLite and on PostgreSQL. Target: <= 1.1x the bound.
2. **Activities stored per second**, on both stores: the same sync with ``L = 0`` (end to end: FakeStrava
   generating pages, JSON parsing, upserts, checkpoints), and ``store.upsert_activities`` alone on 5,000
   parsed activities, in 200-row pages (what the sync does) and in one batch, first inserting new rows and then
   updating them (a re-sync). Target: >= 20,000 activities/s on PostgreSQL.

Every figure is the best of ``--repeat`` runs (a shared machine only ever slows a run down). The throwaway
PostgreSQL cluster runs with ``fsync=off``: a durable server writes slower.

    .venv/bin/python benchmarks/sync.py
    .venv/bin/python benchmarks/sync.py --latency 0.1 --repeat 5 --database-url postgresql://…
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, where benchmarks/queue.py would shadow the standard
# library's ``queue`` (which psycopg_pool and httpx import): drop that entry before anything imports it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from syncsim.cli import format_table
from syncsim.clock import SystemClock
from syncsim.jobs.model import JobStatus
from syncsim.jobs.runner import HandlerRegistry, JobRunner
from syncsim.stores import Store, open_store
from syncsim.strava.fake import FakeStrava, LatencyModel
from syncsim.strava.models import Activity
from syncsim.strava.sync import PER_PAGE, list_requests_needed, register_strava_sync
from syncsim.testing.postgres import TemporaryPostgres, database_url

#: What the issue asks of the two figures.
TARGET_BOUND_RATIO = 1.1
TARGET_PG_ACTIVITIES_PER_S = 20_000.0
SEED = 7
#: Rate limits out of the way: they are not what is measured (one FakeStrava serves every run).
NO_LIMITS = (10**9, 10**9)


def new_fake() -> FakeStrava:
    """The benchmark's one FakeStrava. Its activity ids encode the athlete's sequence number, so every athlete
    added to it has ids of its own: a new athlete's upserts are inserts, never updates of an earlier run's rows."""
    return FakeStrava(clock=SystemClock(), seed=SEED, read_limits=NO_LIMITS, overall_limits=NO_LIMITS)


async def timed_sync(store: Store, fake: FakeStrava, activities: int, latency_s: float) -> dict[str, float]:
    """One full ``strava_sync`` job of a new athlete; wall seconds, list requests and activities stored."""
    clock = fake.clock
    fake.latency = LatencyModel(median_s=latency_s)
    athlete = fake.add_athlete(activities=activities)
    user = uuid.uuid4()
    await store.save_tokens(user, athlete.tokens(), now=clock.now())
    client = fake.client(tokens=store, rng=random.Random(SEED))
    runner = JobRunner(store, handlers=register_strava_sync(HandlerRegistry()), resources={"strava": client})
    try:
        await runner.submit(user, {"mode": "full"})
        started = time.perf_counter()
        done = await runner.run_next()
        wall = time.perf_counter() - started
    finally:
        await client.aclose()
    if done is None or done.status is not JobStatus.COMPLETED:
        raise SystemExit(f"the sync did not complete on {store.url}: {done}")
    stored = await store.count_activities(user)
    if stored != activities:
        raise SystemExit(f"the sync stored {stored} of {activities} activities on {store.url}")
    requests = sum(
        1 for r in fake.requests if r.athlete_id == athlete.athlete_id and r.path.endswith("/athlete/activities")
    )
    return {"wall_s": wall, "requests": requests, "activities": stored}


async def sync_seconds(store: Store, fake: FakeStrava, activities: int, latency_s: float) -> float:
    """Wall seconds of one full sync, after checking it made exactly the list requests it must."""
    result = await timed_sync(store, fake, activities, latency_s)
    expected = list_requests_needed(activities)
    if result["requests"] != expected:
        raise SystemExit(f"expected {expected} list requests, FakeStrava saw {result['requests']:.0f}")
    return result["wall_s"]


def parsed_pages(fake: FakeStrava, activities: int) -> list[list[Activity]]:
    """A new athlete's activities as the sync receives them: parsed, in pages of 200 (oldest first)."""
    athlete = fake.add_athlete(activities=activities)
    pages = []
    for page in range(1, list_requests_needed(activities)):
        raw = orjson.loads(fake.page_json(athlete.athlete_id, page=page, per_page=PER_PAGE, after=0))
        pages.append([Activity.from_json(item) for item in raw])
    return pages


async def timed_upserts(store: Store, pages: list[list[Activity]], *, one_batch: bool) -> tuple[float, float]:
    """Seconds to insert the activities of ``pages`` for a new user, then to upsert them again (updates)."""
    user = uuid.uuid4()
    batches = [[a for page in pages for a in page]] if one_batch else pages
    times = []
    for _ in ("insert", "update"):
        started = time.perf_counter()
        for batch in batches:
            await store.upsert_activities(user, batch, now=time.time())
        times.append(time.perf_counter() - started)
    return times[0], times[1]


async def best_of(repeat: int, measure: Callable[..., Awaitable[float]], *args: Any) -> tuple[float, float]:
    """(best, median) of ``repeat`` runs of ``measure(*args)`` (seconds)."""
    runs = [await measure(*args) for _ in range(repeat)]
    return min(runs), statistics.median(runs)


async def run(args: argparse.Namespace, stores: dict[str, str]) -> int:
    n, latency = args.activities, args.latency
    requests = list_requests_needed(n)
    bound = requests * latency
    print(
        f"{n} activities, {requests} list requests of L = {latency:g} s: lower bound {bound:.3f} s; "
        f"best of {args.repeat} run(s)",
        flush=True,
    )
    sync_rows: list[dict[str, Any]] = []
    rate_rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    pg_rates: list[float] = []
    fake = new_fake()
    for name, url in stores.items():
        store = open_store(url)
        try:
            await store.migrate()

            best, median = await best_of(args.repeat, sync_seconds, store, fake, n, latency)
            ratios[name] = best / bound
            sync_rows.append(
                {
                    "store": name,
                    "sync wall (s)": f"{best:.3f}",
                    "median (s)": f"{median:.3f}",
                    f"bound {requests} L (s)": f"{bound:.3f}",
                    "wall / bound": f"{best / bound:.3f}x",
                    "beyond the bound per page (ms)": f"{1000 * (best - bound) / requests:.1f}",
                    f"target <= {TARGET_BOUND_RATIO}x": "met" if best / bound <= TARGET_BOUND_RATIO else "MISSED",
                }
            )
            print(f"  {name}: sync with L = {latency:g} s: {best:.3f} s", flush=True)

            best0, median0 = await best_of(args.repeat, sync_seconds, store, fake, n, 0.0)
            rate_rows.append(_rate_row(name, "full sync, L = 0 (end to end)", n, best0, median0))
            print(f"  {name}: sync with L = 0: {best0:.3f} s", flush=True)

            for one_batch, label in ((False, "200-row pages"), (True, f"one batch of {n}")):
                inserts: list[float] = []
                updates: list[float] = []
                for _ in range(args.repeat):
                    pages = parsed_pages(fake, n)
                    insert_s, update_s = await timed_upserts(store, pages, one_batch=one_batch)
                    inserts.append(insert_s)
                    updates.append(update_s)
                for kind, runs in (("insert", inserts), ("update", updates)):
                    row = _rate_row(name, f"upsert_activities, {label}, {kind}", n, min(runs), statistics.median(runs))
                    rate_rows.append(row)
                    if name == "postgresql":
                        pg_rates.append(n / min(runs))
                print(f"  {name}: upsert_activities in {label}: done", flush=True)
        finally:
            await store.close()

    print()
    print(format_table(sync_rows, list(sync_rows[0])))
    print()
    columns = ["store", "what", "activities/s", "median /s"]
    if pg_rates:
        columns.append(f"vs {TARGET_PG_ACTIVITIES_PER_S:,.0f}/s")
        for row in rate_rows:
            if row["store"] == "postgresql":
                row[columns[-1]] = f"{float(row['activities/s'].replace(',', '')) / TARGET_PG_ACTIVITIES_PER_S:.2f}x"
    print(format_table(rate_rows, columns))
    if "sqlite" in stores and "postgresql" in stores:
        print()
        for sqlite_row, pg_row in zip(
            [r for r in rate_rows if r["store"] == "sqlite"],
            [r for r in rate_rows if r["store"] == "postgresql"],
            strict=True,
        ):
            ratio = float(pg_row["activities/s"].replace(",", "")) / float(sqlite_row["activities/s"].replace(",", ""))
            print(f"postgresql / sqlite, {pg_row['what']}: {ratio:.2f}x")
    return 0


def _rate_row(store: str, what: str, activities: int, best_s: float, median_s: float) -> dict[str, Any]:
    return {
        "store": store,
        "what": what,
        "activities/s": f"{activities / best_s:,.0f}",
        "median /s": f"{activities / median_s:,.0f}",
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activities", type=int, default=5000, help="the athlete's activities (default 5000)")
    parser.add_argument("--latency", type=float, default=0.05, help="FakeStrava's latency per request, s")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts (default 3)")
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--database-url", help="superuser URL of an existing PostgreSQL (default: a throwaway one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="syncsim-bench-") as tmp:
        stores: dict[str, str] = {}
        if "sqlite" in args.stores:
            stores["sqlite"] = f"sqlite:///{Path(tmp) / 'bench.db'}"
        if "postgresql" not in args.stores:
            return asyncio.run(run(args, stores))
        server = TemporaryPostgres(use_env=False)
        server_url = args.database_url or server.start()
        name = f"bench_sync_{uuid.uuid4().hex[:8]}"
        try:
            if args.database_url:
                import psycopg

                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(f'create database "{name}"'.encode())
                stores["postgresql"] = database_url(server_url, name)
            else:
                stores["postgresql"] = server.create_database(name)
            return asyncio.run(run(args, stores))
        finally:
            if args.database_url:
                import psycopg

                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(f'drop database if exists "{name}" with (force)'.encode())
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
