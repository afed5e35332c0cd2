"""``syncsim migrate | worker | jobs | status | demo``: the store and the job queue from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from syncsim import defaults
from syncsim.cli.common import Command, count, store_arg
from syncsim.text import format_table

__all__ = ["build_runner", "job_rows", "register_cli"]


#: What the table shows of a job's progress: its counts, not the cursor a sync resumes from (`syncsim status ID`
#: shows all of it).
PROGRESS_SHOWN = ("mode", "pages", "activities", "removed", "requests", "steps_done")


def job_rows(jobs: Sequence[Any]) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        duration = (
            f"{(job.completed_at - job.started_at).total_seconds():.2f}"
            if job.completed_at and job.started_at
            else None
        )
        rows.append(
            {
                "id": str(job.id),  # whole: what `syncsim status` and the API take
                "user": str(job.user_id)[:8],
                "type": job.type,
                "status": job.status.value,
                "attempts": f"{job.attempts}/{job.max_attempts}",
                "crashes": job.crashes or None,
                "runs": job.runs,
                "run_s": duration,
                "progress": ",".join(f"{k}={job.progress[k]}" for k in PROGRESS_SHOWN if k in job.progress) or None,
                "error": (job.error or "")[:70] or None,
            }
        )
    return rows


_JOB_COLUMNS = ("id", "user", "type", "status", "attempts", "crashes", "runs", "run_s", "progress", "error")


def existing_store(url: str | None) -> Any:
    """The store ``url`` names, for a command that only reads it: an embedded SQLite file must exist already
    (opening one would create it, and a mistyped path would answer "no jobs" and leave a database behind)."""
    from pathlib import Path

    from syncsim.errors import InvalidInput
    from syncsim.stores import open_store
    from syncsim.stores.sqlite import SQLiteStore

    store = open_store(url)
    if isinstance(store, SQLiteStore) and store.path != ":memory:" and not Path(store.path).exists():
        raise InvalidInput(
            f"no store at {store.path!r}: nothing has run with it yet (check --store or ${defaults.STORE_ENV})"
        )
    return store


def _migrate(args: argparse.Namespace) -> int:
    from syncsim.stores import open_store

    async def run() -> list[str]:
        store = open_store(args.store)
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = asyncio.run(run())
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else " (up to date)"))
    return 0


def build_runner(store: Any, *, strategy: str = "worker", **options: Any) -> Any:
    from syncsim.job_types import default_handlers
    from syncsim.jobs.runner import JobRunner

    return JobRunner(store, handlers=default_handlers(), strategy=strategy, **options)


async def _upkeep_every(runner: Any, every_s: float) -> None:
    """:func:`~syncsim.strava.upkeep.strava_upkeep` now and every ``every_s`` seconds; a store outage skips a
    round (the worker reports the outage)."""
    from syncsim.errors import StoreError
    from syncsim.strava.upkeep import strava_upkeep

    while True:
        with contextlib.suppress(StoreError):
            await strava_upkeep(runner)
        await runner.clock.sleep(every_s)


def _worker(args: argparse.Namespace) -> int:
    import logging

    from syncsim.clock import SystemClock
    from syncsim.errors import SyncsimError
    from syncsim.jobs.worker import Worker
    from syncsim.retry import describe
    from syncsim.stores import open_store
    from syncsim.strava.client import StravaClient, strava_base_url

    # One line per event on stderr (the worker reports a store outage itself, once).
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> Any:
        clock = SystemClock()
        store = open_store(args.store)
        try:
            await store.migrate()
            strava = StravaClient(
                tokens=store, clock=clock, base_url=strava_base_url(args.strava_url, setting="--strava-url")
            )
            runner = build_runner(store, clock=clock, lease_s=args.lease, resources={"strava": strava})
            worker = Worker(
                runner, concurrency=args.concurrency, burst=args.burst, poll_s=args.poll, grace_s=args.grace
            )
            print(f"worker {runner.worker_id} on {store.url} (concurrency {args.concurrency})", flush=True)
            # A deployment with a worker and no tick must still reconcile and re-read webhook events left without
            # a job: the worker submits them as the tick does (not in burst mode, which ends when work runs out).
            upkeep = None if args.burst else asyncio.ensure_future(_upkeep_every(runner, defaults.WORKER_UPKEEP_S))
            try:
                return await worker.run(install_signal_handlers=True)
            except SyncsimError:
                raise
            except Exception as exc:  # a claim loop's bug, already logged: exit with it as one line
                raise SyncsimError(f"a claim loop failed: {describe(exc)}") from exc
            finally:
                if upkeep is not None:
                    upkeep.cancel()
                    await asyncio.gather(upkeep, return_exceptions=True)
                await strava.aclose()
        finally:
            await store.close()

    stats = asyncio.run(run())
    print(
        f"worker stopped: {stats.jobs_run} run(s), {stats.completed} completed, {stats.failed} failed, "
        f"{stats.rescheduled} rescheduled"
        + (f", {stats.taken_over} taken over by another runner" if stats.taken_over else "")
        + (f", {stats.given_back} given back unfinished" if stats.given_back else "")
    )
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from syncsim.jobs.model import JobStatus, parse_user_id

    user = parse_user_id(args.user) if args.user else None  # the arguments' mistakes before the store's
    status = JobStatus(args.status) if args.status else None

    async def run() -> list[Any]:
        store = existing_store(args.store)
        try:  # reading only: no migration (a read-only replica or role, a mistyped path)
            return await store.list_jobs(user_id=user, status=status, limit=args.limit)
        finally:
            await store.close()

    jobs = asyncio.run(run())
    print(format_table(job_rows(jobs), _JOB_COLUMNS) if jobs else "no jobs")
    return 0


def _status(args: argparse.Namespace) -> int:
    import orjson

    from syncsim.errors import InvalidInput

    try:
        job_id = uuid.UUID(args.job_id)
    except ValueError:
        raise InvalidInput(f"job id must be a UUID, got {args.job_id!r}") from None

    async def run() -> Any:
        store = existing_store(args.store)
        try:  # reading only, as `jobs`
            return await store.get_job(job_id)
        finally:
            await store.close()

    job = asyncio.run(run())
    if job is None:
        raise InvalidInput(f"no job {job_id}")
    print(orjson.dumps(job.to_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from syncsim.jobs.worker import Worker
    from syncsim.retry import RetryPolicy
    from syncsim.stores import open_store

    async def run() -> list[Any]:
        store = open_store(args.store)
        try:
            await store.migrate()
            runner = build_runner(store, retry=RetryPolicy(base_s=0.5, jitter=0.0))
            submitted = []
            for i in range(args.jobs):
                user = uuid.uuid4()
                payload = {"steps": 3, "step_s": 0.05, "fail_attempts": 1 if i == 0 else 0}
                job, _ = await runner.submit(user, payload, type="demo")
                submitted.append(job.id)
            print(f"submitted {len(submitted)} demo job(s) to {store.url}; job 1 fails once and is retried")
            await Worker(runner, concurrency=args.concurrency, burst=True, poll_s=0.1).run()
            return [await store.get_job(job_id) for job_id in submitted]
        finally:
            await store.close()

    jobs = asyncio.run(run())
    print(format_table(job_rows(jobs), _JOB_COLUMNS))
    return 0 if all(j.status.value == "completed" for j in jobs) else 1


def register_cli(sub: Any) -> dict[str, Command]:
    """Add the queue's commands to ``syncsim``'s sub-parsers; return their handlers by name."""
    p = sub.add_parser("migrate", help="apply the store's migrations (idempotent)")
    store_arg(p)

    p = sub.add_parser("worker", help="run a long-running worker that claims due jobs")
    store_arg(p)
    p.add_argument("--concurrency", type=count, default=1, help="jobs run at once (default 1)")
    p.add_argument("--burst", action="store_true", help="exit once no job is pending or running")
    p.add_argument(
        "--poll",
        type=float,
        default=defaults.WORKER_POLL_S,
        help="idle poll interval, s: an idle worker makes one claim per interval, whatever its concurrency",
    )
    p.add_argument("--lease", type=float, default=defaults.LEASE_S, help="lease length, s")
    p.add_argument(
        "--grace",
        type=float,
        default=defaults.WORKER_GRACE_S,
        help=f"after SIGTERM, how long running jobs may finish, s (default {defaults.WORKER_GRACE_S:g})",
    )
    p.add_argument("--strava-url", help="Strava's base URL for strava_sync jobs (default https://www.strava.com)")

    p = sub.add_parser("jobs", help="list jobs, newest first")
    store_arg(p)
    p.add_argument("--user", help="only this user's jobs (UUID)")
    p.add_argument("--status", choices=["pending", "running", "completed", "failed"])
    p.add_argument("--limit", type=count, default=defaults.LIST_LIMIT)

    p = sub.add_parser("status", help="print one job as JSON")
    store_arg(p)
    p.add_argument("job_id")

    p = sub.add_parser("demo", help="submit demo jobs (one fails once and retries), run them, print the rows")
    store_arg(p)
    p.add_argument("--jobs", type=count, default=5)
    p.add_argument("--concurrency", type=count, default=4)

    return {"migrate": _migrate, "worker": _worker, "jobs": _jobs, "status": _status, "demo": _demo}
