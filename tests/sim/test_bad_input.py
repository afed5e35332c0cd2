"""``simulate()`` refuses what it cannot simulate, in one line, before it runs: the notebooks' users call it with
their own numbers, and a NaN latency, a tick of 0 or an error rate of 2 used to run and print a scorecard (a NaN
churn rate ran forever)."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncsim.errors import ConfigError, InvalidInput
from syncsim.platforms import platform_spec
from syncsim.sim import Workload, compare, reference_sweep, simulate
from syncsim.sim import workload as workload_module
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
        ({"latency": True}, "latency must be seconds (0.4) or 'lognormal:MEDIAN,SIGMA', got True"),
        ({"strava_down_s": 600}, "strava_down_s must be (start_s, end_s) with 0 <= start_s <= end_s, got 600"),
        ({"tick": 60}, "unknown simulate option(s): tick (did you mean tick_s?); the options are athletes,"),
        ({"workload": "small", "athletes": 50}, "workload 'small' has 20 athletes, fewer than the 50 asked for"),
        # A limit of -5 s used to answer every POST 504 while api_p99 "passed" at 0 s; 1 s left no time to work.
        ({"platform": "worker-vm"}, "platform 'worker-vm' is the worker strategy's always-on machine"),
        (
            {"platform": platform_spec("hobby").with_limit(1.0)},
            "platform 'hobby': a time limit of 1 s leaves no time within the deadline margin (2 s)",
        ),
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
        # 5,000 of the reference's 1,000 athletes used to run all 1,000
        (lambda: reference_sweep(athletes=5000), "workload 'reference' has 1,000 athletes, fewer than the 5,000"),
        (lambda: reference_sweep(athletes=2, strategies=("bogus",)), "unknown strategy 'bogus'; choose one of:"),
        (lambda: compare(athletes=2, strategies=("worker", "bogus")), "unknown strategy 'bogus'; choose one of:"),
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


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"max_duration_s": -5.0},
            "platform 'hobby': max_duration_s must be seconds > 0, or None for no limit, got -5.0",
        ),
        ({"max_duration_s": math.nan}, "max_duration_s must be seconds > 0, or None for no limit, got nan"),
        ({"max_duration_s": 0}, "max_duration_s must be seconds > 0, or None for no limit, got 0"),
        ({"memory_mb": -1024}, "platform 'hobby': memory_mb must be a whole number >= 1, got -1024"),
        ({"monthly_price_usd": -20.0}, "platform 'hobby': monthly_price_usd must be a finite number >= 0, got -20.0"),
        ({"included_gb_hours": math.inf}, "included_gb_hours must be a finite number >= 0, got inf"),
    ],
)
def test_a_platform_that_cannot_exist_is_refused(change: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        dataclasses.replace(platform_spec("hobby"), **change)


def test_athletes_with_a_workload_runs_its_first_athletes() -> None:
    # It used to be ignored: all 20 athletes of 'small' ran.
    result = simulate(workload="small", athletes=3, platform="hobby", strategy="resumable", rate_limits="approved")
    assert len(result.jobs) == 3 and result.params["workload"] == "small[:3]"
    first = Workload.named("small").syncs[:3]
    assert sorted(result.jobs["activities"]) == sorted(row.activities for row in first)


def test_a_run_larger_than_the_machines_memory_is_refused_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """200,000 athletes used to run for half a minute and end in a bare MemoryError (or the OOM killer)."""
    monkeypatch.setattr(workload_module, "physical_memory", lambda: 2 * 2**30)  # a 2 GB machine
    with pytest.raises(InvalidInput) as sampled:
        simulate(athletes=5_000)
    assert str(sampled.value).startswith("a run of 5,000 sampled athletes would need about 3.")
    assert str(sampled.value).endswith("more than this machine's 2.0 GB: simulate fewer athletes")
    # A workload read from a file: its rows are few, its activities are not.
    heavy = Workload.from_rows([WorkloadRow(0, 5_000_000, 0.0)], name="heavy")
    with pytest.raises(InvalidInput, match=re.escape("workload 'heavy' (5,000,000 activities) would need about 6.")):
        simulate(workload=heavy)
    # Two runs that each fit, at once in two processes, do not.
    pair = Workload.from_rows([WorkloadRow(0, 1_000_000, 0.0)], name="pair")
    with pytest.raises(InvalidInput, match=re.escape("2 runs at once would need about 2.7 GB")) as together:
        compare(workload=pair, platforms=("hobby",), strategies=("worker", "resumable"), processes=2)
    assert "processes=1 runs them one after another" in str(together.value)


def test_a_spreadsheets_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("athlete,activities,arrival_s\n0,100,0\n1,50,2.5\n", encoding="utf-8-sig")
    assert [(r.athlete, r.activities) for r in Workload.from_csv(path).syncs] == [(0, 100), (1, 50)]


def test_a_second_sync_row_of_an_athlete_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("# two syncs of athlete 1\nathlete,activities,arrival_s\n0,100,0\n1,100,0\n1,300,5\n")
    with pytest.raises(InvalidInput, match=re.escape(f"{path}, line 5: athlete 1 has a sync row already")):
        Workload.from_csv(path)


def test_a_sweep_of_some_strategies_takes_the_reference_options_of_those() -> None:
    # strategies=("worker",) used to fail: the reference's options for resumable named a strategy not compared.
    sweep = reference_sweep(athletes=2, strategies=("worker",), launch_day=False, processes=1, keep_events=False)
    assert set(sweep.jobs["strategy"]) == {"worker"}
