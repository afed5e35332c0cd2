"""The API under platform time limits: resumable polls continue jobs, waituntil jobs are killed, 504s; Vercel."""

from __future__ import annotations

import asyncio
import logging
import runpy
import sys
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncsim.api.app import create_app
from syncsim.api.submissions import DEMO_JOB_TYPES
from syncsim.clock import SystemClock
from syncsim.errors import ConfigError
from syncsim.jobs.model import JobStatus
from syncsim.jobs.service import JobService
from syncsim.platforms import platform_spec
from syncsim.platforms.vercel import VercelFunctions, VercelPlatform
from syncsim.stores import Store, open_store
from tests.support.api import SECRET, ApiHarness, assert_json_error, poll_until

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("ending", "margin_s"),
    [
        ("stopped cleanly", 0.05),
        # With the margin switched off the runner does not see the deadline coming: the platform kills it.
        ("killed", -60.0),
    ],
)
async def test_resumable_job_cut_at_the_deadline_is_continued_by_the_next_poll(
    store: Store, user_id: uuid.UUID, ending: str, margin_s: float
) -> None:
    api = ApiHarness(
        store,
        demo=True,
        platform=platform_spec("hobby").with_limit(0.45),
        strategy="resumable",
        deadline_margin_s=margin_s,
        lease_s=0.5,
    )
    async with api.client() as client:
        response = await client.post(
            "/api/sync", json={"type": "demo", "payload": {"steps": 6, "step_s": 0.1}}, headers=api.auth(user_id)
        )
        assert response.status_code == 202
        first = api.platform.invocations[0]
        await first.drain()
        cut = await store.get_job(uuid.UUID(response.json()["jobId"]))
        assert cut is not None and 1 <= cut.progress["steps_done"] < 6
        if ending == "killed":
            assert first.killed and cut.status is JobStatus.RUNNING
        else:
            assert not first.killed and cut.status is JobStatus.PENDING
        job, _ = await poll_until(client, response.json()["jobId"], api.auth(user_id), every_s=0.1)
    assert job["status"] == "completed" and job["result"] == {"steps_done": 6}
    assert job["runs"] >= 2  # a poll's invocation picked it up again
    # Neither a clean stop nor a kill spends an attempt: a kill is a crash, counted apart from attempts.
    assert job["attempts"] == 1


async def test_waituntil_job_is_killed_at_the_deadline_and_stays_running(store: Store, user_id: uuid.UUID) -> None:
    """The design's failure mode: a sync longer than the limit is killed and left ``running``."""
    api = ApiHarness(store, demo=True, platform=platform_spec("hobby").with_limit(0.3), strategy="waituntil")
    async with api.client() as client:
        response = await client.post(
            "/api/sync", json={"type": "demo", "payload": {"steps": 8, "step_s": 0.1}}, headers=api.auth(user_id)
        )
        assert response.status_code == 202
        await api.platform.invocations[0].drain()
        assert api.platform.invocations[0].killed
        for _ in range(3):  # polls do not rescue it under waituntil
            job = (await client.get(f"/api/sync/{response.json()['jobId']}", headers=api.auth(user_id))).json()
            await asyncio.sleep(0.05)
    assert job["status"] == "running" and job["completedAt"] is None
    assert 1 <= job["progress"]["steps_done"] < 8
    assert job["runs"] == 1 and job["attempts"] == 1


class SlowStore:
    """A real store whose job creation takes ``delay_s`` longer: a database that has become slow."""

    def __init__(self, store: Store, delay_s: float) -> None:
        self._store = store
        self.delay_s = delay_s
        self.slow_writes_done = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def create_job(self, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay_s)
        self.slow_writes_done += 1
        return await self._store.create_job(**kwargs)


async def test_request_handler_overrunning_the_deadline_is_504_and_writes_nothing(
    store: Store, user_id: uuid.UUID
) -> None:
    slow = SlowStore(store, delay_s=0.5)
    api = ApiHarness(slow, demo=True, platform=platform_spec("hobby").with_limit(0.15))  # type: ignore[arg-type]
    async with api.client() as client:
        response = await client.post("/api/sync", json={"type": "demo"}, headers=api.auth(user_id))
        assert "time limit" in assert_json_error(response, 504)
        assert slow.slow_writes_done == 0  # answered at the deadline, not after the slow write
        assert (await client.get("/healthz")).status_code == 200  # the next invocation is fine
    await asyncio.sleep(0.6)  # past the moment the slow write would have landed
    assert slow.slow_writes_done == 0  # the kill cancelled it
    assert await store.list_jobs() == []
    assert api.platform.invocations[0].killed


# -- Vercel --------------------------------------------------------------------------------------------------
class RecordingRuntime:
    """Stands in for Vercel's runtime hooks: records what ``wait_until`` was given; a fixed deadline."""

    def __init__(self, deadline: datetime | None) -> None:
        self.deadline = deadline
        self.waited: list[Awaitable[Any]] = []

    def functions(self) -> VercelFunctions:
        return VercelFunctions(wait_until=self.waited.append, get_deadline=lambda: self.deadline)


async def test_vercel_platform_hands_background_work_to_the_runtime(store: Store, user_id: uuid.UUID) -> None:
    deadline = datetime.fromtimestamp(SystemClock().now() + 60, UTC)
    runtime = RecordingRuntime(deadline)
    platform = VercelPlatform("pro", functions=runtime.functions())
    api = ApiHarness(store, demo=True)
    app = create_app(service=JobService(api.runner), platform=platform, jwt_secret=SECRET, job_types=DEMO_JOB_TYPES)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vercel.test") as client:
        response = await client.post(
            "/api/sync", json={"type": "demo", "payload": {"steps": 2, "step_s": 0.01}}, headers=api.auth(user_id)
        )
        assert response.status_code == 202
        health = (await client.get("/healthz")).json()
    assert health["platform"] == "pro"
    assert len(runtime.waited) == 1 and isinstance(runtime.waited[0], asyncio.Task)
    await runtime.waited[0]  # what Vercel waits for is the job itself
    job = await store.get_job(uuid.UUID(response.json()["jobId"]))
    assert job is not None and job.status is JobStatus.COMPLETED
    assert platform.start_invocation().deadline == pytest.approx(deadline.timestamp())


async def test_vercel_deadline_falls_back_to_the_configured_max_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = RecordingRuntime(deadline=None)
    monkeypatch.setenv("VERCEL_FUNCTION_MAX_DURATION", "42")
    platform = VercelPlatform("hobby", functions=runtime.functions())
    invocation = platform.start_invocation()
    assert invocation.deadline == pytest.approx(invocation.started_at + 42)
    monkeypatch.delenv("VERCEL_FUNCTION_MAX_DURATION")
    invocation = platform.start_invocation()
    assert invocation.deadline == pytest.approx(invocation.started_at + 10)  # hobby's own limit


def test_vercel_platform_without_the_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vercel", None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install vercel"):
        VercelPlatform()


def _fake_vercel_package(root: Path) -> None:
    """A minimal ``vercel`` package on disk with the two hooks, as the Vercel runtime would provide."""
    package = root / "vercel"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "functions.py").write_text(
        "WAITED = []\ndef wait_until(awaitable):\n    WAITED.append(awaitable)\ndef get_deadline():\n    return None\n"
    )


async def test_vercel_entry_point_builds_the_app_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    _fake_vercel_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vercel", raising=False)
    monkeypatch.setenv("SYNCSIM_STORE", sqlite_url)
    monkeypatch.setenv("SYNCSIM_JWT_SECRET", SECRET)
    monkeypatch.setenv("SYNCSIM_STRATEGY", "resumable")
    monkeypatch.setenv("SYNCSIM_PLATFORM", "hobby")
    app = runpy.run_path(str(REPO / "api" / "index.py"))["app"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vercel.test") as client:
        unmigrated = await client.get("/healthz")  # Vercel never migrates: `syncsim migrate` does, once
        store = open_store(sqlite_url)
        await store.migrate()
        await store.close()
        health = (await client.get("/healthz")).json()
    assert_json_error(unmigrated, 503)
    assert health == {"status": "ok", "platform": "hobby", "strategy": "resumable"}


@pytest.mark.parametrize(
    ("variable", "value", "logged"),
    [
        ("SYNCSIM_STORE", None, "set SYNCSIM_STORE to the Supabase Postgres connection string"),
        ("SYNCSIM_STRATEGY", "worker", "SYNCSIM_STRATEGY must be 'waituntil' or 'resumable' on Vercel"),
        ("SYNCSIM_JWT_SECRET", "hunter2-in-plain", "the JWT secret is too short"),
        ("SYNCSIM_PLATFORM", "hobbby", "unknown platform 'hobbby'"),
        ("CRON_SECRET", "hunter2", "CRON_SECRET must be at least 16 characters"),
    ],
)
async def test_a_misconfigured_vercel_deployment_answers_503_and_logs_why_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sqlite_url: str,
    variable: str,
    value: str | None,
    logged: str,
) -> None:
    """It used to raise at import: Vercel's runtime reported a traceback and every route failed, /healthz too."""
    _fake_vercel_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vercel", raising=False)
    configured = {"SYNCSIM_STORE": sqlite_url, "SYNCSIM_JWT_SECRET": SECRET, "SYNCSIM_STRATEGY": "resumable"}
    for name, setting in {**configured, variable: value}.items():
        if setting is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, setting)
    with caplog.at_level(logging.ERROR, logger="syncsim.api.vercel"):
        app = runpy.run_path(str(REPO / "api" / "index.py"))["app"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vercel.test") as client:
        for path in ("/healthz", "/api/sync", "/api/cron/tick"):
            answer = await client.get(path)
            assert_json_error(answer, 503)
            assert answer.json() == {"error": "the server is misconfigured: its log says why"}  # no detail to clients
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and logged in lines[0] and "\n" not in lines[0], lines
    if value is not None and variable.endswith("SECRET"):
        assert value not in lines[0]
