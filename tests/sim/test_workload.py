"""Workloads: heavy-tailed histories, arrival patterns, CSV round trips and the committed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncsim.errors import InvalidInput
from syncsim.sim import Workload


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
