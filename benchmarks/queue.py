"""syncsim's PostgreSQL job queue side by side with Procrastinate, on one server, in one run.

What it measures (each system in its own database of the same server):

- **submit latency**: sequential ``JobRunner.submit`` of a ``noop`` job (a fresh user per job: the one
  active job per (user, type) rule) against Procrastinate's ``defer_async`` of a no-op task; p50/p99 in ms.
  The two are interleaved in blocks so that drift on a shared machine hits both alike.
- **throughput**: a queue pre-filled with N no-op jobs, drained by 1 and by 4 worker *processes*
  (``syncsim worker --burst`` against a Procrastinate worker with ``wait=False``, the same concurrency per
  process). Two figures: jobs / (last job finished - processes spawned), start-up included, and jobs /
  (last job finished - first job started), the queue alone; both from the times the database recorded.
  When the processes exited is printed too (a burst worker that lingers after the drain shows there).

Ratios are syncsim / Procrastinate. Targets: submit p99 < 10 ms; throughput >= 1.0x Procrastinate's.
Timings are noisy on a shared machine: compare the ratios of one run, not absolute numbers across runs.

    .venv/bin/python benchmarks/queue.py                    # a throwaway cluster, N = 2,000
    .venv/bin/python benchmarks/queue.py --jobs 5000 --breakdown
    .venv/bin/python benchmarks/queue.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path and its name would shadow the standard library's
# ``queue`` (which psycopg_pool and concurrent.futures import): drop that entry before anything imports it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import psycopg

from syncsim import defaults
from syncsim.jobs.handlers import register_builtin_handlers
from syncsim.jobs.runner import HandlerRegistry, JobRunner
from syncsim.jobs.worker import Worker
from syncsim.stores.postgres import PostgresStore
from syncsim.testing.postgres import TemporaryPostgres, database_url
from syncsim.text import format_table

#: The no-op task's name in Procrastinate (explicit, so the parent and its worker processes agree).
PROCRASTINATE_TASK = "bench_noop"
#: Submits per interleaved block of the latency measurement.
LATENCY_BLOCK = 250
#: Untimed submits first: connections opened, statements prepared (psycopg prepares after 5 executions).
WARMUP_SUBMITS = 50
#: Concurrent submitters while filling a queue (filling is not what is measured).
FILL_CONCURRENCY = 8
#: A worker process that has not drained its queue by then is broken, not slow.
DRAIN_TIMEOUT_S = 300.0


# -- results ---------------------------------------------------------------------------------------------------
@dataclass
class Latencies:
    """Submit latencies in seconds."""

    samples: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile, ``p`` in (0, 100]."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Drain:
    """One drain of a pre-filled queue by worker processes (seconds from spawning them)."""

    jobs: int
    #: The first job started, the last job finished, the last process exited.
    first_start_s: float
    drained_s: float
    exited_s: float

    @property
    def wall_rate(self) -> float:
        """Jobs / (spawn -> last job finished): start-up included."""
        return self.jobs / self.drained_s

    @property
    def span_rate(self) -> float:
        """Jobs / (first job started -> last job finished): the queue alone."""
        span = self.drained_s - self.first_start_s
        return self.jobs / span if span > 0 else float("nan")


# -- the two systems -------------------------------------------------------------------------------------------
def build_procrastinate_app(url: str) -> procrastinate.App:
    """A Procrastinate app on ``url`` with one async no-op task (used by the parent and its workers)."""
    # It warns that an app built in ``__main__`` cannot be found by its CLI: true, and not needed here.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name=PROCRASTINATE_TASK)
    async def bench_noop(batch: int) -> None:
        """Does nothing: measures the queue itself."""

    return app


class SyncsimSide:
    """syncsim's queue on its own database: ``JobRunner.submit`` and ``syncsim worker`` processes."""

    name = "syncsim"

    def __init__(self, url: str, *, concurrency: int, poll_s: float) -> None:
        self.url = url
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.store = PostgresStore.from_url(url)
        self.runner = JobRunner(self.store, handlers=register_builtin_handlers(HandlerRegistry()))

    async def setup(self) -> None:
        await self.store.migrate()

    async def close(self) -> None:
        await self.store.close()

    async def submit(self, batch: int) -> None:
        await self.runner.submit(uuid.uuid4(), {"batch": batch}, type="noop")

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "syncsim.cli", "worker", "--store", self.url, "--burst",
            "--concurrency", str(self.concurrency), "--poll", str(self.poll_s),
        ]  # fmt: skip

    async def outcome(self, batch: int) -> tuple[int, float, float]:
        """(completed jobs, first start, last completion) of one batch; times in UTC epoch seconds."""
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute(
                """select count(*), extract(epoch from min(started_at))::float8,
                          extract(epoch from max(completed_at))::float8
                   from sync_jobs where payload->>'batch' = %s and status = 'completed'""",
                (str(batch),),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), float(row[1] or "nan"), float(row[2] or "nan")


class ProcrastinateSide:
    """Procrastinate on its own database: ``defer_async`` and worker processes with ``wait=False``."""

    name = "procrastinate"

    def __init__(self, url: str, *, concurrency: int, poll_s: float) -> None:
        self.url = url
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.app = build_procrastinate_app(url)
        self._stack = contextlib.AsyncExitStack()

    async def setup(self) -> None:
        await self._stack.enter_async_context(self.app.open_async())
        await self.app.schema_manager.apply_schema_async()

    async def close(self) -> None:
        await self._stack.aclose()

    async def submit(self, batch: int) -> None:
        await self.app.tasks[PROCRASTINATE_TASK].defer_async(batch=batch)

    def worker_command(self) -> list[str]:
        return [
            sys.executable, str(Path(__file__).resolve()), "procrastinate-worker", "--url", self.url,
            "--concurrency", str(self.concurrency), "--poll", str(self.poll_s),
        ]  # fmt: skip

    async def outcome(self, batch: int) -> tuple[int, float, float]:
        """(succeeded jobs, first start, last success) of one batch, from Procrastinate's event log."""
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute(
                """with batch as (select id from procrastinate_jobs where args->>'batch' = %s
                                  and status = 'succeeded')
                   select (select count(*) from batch),
                          extract(epoch from min(e.at) filter (where e.type = 'started'))::float8,
                          extract(epoch from max(e.at) filter (where e.type = 'succeeded'))::float8
                   from procrastinate_events e join batch on e.job_id = batch.id""",
                (str(batch),),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), float(row[1] or "nan"), float(row[2] or "nan")


Side = SyncsimSide | ProcrastinateSide


async def run_procrastinate_worker(url: str, *, concurrency: int, poll_s: float) -> None:
    """One Procrastinate worker process: drain the queue and exit (``wait=False``), polling, no LISTEN."""
    app = build_procrastinate_app(url)
    async with app.open_async():
        await app.run_worker_async(
            wait=False,
            concurrency=concurrency,
            listen_notify=False,
            fetch_job_polling_interval=poll_s,
            install_signal_handlers=False,
        )


# -- measurements ----------------------------------------------------------------------------------------------
async def measure_latencies(sides: Sequence[Side], n: int, batch: int) -> dict[str, Latencies]:
    """``n`` sequential submits per side, interleaved in blocks, after untimed warm-up submits; all tagged
    ``batch`` and left pending (``n + WARMUP_SUBMITS`` jobs per side)."""
    for side in sides:
        for _ in range(WARMUP_SUBMITS):
            await side.submit(batch)
    result = {side.name: Latencies() for side in sides}
    done = 0
    while done < n:
        block = min(LATENCY_BLOCK, n - done)
        for side in sides:
            samples = result[side.name].samples
            for _ in range(block):
                started = time.perf_counter()
                await side.submit(batch)
                samples.append(time.perf_counter() - started)
        done += block
    return result


async def fill(side: Side, n: int, batch: int) -> None:
    """Put ``n`` pending jobs tagged ``batch`` in the side's queue (concurrently: not measured)."""
    left = iter(range(n))

    async def submitter() -> None:
        for _ in left:
            await side.submit(batch)

    await asyncio.gather(*(submitter() for _ in range(FILL_CONCURRENCY)))


async def drain(side: Side, processes: int, jobs: int, batch: int) -> Drain:
    """Spawn ``processes`` worker processes on the side's pre-filled queue and wait until they all exit."""
    started = time.time()  # wall clock: compared with the times the jobs' rows record
    procs = [
        await asyncio.create_subprocess_exec(
            *side.worker_command(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(processes)
    ]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate() for proc in procs)), timeout=DRAIN_TIMEOUT_S
        )
    except TimeoutError:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        raise SystemExit(f"{side.name}: workers did not drain {jobs} jobs within {DRAIN_TIMEOUT_S:g} s") from None
    exited = time.time()
    for proc, (_, stderr) in zip(procs, results, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"{side.name} worker exited {proc.returncode}: {stderr.decode()[-2000:]}")
    done, first_start, last_finish = await side.outcome(batch)
    if done != jobs:
        raise SystemExit(f"{side.name}: {done} of {jobs} jobs completed")
    return Drain(
        jobs=jobs, first_start_s=first_start - started, drained_s=last_finish - started, exited_s=exited - started
    )


@dataclass
class _Timed:
    calls: int = 0
    seconds: float = 0.0


class TimedStore:
    """A store proxy that counts the calls and time of each async method (the ``--breakdown`` profile)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self.timings: dict[str, _Timed] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not asyncio.iscoroutinefunction(value):
            return value
        timed = self.timings.setdefault(name, _Timed())

        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await value(*args, **kwargs)
            finally:
                timed.calls += 1
                timed.seconds += time.perf_counter() - started

        return call


async def breakdown(url: str, jobs: int, poll_s: float) -> list[dict[str, Any]]:
    """Drain ``jobs`` no-op jobs with one in-process syncsim worker; where does each job's time go?"""
    setup = SyncsimSide(url, concurrency=1, poll_s=poll_s)
    try:
        await fill(setup, jobs, batch=9_999)
    finally:
        await setup.close()
    store = PostgresStore.from_url(url)
    timed = TimedStore(store)
    runner = JobRunner(timed, handlers=register_builtin_handlers(HandlerRegistry()))  # type: ignore[arg-type]
    try:
        started = time.perf_counter()
        stats = await Worker(runner, concurrency=1, burst=True, poll_s=poll_s).run()
        wall = time.perf_counter() - started
    finally:
        await store.close()
    rows = [
        {
            "store call": name,
            "calls/job": f"{t.calls / stats.jobs_run:.2f}",
            "ms/call": f"{1000 * t.seconds / max(1, t.calls):.3f}",
            "ms/job": f"{1000 * t.seconds / stats.jobs_run:.3f}",
        }
        for name, t in sorted(timed.timings.items(), key=lambda kv: -kv[1].seconds)
    ]
    in_store = sum(t.seconds for t in timed.timings.values())
    rows.append({"store call": "(all store calls)", "ms/job": f"{1000 * in_store / stats.jobs_run:.3f}"})
    rows.append({"store call": "(outside the store)", "ms/job": f"{1000 * (wall - in_store) / stats.jobs_run:.3f}"})
    rows.append({"store call": "(wall)", "ms/job": f"{1000 * wall / stats.jobs_run:.3f}"})
    return rows


# -- report ----------------------------------------------------------------------------------------------------
def _row(metric: str, ours: float, theirs: float, *, fmt: str, higher_is_better: bool) -> dict[str, Any]:
    ratio = ours / theirs if theirs else float("nan")
    better = ratio >= 1.0 if higher_is_better else ratio <= 1.0
    return {
        "metric": metric,
        "syncsim": format(ours, fmt),
        "procrastinate": format(theirs, fmt),
        "ratio": f"{ratio:.2f}x",
        "syncsim is": "better" if better else "worse",
    }


# -- main ------------------------------------------------------------------------------------------------------
async def run(args: argparse.Namespace, server_url: str) -> int:
    tag = uuid.uuid4().hex[:8]
    urls = {name: await _create_database(server_url, f"bench_{name}_{tag}") for name in ("syncsim", "procr")}
    sides: list[Side] = [
        SyncsimSide(urls["syncsim"], concurrency=args.concurrency, poll_s=args.syncsim_poll),
        ProcrastinateSide(urls["procr"], concurrency=args.concurrency, poll_s=args.procrastinate_poll),
    ]
    try:
        for side in sides:
            await side.setup()
        if args.claim_index:
            await _add_claim_index(urls["syncsim"])
        version = await _server_version(urls["syncsim"])
        print(
            f"PostgreSQL {version}; {args.submits} submits, {args.jobs} no-op jobs per drain, "
            f"{args.concurrency} job(s) at a time per worker process; {os.cpu_count()} CPUs"
            + ("; syncsim with the proposed claim index" if args.claim_index else ""),
            flush=True,
        )

        batch = 0
        latencies = await measure_latencies(sides, args.submits, batch=batch)
        # The latency run left its jobs pending: the first drain of each system takes them.
        prefilled = {side.name: (batch, args.submits + WARMUP_SUBMITS) for side in sides}
        drains: dict[tuple[str, int], list[Drain]] = {}
        for _ in range(args.repeat):
            for processes in args.processes:
                for side in sides:  # alternate: drift on a shared machine hits both systems alike
                    if side.name in prefilled:
                        this_batch, jobs = prefilled.pop(side.name)
                    else:
                        batch += 1
                        this_batch, jobs = batch, args.jobs
                        await fill(side, jobs, this_batch)
                    result = await drain(side, processes, jobs, this_batch)
                    drains.setdefault((side.name, processes), []).append(result)
                    print(
                        f"  {side.name:<13} {processes} process(es): first job started at "
                        f"{result.first_start_s:5.2f} s, queue drained at {result.drained_s:5.2f} s, "
                        f"processes exited at {result.exited_s:5.2f} s",
                        flush=True,
                    )
        breakdown_rows = await breakdown(urls["syncsim"], args.jobs, args.syncsim_poll) if args.breakdown else []
    finally:
        for side in sides:
            await side.close()
        if not args.keep:
            for url in urls.values():
                await _drop_database(server_url, url)

    ours, theirs = latencies["syncsim"], latencies["procrastinate"]
    rows = [
        _row("submit p50 (ms)", 1000 * ours.percentile(50), 1000 * theirs.percentile(50), fmt=".3f",
             higher_is_better=False),
        _row("submit p99 (ms)", 1000 * ours.percentile(99), 1000 * theirs.percentile(99), fmt=".3f",
             higher_is_better=False),
    ]  # fmt: skip
    for processes in args.processes:
        best = {
            name: (
                max(d.wall_rate for d in drains[(name, processes)]),
                max(d.span_rate for d in drains[(name, processes)]),
            )
            for name in ("syncsim", "procrastinate")
        }
        rows.append(_row(f"throughput, {processes} proc, spawn->drained (jobs/s)", best["syncsim"][0],
                         best["procrastinate"][0], fmt=".0f", higher_is_better=True))  # fmt: skip
        rows.append(_row(f"throughput, {processes} proc, 1st start->drained (jobs/s)", best["syncsim"][1],
                         best["procrastinate"][1], fmt=".0f", higher_is_better=True))  # fmt: skip
    print()
    print(format_table(rows, ["metric", "syncsim", "procrastinate", "ratio", "syncsim is"]))
    p99_ms = 1000 * ours.percentile(99)
    print()
    print(f"target submit p99 < 10 ms: {p99_ms:.2f} ms -> {'met' if p99_ms < 10 else 'MISSED'}")
    for processes in args.processes:
        ratio = max(d.wall_rate for d in drains[("syncsim", processes)]) / max(
            d.wall_rate for d in drains[("procrastinate", processes)]
        )
        verdict = "met" if ratio >= 1.0 else "MISSED"
        print(f"target throughput >= 1.0x procrastinate, {processes} process(es): {ratio:.2f}x -> {verdict}")
    if breakdown_rows:
        print()
        print(f"syncsim, one in-process worker draining {args.jobs} no-op jobs: where the time goes")
        print(format_table(breakdown_rows, ["store call", "calls/job", "ms/call", "ms/job"]))
    return 0


async def _create_database(server_url: str, name: str) -> str:
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as conn:
        await conn.execute(f'create database "{name}"'.encode())
    return database_url(server_url, name)


async def _drop_database(server_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[-1].split("?")[0]
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as conn:
        await conn.execute(f'drop database if exists "{name}" with (force)'.encode())


async def _add_claim_index(url: str) -> None:
    """The index proposed for claiming: ``syncsim_claim_job`` orders the due pending jobs by
    ``(next_attempt_at, created_at)``; with only ``(next_attempt_at)`` indexed, a planner without fresh
    statistics sorts every pending row on each claim, so draining N jobs costs O(N^2)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "create index sync_jobs_pending_claim_idx on sync_jobs (next_attempt_at, created_at) "
            "where status = 'pending'"
        )


async def _server_version(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("show server_version")
        row = await cur.fetchone()
    return str(row[0]) if row else "?"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("procrastinate-worker", help="(internal) one Procrastinate worker process")
    worker.add_argument("--url", required=True)
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--submits", type=int, default=2000, help="sequential submits per system (default 2000)")
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs per drain (default 2000)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4], help="worker processes (default 1 4)")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs at a time per worker process (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="drains per configuration; the best counts")
    parser.add_argument(
        "--syncsim-poll", type=float, default=defaults.WORKER_POLL_S, help="syncsim worker --poll, s (its default)"
    )
    parser.add_argument(
        "--procrastinate-poll", type=float, default=0.1, help="Procrastinate fetch_job_polling_interval, s"
    )
    parser.add_argument("--breakdown", action="store_true", help="also profile syncsim's per-job store calls")
    parser.add_argument(
        "--claim-index",
        action="store_true",
        help="add the proposed (next_attempt_at, created_at) pending-jobs index to syncsim's database first",
    )
    parser.add_argument("--database-url", help="superuser URL of an existing server (default: a throwaway one)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "procrastinate-worker":
        asyncio.run(run_procrastinate_worker(args.url, concurrency=args.concurrency, poll_s=args.poll))
        return 0
    if args.database_url:
        return asyncio.run(run(args, args.database_url))
    with TemporaryPostgres(use_env=False) as server:
        assert server.url is not None
        return asyncio.run(run(args, server.url))


if __name__ == "__main__":
    sys.exit(main())
