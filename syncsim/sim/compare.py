"""``compare()``: a platform × strategy × seed sweep, one process per core, tables concatenated."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from itertools import product
from typing import Any

import pandas as pd

from syncsim.sim.engine import share_pages_in_this_process, sharing_pages
from syncsim.sim.results import Comparison, SimulationResult
from syncsim.sim.run import simulate_scenario
from syncsim.sim.scenario import Scenario

__all__ = ["REFERENCE_SWEEP", "compare", "expected_cost", "reference_sweep"]

#: The reference sweep (``syncsim simulate`` without arguments): launch day of the committed ``reference``
#: workload (1,000 athletes, ~550,000 activities, all within the first minute) on hobby and pro × every
#: strategy, Strava answering in 0.4 s, with an approved app's raised limits (read 600 / 15 min and
#: 30,000 / day). Under Strava's default limits (1,000 reads a day) the same launch needs ~5 simulated days
#: and every strategy fails on waiting alone; the raised limits ask the more useful question: which
#: strategy survives the platform's time limit when Strava is not the bottleneck.
REFERENCE_SWEEP: dict[str, Any] = {
    "workload": "reference",
    "platforms": ("hobby", "pro"),
    "strategies": ("waituntil", "resumable", "worker"),
    "seeds": (0,),
    "latency": 0.4,
    "rate_limits": "approved",
}


#: Relative run time per athlete by strategy, used only to start a sweep's longest runs first: ``worker`` serves
#: all of Strava's pages and its browsers poll queued jobs every ``PollSchedule.cap_s``; ``waituntil`` serves few
#: pages but its browsers poll jobs left past a rate limit until they give up; ``resumable``'s browsers wait for
#: each ``nextAttemptAt``.
STRATEGY_COST = {"worker": 2.0, "waituntil": 1.2, "resumable": 1.0}


def expected_cost(scenario: Scenario) -> float:
    """A rough relative run time of ``scenario``; :func:`compare` starts the longest runs first."""
    return scenario.workload.athletes * STRATEGY_COST.get(scenario.strategy, 1.0) / max(scenario.poll.cap_s, 1.0)


def _run(scenario: Scenario) -> SimulationResult:
    return simulate_scenario(scenario)


def _keyed(frames: Iterable[tuple[Scenario, pd.DataFrame | None]]) -> pd.DataFrame:
    parts = []
    for sc, frame in frames:
        if frame is None:
            continue
        frame = frame.copy()
        for column, value in (("platform", sc.platform.name), ("strategy", sc.strategy), ("seed", sc.seed)):
            if column not in frame.columns:
                frame.insert(0, column, value)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def compare(
    *,
    platforms: Sequence[str] = ("hobby", "pro"),
    strategies: Sequence[str] = ("waituntil", "resumable", "worker"),
    seeds: Sequence[int] = (0,),
    processes: int | None = None,
    progress: bool = False,
    keep_events: bool = True,
    **kwargs: Any,
) -> Comparison:
    """Simulate every platform × strategy × seed (``kwargs`` as for :func:`syncsim.sim.simulate`).

    Runs use ``processes`` worker processes (default: every core; 1 runs them here, in order). Process
    start-up uses ``spawn``, so this works from a Jupyter cell. Every table gains platform/strategy/seed.
    """
    scenarios = [
        Scenario.build(platform=p, strategy=s, seed=seed, keep_events=keep_events, **kwargs)
        for p, s, seed in product(platforms, strategies, seeds)
    ]
    workers = min(len(scenarios), processes or os.cpu_count() or 1)
    results: list[SimulationResult]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(scenarios), desc="simulations", unit="run")
    if workers <= 1:
        results = []
        with sharing_pages():
            for sc in scenarios:
                results.append(_run(sc))
                if bar is not None:
                    bar.update(1)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=share_pages_in_this_process) as pool:
            # Longest first: a sweep takes as long as its busiest process, and a long run started last would
            # keep one process busy while the others idle. Results are still returned in scenario order.
            order = sorted(range(len(scenarios)), key=lambda i: -expected_cost(scenarios[i]))
            futures = {i: pool.submit(_run, scenarios[i]) for i in order}
            for future in as_completed(futures.values()):
                future.result()
                if bar is not None:
                    bar.update(1)
            results = [futures[i].result() for i in range(len(scenarios))]
    if bar is not None:
        bar.close()
    pairs = list(zip(scenarios, results, strict=True))
    return Comparison(
        jobs=_keyed((sc, r.jobs) for sc, r in pairs),
        metrics=_keyed((sc, r.metrics) for sc, r in pairs),
        cost=_keyed((sc, r.cost) for sc, r in pairs),
        events=_keyed((sc, r.events) for sc, r in pairs) if keep_events else None,
        budget=_keyed((sc, r.budget) for sc, r in pairs),
        params={"runs": [r.params for r in results], "workers": workers},
    )


def reference_sweep(*, athletes: int | None = None, **overrides: Any) -> Comparison:
    """Run :data:`REFERENCE_SWEEP` (optionally only its first ``athletes`` athletes, or other ``overrides``)."""
    from syncsim.sim.workload import Workload

    options = {**REFERENCE_SWEEP, **overrides}
    if athletes is not None:
        options["workload"] = Workload.named(options["workload"]).head(athletes)
    return compare(**options)
