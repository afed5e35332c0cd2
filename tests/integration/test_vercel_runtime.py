"""``api/index.py`` served by Vercel's own Python runtime (``vercel-runtime``), spoken to over loopback HTTP.

Everywhere else ``VercelPlatform`` meets stand-ins for ``vercel.functions``; here it meets the real hooks. The
runtime needs Python >= 3.12 and this suite runs on 3.11, so the function runs in a Python 3.12 subprocess from
``.venv-vercel``, which ``scripts/ensure-vercel-runtime.sh`` builds with the pinned runtime and requirements.txt,
the packages a deployment installs. No Python 3.12 is a failure, not a skip.

The runtime serves the function in two ways, and each test runs on both:

- ``dev``: ``vercel_runtime.dev``, the server ``vercel dev`` spawns for a Python app, started the way the CLI
  starts it (a trampoline module naming the entry point, ``PORT``). It runs uvicorn with its reloader: a process
  group, stopped as one.
- ``lambda``: ``vercel_runtime.vc_init``, the bridge a deployed function runs. It reports to the platform over a
  Unix socket (``VERCEL_IPC_PATH``): its port, then each invocation's ``handler-started`` and ``end``. The test
  plays the platform's side of that socket. ``end`` comes only once the work handed to ``wait_until`` is done, and
  Vercel freezes the function then, so it is the observable proof that a sync ran inside the runtime's own
  ``wait_until`` and not beside it.

Both hosts take ``x-vercel-internal-deadline`` off the request and answer ``vercel.functions.get_deadline()``
with it; ``SYNCSIM_PLATFORM=pro`` (300 s) makes the header the only way a deadline of seconds can come about.
Syncs run against a FakeStrava on loopback (``SYNCSIM_STRAVA_URL``) into a SQLite file the test reads directly:
status polls would continue jobs themselves under ``resumable``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncsim import defaults
from syncsim.api.auth import mint_token
from syncsim.clock import SystemClock
from syncsim.jobs.model import JobStatus
from syncsim.stores import Store, open_store
from syncsim.strava.fake import FakeStrava
from syncsim.strava.fake.server import running_fake_strava
from tests.support.api import CRON_SECRET, SECRET, assert_json_error
from tests.support.jobs import wait_for_job

REPO = Path(__file__).resolve().parents[2]
ENSURE_RUNTIME = REPO / "scripts" / "ensure-vercel-runtime.sh"
ENTRY = REPO / "api" / "index.py"
#: Seconds FakeStrava takes per request: a 5,000-activity sync (26 requests) then takes about 2.6 s.
STRAVA_LATENCY_S = 0.1
#: The deadline header is set this far ahead: the runner's margin plus time for a few pages, short of the time
#: the whole 5,000-activity sync needs.
DEADLINE_AHEAD_S = defaults.DEADLINE_MARGIN_S + 1.0
#: How long a runtime may take to start serving (seconds): the imports of a cold Python 3.12 process.
STARTUP_TIMEOUT_S = 20.0
#: How long a stopped runtime gets to finish before its processes are killed (seconds).
STOP_TIMEOUT_S = 5.0
#: The variables the function reads: none may leak in from the environment the tests run in.
FUNCTION_ENV_PREFIXES = ("SYNCSIM_", "STRAVA_", "VERCEL_", "__VC_", "CRON_SECRET", "PYTHON", "VIRTUAL_ENV")


# -- the runtime's environment and the function's world (FakeStrava, the store) -----------------------------------
@pytest.fixture(scope="session")
def vercel_python() -> Path:
    """``.venv-vercel``'s Python 3.12, built or reused by the setup script; a failure says why."""
    try:
        done = subprocess.run(
            ["bash", str(ENSURE_RUNTIME)], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{ENSURE_RUNTIME.name} did not finish within 900 s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"Vercel's Python runtime is not available: {ENSURE_RUNTIME.name} exited {done.returncode}:\n"
            f"{done.stderr.strip()[-2000:]}",
            pytrace=False,
        )
    python = Path(done.stdout.strip().splitlines()[-1])
    assert python.is_file(), f"{ENSURE_RUNTIME.name} printed {python}, which is not a file"
    return python


@pytest.fixture(scope="module")
def fake_strava() -> Iterator[tuple[FakeStrava, str]]:
    """One FakeStrava for the module, with an approved app's limits so that no test meets the rate limit."""
    fake = FakeStrava(
        clock=SystemClock(), seed=14, latency=STRAVA_LATENCY_S, read_limits=(600, 30_000), overall_limits=(600, 30_000)
    )
    with running_fake_strava(fake) as url:
        yield fake, url


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file: Vercel never migrates (``syncsim migrate`` does, once per release)."""
    path = tmp_path_factory.mktemp("vercel-store") / "syncsim.db"

    async def migrate() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.migrate()
        await store.close()

    asyncio.run(migrate())
    return path


# -- the runtime, in a process group of its own --------------------------------------------------------------------
class PlatformSide:
    """The platform's end of ``vc_init``'s IPC socket: NUL-separated JSON messages, each with its arrival time
    (epoch seconds)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._listener.settimeout(STARTUP_TIMEOUT_S)
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="vercel-ipc", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:  # closed, or the runtime never connected: wait_for reports it
            return
        buffered = b""
        with connection:
            while chunk := connection.recv(65536):
                buffered += chunk
                *complete, buffered = buffered.split(b"\0")
                with self._changed:
                    self.messages += [(time.time(), json.loads(raw)) for raw in complete if raw]
                    self._changed.notify_all()

    def wait_for(self, matches: Callable[[dict[str, Any]], bool], timeout_s: float) -> tuple[float, dict[str, Any]]:
        """The first message ``matches`` accepts, and when it arrived; fails after ``timeout_s``."""
        give_up = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for arrived, message in self.messages:
                    if matches(message):
                        return arrived, message
                left = give_up - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such IPC message within {timeout_s} s; got {self.messages[-10:]}")
                self._changed.wait(left)

    def lifecycle(self, invocation_id: str, kind: str, timeout_s: float = 10.0) -> float:
        """When the runtime reported ``kind`` (``handler-started``, ``end``) for ``invocation_id``."""

        def matches(message: dict[str, Any]) -> bool:
            context = message.get("payload", {}).get("context", {})
            return message.get("type") == kind and context.get("invocationId") == invocation_id

        return self.wait_for(matches, timeout_s)[0]

    def logs(self) -> str:
        """What the function logged and printed (the runtime forwards it over the socket, base64-encoded)."""
        lines = [
            base64.b64decode(message["payload"]["message"]).decode(errors="replace")
            for _, message in list(self.messages)
            if message.get("type") == "log"
        ]
        return "\n".join(lines)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(2.0)


@dataclass
class VercelRuntime:
    """``api/index.py`` under one of the runtime's hosts, and how to reach and stop it."""

    host: str
    process: subprocess.Popen[bytes]
    output: Path
    base_url: str = ""
    platform: PlatformSide | None = None
    requests: int = 0

    def headers(self, **extra: str) -> dict[str, str]:
        """A fresh invocation id on every request, as Vercel's proxy sends, so the IPC reports can be matched."""
        self.requests += 1
        return {
            "x-vercel-internal-invocation-id": str(uuid.uuid4()),
            "x-vercel-internal-request-id": str(self.requests),
            **extra,
        }

    def logs(self) -> str:
        printed = self.output.read_text(errors="replace") if self.output.exists() else ""
        forwarded = self.platform.logs() if self.platform is not None else ""
        return f"{printed}\n{forwarded}".strip()[-4000:]

    def exited(self) -> bool:
        """Whether the group's leader has exited, without reaping it (see :meth:`stop`)."""
        return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def stop(self) -> None:
        """SIGTERM to the whole group (uvicorn's reloader and its server, or the bridge), SIGKILL to whatever is
        left of it after ``STOP_TIMEOUT_S``. The leader is reaped last: until then its id, which is the group's,
        cannot pass to another process."""
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        give_up = time.monotonic() + STOP_TIMEOUT_S
        while not self.exited() and time.monotonic() < give_up:
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)
        if self.platform is not None:
            self.platform.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _function_env(store_file: Path, strava: tuple[FakeStrava, str]) -> dict[str, str]:
    """The deployment's environment variables (as set in Vercel's project settings), over a clean base."""
    fake, strava_url = strava
    env = {k: v for k, v in os.environ.items() if not k.startswith(FUNCTION_ENV_PREFIXES)}
    env.update(
        SYNCSIM_STORE=f"sqlite:///{store_file}",
        SYNCSIM_JWT_SECRET=SECRET,
        SYNCSIM_STRATEGY="resumable",
        SYNCSIM_PLATFORM="pro",
        SYNCSIM_STRAVA_URL=strava_url,
        STRAVA_CLIENT_ID=fake.client_id,
        STRAVA_CLIENT_SECRET=fake.client_secret,
        CRON_SECRET=CRON_SECRET,
        NO_COLOR="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _launch(
    host: str, argv: list[str], env: dict[str, str], workdir: Path, platform: PlatformSide | None
) -> VercelRuntime:
    output = workdir / f"{host}.log"
    with output.open("wb") as sink:
        # The scratch directory is the working directory: uvicorn's reloader watches it, and it holds no sources.
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return VercelRuntime(host=host, process=process, output=output, platform=platform)


def start_dev_server(python: Path, env: dict[str, str], workdir: Path) -> VercelRuntime:
    """``vercel_runtime.dev`` through the trampoline ``vercel dev`` writes (``.vercel/python/vc_init_dev.py``)
    and runs with ``python -u -m``, on a free port."""
    (workdir / "vc_init_dev.py").write_text(
        "import os\n"
        "os.environ.update({\n"
        '    "VERCEL_DEV_MODULE_NAME": "api.index",\n'
        f'    "VERCEL_DEV_ENTRY_ABS": {str(ENTRY)!r},\n'
        '    "VERCEL_DEV_FRAMEWORK": "python",\n'
        '    "VERCEL_DEV_VARIABLE_NAME": "app",\n'
        "})\n"
        "from vercel_runtime.dev import main  # noqa: E402\n"
        'if __name__ == "__main__":\n'
        "    main()\n"
    )
    for attempt in range(3):  # the free port may be taken between the probe and the server's bind
        port = _free_port()
        runtime = _launch("dev", [str(python), "-u", "-m", "vc_init_dev"], {**env, "PORT": str(port)}, workdir, None)
        runtime.base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_serving(runtime)
            return runtime
        except BaseException:
            runtime.stop()
            if attempt == 2 or "address already in use" not in runtime.logs().lower():
                raise
    raise AssertionError("unreachable")


def start_function_bridge(python: Path, env: dict[str, str], workdir: Path) -> VercelRuntime:
    """``vercel_runtime.vc_init`` with the variables a deployed function's trampoline sets before importing it,
    reporting to the test over the IPC socket; it picks its own port and announces it there."""
    platform = PlatformSide(workdir / "ipc.sock")
    env = {
        **env,
        "VERCEL_IPC_PATH": str(platform.path),
        "__VC_HANDLER_MODULE_NAME": "api.index",
        "__VC_HANDLER_ENTRYPOINT": "api/index.py",
        "__VC_HANDLER_ENTRYPOINT_ABS": str(ENTRY),
        "__VC_HANDLER_VARIABLE_NAME": "app",
    }
    try:
        runtime = _launch("lambda", [str(python), "-u", "-c", "import vercel_runtime.vc_init"], env, workdir, platform)
    except BaseException:
        platform.close()
        raise
    try:
        _, started = platform.wait_for(lambda m: m.get("type") == "server-started", STARTUP_TIMEOUT_S)
        runtime.base_url = f"http://127.0.0.1:{started['payload']['httpPort']}"
        _wait_until_serving(runtime)
    except BaseException:
        runtime.stop()
        raise
    return runtime


def _wait_until_serving(runtime: VercelRuntime) -> None:
    give_up = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if runtime.exited():
            raise AssertionError(f"the {runtime.host} runtime exited before serving:\n{runtime.logs()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{runtime.base_url}/healthz", timeout=2.0).status_code == 200:
                return
        if time.monotonic() > give_up:
            raise AssertionError(
                f"the {runtime.host} runtime did not serve in {STARTUP_TIMEOUT_S} s:\n{runtime.logs()}"
            )
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["dev", "lambda"])
def runtime(
    request: pytest.FixtureRequest,
    vercel_python: Path,
    store_file: Path,
    fake_strava: tuple[FakeStrava, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[VercelRuntime]:
    workdir = tmp_path_factory.mktemp(f"vercel-{request.param}")
    start = start_dev_server if request.param == "dev" else start_function_bridge
    served = start(vercel_python, _function_env(store_file, fake_strava), workdir)
    try:
        yield served
    finally:
        served.stop()


# -- per test: an athlete connected to Strava, a client, the store ---------------------------------------------------
@dataclass
class Athlete:
    user_id: uuid.UUID
    activities: int

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.user_id, SECRET, now=time.time())}"}


@pytest.fixture
async def store(store_file: Path) -> AsyncIterator[Store]:
    """The function's store, read from the test's side of the file."""
    opened = open_store(f"sqlite:///{store_file}")
    yield opened
    await opened.close()


@pytest.fixture
async def client(runtime: VercelRuntime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=runtime.base_url, timeout=15.0) as http:
        yield http


async def connect_athlete(store: Store, strava: tuple[FakeStrava, str], activities: int) -> Athlete:
    """A user whose Strava athlete has ``activities`` activities, connected (tokens stored, as after OAuth)."""
    fake, _ = strava
    athlete = fake.add_athlete(activities=activities)
    user = Athlete(uuid.uuid4(), athlete.activity_count)
    await store.save_tokens(user.user_id, athlete.tokens(), now=time.time())
    return user


def rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the tests ------------------------------------------------------------------------------------------------------
async def test_sync_answers_202_and_completes_inside_the_runtimes_wait_until(
    runtime: VercelRuntime, client: httpx.AsyncClient, store: Store, fake_strava: tuple[FakeStrava, str]
) -> None:
    athlete = await connect_athlete(store, fake_strava, activities=800)
    headers = runtime.headers(**athlete.auth())
    sent = time.time()
    response = await client.post("/api/sync", headers=headers)
    answered = time.time()
    assert response.status_code == 202, (response.text, runtime.logs())
    assert response.json()["status"] == "pending"
    assert answered - sent < 1.0  # the design's bar; the sync itself takes 0.5 s of Strava's time alone
    job_id = uuid.UUID(response.json()["jobId"])

    job = await wait_for_job(
        store, job_id, lambda j: j.status is JobStatus.COMPLETED, timeout_s=20.0, every_s=0.05, context=runtime.logs
    )
    assert await store.count_activities(athlete.user_id) == athlete.activities
    assert job.runs == 1 and job.attempts == 1  # one invocation, the POST's, did it all
    if runtime.platform is not None:
        ended = runtime.platform.lifecycle(headers["x-vercel-internal-invocation-id"], "end")
        assert job.completed_at is not None
        # The invocation ended only after the sync it answered 202 for: the runtime's wait_until held it. (The
        # test notes when each report arrives, which may be later than it was sent, never earlier.)
        assert answered < job.completed_at.timestamp() <= ended


async def test_deadline_header_stops_the_sync_at_that_instant_and_leaves_it_pending(
    runtime: VercelRuntime, client: httpx.AsyncClient, store: Store, fake_strava: tuple[FakeStrava, str]
) -> None:
    athlete = await connect_athlete(store, fake_strava, activities=5000)  # ~2.6 s of Strava's time
    deadline = time.time() + DEADLINE_AHEAD_S
    headers = runtime.headers(**athlete.auth(), **{"x-vercel-internal-deadline": rfc3339(deadline)})
    response = await client.post("/api/sync", headers=headers)
    assert response.status_code == 202, (response.text, runtime.logs())
    job_id = uuid.UUID(response.json()["jobId"])

    await asyncio.sleep(max(0.0, deadline - time.time()) + 0.3)
    cut = await store.get_job(job_id)
    stored = await store.count_activities(athlete.user_id)
    assert cut is not None
    # Stopped by the header's deadline (the platform's own limit is 300 s): checkpointed, pending, not failed.
    assert cut.status is JobStatus.PENDING, (cut, runtime.logs())
    assert cut.runs == 1 and cut.attempts < cut.max_attempts and "deadline" in (cut.error or "")
    assert 0 < stored < athlete.activities
    if runtime.platform is not None:
        ended = runtime.platform.lifecycle(headers["x-vercel-internal-invocation-id"], "end")
        assert ended <= deadline  # the invocation was over by its deadline
    await asyncio.sleep(0.5)
    assert await store.count_activities(athlete.user_id) == stored  # nothing ran on after the deadline

    # Not lost: a tick with the cron bearer continues it; one without continues nothing.
    refused = await client.get("/api/cron/tick", headers=runtime.headers())
    assert_json_error(refused, 401)
    still = await store.get_job(job_id)
    assert still is not None and still.status is JobStatus.PENDING and still.runs == 1
    tick = await client.get("/api/cron/tick", headers=runtime.headers(Authorization=f"Bearer {CRON_SECRET}"))
    assert tick.status_code == 200, (tick.text, runtime.logs())
    assert tick.json()["continued"] >= 1
    job = await wait_for_job(
        store, job_id, lambda j: j.status is JobStatus.COMPLETED, timeout_s=20.0, every_s=0.05, context=runtime.logs
    )
    assert job.runs == 2
    assert await store.count_activities(athlete.user_id) == athlete.activities


async def test_cron_tick_answers_its_summary_to_the_cron_bearer_only(
    runtime: VercelRuntime, client: httpx.AsyncClient
) -> None:
    tick = await client.get("/api/cron/tick", headers=runtime.headers(Authorization=f"Bearer {CRON_SECRET}"))
    assert tick.status_code == 200, (tick.text, runtime.logs())
    assert tick.headers["content-type"].startswith("application/json")
    summary = tick.json()
    assert {"continued", "completed", "failed", "reclaimed", "stillDue", "nextDueAt"} <= set(summary)
    assert summary["failed"] == 0
    for headers in ({}, {"Authorization": "Bearer not-the-cron-secret"}):
        refused = await client.get("/api/cron/tick", headers=runtime.headers(**headers))
        assert_json_error(refused, 401)
        assert refused.headers["www-authenticate"] == "Bearer"


def test_vercel_json_schedules_the_tick_at_most_daily_so_hobby_deploys() -> None:
    """Vercel Cron sends GET with the ``CRON_SECRET`` bearer (tested above). Hobby refuses to deploy a cron that
    runs more than once a day, so the committed schedule is daily: on Hobby the every-minute tick is Supabase
    Cron's (``syncsim schedule``); on Pro the schedule may be ``* * * * *``."""
    config = json.loads((REPO / "vercel.json").read_text())
    (cron,) = [c for c in config.get("crons", []) if c["path"] == "/api/cron/tick"]
    minute, hour, *_ = cron["schedule"].split()
    assert minute.isdigit() and hour.isdigit(), f"{cron['schedule']!r} runs more than once a day"
