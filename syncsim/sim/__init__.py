"""The simulator: the real runner, under virtual time, against FakeStrava, on simulated platforms.

``simulate(...)`` runs one platform × strategy × seed; ``compare(...)`` sweeps them over every core. Both
return the tables of :mod:`syncsim.sim.results`.
"""

from __future__ import annotations

from syncsim.sim.browser import PollSchedule
from syncsim.sim.compare import LAUNCH_DAY, REFERENCE_SWEEP, budget_bound_s, compare, reference_sweep
from syncsim.sim.results import Comparison, SimulationResult
from syncsim.sim.run import simulate
from syncsim.sim.scenario import APPROVED_APP_LIMITS, STRAVA_DEFAULT_LIMITS, RateLimits, Scenario, parse_latency
from syncsim.sim.virtual import VIRTUAL_EPOCH, run_virtual, virtual_clock
from syncsim.sim.workload import Workload

__all__ = [
    "APPROVED_APP_LIMITS",
    "LAUNCH_DAY",
    "REFERENCE_SWEEP",
    "STRAVA_DEFAULT_LIMITS",
    "VIRTUAL_EPOCH",
    "Comparison",
    "PollSchedule",
    "RateLimits",
    "Scenario",
    "SimulationResult",
    "Workload",
    "budget_bound_s",
    "compare",
    "parse_latency",
    "reference_sweep",
    "run_virtual",
    "simulate",
    "virtual_clock",
]
