"""The API against its own OpenAPI description (issue #16, D10): schema-driven property tests (Schemathesis)
over loopback, and the disagreements that once hid between the two.

Schemathesis generates requests from ``/openapi.json``, valid and invalid ones, for every operation, and checks
each answer: no 5xx, a documented status and content type, a body that matches the documented schema, and
invalid requests refused with a 4xx. The example count is bounded so the whole run takes seconds.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from syncsim.api.auth import mint_token
from syncsim.api.openapi import openapi_document
from syncsim.api.serve import running_server
from syncsim.clock import SystemClock
from syncsim.stores import open_store
from syncsim.strava.fake import FakeStrava
from tests.support.api import SECRET, ApiHarness, assert_json_error

#: Examples per operation and generation mode: enough to reach every documented field, small enough that the
#: whole module runs in well under a minute.
MAX_EXAMPLES = 30

schema = schemathesis.openapi.from_dict(openapi_document())


@dataclass
class Served:
    base_url: str
    api: ApiHarness


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The production app (Strava syncs only, a FakeStrava behind it, jobs left to a worker) on loopback, in a
    thread of its own: Schemathesis calls it synchronously."""
    url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'syncsim.db'}"
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        store = open_store(url)
        await store.migrate()
        fake = FakeStrava(clock=SystemClock(), seed=7)
        client = fake.client(tokens=store)
        api = ApiHarness(store, strategy="worker", strava=client, resources={"strava": client})
        stop = asyncio.Event()
        box.update(api=api, loop=asyncio.get_running_loop(), stop=stop)
        try:
            async with running_server(api.app) as base_url:
                box["base_url"] = base_url
                ready.set()
                await stop.wait()
                await api.drain()
        finally:
            await client.aclose()
            await store.close()
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="schema-api", daemon=True)
    thread.start()
    assert ready.wait(30) and "base_url" in box, "the API did not start"
    yield Served(box["base_url"], box["api"])
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(30)


@schema.auth()
class BearerToken:
    """A fresh user's valid token on every request that needs one (negative cases may still drop or spoil it)."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return ""  # minted per request in ``set``

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        token = mint_token(uuid.uuid4(), SECRET, now=SystemClock().now())
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_keeps_to_the_openapi_description(case: schemathesis.Case, served: Served) -> None:
    """D10. Before: ``maxAttempts: 1.0`` (an integer to JSON Schema) was refused, ``event_time: null`` accepted,
    ``hub.mode`` documented as any string, and ``limit=²`` answered 500."""
    # A schema-valid request can still be refused for what it means (an unknown OAuth code, a wrong verify
    # token): that is not a disagreement with the description.
    case.call_and_validate(base_url=served.base_url, excluded_checks=[positive_data_acceptance])


def test_the_description_says_what_the_code_checks() -> None:
    """D10. Before: ``hub.mode`` was any string and ``code`` had no length bounds in the description."""
    document = openapi_document()
    assert document["paths"]["/api/strava/webhook"]["get"]["parameters"][0]["schema"] == {
        "type": "string",
        "enum": ["subscribe"],
    }
    code = document["components"]["schemas"]["ConnectRequest"]["properties"]["code"]
    assert code["minLength"] == 1 and code["maxLength"] == 512


async def test_integral_numbers_are_integers_and_null_is_not(tmp_path: Path, user_id: uuid.UUID) -> None:
    """D10. Before: ``maxAttempts: 1.0`` was refused although JSON Schema counts it as an integer, and
    ``event_time: null`` was accepted although the schema said integer."""
    store = open_store(f"sqlite:///{tmp_path / 'syncsim.db'}")
    await store.migrate()
    api = ApiHarness(store, strategy="worker")
    event = {"object_type": "activity", "object_id": 1, "aspect_type": "create", "owner_id": 7, "event_time": None}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://api.test") as client:
        one = await client.post("/api/sync", json={"maxAttempts": 1.0}, headers=api.auth(user_id))
        null_time = await client.post("/api/strava/webhook", json=event)
        not_subscribe = await client.get("/api/strava/webhook?hub.mode=unsubscribe&hub.challenge=x&hub.verify_token=y")
        blank_code = await client.post("/api/strava/connect", json={"code": " \t"}, headers=api.auth(user_id))
    assert one.status_code == 202, one.text
    assert "event_time must be an integer, got null" in assert_json_error(null_time, 422)
    assert "hub.mode" in assert_json_error(not_subscribe, 400)
    assert "code must be a non-empty string" in assert_json_error(blank_code, 422)
    [job] = await store.list_jobs()
    assert job.max_attempts == 1
    await store.close()
