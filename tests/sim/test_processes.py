"""A sweep's worker processes, as a script's user meets them: ``spawn`` re-runs the script's top level in each, so
a script that starts a sweep there without ``if __name__ == "__main__":`` gets one line saying so, not a
``BrokenProcessPool`` and a ``freeze_support`` traceback from every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncsim.sim.compare import UNGUARDED_SCRIPT

REPO = Path(__file__).resolve().parents[2]

UNGUARDED = """\
import syncsim

sweep = syncsim.reference_sweep(athletes=2, launch_day=False, processes=2)
print("finished")
"""


def test_a_sweep_at_an_unguarded_scripts_top_level_fails_in_one_line(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(UNGUARDED)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "finished" not in done.stdout
    assert done.stderr.rstrip().splitlines()[-1] == f"syncsim.errors.InvalidInput: {UNGUARDED_SCRIPT}"
    # The script's own traceback, ending in that line; none from the workers, no BrokenProcessPool chained in.
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert "freeze_support" not in done.stderr
    assert "BrokenProcessPool" not in done.stderr


# Six runs of several CPU seconds each over two processes: long enough that a sweep waiting for its queued runs
# after an interrupt could not end within the test's bound.
INTERRUPTED_SWEEP = """\
import syncsim

if __name__ == "__main__":
    try:
        syncsim.compare(
            athletes=60, platforms=("hobby", "pro"), strategies=("worker",), seeds=(0, 1, 2), processes=2,
            rate_limits="approved", detail=True, keep_events=False,
        )
        print("finished")
    except KeyboardInterrupt:
        print("interrupted")
"""

# A Jupyter cell: simulate() called from code running on an event loop, so the run goes to a helper thread.
INTERRUPTED_CELL = """\
import asyncio, threading
import syncsim

async def cell():
    try:
        syncsim.simulate(athletes=60, strategy="worker", rate_limits="approved", detail=True, keep_events=False)
        print("finished")
    except KeyboardInterrupt:
        helpers = [t.name for t in threading.enumerate() if t.name == "syncsim-virtual-time"]
        print("interrupted; helper threads left:", helpers)

asyncio.new_event_loop().run_until_complete(cell())
"""


def _interrupt(tmp_path: Path, code: str, *, group: bool) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``code`` in a process group of its own, send SIGINT after 4 s (to the group, as a terminal's Ctrl-C
    does, or to the process alone, as Jupyter's interrupt does); its output, and how long it took to exit after
    the signal. The group's id is the process's pid (``args[-1]`` of the result)."""
    script = tmp_path / "interrupted.py"
    script.write_text(code)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A shell's background job starts with SIGINT ignored, and Python then installs no KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(4.0)
        sent = time.monotonic()
        if group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess([*process.args, process.pid], process.returncode, stdout, stderr), took


def _group_gone(pgid: int) -> bool:
    """Whether every process of the group has exited (a sweep's worker processes included)."""
    for _ in range(100):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("group", [True, False], ids=["terminal-ctrl-c", "jupyter-interrupt"])
def test_an_interrupted_sweep_stops_its_runs_at_once(tmp_path: Path, group: bool) -> None:
    done, took = _interrupt(tmp_path, INTERRUPTED_SWEEP, group=group)
    assert done.stdout.split() == ["interrupted"], (done.stdout, done.stderr)
    # Not after the queued runs (tens of seconds of work): the runs under way were stopped, quietly.
    assert took < 15, took
    assert _group_gone(done.args[-1]), "a worker process outlived the interrupted sweep"
    assert "Traceback" not in done.stderr and "was never retrieved" not in done.stderr, done.stderr


def test_an_interrupted_run_in_a_running_loop_stops_its_helper_thread(tmp_path: Path) -> None:
    done, took = _interrupt(tmp_path, INTERRUPTED_CELL, group=False)
    assert done.stdout.strip() == "interrupted; helper threads left: []", (done.stdout, done.stderr)
    assert took < 15, took
    assert "Traceback" not in done.stderr and "was never retrieved" not in done.stderr, done.stderr
