"""What a simulation returns: tidy pandas tables with fixed columns (the contract charts and notebooks use).

``SimulationResult`` — one run (one platform × strategy × seed):

``jobs`` — one row per athlete's first sync job, columns :data:`JOB_COLUMNS`:
    user_id (str), activities (int: the athlete's history size), platform, strategy, seed,
    status (pending | running | completed | failed, at the end of the run), attempts (the handler's counted
    runs: a run killed at the limit and reclaimed after its lease is a crash and gives its attempt back),
    invocations (how many invocations ran part of the job), api_latency_s (the POST /api/sync answer time,
    simulated seconds), time_to_complete_s (submit → completed, NaN if never), time_to_first_page_s (submit →
    the first page stored, NaN if never), timed_out (bool: an invocation running the job was killed at the
    platform limit, or it ended failed/stuck because of one), killed_invocations, activities_synced (stored in
    the store at the end), activities_deleted (deleted on Strava during the run, webhook workloads), activities_missing,
    activities_extra, activities_stale (the store against FakeStrava's truth at the end of the run: activities
    the athlete has but the store lacks, the store has but the athlete no longer does, and stored with a field
    that differs; after the final reconcile when the scenario asks for one), strava_requests, rate_limited
    (times the job waited for or was rescheduled to a Strava window reset), compute_s (seconds of invocation
    time spent on it), error (str or None), stuck (bool: not final when the run ended).

``events`` — the timeline, columns :data:`EVENT_COLUMNS`:
    t_s (simulated seconds since the run started), user_id, job_id, kind, detail. Kinds include: submit,
    poll, invocation_start, invocation_end, killed, claimed, checkpoint, retry, rescheduled, rate_limited,
    rate_limit_wait (the Strava client slept until a window reset inside an invocation),
    completed, failed, gave_up.

``metrics`` — the five success metrics, columns :data:`METRIC_COLUMNS` (metric, target, value, passed), one
    row per :data:`SUCCESS_METRICS` entry, in that order.

``budget`` — Strava's app-wide rate-limit usage over time, columns :data:`BUDGET_COLUMNS`:
    t_s, read_15min, read_15min_limit, read_day, read_day_limit.

``divergence`` — the store against FakeStrava's truth over time (when the scenario samples it), columns
    :data:`DIVERGENCE_COLUMNS`: t_s, missing, extra, stale (activities, summed over athletes).

``cost`` — a one-row table, columns :data:`COST_COLUMNS`: invocations, gb_hours, active_cpu_hours,
    monthly_cost_usd (extrapolated to a month at this workload's rate), within_free_tier (bool).

``Comparison`` — a sweep (platform × strategy × seed): the same tables concatenated, each row keyed by
platform, strategy and seed; ``scorecard()`` pivots metrics to platform × strategy rows and one column per
metric (the value that decided pass/fail), with ``passed_all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is an optional extra (syncsim[sim])
    import pandas as pd

__all__ = [
    "BUDGET_COLUMNS",
    "COST_COLUMNS",
    "DIVERGENCE_COLUMNS",
    "EVENT_COLUMNS",
    "JOB_COLUMNS",
    "METRIC_COLUMNS",
    "SUCCESS_METRICS",
    "Comparison",
    "SimulationResult",
    "describe_value",
]

JOB_COLUMNS = (
    "user_id",
    "activities",
    "platform",
    "strategy",
    "seed",
    "status",
    "attempts",
    "invocations",
    "api_latency_s",
    "time_to_complete_s",
    "time_to_first_page_s",
    "timed_out",
    "killed_invocations",
    "activities_synced",
    "activities_deleted",
    "activities_missing",
    "activities_extra",
    "activities_stale",
    "strava_requests",
    "rate_limited",
    "compute_s",
    "error",
    "stuck",
)
EVENT_COLUMNS = ("t_s", "user_id", "job_id", "kind", "detail")
METRIC_COLUMNS = ("metric", "target", "value", "passed")
BUDGET_COLUMNS = ("t_s", "read_15min", "read_15min_limit", "read_day", "read_day_limit")
DIVERGENCE_COLUMNS = ("t_s", "missing", "extra", "stale")
COST_COLUMNS = ("invocations", "gb_hours", "active_cpu_hours", "monthly_cost_usd", "within_free_tier")

#: (metric name, target as written in design.md)
SUCCESS_METRICS = (
    ("api_p99_under_1s", "p99 of POST /api/sync latency < 1 s"),
    (
        "heavy_syncs_complete",
        "every athlete with >= 100 activities ends completed with all activities stored",
    ),
    ("no_timeout_errors", "no job fails, loses work or stays stuck because an invocation hit the limit"),
    ("zero_extra_cost", "nothing beyond the platform and database free tiers"),
    ("works_on_free_tier", "all of the above on the hobby plan"),
)


def describe_value(metric: str, value: float, passed: bool | None = None) -> str:
    """A metric's value as a person reads it: ``api_p99_under_1s`` 0.005 → ``5 ms``, ``zero_extra_cost`` 5 →
    ``US$5.00/month``, ``works_on_free_tier`` 3 → ``3 of 4 passed`` (of the four metrics before it).

    ``passed`` (the metric's verdict) names what decided a ``works_on_free_tier`` that failed with all four
    passed: the plan is not a free one (``4 of 4, not a free plan``), which its count alone does not say."""
    if value != value:  # NaN: nothing to measure
        return "n/a"
    if metric == "api_p99_under_1s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if metric == "heavy_syncs_complete":
        return f"{value:.1%} complete"
    if metric == "no_timeout_errors":
        return f"{value:.0f} job{'s' if value != 1 else ''} timed out"
    if metric == "zero_extra_cost":
        return f"US${value:.2f}/month"
    if metric == "works_on_free_tier":
        if passed is False and value >= len(SUCCESS_METRICS) - 1:
            return f"{value:.0f} of 4, not a free plan"
        return f"{value:.0f} of 4 passed"
    return f"{value:.4g}"


@dataclass
class SimulationResult:
    """One simulated run; see the module docstring for every table's columns."""

    jobs: pd.DataFrame
    events: pd.DataFrame
    metrics: pd.DataFrame
    budget: pd.DataFrame
    cost: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    divergence: pd.DataFrame | None = None

    @property
    def passed(self) -> bool:
        return bool(self.metrics["passed"].all())


@dataclass
class Comparison:
    """A platform × strategy (× seed) sweep; every table has platform, strategy and seed columns."""

    jobs: pd.DataFrame
    metrics: pd.DataFrame
    cost: pd.DataFrame
    events: pd.DataFrame | None = None
    budget: pd.DataFrame | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: The reference sweep's launch day under default limits (see :data:`syncsim.sim.compare.LAUNCH_DAY`), one
    #: row per tick setting; ``None`` for other sweeps.
    launch: pd.DataFrame | None = None

    def values(self) -> pd.DataFrame:
        """platform × strategy rows, one column per metric: the value that decided it, with its unit.

        Over several seeds a metric passes only if every seed passed, so the value shown is the first failing
        seed's, or the first seed's if all passed (as :func:`syncsim.plots.scorecard_table` shows it).
        """
        keys = ["platform", "strategy", "metric"]
        runs = self.metrics.groupby(keys, sort=False)
        # A stable sort puts each group's failing seeds first, in seed order; ``first`` then takes the deciding one.
        failing_first = self.metrics.sort_values("passed", kind="stable", key=lambda passed: passed.astype(bool))
        deciding = failing_first.groupby(keys, sort=False)[["value", "passed"]].first()
        deciding = deciding.reindex(runs.size().index)  # back in the sweep's order
        cells = zip(deciding.index.get_level_values("metric"), deciding.value, deciding.passed, strict=True)
        described = deciding.assign(text=[describe_value(str(m), v, bool(ok)) for m, v, ok in cells]).reset_index()
        table = described.pivot_table(
            index=["platform", "strategy"], columns="metric", values="text", aggfunc="first", sort=False
        )
        return table[[name for name, _ in SUCCESS_METRICS if name in table.columns]]

    def scorecard(self) -> pd.DataFrame:
        """platform × strategy rows, one column per metric (True/False), plus ``passed_all``."""
        table = self.metrics.groupby(["platform", "strategy", "metric"], sort=False)["passed"].all().unstack("metric")
        table = table[[name for name, _ in SUCCESS_METRICS if name in table.columns]]
        table["passed_all"] = table.all(axis=1)
        return table
