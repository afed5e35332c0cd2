"""One simulated run: the real API, service, runner, store, Strava client and sync on a virtual-time loop.

Swapped, and nothing else (design.md, "One code path"): the clock (:func:`~syncsim.sim.virtual.virtual_clock`),
Strava (one :class:`~syncsim.strava.fake.FakeStrava` per run behind its httpx transport, with the app-wide
limits shared by every athlete through one :class:`~syncsim.strava.client.StravaClient` and one
:class:`~syncsim.strava.ratelimit.RateLimitBudget` per process: one by default, one per instance with
``instances``), and the platform (:class:`~syncsim.platforms.LocalPlatform`
with the preset, which kills invocations at their deadline). The store is a private in-memory SQLite per run.
The browsers call the real Starlette app (:func:`syncsim.api.create_app`) in-process, through
:class:`~syncsim.sim.asgi.AsgiCaller` (the ASGI interface itself, no HTTP client library in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import math
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from syncsim.api.app import create_app
from syncsim.api.auth import mint_token
from syncsim.api.submissions import USER_JOB_TYPES, Boolean
from syncsim.clock import BehindClock, Clock
from syncsim.errors import InvocationKilled
from syncsim.jobs.model import ACTIVE_STATUSES, Job, JobStatus
from syncsim.jobs.runner import HandlerRegistry, JobRunner, resolve_strategy
from syncsim.jobs.service import JobService
from syncsim.jobs.worker import Worker
from syncsim.platforms import Invocation, guard_store
from syncsim.sim.asgi import AsgiCaller
from syncsim.sim.browser import Browser, BrowserOutcome
from syncsim.sim.recorder import ObservedPlatform, ObservedStore, Recorder
from syncsim.sim.scenario import Scenario
from syncsim.sim.virtual import virtual_clock
from syncsim.sim.workload import WorkloadRow
from syncsim.stores.sqlite import SQLiteStore
from syncsim.strava.client import StravaClient
from syncsim.strava.events import register_strava_events
from syncsim.strava.fake import ATHLETE_ID_BASE, FakeStrava, Faults, PageCache
from syncsim.strava.models import Activity
from syncsim.strava.ratelimit import RateLimitBudget, parse_pair
from syncsim.strava.sync import register_strava_sync
from syncsim.strava.upkeep import strava_upkeep

__all__ = ["JWT_SECRET", "RunRecord", "run_scenario"]

#: The simulated app's JWT secret and tick bearer (only ever used inside a simulation).
JWT_SECRET = "syncsim-simulator-secret-not-for-production-use"
CRON_SECRET = "syncsim-simulator-cron-secret"

#: List pages built by this process's runs, for the next runs of the same sweep (see :func:`sharing_pages`).
_shared_pages: PageCache | None = None

#: The simulated app's browsers may ask for detail syncs (a scenario's ``detail``): the operator's choice that a
#: production server leaves out of what users may submit.
SIM_JOB_TYPES = USER_JOB_TYPES.with_fields("strava_sync", detail=Boolean())


@contextlib.contextmanager
def sharing_pages() -> Iterator[PageCache]:
    """Within this block, runs in this process share FakeStrava's built list pages (:class:`PageCache`).

    The runs of a sweep replay one workload with one seed, so Strava serves them the same pages; each run
    still requests, counts and waits for every one. Outside a sweep nothing is kept between runs.
    """
    global _shared_pages
    previous, _shared_pages = _shared_pages, PageCache()
    try:
        yield _shared_pages
    finally:
        _shared_pages = previous


def share_pages_in_this_process() -> None:
    """Share list pages among every later run of this process (a sweep's worker process calls this at start)."""
    global _shared_pages
    _shared_pages = PageCache()


@dataclass
class RunRecord:
    """Everything a run leaves behind, before it becomes tables (see :mod:`syncsim.sim.tables`)."""

    scenario: Scenario
    t0: float
    end_s: float
    recorder: Recorder
    outcomes: dict[int, BrowserOutcome]
    jobs: dict[int, Job | None]
    synced: dict[int, int]
    requests_by_athlete: Counter[int]
    budget_rows: list[tuple[float, int, int, int, int]]
    strava_requests: int
    #: Activities each athlete deleted on Strava during the run (webhook ``delete`` events).
    deleted: Counter[int] = field(default_factory=Counter)
    #: Per athlete, the store against FakeStrava's truth at the end: (missing, extra, stale) activities.
    exactness: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: (t_s, missing, extra, stale) summed over athletes, sampled every ``divergence_every_s``.
    divergence_rows: list[tuple[float, int, int, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class _Instances:
    """ASGI router: each request to one of several instances of the app, drawn at random (seeded), as a
    serverless platform spreads requests over the warm instances it runs."""

    def __init__(self, apps: list[Any], *, seed: int) -> None:
        self.apps = apps
        self.rng = random.Random(f"instances:{seed}")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.apps[self.rng.randrange(len(self.apps))](scope, receive, send)


class _ColdStarts:
    """ASGI wrapper: a seeded fraction of requests first waits ``cold_start_s`` (a cold function instance)."""

    def __init__(self, app: Any, *, clock: Clock, seconds: float, rate: float, seed: int) -> None:
        self.app, self.clock, self.seconds, self.rate = app, clock, seconds, rate
        self.rng = random.Random(seed)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.rate > 0 and self.rng.random() < self.rate:
            await self.clock.sleep(self.seconds)
        await self.app(scope, receive, send)


#: Page size (bytes) of the run's in-memory SQLite database. A ``:memory:`` commit costs time in proportion to the
#: database's page count, not only to the pages the transaction changed, and a run's store grows to hundreds of
#: thousands of activities: larger pages make every page's commit cheaper (docs/performance.md). A store on a
#: file, as a real deployment has, keeps SQLite's default: a WAL commit writes only the pages it changed.
MEMORY_PAGE_SIZE = 16_384


def _memory_store() -> SQLiteStore:
    """The run's private store: SQLite in memory, with :data:`MEMORY_PAGE_SIZE` pages (set before any table)."""
    store = SQLiteStore(":memory:")
    store.conn.execute(f"PRAGMA page_size={MEMORY_PAGE_SIZE}")
    return store


def _faults(sc: Scenario, t0: float) -> Faults:
    """The scenario's faults, with its outage (seconds after the start) on the run's clock."""
    if sc.strava_down_s is None:
        return sc.faults
    start, end = sc.strava_down_s
    return dataclasses.replace(sc.faults, down=(t0 + start, t0 + end))


def _user_ids(n: int, seed: int) -> list[uuid.UUID]:
    rng = random.Random(f"users:{seed}")
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


def _quiet_killed_tasks(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A killed worker's claim loops end in InvocationKilled that nobody retrieves: that is the kill, not news."""
    if isinstance(context.get("exception"), InvocationKilled):
        return
    loop.default_exception_handler(context)


async def _simulate(sc: Scenario) -> RunRecord:
    asyncio.get_running_loop().set_exception_handler(_quiet_killed_tasks)
    clock = virtual_clock()
    t0 = clock.now()
    recorder = Recorder(clock, t0, keep_events=sc.keep_events)
    limits = sc.rate_limits
    fake = FakeStrava(
        clock=BehindClock(clock, sc.strava_clock_behind_s) if sc.strava_clock_behind_s else clock,
        seed=sc.seed,
        read_limits=limits.read,
        overall_limits=limits.overall,
        latency=sc.latency,
        faults=_faults(sc, t0),
        compact=sc.compact_activities,
        page_cache=_shared_pages,
    )
    inner = _memory_store()
    await inner.migrate()
    store: Any = ObservedStore(inner, clock=clock, recorder=recorder, latency_s=sc.store_latency_s)
    budgets: list[RateLimitBudget] = []

    def strava_client(name: str) -> StravaClient:
        """A process's Strava client: its own view of the app-wide budget, learnt from Strava's headers."""
        budgets.append(RateLimitBudget(overall_limits=limits.overall, read_limits=limits.read))
        return fake.client(
            clock=clock,
            tokens=store,
            budget=budgets[-1],
            rng=random.Random(f"{name}:{sc.seed}"),
            on_rate_limit_wait=recorder.rate_limit_wait,
            share_budget=sc.shared_budget,
        )

    strava = strava_client("strava")
    strava_clients = [strava]
    strategy = resolve_strategy(sc.strategy)

    def runner(name: str, on: Any = None, client: StravaClient = strava) -> JobRunner:
        return JobRunner(
            store if on is None else on,
            handlers=register_strava_events(register_strava_sync(HandlerRegistry())),
            clock=clock,
            strategy=strategy,
            resources={"strava": client},
            rng=random.Random(f"{name}:{sc.seed}"),
            worker_id=name,
            deadline_margin_s=sc.deadline_margin_s,
            lease_s=sc.lease_s,
        )

    platform = ObservedPlatform(
        sc.platform, clock=clock, recorder=recorder, kill_rate=sc.kill_rate, rng=random.Random(f"kills:{sc.seed}")
    )

    def app_instance(name: str, client: StravaClient) -> Any:
        return create_app(
            service=JobService(runner(name, client=client)),
            platform=platform,
            jwt_secret=JWT_SECRET,
            clock=clock,
            strava=client,
            job_types=SIM_JOB_TYPES,
            cron_secret=CRON_SECRET,
            upkeep=functools.partial(strava_upkeep, reconcile_every_s=sc.reconcile_every_s),
        )

    asgi: Any = app_instance("sim-api", strava)
    if sc.instances > 1:
        strava_clients += [strava_client(f"strava-{k}") for k in range(1, sc.instances)]
        apps = [asgi] + [app_instance(f"sim-api-{k}", strava_clients[k]) for k in range(1, sc.instances)]
        asgi = _Instances(apps, seed=sc.seed)
    if sc.cold_start_rate > 0:
        asgi = _ColdStarts(asgi, clock=clock, seconds=sc.cold_start_s, rate=sc.cold_start_rate, seed=sc.seed)
    http = AsgiCaller(asgi, host="syncsim.sim")

    # Athletes: FakeStrava athlete id = ATHLETE_ID_BASE + workload index; their tokens are stored when they
    # arrive, as if they had just connected.
    syncs = sorted(sc.workload.syncs, key=lambda r: r.athlete)
    users = dict(zip((r.athlete for r in syncs), _user_ids(len(syncs), sc.seed), strict=True))
    tokens = {
        row.athlete: fake.add_athlete(activities=row.activities, athlete_id=ATHLETE_ID_BASE + row.athlete).tokens()
        for row in syncs
    }
    token_ttl = sc.max_sim_s + 86_400.0
    browsers = {
        r.athlete: Browser(
            http,
            clock=clock,
            recorder=recorder,
            user_id=users[r.athlete],
            token=mint_token(users[r.athlete], JWT_SECRET, ttl_s=token_ttl, now=clock.now()),
            schedule=sc.poll,
            payload={"detail": True} if sc.detail else None,
        )
        for r in syncs
    }
    bar = _progress_bar(len(syncs), sc) if sc.progress else None

    async def visit(row: WorkloadRow) -> None:
        await clock.sleep(t0 + row.arrival_s - clock.now())
        await inner.save_tokens(users[row.athlete], tokens[row.athlete], now=clock.now())
        browser = browsers[row.athlete]
        await browser.run()
        if bar is not None:
            bar.update(1)
        if sc.resync_s is not None:  # the athlete comes back later: an incremental sync (``auto``)
            await clock.sleep(sc.resync_s)
            await browser.sync_again()

    deleted: Counter[int] = Counter()

    async def webhook(row: WorkloadRow) -> None:
        await clock.sleep(t0 + row.arrival_s - clock.now())
        athlete_id = ATHLETE_ID_BASE + row.athlete
        updates: dict[str, str] = {}
        if row.aspect == "create" or not fake.activity_ids(athlete_id):
            aspect, activity_id = "create", fake.add_activity(athlete_id)["id"]
        else:  # an edit or a deletion of one of the athlete's activities, drawn per (seed, athlete, time)
            ids = fake.activity_ids(athlete_id)
            activity_id = ids[random.Random(f"webhook:{sc.seed}:{row.athlete}:{row.arrival_s}").randrange(len(ids))]
            aspect = row.aspect
            if aspect == "update":
                updates = {"title": f"Edited at {round(clock.now() - t0)} s"}
                fake.update_activity(activity_id, name=updates["title"])
            else:
                fake.delete_activity(activity_id)
                deleted[row.athlete] += 1
        event = {
            "object_type": "activity",
            "object_id": activity_id,
            "aspect_type": aspect,
            "updates": updates,
            "owner_id": athlete_id,
            "subscription_id": 1,
            "event_time": int(clock.now()),
        }
        await browsers[row.athlete].webhook(event)

    async def churn() -> None:
        """Athletes change their histories as a Poisson process; Strava announces what it announces."""
        assert sc.churn is not None
        rate = sc.churn.rate_per_hour * len(syncs) / 3600.0
        if rate <= 0:
            return
        rng = random.Random(f"churn:{sc.seed}")
        until = t0 + (sc.churn_until_s if sc.churn_until_s is not None else sc.max_sim_s)
        while True:
            await clock.sleep(rng.expovariate(rate))
            if clock.now() >= until:
                return
            row = syncs[rng.randrange(len(syncs))]
            event = fake.change(ATHLETE_ID_BASE + row.athlete, sc.churn, rng)
            if event is not None:
                await browsers[row.athlete].webhook(event)

    async def tick() -> None:
        """The scheduler's tick (Supabase Cron or Vercel Cron): fired on the clock, at every epoch multiple of
        ``tick_s`` (as a cron schedule fires at the minute, so right at each rate-limit reset), whether the call
        before has answered or not; calls that overlap run side by side, as on the platform."""
        assert sc.tick_s is not None
        tick_s = sc.tick_s
        bearer = {"authorization": f"Bearer {CRON_SECRET}"}
        calls: set[asyncio.Future[Any]] = set()
        fired = math.floor(clock.now() / tick_s)  # a counter, not the clock: float sums would drift off the grid
        try:
            while True:
                fired += 1
                await clock.sleep(max(0.0, fired * tick_s - clock.now()))
                for call in [c for c in calls if c.done()]:
                    calls.discard(call)
                    call.result()  # a tick that raised fails the run, as an awaited one did
                calls.add(asyncio.ensure_future(http.get("/api/cron/tick", headers=bearer)))
        finally:
            if calls:  # the last calls answer (nothing is left to do) before the run ends
                await asyncio.gather(*calls)

    def budget_sample() -> None:
        fake.spend_rate_limit(0)  # rolls the windows to now
        headers = fake.rate_headers()
        used = parse_pair(headers["x-readratelimit-usage"]) or (0, 0)
        budget_rows.append((round(clock.now() - t0, 3), used[0], limits.read[0], used[1], limits.read[1]))

    async def sample_budget() -> None:
        while True:
            budget_sample()
            await clock.sleep(sc.budget_every_s)

    async def sample_divergence() -> None:
        assert sc.divergence_every_s is not None
        while True:
            missing = extra = stale = 0
            for r in syncs:
                m, e, s = await _exactness(fake, inner, users[r.athlete], ATHLETE_ID_BASE + r.athlete)
                missing, extra, stale = missing + m, extra + e, stale + s
            divergence_rows.append((round(clock.now() - t0, 3), missing, extra, stale))
            await clock.sleep(sc.divergence_every_s)

    budget_rows: list[tuple[float, int, int, int, int]] = []
    divergence_rows: list[tuple[float, int, int, int]] = []
    sampler = asyncio.ensure_future(sample_budget())
    divergence = asyncio.ensure_future(sample_divergence()) if sc.divergence_every_s else None
    workers = asyncio.ensure_future(_run_workers(sc, runner, store, clock, t0)) if strategy.uses_worker else None
    horizon = t0 + sc.max_sim_s
    clients = [asyncio.ensure_future(visit(r)) for r in sc.workload.syncs]
    clients += [asyncio.ensure_future(webhook(r)) for r in sc.workload.webhooks]
    if sc.churn is not None:
        clients.append(asyncio.ensure_future(churn()))
    ticker = asyncio.ensure_future(tick()) if sc.tick_s is not None else None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*clients), timeout=sc.max_sim_s)
    # The browsers have left: a scheduler's ticks and the workers go on until no job is left.
    for keeper in (ticker, workers):
        if keeper is not None:
            await _until_no_job_left(inner, clock, horizon)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
    await _drain(platform.active, clock, horizon)
    end_s = clock.now() - t0
    sampler.cancel()
    # The reads made since the last sample, up to the run's end.
    if not budget_rows or budget_rows[-1][0] < round(end_s, 3):
        budget_sample()
    if divergence is not None:
        divergence.cancel()
    for task in clients:
        task.cancel()
    if bar is not None:
        bar.close()

    jobs: dict[int, Job | None] = {}
    for r in syncs:
        outcome = browsers[r.athlete].outcome
        jobs[r.athlete] = await inner.get_job(outcome.job_id) if outcome.job_id else None
    if sc.finish_at_end or sc.reconcile_at_end:
        await _finish_and_reconcile(
            runner("sim-finisher"), [users[r.athlete] for r in syncs], reconcile=sc.reconcile_at_end
        )
    synced: dict[int, int] = {}
    exactness: dict[int, tuple[int, int, int]] = {}
    for r in syncs:
        synced[r.athlete] = await inner.count_activities(users[r.athlete])
        exactness[r.athlete] = await _exactness(fake, inner, users[r.athlete], ATHLETE_ID_BASE + r.athlete)
    by_athlete: Counter[int] = Counter(
        q.athlete_id - ATHLETE_ID_BASE for q in fake.requests if q.athlete_id is not None
    )
    await http.aclose()
    for client in strava_clients:
        await client.aclose()
    await inner.close()
    return RunRecord(
        scenario=sc,
        t0=t0,
        end_s=end_s,
        recorder=recorder,
        outcomes={a: b.outcome for a, b in browsers.items()},
        jobs=jobs,
        synced=synced,
        requests_by_athlete=by_athlete,
        budget_rows=budget_rows,
        strava_requests=len(fake.requests),
        deleted=deleted,
        exactness=exactness,
        divergence_rows=divergence_rows,
        extra={"fake_counts": dict(fake.counts), "budget_refused": sum(b.refused for b in budgets)},
    )


async def _run_workers(sc: Scenario, runner: Any, store: Any, clock: Clock, t0: float) -> None:
    """The ``worker`` strategy's long-running worker; killed and restarted on cue.

    The kill is SIGKILL's: from that instant the worker's store refuses every call (as a killed invocation's
    does), so nothing it was doing is written; its leases lapse and the restarted worker reclaims the jobs.
    """
    life = Invocation(clock=clock, started_at=clock.now(), deadline=None, platform="worker-vm")
    worker = Worker(
        runner("sim-worker", guard_store(store, life)), concurrency=sc.worker_concurrency, poll_s=sc.worker_poll_s
    )
    task = asyncio.ensure_future(worker.run())
    try:
        if sc.worker_kill_at_s is not None:
            await clock.sleep(t0 + sc.worker_kill_at_s - clock.now())
            life.kill("the worker was killed")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, InvocationKilled):
                await task
            await clock.sleep(sc.worker_restart_s)
            worker = Worker(runner("sim-worker-2"), concurrency=sc.worker_concurrency, poll_s=sc.worker_poll_s)
            task = asyncio.ensure_future(worker.run())
        await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _finish_and_reconcile(runner: JobRunner, users: list[uuid.UUID], *, reconcile: bool) -> None:
    """After the run: a worker finishes every job left (expired leases reclaimed); then, if asked, one reconcile
    per user."""
    await Worker(runner, concurrency=8, burst=True, poll_s=1.0).run()
    if reconcile:
        for user in users:
            await runner.submit(user, {"mode": "reconcile"})
        await Worker(runner, concurrency=8, burst=True, poll_s=1.0).run()


async def _exactness(fake: FakeStrava, store: SQLiteStore, user: uuid.UUID, athlete_id: int) -> tuple[int, int, int]:
    """(missing, extra, stale): the user's stored activities against what the athlete has on FakeStrava now.

    An unchanged history's ids are one contiguous range and its fields are what it was generated with, so two
    counts settle it (ids in the range, ids outside it), even for a sync that has not finished; any other is
    compared activity by activity, field by field."""
    if fake.unchanged(athlete_id):
        expected = fake.athlete(athlete_id).activity_count
        first = fake.histories.activity_id(fake.histories.state(athlete_id), 0)
        count, inside = store.conn.execute(
            "SELECT count(*), coalesce(sum(id BETWEEN ? AND ?), 0) FROM strava_activities WHERE user_id = ?",
            (first, first + expected - 1, str(user)),
        ).fetchone()
        return expected - inside, count - inside, 0
    truth = {i: Activity.from_json(summary).fields for i, summary in fake.truth(athlete_id).items()}
    stored = await store.stored_activities(user)
    stale = sum(1 for i in truth.keys() & stored.keys() if stored[i].fields != truth[i])
    return len(truth.keys() - stored.keys()), len(stored.keys() - truth.keys()), stale


async def _until_no_job_left(store: SQLiteStore, clock: Clock, horizon: float) -> None:
    """Wait, a simulated minute at a time, until no job is pending or running, or the horizon."""
    while clock.now() < horizon and _jobs_active(store):
        await clock.sleep(min(60.0, horizon - clock.now()))


#: Whether any job is active, answered by the partial indexes of pending and running jobs (their statuses written
#: out, as a partial index needs): ``list_jobs(status=…)`` sorts every job of the status by creation, and a run
#: under a new app's daily limit asks once a simulated minute for days.
_ACTIVE_SQL = " OR ".join(
    f"EXISTS (SELECT 1 FROM sync_jobs WHERE status = '{JobStatus(status).value}')" for status in ACTIVE_STATUSES
)


def _jobs_active(store: SQLiteStore) -> bool:
    return bool(store.conn.execute(f"SELECT {_ACTIVE_SQL}").fetchone()[0])


async def _drain(active: set[Invocation], clock: Clock, horizon: float) -> None:
    """Wait for running invocations to end (their deadline bounds them); kill what is left at the horizon."""
    while active:
        left = horizon - clock.now()
        if left <= 0:
            for invocation in list(active):
                invocation.kill("the simulation ended")
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(inv.drain() for inv in list(active)), return_exceptions=True), timeout=left
            )
        await asyncio.sleep(0)


def _progress_bar(total: int, sc: Scenario) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{sc.platform.name}/{sc.strategy} athletes", unit="athlete", leave=False)


#: The collector's thresholds during a run (net allocations, then collections of generation 0 and of 1).
RUN_GC_THRESHOLDS = (1_000_000, 20, 100)


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Run with a collector tuned for a simulation, restored afterwards.

    A run allocates tens of millions of short-lived objects, nearly all freed by reference counting, yet with
    the default thresholds (700, 10, 10) every 700 net allocations start a collection, and the oldest
    generation is walked dozens of times: every object of the process, pandas, numpy, Starlette and the rest
    of what is imported, that the run never frees. So: everything that exists before the run is frozen out of
    collections (``gc.freeze``), and collections start after 1,000,000 net allocations.

    Why that many: the count that starts a collection is allocations minus deallocations, and in a steady run
    every poll frees older objects as it allocates new ones, so the count climbs slowly while the youngest
    generation fills with every object made since the last collection that is still alive, and each collection
    walks all of those. With a threshold this high a run makes almost no collection (docs/performance.md has
    the figures). The runs make few reference cycles, which are still collected, only later. Everything is
    unfrozen, and the thresholds restored, once the run is over.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*RUN_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def run_scenario(sc: Scenario) -> RunRecord:
    """Run ``sc`` on a fresh virtual-time loop (works from a Jupyter cell too)."""
    from syncsim.sim.virtual import run_virtual

    wall, cpu = time.perf_counter(), time.process_time()
    with _frozen_heap():
        record = run_virtual(lambda: _simulate(sc))
    # How long the run took here (not part of its outcome, which depends on the seed alone).
    record.extra["run_wall_s"] = round(time.perf_counter() - wall, 3)
    record.extra["run_cpu_s"] = round(time.process_time() - cpu, 3)
    record.extra["run_pid"] = os.getpid()
    return record
