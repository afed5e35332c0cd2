"""``GET /api/sync/{jobId}``: every kind of request gets its answer, over an httpx ASGI transport."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt

from syncsim.errors import StoreError
from syncsim.stores import Store
from tests.support.api import SECRET, ApiHarness, assert_json_error


async def _ask(api: ApiHarness, method: str, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return await client.request(method, url, headers=headers)


async def test_every_kind_of_status_request_gets_its_answer(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, strategy="worker")  # nothing runs: the job stays pending
    job, _ = await api.runner.submit(user_id, {"steps": 1}, type="demo")
    url = f"/api/sync/{job.id}"
    mine, theirs = api.auth(user_id), api.auth(uuid.uuid4())
    now = api.clock.now()
    expired = jwt.encode({"sub": str(user_id), "role": "authenticated", "exp": now - 1}, SECRET, "HS256")

    ok = await _ask(api, "GET", url, mine)
    assert ok.status_code == 200 and ok.json()["jobId"] == str(job.id) and ok.json()["status"] == "pending"
    assert ok.headers["content-type"] == "application/json"
    assert "unknown query parameter(s) 'fields'" in assert_json_error(
        await _ask(api, "GET", url + "?fields=all", mine), 400
    )
    assert (await _ask(api, "GET", f"/api/sync/%7B{job.id}%7D", mine)).status_code == 200  # {uuid}: a UUID
    assert_json_error(await _ask(api, "GET", url, theirs), 404)
    assert_json_error(await _ask(api, "GET", f"/api/sync/{uuid.uuid4()}", mine), 404)
    assert_json_error(await _ask(api, "GET", "/api/sync/not-a-uuid", mine), 404)
    assert_json_error(await _ask(api, "GET", "/api/sync/" + "9" * 5000, mine), 404)
    missing = await _ask(api, "GET", url)
    assert "bearer" in assert_json_error(missing, 401).lower() and missing.headers["www-authenticate"] == "Bearer"
    assert_json_error(await _ask(api, "GET", url, {"Authorization": "Basic abc"}), 401)
    assert assert_json_error(await _ask(api, "GET", url, {"Authorization": f"Bearer {expired}"}), 401) == (
        "token has expired"
    )
    # What the route's pattern decides.
    assert (await _ask(api, "GET", url + "/", mine)).status_code in (307, 404)
    assert (await _ask(api, "GET", url + "/extra", mine)).status_code == 404
    assert (await _ask(api, "GET", "/api/sync/", mine)).status_code in (307, 404)
    assert (await _ask(api, "POST", url, mine)).status_code == 405
    head = await _ask(api, "HEAD", url, mine)
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
    unavailable = await _ask(api, "GET", f"/api/sync/{job.id}", api.auth(user_id))
    assert assert_json_error(unavailable, 503) == "the job store is unavailable; try again shortly"
    api.runner.store = _FailingStore(store, RuntimeError("a bug"))  # type: ignore[assignment]
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        crashed = await client.get(f"/api/sync/{job.id}", headers=api.auth(user_id))
    assert crashed.status_code == 500 and "a bug" not in crashed.text
