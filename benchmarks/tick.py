"""A tick with nothing due, through the real app, beside the status poll: is the scheduled tick cheap?

The tick (``GET /api/cron/tick`` with ``Authorization: Bearer $CRON_SECRET``) is fired every minute whether or
not anything waits; most of the time nothing does. What such a tick costs is measured here against the request
users send most, the status poll (``GET /api/sync/{jobId}`` of one of the user's completed jobs), in the same
run, on the same server, on SQLite and on PostgreSQL.

For each store: a fresh database filled with ``--jobs`` completed ``strava_sync`` jobs of ``--users`` users
(each connected to Strava and reconciled just now, so the tick's upkeep has nothing to submit either); then the
whole server as deployed (:func:`syncsim.api.app.build_app`: hobby platform, ``resumable``, the Strava upkeep)
on uvicorn on 127.0.0.1 in its own process, and this driver sending ``--calls`` ticks and ``--calls`` polls,
one at a time on a keep-alive connection each, interleaved in blocks of ``BLOCK`` so that drift on a shared
machine hits both alike (after ``WARMUP`` untimed calls of each). Every tick must answer 200 having continued,
reclaimed and submitted nothing with nothing still due, and the store must hold the same jobs afterwards.

Printed: p50/p99/max of each route per store, and the tick / poll ratios. Target: tick p99 < 20 ms on both
stores. The throwaway PostgreSQL cluster runs with ``fsync=off``. Timings are noisy on a shared machine: compare
the ratios of one run, not absolute numbers across runs.

    .venv/bin/python benchmarks/tick.py
    .venv/bin/python benchmarks/tick.py --calls 2000 --stores postgresql
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, where benchmarks/queue.py would shadow the standard
# library's ``queue`` (which asyncio and anyio import): drop that entry before anything imports it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
# The repository's root instead, for ``benchmarks.api``: the loopback harness this script shares with api.py.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from benchmarks.api import KeepAliveClient, _free_port, _percentile, _stop, _wait_for_http
from syncsim.text import format_table

REPO = Path(__file__).resolve().parents[1]
SEED = 20240614
JOBS = 10_000  # completed jobs in the table
USERS = 10_000  # their users, each with stored tokens and a history reconciled just now: the upkeep reads them all
CALLS = 1_000  # timed calls of each route
BLOCK = 100  # calls of one route in a row before the other's turn
WARMUP = 50  # untimed calls of each route first (connections opened, statements prepared)
FILL_CONCURRENCY = 8  # concurrent writers while filling (filling is not what is measured)
TARGET_P99_MS = 20.0
JWT_SECRET = "syncsim-tick-benchmark-jwt-0123456789abcdef"
CRON_SECRET = "syncsim-tick-benchmark-cron-0123456789"


def user_id(index: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"syncsim-tick-benchmark:{SEED}:{index}")


# -- the store and the server --------------------------------------------------------------------------------------
async def fill(url: str, *, jobs: int, users: int) -> uuid.UUID:
    """Migrate ``url`` and fill it (module docstring); return a completed job of user 0, the one polled."""
    from syncsim.stores import open_store
    from syncsim.strava.models import StravaTokens

    store = open_store(url)
    await store.migrate()
    now = time.time()
    try:
        for index in range(users):
            tokens = StravaTokens(
                athlete_id=1_000_000 + index,
                access_token=f"access-{index}",
                refresh_token=f"refresh-{index}",
                expires_at=now + 6 * 3600,
                scope="read,activity:read_all",
            )
            await store.save_tokens(user_id(index), tokens, now=now)
            await store.mark_reconciled(user_id(index), now=now)
        polled: list[uuid.UUID] = []
        writers = min(FILL_CONCURRENCY, users)

        async def writer(w: int) -> None:
            # Each user belongs to one writer: a user has at most one active job of a type.
            for n in range(jobs):
                if n % users % writers != w:
                    continue
                user = user_id(n % users)
                job, created = await store.create_job(
                    user_id=user, type="strava_sync", payload={"mode": "full"}, max_attempts=3, now=time.time()
                )
                assert created, f"user {user} had an active job"
                claimed = await store.claim_job(worker_id="fill", now=time.time(), lease_s=60.0, job_id=job.id)
                assert claimed is not None and claimed.id == job.id
                result = {"mode": "full", "activities": 200, "removed": 0, "pages": 2, "requests": 3}
                done = await store.complete_job(job.id, worker_id="fill", result=result, now=time.time())
                assert done
                if n == 0:
                    polled.append(job.id)

        await asyncio.gather(*(writer(w) for w in range(writers)))
        return polled[0]
    finally:
        await store.close()


async def count_jobs(url: str) -> dict[str, int]:
    """How many jobs of each status ``url`` holds."""
    from syncsim.jobs.model import JobStatus
    from syncsim.stores import open_store

    store = open_store(url)
    try:
        return {s.value: len(await store.list_jobs(status=s, limit=10**6)) for s in JobStatus}
    finally:
        await store.close()


async def serve_api(args: argparse.Namespace) -> None:
    """The server as deployed (:func:`build_app`, ``CRON_SECRET`` from the environment) on uvicorn."""
    import uvicorn

    from syncsim.api.app import build_app

    app = build_app(args.store, platform="hobby", strategy="resumable", jwt_secret=JWT_SECRET, migrate=False)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, timeout_keep_alive=300
    )
    await uvicorn.Server(config).serve()


def spawn_api(store: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRON_SECRET": CRON_SECRET,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    command = [sys.executable, __file__, "--role=api", f"--port={port}", f"--store={store}"]
    return subprocess.Popen(command, env=env)


# -- the measurement -----------------------------------------------------------------------------------------------
async def measure(base_url: str, job_id: uuid.UUID, calls: int) -> dict[str, list[float]]:
    """``calls`` ticks and ``calls`` polls, interleaved in blocks; latencies in ms by route."""
    from syncsim.api.auth import mint_token

    port = int(base_url.rsplit(":", 1)[1])
    user_token = mint_token(user_id(0), JWT_SECRET, now=time.time())
    routes = {
        "tick": ("/api/cron/tick", {"Authorization": f"Bearer {CRON_SECRET}"}),
        "poll": (f"/api/sync/{job_id}", {"Authorization": f"Bearer {user_token}"}),
    }
    clients = {name: KeepAliveClient("127.0.0.1", port) for name in routes}
    samples: dict[str, list[float]] = {name: [] for name in routes}
    try:
        for timed, total in ((False, WARMUP), (True, calls)):
            done = 0
            while done < total:
                block = min(BLOCK, total - done)
                for name, (path, headers) in routes.items():
                    for _ in range(block):
                        started = time.perf_counter()
                        status, body = await clients[name].request("GET", path, headers)
                        elapsed_ms = (time.perf_counter() - started) * 1000
                        check(name, status, body)
                        if timed:
                            samples[name].append(elapsed_ms)
                done += block
    finally:
        for client in clients.values():
            await client.close()
    return samples


def check(route: str, status: int, body: bytes) -> None:
    """Every answer as it must be: a poll of the completed job; a tick that found and did nothing."""
    if status != 200:
        raise SystemExit(f"{route} answered {status}: {body[:300]!r}")
    answer = orjson.loads(body)
    if route == "poll" and answer.get("status") != "completed":
        raise SystemExit(f"the polled job is not completed: {answer}")
    if route == "tick":
        did = {k: v for k, v in answer.items() if k != "nextDueAt" and v}
        if did or answer.get("nextDueAt") is not None:
            raise SystemExit(f"a tick with nothing due did something: {answer}")


def run_store(name: str, url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    started = time.perf_counter()
    job_id = asyncio.run(fill(url, jobs=args.jobs, users=args.users))
    before = asyncio.run(count_jobs(url))
    print(f"{name}: {before} after filling in {time.perf_counter() - started:.1f} s", flush=True)
    port = _free_port()
    api = spawn_api(url, port)
    try:
        base_url = f"http://127.0.0.1:{port}"
        asyncio.run(_wait_for_http(base_url, api))
        samples = asyncio.run(measure(base_url, job_id, args.calls))
    finally:
        _stop(api)
    after = asyncio.run(count_jobs(url))
    if after != before:
        raise SystemExit(f"{name}: the ticks changed the jobs: {before} -> {after}")
    return samples


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    print(
        f"\nA tick with nothing due vs the status poll: {args.calls} calls of each through the app on uvicorn "
        f"(hobby, resumable), {args.jobs:,} completed jobs of {args.users:,} users in the table\n"
    )
    rows: list[dict[str, Any]] = []
    for store, samples in results.items():
        for route in ("tick", "poll"):
            values = samples[route]
            rows.append(
                {
                    "store": store,
                    "route": "GET /api/cron/tick" if route == "tick" else "GET /api/sync/{id}",
                    "n": len(values),
                    "p50 ms": f"{_percentile(values, 0.5):.2f}",
                    "p99 ms": f"{_percentile(values, 0.99):.2f}",
                    "max ms": f"{max(values):.2f}",
                }
            )
    print(format_table(rows, list(rows[0])))
    print()
    for store, samples in results.items():
        tick, poll = samples["tick"], samples["poll"]
        p99 = _percentile(tick, 0.99)
        verdict = "met" if p99 < TARGET_P99_MS else "MISSED"
        print(
            f"{store}: tick / poll p50 {_percentile(tick, 0.5) / _percentile(poll, 0.5):.2f}x, "
            f"p99 {p99 / _percentile(poll, 0.99):.2f}x; tick p99 {p99:.2f} ms: target < {TARGET_P99_MS:g} ms {verdict}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"completed jobs in the table (default {JOBS})")
    parser.add_argument("--users", type=int, default=USERS, help=f"their users (default {USERS})")
    parser.add_argument("--calls", type=int, default=CALLS, help=f"timed calls of each route (default {CALLS})")
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--role", choices=["driver", "api"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "api":
        asyncio.run(serve_api(args))
        return 0
    if args.users < 1 or args.jobs < 1 or args.calls < 1:
        parser.error("--jobs, --users and --calls must be >= 1")
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="syncsim-tick-bench-") as tmp:
        if "sqlite" in args.stores:
            results["sqlite"] = run_store("sqlite", f"sqlite:///{Path(tmp) / 'tick.db'}", args)
        if "postgresql" in args.stores:
            from syncsim.testing.postgres import TemporaryPostgres

            with TemporaryPostgres(use_env=False) as server:
                results["postgresql"] = run_store("postgresql", server.create_database("bench_tick"), args)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
