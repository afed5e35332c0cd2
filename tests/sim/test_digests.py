"""Same seed, same ``.jobs``: every committed workload's run is pinned by a digest of its jobs table.

A digest changes only when what the simulator computes changes. A commit that changes one says why (a change
of the sync's paging changes request counts, for instance); moving code, or taking speed-ups out of production
code, must not.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from syncsim.sim import simulate

#: workload -> sha256 prefix of its jobs table (hobby, resumable, approved limits, latency 0.4 s, seed 0).
DIGESTS = {
    "small": "2e970120134c3cde",
    "poisson": "c5510a1b3b58bade",
    "webhook": "0e2c1f3f65cb69b5",
    "reference": "73fb1e963be07b9a",
}


def jobs_digest(jobs: pd.DataFrame) -> str:
    """A digest of a jobs table that ignores row order and float noise below 9 significant digits."""
    frame = jobs.sort_values("user_id").reset_index(drop=True)
    return hashlib.sha256(frame.to_csv(index=False, float_format="%.9g").encode()).hexdigest()[:16]


@pytest.mark.parametrize("workload", list(DIGESTS))
def test_each_committed_workload_gives_its_pinned_jobs_table(workload: str) -> None:
    result = simulate(workload=workload, platform="hobby", strategy="resumable", rate_limits="approved", latency=0.4)
    assert jobs_digest(result.jobs) == DIGESTS[workload]


def test_the_digest_sees_a_changed_value() -> None:
    result = simulate(workload="small", platform="hobby", strategy="resumable", rate_limits="approved", latency=0.4)
    changed = result.jobs.copy()
    changed.loc[0, "strava_requests"] += 1
    assert jobs_digest(changed) != jobs_digest(result.jobs)
