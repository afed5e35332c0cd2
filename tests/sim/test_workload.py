"""Workloads: heavy-tailed histories, arrival patterns, CSV round trips and the committed ones."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from syncsim.errors import InvalidInput
from syncsim.sim import Workload
from syncsim.sim.workload import WorkloadRow


def test_history_sizes_are_heavy_tailed_around_the_public_reports() -> None:
    sizes = sorted(r.activities for r in Workload.sample(athletes=5000, seed=1).syncs)
    median, p99 = sizes[len(sizes) // 2], sizes[int(len(sizes) * 0.99)]
    assert 250 <= median <= 350 and 3000 <= p99 <= 6000 and sizes[-1] <= 20_000


def test_arrivals_launch_poisson_and_webhook() -> None:
    launch = Workload.sample(athletes=100, seed=2)
    assert max(r.arrival_s for r in launch.rows) <= 60.0
    poisson = Workload.sample(athletes=100, seed=2, arrival="poisson", rate_per_hour=60)
    assert 3600 * 0.6 < poisson.syncs[-1].arrival_s < 3600 * 1.5
    hooks = Workload.sample(athletes=50, seed=2, arrival="webhook", updates_per_athlete=2)
    assert hooks.athletes == 50 and len(hooks.webhooks) > 50


def test_csv_round_trip_and_named_workloads(tmp_path: Path) -> None:
    workload = Workload.sample(athletes=30, seed=3, arrival="webhook")
    path = tmp_path / "w.csv"
    workload.to_csv(path, comment="made in a test")
    assert Workload.from_csv(path).rows == workload.rows
    reference = Workload.named("reference")
    assert reference.athletes == 1000 and 450_000 < reference.total_activities < 650_000
    with pytest.raises(InvalidInput, match="unknown workload"):
        Workload.named("nope")


def test_a_webhook_run_syncs_the_new_activities_too() -> None:
    from syncsim.sim import simulate

    workload = Workload.sample(athletes=4, seed=4, arrival="webhook", updates_per_athlete=2, webhook_window_s=600)
    result = simulate(workload=workload, platform="hobby", strategy="resumable", latency=0.2)
    assert (result.jobs["status"] == "completed").all()
    assert (result.events["kind"] == "webhook").sum() == len(workload.webhooks)


def test_webhook_edits_and_deletions_are_drawn_and_survive_a_csv_round_trip(tmp_path: Path) -> None:
    hooks = Workload.sample(
        athletes=40, seed=5, arrival="webhook", updates_per_athlete=3, edit_share=0.3, delete_share=0.2
    )
    aspects = Counter(r.aspect for r in hooks.webhooks)
    assert set(aspects) == {"create", "update", "delete"} and aspects["create"] > aspects["delete"]
    assert all(r.aspect == "create" for r in hooks.rows if r.kind == "sync")
    hooks.to_csv(tmp_path / "hooks.csv")
    assert Workload.from_csv(tmp_path / "hooks.csv").rows == hooks.rows
    # Without edits or deletions the draws are the ones older workloads were made with.
    assert (
        Workload.sample(athletes=40, seed=5, arrival="webhook").rows
        == Workload.sample(athletes=40, seed=5, arrival="webhook", edit_share=0.0).rows
    )
    with pytest.raises(InvalidInput, match="add up to at most 1"):
        Workload.sample(athletes=1, arrival="webhook", edit_share=0.7, delete_share=0.4)


def test_after_a_sync_webhook_edits_and_deletions_keep_the_store_equal_to_strava() -> None:
    from syncsim.sim import simulate

    # Two athletes sync at launch; an hour later, when both syncs are long done, each creates three activities,
    # edits one and deletes one. The store must end with exactly what Strava has.
    rows = [WorkloadRow(0, 450, 0.0), WorkloadRow(1, 120, 0.0)]
    for athlete in (0, 1):
        for i, aspect in enumerate(("create", "update", "delete", "create", "create")):
            rows.append(WorkloadRow(athlete, rows[athlete].activities, 3_600.0 + 60 * i, "webhook", aspect))  # type: ignore[arg-type]
    result = simulate(
        workload=Workload.from_rows(rows, name="edits"), platform="hobby", strategy="resumable", latency=0.2
    )
    jobs = result.jobs.set_index(result.jobs["activities"])
    assert list(jobs["activities_deleted"].loc[[450, 120]]) == [1, 1]
    # history + 3 new - 1 deleted: the new ones arrived through incremental syncs, the deletion by webhook
    assert list(jobs["activities_synced"].loc[[450, 120]]) == [452, 122]
    assert (result.events["kind"] == "webhook").sum() == 10
    assert result.metrics.set_index("metric").loc["heavy_syncs_complete", "passed"]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("1,abc,0", "line 3: activities must be a whole number >= 0, got 'abc'"),
        ("1,-1,0", "line 3: activities must be a whole number >= 0, got '-1'"),
        ("x,10,0", "line 3: athlete must be a whole number, got 'x'"),
        ("1,10", "line 3: arrival_s is missing"),
        ("1,10,nan", "line 3: arrival_s must be a finite number of seconds >= 0, got 'nan'"),
        ("1,10,-2", "line 3: arrival_s must be a finite number of seconds >= 0, got '-2'"),
        ("1,10,0,hook", "line 3: kind must be sync or webhook, got 'hook'"),
        ("1,10,0,webhook,remove", "line 3: aspect must be create, update or delete, got 'remove'"),
        ("1,10,0,sync,create,9", "line 3: 6 fields, the header names fewer"),
    ],
)
def test_a_bad_csv_value_is_refused_with_its_line(tmp_path: Path, line: str, said: str) -> None:
    """A hand-written workload's mistakes are named by line (comments counted), not run: "hook" used to run as a
    sync row and a missing arrival as a Python TypeError."""
    path = tmp_path / "w.csv"
    path.write_text(f"# my launch\nathlete,activities,arrival_s,kind,aspect\n{line}\n")
    with pytest.raises(InvalidInput) as raised:
        Workload.from_csv(path)
    assert str(raised.value) == f"{path}, {said}"


def test_csv_kinds_and_aspects_ignore_case_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("athlete,activities,arrival_s,kind,aspect\n1, 10 ,0,Sync,\n1,0,5, WEBHOOK ,Delete\n")
    rows = Workload.from_csv(path).rows
    assert [(r.activities, r.kind, r.aspect) for r in rows] == [(10, "sync", "create"), (0, "webhook", "delete")]


def test_rows_made_in_code_are_checked_too() -> None:
    with pytest.raises(InvalidInput, match="kind must be sync or webhook"):
        Workload.from_rows([WorkloadRow(0, 10, 0.0, "hook")])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="activities and arrival_s must be finite and >= 0"):
        Workload.from_rows([WorkloadRow(0, 10, float("nan"))])
