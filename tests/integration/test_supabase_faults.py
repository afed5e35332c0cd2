"""The Supabase REST store when its key, its gateway or its answers go wrong.

Requests go to the PostgREST stand-in (:class:`tests.support.postgrest.PostgrestTransport`) through a
:class:`Gateway` that answers chosen requests itself, as Supabase's gateway does when it cannot reach PostgREST
(Cloudflare's or Kong's error pages) or as a proxy that cuts a body short. No store internals are patched: every
fault is an HTTP answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from syncsim.clock import SystemClock
from syncsim.errors import ConfigError, StoreError, StoreUnavailable
from syncsim.jobs.handlers import register_builtin_handlers
from syncsim.jobs.model import Job, JobStatus
from syncsim.jobs.runner import HandlerRegistry, JobRunner
from syncsim.jobs.worker import Worker
from syncsim.retry import RetryPolicy
from syncsim.stores import open_store
from syncsim.stores.sql import migration_files
from syncsim.stores.supabase import KEY_ENV, NEWEST_MIGRATION, SupabaseStore
from syncsim.strava.fake import FakeStrava
from syncsim.strava.ratelimit import SlotRequest
from syncsim.strava.sync import register_strava_sync
from tests.support.api import ApiHarness, assert_json_error
from tests.support.postgrest import PostgrestTransport, sign_test_jwt

pytestmark = pytest.mark.postgres

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
SERVICE_KEY = sign_test_jwt({"role": "service_role", "iss": "supabase"})
URL = "supabase://project.supabase.co"

Answer = Callable[[httpx.Request], Awaitable[httpx.Response]]


@dataclass
class Fault:
    path: str  # a part of the request's path
    answer: Answer
    method: str | None
    times: int
    passed_on: bool  # whether PostgREST gets the request first (the call takes effect, its answer is lost)


class Gateway(httpx.AsyncBaseTransport):
    """What stands between the store and PostgREST: it keeps every request it is sent and answers the ones a
    fault matches itself; the others go on to the PostgREST stand-in over ``database_url``."""

    def __init__(self, database_url: str) -> None:
        self.upstream = PostgrestTransport(database_url)
        self.sent: list[httpx.Request] = []
        self._faults: list[Fault] = []

    def fail(
        self, path: str, answer: Answer, *, method: str | None = None, times: int = 1, passed_on: bool = False
    ) -> None:
        self._faults.append(Fault(path, answer, method, times, passed_on))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        for fault in self._faults:
            if fault.times and fault.path in request.url.path and fault.method in {None, request.method}:
                fault.times -= 1
                if fault.passed_on:
                    await (await self.upstream.handle_async_request(request)).aread()
                return await fault.answer(request)
        return await self.upstream.handle_async_request(request)

    async def aclose(self) -> None:
        await self.upstream.aclose()


#: What Supabase's gateway (Cloudflare) answers while it cannot reach PostgREST: a page, not PostgREST's JSON.
GATEWAY_PAGE = (
    "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n"
    "<hr><center>cloudflare</center>\n</body>\n</html>\n" + "<!-- a padding to disable MSIE's friendly page -->\n" * 6
)


def page(status: int, body: str = GATEWAY_PAGE, content_type: str = "text/html") -> Answer:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": content_type}, content=body.encode())

    return answer


def _no_key_in(messages: list[str]) -> None:
    for message in messages:
        assert SERVICE_KEY not in message and SERVICE_KEY[:40] not in message, message


@pytest.fixture
async def gateway(pg_url: str) -> AsyncIterator[Gateway]:
    gateway = Gateway(pg_url)
    yield gateway
    await gateway.aclose()


# -- the key ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pasted", ["\n", "\r\n", " \t"])
async def test_a_key_pasted_with_a_trailing_newline_is_sent_without_it(
    monkeypatch: pytest.MonkeyPatch, gateway: Gateway, pasted: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a probe: a key copied with its line end went into the headers as is, and httpx's refusal of the
    header (``LocalProtocolError Illegal header value b'eyJ…\\n'``) printed the whole service-role key."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, pasted + SERVICE_KEY + pasted)
    store = open_store(URL, transport=gateway)
    try:
        assert await store.list_jobs() == []
    finally:
        await store.close()
    assert gateway.sent and all(r.headers["apikey"] == SERVICE_KEY for r in gateway.sent)
    assert all(r.headers["authorization"] == f"Bearer {SERVICE_KEY}" for r in gateway.sent)
    _no_key_in([r.getMessage() for r in caplog.records])


@pytest.mark.parametrize("inside", ["a space", "a\ttab", "a\nline", "an escape \x1b", "non-ASCII …", "DEL \x7f"])
def test_a_key_with_whitespace_a_control_or_non_ascii_inside_is_a_config_error_without_the_key(
    monkeypatch: pytest.MonkeyPatch, inside: str
) -> None:
    """Found by a probe: a non-ASCII character made the first request a ``UnicodeEncodeError`` traceback, inner
    whitespace an error quoting the key. It is refused when the store opens, naming the variable, not the key."""
    monkeypatch.setenv(KEY_ENV, SERVICE_KEY[:60] + inside + SERVICE_KEY[60:])
    with pytest.raises(ConfigError) as info:
        open_store(URL)
    message = str(info.value)
    assert KEY_ENV in message and "\n" not in message
    assert SERVICE_KEY[:60] not in message and SERVICE_KEY[60:] not in message, message


def test_a_user_jwt_that_headers_cannot_carry_is_refused_without_the_jwt() -> None:
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY)
    jwt = sign_test_jwt({"role": "authenticated", "sub": str(uuid.uuid4())})
    with pytest.raises(ValueError) as info:
        store.for_user(jwt + "\n")
    assert jwt not in str(info.value) and "\n" not in str(info.value)


# -- a gateway's error pages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 520, 522, 524])
async def test_a_gateway_error_page_is_a_one_line_store_unavailable_without_the_page(
    gateway: Gateway, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a probe: postgrest-py reads a page that is not PostgREST's JSON as an error with the status as
    its code and the whole page as its details; the store took it for a failed call (spending the job's attempts)
    and put the page, HTML and all, into its "one-line" message. A store that cannot answer now is unavailable."""
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    user = uuid.uuid4()
    gateway.fail("/rest/v1/sync_jobs", page(status), method="POST")
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.create_job(user_id=user, type="demo", payload={}, max_attempts=3, now=T0)
        job, created = await store.create_job(user_id=user, type="demo", payload={}, max_attempts=3, now=T0)
        assert created and [j.id for j in await store.list_jobs(user_id=user)] == [job.id]
    finally:
        await store.close()
    message = str(info.value)
    assert str(status) in message and "\n" not in message and len(message) < 300, message
    assert "<" not in message and "cloudflare" not in message, message
    _no_key_in([message, *(r.getMessage() for r in caplog.records)])


@pytest.mark.parametrize("code", ["PGRST001", "08006", "57P01", "57P03"])
async def test_postgrest_reporting_its_database_gone_is_store_unavailable(gateway: Gateway, code: str) -> None:
    """PostgREST's own codes for an unreachable database, and the SQLSTATEs the postgres store reads as a server
    going away (a lost connection, a shutdown, a start-up)."""
    body = json.dumps({"code": code, "message": "the database is going away", "details": None, "hint": None})
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    gateway.fail("/rest/v1/sync_jobs", page(503, body, "application/json"), method="POST")
    try:
        with pytest.raises(StoreUnavailable, match=code):
            await store.create_job(user_id=uuid.uuid4(), type="demo", payload={}, max_attempts=3, now=T0)
    finally:
        await store.close()


async def test_a_gateway_refusing_the_key_is_a_store_error_not_an_outage(gateway: Gateway) -> None:
    """A 401 (a wrong key) does not pass by waiting: it stays a failure the worker reports, not an outage."""
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    gateway.fail("/rest/v1/sync_jobs", page(401, "<html>Unauthorized</html>"))
    try:
        with pytest.raises(StoreError) as info:
            await store.list_jobs()
    finally:
        await store.close()
    assert not isinstance(info.value, StoreUnavailable)
    assert "401" in str(info.value) and "<" not in str(info.value)


async def test_long_details_of_a_postgrest_error_are_cut_to_a_short_line(gateway: Gateway) -> None:
    body = json.dumps({"code": "XX000", "message": "internal error", "details": "x" * 5000, "hint": None})
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    gateway.fail("/rest/v1/sync_jobs", page(500, body, "application/json"))
    try:
        with pytest.raises(StoreError) as info:
            await store.list_jobs()
    finally:
        await store.close()
    assert "XX000 internal error" in str(info.value) and len(str(info.value)) < 400, str(info.value)


async def test_a_sync_meeting_gateway_pages_pauses_without_an_attempt_and_stores_every_activity_once(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe's case: a five-second gateway blip (three 502 pages) on the activity upserts failed a sync for
    good. A worker now waits it out, the job spends one attempt and every activity is stored exactly once."""
    caplog.set_level(logging.INFO)
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    clock = SystemClock()
    fake = FakeStrava(clock=clock, seed=3)
    athlete = fake.add_athlete(activities=450)
    strava = fake.client(tokens=store, rng=random.Random(1))
    runner = JobRunner(
        store,
        handlers=register_strava_sync(HandlerRegistry()),
        clock=clock,
        strategy="worker",
        resources={"strava": strava},
        retry=RetryPolicy(base_s=0.05, jitter=0.0),
        rng=random.Random(0),
    )
    user = uuid.uuid4()
    try:
        await store.save_tokens(user, athlete.tokens(), now=clock.now())
        job, _ = await runner.submit(user, {"mode": "full"})
        gateway.fail("/rest/v1/strava_activities", page(502), method="POST", times=3)
        stats = await Worker(runner, burst=True, poll_s=0.05, grace_s=0.0).run()
        done = await store.get_job(job.id)
        stored = await store.stored_activities(user)
    finally:
        await strava.aclose()
        await store.close()
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert done.attempts == 1 and stats.failed == 0, (done, stats)
    assert sorted(stored) == sorted(fake.activity_ids(athlete.athlete_id))
    assert done.result is not None and done.result["activities"] == 450
    posts = [r for r in gateway.sent if r.method == "POST" and r.url.path.endswith("/strava_activities")]
    assert len(posts) > 3  # the three pages were met, and the upserts went on after them
    _no_key_in([r.getMessage() for r in caplog.records])


async def _submit_twice(gateway: Gateway, job_type: str) -> tuple[httpx.Response, httpx.Response, list[Job]]:
    """One user's ``POST /api/sync`` sent twice (the client retrying), through the API over a Supabase store
    behind ``gateway``; both answers, and the user's jobs in the store afterwards."""
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    api = ApiHarness(store, demo=True)
    user = uuid.uuid4()
    try:
        async with api.client() as client:
            first = await client.post("/api/sync", json={"type": job_type}, headers=api.auth(user))
            second = await client.post("/api/sync", json={"type": job_type}, headers=api.auth(user))
            await api.drain()
        return first, second, await store.list_jobs(user_id=user)
    finally:
        await store.close()


async def test_the_api_answers_503_with_retry_after_while_the_gateway_answers_502(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gateway.fail("/rest/v1/sync_jobs", page(502), method="POST")
    refused, accepted, jobs = await _submit_twice(gateway, "noop")
    assert assert_json_error(refused, 503) and refused.headers["retry-after"]
    assert accepted.status_code == 202 and [str(j.id) for j in jobs] == [accepted.json()["jobId"]]
    logged = [r.getMessage() for r in caplog.records]
    assert any("502" in m for m in logged) and not any("cloudflare" in m or "\n" in m for m in logged), logged
    _no_key_in(logged)


# -- answers that are not JSON ------------------------------------------------------------------------------------

PORTAL_PAGE = "<html><body>Please log in to the hotel's network</body></html>"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rest/v1/sync_jobs", PORTAL_PAGE),
        ("/rest/v1/sync_jobs", '[{"id": "0b6f'),  # cut short
        ("/rest/v1/sync_jobs", '{"not": "rows"}'),
        ("/rest/v1/rpc/syncsim_claim_job", PORTAL_PAGE),
        ("/rest/v1/rpc/syncsim_extend_lease", PORTAL_PAGE),
        ("/rest/v1/rpc/syncsim_take_rate_slot", PORTAL_PAGE),
        ("/rest/v1/rpc/syncsim_pause_job_type", PORTAL_PAGE),
    ],
)
async def test_a_200_whose_body_is_not_postgrest_json_is_a_one_line_store_unavailable(
    gateway: Gateway, path: str, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a probe: postgrest-py hands a 200's body that is not JSON on as a string, and the store's callers
    failed on it (``TypeError: string indices must be integers``), so ``syncsim jobs`` printed a traceback."""
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    job, _ = await store.create_job(user_id=uuid.uuid4(), type="demo", payload={}, max_attempts=3, now=T0)
    calls = {
        "/rest/v1/sync_jobs": lambda: store.list_jobs(),
        "/rest/v1/rpc/syncsim_claim_job": lambda: store.claim_job(worker_id="w", now=T0, lease_s=30),
        "/rest/v1/rpc/syncsim_extend_lease": lambda: store.extend_lease(job.id, worker_id="w", now=T0, lease_s=30),
        "/rest/v1/rpc/syncsim_take_rate_slot": lambda: store.take_rate_slot(
            SlotRequest(True, T0, T0, (200, 2000), (100, 1000))
        ),
        "/rest/v1/rpc/syncsim_pause_job_type": lambda: store.pause_job_type(
            "demo", until=T0 + 60, looks=1, reason="test", now=T0
        ),
    }
    gateway.fail(path, page(200, body, "application/json"))
    try:
        with pytest.raises(StoreUnavailable) as info:
            await calls[path]()
    finally:
        await store.close()
    message = str(info.value)
    assert "not JSON" in message and "\n" not in message and "<" not in message, message
    _no_key_in([message, *(r.getMessage() for r in caplog.records)])


async def test_a_worker_whose_claim_is_answered_with_a_page_goes_on_and_loses_no_job(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a probe: such an answer to a claim ended ``syncsim worker`` ("a claim loop failed, stopping").
    Here the claim took effect and only its answer was lost: the lease lapses, and the job is run once."""
    caplog.set_level(logging.INFO)
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    runner = JobRunner(store, handlers=register_builtin_handlers(HandlerRegistry()), lease_s=0.5)
    try:
        job, _ = await runner.submit(uuid.uuid4(), {}, type="noop")
        gateway.fail("/rest/v1/rpc/syncsim_claim_job", page(200, PORTAL_PAGE), passed_on=True)
        stats = await Worker(runner, burst=True, poll_s=0.05, grace_s=0.0).run()
        done = await store.get_job(job.id)
    finally:
        await store.close()
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert (done.attempts, done.crashes, stats.completed, stats.store_errors) == (1, 1, 1, 1), (done, stats)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("stopping" in m or "<" in m for m in messages), messages
    _no_key_in(messages)


async def test_a_submit_answered_with_a_page_is_a_503_and_the_retried_submit_returns_the_same_job(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a probe: ``POST /api/sync`` answered 500 (``created.data[0]`` of a page). The insert took effect:
    the client's retry after the 503 gets that job, not a second one."""
    gateway.fail("/rest/v1/sync_jobs", page(200, PORTAL_PAGE), method="POST", passed_on=True)
    refused, again, jobs = await _submit_twice(gateway, "demo")
    assert assert_json_error(refused, 503) and refused.headers["retry-after"]
    assert again.status_code in {200, 202} and [str(j.id) for j in jobs] == [again.json()["jobId"]]
    _no_key_in([r.getMessage() for r in caplog.records])


# -- migrate ------------------------------------------------------------------------------------------------------


async def _migrate_refused(gateway: Gateway, key: str) -> StoreError:
    """The error ``migrate()`` raises on a Supabase store behind ``gateway`` with ``key`` (it must raise one)."""
    store = SupabaseStore.from_url(URL, key=key, transport=gateway)
    try:
        with pytest.raises(StoreError) as info:
            await store.migrate()
    finally:
        await store.close()
    return info.value


def test_migrate_checks_the_newest_migration_syncsim_ships() -> None:
    """A new migration must teach ``migrate()`` how to find it, or the check would pass on a database without it."""
    assert migration_files("postgres")[-1][0] == NEWEST_MIGRATION


async def test_migrate_on_a_database_without_the_newest_migration_says_to_run_it_on_the_postgres_url(
    gateway: Gateway, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a probe: ``syncsim migrate --store supabase://…`` printed "applied 0 migration(s) (up to date)" on
    a database without migration 0017, and the next sync failed (PGRST202, no syncsim_take_rate_slot). Here the
    database lacks the newest, 0018 (its columns of strava_rate_slots)."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute("alter table strava_rate_slots drop column limit_15min, drop column limit_daily")
        await conn.execute("delete from syncsim_migrations where name = %s", (NEWEST_MIGRATION,))
    refused = await _migrate_refused(gateway, SERVICE_KEY)
    message = str(refused)
    assert not isinstance(refused, StoreUnavailable)
    assert NEWEST_MIGRATION in message and "42703" in message, message
    assert "syncsim migrate --store postgresql://" in message and "\n" not in message, message
    _no_key_in([message, *(r.getMessage() for r in caplog.records)])


async def test_migrate_on_an_up_to_date_database_applies_nothing_and_takes_no_rate_slot(gateway: Gateway) -> None:
    store = SupabaseStore.from_url(URL, key=SERVICE_KEY, transport=gateway)
    one_a_day = SlotRequest(True, T0, T0, (1, 1), (1, 1))
    try:
        assert await store.migrate() == []
        assert await store.take_rate_slot(one_a_day) is None  # the check took none of the day's one slot
        assert await store.take_rate_slot(one_a_day) == "day"
    finally:
        await store.close()


async def test_migrate_that_cannot_check_says_so_and_what_to_run(gateway: Gateway) -> None:
    """The project's public (anon) key may not read the schema: migrate cannot tell, and does not claim either."""
    anon_key = sign_test_jwt({"role": "anon", "iss": "supabase"})
    message = str(await _migrate_refused(gateway, anon_key))
    assert "cannot tell" in message and "42501" in message and "syncsim migrate --store postgresql://" in message
    assert anon_key not in message and "\n" not in message


# -- a Supabase that does not answer -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hanging_supabase() -> AsyncIterator[str]:
    """A loopback server that takes every connection and request and never answers; its ``supabase://`` URL."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up and closes

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"supabase://127.0.0.1:{port}?scheme=http"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_submit_meeting_a_hanging_supabase_is_the_stores_503_not_the_platforms_504(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by a probe: with a 30 s request timeout, ``POST /api/sync`` met a Supabase that did not answer and
    was killed at the hobby plan's 10 s (504, which says nothing of the store) instead of answering 503 with
    Retry-After. The default now leaves the invocation time to answer."""
    caplog.set_level(logging.INFO)
    async with hanging_supabase() as url:
        store = SupabaseStore.from_url(url, key=SERVICE_KEY)
        api = ApiHarness(store, platform="hobby", demo=True)
        try:
            async with api.client() as client:
                answer = await client.post("/api/sync", json={"type": "demo"}, headers=api.auth(uuid.uuid4()))
                await api.drain()
        finally:
            await store.close()
    assert assert_json_error(answer, 503) == "the job store is unavailable; try again shortly"
    assert answer.headers["retry-after"]
    _no_key_in([r.getMessage() for r in caplog.records])


async def test_the_store_urls_timeout_bounds_a_call_to_a_hanging_supabase() -> None:
    async with hanging_supabase() as url:
        store = SupabaseStore.from_url(f"{url}&timeout=0.2", key=SERVICE_KEY)
        try:
            with pytest.raises(StoreUnavailable) as info:
                await store.list_jobs()
        finally:
            await store.close()
    # Whichever gives up first, httpx's timeout of one read or the store's of the whole call, both are 0.2 s.
    assert "no answer" in str(info.value) and " 0.2 s" in str(info.value), info.value
    assert "\n" not in str(info.value) and SERVICE_KEY not in str(info.value)


@pytest.mark.parametrize("query", ["timeout=0", "timeout=-1", "timeout=nan", "timeout=inf", "timeout=soon", "timeout="])
def test_a_timeout_that_is_not_a_positive_finite_number_of_seconds_is_a_config_error(query: str) -> None:
    with pytest.raises(ConfigError, match="timeout must be a number of seconds > 0") as info:
        SupabaseStore.from_url(f"{URL}?{query}", key=SERVICE_KEY)
    assert "\n" not in str(info.value)


def test_a_misspelt_store_url_parameter_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown parameter.*timout.*use scheme, timeout"):
        SupabaseStore.from_url(f"{URL}?timout=30", key=SERVICE_KEY)
