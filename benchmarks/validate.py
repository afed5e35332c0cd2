"""The simulator against a real run over loopback (issue #5): outcomes equal, p50/p95 time to complete within 5 %.

One small workload (six athletes, 120 to 4,000 activities, every sync submitted at once) run twice:

1. **for real**: ``syncsim fake-strava`` and ``syncsim serve`` as subprocesses on loopback, SQLite on disk, the
   wall clock, the simulator's browsers over real HTTP; every time scaled by ``--scale`` (default 0.5: Strava's
   0.4 s, the hobby platform's 10 s limit, the 2 s deadline margin, the browsers' polls);
2. **in the simulator** (``simulate()``, virtual time), with the same parameters, calibrated from the real
   run only: Strava's latency is the mean page answer time the server's Strava client measured (its trace),
   ``store_latency_s`` the real store's mean call time (one sync replayed on a copy of the run's SQLite file).

Printed, per job: status, attempts and invocations real/sim (must be equal) and the time to complete
(``completed_at - created_at``) real and simulated; then p50 and p95 of the time to complete, their ratio,
and whether it is within 5 %. Exits 1 if the validation fails. Method and known limits:
:mod:`syncsim.sim.validation`. Wall-clock timings: run it on a quiet machine.

    .venv/bin/python benchmarks/validate.py
    .venv/bin/python benchmarks/validate.py --repeat 3
    .venv/bin/python benchmarks/validate.py --scale 0.25 --compact --fit lognormal
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, where benchmarks/queue.py would shadow the standard
# library's ``queue`` (which httpx imports): drop that entry before anything imports it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse

from syncsim.sim.validation import Setup, validate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=Setup.scale, help="every time x this (default 0.5, >= 0.25)")
    parser.add_argument(
        "--compact", action="store_true", help="FakeStrava's compact activity lists on both sides (default: full)"
    )
    parser.add_argument(
        "--fit",
        choices=["mean", "lognormal"],
        default="mean",
        help="simulated latency: the measured mean (default), or LatencyModel.from_latencies' lognormal",
    )
    parser.add_argument("--repeat", type=int, default=1, help="validate this many times in a row")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run's logs, store and trace here")
    args = parser.parse_args()
    setup = Setup(scale=args.scale, compact=args.compact)
    failed = 0
    for i in range(args.repeat):
        if args.repeat > 1:
            print(f"== run {i + 1} of {args.repeat}")
        comparison = validate(setup, workdir=args.workdir, fit=args.fit)
        print(comparison.describe())
        print()
        print(comparison.table())
        print()
        failed += not comparison.ok
    if args.repeat > 1:
        print(f"{args.repeat - failed} of {args.repeat} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
