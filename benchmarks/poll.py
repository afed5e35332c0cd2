"""What Starlette's router costs a status poll on the real server: is a route ahead of the router worth it?

Until issue #13 the status poll (``GET /api/sync/{jobId}``) was answered by a hand-written route placed ahead of
Starlette's router, which re-implemented its exception lookup. It went back through the router, with the rule
that it comes back only if a measurement of the real server shows the router costing more than 10 % of a poll.
This is that measurement, on the server as deployed (:func:`syncsim.api.app.build_app`: hobby, ``resumable``,
SQLite on a file with ``--jobs`` completed jobs), side by side in one run:

- **app** — the poll as uvicorn hands it to the app: one ASGI call of the whole app (Starlette's error
  middleware, the invocation middleware, the exception middleware, the router, the route's request/response
  wrapper, the endpoint);
- **endpoint** — what a route ahead of the router would do: the same endpoint called with a ready ``Request``
  inside a platform invocation, its response sent; no router, no Starlette middleware;
- **loopback** — the poll as a client pays it: HTTP/1.1 keep-alive to the same app on uvicorn on 127.0.0.1
  (another process; p50 of ``--calls`` polls), the denominator a user sees.

The two in-process variants alternate in blocks of ``BLOCK`` polls (``--calls`` × ``ROUNDS`` of each, after a
warm-up); each poll reads the job from the store and builds its body, as a server does. Printed: µs per poll of
each, their difference (router + middleware), and that difference as a share of the in-process poll and of the
loopback one. Timings are noisy on a shared machine: compare within one run.

    .venv/bin/python benchmarks/poll.py
    .venv/bin/python benchmarks/poll.py --calls 5000 --jobs 1000
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, where benchmarks/queue.py would shadow the standard
# library's ``queue`` (which asyncio and anyio import): drop that entry before anything imports it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
# The repository's root instead, for the loopback harness shared with tick.py and api.py.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from benchmarks.api import _free_port, _percentile, _stop, _wait_for_http
from benchmarks.tick import JWT_SECRET, fill, measure, spawn_api, user_id

JOBS = 1_000  # completed jobs (of as many users) in the table
CALLS = 20_000  # timed in-process polls of each variant per round
ROUNDS = 3
BLOCK = 1_000  # polls of one variant in a row before the other's turn
LOOPBACK_CALLS = 2_000
SHARE_LIMIT = 0.10  # the rule: bypass the router only if it costs more than this share of a poll


class _Exchange:
    """One request's ASGI channels: the (empty) body in, the response collected."""

    __slots__ = ("body", "sent", "status")

    def __init__(self) -> None:
        self.sent = False
        self.status = 0
        self.body = b""

    async def receive(self) -> dict[str, Any]:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


async def in_process(url: str, job_id: uuid.UUID, calls: int) -> dict[str, list[float]]:
    """µs per poll of each variant, one figure per block (module docstring)."""
    from starlette.requests import Request
    from starlette.routing import Route

    from syncsim.api.app import build_app
    from syncsim.api.auth import mint_token
    from syncsim.api.http import INVOCATION_KEY
    from syncsim.platforms.local import LocalPlatform

    platform = LocalPlatform("hobby")
    platform.keep_history = False  # a server does not keep every invocation it served
    app = build_app(url, platform=platform, strategy="resumable", jwt_secret=JWT_SECRET, migrate=False)
    route = next(r for r in app.routes if isinstance(r, Route) and r.path == "/api/sync/{jobId}")
    endpoint = route.endpoint
    token = mint_token(user_id(0), JWT_SECRET, now=time.time())
    path = f"/api/sync/{job_id}"
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]
    base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
    }

    async def via_app() -> _Exchange:
        exchange = _Exchange()
        await app(dict(base), exchange.receive, exchange.send)
        return exchange

    async def via_endpoint() -> _Exchange:
        exchange = _Exchange()
        invocation = platform.start_invocation()
        scope = {**base, "app": app, "path_params": {"jobId": str(job_id)}, INVOCATION_KEY: invocation}
        try:
            response = await endpoint(Request(scope, exchange.receive, exchange.send))
            await response(scope, exchange.receive, exchange.send)
        finally:
            invocation.finish_response()
        return exchange

    variants = {"app": via_app, "endpoint": via_endpoint}
    async with app.router.lifespan_context(app):
        for name, call in variants.items():  # warm-up, and both answer the same
            exchange = await call()
            if exchange.status != 200 or orjson.loads(exchange.body).get("status") != "completed":
                raise SystemExit(f"{name}: the poll answered {exchange.status}: {exchange.body[:300]!r}")
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(ROUNDS):
            done = 0
            while done < calls:
                block = min(BLOCK, calls - done)
                for name, call in variants.items():
                    started = time.perf_counter()
                    for _ in range(block):
                        await call()
                    samples[name].append((time.perf_counter() - started) / block * 1e6)
                done += block
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"completed jobs in the table (default {JOBS})")
    parser.add_argument("--calls", type=int, default=CALLS, help=f"in-process polls per variant per round ({CALLS})")
    parser.add_argument("--no-loopback", action="store_true", help="skip the poll over uvicorn on loopback")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.calls < 1:
        parser.error("--jobs and --calls must be >= 1")
    with tempfile.TemporaryDirectory(prefix="syncsim-poll-") as tmp:
        url = f"sqlite:///{tmp}/poll.db"
        job_id = asyncio.run(fill(url, jobs=args.jobs, users=args.jobs))
        samples = asyncio.run(in_process(url, job_id, args.calls))
        loopback_p50 = None
        if not args.no_loopback:
            port = _free_port()
            api = spawn_api(url, port)
            try:
                base_url = f"http://127.0.0.1:{port}"
                asyncio.run(_wait_for_http(base_url, api))
                loopback_p50 = _percentile(asyncio.run(measure(base_url, job_id, LOOPBACK_CALLS))["poll"], 0.5) * 1000
            finally:
                _stop(api)

    app_us, endpoint_us = statistics.median(samples["app"]), statistics.median(samples["endpoint"])
    router_us = app_us - endpoint_us
    print(f"\nA status poll of a completed job, SQLite on a file, {args.jobs:,} jobs in the table")
    print(f"(median µs per poll over {len(samples['app'])} blocks of {BLOCK} polls of each variant, interleaved)\n")
    print(f"  app (as uvicorn calls it)        {app_us:8.1f} µs")
    print(f"  endpoint (ahead of the router)   {endpoint_us:8.1f} µs   (the app costs {app_us / endpoint_us:.2f}x it)")
    print(f"  router + Starlette middleware    {router_us:8.1f} µs   ({router_us / app_us:.1%} of the in-process poll)")
    if loopback_p50 is not None:
        share = router_us / loopback_p50
        print(f"  poll over loopback HTTP, p50     {loopback_p50:8.1f} µs   (router: {share:.1%} of it)")
        verdict = "keep the router" if share <= SHARE_LIMIT else "a route ahead of the router is worth it"
        print(f"\nrule: bypass only above {SHARE_LIMIT:.0%} of a poll as served -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
