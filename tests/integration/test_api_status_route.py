"""The status poll's own route (:class:`syncsim.api_http.StatusRoute`) answers exactly as Starlette's router does.

Two apps over one service: one answers ``GET /api/sync/{jobId}`` ahead of the router, one routes it through
Starlette. Every request below gets the same status, headers and body from both, valid or not.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest
from starlette.types import Receive, Scope, Send

from syncsim.api import create_app
from syncsim.api_http import INVOCATION_KEY, StatusRoute, _exception_handlers
from syncsim.clock import SystemClock
from syncsim.errors import StoreError
from syncsim.jobs.store import Store
from tests.integration.test_api_support import SECRET, ApiHarness, assert_json_error


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.multi_items()), response.content


async def _both(api: ApiHarness, method: str, url: str, headers: dict[str, str] | None = None) -> Any:
    """The answer of the app with the status route and of one without it (which must be the same)."""
    routed = create_app(service=api.service, platform=api.platform, jwt_secret=SECRET, status_route=False)
    answers = []
    for app in (api.app, routed):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            answers.append(await client.request(method, url, headers=headers))
    fast, slow = answers
    assert _answer(fast) == _answer(slow), (method, url)
    return fast


async def test_every_status_request_gets_the_routed_answer(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, strategy="worker")  # nothing runs: the job stays pending
    job, _ = await api.runner.submit(user_id, {"steps": 1}, type="demo")
    url = f"/api/sync/{job.id}"
    mine, theirs = api.auth(user_id), api.auth(uuid.uuid4())
    now = api.clock.now()
    expired = jwt.encode({"sub": str(user_id), "role": "authenticated", "exp": now - 1}, SECRET, "HS256")

    ok = await _both(api, "GET", url, mine)
    assert ok.status_code == 200 and ok.json()["jobId"] == str(job.id) and ok.json()["status"] == "pending"
    assert ok.headers["content-type"] == "application/json"
    assert (await _both(api, "GET", url + "?fields=all", mine)).status_code == 200
    assert (await _both(api, "GET", f"/api/sync/%7B{job.id}%7D", mine)).status_code == 200  # {uuid}: a UUID
    assert_json_error(await _both(api, "GET", url, theirs), 404)
    assert_json_error(await _both(api, "GET", f"/api/sync/{uuid.uuid4()}", mine), 404)
    assert_json_error(await _both(api, "GET", "/api/sync/not-a-uuid", mine), 404)
    assert_json_error(await _both(api, "GET", "/api/sync/" + "9" * 5000, mine), 404)
    missing = await _both(api, "GET", url)
    assert "bearer" in assert_json_error(missing, 401).lower() and missing.headers["www-authenticate"] == "Bearer"
    assert_json_error(await _both(api, "GET", url, {"Authorization": "Basic abc"}), 401)
    assert assert_json_error(await _both(api, "GET", url, {"Authorization": f"Bearer {expired}"}), 401) == (
        "token has expired"
    )
    # What the route's pattern decides: the status route leaves these to the router.
    assert (await _both(api, "GET", url + "/", mine)).status_code in (307, 404)
    assert (await _both(api, "GET", url + "/extra", mine)).status_code == 404
    assert (await _both(api, "GET", "/api/sync/", mine)).status_code in (307, 404)
    assert (await _both(api, "POST", url, mine)).status_code == 405
    head = await _both(api, "HEAD", url, mine)
    assert head.status_code == 200 and head.content == b""


class _FailingStore:
    """``store`` whose job reads fail with ``error``."""

    def __init__(self, store: Store, error: Exception) -> None:
        self._store = store
        self.error = error

    async def get_job(self, job_id: uuid.UUID) -> Any:
        raise self.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_store_failure_is_mapped_and_an_unexpected_error_is_500(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, strategy="worker")
    job, _ = await api.runner.submit(user_id, {"steps": 1}, type="demo")
    api.runner.store = _FailingStore(store, StoreError("the database is unreachable"))  # type: ignore[assignment]
    unavailable = await _both(api, "GET", f"/api/sync/{job.id}", api.auth(user_id))
    assert assert_json_error(unavailable, 503) == "the database is unreachable"
    api.runner.store = _FailingStore(store, RuntimeError("a bug"))  # type: ignore[assignment]
    for app in (api.app, create_app(service=api.service, platform=api.platform, jwt_secret=SECRET, status_route=False)):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            crashed = await client.get(f"/api/sync/{job.id}", headers=api.auth(user_id))
        assert crashed.status_code == 500 and "a bug" not in crashed.text


async def test_the_status_route_answers_polls_itself_and_passes_the_rest_on() -> None:
    """Driven directly: a status GET never reaches the app behind it; anything else always does."""
    passed: list[str] = []

    async def behind(scope: Scope, receive: Receive, send: Send) -> None:
        passed.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    calls: list[tuple[str | None, str]] = []

    async def status_body(authorization: str | None, raw_id: str, invocation: Any) -> bytes:
        calls.append((authorization, raw_id))
        return b'{"jobId":"x"}'

    route = StatusRoute(
        behind, prefix="/api/sync/", status_body=status_body, exception_handlers=_exception_handlers(SystemClock())
    )

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        scope[INVOCATION_KEY] = None
        await route(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://api.test") as client:
        poll = await client.get("/api/sync/abc", headers={"Authorization": "Bearer t"})
        others = [
            await client.get("/api/sync"),
            await client.post("/api/sync/abc"),
            await client.head("/api/sync/abc"),
            await client.get("/api/sync/abc/"),
            await client.get("/api/sync/"),
            await client.get("/healthz"),
        ]
    assert (poll.status_code, poll.content, poll.headers["content-length"]) == (200, b'{"jobId":"x"}', "13")
    assert calls == [("Bearer t", "abc")]
    assert [r.status_code for r in others] == [204] * 6
    assert passed == [
        "GET /api/sync",
        "POST /api/sync/abc",
        "HEAD /api/sync/abc",
        "GET /api/sync/abc/",
        "GET /api/sync/",
        "GET /healthz",
    ]


@pytest.mark.parametrize("status_route", [True, False])
async def test_a_poll_through_either_route_continues_a_due_job(
    store: Store, user_id: uuid.UUID, status_route: bool
) -> None:
    """Resumable: the poll's invocation continues the due job, whichever way the poll was routed."""
    api = ApiHarness(store, strategy="resumable")
    api.app = create_app(service=api.service, platform=api.platform, jwt_secret=SECRET, status_route=status_route)
    job, _ = await api.runner.submit(user_id, {"steps": 1}, type="demo")
    async with api.client() as client:
        response = await client.get(f"/api/sync/{job.id}", headers=api.auth(user_id))
        assert response.status_code == 200
        await api.drain()
    done = await store.get_job(job.id)
    assert done is not None and done.status.value == "completed" and done.runs == 1
