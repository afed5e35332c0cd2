"""Shared pieces of the API tests: an app over a real store and platform, tokens, polling. (No tests here.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from syncsim.api.app import create_app
from syncsim.api.auth import mint_token
from syncsim.api.submissions import DEMO_JOB_TYPES, USER_JOB_TYPES
from syncsim.clock import SystemClock
from syncsim.jobs.handlers import register_builtin_handlers
from syncsim.jobs.runner import HandlerRegistry, JobRunner
from syncsim.jobs.service import JobService
from syncsim.platforms import LocalPlatform, PlatformSpec
from syncsim.retry import RetryPolicy
from syncsim.stores import Store
from syncsim.strava.events import register_strava_events
from syncsim.strava.sync import register_strava_sync
from syncsim.strava.upkeep import strava_upkeep

SECRET = "syncsim-test-secret-0123456789abcdef"  # 36 bytes: long enough for HS256
VERIFY_TOKEN = "strava-verify-0f9e8d"
CRON_SECRET = "cron-secret-for-tests-7c1d2e3f4a5b"
NO_WAIT = RetryPolicy(base_s=0.0, jitter=0.0)
FINAL = frozenset({"completed", "failed"})


class ApiHarness:
    """An app over ``store`` on a :class:`LocalPlatform`, with the built-in handlers, ``strava_sync`` and
    ``strava_events``.

    Users may submit what a production server accepts (Strava syncs); with ``demo`` also the built-in ``demo``
    and ``noop`` jobs, as on a server started with ``syncsim serve --demo``."""

    def __init__(
        self,
        store: Store,
        *,
        platform: str | PlatformSpec = "unlimited",
        strategy: str = "waituntil",
        strava: Any = None,
        resources: Mapping[str, Any] | None = None,
        max_body_bytes: int = 64 * 1024,
        body_timeout_s: float = 10.0,
        webhook_subscription_id: int | None = None,
        webhook_secret: str | None = None,
        cron_secret: str | None = CRON_SECRET,
        demo: bool = False,
        **runner_options: Any,
    ) -> None:
        self.store = store
        self.clock = SystemClock()
        self.platform = LocalPlatform(platform, clock=self.clock)
        registry = register_strava_events(register_strava_sync(register_builtin_handlers(HandlerRegistry())))
        runner_options.setdefault("retry", NO_WAIT)
        self.runner = JobRunner(
            store, handlers=registry, clock=self.clock, strategy=strategy, resources=resources, **runner_options
        )
        self.service = JobService(self.runner)
        self.app = create_app(
            service=self.service,
            platform=self.platform,
            jwt_secret=SECRET,
            webhook_verify_token=VERIFY_TOKEN,
            strava=strava,
            max_body_bytes=max_body_bytes,
            body_timeout_s=body_timeout_s,
            webhook_subscription_id=webhook_subscription_id,
            webhook_secret=webhook_secret,
            cron_secret=cron_secret,
            upkeep=strava_upkeep,
            job_types=DEMO_JOB_TYPES if demo else USER_JOB_TYPES,
        )

    def token(self, user: uuid.UUID, *, ttl_s: float = 3600.0) -> str:
        return mint_token(user, SECRET, ttl_s=ttl_s, now=self.clock.now())

    def auth(self, user: uuid.UUID) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def client(self, base_url: str | None = None) -> httpx.AsyncClient:
        """Over loopback when ``base_url`` is given (a running server), else in-process (ASGI)."""
        if base_url is not None:
            return httpx.AsyncClient(base_url=base_url, timeout=10.0)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://api.test")

    async def drain(self) -> None:
        """Wait for every invocation's background work (finished or killed)."""
        for invocation in list(self.platform.invocations):
            await invocation.drain()


async def poll_until(
    client: httpx.AsyncClient,
    job_id: str,
    headers: Mapping[str, str],
    *,
    statuses: frozenset[str] = FINAL,
    every_s: float = 0.05,
    timeout_s: float = 10.0,
) -> tuple[dict[str, Any], int]:
    """GET the job until its status is one of ``statuses``; the last body and how many polls it took."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    polls = 0
    while True:
        response = await client.get(f"/api/sync/{job_id}", headers=headers)
        polls += 1
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses:
            return body, polls
        assert loop.time() < give_up, f"job {job_id} still {body['status']} after {timeout_s} s: {body}"
        await asyncio.sleep(every_s)


def assert_json_error(response: httpx.Response, status: int) -> str:
    """The response is ``status`` with a JSON ``{"error": "<one line>"}`` and nothing else; its message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message
