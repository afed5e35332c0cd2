"""``simulate()``: one platform × strategy × seed, run through the real code on virtual time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncsim.platforms import PlatformSpec
from syncsim.sim.engine import run_scenario
from syncsim.sim.results import SimulationResult
from syncsim.sim.scenario import RateLimits, Scenario
from syncsim.sim.tables import to_result
from syncsim.sim.workload import Workload
from syncsim.strava.fake import Faults, LatencyModel

__all__ = ["simulate", "simulate_scenario"]


def simulate(
    *,
    workload: Workload | str | Path | None = None,
    athletes: int | None = None,
    platform: str | PlatformSpec = "hobby",
    strategy: str = "waituntil",
    seed: int = 0,
    latency: float | str | LatencyModel = 0.4,
    faults: Faults | dict[str, Any] | None = None,
    rate_limits: RateLimits | str | tuple[int, int] | dict[str, Any] | None = None,
    progress: bool = False,
    **options: Any,
) -> SimulationResult:
    """Simulate one run and return its tables (:class:`~syncsim.sim.results.SimulationResult`).

    ``workload``: a :class:`Workload`, a named one (``"reference"``), a CSV path, or ``None`` for a seeded
    launch of ``athletes`` athletes (default 100); with a workload, ``athletes`` runs its first ones (by
    arrival). ``platform``: a preset (``hobby`` 10 s, ``pro`` 300 s, ...) or a PlatformSpec. ``strategy``:
    ``waituntil`` | ``resumable`` | ``worker``. ``latency``: Strava's answer time in seconds (``0.4``),
    ``"lognormal:MEDIAN,SIGMA"``, or a LatencyModel. ``faults``: FakeStrava's :class:`Faults` (or a dict of its
    fields). ``rate_limits``: ``None`` (Strava's defaults, read 100/15 min and 1,000/day), ``"approved"``
    (600/15 min, 30,000/day) or ``(read_15min, read_day)``. Other ``options`` are :class:`Scenario` fields
    (``store_latency_s``, ``cold_start_s``, ``poll``, ``worker_kill_at_s``, ``max_sim_s``, ...). Deterministic
    for a given seed; callable from Jupyter. A run that would need more memory than the machine has is refused
    before it starts.
    """
    scenario = Scenario.build(
        workload=workload,
        athletes=athletes,
        platform=platform,
        strategy=strategy,
        seed=seed,
        latency=latency,
        faults=faults,
        rate_limits=rate_limits,
        progress=progress,
        **options,
    )
    return simulate_scenario(scenario)


def simulate_scenario(scenario: Scenario) -> SimulationResult:
    """Run a prepared :class:`Scenario`."""
    return to_result(run_scenario(scenario))
