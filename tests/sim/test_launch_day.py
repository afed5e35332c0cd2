"""Launch day under a new Strava app's default limits: every sync finishes with nobody watching.

500 athletes connect at the same instant (a seeded launch: median ~290 activities, the largest over 15,000;
295,351 in all), on the hobby plan (10 s invocations), ``resumable``, with a scheduler calling the tick every
60 s, and every browser gives up after 2 h. Strava allows 100 reads a quarter hour and 1,000 a day, so the
launch takes days: the tick alone finishes it.

The bounds are computed from the workload, not measured: a summary sync of N activities needs
``list_requests_needed(N)`` reads, and read number k (from 0) cannot go before the start of its window —
day ``k // 1000``, quarter hour ``(k % 1000) // 100`` of that day. The run starts at a UTC midnight, so the
windows line up with the clock. The last read bounds the makespan; the i-th athlete's first page cannot come
before read i (first pages are fewer than a day's reads).

Before the second fair-turn rule (a served sync leaves the window to never-served ones), the p95 first page came
the next day (86,475 s against a bound of 3,600 s): at each window's reset the browsers' polls claimed jobs
fairly, but the served jobs, with nothing to set up, reached Strava first.
"""

from __future__ import annotations

import numpy as np

from syncsim import list_requests_needed
from syncsim.sim import PollSchedule, Workload, budget_bound_s, simulate

LATENCY_S = 0.4
READS_15MIN, READS_DAY = 100, 1_000


def _earliest(read: int) -> float:
    """When read number ``read`` (from 0) may go at the earliest, in seconds after a UTC midnight."""
    return budget_bound_s(read + 1, (READS_15MIN, READS_DAY))


def test_a_launch_under_default_limits_completes_with_the_tick_alone_at_the_budget_bound() -> None:
    workload = Workload.sample(athletes=500, seed=0, launch_window_s=0.0)
    result = simulate(
        workload=workload,
        platform="hobby",
        strategy="resumable",
        rate_limits=(READS_15MIN, READS_DAY),
        latency=LATENCY_S,
        tick_s=60.0,
        poll=PollSchedule(give_up_s=7_200.0),
        max_sim_s=5 * 86_400.0,
    )
    jobs = result.jobs

    # Every athlete completed with every activity stored, long after every browser left.
    assert (jobs.status == "completed").all(), jobs.status.value_counts().to_dict()
    assert (jobs.activities_synced == jobs.activities).all()
    assert int(jobs[["activities_missing", "activities_extra", "activities_stale"]].to_numpy().sum()) == 0
    assert result.metrics.set_index("metric").loc["heavy_syncs_complete", "value"] == 1.0
    assert jobs.time_to_complete_s.max() > 7_200.0  # the tick, not a browser, finished these

    # The makespan: within 5 % of the last read's window (and never before it: the limits held).
    reads = sum(list_requests_needed(row.activities) for row in workload.syncs)
    assert result.params["fake_counts"]["pages"] == reads
    bound = _earliest(reads - 1) + LATENCY_S
    makespan = float(jobs.time_to_complete_s.max())
    assert bound <= makespan <= 1.05 * bound, (makespan, bound)

    # First pages: the p95 within 5 % of the bound (athlete i's first page no sooner than read i).
    first_bounds = np.array([_earliest(i) + LATENCY_S for i in range(len(jobs))])
    p95, p95_bound = np.percentile(jobs.time_to_first_page_s, 95), np.percentile(first_bounds, 95)
    assert p95 <= 1.05 * p95_bound, (p95, p95_bound)


def test_many_instances_at_each_reset_send_no_request_strava_refuses() -> None:
    """A platform spreads a launch's polls and ticks over many instances, each with its own Strava client. At every
    reset each instance's budget would believe the new window its own until Strava's answers said otherwise, and
    Strava would refuse the excess, counting it against the day. With every request taking a slot in the store
    first, 16 instances send exactly the reads one instance sends, and none is refused (39 of 574 were before)."""
    runs = {
        instances: simulate(
            workload=Workload.sample(athletes=100, seed=0, launch_window_s=0.0),
            platform="hobby",
            strategy="resumable",
            rate_limits=(READS_15MIN, READS_DAY),
            latency=LATENCY_S,
            tick_s=60.0,
            instances=instances,
            poll=PollSchedule(give_up_s=7_200.0),
            max_sim_s=86_400.0,
        )
        for instances in (1, 16)
    }
    for result in runs.values():
        assert (result.jobs.status == "completed").all()
        assert result.params["fake_counts"].get("status_429", 0) == 0
    assert runs[16].params["strava_requests"] == runs[1].params["strava_requests"]
