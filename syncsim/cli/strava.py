"""``syncsim sync | fake-strava``: one Strava sync in the foreground, and FakeStrava on loopback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncsim.cli.common import Command, output_file, port, store_arg

if TYPE_CHECKING:
    from syncsim.cli.common import StoreOutage
    from syncsim.jobs.model import Job
    from syncsim.jobs.runner import JobRunner
    from syncsim.stores import Store

__all__ = ["register_cli"]


def _sync(args: argparse.Namespace) -> int:
    from syncsim.errors import InvalidInput
    from syncsim.jobs.model import parse_user_id

    if args.fake is None and not args.user:
        # The default user is --fake's demo athlete: its stored tokens are FakeStrava's, useless on Strava.
        raise InvalidInput("a sync of Strava needs --user UUID (the syncsim user to sync); or use --fake N")
    if args.fake is not None and args.strava_url:
        raise InvalidInput("--strava-url does not go with --fake N, which syncs an in-process FakeStrava")
    user_id = parse_user_id(args.user) if args.user else uuid.uuid5(uuid.NAMESPACE_URL, "syncsim:demo-athlete")
    if args.trace:
        args.trace = output_file(args.trace, "--trace")
    try:
        result = asyncio.run(_run_foreground_sync(args, user_id))
    except asyncio.CancelledError:  # SIGTERM (a service manager, a container's stop): handled as Ctrl-C is
        return 128 + signal.SIGTERM
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

    from syncsim.cli.common import StoreOutage
    from syncsim.cli.jobs import build_runner
    from syncsim.clock import SystemClock
    from syncsim.errors import ConfigError, InvalidInput, RateLimited, StoreError, SyncsimError
    from syncsim.jobs.model import JobStatus
    from syncsim.stores import open_store
    from syncsim.strava.client import StravaClient, strava_base_url
    from syncsim.strava.trace import Trace

    # SIGTERM ends the sync as Ctrl-C does (the job given back, pending), instead of killing it mid-run with its
    # lease held until it lapses.
    with contextlib.suppress(NotImplementedError):
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    clock = SystemClock()
    store = open_store(args.store)
    transport = None
    base_url = strava_base_url(args.strava_url, setting="--strava-url")
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
            # Connecting reads GET /athlete: under a spent rate-limit window say so, rather than wait silently for
            # it (up to a quarter hour, or to midnight) before the sync has even started.
            try:
                await client.connect_with_refresh_token(user_id, refresh_token, deadline=clock.now() + CONNECT_WAIT_S)
            except RateLimited as exc:
                at = datetime.fromtimestamp(exc.reset_at, UTC).strftime("%H:%M:%S UTC")
                raise InvalidInput(
                    f"cannot connect user {user_id} now: Strava's rate limit for this app is spent until {at}; "
                    "run the sync again then"
                ) from None
        runner = build_runner(store, resources={"strava": client})
        payload = {"mode": args.mode, "detail": args.detail}
        job, created = await runner.submit(user_id, payload, type="strava_sync")
        if not created and job.status.value == "running" and not runner.is_due(job):
            raise InvalidInput(f"user {user_id} already has a running sync ({job.id}); try again when it ends")
        started = clock.now()
        with tqdm(desc="strava sync", unit=" activities", disable=args.quiet) as bar:

            def on_progress(progress: dict[str, Any]) -> None:
                bar.update(int(progress.get("activities", 0)) - bar.n)
                bar.set_postfix(pages=progress.get("pages"), requests=progress.get("requests"))

            # In the foreground the user is waiting: a retry, a rate-limit wait or a store outage is waited out
            # here, as a worker would, not left to one (Ctrl-C leaves the job for `syncsim worker` or the next sync).
            done: Job | None = job
            outage = StoreOutage(clock, lambda line: bar.write(line, file=sys.stderr))
            while done is not None and done.status in (JobStatus.PENDING, JobStatus.RUNNING):
                wait, why = _wait_before_running(runner.is_due(done), done, clock.now())
                if wait > 0:
                    if not args.quiet:
                        bar.write(f"waiting {wait:.1f} s for {why}", file=sys.stderr)
                    done = await _wait_watching(store, done, clock, wait)
                    if done is None or done.is_final:
                        break  # cancelled (DELETE /api/sync/{id}) or finished by another runner meanwhile
                try:
                    done = await runner.run_job(job.id, on_progress=on_progress)
                    outage.answered()
                except StoreError as exc:
                    await clock.sleep(outage.failed(exc))
                    done = await _after_outage(store, runner, job.id, outage)
                except asyncio.CancelledError:
                    # Ctrl-C or SIGTERM: the job waits, pending, for the next sync or a worker.
                    with contextlib.suppress(SyncsimError):
                        await _give_back_lease(store, runner, job.id, "interrupted (Ctrl-C or SIGTERM); not finished")
                    raise
        if done is None:
            current = await store.get_job(job.id)
            if current is None:
                raise InvalidInput(f"job {job.id} is gone from the store")
            if not current.is_final:
                raise InvalidInput(f"job {job.id} was taken by another runner: it is {current.status.value}")
            done = current  # ended while this command waited (cancelled by the user, say): said below as it ended
        if args.trace:
            try:
                trace.to_csv(args.trace)
            except OSError as exc:
                raise InvalidInput(
                    f"--trace {str(args.trace)!r} could not be written ({exc.strerror or exc}); the sync itself "
                    f"ended {done.status.value}: syncsim status {done.id}"
                ) from None
        # A failed sync has no result; its progress says what it stored before it failed.
        result = done.result or done.progress or {}
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


#: How long `syncsim sync` waits to connect an athlete (a token refresh and ``GET /athlete``) before it gives up.
CONNECT_WAIT_S = 60.0

#: While `syncsim sync` waits (a rate-limit window, a retry's backoff), it looks at its job this often, so a job
#: cancelled meanwhile (``DELETE /api/sync/{id}``) ends the command then, not when the wait is over.
WATCH_EVERY_S = 5.0


async def _wait_watching(store: Store, job: Job, clock: Any, wait: float) -> Job | None:
    """Wait ``wait`` seconds, looking at ``job`` every :data:`WATCH_EVERY_S`; the job as last read (None if gone),
    early if it has ended. A look the store cannot answer is no news: the run after the wait meets the outage."""
    from syncsim.errors import StoreError

    end = clock.now() + wait
    seen: Job | None = job
    while True:
        await clock.sleep(min(WATCH_EVERY_S, max(0.0, end - clock.now())))
        with contextlib.suppress(StoreError):
            seen = await store.get_job(job.id)
        if seen is None or seen.is_final or clock.now() >= end:
            return seen


async def _after_outage(store: Store, runner: JobRunner, job_id: uuid.UUID, outage: StoreOutage) -> Job:
    """The job once the store answers again, its lease given back (:func:`_give_back_lease`)."""
    from syncsim.errors import StoreError

    while True:
        try:
            job = await _give_back_lease(
                store, runner, job_id, "the store failed during the run; continued from its last checkpoint"
            )
            outage.answered()
            return job
        except StoreError as exc:
            await runner.clock.sleep(outage.failed(exc))


async def _give_back_lease(store: Store, runner: JobRunner, job_id: uuid.UUID, reason: str) -> Job:
    """The job, its lease given back if a run of this process held it: that run has ended (a store outage stopped
    it at its last saved checkpoint, or Ctrl-C), so the job is ``pending`` and due at once, for this command to
    continue or for the next `syncsim sync` or worker, rather than ``running`` until its lease lapses (and then
    counted a crash)."""
    from syncsim.errors import InvalidInput

    job = await store.get_job(job_id)
    ours = "" if job is None else job.locked_by or ""
    if job is not None and job.status.value == "running" and ours.startswith(f"{runner.worker_id}#"):
        now = runner.clock.now()
        await store.reschedule_job(job_id, worker_id=ours, at=now, reason=reason, now=now)
        job = await store.get_job(job_id)
    if job is None:
        raise InvalidInput(f"job {job_id} is gone from the store")
    return job


def _wait_before_running(due: bool, job: Job, now: float) -> tuple[float, str]:
    """How long before ``job`` can run again, and what it waits for: a pending job its next attempt, a running
    one the lease of the run holding it (another process's: this one's own is given back)."""
    if due:
        return 0.0, ""
    if job.status.value == "running" and job.locked_until is not None:
        return max(0.0, job.locked_until.timestamp() - now), "the running job's lease to lapse"
    if job.next_attempt_at is None:
        return 0.0, ""
    reason = f" ({' '.join(job.error.split())})" if job.error else ""
    return max(0.0, job.next_attempt_at.timestamp() - now), f"the next attempt{reason}"


def _fake_strava(args: argparse.Namespace) -> int:
    from syncsim.errors import InvalidInput
    from syncsim.strava.fake.config import Churn
    from syncsim.strava.fake.server import serve_fake_strava

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
    if not (args.churn >= 0 and math.isfinite(args.churn)):
        raise InvalidInput(f"--churn must be a finite number of changes an hour >= 0, got {args.churn}")
    if not 0 <= args.drop_share <= 1:
        raise InvalidInput(f"--drop-share must be a share within 0..1, got {args.drop_share}")
    if not args.churn and (args.webhook_url or args.drop_share):
        raise InvalidInput("--webhook-url and --drop-share need --churn RATE: without changes no event is sent")
    if not (args.latency >= 0 and math.isfinite(args.latency)):
        raise InvalidInput(f"--latency must be a finite number of seconds >= 0, got {args.latency}")
    serve_fake_strava(
        host=args.host,
        port=args.port,
        athletes=athletes,
        seed=args.seed,
        activities=activities,
        latency=args.latency,
        compact=args.compact,
        churn=Churn(rate_per_hour=args.churn, drop_share=args.drop_share) if args.churn else None,
        webhook_url=args.webhook_url,
    )
    return 0


def register_cli(sub: Any) -> dict[str, Command]:
    """Add ``sync`` and ``fake-strava`` to ``syncsim``'s sub-parsers; return their handlers by name."""
    p = sub.add_parser("sync", help="run one Strava sync in the foreground, with a progress bar")
    store_arg(p)
    p.add_argument("--user", help="the syncsim user (UUID); required without --fake, whose default is a demo user")
    p.add_argument("--strava-url", help="Strava's base URL (default https://www.strava.com; e.g. a fake-strava)")
    p.add_argument("--fake", type=int, metavar="N", help="sync an in-process FakeStrava athlete with N activities")
    p.add_argument("--seed", type=int, default=0, help="FakeStrava's seed (with --fake)")
    p.add_argument("--mode", choices=["auto", "full", "incremental"], default="auto")
    p.add_argument("--detail", action="store_true", help="also fetch each activity's detail")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--trace", metavar="FILE.csv", help="write every Strava request (no tokens) to a CSV trace")

    p = sub.add_parser("fake-strava", help="serve FakeStrava on loopback (prints how to get each athlete's token)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8001)
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

    p.add_argument(
        "--churn",
        type=float,
        default=0.0,
        metavar="RATE",
        help="athletes upload, edit and delete activities while you sync: RATE changes per athlete per hour",
    )
    p.add_argument("--webhook-url", help="POST each change Strava announces here, as a Strava webhook event")
    p.add_argument(
        "--drop-share", type=float, default=0.0, help="share of announced webhooks lost on the way (default 0)"
    )
    return {"sync": _sync, "fake-strava": _fake_strava}
