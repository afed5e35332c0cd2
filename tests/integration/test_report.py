"""`syncsim report`: the charts as PNGs and a markdown summary, for people without Jupyter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_report_writes_the_charts_and_a_summary_with_the_scorecard(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "syncsim.cli", "report", "--out", str(out), "--athletes", "12", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = (out / "report.md").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 5
    for png in pngs:
        assert f"({png})" in summary  # every chart is linked from the summary
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for metric in ("api_p99_under_1s", "heavy_syncs_complete", "no_timeout_errors", "works_on_free_tier"):
        assert metric in summary
    assert "resumable" in summary and "waituntil" in summary


def test_report_refuses_a_bad_size_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syncsim.cli", "report", "--out", str(tmp_path), "--athletes", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_report_of_some_strategies_only_keeps_the_reference_options_of_those(tmp_path: Path) -> None:
    """The reference sweep's options name ``resumable`` (its tick); a report without it must not pass them on
    (``compare`` refuses options for a strategy it does not run)."""
    from syncsim.plots.report import write_report

    summary = write_report(tmp_path, athletes=3, platforms=("hobby",), strategies=("waituntil",)).read_text()
    assert "platforms hobby; strategies waituntil;" in summary
