"""Validation (issue #5): one small workload in the simulator and for real over loopback must agree.

The real side is ``syncsim fake-strava`` and ``syncsim serve`` as subprocesses on loopback, every time scaled by
0.5 (about 20 s); the simulator is calibrated from what that run measured (the server's Strava trace, the store's call
time). Outcomes, attempts and invocations must agree exactly, and the p50/p95 of the time to complete within
5 %. Method and known limits: :mod:`syncsim.sim.validation`; the same run as a table: ``benchmarks/validate.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncsim.sim.validation import Comparison, RealRun, Setup, calibrated_latency, simulated_run, validate


@pytest.mark.skipif(
    os.environ.get("SYNCSIM_VALIDATE") != "1",
    reason="wall-clock run, sensitive to a loaded machine: set SYNCSIM_VALIDATE=1 to run it",
)
def test_the_simulator_agrees_with_a_real_run_over_loopback(tmp_path: Path) -> None:
    comparison = validate(Setup(), workdir=tmp_path)
    print(comparison.describe(), comparison.table(), sep="\n")
    real, sim = comparison.real.jobs, comparison.sim
    assert [r["status"] for r in real] == [s["status"] for s in sim]
    assert [r["attempts"] for r in real] == [s["attempts"] for s in sim]
    assert [r["runs"] for r in real] == [s["runs"] for s in sim]
    for q in (50, 95):
        real_q, sim_q = comparison.percentile(q)
        assert sim_q == pytest.approx(real_q, rel=0.05), f"p{q}: real {real_q:.3f} s, simulated {sim_q:.3f} s"


def test_the_comparison_fails_when_the_simulator_is_off() -> None:
    """The comparison itself (no real run): a made-up real run, against the simulator calibrated from it."""
    setup = Setup(activities=(120, 900), sim_seeds=2)
    page = {"endpoint": "/athlete/activities", "status": "200", "error": ""}
    made_up = RealRun(jobs=[], trace=[{**page, "latency_s": "0.1"}] * 8, store_call_s=0.0, wall_s=0.0)
    assert calibrated_latency(made_up).median_s == pytest.approx(0.1)
    sim = simulated_run(setup, made_up)
    assert [(s["status"], s["attempts"], s["runs"]) for s in sim] == [("completed", 1, 1)] * 2
    assert [s["ttc"] for s in sim] == pytest.approx([0.3, 0.7], abs=0.01)  # 3 and 7 list requests of 0.1 s
    same = RealRun(jobs=[dict(s) for s in sim], trace=made_up.trace, store_call_s=0.0, wall_s=0.0)
    assert Comparison(setup=setup, real=same, sim=sim, latency=calibrated_latency(made_up)).ok
    slower = RealRun(jobs=[{**s, "ttc": s["ttc"] * 1.06} for s in sim], trace=made_up.trace, store_call_s=0, wall_s=0)
    off = Comparison(setup=setup, real=slower, sim=sim, latency=calibrated_latency(made_up))
    assert off.outcomes_agree and not off.within(50) and not off.ok
    assert "validation FAILED" in off.table()
    retried = RealRun(jobs=[{**s, "attempts": 2} for s in sim], trace=made_up.trace, store_call_s=0, wall_s=0)
    assert not Comparison(setup=setup, real=retried, sim=sim, latency=calibrated_latency(made_up)).ok
