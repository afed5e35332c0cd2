"""The charts draw what the notebooks rely on, from contract-shaped tables, and survive empty ones."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from syncsim import plots  # noqa: E402
from syncsim.sim.results import (  # noqa: E402
    BUDGET_COLUMNS,
    EVENT_COLUMNS,
    JOB_COLUMNS,
    METRIC_COLUMNS,
    SUCCESS_METRICS,
)

PLATFORMS = ("hobby", "pro")
STRATEGIES = ("waituntil", "resumable", "worker")


def synthetic_jobs(athletes: int = 30, seed: int = 0) -> pd.DataFrame:
    """A Comparison-shaped jobs table: heavy users on hobby/waituntil are killed and never complete."""
    rng = random.Random(seed)
    rows = []
    for platform in PLATFORMS:
        for strategy in STRATEGIES:
            for i in range(athletes):
                activities = min(5000, int(math.exp(rng.gauss(math.log(150), 1.2))))
                seconds = 0.5 + activities / 40
                killed = 1 if platform == "hobby" and strategy == "waituntil" and seconds > 10 else 0
                completed = not killed
                rows.append(
                    {
                        "user_id": f"user-{i:03d}",
                        "activities": activities,
                        "platform": platform,
                        "strategy": strategy,
                        "seed": seed,
                        "status": "completed" if completed else "running",
                        "attempts": 1 + (i % 3 == 0),
                        "invocations": 1 + killed,
                        "api_latency_s": 0.05 + rng.random() * 0.3,
                        "time_to_complete_s": seconds if completed else math.nan,
                        "timed_out": bool(killed) or (platform == "hobby" and strategy == "resumable" and seconds > 10),
                        "killed_invocations": killed,
                        "activities_synced": activities if completed else 0,
                        "strava_requests": activities // 200 + 1,
                        "rate_limited": 0,
                        "compute_s": seconds,
                        "error": None,
                        "stuck": not completed,
                    }
                )
    return pd.DataFrame(rows, columns=list(JOB_COLUMNS))


def synthetic_events() -> pd.DataFrame:
    # as the simulator logs them: an invocation starts before anyone knows whose job it runs (no user)
    rows = [
        (0.0, None, None, "invocation_start", "invocation 1"),
        (0.0, "u1", "j1", "submit", "0.005"),
        (0.2, "u1", "j1", "claimed", "attempt 1"),
        (3.0, "u1", "j1", "checkpoint", "page 1"),
        (0.0, None, None, "invocation_start", "invocation 2"),
        (0.0, "u2", "j2", "submit", "0.005"),
        (1.0, "u2", "j2", "completed", ""),
        (1.0, "u2", "j2", "invocation_end", "invocation 2"),
        (10.0, "u1", "j1", "killed", "deadline"),
        (10.0, "u1", "j1", "invocation_end", "invocation 1"),
        (12.0, None, None, "invocation_start", "invocation 3"),
        (12.0, "u1", "j1", "poll", "running"),
        (14.0, "u1", "j1", "rate_limited", "RateLimited: wait 60 s"),
        (80.0, "u1", "j1", "completed", ""),
        (80.0, "u1", "j1", "invocation_end", "invocation 3"),
    ]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def synthetic_budget() -> pd.DataFrame:
    rows = [(t * 60.0, min(100, t * 9) % 101, 100, t * 9, 1000) for t in range(40)]
    return pd.DataFrame(rows, columns=list(BUDGET_COLUMNS))


def synthetic_metrics() -> pd.DataFrame:
    rows = []
    for platform in PLATFORMS:
        for strategy in STRATEGIES:
            for name, target in SUCCESS_METRICS:
                passed = not (platform == "hobby" and strategy == "waituntil" and name != "api_p99_under_1s")
                if strategy == "worker" and name == "zero_extra_cost":
                    passed = False
                rows.append((platform, strategy, 0, name, target, 0.42 if passed else 0.0, passed))
    return pd.DataFrame(rows, columns=["platform", "strategy", "seed", *METRIC_COLUMNS])


def axis_labels(fig: Figure) -> list[tuple[str, str]]:
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]


def line_positions(fig: Figure) -> set[float]:
    """x of vertical lines and y of horizontal lines drawn across any axes."""
    positions: set[float] = set()
    for ax in fig.axes:
        for line in ax.get_lines():
            x, y = line.get_xdata(), line.get_ydata()
            if len(x) == 2 and x[0] == x[1]:
                positions.add(float(x[0]))
            if len(y) == 2 and y[0] == y[1]:
                positions.add(float(y[0]))
    return positions


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_latency_cdf_draws_one_curve_per_run_and_the_one_second_target() -> None:
    fig = plots.latency_cdf(synthetic_jobs())
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert "(s)" in ax.get_xlabel() and ax.get_ylabel()
    assert 1.0 in line_positions(fig)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("p99" in entry for entry in legend) == len(PLATFORMS) * len(STRATEGIES)


def test_time_to_complete_draws_the_platform_limits_and_marks_unfinished_jobs() -> None:
    fig = plots.time_to_complete(synthetic_jobs(), platforms=["hobby", "pro"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert "activities" in ax.get_xlabel() and "(s" in ax.get_ylabel()
    assert {10.0, 300.0} <= line_positions(fig)
    assert any("hobby limit 10 s" in t for t in texts(fig))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(entry.startswith("never completed") for entry in legend)
    assert "an invocation was killed" in legend


def test_attempts_and_retries_shows_shares_per_run() -> None:
    fig = plots.attempts_and_retries(synthetic_jobs())
    assert len(fig.axes) == 2
    for xlabel, ylabel in axis_labels(fig):
        assert xlabel and ylabel == "share of jobs"
    heights = [patch.get_height() for patch in fig.axes[0].patches]
    assert max(heights) <= 1.0 and sum(heights) == pytest.approx(len(PLATFORMS) * len(STRATEGIES))


def test_job_timeline_defaults_to_the_athlete_with_a_killed_invocation() -> None:
    fig = plots.job_timeline(synthetic_events())
    ax = fig.axes[0]
    assert "u1" in ax.get_title()
    assert "(s)" in ax.get_xlabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"invocation (killed)", "invocation", "killed", "rate_limited", "completed"} <= set(legend)
    bars = [tuple(map(float, path.vertices[:, 0].round(3))) for coll in ax.collections for path in coll.get_paths()]
    assert any(0.0 in xs and 10.0 in xs for xs in bars) and any(12.0 in xs and 80.0 in xs for xs in bars)


def test_rate_limit_budget_draws_usage_against_both_limits() -> None:
    fig = plots.rate_limit_budget(synthetic_budget())
    assert len(fig.axes) == 2
    assert all(xlabel.endswith("(min)") and ylabel for xlabel, ylabel in axis_labels(fig))
    limits = [max(line.get_ydata()) for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert limits == [100, 1000]


def test_scorecard_colours_each_cell_and_annotates_its_value() -> None:
    fig = plots.scorecard(synthetic_metrics())
    ax = fig.axes[0]
    cells = ax.patches
    assert len(cells) == len(PLATFORMS) * len(STRATEGIES) * len(SUCCESS_METRICS)
    failed = [t for t in texts(fig) if t.startswith("✗")]
    assert len(failed) == 4 + 2  # hobby/waituntil's four, and the worker's cost on both platforms
    assert ax.get_yticklabels()[0].get_text() == "hobby / waituntil"
    assert ax.get_xlabel() and ax.get_ylabel()


def test_scorecard_cells_give_each_value_with_its_unit() -> None:
    """A cell says what its number is (not a bare "5" or "3"), and a paid plan that passed all four metrics says
    that the plan is what failed ``works_on_free_tier``."""
    metrics = synthetic_metrics()
    metrics.loc[metrics["metric"] == "zero_extra_cost", "value"] = 0.0
    metrics.loc[(metrics["strategy"] == "worker") & (metrics["metric"] == "zero_extra_cost"), "value"] = 5.0
    free = metrics["metric"] == "works_on_free_tier"
    metrics.loc[free, "value"] = 4.0
    metrics.loc[free & (metrics["platform"] == "pro"), "passed"] = False
    cells = set(texts(plots.scorecard(metrics)))
    assert {"✓ 420 ms", "✗ 0.0% complete", "✓ 42.0% complete", "✗ US$5.00/month", "✓ US$0.00/month"} <= cells
    assert {"✓ 4 of 4 passed", "✗ 4 of 4, not a free plan"} <= cells
    table = plots.scorecard_table(metrics)
    assert table.loc["pro / resumable", "works_on_free_tier"] == "✗ 4 of 4, not a free plan"
    assert table.loc["hobby / resumable", "api_p99_under_1s"] == "✓ 420 ms"


def test_scorecard_of_a_single_run_has_one_row() -> None:
    single = synthetic_metrics().query("platform == 'pro' and strategy == 'worker'")[list(METRIC_COLUMNS)]
    fig = plots.scorecard(single)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["this run"]


@pytest.mark.parametrize(
    ("chart", "columns"),
    [
        (plots.latency_cdf, JOB_COLUMNS),
        (plots.time_to_complete, JOB_COLUMNS),
        (plots.attempts_and_retries, JOB_COLUMNS),
        (plots.job_timeline, EVENT_COLUMNS),
        (plots.rate_limit_budget, BUDGET_COLUMNS),
        (plots.scorecard, METRIC_COLUMNS),
    ],
)
def test_every_chart_draws_an_empty_table_and_says_so(chart, columns, tmp_path: Path) -> None:
    fig = chart(pd.DataFrame(columns=list(columns)))
    assert isinstance(fig, Figure)
    assert any(t.startswith("no ") for t in texts(fig))
    assert plots.save_figure(fig, tmp_path / "empty.png").stat().st_size > 0


@pytest.mark.parametrize("chart", [plots.latency_cdf, plots.time_to_complete, plots.attempts_and_retries])
def test_a_jobs_chart_of_a_table_without_columns_says_it_is_empty(chart) -> None:
    # pd.DataFrame() (what a run with no jobs gives a user filtering it): latency_cdf raised KeyError.
    fig = chart(pd.DataFrame())
    assert any(t.startswith("no ") for t in texts(fig))


def test_time_to_complete_keeps_the_limit_lines_on_an_empty_table() -> None:
    fig = plots.time_to_complete(pd.DataFrame(columns=list(JOB_COLUMNS)), platforms=["hobby", "pro"])
    assert {10.0, 300.0} <= line_positions(fig)


def test_charts_draw_on_a_given_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.latency_cdf(synthetic_jobs(), ax=ax) is fig
    assert ax.get_lines()


def test_save_figure_writes_a_png(tmp_path: Path) -> None:
    path = plots.save_figure(plots.scorecard(synthetic_metrics()), tmp_path / "sub" / "scorecard.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sync_progress_draws_newest_page_and_whole_history_per_run_and_stops_short_for_unfinished() -> None:
    jobs = synthetic_jobs().assign(time_to_first_page_s=lambda f: f["time_to_complete_s"].fillna(5.0) / 4)
    runs = {"tick": jobs, "no tick": jobs.assign(time_to_complete_s=float("nan"))}
    fig = plots.sync_progress(runs)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "share of athletes" and ax.get_xlabel().endswith("(min)")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["tick: newest activities", "tick: whole history", "no tick: newest activities"]
    finished = 1 - jobs["time_to_complete_s"].isna().mean()
    tops = [max(line.get_ydata()) for line in ax.get_lines()]
    assert tops == pytest.approx([1.0, finished, 1.0])


def test_divergence_sums_missing_extra_and_stale_over_time() -> None:
    table = pd.DataFrame({"t_s": [0.0, 600.0, 1200.0], "missing": [0, 3, 0], "extra": [0, 1, 0], "stale": [0, 2, 1]})
    fig = plots.divergence({"no reconcile": table, "empty": table.iloc[0:0]})
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == [0, 6, 1] and list(line.get_xdata()) == [0.0, 10.0, 20.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no reconcile"]
    assert "no " in " ".join(texts(plots.divergence({"x": table.iloc[0:0]})))
