"""``simulate()`` refuses what it cannot simulate, in one line, before it runs: the notebooks' users call it with
their own numbers, and a NaN latency, a tick of 0 or an error rate of 2 used to run and print a scorecard (a NaN
churn rate ran forever)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest

from syncsim.errors import InvalidInput
from syncsim.sim import Workload, compare, reference_sweep, simulate
from syncsim.sim.workload import WorkloadRow


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"latency": math.nan}, "latency parameters must be finite and >= 0, got median nan"),
        ({"latency": math.inf}, "latency parameters must be finite and >= 0, got median inf"),
        ({"latency": "lognormal:0.4,nan"}, "latency parameters must be finite and >= 0"),
        ({"seed": "x"}, "seed must be a whole number, got 'x'"),
        ({"athletes": 2.5}, "athletes must be a whole number >= 1, got 2.5"),
        ({"athletes": True}, "athletes must be a whole number >= 1, got True"),
        ({"athletes": 0}, "athletes must be a whole number >= 1, got 0"),
        ({"tick_s": math.nan}, "tick_s must be a finite number >= 1, got nan"),
        ({"tick_s": 0.5}, "tick_s must be a finite number >= 1, got 0.5"),
        ({"faults": {"error_rate": 2}}, "faults: error_rate must be a fraction of requests within 0..1, got 2"),
        ({"faults": {"hang_s": 0}}, "faults: hang_s must be a positive number of seconds, got 0"),
        ({"rate_limits": (-1, 5)}, "read limits must be whole numbers with 1 <= per 15 min <= per day, got (-1, 5)"),
        ({"rate_limits": (200, 100)}, "with 1 <= per 15 min <= per day, got (200, 100)"),
        ({"churn": math.nan}, "churn: rate_per_hour must be >= 0"),
        ({"max_sim_s": 0}, "max_sim_s must be a finite number >= 1, got 0"),
        ({"store_latency_s": math.nan}, "store_latency_s must be a finite number >= 0, got nan"),
        ({"cold_start_s": -1}, "cold_start_s must be a finite number >= 0, got -1"),
        ({"kill_rate": 1.5}, "kill_rate must be a fraction within 0..1, got 1.5"),
        ({"lease_s": 0}, "lease_s must be a finite number >= 0.001, got 0"),
        ({"worker_concurrency": 2.5}, "worker_concurrency must be a whole number >= 1, got 2.5"),
        ({"instances": 0}, "instances must be a whole number >= 1, got 0"),
        ({"instances": True}, "instances must be a whole number >= 1, got True"),
        ({"shared_budget": "yes"}, "shared_budget must be True or False, got 'yes'"),
        ({"detail": "false"}, "detail must be True or False, got 'false'"),
        ({"compact_activities": 0}, "compact_activities must be True or False, got 0"),
        ({"finish_at_end": None}, "finish_at_end must be True or False, got None"),
        ({"reconcile_at_end": "no"}, "reconcile_at_end must be True or False, got 'no'"),
        ({"keep_events": 1}, "keep_events must be True or False, got 1"),
        ({"progress": "yes"}, "progress must be True or False, got 'yes'"),
        ({"poll": {"give_up_s": -1}}, "PollSchedule needs 0 < first_s <= cap_s, give_up_s > 0"),
        ({"strava_down_s": (math.nan, 5.0)}, "strava_down_s must be (start_s, end_s) with 0 <= start_s <= end_s"),
        # Options given as dicts: a misspelt field or a number as text used to fail with a TypeError from deep inside
        ({"faults": {"eror_rate": 0.1}}, "unknown faults field(s) eror_rate; known: down, error_rate,"),
        ({"faults": {"error_rate": "0.1"}}, "faults: error_rate must be a fraction of requests within 0..1, got '0.1'"),
        ({"faults": {"hang_s": "30"}}, "faults: hang_s must be a positive number of seconds, got '30'"),
        (
            {"faults": {"malformed_pages": 0.5, "malformed_mode": "garbled"}},
            "faults: malformed_mode must be one of truncated_json, missing_id, not_a_list, got 'garbled'",
        ),
        ({"poll": {"give_up": 60}}, "unknown poll field(s) give_up; known: cap_s, first_s, give_up_s,"),
        ({"poll": {"first_s": "2"}}, "PollSchedule needs 0 < first_s <= cap_s"),
        ({"poll": {"post_attempts": 2.5}}, "PollSchedule needs 0 < first_s <= cap_s"),
        ({"churn": {"rate": 1.0}}, "unknown churn field(s) rate; known: create_share, drop_share,"),
        ({"churn": {"rate_per_hour": "1"}}, "churn: rate_per_hour must be >= 0 and every share within 0..1"),
        ({"churn": [1.0]}, "churn must be a rate (changes per athlete per hour), got [1.0]"),
        ({"rate_limits": {"read": 100}}, "rate_limits: read must be two whole numbers (per 15 min, per day), got 100"),
        ({"rate_limits": {"reads": (100, 1000)}}, "unknown rate_limits field(s) reads; known: overall, read"),
        ({"rate_limits": ("100", "1000")}, "rate_limits: read must be two whole numbers (per 15 min, per day)"),
        ({"rate_limits": (100.5, 1000)}, "rate_limits: read must be two whole numbers (per 15 min, per day)"),
        ({"latency": "0.4s"}, "latency must be seconds (0.4) or 'lognormal:MEDIAN,SIGMA', got '0.4s'"),
        ({"faults": "error_rate=0.1"}, "faults must be a dict of its fields, got 'error_rate=0.1'"),
        ({"poll": 30}, "poll must be a dict of its fields, got 30"),
    ],
)
def test_what_cannot_be_simulated_is_refused_in_one_line(options: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        simulate(**{"athletes": 2, **options})
    assert said in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda: compare(strategies=(), athletes=2), "strategies must name at least one, got none"),
        (lambda: compare(seeds=(), athletes=2), "seeds must be a non-empty sequence of whole numbers, got ()"),
        (lambda: compare(athletes=2, processes=0), "processes must be a whole number >= 1 (or None: every core)"),
        (
            lambda: compare(athletes=2, strategy_options={"resumble": {"tick_s": 60}}),
            "strategy_options names resumble, not among the strategies compared (waituntil, resumable, worker)",
        ),
        (
            lambda: compare(athletes=2, strategy_options={"resumable": 60}),
            "strategy_options must map a strategy to a dict of its options, got {'resumable': 60}",
        ),
        (lambda: reference_sweep(athletes=2, launch_day="no"), "launch_day must be True or False, got 'no'"),
        # -3 used to slice the reference workload from its end: a sweep of 997 athletes
        (lambda: reference_sweep(athletes=-3), "athletes must be a whole number >= 1, got -3"),
    ],
)
def test_what_cannot_be_compared_is_refused_before_any_run(call: Callable[[], object], said: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(said)):
        call()


def test_a_single_name_is_one_choice_not_a_sequence_of_letters() -> None:
    comparison = compare(platforms="hobby", strategies="resumable", athletes=2, processes=1)
    assert set(comparison.jobs["strategy"]) == {"resumable"} and set(comparison.jobs["platform"]) == {"hobby"}


def test_a_workload_arriving_after_the_run_ends_is_refused() -> None:
    """An athlete arriving after ``max_sim_s`` would never be simulated, and the metrics would judge the others
    alone (a p99 latency of nothing, reported as failed)."""
    late = Workload.from_rows([WorkloadRow(0, 10, 0.0), WorkloadRow(1, 10, 90_000.0)], name="late")
    with pytest.raises(
        InvalidInput,
        match=re.escape("workload 'late' has a row arriving at 90000 s, after the run ends (max_sim_s 86400 s)"),
    ):
        simulate(workload=late, max_sim_s=86_400.0)
