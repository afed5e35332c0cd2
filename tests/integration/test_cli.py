"""The CLI as a user runs it: real subprocesses, one-line errors, non-zero exits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def syncsim(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAVA_", "SYNCSIM_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "syncsim.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def strava_env(fake: Any, athlete: Any) -> dict[str, str]:
    """What `syncsim sync --user` needs to connect a FakeStrava athlete: the app's and the athlete's credentials."""
    return {
        "STRAVA_CLIENT_ID": fake.client_id,
        "STRAVA_CLIENT_SECRET": fake.client_secret,
        "STRAVA_REFRESH_TOKEN": athlete.refresh_token,
    }


def test_demo_runs_on_the_embedded_default_store(tmp_path: Path) -> None:
    result = syncsim("demo", "--jobs", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "syncsim.db").exists()
    rows = [line for line in result.stdout.splitlines() if "  demo  " in line]
    assert len(rows) == 3 and all("completed" in row for row in rows)
    assert any("2/3" in row for row in rows)  # the job that failed once and was retried


def test_sync_with_a_fake_athlete_stores_every_activity(tmp_path: Path) -> None:
    result = syncsim("sync", "--fake", "450", "--quiet", "--trace", "trace.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "completed: 450 activities synced (full) in 4 page(s)" in result.stdout
    trace = (tmp_path / "trace.csv").read_text()
    assert trace.count("/athlete/activities") == 5  # 3 pages, the boundary again, the empty one that ends it
    assert not re.search(r"[0-9a-f]{40}", trace) and "access_token" not in trace  # no token (40 hex), no query
    listing = syncsim("jobs", cwd=tmp_path)
    assert "strava_sync" in listing.stdout and "completed" in listing.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("jobs", "--store", "mysql://x"), {}, "unsupported store URL 'mysql://x'"),
        (("jobs", "--store", "sqlite:////no/such/dir/x.db"), {}, "no store at '/no/such/dir/x.db'"),
        (("migrate", "--store", "sqlite:////no/such/dir/x.db"), {}, "directory '/no/such/dir' does not exist"),
        # reading commands neither create nor migrate a store (a typo left a database behind, and said "no jobs")
        (("jobs", "--store", "sqlite:///typo.db"), {}, "no store at 'typo.db': nothing has run with it yet"),
        (("status", "2f1d7c0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f"), {}, "no store at 'syncsim.db'"),
        (("jobs", "--store", "postgresql://u:hunter2@127.0.0.1:1/db"), {}, "postgresql"),
        (("status", "not-a-uuid"), {}, "job id must be a UUID"),
        (("jobs", "--user", "bob"), {}, "user id must be a UUID"),
        (("sync", "--user", "2f1d7c0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f"), {}, "has no Strava connection"),
        # the default user is --fake's demo athlete: its stored tokens are FakeStrava's, sent to Strava before
        (("sync",), {}, "a sync of Strava needs --user UUID (the syncsim user to sync); or use --fake N"),
        (("sync", "--fake", "5", "--strava-url", "http://127.0.0.1:1"), {}, "--strava-url does not go with --fake"),
        # a URL httpx cannot request: "Strava is down" for ever before
        (
            ("sync", "--user", "2f1d7c0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f", "--strava-url", "127.0.0.1:9"),
            {},
            "--strava-url must",
        ),
        (("worker", "--burst", "--strava-url", "127.0.0.1:9"), {}, "--strava-url must be an http:// or https:// URL"),
        (("tick", "--once", "--strava-url", "ftp://x"), {}, "--strava-url must be an http:// or https:// URL"),
        # numbers that ran with another meaning, or crashed, before (found by probing the CLI)
        (("token", "2f1d7c0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f", "--ttl", "nan"), {}, "--ttl must be > 0 and at most"),
        (("token", "2f1d7c0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f", "--ttl", "1e300"), {}, "(a year), got 1e+300"),
        (("token", "alice"), {"SYNCSIM_JWT_SECRET": ""}, "user id must be a UUID, got 'alice'"),
        (("tick", "--every", "nan"), {}, "--every must be a finite number of seconds > 0, got nan"),
        (("tick", "--limit", "-5"), {}, "--limit must be a finite number of seconds > 0, got -5.0"),
        (("serve", "--time-scale", "nan"), {}, "--time-scale must be a finite number > 0, got nan"),
        (("serve", "--strava-trace", "/no/such/dir/t.csv"), {}, "--strava-trace '/no/such/dir/t.csv': folder"),
        (("fake-strava", "--drop-share", "0.5"), {}, "--webhook-url and --drop-share need --churn RATE"),
        (("fake-strava", "--drop-share", "2", "--churn", "6"), {}, "--drop-share must be a share within 0..1, got 2"),
        (("fake-strava", "--latency", "nan"), {}, "--latency must be a finite number of seconds >= 0, got nan"),
        (("fake-strava", "--activities", "5,x"), {}, "--activities must be N or N1,N2,..."),
        (("fake-strava", "--athletes", "3", "--activities", "5,7"), {}, "2 counts for --athletes 3"),
        (("serve", "--deadline-margin", "-1"), {}, "--deadline-margin must be a finite number >= 0"),
        # usage errors too: the line says where the usage is, instead of printing it first
        (("simulate", "--athletes", "abc"), {}, "invalid int value: 'abc' (see syncsim simulate --help)"),
        (("no-such-command",), {}, "invalid choice: 'no-such-command'"),
        (("simulate", "--athletes", "0"), {}, "athletes must be a whole number >= 1, got 0"),
        # an output that cannot be written is said before the work, not after it
        (("simulate", "--athletes", "2", "--out", "/no/such/dir/jobs.csv"), {}, "folder '/no/such/dir' does not"),
        (("simulate", "--athletes", "2", "--out", "jobs.txt"), {}, "--out must end in .csv or .parquet"),
        # os.access says yes to root in /proc: the results were lost after the run (found by probing as root)
        (("simulate", "--athletes", "2", "--out", "/proc/jobs.csv"), {}, "folder '/proc' is not writable"),
        (("sync", "--fake", "10", "--trace", "/no/such/dir/t.csv"), {}, "--trace '/no/such/dir/t.csv': folder"),
        (("sync", "--fake", "10", "--quiet", "--trace", "/dev/full"), {}, "could not be written (No space left on"),
        # numbers a worker or server cannot run with (a lease of 0 would let a second worker run a running job)
        (("worker", "--burst", "--lease", "0"), {}, "lease_s must be a positive number of seconds, got 0.0"),
        (("worker", "--burst", "--poll", "nan"), {}, "poll_s must be a positive number of seconds, got nan"),
        (("worker", "--burst", "--grace", "-1"), {}, "grace_s must be a number of seconds >= 0, got -1.0"),
        (("worker", "--concurrency", "0"), {}, "argument --concurrency: must be a whole number >= 1, got '0'"),
        (("jobs", "--limit", "-1"), {}, "argument --limit: must be a whole number >= 1, got '-1'"),
        (("fake-strava", "--port", "99999"), {}, "--port: must be a whole number within 0..65535, got '99999'"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = syncsim(*args, cwd=tmp_path, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_tick_once_continues_the_jobs_nobody_polls(tmp_path: Path) -> None:
    import asyncio
    import uuid

    from syncsim.stores import open_store

    async def pending_jobs() -> list[uuid.UUID]:
        store = open_store(f"sqlite:///{tmp_path / 'syncsim.db'}")
        await store.migrate()
        ids = []
        for _ in range(3):
            job, _ = await store.create_job(
                user_id=uuid.uuid4(), type="demo", payload={"steps": 2, "step_s": 0.01}, max_attempts=3, now=0.0
            )
            ids.append(job.id)
        await store.close()
        return ids

    asyncio.run(pending_jobs())
    result = syncsim("tick", "--once", "--every", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "tick: continued 3, completed 3, failed 0" in result.stdout
    listing = syncsim("jobs", "--status", "completed", cwd=tmp_path)
    assert listing.stdout.count("  demo  ") == 3


def test_a_foreground_sync_waits_out_its_retry_instead_of_leaving_it(tmp_path: Path) -> None:
    """`syncsim sync` against a Strava that fails a whole attempt (its first page answered 500 four times in a
    row, while the probe the client then sends is answered: not an outage): the command says it waits for the
    next attempt, waits, and completes the sync (before, it printed "retrying in 2 s" and exited with the job
    pending). Strava is a FakeStrava on loopback, serving that page again once the attempt has failed."""
    import threading
    import time

    from syncsim.clock import SystemClock
    from syncsim.strava.fake import FakeStrava
    from syncsim.strava.fake.server import running_fake_strava

    fake = FakeStrava(clock=SystemClock(), seed=5)
    athlete = fake.add_athlete(activities=450)
    user = "2f1d7c0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f"
    with running_fake_strava(fake) as url:
        env = strava_env(fake, athlete)
        first = syncsim("sync", "--user", user, "--strava-url", url, "--quiet", cwd=tmp_path, env=env)
        assert first.returncode == 0 and "completed: 450 activities synced (full)" in first.stdout, first.stderr
        fake.faults.failing_pages = {(athlete.athlete_id, 1)}
        failed_before = fake.counts["errors_5xx"]
        stop = threading.Event()

        def back_up_after_one_attempt() -> None:  # the client tries a request 4 times per attempt
            while not stop.is_set() and fake.counts["errors_5xx"] - failed_before < 4:
                time.sleep(0.01)
            fake.faults.failing_pages = set()

        watcher = threading.Thread(target=back_up_after_one_attempt)
        watcher.start()
        try:
            again = syncsim("sync", "--user", user, "--strava-url", url, "--mode", "full", cwd=tmp_path, env=env)
        finally:
            stop.set()
            watcher.join()
    assert again.returncode == 0, again.stderr
    assert "completed: 450 activities synced (full)" in again.stdout and "450 stored" in again.stdout
    assert re.search(r"waiting \d+\.\d s for the next attempt \(attempt 1 of 3 failed, retrying in", again.stderr)
    assert fake.counts["errors_5xx"] - failed_before == 4
    status = syncsim("jobs", "--user", user, cwd=tmp_path)
    assert "completed  2/3" in status.stdout, status.stdout  # the second full sync took two attempts


def test_a_sync_cancelled_while_it_waits_ends_saying_so(tmp_path: Path) -> None:
    """Found by probing: a `syncsim sync` waiting out a spent rate-limit window kept waiting after its job was
    cancelled (``DELETE /api/sync/{id}``), then said "taken by another runner". It now looks at its job while it
    waits, ends at the cancel, and says how the job ended."""
    import asyncio
    import time
    import uuid

    from syncsim.clock import SystemClock
    from syncsim.jobs.model import Job
    from syncsim.stores import open_store
    from syncsim.strava.fake import FakeStrava
    from syncsim.strava.fake.server import running_fake_strava

    fake = FakeStrava(clock=SystemClock(), seed=11)
    athlete = fake.add_athlete(activities=450)
    user = uuid.UUID("5c7d1f0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f")
    store_url = f"sqlite:///{tmp_path / 'syncsim.db'}"

    async def waiting_job() -> Job | None:
        store = open_store(store_url)
        try:
            return next((job for job in await store.list_jobs(user_id=user) if job.status.value == "pending"), None)
        except Exception:  # not created yet
            return None
        finally:
            await store.close()

    async def cancel(job: Job) -> None:
        store = open_store(store_url)
        try:
            assert await store.cancel_job(job.id, user_id=user, reason="cancelled by the user", now=time.time())
        finally:
            await store.close()

    with running_fake_strava(fake) as url:
        env = strava_env(fake, athlete)
        first = syncsim("sync", "--user", str(user), "--strava-url", url, "--quiet", cwd=tmp_path, env=env)
        assert first.returncode == 0, first.stderr  # connected: the second sync starts with a job at once
        fake.spend_rate_limit(1_000)  # the day's reads spent by others: the sync waits for midnight
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAVA_", "SYNCSIM_"))} | env
        argv = [sys.executable, "-m", "syncsim.cli", "sync", "--user", str(user), "--strava-url", url, "--quiet"]
        process = subprocess.Popen(argv, cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            give_up = time.monotonic() + 60.0
            while (job := asyncio.run(waiting_job())) is None:
                assert process.poll() is None and time.monotonic() < give_up, process.poll()
                time.sleep(0.05)
            asyncio.run(cancel(job))
            out, err = process.communicate(timeout=30)  # not the window's end, minutes away
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 1, err.decode()
    assert out.decode().startswith("failed: 0 activities synced"), out.decode()
    assert err.decode().endswith("error: cancelled by the user\n"), err.decode()
    assert "taken by another runner" not in err.decode() and "Traceback" not in err.decode()


def test_connecting_under_a_spent_rate_limit_says_when_to_come_back(tmp_path: Path) -> None:
    """Found by probing: connecting an athlete reads GET /athlete, and under a spent window the command waited
    silently (a quarter hour, or until midnight) before the sync had even started. Now it says when to retry."""
    from syncsim.clock import SystemClock
    from syncsim.strava.fake import FakeStrava
    from syncsim.strava.fake.server import running_fake_strava

    fake = FakeStrava(clock=SystemClock(), seed=13)
    athlete = fake.add_athlete(activities=50)
    user = "7e9f1f0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f"
    with running_fake_strava(fake) as url:
        fake.spend_rate_limit(1_000)  # the day's reads spent by others: the next window opens at midnight
        done = syncsim("sync", "--user", user, "--strava-url", url, cwd=tmp_path, env=strava_env(fake, athlete))
    assert done.returncode == 2, done.stderr
    assert re.fullmatch(
        rf"syncsim sync: error: cannot connect user {user} now: Strava's rate limit for this app is spent until "
        r"\d\d:\d\d:\d\d UTC; run the sync again then\n",
        done.stderr,
    ), done.stderr


def test_a_failed_sync_says_what_it_stored_before_it_failed(tmp_path: Path) -> None:
    """Found by probing: after a failure the summary said "0 activities synced" though pages had been stored
    (a failed job has no result; its progress has the counts)."""
    from syncsim.clock import SystemClock
    from syncsim.strava.fake import FakeStrava
    from syncsim.strava.fake.server import running_fake_strava

    fake = FakeStrava(clock=SystemClock(), seed=12)
    athlete = fake.add_athlete(activities=450)
    fake.faults.failing_pages = {(athlete.athlete_id, 2)}  # for good: every attempt fails on the second page
    user = "6d8e1f0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f"
    with running_fake_strava(fake) as url:
        env = strava_env(fake, athlete)
        done = syncsim("sync", "--user", user, "--strava-url", url, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    assert re.search(r"^failed: 200 activities synced \(full\) in 1 page\(s\)", done.stdout), done.stdout


def _default_sigint() -> None:
    """In the child: Ctrl-C's default, as in a terminal (a shell's background job, a CI runner, starts with it
    ignored, and Python then installs no KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_leaves_the_sync_pending_for_an_immediate_rerun_to_finish(
    tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    """Found by probing: Ctrl-C left the job ``running`` under the interrupted run's lease: a rerun at once was
    refused ("already has a running sync ... try again when it ends") for 30 s, though nothing ran it, and the
    lapse was then counted as a crash; SIGTERM killed the sync with the same result. Now the lease is given back:
    the job waits ``pending``, and a rerun continues it from its checkpoint and stores every activity once."""
    import asyncio
    import time
    import uuid

    from syncsim.clock import SystemClock
    from syncsim.jobs.model import Job
    from syncsim.stores import open_store
    from syncsim.strava.fake import FakeStrava
    from syncsim.strava.fake.server import running_fake_strava

    fake = FakeStrava(clock=SystemClock(), seed=9, latency=0.2)  # 30 pages: 6 s, for the interrupt to land
    athlete = fake.add_athlete(activities=6000)
    user = "4b6c1f0e-3b7a-4f7e-9d3c-1c2b3a4d5e6f"
    store_url = f"sqlite:///{tmp_path / 'syncsim.db'}"

    async def read_job() -> tuple[Job | None, int]:
        store = open_store(store_url)
        try:
            [job] = await store.list_jobs(user_id=uuid.UUID(user)) or [None]
            return job, await store.count_activities(uuid.UUID(user))
        except Exception:  # not created yet
            return None, 0
        finally:
            await store.close()

    with running_fake_strava(fake) as url:
        env = strava_env(fake, athlete)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAVA_", "SYNCSIM_"))} | env
        argv = [sys.executable, "-m", "syncsim.cli", "sync", "--user", user, "--strava-url", url, "--quiet"]
        process = subprocess.Popen(
            argv, cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint
        )
        give_up = time.monotonic() + 60.0
        while True:
            _, stored = asyncio.run(read_job())
            if stored >= 400:
                break
            assert process.poll() is None and time.monotonic() < give_up, (stored, process.poll())
            time.sleep(0.02)
        process.send_signal(stop)
        _, err = process.communicate(timeout=20)
        interrupted, stored = asyncio.run(read_job())
        rerun = syncsim("sync", "--user", user, "--strava-url", url, "--quiet", cwd=tmp_path, env=env)
        finished, total = asyncio.run(read_job())
    assert process.returncode == code, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert interrupted is not None and 400 <= stored < 6000, (interrupted, stored)
    assert interrupted.status.value == "pending" and interrupted.locked_by is None, interrupted
    assert "interrupted (Ctrl-C or SIGTERM)" in (interrupted.error or "")
    assert rerun.returncode == 0, rerun.stderr
    assert "completed: " in rerun.stdout and "6000 stored" in rerun.stdout, rerun.stdout
    assert finished is not None and finished.id == interrupted.id, finished
    assert finished.crashes == 0 and finished.attempts == 1, finished
    assert total == len(fake.activity_ids(athlete.athlete_id)) == 6000


def test_a_port_in_use_is_one_line_before_anything_else(tmp_path: Path) -> None:
    """Found by probing: ``serve`` printed uvicorn's start-up and error lines and exited 3; ``fake-strava`` printed
    every athlete's tokens and curl lines first."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        served = syncsim("serve", "--port", port, cwd=tmp_path, env={"SYNCSIM_JWT_SECRET": "s" * 40})
        faked = syncsim("fake-strava", "--port", port, cwd=tmp_path)
    for result, command in ((served, "serve"), (faked, "fake-strava")):
        assert result.returncode == 2, result.stderr
        assert (
            result.stderr.strip()
            == f"syncsim {command}: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        )
        assert result.stdout == ""


def test_the_tick_outlives_a_store_call_longer_than_its_limit(tmp_path: Path) -> None:
    """Found by probing: a job's write that waited for another process's lock past the tick's limit got the
    tick's invocation killed, and `syncsim tick --every` exited ("invocation 2 was killed"), leaving nothing to
    move resumable jobs. It skips that tick, says so in one line, and ticks on."""
    import asyncio
    import time
    import uuid

    from syncsim.job_types import default_handlers
    from syncsim.jobs.model import Job
    from syncsim.jobs.runner import JobRunner
    from syncsim.stores import open_store
    from tests.support.sqlite import write_lock_held

    path = tmp_path / "syncsim.db"
    url = f"sqlite:///{path}"

    async def submit(steps: int) -> uuid.UUID:
        store = open_store(url)
        try:
            await store.migrate()
            runner = JobRunner(store, handlers=default_handlers())
            job, _ = await runner.submit(uuid.uuid4(), {"steps": steps, "step_s": 0.1}, type="demo")
            return job.id
        finally:
            await store.close()

    async def read(job_id: uuid.UUID) -> Job | None:
        store = open_store(url)
        try:
            return await store.get_job(job_id)
        finally:
            await store.close()

    def wait_for(job_id: uuid.UUID, what: str, done: Callable[[Job], bool]) -> Job:
        give_up = time.monotonic() + 30.0
        while (job := asyncio.run(read(job_id))) is None or not done(job):
            assert tick.poll() is None, f"the tick exited: {tick.communicate()[1].decode()}"
            assert time.monotonic() < give_up, f"{what}: {job}"
            time.sleep(0.05)
        return job

    long_job = asyncio.run(submit(steps=100))  # saves its progress every step: a write every 0.1 s
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAVA_", "SYNCSIM_"))}
    argv = [sys.executable, "-m", "syncsim.cli", "tick", "--store", url, "--every", "3", "--limit", "3"]
    tick = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(long_job, "the long job to make progress", lambda job: job.progress.get("steps_done", 0) >= 1)
        with write_lock_held(str(path)):
            time.sleep(5.0)  # past the tick's limit: its invocation is killed while the write waits
        after = asyncio.run(submit(steps=1))
        done = wait_for(after, "a job submitted after the lock to finish", lambda job: job.is_final)
    finally:
        tick.terminate()
        _, err = tick.communicate(timeout=20)
    assert done.status.value == "completed", done
    lines = err.decode().splitlines()
    assert any("was killed" in line and "skipped, the next tick in 3 s" in line for line in lines), lines
    assert "Traceback" not in err.decode(), err.decode()
