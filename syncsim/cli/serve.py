"""``syncsim serve`` (the HTTP API on uvicorn) and ``syncsim token`` (a user JWT for local use)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
from typing import Any

from syncsim import defaults
from syncsim.api.serve import listening_socket, uvicorn_module
from syncsim.cli.common import Command, count, output_file, port
from syncsim.errors import InvalidInput
from syncsim.strava.trace import Trace

__all__ = ["SERVE_PLATFORMS", "SERVE_STRATEGIES", "register_cli"]

SERVE_PLATFORMS = ("hobby", "pro", "hobby-fluid", "pro-fluid", "unlimited")

SERVE_STRATEGIES = ("waituntil", "resumable", "worker")
#: The longest lifetime ``syncsim token`` gives a token: one that outlives it is a password nobody rotates.
MAX_TOKEN_TTL_S = 365 * 24 * 3600


def _serve(args: argparse.Namespace) -> int:
    from syncsim.api.app import build_app
    from syncsim.stores import open_store, redact_url

    uvicorn = uvicorn_module()
    if not (args.time_scale > 0 and math.isfinite(args.time_scale)):
        raise InvalidInput(f"--time-scale must be a finite number > 0, got {args.time_scale}")
    margin = args.deadline_margin if args.deadline_margin is not None else defaults.DEADLINE_MARGIN_S * args.time_scale
    if not (margin >= 0 and math.isfinite(margin)):
        raise InvalidInput(f"--deadline-margin must be a finite number >= 0, got {margin}")
    trace_path = output_file(args.strava_trace, "--strava-trace", suffixes=(".csv",)) if args.strava_trace else None
    sock = listening_socket(args.host, args.port)  # a port in use: one line before any output, not uvicorn's exit 3

    trace = _strava_trace() if trace_path is not None else None
    if args.strava_url:
        from syncsim.strava.client import strava_base_url

        strava_base_url(args.strava_url, setting="--strava-url")

    async def migrate() -> str:
        store = open_store(args.store)
        try:
            await store.migrate()
            return store.url
        finally:
            await store.close()

    # Migrate before serving so a bad store is one clear line, not a lifespan traceback.
    url = asyncio.run(migrate())
    app = build_app(
        args.store,
        platform=args.platform,
        strategy=args.strategy,
        strava_url=args.strava_url,
        time_scale=args.time_scale,
        migrate=False,
        max_background_jobs=args.max_background_jobs or None,
        deadline_margin_s=margin,
        strava_trace=trace,
        demo=args.demo,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(
        f"syncsim API on http://{args.host}:{sock.getsockname()[1]} — store {redact_url(url)}, platform {args.platform}"
        f" (x{args.time_scale:g}, deadline margin {margin:g} s), strategy {args.strategy}"
        + (", demo jobs allowed" if args.demo else ""),
        flush=True,
    )
    try:
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            access_log=False,
            lifespan="on",
            log_level="info",
            limit_concurrency=args.limit_concurrency,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if trace is not None and trace_path is not None:
            path = trace.to_csv(trace_path)
            print(f"wrote {len(trace)} Strava request(s) to {path}", flush=True)
    return 0


def _strava_trace() -> Trace:
    """A trace of every request the server's Strava client sends, written to ``--strava-trace`` when it stops.

    uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default action would end the
    process before the trace is written, so SIGTERM exits through ``SystemExit`` instead (as Ctrl-C does through
    ``KeyboardInterrupt``)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return Trace()


def _token(args: argparse.Namespace) -> int:
    from syncsim.api.auth import jwt_secret_from_env, mint_token
    from syncsim.clock import SystemClock
    from syncsim.jobs.model import parse_user_id

    user = parse_user_id(args.user)  # the user's mistake first, before the environment's
    if not 0 < args.ttl <= MAX_TOKEN_TTL_S:  # also refuses nan
        raise InvalidInput(f"--ttl must be > 0 and at most {MAX_TOKEN_TTL_S:,} s (a year), got {args.ttl:g}")
    secret = args.secret if args.secret is not None else jwt_secret_from_env()
    print(mint_token(user, secret, ttl_s=args.ttl, now=SystemClock().now()))
    return 0


def register_cli(subparsers: Any) -> dict[str, Command]:
    """Add ``serve`` and ``token`` to ``syncsim``'s sub-parsers; return ``{name: handler(args) -> exit}``."""
    p = subparsers.add_parser("serve", help="run the HTTP API (uvicorn)")
    p.add_argument("--store", default=None, help=f"store URL (default: ${defaults.STORE_ENV} or {defaults.STORE_URL})")
    p.add_argument("--platform", choices=SERVE_PLATFORMS, default="unlimited", help="time limit per invocation")
    p.add_argument("--strategy", choices=SERVE_STRATEGIES, default="waituntil", help="how jobs run (design.md)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    p.add_argument("--strava-url", default=None, help="Strava's base URL (e.g. a FakeStrava on loopback)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply the platform's time limit (scaled validation runs)",
    )
    p.add_argument(
        "--deadline-margin",
        type=float,
        default=None,
        metavar="S",
        help=f"stop starting Strava requests this long before an invocation's deadline (default "
        f"{defaults.DEADLINE_MARGIN_S:g} s x --time-scale)",
    )
    p.add_argument(
        "--strava-trace",
        metavar="FILE.csv",
        default=None,
        help="write every Strava request the server sent (no tokens) to a CSV trace when it stops",
    )
    p.add_argument(
        "--limit-concurrency",
        type=count,
        default=defaults.SERVE_LIMIT_CONCURRENCY,
        metavar="N",
        help=f"answer 503 beyond N open connections and requests at once (default {defaults.SERVE_LIMIT_CONCURRENCY});"
        " behind the public internet, put a reverse proxy that times out slow clients in front",
    )
    p.add_argument(
        "--max-background-jobs",
        type=int,
        default=defaults.MAX_BACKGROUND_JOBS,
        help=f"jobs this process syncs at once; the rest wait (0: no bound; default {defaults.MAX_BACKGROUND_JOBS})",
    )

    p.add_argument(
        "--demo",
        action="store_true",
        help="also let users submit the built-in demo and noop jobs (never on a public server)",
    )

    p = subparsers.add_parser("token", help="print a user JWT for local use (HS256, $SYNCSIM_JWT_SECRET)")
    p.add_argument("user", help="the user's UUID (the token's sub)")
    p.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (default 3600)")
    p.add_argument("--secret", default=None, help="signing secret (default: $SYNCSIM_JWT_SECRET)")
    return {"serve": _serve, "token": _token}
