"""The HTTP API over real stores: submit → poll → completed, auth, duplicates, bad input, errors, OpenAPI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from syncsim.api.app import build_app
from syncsim.api.openapi import openapi_document
from syncsim.api.serve import running_server
from syncsim.api.submissions import DEMO_JOB_TYPES
from syncsim.stores import Store, open_store
from syncsim.stores.sqlite import SQLiteStore
from tests.support.api import SECRET, ApiHarness, assert_json_error, poll_until
from tests.support.sqlite import full_disk


async def test_submit_then_poll_until_completed_over_loopback(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, demo=True)
    async with running_server(api.app) as base_url, api.client(base_url) as client:
        response = await client.post(
            "/api/sync", json={"type": "demo", "payload": {"steps": 3, "step_s": 0.02}}, headers=api.auth(user_id)
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "pending" and accepted["created"] is True
        assert response.headers["location"] == f"/api/sync/{accepted['jobId']}"
        job, _ = await poll_until(client, accepted["jobId"], api.auth(user_id))
    assert job["status"] == "completed", job
    assert job["jobId"] == accepted["jobId"] and job["type"] == "demo"
    assert job["result"] == {"steps_done": 3} and job["progress"] == {"steps_done": 3}
    assert (job["attempts"], job["maxAttempts"], job["runs"], job["error"]) == (1, 3, 1, None)
    assert job["createdAt"] <= job["startedAt"] <= job["completedAt"]
    assert job["nextAttemptAt"] is None
    # The work ran in the background of the POST's own invocation, after its response.
    first = api.platform.invocations[0]
    assert first.responded and not first.killed and first.ended_at is not None


async def test_a_job_shows_its_id_and_times_as_the_rows_iso_8601_text(store: Store, user_id: uuid.UUID) -> None:
    """The status body's id and times are the stored row's, as text: the canonical UUID, and ISO 8601 in UTC with
    ``+00:00`` and the row's microseconds (what ``isoformat()`` writes and ``Date.parse`` reads), in one job's
    answer and in the listing alike."""
    api = ApiHarness(store, demo=True, strategy="worker")  # nothing runs: the row stays pending
    async with api.client() as client:
        accepted = (await client.post("/api/sync", json={"type": "demo"}, headers=api.auth(user_id))).json()
        one = (await client.get(f"/api/sync/{accepted['jobId']}", headers=api.auth(user_id))).json()
        listed = (await client.get("/api/sync", headers=api.auth(user_id))).json()["jobs"]
    row = await store.get_job(uuid.UUID(accepted["jobId"]))
    assert row is not None and row.next_attempt_at is not None
    expected = {
        "jobId": str(row.id),
        "createdAt": row.created_at.isoformat(),
        "startedAt": None,
        "completedAt": None,
        "nextAttemptAt": row.next_attempt_at.isoformat(),
    }
    assert {key: one[key] for key in expected} == expected
    assert one["createdAt"].endswith("+00:00") and "." in one["createdAt"], one  # a clock time has microseconds
    assert listed == [one]


async def test_listing_shows_the_users_own_jobs_newest_first(store: Store) -> None:
    api = ApiHarness(store, demo=True, strategy="worker")  # nothing runs: rows stay pending
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with api.client() as client:
        ids = []
        for job_type in ("demo", "noop"):
            response = await client.post("/api/sync", json={"type": job_type}, headers=api.auth(alice))
            ids.append(response.json()["jobId"])
        await client.post("/api/sync", json={"type": "demo"}, headers=api.auth(bob))
        listed = await client.get("/api/sync", headers=api.auth(alice))
        one = await client.get("/api/sync?limit=1", headers=api.auth(alice))
    assert listed.status_code == 200
    assert [job["jobId"] for job in listed.json()["jobs"]] == ids[::-1]
    assert [job["jobId"] for job in one.json()["jobs"]] == ids[-1:]


async def test_second_post_returns_the_active_job_instead_of_a_new_one(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, demo=True)
    body = {"type": "demo", "payload": {"steps": 4, "step_s": 0.1}}
    async with api.client() as client:
        first = await client.post("/api/sync", json=body, headers=api.auth(user_id))
        await asyncio.sleep(0.05)  # the first job is running in its invocation's background
        second = await client.post("/api/sync", json=body, headers=api.auth(user_id))
        assert (first.status_code, second.status_code) == (202, 202)
        assert second.json() == {"jobId": first.json()["jobId"], "status": "running", "created": False}
        await api.drain()
    jobs = await store.list_jobs(user_id=user_id)
    assert len(jobs) == 1 and jobs[0].status.value == "completed" and jobs[0].runs == 1


async def test_missing_bad_or_expired_tokens_are_401_and_other_users_jobs_404(store: Store) -> None:
    api = ApiHarness(store, demo=True, strategy="worker")
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    now = api.clock.now()
    forged = jwt.encode({"sub": str(owner), "role": "authenticated", "exp": now + 60}, "x" * 40, algorithm="HS256")
    service_role = jwt.encode({"sub": str(owner), "role": "service_role", "exp": now + 60}, SECRET, "HS256")
    expired = jwt.encode({"sub": str(owner), "role": "authenticated", "exp": now - 1}, SECRET, "HS256")
    unsigned = jwt.encode({"sub": str(owner), "role": "authenticated", "exp": now + 60}, "", "none")
    async with api.client() as client:
        job_id = (await client.post("/api/sync", json={"type": "demo"}, headers=api.auth(owner))).json()["jobId"]
        cases = {
            "no header": {},
            "not bearer": {"Authorization": f"Basic {api.token(owner)}"},
            "garbage": {"Authorization": "Bearer not.a.jwt"},
            "wrong secret": {"Authorization": f"Bearer {forged}"},
            "wrong role": {"Authorization": f"Bearer {service_role}"},
            "expired": {"Authorization": f"Bearer {expired}"},
            "alg none": {"Authorization": f"Bearer {unsigned}"},
        }
        for name, headers in cases.items():
            for method, url in (("GET", f"/api/sync/{job_id}"), ("GET", "/api/sync"), ("POST", "/api/sync")):
                response = await client.request(method, url, headers=headers)
                message = assert_json_error(response, 401)
                assert response.headers["www-authenticate"] == "Bearer", name
                assert "eyJ" not in message, name  # the token is never echoed
        theirs = await client.get(f"/api/sync/{job_id}", headers=api.auth(stranger))
        assert_json_error(theirs, 404)
        assert (await client.get("/api/sync", headers=api.auth(stranger))).json() == {"jobs": []}
        mine = await client.get(f"/api/sync/{job_id}", headers=api.auth(owner))
        assert mine.status_code == 200
    assert len(await store.list_jobs()) == 1  # no request above wrote anything


# -- bad input -------------------------------------------------------------------------------------------
def _chunks(size: int) -> Callable[[], AsyncIterator[bytes]]:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // 4096 + 1):
            yield b" " * 4096

    return body


JOB = "/api/sync"
BAD_INPUTS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # (name, method, url, request options, status, part of the message)
    ("malformed json", "POST", JOB, {"content": b'{"type": '}, 400, "not valid JSON"),
    ("array body", "POST", JOB, {"json": [1, 2]}, 400, "must be a JSON object, got array"),
    ("string body", "POST", JOB, {"json": "demo"}, 400, "got string"),
    ("oversize, declared", "POST", JOB, {"content": b"{" + b" " * 70_000 + b"}"}, 413, "limit"),
    ("oversize, chunked", "POST", JOB, {"content": "chunked"}, 413, "limit"),
    ("form body", "POST", JOB, {"data": {"type": "demo"}}, 415, "application/json"),
    ("maxAttempts string", "POST", JOB, {"json": {"type": "demo", "maxAttempts": "3"}}, 422, "got string"),
    ("maxAttempts bool", "POST", JOB, {"json": {"type": "demo", "maxAttempts": True}}, 422, "got boolean"),
    ("maxAttempts zero", "POST", JOB, {"json": {"type": "demo", "maxAttempts": 0}}, 422, "between 1 and"),
    ("maxAttempts huge", "POST", JOB, {"json": {"type": "demo", "maxAttempts": 10**6}}, 422, "between 1 and"),
    ("payload list", "POST", JOB, {"json": {"type": "demo", "payload": [1]}}, 422, "payload must be a JSON object"),
    ("type number", "POST", JOB, {"json": {"type": 5}}, 422, "type must be a string"),
    ("unknown type", "POST", JOB, {"json": {"type": "mystery"}}, 422, "unknown job type 'mystery'"),
    ("unknown field", "POST", JOB, {"json": {"typ": "demo"}}, 422, "unknown field(s): typ"),
    ("limit zero", "GET", f"{JOB}?limit=0", {}, 400, "limit must be"),
    ("limit text", "GET", f"{JOB}?limit=ten", {}, 400, "limit must be"),
    ("limit huge", "GET", f"{JOB}?limit=100000", {}, 400, "limit must be"),
    ("malformed job id", "GET", f"{JOB}/not-a-uuid", {}, 404, "no such job"),
    ("unknown job id", "GET", f"{JOB}/{uuid.uuid4()}", {}, 404, "no such job"),
    ("wrong method", "DELETE", JOB, {}, 405, "allowed: GET, HEAD, POST"),
    ("wrong method on a job", "PUT", f"{JOB}/{uuid.uuid4()}", {"json": {}}, 405, "not allowed"),
    ("unknown route", "GET", "/api/nothing-here", {}, 404, "no route"),
    ("connect without code", "POST", "/api/strava/connect", {"json": {}}, 422, "code must be"),
    ("connect code number", "POST", "/api/strava/connect", {"json": {"code": 5}}, 422, "code must be"),
    ("connect empty body", "POST", "/api/strava/connect", {}, 400, "empty"),
    ("connect unconfigured", "POST", "/api/strava/connect", {"json": {"code": "abc"}}, 503, "not configured"),
    ("event of a club", "POST", "/api/strava/webhook", {"json": {"object_type": "club"}}, 422, "object_type"),
    (
        "event without owner",
        "POST",
        "/api/strava/webhook",
        {"json": {"object_type": "activity", "aspect_type": "create", "object_id": 1}},
        422,
        "owner_id",
    ),
    ("challenge, wrong mode", "GET", "/api/strava/webhook?hub.mode=x&hub.challenge=1", {}, 400, "hub.mode"),
]


async def test_bad_input_is_a_one_line_json_4xx_and_writes_nothing(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, demo=True)
    wrong = []
    async with api.client() as client:
        for name, method, url, options, status, fragment in BAD_INPUTS:
            options = dict(options)
            if options.get("content") == "chunked":
                options["content"] = _chunks(70_000)()
            response = await client.request(method, url, headers=api.auth(user_id), **options)
            try:
                message = assert_json_error(response, status)
                assert fragment in message, message
            except AssertionError as exc:
                wrong.append(f"{name}: {exc}")
    assert wrong == []
    await api.drain()
    assert await store.list_jobs() == []
    assert await store.get_tokens(user_id) is None


async def test_oversize_chunked_body_is_refused_while_reading_over_loopback(store: Store, user_id: uuid.UUID) -> None:
    api = ApiHarness(store, demo=True, max_body_bytes=1024)
    async with running_server(api.app) as base_url, api.client(base_url) as client:
        response = await client.post("/api/sync", content=_chunks(1_000_000)(), headers=api.auth(user_id))
        assert_json_error(response, 413)
        # The server is fine afterwards, and a body just under the limit is accepted.
        small = b'{"type": "noop"' + b" " * 900 + b"}"
        ok = await client.post("/api/sync", content=small, headers=api.auth(user_id))
        assert ok.status_code == 202, ok.text
    await api.drain()
    assert [job.type for job in await store.list_jobs()] == ["noop"]


async def test_store_failure_is_503_not_500(tmp_path: Path, user_id: uuid.UUID) -> None:
    broken = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'syncsim.db'}")
    api = ApiHarness(broken, demo=True)
    async with api.client() as client:
        submit = await client.post("/api/sync", json={"type": "demo"}, headers=api.auth(user_id))
        status = await client.get(f"/api/sync/{uuid.uuid4()}", headers=api.auth(user_id))
        health = await client.get("/healthz")
    assert assert_json_error(submit, 503) == "the job store is unavailable; try again shortly"
    assert_json_error(status, 503)
    assert_json_error(health, 503)


async def test_a_submit_meeting_a_full_disk_is_a_503_and_loses_no_job(sqlite_url: str) -> None:
    """Submits until the SQLite file has no room for one more job: that submit is a 503 with Retry-After (a full
    disk passes), and reads still answer. Submitted again once there is room, it is accepted: every accepted job
    is stored, once."""
    store = SQLiteStore.from_url(sqlite_url)
    await store.migrate()
    api = ApiHarness(store, strategy="worker", demo=True)  # submits only: nothing runs in the background
    accepted: dict[str, uuid.UUID] = {}  # job id: its user
    async with api.client() as client:
        with full_disk(store):
            for _ in range(1000):
                user = uuid.uuid4()
                submit = await client.post("/api/sync", json={"type": "noop"}, headers=api.auth(user))
                if submit.status_code != 202:
                    break
                accepted[submit.json()["jobId"]] = user
            assert assert_json_error(submit, 503) == "the job store is unavailable; try again shortly"
            assert submit.headers["retry-after"] == "5"
            assert accepted, "the first submit already found the disk full"
            job_id, owner = next(iter(accepted.items()))
            status = await client.get(f"/api/sync/{job_id}", headers=api.auth(owner))
            assert status.status_code == 200 and status.json()["status"] == "pending"
        again = await client.post("/api/sync", json={"type": "noop"}, headers=api.auth(user))
    assert again.status_code == 202, again.text
    accepted[again.json()["jobId"]] = user
    stored = [str(job.id) for job in await store.list_jobs(limit=len(accepted) + 1)]
    assert sorted(stored) == sorted(accepted)
    await store.close()


async def test_a_store_file_deleted_under_the_server_fails_its_health_check_and_submits(sqlite_url: str) -> None:
    """A job accepted into a deleted file would be gone at the next start: the server says its store is
    unavailable instead, to its load balancer as to its users."""
    store = SQLiteStore.from_url(sqlite_url)
    await store.migrate()
    api = ApiHarness(store, strategy="worker", demo=True)
    user = uuid.uuid4()
    async with api.client() as client:
        assert (await client.get("/healthz")).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(store.path + suffix).unlink(missing_ok=True)
        health = await client.get("/healthz")
        submit = await client.post("/api/sync", json={"type": "noop"}, headers=api.auth(user))
    assert_json_error(health, 503)
    assert assert_json_error(submit, 503) == "the job store is unavailable; try again shortly"
    await store.close()


async def test_health_names_platform_and_strategy_and_nothing_of_the_store(sqlite_url: str) -> None:
    app = build_app(sqlite_url, platform="hobby", strategy="resumable", jwt_secret=SECRET, time_scale=0.5)
    assert app.state.platform.spec.max_duration_s == 5.0  # hobby's 10 s, scaled
    async with running_server(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        health = await client.get("/healthz")
    assert health.json() == {"status": "ok", "platform": "hobby", "strategy": "resumable"}


async def test_openapi_describes_exactly_the_routes_the_app_serves(store: Store) -> None:
    api = ApiHarness(store, demo=True)
    served = set()
    for route in api.app.routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                served.add((route.path, method.lower()))  # type: ignore[attr-defined]
    async with api.client() as client:
        document = (await client.get("/openapi.json")).json()
    assert document == openapi_document(DEMO_JOB_TYPES)
    assert document != openapi_document()  # a production server describes only what it accepts
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == served
    assert document["openapi"].startswith("3.")
    # Every status the bad-input cases produce on a documented route is documented for it.
    templates = {"/api/sync": "/api/sync", "/api/strava/connect": "/api/strava/connect"}
    for _, method, url, _, status, _ in BAD_INPUTS:
        path = url.split("?")[0]
        template = templates.get(path, "/api/sync/{jobId}" if path.startswith("/api/sync/") else path)
        operation = document["paths"].get(template, {}).get(method.lower())
        if operation is not None:
            assert str(status) in operation["responses"], (method, url, status)


async def test_each_poll_shows_the_job_as_stored_even_when_the_store_reuses_it(user_id: uuid.UUID) -> None:
    # A ':memory:' store hands back the same Job object while nothing changed, and the API then reuses the
    # body it rendered; a change in between must show in the next poll.
    store = open_store("sqlite:///:memory:")
    await store.migrate()
    api = ApiHarness(store, demo=True, strategy="worker")  # nothing runs in the API: this test moves the job
    async with api.client() as client:
        accepted = (await client.post("/api/sync", json={"type": "demo"}, headers=api.auth(user_id))).json()
        url = f"/api/sync/{accepted['jobId']}"
        seen = [(await client.get(url, headers=api.auth(user_id))).json()]
        seen.append((await client.get(url, headers=api.auth(user_id))).json())
        claimed = await store.claim_job(worker_id="w", now=api.clock.now(), lease_s=30)
        assert claimed is not None
        seen.append((await client.get(url, headers=api.auth(user_id))).json())
        await store.complete_job(claimed.id, worker_id="w", result={"steps_done": 1}, now=api.clock.now())
        seen.append((await client.get(url, headers=api.auth(user_id))).json())
    await store.close()
    assert [(job["status"], job["attempts"], job["result"]) for job in seen] == [
        ("pending", 0, None),
        ("pending", 0, None),
        ("running", 1, None),
        ("completed", 1, {"steps_done": 1}),
    ]
