"""The simulator against arithmetic: with constant latency and no faults, every time and count is predictable.

Unless a test says otherwise the store latency is 0 and the client never gives up early, so a full sync of N
activities costs exactly ``R = list_requests_needed(N)`` list requests of ``L`` seconds each: keyset pages of 200
new, then 199 new (each re-reads its boundary second), one page of the boundary alone, and the empty page
that ends paging (``ceil((N - 200) / 199) + 3`` for N > 200, 3 for 1 <= N <= 200, 1 for N = 0).
"""

from __future__ import annotations

import math

import pytest

from syncsim.sim import simulate
from syncsim.sim.workload import Workload, WorkloadRow
from syncsim.strava.sync import list_requests_needed


def one_athlete(activities: int) -> Workload:
    return Workload.from_rows([WorkloadRow(0, activities, 0.0)], name=f"one-{activities}")


def one_window_too_many(**options: object):  # type: ignore[no-untyped-def]
    """One athlete of 19,702 activities: 101 list requests of 1 s, under a read limit of 100 per 15 minutes."""
    return simulate(workload=one_athlete(19_702), latency=1.0, store_latency_s=0.0, rate_limits=(100, 1_000), **options)


def only_job(result):  # type: ignore[no-untyped-def]
    assert len(result.jobs) == 1
    return result.jobs.iloc[0]


@pytest.mark.parametrize("n", [0, 1, 199, 200, 201, 1234])
def test_a_sync_takes_its_keyset_requests_of_latency_each(n: int) -> None:
    latency = 0.25
    result = simulate(workload=one_athlete(n), platform="unlimited", latency=latency, store_latency_s=0.0)
    job = only_job(result)
    requests = 1 if n == 0 else 3 if n <= 200 else math.ceil((n - 200) / 199) + 3
    assert requests == list_requests_needed(n)
    assert job["status"] == "completed" and job["activities_synced"] == n
    assert job["strava_requests"] == requests
    assert job["time_to_complete_s"] == pytest.approx(requests * latency, abs=1e-6)


def test_store_round_trips_add_their_stated_overhead() -> None:
    n, latency, rtt = 1000, 0.25, 0.01
    result = simulate(workload=one_athlete(n), platform="unlimited", latency=latency, store_latency_s=rtt)
    job = only_job(result)
    pages = math.ceil(n / 200)
    # create (the POST waits for it), claim, whether the history was ever listed in full, tokens once; the
    # checkpoint after the page that re-reads only the boundary (nothing to ask for until it is stored); then the
    # removal of what the listing did not see, the mark of a complete listing and the final count. The completing
    # write's own round trip is after its timestamp.
    # Every request first takes its rate-limit slot in the store (a round trip before it goes). Every other page's
    # upsert and checkpoint (2 round trips) run while the next page is requested, hidden behind its slot and
    # latency because 2 * rtt <= rtt + latency.
    assert 2 * rtt <= rtt + latency and pages > 0
    round_trips = 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1
    expected = list_requests_needed(n) * (rtt + latency) + round_trips * rtt
    assert job["time_to_complete_s"] == pytest.approx(expected, abs=1e-6)
    assert job["api_latency_s"] == pytest.approx(rtt, abs=1e-6)  # the POST makes one store call


@pytest.mark.parametrize(("n", "killed"), [(1700, False), (3000, True)])
def test_waituntil_on_hobby_is_killed_exactly_when_the_sync_outlasts_10_s(n: int, killed: bool) -> None:
    latency = 0.9  # 1700 activities: 11 requests = 9.9 s (fits); 3000: 18 requests = 16.2 s (does not)
    result = simulate(
        workload=one_athlete(n),
        platform="hobby",
        strategy="waituntil",
        latency=latency,
        store_latency_s=0.0,
        poll={"give_up_s": 120.0},
    )
    job = only_job(result)
    assert (list_requests_needed(n) * latency > 10.0) is killed
    assert bool(job["timed_out"]) is killed and job["killed_invocations"] == int(killed)
    if killed:
        done_by_deadline = math.floor(10.0 / latency)  # requests answered before the kill at t = 10 s
        assert job["status"] == "running" and job["stuck"]  # the killed row is left running: nobody resumes it
        assert job["activities_synced"] == 200 + 199 * (done_by_deadline - 1)
        assert job["strava_requests"] == done_by_deadline + 1  # the last one was in flight
    else:
        assert job["status"] == "completed" and job["time_to_complete_s"] == pytest.approx(9.9, abs=1e-6)


def poll_times(first: float = 2.0, cap: float = 30.0, until: float = 10_000.0) -> list[float]:
    """When the browser polls (seconds after its POST): delays 2, 4, 8, 16, 30, 30, ..."""
    t, k, times = 0.0, 1, []
    while t < until:
        t += min(cap, first * 2 ** (k - 1))
        times.append(t)
        k += 1
    return times


@pytest.mark.parametrize("n", [1000, 5000, 9000])
def test_resumable_completes_in_the_invocations_the_deadline_arithmetic_predicts(n: int) -> None:
    latency, limit, margin = 1.0, 10.0, 2.5
    # Before each request the runner stops if time_left < estimate (1 s) + margin: an invocation that starts
    # at s sends requests at s, s+1, ... while 10 - k >= 3.5, i.e. k = 0..6: seven requests per invocation.
    per_invocation = sum(1 for k in range(100) if limit - k * latency >= latency + margin)
    assert per_invocation == 7
    # Invocation 1 is the POST's (t = 0); each later one is the first poll after the previous one stopped.
    left, start, invocations, polls = list_requests_needed(n), 0.0, 0, poll_times()
    while True:
        invocations += 1
        step = min(left, per_invocation)
        left -= step
        end = start + step * latency
        if left == 0:
            break
        start = next(p for p in polls if p >= end)
    result = simulate(
        workload=one_athlete(n),
        platform="hobby",
        strategy="resumable",
        latency=latency,
        store_latency_s=0.0,
        deadline_margin_s=margin,
    )
    job = only_job(result)
    assert job["status"] == "completed" and job["activities_synced"] == n
    assert job["invocations"] == invocations and job["killed_invocations"] == 0
    assert job["strava_requests"] == list_requests_needed(n)
    assert job["time_to_complete_s"] == pytest.approx(end, abs=1e-6)


def test_the_101st_read_in_a_quarter_hour_waits_for_the_next_one() -> None:
    # 19,702 activities = 101 requests of 1 s under the read limit of 100 per 15 min: requests 1-100 are
    # answered by t = 100 s; the 101st is refused locally and sent at the quarter hour (t = 900 s, the run
    # starts on one) plus the budget's 1 s clock-skew allowance, so the sync completes at 902 s.
    result = one_window_too_many(platform="unlimited", strategy="waituntil")
    job = only_job(result)
    assert job["status"] == "completed" and job["strava_requests"] == 101
    assert job["time_to_complete_s"] == pytest.approx(902.0, abs=1e-6)
    assert result.params["fake_counts"].get("rate_limited", 0) == 0  # never a 429: the budget waited
    window = result.budget.set_index("t_s")
    assert window.loc[840.0, "read_15min"] == 100 and window.loc[900.0, "read_15min"] == 0
    # The wait happened inside the invocation (unlimited platform): it counts, and is on the timeline.
    assert job["rate_limited"] == 1
    waits = result.events[result.events["kind"] == "rate_limit_wait"]
    assert list(waits["t_s"]) == [pytest.approx(100.0, abs=1e-6)] and list(waits["detail"]) == ["801.0 s"]


def test_a_job_rescheduled_to_the_window_reset_counts_as_rate_limited_once_per_reset() -> None:
    # The same athlete on hobby (10 s) with resumable: the 101st request's reset is far past the invocation's
    # deadline, so the job is rescheduled (not waited for) exactly once, then completes after the reset.
    result = one_window_too_many(platform="hobby", strategy="resumable")
    job = only_job(result)
    assert job["status"] == "completed" and job["strava_requests"] == 101
    assert job["rate_limited"] == 1
    assert (result.events["kind"] == "rate_limited").sum() == 1
    assert (result.events["kind"] == "rate_limit_wait").sum() == 0


def test_with_nobody_watching_the_tick_continues_a_held_back_job_a_second_after_the_reset() -> None:
    # The same athlete; the tab closes after a minute. The 101st request is refused at 100 s, and the job is put
    # back until the reset plus the 1 s clock-skew allowance (901 s). The tick fires on the clock, at 900 s, waits
    # the second for it, and its last request answers at 902 s; the tick after, at 960 s, would have cost a minute.
    from syncsim.sim import PollSchedule

    result = one_window_too_many(platform="hobby", strategy="resumable", tick_s=60.0, poll=PollSchedule(give_up_s=60.0))
    job = only_job(result)
    assert job["status"] == "completed" and job["strava_requests"] == 101
    assert job["time_to_complete_s"] == pytest.approx(902.0, abs=1e-3)


def test_the_budget_bound_puts_each_read_in_its_quarter_hour_of_its_day() -> None:
    from syncsim.sim import budget_bound_s

    limits = (100, 1_000)
    assert budget_bound_s(0, limits) == 0.0
    assert budget_bound_s(100, limits) == 0.0  # the first window holds 100
    assert budget_bound_s(101, limits) == 900.0
    assert budget_bound_s(1_000, limits) == 9 * 900.0  # the day's tenth window
    assert budget_bound_s(1_001, limits) == 86_400.0  # then the next UTC day
    assert budget_bound_s(2_730, limits) == 2 * 86_400.0 + 7 * 900.0
