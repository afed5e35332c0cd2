"""A real run over loopback, for validation (:mod:`syncsim.sim.validation`): subprocesses, browsers, the store.

:func:`process` runs one ``syncsim`` command line (:func:`syncsim_command`, this interpreter) as a subprocess with
its output in a log file and stops it gracefully (SIGINT); :func:`wait_for` waits until it is ready
(listening: :func:`listening`; for ``syncsim fake-strava``, its banner of credentials and per-athlete codes
complete: :func:`read_banner`). :func:`browse` connects one user per athlete through the served API and runs
every :class:`~syncsim.sim.browser.Browser` at once over real HTTP; :func:`read_jobs` reads the jobs back
from the run's SQLite store; :func:`time_store_calls` measures the real store's mean call time by replaying
one sync per athlete on a copy of it (:class:`TimedStore`). :func:`~syncsim.sim.validation.real_run` puts
them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from syncsim.errors import ConfigError
from syncsim.sim.browser import PollSchedule

#: The HS256 secret of the served API (a loopback run's own; never used anywhere else).
JWT_SECRET = "syncsim-validation-secret-for-loopback-runs-only"
#: Seconds a subprocess gets to start listening.
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def syncsim_command(*args: str) -> list[str]:
    """The ``syncsim`` command line, run by this interpreter."""
    return [sys.executable, "-m", "syncsim.cli", *args]


@contextlib.contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with stdout and stderr in ``log``; on exit, SIGINT (a graceful stop), then wait."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_for(ready: Any, proc: subprocess.Popen[bytes], log: Path, what: str) -> Any:
    give_up = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise ConfigError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        value = ready()
        if value:
            return value
        time.sleep(0.02)
    raise ConfigError(f"{what} did not start within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


_ATHLETE = re.compile(r"^athlete (\d+): (\d+) activities$")


def read_banner(log: Path, athletes: int) -> dict[str, Any] | None:
    """The fake's credentials and, per athlete in order, (activities, code), once its banner is complete."""
    text = log.read_text(errors="replace")
    found: list[tuple[int, str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _ATHLETE.match(line)
        if match and i + 1 < len(lines) and " code=" in lines[i + 1]:
            found.append((int(match.group(2)), lines[i + 1].split(" code=")[1].split()[0]))
    head = re.search(r"client_id=(\S+) client_secret=(\S+);", text)
    if len(found) < athletes or head is None:
        return None
    return {"client_id": head.group(1), "client_secret": head.group(2), "athletes": found}


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def browse(poll: PollSchedule, base_url: str, codes: Sequence[str]) -> list[uuid.UUID]:
    """Connect one user per athlete through the API, then run every browser at once; the job ids, in order."""
    import httpx

    from syncsim.api.auth import mint_token
    from syncsim.clock import SystemClock
    from syncsim.sim.browser import Browser
    from syncsim.sim.recorder import Recorder

    clock = SystemClock()
    users = [uuid.uuid5(uuid.NAMESPACE_URL, f"syncsim:validation:{i}") for i in range(len(codes))]
    tokens = [mint_token(user, JWT_SECRET, now=clock.now()) for user in users]
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        for token, code in zip(tokens, codes, strict=True):
            response = await http.post(
                "/api/strava/connect", json={"code": code}, headers={"authorization": f"Bearer {token}"}
            )
            if response.status_code != 200:
                raise ConfigError(f"connect answered {response.status_code}: {response.text}")
        recorder = Recorder(clock, clock.now())
        browsers = [
            Browser(http, clock=clock, recorder=recorder, user_id=user, token=token, schedule=poll)
            for user, token in zip(users, tokens, strict=True)
        ]
        outcomes = await asyncio.gather(*(b.run() for b in browsers))
    ids = []
    for outcome in outcomes:
        if outcome.job_id is None:
            raise ConfigError(f"a browser got no job: {outcome.error}")
        ids.append(outcome.job_id)
    return ids


async def read_jobs(db: Path, job_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """The jobs as the real store holds them, in ``job_ids`` order."""
    from syncsim.stores import open_store

    store = open_store(f"sqlite:///{db}")
    try:
        jobs = []
        for job_id in job_ids:
            job = await store.get_job(job_id)
            if job is None:
                raise ConfigError(f"job {job_id} is not in the store")
            done = job.completed_at.timestamp() - job.created_at.timestamp() if job.completed_at else math.nan
            jobs.append({"status": job.status.value, "attempts": job.attempts, "runs": job.runs, "ttc": done})
        return jobs
    finally:
        await store.close()


class TimedStore:
    """A store proxy that adds up the wall time of every call."""

    def __init__(self, store: Any) -> None:
        self.inner = store
        self.calls = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await target(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return call


async def time_store_calls(db: Path, activities: Sequence[int], compact: bool) -> float:
    """Mean wall seconds of one call of the real store, as syncs make them: one ``strava_sync`` of a new athlete
    per count in ``activities`` (create, claim, tokens, per page an upsert and a checkpoint, count, complete), one
    after the other, on a copy of the real run's SQLite file, against an in-process FakeStrava that answers at
    once. The store's calls only are timed, not the pages' building or parsing."""
    from syncsim.clock import SystemClock
    from syncsim.jobs.runner import HandlerRegistry, JobRunner
    from syncsim.stores import open_store
    from syncsim.strava.fake import ATHLETE_ID_BASE, FakeStrava
    from syncsim.strava.sync import JOB_TYPE, register_strava_sync

    copy = db.with_name("store-timing.db")
    for suffix in ("", "-wal"):
        if db.with_name(db.name + suffix).exists():
            shutil.copyfile(db.with_name(db.name + suffix), copy.with_name(copy.name + suffix))
    clock = SystemClock()
    inner = open_store(f"sqlite:///{copy}")
    timed = TimedStore(inner)
    fake = FakeStrava(clock=clock, seed=1, compact=compact)
    strava = fake.client(tokens=timed)
    runner = JobRunner(
        timed,  # type: ignore[arg-type]
        handlers=register_strava_sync(HandlerRegistry()),
        clock=clock,
        resources={"strava": strava},
    )
    try:
        for i, count in enumerate(activities):
            athlete = fake.add_athlete(activities=count, athlete_id=ATHLETE_ID_BASE - 1 - i)  # not a real run's
            user = uuid.uuid5(uuid.NAMESPACE_URL, f"syncsim:validation:store-timing:{i}")
            await inner.save_tokens(user, athlete.tokens(), now=clock.now())
            job, _ = await runner.submit(user, {}, type=JOB_TYPE)
            done = await runner.run_job(job.id)
            if done is None or done.status.value != "completed":
                raise ConfigError(f"the store-timing sync did not complete: {done}")
        return timed.seconds / timed.calls
    finally:
        await strava.aclose()
        await inner.close()
        for path in (copy, copy.with_name(copy.name + "-wal"), copy.with_name(copy.name + "-shm")):
            path.unlink(missing_ok=True)
