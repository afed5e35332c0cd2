"""``syncsim`` — the command line. Every command prints errors as one clear line and exits non-zero."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from syncsim import defaults
from syncsim.errors import SyncsimError

__all__ = ["format_table", "main"]

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Command] = {}


def _command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = fn
        return fn

    return register


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table (no pandas needed)."""
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body])


def _job_rows(jobs: Sequence[Any]) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        duration = (
            f"{(job.completed_at - job.started_at).total_seconds():.2f}"
            if job.completed_at and job.started_at
            else None
        )
        rows.append(
            {
                "id": str(job.id)[:8],
                "user": str(job.user_id)[:8],
                "type": job.type,
                "status": job.status.value,
                "attempts": f"{job.attempts}/{job.max_attempts}",
                "runs": job.runs,
                "run_s": duration,
                "progress": ",".join(f"{k}={v}" for k, v in job.progress.items()) or None,
                "error": (job.error or "")[:70] or None,
            }
        )
    return rows


_JOB_COLUMNS = ("id", "user", "type", "status", "attempts", "runs", "run_s", "progress", "error")


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: ${defaults.STORE_ENV} or {defaults.STORE_URL})",
    )


# -- commands ------------------------------------------------------------------------------------------------------
@_command("migrate")
def _migrate(args: argparse.Namespace) -> int:
    from syncsim.jobs.store import open_store

    async def run() -> list[str]:
        store = open_store(args.store)
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = asyncio.run(run())
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else " (up to date)"))
    return 0


def _build_runner(store: Any, *, strategy: str = "worker", **options: Any) -> Any:
    from syncsim.handlers import default_handlers
    from syncsim.runner import JobRunner

    return JobRunner(store, handlers=default_handlers(), strategy=strategy, **options)


@_command("worker")
def _worker(args: argparse.Namespace) -> int:
    from syncsim.clock import SystemClock
    from syncsim.jobs.store import open_store
    from syncsim.strava.client import STRAVA_BASE_URL, StravaClient
    from syncsim.worker import Worker

    async def run() -> Any:
        clock = SystemClock()
        store = open_store(args.store)
        try:
            await store.migrate()
            strava = StravaClient(tokens=store, clock=clock, base_url=args.strava_url or STRAVA_BASE_URL)
            runner = _build_runner(store, clock=clock, lease_s=args.lease, resources={"strava": strava})
            worker = Worker(runner, concurrency=args.concurrency, burst=args.burst, poll_s=args.poll)
            print(f"worker {runner.worker_id} on {store.url} (concurrency {args.concurrency})", flush=True)
            try:
                return await worker.run(install_signal_handlers=True)
            finally:
                await strava.aclose()
        finally:
            await store.close()

    stats = asyncio.run(run())
    print(
        f"worker stopped: {stats.jobs_run} run(s), {stats.completed} completed, {stats.failed} failed, "
        f"{stats.rescheduled} rescheduled"
    )
    return 0


@_command("jobs")
def _jobs(args: argparse.Namespace) -> int:
    from syncsim.jobs.model import JobStatus, parse_user_id
    from syncsim.jobs.store import open_store

    async def run() -> list[Any]:
        store = open_store(args.store)
        try:
            await store.migrate()
            return await store.list_jobs(
                user_id=parse_user_id(args.user) if args.user else None,
                status=JobStatus(args.status) if args.status else None,
                limit=args.limit,
            )
        finally:
            await store.close()

    jobs = asyncio.run(run())
    print(format_table(_job_rows(jobs), _JOB_COLUMNS) if jobs else "no jobs")
    return 0


@_command("status")
def _status(args: argparse.Namespace) -> int:
    import orjson

    from syncsim.errors import InvalidInput
    from syncsim.jobs.store import open_store

    try:
        job_id = uuid.UUID(args.job_id)
    except ValueError:
        raise InvalidInput(f"job id must be a UUID, got {args.job_id!r}") from None

    async def run() -> Any:
        store = open_store(args.store)
        try:
            await store.migrate()
            return await store.get_job(job_id)
        finally:
            await store.close()

    job = asyncio.run(run())
    if job is None:
        raise InvalidInput(f"no job {job_id}")
    print(orjson.dumps(job.to_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


@_command("demo")
def _demo(args: argparse.Namespace) -> int:
    from syncsim.jobs.store import open_store
    from syncsim.retry import RetryPolicy
    from syncsim.worker import Worker

    async def run() -> list[Any]:
        store = open_store(args.store)
        try:
            await store.migrate()
            runner = _build_runner(store, retry=RetryPolicy(base_s=0.5, jitter=0.0))
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
    print(format_table(_job_rows(jobs), _JOB_COLUMNS))
    return 0 if all(j.status.value == "completed" for j in jobs) else 1


@_command("sync")
def _sync(args: argparse.Namespace) -> int:
    from syncsim.jobs.model import parse_user_id

    user_id = parse_user_id(args.user) if args.user else uuid.uuid5(uuid.NAMESPACE_URL, "syncsim:demo-athlete")
    result = asyncio.run(_run_foreground_sync(args, user_id))
    print(
        f"{result['status']}: {result['activities']} activities synced ({result['mode']}) in {result['pages']} "
        f"page(s), {result['requests']} Strava request(s), {result['seconds']:.2f} s; "
        f"{result['total_activities']} stored for user {user_id} in {result['store']}"
    )
    if result["error"]:
        print(f"error: {result['error']}", file=sys.stderr)
    return 0 if result["status"] == "completed" else 1


async def _run_foreground_sync(args: argparse.Namespace, user_id: uuid.UUID) -> dict[str, Any]:
    import os

    from tqdm.auto import tqdm

    from syncsim.clock import SystemClock
    from syncsim.errors import ConfigError, InvalidInput
    from syncsim.jobs.store import open_store
    from syncsim.strava.client import StravaClient
    from syncsim.strava.trace import Trace

    clock = SystemClock()
    store = open_store(args.store)
    transport = None
    base_url = args.strava_url or "https://www.strava.com"
    refresh_token = os.environ.get("STRAVA_REFRESH_TOKEN")
    client_id = client_secret = None
    if args.fake is not None:
        from syncsim.strava.fake import FakeStrava

        fake = FakeStrava(seed=args.seed, clock=clock)
        athlete = fake.add_athlete(activities=args.fake)
        transport, base_url = fake.transport(), "http://fake-strava.local"
        refresh_token, client_id, client_secret = athlete.refresh_token, fake.client_id, fake.client_secret
    trace = Trace()
    client = StravaClient(
        tokens=store,
        clock=clock,
        base_url=base_url,
        transport=transport,
        client_id=client_id,
        client_secret=client_secret,
        trace=trace,
    )
    try:
        await store.migrate()
        if await store.get_tokens(user_id) is None or args.fake is not None:
            if not refresh_token:
                raise ConfigError(
                    f"user {user_id} has no Strava connection: set STRAVA_REFRESH_TOKEN (with STRAVA_CLIENT_ID and "
                    "STRAVA_CLIENT_SECRET), or use --fake N for a FakeStrava athlete"
                )
            await client.connect_with_refresh_token(user_id, refresh_token)
        runner = _build_runner(store, resources={"strava": client})
        payload = {"mode": args.mode, "detail": args.detail}
        job, created = await runner.submit(user_id, payload, type="strava_sync")
        if not created and job.status.value == "running" and not runner.is_due(job):
            raise InvalidInput(f"user {user_id} already has a running sync ({job.id}); try again when it ends")
        started = clock.now()
        with tqdm(desc="strava sync", unit=" activities", disable=args.quiet) as bar:

            def on_progress(progress: dict[str, Any]) -> None:
                bar.update(int(progress.get("activities", 0)) - bar.n)
                bar.set_postfix(pages=progress.get("pages"), requests=progress.get("requests"))

            done = await runner.run_job(job.id, on_progress=on_progress)
        if args.trace:
            trace.to_csv(args.trace)
        if done is None:
            raise InvalidInput(f"job {job.id} was not due: it is {job.status.value}")
        result = done.result or {}
        return {
            "status": done.status.value,
            "error": done.error,
            "mode": result.get("mode", "-"),
            "activities": result.get("activities", 0),
            "pages": result.get("pages", 0),
            "requests": len(trace.records),
            "total_activities": await store.count_activities(user_id),
            "seconds": clock.now() - started,
            "store": store.url,
        }
    finally:
        await client.aclose()
        await store.close()


@_command("fake-strava")
def _fake_strava(args: argparse.Namespace) -> int:
    from syncsim.errors import InvalidInput
    from syncsim.strava.fake_server import serve_fake_strava

    activities: int | list[int] | None = None
    athletes = args.athletes if args.athletes is not None else 3
    if args.activities is not None:
        try:
            counts = [int(n) for n in args.activities.split(",")]
        except ValueError:
            raise InvalidInput(f"--activities must be N or N1,N2,... (integers), got {args.activities!r}") from None
        if len(counts) == 1:
            activities = counts[0]
        elif args.athletes is None or args.athletes == len(counts):
            activities, athletes = counts, len(counts)
        else:
            raise InvalidInput(f"--activities gives {len(counts)} counts for --athletes {args.athletes}")
    serve_fake_strava(
        host=args.host,
        port=args.port,
        athletes=athletes,
        seed=args.seed,
        activities=activities,
        latency=args.latency,
        compact=args.compact,
    )
    return 0


def _build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncsim",
        description="Background jobs for Strava syncs on serverless platforms, and the simulator that tests them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply the store's migrations (idempotent)")
    _store_arg(p)

    p = sub.add_parser("worker", help="run a long-running worker that claims due jobs")
    _store_arg(p)
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once (default 1)")
    p.add_argument("--burst", action="store_true", help="exit once no job is pending or running")
    p.add_argument("--poll", type=float, default=defaults.WORKER_POLL_S, help="idle poll interval, s")
    p.add_argument("--lease", type=float, default=defaults.LEASE_S, help="lease length, s")
    p.add_argument("--strava-url", help="Strava's base URL for strava_sync jobs (default https://www.strava.com)")

    p = sub.add_parser("jobs", help="list jobs, newest first")
    _store_arg(p)
    p.add_argument("--user", help="only this user's jobs (UUID)")
    p.add_argument("--status", choices=["pending", "running", "completed", "failed"])
    p.add_argument("--limit", type=int, default=defaults.LIST_LIMIT)

    p = sub.add_parser("status", help="print one job as JSON")
    _store_arg(p)
    p.add_argument("job_id")

    p = sub.add_parser("demo", help="submit demo jobs (one fails once and retries), run them, print the rows")
    _store_arg(p)
    p.add_argument("--jobs", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=4)

    p = sub.add_parser("sync", help="run one Strava sync in the foreground, with a progress bar")
    _store_arg(p)
    p.add_argument("--user", help="the syncsim user (UUID); default: a fixed demo user")
    p.add_argument("--strava-url", help="Strava's base URL (default https://www.strava.com; e.g. a fake-strava)")
    p.add_argument("--fake", type=int, metavar="N", help="sync an in-process FakeStrava athlete with N activities")
    p.add_argument("--seed", type=int, default=0, help="FakeStrava's seed (with --fake)")
    p.add_argument("--mode", choices=["auto", "full", "incremental"], default="auto")
    p.add_argument("--detail", action="store_true", help="also fetch each activity's detail")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--trace", metavar="FILE.csv", help="write every Strava request (no tokens) to a CSV trace")

    p = sub.add_parser("fake-strava", help="serve FakeStrava on loopback (prints how to get each athlete's token)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--athletes", type=int, default=None, help="how many (default 3, or one per --activities count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--activities",
        default=None,
        metavar="N[,N...]",
        help="per athlete: one count for all, or one count each (default: a heavy-tailed spread)",
    )
    p.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    p.add_argument(
        "--compact",
        action="store_true",
        help="activity lists with only the fields syncsim reads (as the simulator serves them): a third of the bytes",
    )

    _register_plugins(sub, _plugins_needed(argv))
    return parser


#: Sub-commands that live in other modules (each has ``register_cli(subparsers) -> {name: handler}``). They are
#: imported only when one of them runs or help is asked for: the simulator pulls in pandas, and a worker process
#: should not pay for that at start-up.
_PLUGIN_COMMANDS = {
    "serve": "syncsim.serve",
    "token": "syncsim.serve",
    "simulate": "syncsim.sim.cli",
    "report": "syncsim.report",
}


def _plugins_needed(argv: Sequence[str]) -> list[str]:
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in _PLUGIN_COMMANDS:
        return [_PLUGIN_COMMANDS[command]]
    if command in _COMMANDS:
        return []
    return list(dict.fromkeys(_PLUGIN_COMMANDS.values()))  # help, or an unknown command: list them all


def _register_plugins(sub: Any, modules: Sequence[str]) -> None:
    import importlib

    for name in modules:
        _COMMANDS.update(importlib.import_module(name).register_cli(sub))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except SyncsimError as exc:
        print(f"syncsim {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
