"""Serving the API with uvicorn: :func:`running_server` embeds it in a running event loop (tests, benchmarks);
``syncsim serve`` (:mod:`syncsim.cli.serve`) runs it as the process's own server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from syncsim.errors import ConfigError

__all__ = ["listening_socket", "running_server", "uvicorn_module"]

#: How long ``running_server`` waits for uvicorn to start listening before giving up (seconds).
START_TIMEOUT_S = 10.0


def uvicorn_module() -> Any:
    """uvicorn, or a ConfigError saying which extra brings it."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("serving the API needs uvicorn: pip install 'syncsim[api]'") from None
    return uvicorn


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for uvicorn to serve on (``Server.serve(sockets=[...])``), or one
    :class:`ConfigError` line (a port in use, an address not this machine's): uvicorn itself would log the
    error among its start-up lines and exit with status 3."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, UnicodeError) as exc:  # in use, not this machine's, not a host name
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


@contextlib.asynccontextmanager
async def running_server(app: Any, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on the running loop; yields its base URL once it is listening.

    ``port=0`` picks a free port. The socket is bound before uvicorn starts, so the URL is known and valid
    at once; on exit the server shuts down gracefully (open connections closed, lifespan shutdown run).
    Signal handlers are left alone: this server is embedded in a test or a benchmark, not the process's own.
    """
    uvicorn = uvicorn_module()

    class EmbeddedServer(uvicorn.Server):  # type: ignore[misc,name-defined]
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    sock = listening_socket(host, port)
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
