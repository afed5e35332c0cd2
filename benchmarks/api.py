"""The API's latency under load: ``waitUntil``-style background syncs against syncs run inline, side by side.

One run, two modes of the same app on the same machine:

- **wait_until** — the design: ``POST /api/sync`` writes the row, answers 202, and the sync runs in the
  background of the request's invocation;
- **inline** — the same app wrapped by :func:`syncsim.api.respond_after_work`: every response waits until
  the work its request started is done (the sync runs *before* the answer).

For each mode, on a fresh store (SQLite, or PostgreSQL with ``--postgres``), three processes: FakeStrava on
loopback (seeded, ``--strava-latency`` seconds per request, app-wide rate limits lifted), the API on uvicorn
(syncing from that FakeStrava over HTTP), and this driver. First ``--syncs`` heavy athletes start a sync each
(background load, not measured); then ``--clients`` clients, arriving at seeded random times within
``--spread`` seconds, each send one ``POST /api/sync`` (their own, light sync) and ``GETS_PER_CLIENT`` status
polls ``POLL_EVERY_S`` apart. Printed: p50/p99/max latency of POST and GET per mode, errors, how many syncs
completed with how many activities, and the inline / wait_until ratios. Target: POST p99 < 50 ms with
wait_until (the design's bar: 1 s).

The API server is one Python process: the background syncs' own CPU (parsing pages, upserting rows) shares
its event loop with the requests, so the request path queues behind them once they need most of a core (the
API process's CPU share is printed). On Vercel every invocation has its own instance and the syncs are paced
by Strava's app-wide rate limit (lifted here), so this is a harsher setting than the deployment. Timings are
noisy on a shared machine: compare the ratios of one run, not numbers across runs.

    .venv/bin/python benchmarks/api.py
    .venv/bin/python benchmarks/api.py --clients 50 --syncs 10 --strava-latency 0.2 --postgres
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, where benchmarks/queue.py would shadow the standard
# library's ``queue`` (which asyncio and anyio import): drop that entry before anything imports it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import orjson

SEED = 20240601
CLIENTS = 200  # clients measured
SYNCS = 50  # heavy syncs running in the background meanwhile
HEAVY_ACTIVITIES = 600  # a heavy athlete: 3 pages + the empty one
LIGHT_ACTIVITIES = 100  # a measured client's own sync: 1 page + the empty one
STRAVA_LATENCY_S = 1.0  # median FakeStrava latency per request (lognormal, sigma 0.3): a 200-item page
ARRIVAL_SPREAD_S = 2.0  # clients arrive within this window, as users do, not in a single instant
GETS_PER_CLIENT = 4  # status polls per client after its POST
POLL_EVERY_S = 0.25  # between a client's polls
LOAD_HEAD_START_S = 0.5  # the heavy syncs start this long before the clients
RUN_TIMEOUT_S = 180.0  # the measured load, per mode
DRAIN_TIMEOUT_S = 180.0  # waiting for every sync to finish after the load, per mode
SECRET = "syncsim-benchmark-secret-0123456789abcdef"
UNLIMITED = (10**9, 10**9)  # Strava's app-wide budget lifted: this measures the API, not the budget
MODES = ("wait_until", "inline")

REPO = Path(__file__).resolve().parents[1]


def user_id(index: int) -> uuid.UUID:
    """The benchmark's ``index``-th user; heavy users come first (every process agrees)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"syncsim-benchmark:{SEED}:{index}")


# -- the two server processes ------------------------------------------------------------------------------------
async def serve_strava(args: argparse.Namespace) -> None:
    """FakeStrava on loopback in its own process (its CPU is Strava's, not the API's).

    Every benchmark user gets a FakeStrava athlete (heavy ones first) whose tokens are written to the store
    before this server listens: once it answers, the store is ready.
    """
    import uvicorn

    from syncsim.clock import SystemClock
    from syncsim.stores import open_store
    from syncsim.strava.fake import FakeStrava, LatencyModel

    clock = SystemClock()
    fake = FakeStrava(
        clock=clock,
        seed=SEED,
        latency=LatencyModel(median_s=args.strava_latency, sigma=0.3, seed=SEED),
        read_limits=UNLIMITED,
        overall_limits=UNLIMITED,
        keep_log=False,
    )
    store = open_store(args.store)
    await store.migrate()
    for index in range(args.syncs + args.clients):
        athlete = fake.add_athlete(activities=args.heavy if index < args.syncs else LIGHT_ACTIVITIES)
        await store.save_tokens(user_id(index), athlete.tokens(), now=clock.now())
    await store.close()
    config = uvicorn.Config(
        fake.asgi_app,
        interface="asgi3",
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=300,
        backlog=4096,
    )
    await uvicorn.Server(config).serve()


async def serve_api(args: argparse.Namespace) -> None:
    """The API (answering at once, or held until the work is done), syncing from FakeStrava over HTTP."""
    import uvicorn

    from syncsim.api.app import create_app
    from syncsim.api.http import respond_after_work
    from syncsim.clock import SystemClock
    from syncsim.jobs.handlers import register_builtin_handlers
    from syncsim.jobs.runner import HandlerRegistry, JobRunner
    from syncsim.jobs.service import JobService
    from syncsim.platforms import LocalPlatform
    from syncsim.stores import open_store
    from syncsim.strava.client import StravaClient
    from syncsim.strava.ratelimit import RateLimitBudget
    from syncsim.strava.sync import register_strava_sync

    clock = SystemClock()
    store = open_store(args.store)
    await store.migrate()
    strava = StravaClient(
        tokens=store,
        clock=clock,
        base_url=args.strava_url,
        client_id="fake-client",  # FakeStrava's defaults
        client_secret="fake-secret",
        budget=RateLimitBudget(overall_limits=UNLIMITED, read_limits=UNLIMITED),
        timeout_s=120.0,
    )
    registry = register_strava_sync(register_builtin_handlers(HandlerRegistry()))
    runner = JobRunner(store, handlers=registry, clock=clock, strategy="waituntil", resources={"strava": strava})
    platform = LocalPlatform("unlimited", clock=clock)
    platform.keep_history = False
    app = create_app(
        service=JobService(runner, max_background_jobs=args.max_background_jobs), platform=platform, jwt_secret=SECRET
    )
    served = respond_after_work(app) if args.mode == "inline" else app
    config = uvicorn.Config(
        served,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=300,  # longer than a run: no idle connection is closed under a client's feet
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await strava.aclose()
        await store.close()


# -- the load ---------------------------------------------------------------------------------------------------
@dataclass
class Samples:
    """One mode's measurements: latencies in ms, errors, and how the syncs ended."""

    post_ms: list[float] = field(default_factory=list)
    get_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    activities: int = 0
    load_s: float = 0.0
    api_cpu_s: float = float("nan")  # CPU the API process used from the first POST to the last outcome
    wall_s: float = 0.0
    machine_idle: float = float("nan")  # share of all CPUs' time idle meanwhile (other load on the machine)


def _headers(index: int) -> dict[str, str]:
    from syncsim.api.auth import mint_token
    from syncsim.clock import SystemClock

    token = mint_token(user_id(index), SECRET, ttl_s=3600, now=SystemClock().now())
    return {"Authorization": f"Bearer {token}"}


class KeepAliveClient:
    """One client's HTTP/1.1 keep-alive connection, with the least client code possible.

    The load driver must cost far less CPU than the server it measures: httpx with 250 concurrent connections
    saturated a core of this 2-core machine and its own queueing showed up as seconds of "latency" while the
    server answered in about a millisecond. This reads exactly what uvicorn sends (status, headers,
    Content-Length body) and nothing more.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Length: 0"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = int((await self._reader.readline()).split()[1])
        length, close = 0, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        body = await self._reader.readexactly(length)
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = self._reader = None


async def _timed(
    http: KeepAliveClient, method: str, path: str, headers: dict[str, str], out: list[float], errors: list[str]
) -> tuple[int, bytes] | None:
    started = time.perf_counter()
    try:
        status, body = await http.request(method, path, headers)
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        errors.append(f"{method}: {type(exc).__name__}")
        await http.close()
        return None
    out.append((time.perf_counter() - started) * 1000)
    if status >= 400:
        errors.append(f"{method}: HTTP {status}")
    return status, body


async def _client(host: str, port: int, index: int, delay_s: float, samples: Samples) -> None:
    headers = _headers(index)
    http = KeepAliveClient(host, port)
    try:
        await asyncio.sleep(delay_s)
        response = await _timed(http, "POST", "/api/sync", headers, samples.post_ms, samples.errors)
        if response is None or response[0] != 202:
            return
        job_id = orjson.loads(response[1])["jobId"]
        for _ in range(GETS_PER_CLIENT):
            await asyncio.sleep(POLL_EVERY_S)
            await _timed(http, "GET", f"/api/sync/{job_id}", headers, samples.get_ms, samples.errors)
    finally:
        await http.close()


async def _background_sync(host: str, port: int, index: int, errors: list[str]) -> None:
    http = KeepAliveClient(host, port)
    try:
        await _timed(http, "POST", "/api/sync", _headers(index), [], errors)
    finally:
        await http.close()


async def _count_outcomes(http: httpx.AsyncClient, users: int, samples: Samples) -> None:
    """Wait until every user's latest job is final; count completed/failed and the activities synced."""
    give_up = time.monotonic() + DRAIN_TIMEOUT_S
    pending = set(range(users))
    headers = {index: _headers(index) for index in pending}
    while pending and time.monotonic() < give_up:
        for index in sorted(pending):
            jobs = (await http.get("/api/sync?limit=1", headers=headers[index])).json()["jobs"]
            if jobs and jobs[0]["status"] in ("completed", "failed"):
                pending.discard(index)
                if jobs[0]["status"] == "completed":
                    samples.completed += 1
                    samples.activities += int(jobs[0]["result"]["activities"])
                else:
                    samples.failed += 1
        if pending:
            await asyncio.sleep(0.5)


async def load(base_url: str, args: argparse.Namespace) -> Samples:
    """The background syncs, then the measured clients; then every job's outcome."""
    samples = Samples()
    limits = httpx.Limits(max_connections=args.clients + args.syncs + 10, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=RUN_TIMEOUT_S) as http:
        background_errors: list[str] = []
        url = httpx.URL(base_url)
        host, port = url.host, int(url.port or 80)
        heavy = [asyncio.ensure_future(_background_sync(host, port, i, background_errors)) for i in range(args.syncs)]
        await asyncio.sleep(LOAD_HEAD_START_S)
        rng = random.Random(SEED)
        delays = [rng.uniform(0, args.spread) for _ in range(args.clients)]
        started = time.perf_counter()
        clients = [_client(host, port, args.syncs + i, delays[i], samples) for i in range(args.clients)]
        await asyncio.wait_for(asyncio.gather(*clients), RUN_TIMEOUT_S)
        samples.load_s = time.perf_counter() - started
        await asyncio.wait_for(asyncio.gather(*heavy), RUN_TIMEOUT_S)
        samples.errors += [f"background {e}" for e in background_errors]
        await _count_outcomes(http, args.syncs + args.clients, samples)
    return samples


# -- one mode, end to end ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for_http(base_url: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``base_url`` answers any HTTP request (or its process dies)."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        for _ in range(1200):
            if process.poll() is not None:
                raise SystemExit(f"the process serving {base_url} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                await http.get("/healthz")
                return
            await asyncio.sleep(0.05)
    raise SystemExit(f"nothing answered at {base_url}")


def _spawn(role: str, args: argparse.Namespace, port: int, store: str, *extra: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        __file__,
        f"--role={role}",
        f"--port={port}",
        f"--store={store}",
        f"--clients={args.clients}",
        f"--syncs={args.syncs}",
        f"--heavy={args.heavy}",
        f"--strava-latency={args.strava_latency}",
        f"--max-background-jobs={args.max_background_jobs}",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(command, env=env)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    if process.poll() is None:
        process.kill()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> tuple[int, int]:
    """(idle, total) CPU ticks of the whole machine so far (Linux ``/proc/stat``; zeros elsewhere)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait; user..steal


def run_mode(mode: str, args: argparse.Namespace, store: str) -> Samples:
    """FakeStrava and the API, each in its own process on a fresh store; the load from this one."""
    strava_port, api_port = _free_port(), _free_port()
    strava = _spawn("strava", args, strava_port, store)
    api = None
    try:
        asyncio.run(_wait_for_http(f"http://127.0.0.1:{strava_port}", strava))
        api = _spawn("api", args, api_port, store, f"--mode={mode}", f"--strava-url=http://127.0.0.1:{strava_port}")
        base_url = f"http://127.0.0.1:{api_port}"
        asyncio.run(_wait_for_http(base_url, api))
        cpu_before, idle_before, started = _cpu_seconds(api.pid), _machine_ticks(), time.perf_counter()
        samples = asyncio.run(load(base_url, args))
        samples.wall_s = time.perf_counter() - started
        samples.api_cpu_s = _cpu_seconds(api.pid) - cpu_before
        idle_after = _machine_ticks()
        samples.machine_idle = (idle_after[0] - idle_before[0]) / max(1, idle_after[1] - idle_before[1])
        return samples
    finally:
        for process in (api, strava):
            if process is not None:
                _stop(process)


# -- the report ----------------------------------------------------------------------------------------------------
def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method; NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def report(results: dict[str, Samples], args: argparse.Namespace) -> None:
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\nsyncsim API under load ({store}): {args.clients} clients arriving within {args.spread:g} s, 1 POST +"
        f" {GETS_PER_CLIENT} GET each, while {args.syncs} heavy syncs run ({args.heavy} activities each);"
        f" FakeStrava {args.strava_latency * 1000:.0f} ms median per request\n"
    )
    print(f"{'mode':<11}{'endpoint':<9}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}")
    for mode, s in results.items():
        for endpoint, values in (("POST", s.post_ms), ("GET", s.get_ms)):
            errors = sum(1 for e in s.errors if e.startswith(endpoint))
            print(
                f"{mode:<11}{endpoint:<9}{len(values):>6}{_percentile(values, 0.5):>10.1f}"
                f"{_percentile(values, 0.99):>10.1f}{max(values, default=float('nan')):>10.1f}{errors:>8}"
            )
    base, inline = results["wait_until"], results["inline"]
    print("\nratios inline / wait_until:")
    for endpoint, a, b in (("POST", base.post_ms, inline.post_ms), ("GET", base.get_ms, inline.get_ms)):
        p50 = _percentile(b, 0.5) / _percentile(a, 0.5)
        p99 = _percentile(b, 0.99) / _percentile(a, 0.99)
        print(f"  {endpoint:<5} p50 {p50:7.1f}x   p99 {p99:7.1f}x")
    p99 = _percentile(base.post_ms, 0.99)
    target = "met" if p99 < 50 else "missed"
    bar = "met" if p99 < 1000 else "missed"
    print(f"\nwait_until POST p99 = {p99:.1f} ms: target < 50 ms {target}; design bar < 1 s {bar}")
    expected = args.syncs * args.heavy + args.clients * LIGHT_ACTIVITIES
    for mode, s in results.items():
        kinds = "; ".join(sorted(set(s.errors))[:3]) or "none"
        print(
            f"{mode}: {s.completed}/{args.syncs + args.clients} syncs completed, {s.failed} failed,"
            f" {s.activities}/{expected} activities; clients done in {s.load_s:.1f} s; API process CPU"
            f" {s.api_cpu_s:.1f} s in {s.wall_s:.1f} s ({s.api_cpu_s / s.wall_s:.0%} of a core) while the machine"
            f" was {s.machine_idle:.0%} idle; errors: {kinds}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=CLIENTS, help=f"clients measured (default {CLIENTS})")
    parser.add_argument("--syncs", type=int, default=SYNCS, help=f"background heavy syncs (default {SYNCS})")
    parser.add_argument("--heavy", type=int, default=HEAVY_ACTIVITIES, help="activities per heavy athlete")
    parser.add_argument("--strava-latency", type=float, default=STRAVA_LATENCY_S, help="seconds per request")
    parser.add_argument("--spread", type=float, default=ARRIVAL_SPREAD_S, help="clients arrive within this, s")
    parser.add_argument(
        "--max-background-jobs",
        type=int,
        default=8,
        help="jobs the API process runs at once in the background (the rest wait; default 8)",
    )
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL store instead of SQLite")
    parser.add_argument("--role", choices=["driver", "strava", "api"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="wait_until", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--strava-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role != "driver":
        asyncio.run(serve_strava(args) if args.role == "strava" else serve_api(args))
        return 0
    if args.clients < 1 or args.syncs < 0 or args.heavy < 0:
        parser.error("--clients must be >= 1, --syncs and --heavy >= 0")
    with contextlib.ExitStack() as stack:
        if args.postgres:
            from syncsim.testing.postgres import TemporaryPostgres

            server = stack.enter_context(TemporaryPostgres())
            stores = {mode: server.create_database(f"bench_{mode}") for mode in MODES}
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="syncsim-api-bench-")))
            stores = {mode: f"sqlite:///{tmp / f'{mode}.db'}" for mode in MODES}
        results = {mode: run_mode(mode, args, stores[mode]) for mode in MODES}
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
