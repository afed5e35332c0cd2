"""``syncsim worker`` as real OS processes: killed mid-job, stopped by SIGTERM, and the jobs they leave behind.

Each worker is ``python -m syncsim.cli worker`` on the test's store (the ``store`` fixture: a SQLite file, and a
fresh PostgreSQL database); the test watches the store, never the worker's internals. Every wait is a bounded
poll of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncsim.jobs.handlers import register_builtin_handlers
from syncsim.jobs.model import Job, JobStatus
from syncsim.jobs.runner import HandlerRegistry, JobRunner
from syncsim.jobs.worker import STOPPED_REASON
from syncsim.stores import Store, open_store
from tests.support.jobs import wait_for_job

#: Short leases so that a dead worker's job comes back within a second.
LEASE_S = 1.0
#: How often an idle worker looks for due jobs (s): small, so that nothing waits on the poll.
POLL_S = 0.05
#: How often the test reads the job rows (s).
WATCH_S = 0.02
#: The worker's grace period after SIGTERM (Worker's default; the CLI does not change it).
GRACE_S = 5.0
#: Bounds for process start-up and teardown on a loaded machine.
START_TIMEOUT_S = 15.0
EXIT_SLACK_S = 5.0


@dataclass
class Workers:
    """Starts ``syncsim worker`` processes on one store and kills any still alive at teardown."""

    store_url: str
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(self, *options: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncsim.cli", "worker", "--store", self.store_url,
            "--lease", str(LEASE_S), "--poll", str(POLL_S), *options,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self.processes.append(process)
        return process

    async def kill_all(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


@pytest.fixture
async def workers(store_url: str) -> AsyncIterator[Workers]:
    pool = Workers(store_url)
    try:
        yield pool
    finally:
        await pool.kill_all()


async def _submit(store: Store, steps: int, step_s: float) -> Job:
    runner = JobRunner(store, handlers=register_builtin_handlers(HandlerRegistry()))
    job, created = await runner.submit(uuid.uuid4(), {"steps": steps, "step_s": step_s}, type="demo")
    assert created
    return job


async def _wait_for(store: Store, job_id: uuid.UUID, what: str, ok: Callable[[Job], bool], timeout: float) -> Job:
    return await wait_for_job(store, job_id, ok, timeout_s=timeout, what=what, every_s=WATCH_S)


async def _exit_code(process: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"worker {process.pid} did not exit within {timeout:g} s") from None
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


def _steps(job: Job) -> int:
    return int(job.progress.get("steps_done", 0))


async def test_killed_worker_job_is_resumed_from_its_checkpoint_by_another_worker(
    store: Store, workers: Workers
) -> None:
    steps, step_s, kill_after = 40, 0.05, 8
    job = await _submit(store, steps, step_s)
    others = [await _submit(store, 2, 0.01) for _ in range(2)]

    first = await workers.start("--concurrency", "1")
    at_kill = await _wait_for(
        store, job.id, f">= {kill_after} steps", lambda j: _steps(j) >= kill_after, START_TIMEOUT_S
    )
    first.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    killed = await store.get_job(job.id)
    assert killed is not None and killed.status is JobStatus.RUNNING and killed.runs == 1
    checkpoint = _steps(killed)
    assert kill_after <= checkpoint < steps

    # Watch every step the second run writes: a run that restarted from 0 would write steps_done = 1, 2, ...
    # (one every 50 ms for the whole second and more it would need to climb back to the checkpoint).
    seen: list[tuple[int, str | None]] = []

    async def watch() -> None:
        while True:
            row = await store.get_job(job.id)
            assert row is not None
            seen.append((_steps(row), row.locked_by))
            await asyncio.sleep(WATCH_S)

    watcher = asyncio.ensure_future(watch())
    try:
        second = await workers.start("--burst", "--concurrency", "2")
        code, output = await _exit_code(second, timeout=START_TIMEOUT_S + LEASE_S + steps * step_s)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert code == 0, output

    done = await store.get_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert (done.runs, done.attempts, done.crashes) == (2, 1, 1)  # the kill was a crash, not a spent attempt
    assert done.result == {"steps_done": steps}
    assert done.locked_by is None and done.locked_until is None
    # It resumed: the step count never went back below the killed run's checkpoint.
    assert seen and min(step for step, _ in seen) >= checkpoint, seen
    assert any(owner not in (None, at_kill.locked_by) for _, owner in seen), "the second worker never ran it"
    # Nothing else ran twice, and no job appeared.
    for other in others:
        row = await store.get_job(other.id)
        assert row is not None and row.status is JobStatus.COMPLETED
        assert (row.runs, row.attempts) == (1, 1)
    assert len(await store.list_jobs(limit=100)) == 3
    assert "3 run(s), 3 completed" in output


async def test_sigterm_stops_claiming_finishes_within_grace_and_gives_the_rest_back(
    sqlite_url: str, pg_url: str
) -> None:
    # The same scenario on both stores at once: their grace periods (5 s each) overlap.
    async with asyncio.TaskGroup() as group:
        for url in (sqlite_url, pg_url):
            group.create_task(_sigterm_scenario(url))


async def _sigterm_scenario(store_url: str) -> None:
    store = open_store(store_url)
    workers = Workers(store_url)
    try:
        await store.migrate()
        await _sigterm_stops_claiming_and_leaves_the_rest(store, workers)
    finally:
        await workers.kill_all()
        await store.close()


async def _sigterm_stops_claiming_and_leaves_the_rest(store: Store, workers: Workers) -> None:
    where = store.url
    # Outlives the grace period (>= 5.9 s left at SIGTERM): cut off, and given back. The short one finishes
    # within it: allowed to complete.
    long_job = await _submit(store, 60, 0.1)
    short_job = await _submit(store, 10, 0.1)
    waiting = [await _submit(store, 1, 0.01) for _ in range(2)]

    first = await workers.start("--concurrency", "2")
    await _wait_for(store, long_job.id, "the long job to start", lambda j: _steps(j) >= 1, START_TIMEOUT_S)
    await _wait_for(store, short_job.id, "the short job to start", lambda j: _steps(j) >= 1, START_TIMEOUT_S)
    first.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code, output = await _exit_code(first, timeout=GRACE_S + EXIT_SLACK_S)
    took = time.monotonic() - signalled
    assert code == 0, (where, output)
    # It waited for its running jobs (for the long one, the whole grace period), then stopped.
    assert GRACE_S - 0.5 <= took <= GRACE_S + EXIT_SLACK_S, (where, took)

    short = await store.get_job(short_job.id)
    assert short is not None and short.status is JobStatus.COMPLETED and short.runs == 1, (where, short)
    # Found by probing: the cut job stayed `running` under the stopped worker's lease, waited for it to lapse,
    # and was then counted a crash (ten deploys during one long sync would have failed it). It is given back:
    # pending, due at once, its attempt refunded, continued from its checkpoint by the next runner.
    assert "1 given back unfinished" in output, (where, output)
    cut = await store.get_job(long_job.id)
    assert cut is not None and cut.status is JobStatus.PENDING and cut.locked_by is None, (where, cut)
    assert (cut.attempts, cut.runs, cut.crashes) == (0, 1, 0), (where, cut)
    assert cut.error == STOPPED_REASON, (where, cut)
    assert 0 < _steps(cut) < 60, (where, cut)
    # After SIGTERM the slot the short job freed claimed nothing: the waiting jobs are pending, untouched.
    for job in waiting:
        row = await store.get_job(job.id)
        assert row is not None and row.status is JobStatus.PENDING, (where, row)
        assert (row.attempts, row.runs, row.started_at) == (0, 0, None), (where, row)

    second = await workers.start("--burst", "--concurrency", "2")
    code, output = await _exit_code(second, timeout=START_TIMEOUT_S + 60 * 0.1)  # no lease to wait out
    assert code == 0, (where, output)
    resumed = await store.get_job(long_job.id)
    assert resumed is not None and resumed.status is JobStatus.COMPLETED, (where, resumed)
    assert (resumed.runs, resumed.attempts, resumed.crashes) == (2, 1, 0), (where, resumed)
    assert resumed.result == {"steps_done": 60}
    for job in waiting:
        row = await store.get_job(job.id)
        assert row is not None and row.status is JobStatus.COMPLETED, (where, row)
        assert (row.runs, row.attempts) == (1, 1), (where, row)


async def test_a_worker_whose_lease_was_taken_over_does_not_count_the_others_completion(tmp_path: Path) -> None:
    """Found by probing (``kill -STOP`` a worker past its lease, then ``-CONT``): the paused worker reported the
    job completed, as did the worker that took it over: 6 completions for 4 jobs. The row was right; the count
    was not. A worker whose job another runner claimed since counts it as taken over."""
    from syncsim.jobs.handlers import demo_handler
    from syncsim.jobs.worker import Worker

    url = f"sqlite:///{tmp_path / 'takeover.db'}"
    paused_store, other_store = open_store(url), open_store(url)
    await paused_store.migrate()

    async def paused_demo(ctx: Any) -> dict[str, Any]:
        time.sleep(3 * LEASE_S)  # the whole process stops (SIGSTOP, a swap storm): no lease renewal either
        return await demo_handler(ctx)

    paused_handlers = HandlerRegistry()
    paused_handlers.register("demo", paused_demo)
    paused = Worker(JobRunner(paused_store, handlers=paused_handlers, lease_s=LEASE_S), burst=True, poll_s=POLL_S)
    other_runner = JobRunner(other_store, handlers=register_builtin_handlers(HandlerRegistry()), lease_s=LEASE_S)
    job, _ = await other_runner.submit(uuid.uuid4(), {"steps": 1, "step_s": 0.01}, type="demo")

    async def take_over() -> Any:
        while (await _read(url, job.id)).status is not JobStatus.RUNNING:  # the paused worker claims it first
            await asyncio.sleep(WATCH_S)
        return await Worker(other_runner, burst=True, poll_s=POLL_S).run()

    def other_worker() -> Any:  # its own thread and loop: it runs while the paused one's loop is stopped
        return asyncio.run(take_over())

    try:
        other = asyncio.get_running_loop().run_in_executor(None, other_worker)
        paused_stats = await paused.run()
        other_stats = await other
    finally:
        await paused_store.close()
        await other_store.close()
    row = await _read(url, job.id)
    assert row.status is JobStatus.COMPLETED and row.runs == 2, row
    assert (paused_stats.jobs_run, paused_stats.completed, paused_stats.taken_over) == (1, 0, 1), paused_stats
    assert (other_stats.completed, other_stats.taken_over) == (1, 0), other_stats


async def _read(url: str, job_id: uuid.UUID) -> Job:
    store = open_store(url)
    try:
        row = await store.get_job(job_id)
    finally:
        await store.close()
    assert row is not None
    return row


async def test_a_worker_without_a_tick_still_reconciles(tmp_path: Path) -> None:
    """Found by probing end to end: only the tick submitted reconciles and re-reads of webhook events left without
    a job, so a deployment with a worker and no tick never repaired a lost event. ``syncsim worker`` now does
    what the tick does before it continues jobs: a connected athlete never listed to the end is reconciled."""
    from syncsim.clock import SystemClock
    from syncsim.strava.fake import FakeStrava
    from syncsim.strava.fake.server import running_fake_strava

    url = f"sqlite:///{tmp_path / 'upkeep.db'}"
    store = open_store(url)
    await store.migrate()
    fake = FakeStrava(clock=SystemClock(), seed=3)
    athlete = fake.add_athlete(activities=450)
    user = uuid.uuid4()
    await store.save_tokens(user, athlete.tokens(), now=time.time())
    try:
        with running_fake_strava(fake) as strava_url:
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "syncsim.cli", "worker", "--store", url, "--strava-url", strava_url,
                "--poll", str(POLL_S),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                give_up = time.monotonic() + START_TIMEOUT_S
                while await store.count_activities(user) < 450:
                    assert worker.returncode is None and time.monotonic() < give_up, "no reconcile ran"
                    await asyncio.sleep(WATCH_S)
            finally:
                worker.send_signal(signal.SIGTERM)
                output, _ = await asyncio.wait_for(worker.communicate(), GRACE_S + EXIT_SLACK_S)
        [job] = await store.list_jobs(user_id=user)
    finally:
        await store.close()
    assert job.type == "strava_sync" and job.payload == {"mode": "reconcile"} and job.status is JobStatus.COMPLETED
    assert worker.returncode == 0, output.decode()
