"""The result contract: determinism, the metrics table, compare() and the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from syncsim.cli.simulate import register_cli, simulate_command
from syncsim.sim import Workload, compare, simulate
from syncsim.sim.results import COST_COLUMNS, JOB_COLUMNS, METRIC_COLUMNS, SUCCESS_METRICS, Comparison, describe_value
from syncsim.sim.workload import WorkloadRow

TINY = Workload.from_rows([WorkloadRow(0, 50, 0.0), WorkloadRow(1, 5000, 1.5)], name="tiny")


def test_the_same_seed_gives_an_identical_jobs_table_and_another_seed_does_not() -> None:
    options = dict(
        athletes=12, platform="hobby", strategy="resumable", latency="lognormal:0.4,0.5", faults={"error_rate": 0.1}
    )
    a, b = simulate(seed=5, **options), simulate(seed=5, **options)
    pd.testing.assert_frame_equal(a.jobs, b.jobs)
    assert a.events[["t_s", "kind"]].equals(b.events[["t_s", "kind"]])
    c = simulate(seed=6, **options)
    assert not a.jobs.equals(c.jobs)


def test_metrics_on_a_tiny_launch_show_waituntil_failing_on_hobby() -> None:
    result = simulate(workload=TINY, platform="hobby", strategy="waituntil", latency=1.0, poll={"give_up_s": 300})
    assert list(result.jobs.columns) == list(JOB_COLUMNS)
    assert list(result.cost.columns) == list(COST_COLUMNS)
    metrics = result.metrics.set_index("metric")
    assert list(result.metrics.columns) == list(METRIC_COLUMNS)
    assert list(metrics.index) == [name for name, _ in SUCCESS_METRICS]
    assert metrics.loc["api_p99_under_1s", "value"] == pytest.approx(0.005, abs=1e-6)  # one store round trip
    assert metrics.loc["heavy_syncs_complete", "value"] == 0.0  # the 5,000-activity sync was killed at 10 s
    assert metrics.loc["no_timeout_errors", "value"] == 1.0
    assert metrics.loc["zero_extra_cost", "value"] == 0.0
    assert metrics.loc["works_on_free_tier", "value"] == 2.0  # two of the four passed
    assert list(metrics["passed"]) == [True, False, False, True, False]
    light, heavy = result.jobs.iloc[0], result.jobs.iloc[1]
    assert light["status"] == "completed" and heavy["status"] == "running" and heavy["stuck"]


def test_resumable_passes_everything_on_hobby_and_worker_costs_a_vm() -> None:
    resumable = simulate(workload=TINY, platform="hobby", strategy="resumable", latency=1.0)
    assert resumable.passed, resumable.metrics
    worker = simulate(workload=TINY, platform="hobby", strategy="worker", latency=1.0)
    metrics = worker.metrics.set_index("metric")
    assert metrics.loc["heavy_syncs_complete", "passed"]
    assert metrics.loc["zero_extra_cost", "value"] == 5.0 and not metrics.loc["zero_extra_cost", "passed"]
    assert worker.cost.loc[0, "monthly_cost_usd"] == 5.0 and not worker.cost.loc[0, "within_free_tier"]


def test_pro_is_not_free_but_costs_nothing_extra() -> None:
    result = simulate(workload=TINY, platform="pro", strategy="waituntil", latency=1.0)
    metrics = result.metrics.set_index("metric")
    assert metrics.loc["zero_extra_cost", "passed"] and not metrics.loc["works_on_free_tier", "passed"]
    assert result.cost.loc[0, "monthly_cost_usd"] == 20.0


def test_a_killed_worker_loses_no_job() -> None:
    result = simulate(workload=TINY, platform="hobby", strategy="worker", latency=1.0, worker_kill_at_s=5.0)
    assert (result.jobs["status"] == "completed").all()
    assert (result.jobs["activities_synced"] == result.jobs["activities"]).all()
    # The lease lapsed and the restarted worker took it over; the kill was a crash, not a spent attempt.
    assert (result.jobs.loc[1, "invocations"], result.jobs.loc[1, "attempts"]) == (2, 1)


def test_compare_runs_every_platform_and_strategy_in_processes() -> None:
    sweep = compare(
        workload=TINY, platforms=("hobby", "pro"), strategies=("waituntil", "resumable"), latency=1.0, processes=2
    )
    assert len(sweep.metrics) == 4 * len(SUCCESS_METRICS)
    assert len(sweep.jobs) == 4 * 2 and {"platform", "strategy", "seed"} <= set(sweep.jobs.columns)
    card = sweep.scorecard()
    assert card.shape == (4, len(SUCCESS_METRICS) + 1)
    assert bool(card.loc[("hobby", "resumable"), "passed_all"]) and not card.loc[("hobby", "waituntil"), "passed_all"]
    # The value that decided each metric, with its unit, rows in the sweep's order.
    values = sweep.values()
    runs = [(p, s) for p in ("hobby", "pro") for s in ("waituntil", "resumable")]
    assert list(values.index) == list(card.index) == runs
    assert list(values.columns) == [name for name, _ in SUCCESS_METRICS]
    assert values.loc[("hobby", "resumable")].tolist() == [
        "5 ms",
        "100.0% complete",
        "0 jobs timed out",
        "US$0.00/month",
        "4 of 4 passed",
    ]
    assert values.loc[("hobby", "waituntil"), "heavy_syncs_complete"] == "0.0% complete"
    assert values.loc[("pro", "resumable"), "works_on_free_tier"] == "4 of 4, not a free plan"


def test_values_over_seeds_show_the_value_that_failed_the_metric() -> None:
    # Seed 0 passed, seeds 1 and 2 failed: the scorecard fails the metric, so the value shown is seed 1's.
    metrics = pd.DataFrame(
        [
            ("hobby", strategy, seed, "heavy_syncs_complete", value, value == 1.0)
            for strategy in ("waituntil", "resumable")
            for seed, value in enumerate((1.0, 0.75, 0.5) if strategy == "waituntil" else (1.0, 1.0, 1.0))
        ],
        columns=["platform", "strategy", "seed", "metric", "value", "passed"],
    )
    sweep = Comparison(jobs=pd.DataFrame(), metrics=metrics, cost=pd.DataFrame())
    assert not sweep.scorecard().loc[("hobby", "waituntil"), "heavy_syncs_complete"]
    values = sweep.values()
    assert list(values.index) == [("hobby", "waituntil"), ("hobby", "resumable")]
    assert values.loc[("hobby", "waituntil"), "heavy_syncs_complete"] == "75.0% complete"
    assert values.loc[("hobby", "resumable"), "heavy_syncs_complete"] == "100.0% complete"


def test_the_budget_table_ends_with_the_runs_last_reads() -> None:
    # 8 athletes' syncs end a few seconds after the 60 s sample: the table's last row counts every read.
    result = simulate(athletes=8, strategy="resumable", tick_s=60, seed=3)
    last = result.budget.iloc[-1]
    assert last["t_s"] == pytest.approx(result.params["simulated_s"], abs=1e-3)
    assert last["read_day"] == result.params["strava_requests"] > result.budget.iloc[-2]["read_day"]


@pytest.mark.parametrize(
    ("metric", "value", "passed", "text"),
    [
        ("api_p99_under_1s", 0.0049, True, "5 ms"),
        ("api_p99_under_1s", 1.234, False, "1.23 s"),
        ("heavy_syncs_complete", 0.099, False, "9.9% complete"),
        ("no_timeout_errors", 1.0, False, "1 job timed out"),
        ("zero_extra_cost", 5.0, False, "US$5.00/month"),
        ("works_on_free_tier", 3.0, False, "3 of 4 passed"),
        ("works_on_free_tier", 4.0, True, "4 of 4 passed"),
        ("works_on_free_tier", 4.0, False, "4 of 4, not a free plan"),
        ("works_on_free_tier", 4.0, None, "4 of 4 passed"),
        ("heavy_syncs_complete", float("nan"), False, "n/a"),
    ],
)
def test_a_metric_value_reads_with_its_unit(metric: str, value: float, passed: bool | None, text: str) -> None:
    assert describe_value(metric, value, passed) == text


def test_a_sweep_sharing_strava_pages_gives_the_runs_it_gives_alone() -> None:
    strategies = ("worker", "resumable")
    sweep = compare(workload=TINY, platforms=("hobby",), strategies=strategies, latency=1.0, processes=1)
    for strategy in strategies:
        alone = simulate(workload=TINY, platform="hobby", strategy=strategy, latency=1.0).jobs
        shared = sweep.jobs[sweep.jobs["strategy"] == strategy].reset_index(drop=True)
        pd.testing.assert_frame_equal(shared, alone)
    assert sweep.params["runs"][0]["strava_requests"] == sweep.params["runs"][1]["strava_requests"] > 0


def cli_args(**given: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    handlers = register_cli(parser.add_subparsers(dest="command"))
    assert set(handlers) == {"simulate"}
    argv = ["simulate"]
    for key, value in given.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return parser.parse_args(argv)


def test_cli_prints_the_metric_table_and_writes_the_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "jobs.csv"
    code = simulate_command(cli_args(athletes=5, platform="hobby", strategy="resumable", latency=0.3, out=out))
    printed = capsys.readouterr().out
    assert code == 0 and "hobby / resumable: 5 athletes" in printed
    for name, _ in SUCCESS_METRICS:
        assert name in printed
    assert list(pd.read_csv(out).columns) == list(JOB_COLUMNS)
    assert simulate_command(cli_args(athletes=3, latency="lognormal:0.3,0.4", json=True)) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["metric"] for m in data["metrics"]] == [name for name, _ in SUCCESS_METRICS]


def test_cli_errors_are_one_line_and_exit_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_command(cli_args(athletes=2, latency="fast")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("syncsim simulate: error:") and "latency" in err
    assert simulate_command(cli_args(workload="no-such-workload")) == 2
    assert "unknown workload" in capsys.readouterr().err
    # --processes is the sweep's: with run flags it used to be ignored in silence.
    assert simulate_command(cli_args(athletes=2, processes=2)) == 2
    assert "--processes is for the reference sweep (no run flags)" in capsys.readouterr().err


def test_cli_faults_and_churn_reach_fakestrava(capsys: pytest.CaptureFixture[str]) -> None:
    """``--faults`` and ``--churn`` set what Strava gets wrong and how histories change; bad ones are one line."""
    options = {"athletes": 20, "strategy": "resumable", "rate_limits": "approved", "latency": 0.8, "json": True}
    faults = "error_rate=0.1, timeout_rate=0.05"
    given = {"faults": faults, "churn": 2.0, "strava_down": "5,65", "strava_clock_behind": -0.25}
    assert simulate_command(cli_args(**options, **given)) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    assert params["strava_down_s"] == [5.0, 65.0]
    assert params["strava_clock_behind_s"] == -0.25
    counts = params["fake_counts"]
    assert counts["errors_5xx"] > 0 and counts["timeouts"] > 0
    assert "error_rate=0.1" in params["faults"] and "timeout_rate=0.05" in params["faults"]
    assert "rate_per_hour=2.0" in params["churn"]
    for bad, said in [
        ("timeout_rate=2", "--faults timeout_rate must be a rate in [0, 1]"),
        ("error_rate", "--faults error_rate must be a rate in [0, 1]"),
        ("hang=0.1", "--faults knows error_rate, timeout_rate, short_pages, malformed_pages, not 'hang'"),
        (",", "--faults needs NAME=RATE"),
    ]:
        assert simulate_command(cli_args(athletes=2, faults=bad)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err
    assert simulate_command(cli_args(athletes=2, churn=-1.0)) == 2
    assert "--churn must be changes per athlete per hour" in capsys.readouterr().err
    assert simulate_command(cli_args(athletes=2, strava_down="60")) == 2
    assert "--strava-down must be START,END in seconds" in capsys.readouterr().err
    assert simulate_command(cli_args(athletes=2, strava_down="60,30")) == 2
    assert "strava_down_s must be (start_s, end_s)" in capsys.readouterr().err
    assert simulate_command(cli_args(athletes=2, strava_clock_behind=900)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "strava_clock_behind_s must be seconds within a rate-limit window" in err


def test_cli_tick_and_give_up_finish_a_budget_bound_launch(capsys: pytest.CaptureFixture[str]) -> None:
    """Under default limits browsers that leave after 10 minutes leave heavy syncs pending; a tick finishes them."""
    options = {"athletes": 30, "strategy": "resumable", "rate_limits": "default", "give_up": 600.0, "json": True}
    assert simulate_command(cli_args(**options)) == 0
    without = {m["metric"]: m["value"] for m in json.loads(capsys.readouterr().out)["metrics"]}
    assert simulate_command(cli_args(**options, tick=60.0)) == 0
    ticked = json.loads(capsys.readouterr().out)
    assert without["heavy_syncs_complete"] < 1.0
    assert {m["metric"]: m["value"] for m in ticked["metrics"]}["heavy_syncs_complete"] == 1.0
    assert ticked["params"]["tick_s"] == 60.0
    assert simulate_command(cli_args(athletes=2, tick=-5.0)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tick must be a positive number of seconds" in err
