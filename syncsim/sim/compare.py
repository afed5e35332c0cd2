"""``compare()``: a platform × strategy × seed sweep, one process per core, tables concatenated."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from itertools import product
from typing import Any

import pandas as pd

from syncsim.errors import InvalidInput
from syncsim.jobs.runner import resolve_strategy
from syncsim.sim.browser import PollSchedule
from syncsim.sim.engine import share_pages_in_this_process, sharing_pages
from syncsim.sim.results import Comparison, SimulationResult
from syncsim.sim.run import simulate_scenario
from syncsim.sim.scenario import Scenario
from syncsim.sim.workload import check_memory, run_memory_bytes

__all__ = [
    "LAUNCH_DAY",
    "REFERENCE_SWEEP",
    "budget_bound_s",
    "compare",
    "expected_cost",
    "launch_day_scenarios",
    "launch_day_table",
    "reference_sweep",
    "run_scenarios",
]

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
    # The recommended deployment of ``resumable`` includes the scheduled tick (Supabase Cron, every minute).
    "strategy_options": {"resumable": {"tick_s": 60.0}},
}

#: Launch day under a new app's default limits (read 100 / 15 min, 1,000 / day), the situation every app starts
#: in: athletes connect at the same instant (a seeded launch), hobby, ``resumable``, browsers leave after 2 h;
#: without a tick and with one every minute. Smaller than the must-hold test's 500 athletes (tests/sim/
#: test_launch_day.py) so that ``syncsim simulate`` stays within a minute; the conclusion is the same.
LAUNCH_DAY: dict[str, Any] = {
    "athletes": 300,
    "seed": 0,
    "platform": "hobby",
    "strategy": "resumable",
    "latency": 0.4,
    "rate_limits": "default",
    "poll": PollSchedule(give_up_s=7_200.0),
    "max_sim_s": 5 * 86_400.0,
    "keep_events": False,
    "ticks": (None, 60.0),
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


def _start_worker(started: Any) -> None:
    """A sweep's worker process, once started: say so (``started``, an Event) and share list pages."""
    started.set()
    # Ctrl-C in a terminal reaches every process of the group: the parent stops the sweep (it terminates its
    # workers), so a worker ignores it rather than print the traceback of each run it was in.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    share_pages_in_this_process()


#: Said when a sweep's worker processes all exit before starting, as they do when a script starts a sweep at its
#: top level without ``if __name__ == "__main__":`` (see :func:`_rerunning_main_script`).
UNGUARDED_SCRIPT = (
    "the sweep's worker processes could not start: each re-runs your script's top level, so start the sweep "
    'under `if __name__ == "__main__":` (or pass processes=1)'
)


def _rerunning_main_script() -> bool:
    """True in a ``spawn`` child while it re-runs the main script's top level to bootstrap: ``multiprocessing`` runs
    it under the name ``__mp_main__``, and only then is a module-level frame of that name on the stack."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            return True
        frame = frame.f_back
    return False


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
    strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> Comparison:
    """Simulate every platform × strategy × seed (``kwargs`` as for :func:`syncsim.sim.simulate`).

    ``strategy_options`` adds options to one strategy's runs (``{"resumable": {"tick_s": 60}}``: its deployment
    includes a scheduled tick). Runs use ``processes`` worker processes (default: every core; 1 runs them here, in
    order). Process start-up uses ``spawn``, so this works from a Jupyter cell. Every table gains
    platform/strategy/seed.
    """
    scenarios = _sweep_scenarios(platforms, strategies, seeds, keep_events, strategy_options, kwargs)
    results, workers = run_scenarios(scenarios, processes=processes, progress=progress)
    return _comparison(scenarios, results, workers=workers, keep_events=keep_events)


def _sweep_scenarios(
    platforms: Sequence[str],
    strategies: Sequence[str],
    seeds: Sequence[int],
    keep_events: bool,
    strategy_options: Mapping[str, Mapping[str, Any]] | None,
    kwargs: Mapping[str, Any],
) -> list[Scenario]:
    # A bare name is one choice, not a sequence of one-letter names.
    platforms, strategies = _names(platforms, "platforms"), _names(strategies, "strategies")
    for strategy in strategies:  # an unknown name is named as such, before strategy_options are checked against it
        resolve_strategy(strategy)
    if isinstance(seeds, int | str) or not seeds:
        raise InvalidInput(f"seeds must be a non-empty sequence of whole numbers, got {seeds!r}")
    extra = strategy_options or {}
    if not isinstance(extra, Mapping) or not all(isinstance(options, Mapping) for options in extra.values()):
        raise InvalidInput(f"strategy_options must map a strategy to a dict of its options, got {extra!r}")
    stray = set(extra) - set(strategies)
    if stray:
        raise InvalidInput(
            f"strategy_options names {', '.join(sorted(stray))}, not among the strategies compared "
            f"({', '.join(strategies)})"
        )
    return [
        Scenario.build(platform=p, strategy=s, seed=seed, keep_events=keep_events, **{**kwargs, **extra.get(s, {})})
        for p, s, seed in product(platforms, strategies, seeds)
    ]


def _names(names: Sequence[str] | str, what: str) -> tuple[str, ...]:
    chosen = (names,) if isinstance(names, str) else tuple(names)
    if not chosen:
        raise InvalidInput(f"{what} must name at least one, got none")
    return chosen


def run_scenarios(
    scenarios: Sequence[Scenario], *, processes: int | None = None, progress: bool = False
) -> tuple[list[SimulationResult], int]:
    """Run ``scenarios`` over ``processes`` worker processes (default: every core); results in scenario order,
    and the number of processes used."""
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise InvalidInput(f"processes must be a whole number >= 1 (or None: every core), got {processes!r}")
    workers = min(len(scenarios), processes or os.cpu_count() or 1)
    if workers > 1:  # each process holds a run at a time: the largest ones may run together
        largest = sorted((run_memory_bytes(sc.workload.total_activities) for sc in scenarios), reverse=True)
        check_memory(
            sum(largest[:workers]),
            f"{workers} runs at once",
            advice="run fewer at once (processes=1 runs them one after another), or simulate fewer athletes",
        )
    if workers > 1 and _rerunning_main_script():
        # A worker of this very sweep, re-running a script that starts the sweep at its top level (no
        # ``if __name__ == "__main__":``): starting processes here would fail with a multiprocessing traceback in
        # every worker. Exit quietly instead; the parent, whose workers never started, raises UNGUARDED_SCRIPT.
        # (The parent cannot tell before spawning whether the call is guarded, and running the sweep in one
        # process after the workers fail would hide that every worker re-runs the script: the user fixes it.)
        raise SystemExit(1)
    results: list[SimulationResult]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(scenarios), desc="simulations", unit="run")
    try:
        if workers <= 1:
            results = []
            with sharing_pages():
                for sc in scenarios:
                    results.append(_run(sc))
                    if bar is not None:
                        bar.update(1)
        else:
            results = _run_in_processes(scenarios, workers, bar)
    finally:
        if bar is not None:
            bar.close()
    return results, workers


def _run_in_processes(scenarios: Sequence[Scenario], workers: int, bar: Any) -> list[SimulationResult]:
    # ``spawn``, not ``fork``: works from a Jupyter cell (forking a process that has threads is unsafe).
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(started,))
    try:
        # Longest first: a sweep takes as long as its busiest process, and a long run started last would
        # keep one process busy while the others idle. Results are still returned in scenario order.
        order = sorted(range(len(scenarios)), key=lambda i: -expected_cost(scenarios[i]))
        futures = {i: pool.submit(_run, scenarios[i]) for i in order}
        for future in as_completed(futures.values()):
            future.result()
            if bar is not None:
                bar.update(1)
        return [futures[i].result() for i in range(len(scenarios))]
    except BrokenProcessPool:
        if started.is_set():  # a worker started, then died (killed, out of memory): not ours to explain
            raise
        raise InvalidInput(UNGUARDED_SCRIPT) from None
    except BaseException:
        # Interrupted (Ctrl-C; Jupyter's interrupt reaches this process only) or a run failed: stop the runs under
        # way now, instead of waiting, as leaving the pool would, for every queued run to finish.
        _terminate(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's queued and running work. Python 3.14 has a public way; before it, the pool's processes are
    terminated through its ``_processes`` map (the only place that holds them)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _comparison(
    scenarios: Sequence[Scenario], results: Sequence[SimulationResult], *, workers: int, keep_events: bool
) -> Comparison:
    pairs = list(zip(scenarios, results, strict=True))
    return Comparison(
        jobs=_keyed((sc, r.jobs) for sc, r in pairs),
        metrics=_keyed((sc, r.metrics) for sc, r in pairs),
        cost=_keyed((sc, r.cost) for sc, r in pairs),
        events=_keyed((sc, r.events) for sc, r in pairs) if keep_events else None,
        budget=_keyed((sc, r.budget) for sc, r in pairs),
        params={"runs": [r.params for r in results], "workers": workers},
    )


def launch_day_scenarios(**overrides: Any) -> list[Scenario]:
    """:data:`LAUNCH_DAY`'s runs, one per tick setting (``overrides`` replace its options)."""
    from syncsim.sim.workload import Workload

    options = {**LAUNCH_DAY, **overrides}
    ticks = options.pop("ticks")
    workload = Workload.sample(athletes=options.pop("athletes"), seed=options["seed"], launch_window_s=0.0)
    return [Scenario.build(workload=workload, tick_s=tick, **options) for tick in ticks]


def launch_day_table(scenarios: Sequence[Scenario], results: Sequence[SimulationResult]) -> pd.DataFrame:
    """One row per run of a launch: with or without the tick, how many athletes completed, when the last did
    and when the budget allowed it at the earliest, and when athletes saw their newest activities (p95)."""
    from syncsim.strava.sync import list_requests_needed

    rows = []
    for sc, r in zip(scenarios, results, strict=True):
        jobs = r.jobs
        limits = sc.rate_limits.read
        reads = sum(list_requests_needed(row.activities) for row in sc.workload.syncs)
        done = jobs[jobs.status == "completed"]
        metrics = r.metrics.set_index("metric")["value"]
        rows.append(
            {
                "tick": "none" if sc.tick_s is None else f"every {sc.tick_s:g} s",
                "athletes": len(jobs),
                "completed": len(done),
                "heavy_syncs_complete": float(metrics.get("heavy_syncs_complete", float("nan"))),
                "last_completed_h": float(done.time_to_complete_s.max()) / 3600.0 if len(done) else float("nan"),
                "budget_bound_h": budget_bound_s(reads, limits) / 3600.0,
                "p95_first_page_min": float(jobs.time_to_first_page_s.quantile(0.95)) / 60.0,
                "invocations": int(r.params["invocations"]),
            }
        )
    return pd.DataFrame(rows).set_index("tick")


def budget_bound_s(reads: int, limits: tuple[int, int]) -> float:
    """When the last of ``reads`` read requests can go at the earliest, in seconds after a UTC midnight, under
    ``limits`` = (reads per quarter hour, reads per day): read k waits for its quarter hour of its day."""
    if reads <= 0:
        return 0.0
    per_15min, per_day = limits
    day, in_day = divmod(reads - 1, per_day)
    return day * 86_400.0 + (in_day // per_15min) * 900.0


def reference_sweep(
    *,
    athletes: int | None = None,
    launch_day: bool = True,
    processes: int | None = None,
    progress: bool = False,
    keep_events: bool = True,
    **overrides: Any,
) -> Comparison:
    """Run :data:`REFERENCE_SWEEP` (optionally only its first ``athletes`` athletes, or other ``overrides``) and,
    with ``launch_day``, :data:`LAUNCH_DAY` in the same processes: its table is the result's ``launch``."""
    from syncsim.sim.workload import Workload

    if not isinstance(launch_day, bool):  # "no" is truthy: it would run the launch
        raise InvalidInput(f"launch_day must be True or False, got {launch_day!r}")
    options = {**REFERENCE_SWEEP, **overrides}
    if "strategy_options" not in overrides:  # the reference options of the strategies this sweep runs
        chosen = set(_names(options["strategies"], "strategies"))
        options["strategy_options"] = {s: o for s, o in options["strategy_options"].items() if s in chosen}
    if athletes is not None:
        options["workload"] = Workload.named(options["workload"]).head(athletes)
    sweep = _sweep_scenarios(
        options.pop("platforms"),
        options.pop("strategies"),
        options.pop("seeds"),
        keep_events,
        options.pop("strategy_options", None),
        options,
    )
    launch = launch_day_scenarios() if launch_day else []
    results, workers = run_scenarios([*sweep, *launch], processes=processes, progress=progress)
    comparison = _comparison(sweep, results[: len(sweep)], workers=workers, keep_events=keep_events)
    if launch:
        comparison.launch = launch_day_table(launch, results[len(sweep) :])
    return comparison
