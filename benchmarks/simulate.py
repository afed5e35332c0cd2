"""Benchmark the reference sweep: wall time, simulated Strava requests per wall second, peak memory.

    python benchmarks/simulate.py                 # the reference sweep (1,000 athletes x 2 platforms x 3 strategies)
    python benchmarks/simulate.py --athletes 200  # its first 200 athletes
    python benchmarks/simulate.py --profile       # cProfile of one run (hobby/resumable), top functions

Targets: the full sweep in <= 60 s on a 2-core machine, <= 2 GB. Timings are noisy on a shared box.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import resource
import sqlite3
import time
from datetime import datetime

import orjson

from syncsim.sim.compare import REFERENCE_SWEEP, reference_sweep
from syncsim.sim.run import simulate
from syncsim.sim.workload import Workload

#: The machine check: fixed work that runs no syncsim code (so it does not get faster when syncsim does), timed
#: in CPU seconds before and after the sweep. On this shared machine it took 0.72-1.62 s within minutes on
#: 2026-11-30; it says how fast the machine was meanwhile, and the sweep is also given in checks. It runs in one
#: process: it does not see what slows two busy processes down together (the sweep took 55.5 s once between
#: checks of 0.87 and 0.83 s, and 40-47 s in other runs at checks of 0.72-0.96 s).
CHECK_PAGES = 600
#: The check's CPU time on this 2-core machine on 2026-11-30 (the lowest of the day).
REFERENCE_CHECK_S = 0.72
TARGET_S = 60.0


def machine_check(*, repeat: int = 3) -> float:
    """CPU seconds of the fixed work, the best of ``repeat``: what a sync does, without syncsim's code.

    Each of ``CHECK_PAGES`` pages parses 200 JSON activities, reads their times, serializes them back and
    inserts them into an indexed in-memory SQLite table in a transaction; 20,000 asyncio tasks each sleep once.
    """
    items = [
        {"id": i, "name": f"Activity {i}", "distance": i * 1.5, "start_date": f"2020-01-{1 + i % 28:02d}T06:00:00Z"}
        for i in range(200)
    ]
    body = orjson.dumps(items)
    best = float("inf")
    for _ in range(repeat):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, user TEXT NOT NULL, at REAL NOT NULL, raw TEXT)")
        conn.execute("CREATE INDEX t_user_at ON t (user, at DESC)")
        started = time.process_time()
        for page in range(CHECK_PAGES):
            user = f"athlete-{page % 97:05d}"
            rows = [
                (
                    page * 1000 + d["id"],
                    user,
                    datetime.fromisoformat(d["start_date"]).timestamp(),
                    orjson.dumps(d).decode(),
                )
                for d in orjson.loads(body)
            ]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        asyncio.run(_sleepers(20_000))
        best = min(best, time.process_time() - started)
        conn.close()
    return best


async def _sleepers(n: int) -> None:
    await asyncio.gather(*(asyncio.sleep(0.001 * (i % 7)) for i in range(n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=None, help="only the first N athletes of the workload")
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="profile one hobby/resumable run instead")
    args = parser.parse_args()
    if args.profile:
        workload = Workload.named(REFERENCE_SWEEP["workload"]).head(args.athletes or 200)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        result = simulate(workload=workload, platform="hobby", strategy="resumable", rate_limits="approved")
        profiler.disable()
        print(f"one run: {time.perf_counter() - started:.1f} s wall, {result.params['strava_requests']} requests")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    before = machine_check()
    started = time.perf_counter()
    cpu = time.process_time()
    sweep = reference_sweep(athletes=args.athletes, processes=args.processes, keep_events=False)
    wall = time.perf_counter() - started
    parent_cpu = time.process_time() - cpu
    after = machine_check()
    requests = sum(run["strava_requests"] for run in sweep.params["runs"])
    invocations = sum(run["invocations"] for run in sweep.params["runs"])
    activities = sum(run["activities"] for run in sweep.params["runs"])
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    athletes = sweep.params["runs"][0]["athletes"]
    print(
        f"reference sweep: {athletes} athletes x {len(sweep.params['runs'])} runs, {sweep.params['workers']} processes"
    )
    print(f"wall time            {wall:8.1f} s   (target <= {TARGET_S:.0f} s for 1,000 athletes)")
    print(f"activities served    {activities:8d}")
    print(f"Strava requests      {requests:8d}   ({requests / wall:,.0f} simulated requests per wall second)")
    print(f"API requests         {invocations:8d}   (the browsers' submits and polls, through the real app)")
    print(f"peak memory          {max(peak_self, peak_child):8.0f} MB (largest process; parent {peak_self:.0f} MB)")
    print(f"parent CPU           {parent_cpu:8.1f} s")
    check = (before + after) / 2
    print(
        f"machine check        {before:8.2f} s before, {after:.2f} s after   (fixed work, no syncsim code, best of 3; "
        f"{REFERENCE_CHECK_S} s at best on 2026-11-30: above that, this machine is slower now)"
    )
    target_checks = TARGET_S / REFERENCE_CHECK_S
    print(
        f"sweep in checks      {wall / check:8.1f}     (wall time / mean check; the {TARGET_S:.0f} s target at the "
        f"best check is {target_checks:.1f}; at this run's speed it is {target_checks * check:.0f} s)"
    )
    print()
    print("runs (CPU and wall seconds of each, in the process that ran it):")
    for run in sweep.params["runs"]:
        print(
            f"  {run['platform']:>6} {run['strategy']:<10} pid {run['run_pid']:>7}  cpu {run['run_cpu_s']:6.1f} s"
            f"  wall {run['run_wall_s']:6.1f} s  {run['invocations']:>7} API requests"
            f"  {run['strava_requests']:>5} Strava requests"
        )
    print()
    print(sweep.scorecard().to_string())


if __name__ == "__main__":
    main()
