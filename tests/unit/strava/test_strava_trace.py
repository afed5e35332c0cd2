"""Trace: what each request cost, for notebooks and for calibrating FakeStrava's latency."""

from __future__ import annotations

import pytest

from syncsim.strava.trace import Trace, TraceRecord


def record(endpoint: str, latency_s: float, status: int | None = 200) -> TraceRecord:
    return TraceRecord(ts=0.0, method="GET", endpoint=endpoint, status=status, latency_s=latency_s)


def test_latency_summary_gives_quantiles_per_endpoint_and_ignores_attempts_without_answer() -> None:
    trace = Trace()
    for i in range(1, 101):
        trace.add(record("/athlete/activities", i / 100))
    trace.add(record("/athlete/activities", 10.0, status=None))  # a timeout measures the timeout
    trace.add(record("/athlete", 0.25))
    summary = trace.latency_summary()
    pages = summary["/athlete/activities"]
    assert pages["count"] == 100
    assert pages["p50"] == pytest.approx(0.505)
    assert pages["p99"] == pytest.approx(0.9901)
    assert pages["max"] == 1.0
    assert summary["/athlete"]["mean"] == 0.25


def test_records_and_dataframe_have_one_row_per_attempt_with_stable_columns() -> None:
    trace = Trace()
    trace.add(record("/athlete", 0.1))
    trace.add(TraceRecord(ts=1.0, method="GET", endpoint="/athlete/activities", status=200, latency_s=0.2, page=3))
    assert [r["endpoint"] for r in trace.records] == ["/athlete", "/athlete/activities"]
    frame = trace.to_dataframe()
    assert list(frame.columns) == list(TraceRecord.__dataclass_fields__)
    assert frame["page"].tolist()[1] == 3
    assert len(Trace().to_dataframe()) == 0
