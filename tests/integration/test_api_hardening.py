"""The API against hostile input (issue #16): strict integers, no secrets or connection details anywhere, an
allowlist of what users may submit, cancelling, background failures in the log, clients that hang up.

Each test fails on the main branch before the fix; its docstring says how.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict

from syncsim.api.app import CANCELLED_REASON, build_app
from syncsim.api.serve import running_server
from syncsim.api.strava import WEBHOOK_SUBSCRIPTION_ENV
from syncsim.api.submissions import STRAVA_SYNC_MODES
from syncsim.errors import ConfigError
from syncsim.jobs.model import Job, JobStatus
from syncsim.stores import Store, open_store, redact_url
from syncsim.stores.postgres import PostgresStore
from syncsim.strava.sync import MODES
from tests.support.api import SECRET, ApiHarness, assert_json_error

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "S3cret-pw_9f2c"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- D1: integers ------------------------------------------------------------------------------------------
async def test_unicode_and_giant_integers_are_400_not_500(store: Store, user_id: uuid.UUID) -> None:
    """D1. Before: ``limit=²`` and a 5,000-digit limit passed ``isdigit()`` and crashed ``int()`` (500); so did a
    Content-Length of "²"."""
    api = ApiHarness(store)
    async with api.client() as client:
        answers = [
            await client.get(f"/api/sync?limit={value}", headers=api.auth(user_id))
            for value in ("²", "٣", "1" * 5000, "-1", "+5", "1e2", "")
        ]
        declared = await client.post(
            "/api/sync", content=b"{}", headers={**api.auth(user_id), "Content-Length": "²".encode("latin-1")}
        )
    for answer in answers:
        assert "limit must be an integer between 1 and 100" in assert_json_error(answer, 400)
    assert "Content-Length" in assert_json_error(declared, 400)
    assert await store.list_jobs() == []


def test_a_subscription_id_that_is_not_a_64_bit_integer_is_a_config_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D1. Before: "²" passed ``isdigit()`` and ``build_app`` died of a ValueError instead of a one-line error."""
    for value in ("²", "1" * 30, "0"):
        monkeypatch.setenv(WEBHOOK_SUBSCRIPTION_ENV, value)
        with pytest.raises(ConfigError, match=WEBHOOK_SUBSCRIPTION_ENV):
            build_app(sqlite_url, jwt_secret=SECRET)


# -- D2: secrets and connection details --------------------------------------------------------------------
PASSWORD_FORMS = [
    f"postgresql://syncsim:{PASSWORD}@db.example:5432/app",
    f"postgresql://syncsim@db.example:5432/app?password={PASSWORD}",
    f"postgresql://syncsim@db.example/app?sslmode=require&password={PASSWORD}&application_name=api",
    f"postgresql://syncsim@db.example/app?pass%77ord={PASSWORD}",
    f"postgres://syncsim@db.example/app?sslpassword={PASSWORD}",
    f"postgresql://syncsim:{PASSWORD}@h1:5432,h2:5433/app",
    f"postgresql:///app?host=/var/run/postgresql&password={PASSWORD}",
    f"host=db.example user=syncsim password={PASSWORD} dbname=app",
    f"host=db.example password = '{PASSWORD}' dbname=app",
]


@pytest.mark.parametrize("url", PASSWORD_FORMS)
def test_redact_url_masks_every_password_form_libpq_reads(url: str) -> None:
    """D2. Before: only ``user:password@`` was masked; ``?password=``, ``sslpassword``, percent-encoded names and
    keyword/value strings were printed as given."""
    assert PASSWORD in conninfo_to_dict(url).values()  # libpq really reads a secret from this form
    redacted = redact_url(url)
    assert PASSWORD not in redacted and "***" in redacted
    assert "db.example" in redacted or "h1" in redacted or "/var/run" in redacted  # the rest stays readable


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:p%40{PASSWORD}@h/db",  # percent-encoded
        f"postgresql://u:{PASSWORD}#x@h/db",  # a '#' Python's parser takes for a fragment
        f"postgresql://u:{PASSWORD}@x@h/db",  # an unencoded '@'
        f"postgresql://h/db?dbname=host%3Dx%20password%3D{PASSWORD}",  # a connection string in dbname
        f"host=h password='{PASSWORD}",  # an unterminated quote
    ],
)
def test_redact_url_masks_malformed_or_nested_secrets_too(url: str) -> None:
    """D2. Before: these printed the secret, or part of it."""
    assert PASSWORD not in redact_url(url)


async def test_healthz_checks_the_store_and_names_no_host_user_or_database(pg_url: str, tmp_path: Path) -> None:
    """D2. Before: /healthz answered "ok" with the store URL (host, port, user, database, and a ``?password=``
    as given) to anyone, and "ok" while the database was down."""
    up = PostgresStore.from_url(f"{pg_url}?password={PASSWORD}")
    down = open_store(f"postgresql://syncsim@127.0.0.1:{_closed_port()}/syncsim_app?password={PASSWORD}")
    unopenable = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'syncsim.db'}")
    answers = []
    for store in (up, down, unopenable):
        async with ApiHarness(store).client() as client:
            answers.append(await client.get("/healthz"))
        await store.close()
    assert answers[0].status_code == 200
    assert answers[0].json() == {"status": "ok", "platform": "unlimited", "strategy": "waituntil"}
    for answer in answers[1:]:
        assert assert_json_error(answer, 503) == "the job store is unavailable"
    for answer in answers:
        for detail in (PASSWORD, "127.0.0.1", "syncsim_", "postgres", "missing-dir", "5432"):
            assert detail not in answer.text


async def test_store_outage_answers_503_without_password_or_connection_details(
    user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """D2. Before: the 503 body carried the store's message with its URL, ``?password=`` included."""
    store = open_store(f"postgresql://syncsim@127.0.0.1:{_closed_port()}/syncsim_app?password={PASSWORD}")
    api = ApiHarness(store)
    with caplog.at_level(logging.INFO):
        async with api.client() as client:
            submitted = await client.post("/api/sync", json={}, headers=api.auth(user_id))
            listed = await client.get("/api/sync", headers=api.auth(user_id))
    for answer in (submitted, listed):
        message = assert_json_error(answer, 503)
        assert "127.0.0.1" not in message and "syncsim_app" not in message
        assert answer.headers["retry-after"]
    assert PASSWORD not in submitted.text + listed.text + caplog.text
    assert "cannot connect to postgres store" in caplog.text  # the operator still learns why
    await store.close()


async def test_serve_banner_and_healthz_of_a_running_server_hide_a_password_parameter(pg_url: str) -> None:
    """D2. Before: ``syncsim serve`` printed the store URL with ``?password=`` as given."""
    port = _closed_port()
    env = {**os.environ, "SYNCSIM_JWT_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    argv = ["serve", "--store", f"{pg_url}?password={PASSWORD}", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "syncsim.cli", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(400):
                try:
                    health = await client.get("/healthz")
                    break
                except httpx.ConnectError:
                    assert process.poll() is None, process.stdout.read() if process.stdout else ""
                    await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert health.status_code == 200
    assert "syncsim API on" in output and "password=***" in output
    assert PASSWORD not in output + health.text


# -- D7: what users may submit, and cancelling -------------------------------------------------------------
async def test_a_production_server_accepts_only_strava_syncs_with_allowed_fields(
    store: Store, user_id: uuid.UUID
) -> None:
    """D7. Before: any registered job type and any payload was accepted: a demo job of 10^12 steps, an hour per
    step, or a Strava sync with ``detail`` (about 200 requests a page)."""
    api = ApiHarness(store, strategy="worker")  # nothing runs: only what is written matters
    refused = [
        ({"type": "demo", "payload": {"steps": 1e12, "step_s": 0}}, "unknown job type 'demo'"),
        ({"type": "noop"}, "unknown job type 'noop'"),
        ({"payload": {"detail": True}}, "not allowed for strava_sync: 'detail'"),
        ({"payload": {"mode": "everything"}}, "payload.mode must be one of auto, full, incremental, reconcile"),
        ({"payload": {"concurrency": 64}}, "not allowed for strava_sync: 'concurrency'"),
        ({"payload": {"mode": None}}, "payload.mode must be one of"),
        ({"payload": None}, "payload must be a JSON object, got null"),
        ({"maxAttempts": 2**31 - 1}, "maxAttempts must be between 1 and 10"),
    ]
    async with api.client() as client:
        for body, fragment in refused:
            response = await client.post("/api/sync", json=body, headers=api.auth(user_id))
            assert fragment in assert_json_error(response, 422), body
        assert await store.list_jobs() == []
        accepted = await client.post(
            "/api/sync", json={"payload": {"mode": "full"}, "maxAttempts": 2.0}, headers=api.auth(user_id)
        )
    assert accepted.status_code == 202, accepted.text
    [job] = await store.list_jobs()
    assert (job.type, job.payload, job.max_attempts) == ("strava_sync", {"mode": "full"}, 2)


def test_every_mode_users_may_ask_for_is_one_the_sync_runs() -> None:
    """D7: the allowlist offers no mode that the sync would refuse once the job runs."""
    assert set(STRAVA_SYNC_MODES) <= set(MODES)


async def test_a_demo_server_bounds_its_demo_jobs(store: Store, user_id: uuid.UUID) -> None:
    """D7. Before: eight demo jobs with ``step_s: 3600`` held every background slot; ``steps: 1e12`` wrote
    checkpoints without pause."""
    api = ApiHarness(store, demo=True, strategy="worker")
    async with api.client() as client:
        for payload, fragment in [
            ({"steps": 1e12, "step_s": 0}, "payload.steps must be between 0 and 100"),
            ({"steps": 2, "step_s": 3600}, "payload.step_s must be between 0 and 5"),
            ({"step_s": float("inf")}, "not valid JSON"),
            ({"steps": "3"}, "payload.steps must be an integer, got string"),
            ({"fail_attempts": 1, "boom": 1}, "not allowed for demo: 'boom'"),
        ]:
            if fragment == "not valid JSON":  # JSON has no infinity: httpx would refuse to send it
                response = await client.post(
                    "/api/sync",
                    content=b'{"type": "demo", "payload": {"step_s": Infinity}}',
                    headers={**api.auth(user_id), "Content-Type": "application/json"},
                )
                assert_json_error(response, 400)
                continue
            response = await client.post(
                "/api/sync", json={"type": "demo", "payload": payload}, headers=api.auth(user_id)
            )
            assert fragment in assert_json_error(response, 422), payload
        ok = await client.post("/api/sync", json={"type": "demo", "payload": {"steps": 3}}, headers=api.auth(user_id))
    assert ok.status_code == 202
    assert [job.type for job in await store.list_jobs()] == ["demo"]


async def test_users_cancel_their_own_running_job_and_its_runner_stops_writing(store: Store) -> None:
    """D7. Before: ``DELETE /api/sync/{jobId}`` was 405: a job could not be stopped."""
    api = ApiHarness(store, demo=True)
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    async with api.client() as client:
        accepted = await client.post(
            "/api/sync", json={"type": "demo", "payload": {"steps": 100, "step_s": 0.02}}, headers=api.auth(owner)
        )
        job_id = accepted.json()["jobId"]
        for _ in range(500):  # until the runner has checkpointed a few steps
            job = (await client.get(f"/api/sync/{job_id}", headers=api.auth(owner))).json()
            if job["progress"].get("steps_done", 0) >= 2:
                break
            await asyncio.sleep(0.01)
        theirs = await client.delete(f"/api/sync/{job_id}", headers=api.auth(stranger))
        cancelled = await client.delete(f"/api/sync/{job_id}", headers=api.auth(owner))
        at_cancel = await store.get_job(uuid.UUID(job_id))
        await api.drain()  # the runner notices at its next checkpoint and stops
        again = await client.delete(f"/api/sync/{job_id}", headers=api.auth(owner))
        unknown = await client.delete(f"/api/sync/{uuid.uuid4()}", headers=api.auth(owner))
    assert assert_json_error(theirs, 404) == assert_json_error(unknown, 404) == "no such job"
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["error"], body["result"]) == ("failed", CANCELLED_REASON, None)
    assert "already failed" in assert_json_error(again, 409)
    final = await store.get_job(uuid.UUID(job_id))
    assert at_cancel is not None and final is not None
    assert final == at_cancel  # nothing the runner did after the cancel reached the row
    assert final.status is JobStatus.FAILED and final.locked_by is None
    assert 0 < final.progress["steps_done"] < 100


async def test_cancelling_a_pending_job_keeps_it_from_running(store: Store, user_id: uuid.UUID) -> None:
    """D7. Before: 405."""
    api = ApiHarness(store, demo=True, strategy="worker")
    async with api.client() as client:
        job_id = (await client.post("/api/sync", json={"type": "noop"}, headers=api.auth(user_id))).json()["jobId"]
        response = await client.delete(f"/api/sync/{job_id}", headers=api.auth(user_id))
    assert response.status_code == 200 and response.json()["status"] == "failed"
    assert await api.runner.run_next() is None  # nothing left to claim


# -- D8: background failures, 64-bit ids -------------------------------------------------------------------
def _event(**fields: Any) -> dict[str, Any]:
    event = {"object_type": "activity", "object_id": 1, "aspect_type": "create", "owner_id": 7, "updates": {}}
    event.update(fields)
    return event


async def test_webhook_ids_beyond_64_bits_or_null_are_refused_when_read(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """D8. Before: ``owner_id`` >= 2^63 got its 200, then raised OverflowError in the background on SQLite;
    ``event_time: null`` was accepted although the schema says integer."""
    api = ApiHarness(store)
    with caplog.at_level(logging.WARNING):
        async with api.client() as client:
            answers = {
                name: await client.post("/api/strava/webhook", json=event)
                for name, event in {
                    "owner_id": _event(owner_id=2**63),
                    "object_id": _event(object_id=2**64 + 5),
                    "subscription_id": _event(subscription_id=-1),
                    "event_time": _event(event_time=None),
                    "updates": _event(updates=None),
                }.items()
            }
            fine = await client.post("/api/strava/webhook", json=_event(owner_id=2**63 - 1, event_time=1.7e9))
            await api.drain()
    for name, answer in answers.items():
        assert name in assert_json_error(answer, 422)
    assert fine.json() == {"status": "accepted"}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


class _FailingStore:
    """A real store, one of whose calls (a subclass's) fails as a driver bug would (not one of syncsim's errors)."""

    def __init__(self, store: Store) -> None:
        self.inner = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ClaimFailingStore(_FailingStore):
    """A real store whose ``claim_job`` fails."""

    async def claim_job(self, **kwargs: Any) -> Job | None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")


async def test_a_background_failure_is_logged_once_with_its_job_id(
    store: Store, user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """D8. Before: the exception of work handed to ``wait_until`` was retrieved and dropped: nothing logged."""
    api = ApiHarness(ClaimFailingStore(store))  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO):
        async with api.client() as client:
            response = await client.post("/api/sync", json={}, headers=api.auth(user_id))
            await api.drain()
    assert response.status_code == 202
    job_id = response.json()["jobId"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert f"job {job_id} failed: OverflowError" in errors[0].getMessage()
    assert errors[0].exc_info is not None  # not one of syncsim's errors: a bug, with its traceback


# -- D9: clients that hang up ------------------------------------------------------------------------------
async def _send_raw(base_url: str, chunks: Sequence[bytes]) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
    writer.close()  # hang up mid-body
    await writer.wait_closed()


async def test_a_client_hanging_up_mid_body_is_not_logged_as_an_error(
    store: Store, user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """D9. Before: logged as ERROR "500 ClientDisconnect" with a traceback."""
    api = ApiHarness(store)
    head = (
        "POST /api/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
        f"Authorization: Bearer {api.token(user_id)}\r\n\r\n"
    ).encode()
    with caplog.at_level(logging.INFO):
        async with running_server(api.app) as base_url:
            await _send_raw(base_url, [head, b'{"payload": {'])
            for _ in range(200):  # the server notices the hang-up on its own time
                if "POST /api/sync" in caplog.text:
                    break
                await asyncio.sleep(0.01)
    assert "POST /api/sync 400" in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await store.list_jobs() == []


async def test_a_route_that_meets_a_strava_outage_answers_503_with_retry_after() -> None:
    """A Strava outage met by a request's own call (a code exchange, say) is a 503 with the time to look again, as a
    spent rate limit is, not the 502 of a failing request."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from syncsim.api.http import exception_handlers
    from syncsim.clock import SystemClock
    from syncsim.errors import StravaDown, StravaUnavailable

    clock = SystemClock()

    async def down(request: Request) -> Any:
        raise StravaDown("POST /oauth/token: HTTP 503 after 1 attempts; Strava is down", at=clock.now() + 42.0)

    async def failing(request: Request) -> Any:
        raise StravaUnavailable("POST /oauth/token: HTTP 500 after 4 attempts")

    app = Starlette(
        routes=[Route("/down", down), Route("/failing", failing)], exception_handlers=exception_handlers(clock)
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        outage, failure = await client.get("/down"), await client.get("/failing")
    assert assert_json_error(outage, 503).endswith("Strava is down") and 41 <= int(outage.headers["retry-after"]) <= 42
    assert assert_json_error(failure, 502) == "POST /oauth/token: HTTP 500 after 4 attempts"


# -- D10: what the logs show, and answers no handler gave (found by probing a loopback server) -------------
class ListFailingStore(_FailingStore):
    """A real store whose ``list_jobs`` fails."""

    async def list_jobs(self, **kwargs: Any) -> list[Job]:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")


async def test_an_unhandled_error_is_a_500_logged_once_with_its_access_line(
    store: Store, user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: Starlette answered 500 and re-raised, so uvicorn logged the traceback a second time, and the
    access line was never written (the exception left the middleware before it)."""
    api = ApiHarness(ListFailingStore(store))  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO):
        async with running_server(api.app) as base_url, api.client(base_url) as client:
            failed = await client.get("/api/sync", headers=api.auth(user_id))
            after = await client.post("/api/sync", json={}, headers=api.auth(user_id))
            await api.drain()
    assert assert_json_error(failed, 500) == "internal server error"
    assert after.status_code == 202  # the server carries on
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert errors[0].getMessage() == "GET /api/sync -> 500: OverflowError" and errors[0].exc_info is not None
    assert any(r.getMessage().startswith("GET /api/sync 500 ") for r in caplog.records), caplog.text


async def test_logs_hide_the_webhook_secret_and_cannot_be_forged_through_the_path(
    store: Store, user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: every event's access line showed the callback secret (whoever has it can post events), and a
    CR/LF in a URL started a log line of the client's choosing."""
    secret = "cb-" + "5" * 29
    api = ApiHarness(store, webhook_secret=secret)
    event = {"object_type": "activity", "aspect_type": "create", "object_id": 1, "owner_id": 2}
    forged = "2026-12-07 00:00:00,000 ERROR syncsim.api: FORGED"
    with caplog.at_level(logging.INFO):
        async with api.client() as client:
            accepted = await client.post(f"/api/strava/webhook/{secret}", json=event)
            other = await client.post(f"/api/strava/webhook/{secret}/x", json=event)
            injected = await client.get(f"/api/sync/x%0A{forged}%0D%00", headers=api.auth(user_id))
            await api.drain()
    assert accepted.status_code == 200 and other.status_code == 404 and injected.status_code == 404
    messages = [r.getMessage() for r in caplog.records if r.name == "syncsim.api"]
    assert any(m.startswith("POST /api/strava/webhook/*** 200 ") for m in messages), messages
    assert any(m.startswith("POST /api/strava/webhook/***/x 404 ") for m in messages), messages
    assert any(m.startswith("GET /api/sync/x\\n2026-12-07 ") and "\\r\\x00" in m for m in messages), messages
    for message in messages:
        assert secret not in message and "\n" not in message and "\r" not in message and "\x00" not in message


async def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_clients_host(store: Store, user_id: uuid.UUID) -> None:
    """Before: Starlette redirected ``/api/sync/`` to ``http://<the Host header>/api/sync``, before any check."""
    api = ApiHarness(store)
    async with api.client() as client:
        answers = [
            await client.get(path, headers={**api.auth(user_id), "Host": "evil.example"})
            for path in ("/api/sync/", "/healthz/", "/api/cron/tick/")
        ]
    for answer in answers:
        assert assert_json_error(answer, 404).startswith("no route for /")
        assert "location" not in answer.headers


async def test_a_body_dribbled_slower_than_the_timeout_is_a_408_and_submits_nothing(
    store: Store, user_id: uuid.UUID
) -> None:
    """Before: on a platform without a time limit, a client that sent its body a byte at a time held its
    connection and a task for as long as it liked (found with a 40-byte body over 39 s: accepted, 202)."""
    api = ApiHarness(store, body_timeout_s=0.3)
    body = b'{"payload": {}}'
    head = (
        "POST /api/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: Bearer {api.token(user_id)}\r\n\r\n"
    ).encode()
    async with running_server(api.app) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head)
        try:
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass  # the server may have answered and closed meanwhile
        head_in = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        length = int(head_in.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answer = await asyncio.wait_for(reader.readexactly(length), 5.0)
        writer.close()
    assert head_in.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), head_in
    assert answer == b'{"error":"the body did not arrive within 0.3 s"}'
    assert await store.list_jobs() == []
