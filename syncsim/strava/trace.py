"""A record of every request the Strava client sends: what, when, how long, and how it ended.

The trace is how a real sync calibrates the simulator's latency model, and how a notebook shows where time
went. It holds endpoint *templates* (``/activities/{id}``) and numbers only: never a token, a query string,
a request body or a response body.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Trace", "TraceRecord"]


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One HTTP attempt to Strava.

    ``ts`` is when it was sent (UTC epoch seconds), ``latency_s`` how long until the answer or the error
    (seconds, on the client's clock). ``status`` is ``None`` when no response came (timeout, connection
    error). ``usage_*`` are the ``X-RateLimit-Usage`` / ``X-ReadRateLimit-Usage`` values of the response.
    ``error`` is the class name of the syncsim or httpx error this attempt ended in, if any.
    """

    ts: float
    method: str
    endpoint: str
    status: int | None
    latency_s: float
    attempt: int = 1
    page: int | None = None
    items: int | None = None
    usage_15min: int | None = None
    usage_daily: int | None = None
    read_usage_15min: int | None = None
    read_usage_daily: int | None = None
    error: str | None = None


class Trace:
    """An append-only list of :class:`TraceRecord`, shared by any number of clients."""

    def __init__(self) -> None:
        self._records: list[TraceRecord] = []

    def add(self, record: TraceRecord) -> None:
        """Append one attempt."""
        self._records.append(record)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every attempt as a plain dict, in the order sent (JSON- and DataFrame-ready)."""
        return [asdict(r) for r in self._records]

    def to_dataframe(self) -> pd.DataFrame:
        """The records as a pandas DataFrame, one row per attempt (needs the ``sim`` extra)."""
        import pandas as pd

        columns = list(TraceRecord.__dataclass_fields__)
        return pd.DataFrame(self.records, columns=columns)

    def to_csv(self, path: str | Path) -> Path:
        """Write the records as CSV (one row per attempt, no tokens) — what the simulator calibrates from."""
        import csv

        path = Path(path)
        columns = list(TraceRecord.__dataclass_fields__)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.records)
        return path

    @staticmethod
    def latencies_from_csv(path: str | Path, *, endpoint: str = "/athlete/activities") -> list[float]:
        """The answered requests' latencies (seconds) of ``endpoint`` in a trace CSV."""
        import csv

        with Path(path).open(newline="") as fh:
            return [
                float(row["latency_s"])
                for row in csv.DictReader(fh)
                if row["endpoint"] == endpoint and row["status"] not in ("", "None")
            ]

    def latency_summary(self) -> dict[str, dict[str, float]]:
        """Per endpoint: ``count``, ``mean``, ``p50``, ``p90``, ``p99`` and ``max`` latency in seconds.

        Only attempts that got a response count; timeouts would measure the timeout, not Strava.
        """
        by_endpoint: dict[str, list[float]] = {}
        for r in self._records:
            if r.status is not None:
                by_endpoint.setdefault(r.endpoint, []).append(r.latency_s)
        return {endpoint: _summary(values) for endpoint, values in sorted(by_endpoint.items())}


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "count": float(len(ordered)),
        "mean": sum(ordered) / len(ordered),
        "p50": _quantile(ordered, 0.50),
        "p90": _quantile(ordered, 0.90),
        "p99": _quantile(ordered, 0.99),
        "max": ordered[-1],
    }


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of a sorted, non-empty list."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
