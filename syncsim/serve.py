"""Serving the API: ``syncsim serve``, ``syncsim token``, and :func:`running_server` (tests, benchmarks).

``register_cli(subparsers)`` adds both sub-commands to ``syncsim``'s parser and returns their handlers by
name, for :mod:`syncsim.cli` to dispatch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from syncsim import defaults
from syncsim.errors import ConfigError, InvalidInput
from syncsim.strava.trace import Trace

__all__ = ["SERVE_PLATFORMS", "register_cli", "running_server"]

#: The platform presets ``serve`` accepts (``worker-vm`` is a cost reference, not a place to serve from).
SERVE_PLATFORMS = ("hobby", "pro", "hobby-fluid", "pro-fluid", "unlimited")
SERVE_STRATEGIES = ("waituntil", "resumable", "worker")
#: How long ``running_server`` waits for uvicorn to start listening before giving up (seconds).
START_TIMEOUT_S = 10.0

Command = Callable[[argparse.Namespace], int]


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("serving the API needs uvicorn: pip install 'syncsim[api]'") from None
    return uvicorn


@contextlib.asynccontextmanager
async def running_server(app: Any, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on the running loop; yields its base URL once it is listening.

    ``port=0`` picks a free port. The socket is bound before uvicorn starts, so the URL is known and valid
    at once; on exit the server shuts down gracefully (open connections closed, lifespan shutdown run).
    Signal handlers are left alone: this server is embedded in a test or a benchmark, not the process's own.
    """
    uvicorn = _uvicorn()

    class EmbeddedServer(uvicorn.Server):  # type: ignore[misc,name-defined]
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    config.setdefault("log_config", None)
    config.setdefault("access_log", False)
    config.setdefault("lifespan", "on")
    server = EmbeddedServer(uvicorn.Config(app, **config))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + START_TIMEOUT_S
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise ConfigError("the API server stopped during start-up (see the log above)")
            if loop.time() > give_up:
                raise ConfigError(f"the API server did not start within {START_TIMEOUT_S} s")
            await asyncio.sleep(0.005)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


# -- the CLI -------------------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from syncsim.api import build_app
    from syncsim.jobs.store import open_store, redact_url

    uvicorn = _uvicorn()
    if args.time_scale <= 0:
        raise InvalidInput(f"--time-scale must be > 0, got {args.time_scale}")
    margin = args.deadline_margin if args.deadline_margin is not None else defaults.DEADLINE_MARGIN_S * args.time_scale
    if margin < 0:
        raise InvalidInput(f"--deadline-margin must be >= 0, got {margin}")

    trace = _strava_trace(args.strava_trace) if args.strava_trace else None

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
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(
        f"syncsim API on http://{args.host}:{args.port} — store {redact_url(url)}, platform {args.platform}"
        f" (x{args.time_scale:g}, deadline margin {margin:g} s), strategy {args.strategy}",
        flush=True,
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, lifespan="on", log_level="info")
    finally:
        if trace is not None:
            path = trace.to_csv(args.strava_trace)
            print(f"wrote {len(trace)} Strava request(s) to {path}", flush=True)
    return 0


def _strava_trace(path: str) -> Trace:
    """A trace of every request the server's Strava client sends, written to ``path`` when the server stops.

    uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default action would end the
    process before the trace is written, so SIGTERM exits through ``SystemExit`` instead (as Ctrl-C does through
    ``KeyboardInterrupt``)."""
    import signal
    import sys

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return Trace()


def _token(args: argparse.Namespace) -> int:
    from syncsim.auth import jwt_secret_from_env, mint_token
    from syncsim.clock import SystemClock

    secret = args.secret if args.secret is not None else jwt_secret_from_env()
    print(mint_token(args.user, secret, ttl_s=args.ttl, now=SystemClock().now()))
    return 0


def register_cli(subparsers: Any) -> dict[str, Command]:
    """Add ``serve`` and ``token`` to ``syncsim``'s sub-parsers; return ``{name: handler(args) -> exit}``."""
    p = subparsers.add_parser("serve", help="run the HTTP API (uvicorn)")
    p.add_argument("--store", default=None, help=f"store URL (default: ${defaults.STORE_ENV} or {defaults.STORE_URL})")
    p.add_argument("--platform", choices=SERVE_PLATFORMS, default="unlimited", help="time limit per invocation")
    p.add_argument("--strategy", choices=SERVE_STRATEGIES, default="waituntil", help="how jobs run (design.md)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
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
        "--max-background-jobs",
        type=int,
        default=defaults.MAX_BACKGROUND_JOBS,
        help=f"jobs this process syncs at once; the rest wait (0: no bound; default {defaults.MAX_BACKGROUND_JOBS})",
    )

    p = subparsers.add_parser("token", help="print a user JWT for local use (HS256, $SYNCSIM_JWT_SECRET)")
    p.add_argument("user", help="the user's UUID (the token's sub)")
    p.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (default 3600)")
    p.add_argument("--secret", default=None, help="signing secret (default: $SYNCSIM_JWT_SECRET)")
    return {"serve": _serve, "token": _token}
