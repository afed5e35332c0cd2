"""Strava's clock is never quite the app's: its rate-limit windows reset by its own clock.

Jobs put back until a reset, turns given away until the next window and the tick (fired on the clock, right at
each reset) all want a window's first reads, so with Strava's clock behind, a request sent at the reset by the
app's clock counts in Strava's window before; with it ahead, the app's last requests of a window count in the
next. Launch day under a new app's default limits (300 athletes at once, hobby, ``resumable``, tick every minute,
browsers leave after 2 h, across midnight), on 4 instances, with Strava's clock 0.7 s behind and 0.7 s ahead, must
lose no window to it and draw no more 429s than without it (the runs' figures are in docs/performance.md; the
budget's allowance is pinned in tests/unit/strava/).
"""

from __future__ import annotations

import functools

import pytest

from syncsim.errors import InvalidInput
from syncsim.sim import PollSchedule, SimulationResult, Workload, simulate


@functools.cache
def _launch(behind_s: float) -> SimulationResult:
    return simulate(
        workload=Workload.sample(athletes=300, seed=0, launch_window_s=0.0),
        platform="hobby",
        strategy="resumable",
        rate_limits="default",
        tick_s=60.0,
        poll=PollSchedule(give_up_s=7_200.0),
        max_sim_s=5 * 86_400.0,
        keep_events=False,
        instances=4,
        strava_clock_behind_s=behind_s,
    )


@pytest.mark.parametrize("behind_s", [0.7, -0.7], ids=["behind", "ahead"])
def test_a_launch_across_midnight_survives_strava_s_clock_off_by_most_of_a_second(behind_s: float) -> None:
    even, skewed = _launch(0.0), _launch(behind_s)
    jobs = skewed.jobs
    assert jobs["status"].eq("completed").all(), jobs["status"].value_counts()
    assert jobs["time_to_complete_s"].max() > 86_400  # the launch needs the next day's reads
    assert jobs["activities_synced"].eq(jobs["activities"]).all()
    # No window, and no day, is lost to the skew: the last sync ends within a window of the unskewed run's.
    assert jobs["time_to_complete_s"].max() <= even.jobs["time_to_complete_s"].max() + 900
    refused, refused_even = (r.params["fake_counts"].get("status_429", 0) for r in (skewed, even))
    assert refused <= refused_even + 4
    assert skewed.params["strava_clock_behind_s"] == behind_s


@pytest.mark.parametrize("bad", [900.0, -1e9, float("nan"), float("inf"), True, "0.5"])
def test_a_clock_skew_beyond_a_window_is_refused_with_one_line(bad: object) -> None:
    with pytest.raises(InvalidInput, match=r"strava_clock_behind_s must be seconds within a rate-limit window"):
        simulate(athletes=2, strava_clock_behind_s=bad)
