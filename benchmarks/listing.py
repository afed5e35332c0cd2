"""What a listing costs the store: this schema and these queries against the ones before migration 0015.

A full sync writes every page it lists (``upsert_activities``); a reconcile or an incremental sync reads what it
has of each page (``stored_activities``) and marks the unchanged rows seen (``mark_activities_seen``); a full
listing ends by deleting what it did not see (``delete_activities_unseen_since``). Measured on a SQLite file and
on PostgreSQL (a throwaway cluster), ``--users`` users with ``--history`` activities each, pages of 200:

- **this** — the schema and queries as they are;
- **before** — the same store with the index on (user_id, seen_at) that migration 0015 dropped, and on SQLite
  the page's rows found through ``user_id = ?`` (the planner then walks the user's whole history for each page,
  which ``+user_id`` now prevents).

The two sides alternate ``--repeat`` times, each on a fresh database; the best time of each is printed, with
this / before. Timings are noisy on a shared machine: compare within one run.

    .venv/bin/python benchmarks/listing.py
    .venv/bin/python benchmarks/listing.py --history 20000 --users 3 --repeat 3
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, where benchmarks/queue.py would shadow the standard
# library's ``queue`` (which psycopg_pool imports): drop that entry before anything imports it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import syncsim.stores.sqlite as sqlite_store
from syncsim.stores import Store, open_store
from syncsim.strava.models import Activity
from syncsim.testing.postgres import TemporaryPostgres
from syncsim.text import format_table

PAGE = 200
T0 = 1_767_571_200.0
#: What migration 0015 dropped, per dialect.
SEEN_INDEX = {
    "sqlite": "CREATE INDEX strava_activities_user_seen ON strava_activities (user_id, seen_at)",
    "postgresql": "create index strava_activities_user_seen_idx on strava_activities (user_id, seen_at)",
}
BY_IDS_BEFORE = "user_id = ? AND id IN ({marks})"
STEPS = ("full listing (upsert)", "reconcile (read + mark seen)", "end of listing (delete unseen)")


def _pages(user: int, history: int) -> list[list[Activity]]:
    """``history`` activities of one user, newest first, in pages of :data:`PAGE`."""
    items = [
        Activity.from_json(
            {
                "id": (user + 1) * 10**10 + i,
                "name": f"Run {i}",
                "sport_type": "Run",
                "start_date": datetime.fromtimestamp(T0 - i * 3_600, UTC).isoformat(),
                "distance": 5_000.0 + i,
                "moving_time": 1_500,
                "elapsed_time": 1_600,
                "total_elevation_gain": 12.0,
                "athlete": {"id": 1_000 + user},
            }
        )
        for i in range(history)
    ]
    return [items[k : k + PAGE] for k in range(0, history, PAGE)]


async def _execute(store: Store, statement: str) -> None:
    if isinstance(store, sqlite_store.SQLiteStore):
        store.conn.execute(statement)
        return
    async with store._connection("benchmark set-up") as conn:  # type: ignore[attr-defined]
        await conn.execute(statement)


async def _run(url: str, dialect: str, before: bool, histories: list[list[list[Activity]]]) -> list[float]:
    """Seconds of each of :data:`STEPS` for every user, on a fresh store at ``url``."""
    store = open_store(url)
    await store.migrate()
    if before:
        await _execute(store, SEEN_INDEX[dialect])
    by_ids = sqlite_store._BY_IDS
    sqlite_store._BY_IDS = BY_IDS_BEFORE if before else by_ids
    users = [uuid.UUID(int=k + 1) for k in range(len(histories))]
    times = [0.0, 0.0, 0.0]
    try:
        for user, pages in zip(users, histories, strict=True):
            started = time.perf_counter()
            for page in pages:
                await store.upsert_activities(user, page, now=T0)
            times[0] += time.perf_counter() - started
            started = time.perf_counter()
            for page in pages:
                stored = await store.stored_activities(user, [a.id for a in page])
                await store.mark_activities_seen(user, list(stored), now=T0 + 60)
            times[1] += time.perf_counter() - started
            started = time.perf_counter()
            removed = await store.delete_activities_unseen_since(user, T0 + 60)
            times[2] += time.perf_counter() - started
            assert removed == 0, removed
    finally:
        sqlite_store._BY_IDS = by_ids
        await store.close()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3, help="users (default 3)")
    parser.add_argument("--history", type=int, default=10_000, help="activities per user (default 10,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side per store (default 3)")
    args = parser.parse_args()
    histories = [_pages(k, args.history) for k in range(args.users)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="syncsim-bench-") as tmp, TemporaryPostgres(use_env=False) as server:
        server.start()
        best: dict[tuple[str, bool], list[float]] = {}
        n = 0
        for _ in range(args.repeat):
            for dialect in ("sqlite", "postgresql"):
                for before in (False, True):
                    n += 1
                    url = f"sqlite:///{tmp}/s{n}.db" if dialect == "sqlite" else server.create_database(f"b{n}")
                    times = await _run(url, dialect, before, histories)
                    old = best.get((dialect, before))
                    best[(dialect, before)] = (
                        times if old is None else [min(a, b) for a, b in zip(old, times, strict=True)]
                    )
    for dialect in ("sqlite", "postgresql"):
        for k, step in enumerate(STEPS):
            this, peer = best[(dialect, False)][k], best[(dialect, True)][k]
            rows.append(
                {
                    "store": dialect,
                    "step": step,
                    "this s": f"{this:.3f}",
                    "before s": f"{peer:.3f}",
                    "this / before": f"{this / peer:.2f}x",
                }
            )
    print(f"{args.users} users x {args.history:,} activities, pages of {PAGE}, best of {args.repeat} runs per side")
    print(format_table(rows, list(rows[0])))


if __name__ == "__main__":
    asyncio.run(main())
