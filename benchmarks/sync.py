"""How close a Strava sync gets to Strava's own latency, how fast activities are stored, and what a reconcile costs.

1. **Summary sync wall time vs its lower bound.** A heavy athlete (5,000 activities) on FakeStrava (in-process
   httpx transport, real time) answering every request ``L`` seconds after it arrived (default 0.05; building the
   page is part of ``L``, as Strava's own work is part of its latency). A full sync needs
   ``list_requests_needed(5000) = 28`` list requests (keyset pages: see :mod:`syncsim.strava.sync`), one after
   the other, so it cannot take less than ``28 L``. The ``strava_sync`` job (claim -> pages -> upserts ->
   checkpoints -> complete) is timed against that bound, on SQLite and on PostgreSQL. Target: <= 1.05x the bound.
2. **Activities stored per second**, on both stores: the same sync with ``L = 0`` (end to end: FakeStrava
   generating pages, JSON parsing, upserts, checkpoints), and ``store.upsert_activities`` alone on 5,000
   parsed activities, in 200-row pages (what the sync does) and in one batch, first inserting new rows and then
   updating them (a re-sync). Target: >= 20,000 activities/s on PostgreSQL.
3. **A detail sync, 4 requests in flight vs 1.** A 400-activity athlete synced with ``detail: true`` at
   ``--detail-latency`` (default 0.25 s) per request: ``list_requests_needed(400) = 5`` list requests, one after
   the other, and 400 ``GET /activities/{id}``, ``concurrency`` (default
   :data:`~syncsim.defaults.DETAIL_CONCURRENCY` = 4) at a time. Its bound is ``(5 + ceil(400 / 4)) L`` = 26.25 s;
   target <= 1.2x. (A page's details are all stored before the cursor moves on, so the rounds go page by page:
   200, 199 and 1 new activities make 50 + 50 + 1 = 101 rounds, a floor 1 % above the bound.) Beside it, the
   same sync with 1 in flight (serial; bound ``(5 + 400) L`` = 101.25 s), on the first store, and the speed-up.
   The serial sync runs at the same time as the others (each waits on FakeStrava almost all the time), so the
   whole run takes about as long as it alone.
4. **A reconcile of an unchanged history.** A 2,000-activity athlete whose activities a detail sync stored, then
   ``mode: reconcile`` with ``detail: true`` at the same latency: Strava requests by kind. It must cost
   ``list_requests_needed(2000) = 13`` list requests (200 new, then 199 new a page after re-reading the
   boundary second, a page of the boundary alone, the empty page) and no detail request, and its wall time is
   printed beside ``13 L``.

Every figure of 1 and 2 is the best of ``--repeat`` runs (a shared machine only ever slows a run down); 3 and 4
run once. The throwaway PostgreSQL cluster runs with ``fsync=off``: a durable server writes slower. About two
minutes with the defaults, most of it the serial detail sync.

    .venv/bin/python benchmarks/sync.py
    .venv/bin/python benchmarks/sync.py --latency 0.1 --repeat 5 --database-url postgresql://…
    .venv/bin/python benchmarks/sync.py --stores sqlite --detail-activities 200
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
import math
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from syncsim import defaults
from syncsim.clock import SystemClock
from syncsim.jobs.model import JobStatus
from syncsim.jobs.runner import HandlerRegistry, JobRunner
from syncsim.stores import Store, open_store
from syncsim.strava.fake import FakeStrava, LatencyModel
from syncsim.strava.models import Activity
from syncsim.strava.sync import PER_PAGE, list_requests_needed, register_strava_sync
from syncsim.testing.postgres import TemporaryPostgres, database_url
from syncsim.text import format_table

#: What the issues ask of the figures.
TARGET_BOUND_RATIO = 1.05
TARGET_PG_ACTIVITIES_PER_S = 20_000.0
TARGET_DETAIL_BOUND_RATIO = 1.2
SEED = 7
#: Rate limits out of the way: they are not what is measured (one FakeStrava serves every run).
NO_LIMITS = (10**9, 10**9)
LIST_PATH = "/api/v3/athlete/activities"
DETAIL_PREFIX = "/api/v3/activities/"


def new_fake() -> FakeStrava:
    """The benchmark's one FakeStrava. Its activity ids encode the athlete's sequence number, so every athlete
    added to it has ids of its own: a new athlete's upserts are inserts, never updates of an earlier run's rows."""
    return FakeStrava(clock=SystemClock(), seed=SEED, read_limits=NO_LIMITS, overall_limits=NO_LIMITS)


async def new_user(store: Store, fake: FakeStrava, activities: int) -> tuple[uuid.UUID, int]:
    """A new FakeStrava athlete with ``activities`` activities, connected as a new user; (user, athlete id)."""
    athlete = fake.add_athlete(activities=activities)
    user = uuid.uuid4()
    await store.save_tokens(user, athlete.tokens(), now=fake.clock.now())
    return user, athlete.athlete_id


def requests_by_kind(fake: FakeStrava, athlete_id: int, since: int) -> Counter[str]:
    """The athlete's requests FakeStrava received after its ``since``-th: ``list``, ``detail`` or the path."""
    kinds: Counter[str] = Counter()
    for request in fake.requests[since:]:
        if request.athlete_id != athlete_id:
            continue
        if request.path == LIST_PATH:
            kinds["list"] += 1
        elif request.path.startswith(DETAIL_PREFIX):
            kinds["detail"] += 1
        else:
            kinds[request.path] += 1
    return kinds


async def timed_job(
    store: Store, fake: FakeStrava, user: uuid.UUID, athlete_id: int, payload: dict[str, Any]
) -> tuple[float, Counter[str]]:
    """One ``strava_sync`` job of ``user`` with ``payload``: (wall seconds, the athlete's requests by kind)."""
    client = fake.client(tokens=store, rng=random.Random(SEED))
    runner = JobRunner(store, handlers=register_strava_sync(HandlerRegistry()), resources={"strava": client})
    since = len(fake.requests)
    try:
        job, _ = await runner.submit(user, payload)
        started = time.perf_counter()
        done = await runner.run_next(job_id=job.id)
        wall = time.perf_counter() - started
    finally:
        await client.aclose()
    if done is None or done.status is not JobStatus.COMPLETED:
        raise SystemExit(f"the {payload} sync did not complete on {store.url}: {done}")
    return wall, requests_by_kind(fake, athlete_id, since)


async def sync_seconds(store: Store, fake: FakeStrava, activities: int, latency_s: float) -> float:
    """Wall seconds of one full summary sync of a new athlete, after checking that it stored every activity and
    made exactly the list requests it must."""
    fake.latency = LatencyModel(median_s=latency_s)
    user, athlete_id = await new_user(store, fake, activities)
    wall, kinds = await timed_job(store, fake, user, athlete_id, {"mode": "full"})
    stored = await store.count_activities(user)
    if stored != activities:
        raise SystemExit(f"the sync stored {stored} of {activities} activities on {store.url}")
    expected = Counter({"list": list_requests_needed(activities)})
    if kinds != expected:
        raise SystemExit(f"expected {dict(expected)} requests, FakeStrava saw {dict(kinds)}")
    return wall


async def detail_sync(store: Store, fake: FakeStrava, activities: int, concurrency: int) -> float:
    """Wall seconds of one full detail sync of a new athlete with ``concurrency`` detail requests in flight,
    after checking that it made its list requests and one detail request per activity, and stored them all."""
    user, athlete_id = await new_user(store, fake, activities)
    payload = {"mode": "full", "detail": True, "concurrency": concurrency}
    wall, kinds = await timed_job(store, fake, user, athlete_id, payload)
    expected = Counter({"list": list_requests_needed(activities), "detail": activities})
    if kinds != expected:
        raise SystemExit(f"{store.url}: expected {dict(expected)} requests, FakeStrava saw {dict(kinds)}")
    stored = await store.stored_activities(user)
    if len(stored) != activities or not all(a.detailed for a in stored.values()):
        raise SystemExit(f"{store.url}: the detail sync stored {len(stored)} of {activities}, not all detailed")
    return wall


def parsed_pages(fake: FakeStrava, activities: int) -> list[list[Activity]]:
    """A new athlete's activities as the sync receives them: parsed, in pages of 200 (oldest first)."""
    athlete = fake.add_athlete(activities=activities)
    pages = []
    for page in range(1, math.ceil(activities / PER_PAGE) + 1):
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


# -- 1 and 2: the summary sync and the stores' write rates ---------------------------------------------------------
async def summary_and_rates(args: argparse.Namespace, stores: dict[str, Store], fake: FakeStrava) -> None:
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
    pg_rates: list[float] = []
    for name, store in stores.items():
        best, median = await best_of(args.repeat, sync_seconds, store, fake, n, latency)
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


def _rate_row(store: str, what: str, activities: int, best_s: float, median_s: float) -> dict[str, Any]:
    return {
        "store": store,
        "what": what,
        "activities/s": f"{activities / best_s:,.0f}",
        "median /s": f"{activities / median_s:,.0f}",
    }


# -- 3 and 4: the detail sync, in flight and serial, and the reconcile ---------------------------------------------
async def details_and_reconcile(args: argparse.Namespace, stores: dict[str, Store], fake: FakeStrava) -> None:
    n, latency, concurrency = args.detail_activities, args.detail_latency, args.concurrency
    pages = list_requests_needed(n)
    bound = (pages + math.ceil(n / concurrency)) * latency
    serial_bound = (pages + n) * latency
    history = args.reconcile_activities
    list_pages = list_requests_needed(history)

    # The reconciled histories are stored first, at L = 0 (the latency is FakeStrava's, shared by every sync).
    fake.latency = LatencyModel(median_s=0.0)
    histories: dict[str, tuple[uuid.UUID, int]] = {}
    for name, store in stores.items():
        user, athlete_id = await new_user(store, fake, history)
        await timed_job(store, fake, user, athlete_id, {"mode": "full", "detail": True})
        histories[name] = (user, athlete_id)
    print(f"\n{history} activities stored with their details for the reconcile, on {', '.join(stores)}", flush=True)

    fake.latency = LatencyModel(median_s=latency)
    first = next(iter(stores))
    print(
        f"detail syncs of {n} activities at L = {latency:g} s: {concurrency} in flight on {', '.join(stores)}, "
        f"1 in flight on {first} meanwhile (about {serial_bound:.0f} s)",
        flush=True,
    )
    serial = asyncio.ensure_future(detail_sync(stores[first], fake, n, 1))
    try:
        in_flight: dict[str, float] = {}
        for name, store in stores.items():
            in_flight[name] = await detail_sync(store, fake, n, concurrency)
            print(f"  {name}: {concurrency} in flight: {in_flight[name]:.2f} s", flush=True)
        reconciles: dict[str, tuple[float, Counter[str]]] = {}
        for name, store in stores.items():
            user, athlete_id = histories[name]
            reconciles[name] = await timed_job(store, fake, user, athlete_id, {"mode": "reconcile", "detail": True})
            print(f"  {name}: reconcile: {reconciles[name][0]:.2f} s", flush=True)
        serial_s = await serial
    finally:
        if not serial.done():
            serial.cancel()
            await asyncio.gather(serial, return_exceptions=True)

    print(
        f"\nA detail sync of {n} activities at L = {latency:g} s: {pages} list requests + {n} detail requests; "
        f"bound with {concurrency} in flight ({pages} + ceil({n}/{concurrency})) L = {bound:.2f} s, "
        f"serial ({pages} + {n}) L = {serial_bound:.2f} s\n"
    )
    rows: list[dict[str, Any]] = []
    for name, wall in in_flight.items():
        rows.append(
            {
                "store": name,
                "in flight": concurrency,
                "wall (s)": f"{wall:.2f}",
                "bound (s)": f"{bound:.2f}",
                "wall / bound": f"{wall / bound:.3f}x",
                f"target <= {TARGET_DETAIL_BOUND_RATIO}x": "met"
                if wall / bound <= TARGET_DETAIL_BOUND_RATIO
                else "MISSED",
            }
        )
    rows.append(
        {
            "store": first,
            "in flight": 1,
            "wall (s)": f"{serial_s:.2f}",
            "bound (s)": f"{serial_bound:.2f}",
            "wall / bound": f"{serial_s / serial_bound:.3f}x",
            f"target <= {TARGET_DETAIL_BOUND_RATIO}x": "(serial)",
        }
    )
    print(format_table(rows, list(rows[0])))
    print(f"\nspeed-up on {first}, serial / {concurrency} in flight: {serial_s / in_flight[first]:.2f}x")

    print(
        f"\nA reconcile (detail: true) of an unchanged {history}-activity history at L = {latency:g} s: "
        f"list_requests_needed({history}) = {list_pages} list requests, no detail\n"
    )
    rows = []
    for name, (wall, kinds) in reconciles.items():
        other = sum(count for kind, count in kinds.items() if kind not in ("list", "detail"))
        only_lists = kinds == Counter({"list": list_pages})
        rows.append(
            {
                "store": name,
                "list requests": kinds["list"],
                "detail requests": kinds["detail"],
                "other requests": other,
                "list pages only": "yes" if only_lists else "NO",
                "wall (s)": f"{wall:.2f}",
                f"{list_pages} L (s)": f"{list_pages * latency:.2f}",
                "wall / bound": f"{wall / (list_pages * latency):.3f}x",
            }
        )
    print(format_table(rows, list(rows[0])))


async def run(args: argparse.Namespace, urls: dict[str, str]) -> int:
    stores = {name: open_store(url) for name, url in urls.items()}
    try:
        for store in stores.values():
            await store.migrate()
        fake = new_fake()
        await summary_and_rates(args, stores, fake)
        if args.detail_activities > 0:
            await details_and_reconcile(args, stores, fake)
    finally:
        for store in stores.values():
            await store.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activities", type=int, default=5000, help="the athlete's activities (default 5000)")
    parser.add_argument("--latency", type=float, default=0.05, help="FakeStrava's latency per request, s")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts (default 3)")
    parser.add_argument(
        "--detail-activities", type=int, default=400, help="the detail sync's activities (default 400; 0: skip 3, 4)"
    )
    parser.add_argument(
        "--detail-latency", type=float, default=0.25, help="latency per request of 3 and 4, s (default 0.25)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.DETAIL_CONCURRENCY,
        help=f"detail requests in flight (default {defaults.DETAIL_CONCURRENCY})",
    )
    parser.add_argument("--reconcile-activities", type=int, default=2000, help="the reconciled history (default 2000)")
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
