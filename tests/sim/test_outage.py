"""A Strava outage in the middle of a launch: the syncs wait it out instead of spending their attempts.

Strava answers 503 to everything for ten minutes, three seconds after 40 athletes connected. Before the client
knew an outage when it saw one, every job in flight spent its three attempts within seconds (37 of 40 failed under
``resumable``, 40 of 40 under ``worker``), each attempt retried three times, and the failed attempts spent the rate
budget the syncs needed once Strava was back.
"""

from __future__ import annotations

import pytest

from syncsim.errors import InvalidInput
from syncsim.sim import SimulationResult, simulate

OUTAGE_S = (3.0, 603.0)


def _through_the_outage(strategy: str, *, athletes: int, instances: int = 1) -> SimulationResult:
    return simulate(
        athletes=athletes,
        platform="hobby",
        strategy=strategy,
        seed=1,
        latency=0.4,
        rate_limits="approved",
        tick_s=60.0 if strategy == "resumable" else None,
        strava_down_s=OUTAGE_S,
        instances=instances,
    )


@pytest.mark.parametrize("strategy", ["resumable", "worker"])
def test_a_ten_minute_strava_outage_is_waited_out_without_spending_attempts(strategy: str) -> None:
    result = _through_the_outage(strategy, athletes=40)
    jobs = result.jobs
    assert jobs["status"].eq("completed").all(), jobs["error"].dropna().head(3).tolist()
    assert jobs["attempts"].eq(1).all()  # waiting for Strava spent no attempt
    assert jobs["activities_synced"].eq(jobs["activities"]).all() and jobs["activities_missing"].sum() == 0
    assert jobs["time_to_complete_s"].max() >= OUTAGE_S[1]  # some syncs did wait for the end of the outage
    failed = result.params["fake_counts"]["errors_5xx"]
    # Once Strava was known down, its jobs looked again now and then (30 s, 1, 2, 4, then every 5 min), not each
    # request four times: 480-593 failed requests before, for these 40 athletes.
    assert 0 < failed < 200, failed


@pytest.mark.parametrize("strategy", ["resumable", "worker"])
def test_a_deployments_only_athlete_waits_the_outage_out_too(strategy: str) -> None:
    """With one athlete, failures in a row cannot come from two athletes' requests: when the first request gives up
    after its 4 attempts, all failed, the client probes another request of theirs, which fails too, and the job
    waits the outage out on its first attempt (before the probe: failed, three attempts spent within seconds; with
    the probe only at 8 failures: completed on the second attempt)."""
    job = _through_the_outage(strategy, athletes=1).jobs.iloc[0]
    assert job["status"] == "completed" and job["attempts"] == 1, job["error"]
    assert job["activities_synced"] == job["activities"] and job["time_to_complete_s"] >= OUTAGE_S[1]


@pytest.mark.parametrize("instances", [4, 8])
def test_serverless_instances_share_what_one_of_them_learns_of_the_outage(instances: int) -> None:
    """Requests spread over several instances, each a process of its own: what one learns of the outage (the
    pause, its count of looks) reaches the others through the store, so the outage costs no more failed requests
    than in one process (without the shared pause: 19 with 4 instances and 30 with 8, against 9). Each process
    counts its own failures until then: a request that gives up with all its attempts failed probes, so that no
    process needs 8 failures of its own (the only athlete's sync failed with 4 or 8 instances before that)."""
    alone = _through_the_outage("resumable", athletes=1)
    spread = _through_the_outage("resumable", athletes=1, instances=instances)
    job = spread.jobs.iloc[0]
    assert job["status"] == "completed" and job["attempts"] == 1, job["error"]
    assert job["activities_synced"] == job["activities"] and job["time_to_complete_s"] >= OUTAGE_S[1]
    failed = spread.params["fake_counts"]["errors_5xx"]
    assert failed <= alone.params["fake_counts"]["errors_5xx"], failed
    many = _through_the_outage("resumable", athletes=40, instances=instances).jobs
    assert many["status"].eq("completed").all() and many["attempts"].eq(1).all(), many["attempts"].value_counts()


def test_the_outage_is_a_scenario_option_checked_like_the_others() -> None:
    with pytest.raises(InvalidInput, match=r"strava_down_s must be \(start_s, end_s\)"):
        simulate(athletes=2, strava_down_s=(10.0, 5.0))
