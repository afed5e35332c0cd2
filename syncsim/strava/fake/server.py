"""FakeStrava on loopback: a real HTTP server (uvicorn) for the CLI, notebooks, stravalib and curl.

``serve_fake_strava`` runs in the foreground (``syncsim fake-strava``); ``running_fake_strava`` runs a given
FakeStrava in a background thread on a free port for as long as a ``with`` block lasts.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from syncsim.api.serve import listening_socket
from syncsim.clock import SystemClock
from syncsim.errors import ConfigError
from syncsim.strava.fake.config import Churn
from syncsim.strava.fake.strava import FakeStrava

__all__ = ["fake_strava_banner", "run_churn", "running_fake_strava", "serve_fake_strava"]

#: Seconds a background server gets to start before we give up.
STARTUP_TIMEOUT_S = 10.0


def _history_sizes(athletes: int, seed: int, activities: int | Sequence[int] | None) -> list[int]:
    """Activity counts per athlete: ``activities`` each, one count per athlete (a sequence of ``athletes``
    counts), or a heavy-tailed seeded spread (median ~150, some in the thousands, capped at 5,000 — the sizes
    Strava's forums report for heavy users)."""
    if isinstance(activities, Sequence):
        if len(activities) != athletes:
            raise ConfigError(f"{len(activities)} activity counts given for {athletes} athletes")
        return [int(n) for n in activities]
    if activities is not None:
        return [activities] * athletes
    rng = random.Random(seed)
    return [min(5000, int(math.exp(rng.gauss(math.log(150), 1.2)))) for _ in range(athletes)]


def fake_strava_banner(fake: FakeStrava, base_url: str) -> str:
    """What a person needs to use a FakeStrava: each athlete's id, history size, and how to get a token."""
    lines = [
        f"FakeStrava at {base_url} (seed {fake.seed}; client_id={fake.client_id} "
        f"client_secret={fake.client_secret}; these are fake credentials)",
        f"API under {base_url}/api/v3; tokens at {base_url}/oauth/token",
        "",
    ]
    for athlete_id in fake.athlete_ids:
        a = fake.athlete(athlete_id)
        lines += [
            f"athlete {a.athlete_id}: {a.activity_count} activities",
            f"  refresh_token={a.refresh_token}  code={a.code}",
            f"  curl -s -X POST {base_url}/oauth/token -d client_id={fake.client_id} "
            f"-d client_secret={fake.client_secret} -d grant_type=refresh_token "
            f"-d refresh_token={a.refresh_token}",
        ]
    return "\n".join(lines)


def serve_fake_strava(
    *,
    host: str = "127.0.0.1",
    port: int,
    athletes: int,
    seed: int,
    activities: int | Sequence[int] | None = None,
    latency: float = 0.0,
    compact: bool = False,
    churn: Churn | None = None,
    webhook_url: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve a FakeStrava with ``athletes`` athletes on ``host:port`` until interrupted (wall-clock time).

    ``activities`` per athlete, one count per athlete (a sequence of length ``athletes``, in order), or a
    heavy-tailed seeded spread if ``None``; ``latency`` in seconds per request;
    ``compact`` serves activity lists with only the fields syncsim reads, as the simulator does (see
    :class:`~syncsim.strava.fake.FakeStrava`). With ``churn`` the athletes change their histories as it says,
    and each change Strava announces is POSTed to ``webhook_url`` as Strava posts its events. Prints, first,
    each athlete's id, activity count, refresh token, code and a curl line.
    """
    import uvicorn

    if athletes < 1:
        raise ConfigError("athletes must be >= 1")
    fake = FakeStrava(clock=SystemClock(), seed=seed, latency=latency, compact=compact)
    for size in _history_sizes(athletes, seed, activities):
        fake.add_athlete(activities=size)
    stream = out if out is not None else sys.stdout
    sock = listening_socket(host, port)  # a port in use is one line, before the banner and its tokens
    print(fake_strava_banner(fake, f"http://{host}:{sock.getsockname()[1]}"), file=stream, flush=True)
    config = uvicorn.Config(fake.asgi_app, host=host, port=port, interface="asgi3", lifespan="off", log_level="warning")

    async def serve() -> None:
        server = uvicorn.Server(config)
        if churn is None or churn.rate_per_hour <= 0:
            await server.serve(sockets=[sock])
            return
        changes = asyncio.ensure_future(run_churn(fake, churn, webhook_url=webhook_url, seed=seed, out=stream))
        try:
            await server.serve(sockets=[sock])
        finally:
            changes.cancel()
            await asyncio.gather(changes, return_exceptions=True)

    try:
        asyncio.run(serve())
    finally:
        sock.close()


async def run_churn(
    fake: FakeStrava, churn: Churn, *, webhook_url: str | None, seed: int, out: TextIO | None = None
) -> None:
    """Change the fake's athletes' histories for ever, as ``churn`` says, in the fake's clock; POST each
    change Strava announces to ``webhook_url`` (if any) as Strava posts webhook events. A delivery that fails is
    lost, as Strava's would be after its retries; the change stays."""
    import httpx

    rng = random.Random(f"churn:{seed}")
    athletes = fake.athlete_ids
    rate = churn.rate_per_hour * len(athletes) / 3600.0
    async with httpx.AsyncClient(timeout=2.0) as client:  # Strava waits 2 s for the answer
        while rate > 0:
            await fake.clock.sleep(rng.expovariate(rate))
            event = fake.change(athletes[rng.randrange(len(athletes))], churn, rng)
            if event is None or webhook_url is None:
                continue
            try:
                response = await client.post(webhook_url, json=event)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if out is not None:
                print(f"webhook {event['aspect_type']} {event['object_id']} -> {status}", file=out, flush=True)


@contextmanager
def running_fake_strava(
    fake: FakeStrava,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> Iterator[str]:
    """Serve ``fake`` with uvicorn in a background thread; yields its base URL, stops on exit.

    ``port=0`` picks a free port (bound before the server starts, so there is no race). With
    ``ssl_certfile``/``ssl_keyfile`` it serves HTTPS. The fake's clock drives its latency: give it a
    :class:`~syncsim.clock.SystemClock` for real waiting, or a test clock shared with the client.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        fake.asgi_app,
        interface="asgi3",
        lifespan="off",
        log_level="warning",
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"fake-strava-{bound_port}", daemon=True)
    thread.start()
    poll = threading.Event()  # never set: its wait() is a bounded pause for a thread without an event loop
    for _ in range(int(STARTUP_TIMEOUT_S / 0.01)):
        if server.started or not thread.is_alive():
            break
        poll.wait(0.01)
    if not server.started:
        server.should_exit = True
        sock.close()
        raise ConfigError(f"FakeStrava did not start on {host}:{bound_port}: {failure[0] if failure else '?'}")
    scheme = "https" if ssl_certfile else "http"
    try:
        yield f"{scheme}://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        sock.close()
