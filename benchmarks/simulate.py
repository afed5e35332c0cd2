"""Benchmark the reference sweep: wall time, simulated Strava requests per wall second, peak memory — side by
side with another commit of syncsim, in the same run.

    python benchmarks/simulate.py                         # this checkout's sweep, once
    python benchmarks/simulate.py --against e977c24       # alternate with that commit, print both and the ratio,
                                                          # then this checkout's full sweep once
    python benchmarks/simulate.py --against e977c24 --against aed6065   # several commits, each against the first
    python benchmarks/simulate.py --athletes 200          # the sweep's first 200 athletes
    python benchmarks/simulate.py --profile               # cProfile of one run (hobby/resumable), top functions

Targets: the full sweep in <= 60 s on a 2-core machine, <= 2 GB per process. Each sweep runs in a fresh Python
process (``-X importtime`` off, the same interpreter for both sides); with ``--against`` the two sides alternate
``--repeat`` times, so a machine that slows down meanwhile slows both; every side runs the same work
(:data:`COMPARABLE`: before the tick and the launch day, the sweep was the approved-limits runs alone; a commit
that predates an option simply lacks the work it turns off). With several ``--against`` commits, every side
is also printed as a ratio to the first one: a series of commits itemizes where a difference came from. Each
other commit is checked out with ``git worktree`` into a temporary folder and imported from there.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 60.0

#: What each side runs, in its own process: the same public entry point exists in every layout of syncsim.
_CHILD = """
import inspect, json, resource, sys, time
from syncsim.sim.compare import REFERENCE_SWEEP, reference_sweep
athletes, options = json.loads(sys.argv[1]), json.loads(sys.argv[2])
# An option this commit's sweep does not know (it predates the feature the option turns off) is left out.
known = set(inspect.signature(reference_sweep).parameters) | set(REFERENCE_SWEEP)
options = {k: v for k, v in options.items() if k in known}
started = time.perf_counter()
sweep = reference_sweep(athletes=athletes, keep_events=False, **options)
wall = time.perf_counter() - started
runs = sweep.params["runs"]
print(json.dumps({
    "wall_s": wall,
    "athletes": runs[0]["athletes"],
    "runs": len(runs),
    "workers": sweep.params["workers"],
    "strava_requests": sum(r["strava_requests"] for r in runs),
    "api_requests": sum(r["invocations"] for r in runs),
    "activities": sum(r["activities"] for r in runs),
    "peak_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024,
    "per_run": [[r["platform"], r["strategy"], r.get("run_cpu_s"), r.get("run_wall_s")] for r in runs],
    "scorecard": sweep.scorecard().reset_index().to_dict("records"),
}))
"""


#: What this checkout's sweep runs when compared with another commit's: the same work as before the tick and the
#: launch day existed (no tick for resumable, no default-limits launch), so the ratio compares like with like.
COMPARABLE = {"launch_day": False, "strategy_options": {}}


def run_sweep(source: Path, athletes: int | None, options: dict[str, object] | None = None) -> dict[str, object]:
    """One sweep in a fresh process importing syncsim from ``source``; its figures."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(athletes), json.dumps(options or {})],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def checkout(ref: str, into: Path) -> Path:
    """``ref`` of this repository as a work tree in ``into`` (removed by the caller's temp dir)."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), ref], check=True, capture_output=True
    )
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=None, help="only the first N athletes of the workload")
    parser.add_argument(
        "--against", metavar="REF", action="append", help="a commit to run side by side (git ref; repeatable)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="sweeps per side with --against (default 2)")
    parser.add_argument("--profile", action="store_true", help="profile one hobby/resumable run instead")
    args = parser.parse_args()
    if args.profile:
        from syncsim.sim.compare import REFERENCE_SWEEP
        from syncsim.sim.run import simulate
        from syncsim.sim.workload import Workload

        workload = Workload.named(REFERENCE_SWEEP["workload"]).head(args.athletes or 200)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        result = simulate(workload=workload, platform="hobby", strategy="resumable", rate_limits="approved")
        profiler.disable()
        print(f"one run: {time.perf_counter() - started:.1f} s wall, {result.params['strava_requests']} requests")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return

    if args.against is None:
        this = run_sweep(ROOT, args.athletes)
        print(f"reference sweep: {this['athletes']} athletes x {this['runs']} runs, {this['workers']} processes")
        print(f"wall time            {this['wall_s']:8.1f} s   (target <= {TARGET_S:.0f} s for 1,000 athletes)")
        _figures(this)
        return

    refs: list[str] = args.against
    with tempfile.TemporaryDirectory(prefix="syncsim-bench-") as tmp:
        sides: list[tuple[str, Path]] = [("this", ROOT)]
        try:
            for i, ref in enumerate(refs):
                sides.append((ref, checkout(ref, Path(tmp) / f"other{i}")))
            walls: dict[str, list[float]] = {name: [] for name, _ in sides}
            last: dict[str, dict[str, object]] = {}
            for i in range(args.repeat):
                order = sides if i % 2 == 0 else sides[::-1]
                for name, source in order:
                    result = run_sweep(source, args.athletes, COMPARABLE)
                    walls[name].append(float(result["wall_s"]))  # type: ignore[arg-type]
                    last[name] = result
                    print(f"  sweep {i + 1} {name:>12}: {result['wall_s']:6.1f} s wall", flush=True)
        finally:
            for _name, source in sides[1:]:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(source)], check=False)
    medians = {name: statistics.median(values) for name, values in walls.items()}
    base = refs[0]
    print()
    print(f"reference sweep: {last['this']['athletes']} athletes x {last['this']['runs']} runs")
    shown = [name for name, _ in [*sides[1:], sides[0]]]  # the commits in the order given, this checkout last
    for name in shown:
        label = "this checkout" if name == "this" else name
        runs = ", ".join(f"{w:.1f}" for w in walls[name])
        ratio = medians[name] / medians[base]
        print(f"{label:<20} median {medians[name]:6.1f} s  {ratio:5.2f}x {base}  (runs: {runs})")
    print(f"ratio this/{base}: {medians['this'] / medians[base]:.2f}x   (target <= 1.25x)")
    if len(refs) > 1:
        print()
        print("CPU seconds of each run, per side (the last sweep of each):")
        print(f"  {'run':<18}" + "".join(f"{name[:10]:>11}" for name in shown))
        cpu = {name: {(r[0], r[1]): r[2] for r in last[name]["per_run"]} for name in shown}  # type: ignore[attr-defined]
        for platform, strategy, *_ in last["this"]["per_run"]:  # type: ignore[attr-defined]
            cells = [cpu[name].get((platform, strategy)) for name in shown]
            print(f"  {platform + ' ' + strategy:<18}" + "".join(f"{c:11.1f}" if c else f"{'-':>11}" for c in cells))
    print()
    _figures(last["this"])
    full = run_sweep(ROOT, args.athletes)
    print()
    print("this checkout's sweep as `syncsim simulate` runs it (resumable with its tick, the default-limits launch):")
    print(f"wall time            {full['wall_s']:8.1f} s   (target <= {TARGET_S:.0f} s)")


def _figures(result: dict[str, object]) -> None:
    wall = float(result["wall_s"])  # type: ignore[arg-type]
    requests = int(result["strava_requests"])  # type: ignore[call-overload]
    print(f"activities served    {result['activities']:>8}")
    print(f"Strava requests      {requests:8d}   ({requests / wall:,.0f} simulated requests per wall second)")
    print(f"API requests         {result['api_requests']:>8}   (the browsers' submits and polls, through the real app)")
    print(f"peak memory          {result['peak_mb']:8.0f} MB (largest process)")
    print("runs (CPU and wall seconds of each, in the process that ran it):")
    for platform, strategy, cpu, run_wall in result["per_run"]:  # type: ignore[attr-defined]
        print(f"  {platform:>6} {strategy:<10}  cpu {cpu or 0:6.1f} s  wall {run_wall or 0:6.1f} s")


if __name__ == "__main__":
    main()
