"""Workloads: who syncs, how much history each athlete has, and when they arrive.

A workload is a list of *requests*, one per row: an athlete's first full sync (``kind="sync"``) at
``arrival_s`` seconds after the run starts, or a Strava webhook event (``kind="webhook"``) at ``arrival_s``: the
athlete uploaded a new activity (``aspect="create"``), edited one (``"update"``) or deleted one (``"delete"``),
and Strava tells the app.

History sizes are heavy-tailed: ``activities ~ round(exp(N(log(median), sigma)))``, capped at ``max_activities``.
The defaults (median 300, sigma 1.1, cap 20,000) put the public reports of heavy users where they belong:
516 activities at the 69th percentile, 1,585 at the 93rd, 2,000 at the 96th and 4,100 at the 99th; the mean
is ~550, so 1,000 athletes carry ~500,000 activities.

Arrivals: ``launch`` (everyone within ``launch_window_s`` of t = 0, uniformly), ``poisson`` (sign-ups as a
Poisson process of ``rate_per_hour``), ``webhook`` (a launch, then ``updates_per_athlete`` events per athlete at
Poisson times within ``webhook_window_s`` after their sign-up; each an edit with probability ``edit_share``, a
deletion with probability ``delete_share``, else a new activity).
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from syncsim.data import data_dir
from syncsim.errors import InvalidInput
from syncsim.options import whole

__all__ = ["ARRIVALS", "Workload", "WorkloadRow", "check_memory", "run_memory_bytes", "workloads_dir"]

ARRIVALS = ("launch", "poisson", "webhook")
#: Median history size (activities) of a connecting athlete: "a few hundred".
MEDIAN_ACTIVITIES = 300
#: Spread of log(history size); with the median this puts 4,100 activities at the 99th percentile.
SIGMA = 1.1
#: Nobody has more than this (the heaviest public reports are in the low tens of thousands).
MAX_ACTIVITIES = 20_000


#: What a run holds in memory: a base, plus per simulated activity its FakeStrava history, its stored row and the
#: pages it travelled in (peak RSS of 100- and 400-athlete runs, docs/performance.md).
RUN_BASE_BYTES = 130 * 2**20
BYTES_PER_ACTIVITY = 1_340


def run_memory_bytes(activities: float) -> int:
    """About how much memory one run of ``activities`` simulated activities holds at its peak."""
    return int(RUN_BASE_BYTES + activities * BYTES_PER_ACTIVITY)


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the platform does not say (then nothing is checked)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(needed: int, what: str, *, advice: str = "simulate fewer athletes") -> None:
    """Refuse, before any work, a run that would need more memory than the machine has: it would otherwise run
    for minutes, swap, and end in a MemoryError or the kernel's OOM killer."""
    total = physical_memory()
    if total is not None and needed > total:
        raise InvalidInput(
            f"{what} would need about {needed / 2**30:,.1f} GB of memory ({BYTES_PER_ACTIVITY / 1000:.1f} KB per "
            f"simulated activity), more than this machine's {total / 2**30:,.1f} GB: {advice}"
        )


def workloads_dir() -> Path:
    """``data/workloads/``: the named workloads (``Workload.named``)."""
    return data_dir() / "workloads"


@dataclass(frozen=True, slots=True)
class WorkloadRow:
    """One request of a workload: athlete index, their history size, when (seconds after start), and what."""

    athlete: int
    activities: int
    arrival_s: float
    kind: Literal["sync", "webhook"] = "sync"
    #: For a webhook: what the athlete did on Strava.
    aspect: Literal["create", "update", "delete"] = "create"


@dataclass(frozen=True)
class Workload:
    """A workload: rows sorted by arrival time; one ``sync`` row per athlete, any number of ``webhook`` rows."""

    rows: tuple[WorkloadRow, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for row in self.rows:
            if row.activities < 0 or row.arrival_s < 0 or not math.isfinite(row.arrival_s):
                raise InvalidInput(f"workload row {row}: activities and arrival_s must be finite and >= 0")
            if row.kind not in ("sync", "webhook") or row.aspect not in ("create", "update", "delete"):
                raise InvalidInput(f"workload row {row}: kind must be sync or webhook, aspect create, update or delete")
            if row.kind == "sync":
                if row.athlete in seen:
                    raise InvalidInput(f"workload: athlete {row.athlete} has two sync rows")
                seen.add(row.athlete)
        for row in self.rows:
            if row.kind == "webhook" and row.athlete not in seen:
                raise InvalidInput(f"workload: webhook row for athlete {row.athlete} without a sync row")

    # -- views ---------------------------------------------------------------------------------------------
    @property
    def syncs(self) -> list[WorkloadRow]:
        """The first-sync rows, one per athlete, by arrival time."""
        return [r for r in self.rows if r.kind == "sync"]

    @property
    def webhooks(self) -> list[WorkloadRow]:
        return [r for r in self.rows if r.kind == "webhook"]

    @property
    def athletes(self) -> int:
        return len(self.syncs)

    @property
    def total_activities(self) -> int:
        return sum(r.activities for r in self.syncs)

    def head(self, athletes: int) -> Workload:
        """The first ``athletes`` athletes (by arrival) and their webhook rows."""
        whole("athletes", athletes, lowest=1)  # -3 would slice from the end
        if athletes > self.athletes:
            raise InvalidInput(
                f"workload {self.name!r} has {self.athletes:,} athletes, fewer than the {athletes:,} asked for"
            )
        keep = {r.athlete for r in self.syncs[:athletes]}
        return Workload(tuple(r for r in self.rows if r.athlete in keep), name=f"{self.name}[:{athletes}]")

    def __repr__(self) -> str:
        return (
            f"Workload({self.name!r}, athletes={self.athletes}, activities={self.total_activities}, "
            f"webhooks={len(self.webhooks)})"
        )

    # -- constructors --------------------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[WorkloadRow], *, name: str = "custom") -> Workload:
        ordered = sorted(rows, key=lambda r: (r.arrival_s, r.kind != "sync", r.athlete))
        return cls(tuple(ordered), name=name)

    @classmethod
    def sample(
        cls,
        *,
        athletes: int,
        seed: int = 0,
        arrival: str = "launch",
        launch_window_s: float = 60.0,
        rate_per_hour: float = 60.0,
        updates_per_athlete: float = 1.0,
        webhook_window_s: float = 3_600.0,
        edit_share: float = 0.0,
        delete_share: float = 0.0,
        median_activities: float = MEDIAN_ACTIVITIES,
        sigma: float = SIGMA,
        max_activities: int = MAX_ACTIVITIES,
    ) -> Workload:
        """A seeded random workload; see the module docstring for the distributions (times in seconds)."""
        whole("athletes", athletes, lowest=0)
        # The expected mean history (a lognormal's mean), checked before a single row is drawn.
        mean = min(max_activities, median_activities * math.exp(sigma**2 / 2))
        check_memory(run_memory_bytes(athletes * mean), f"a run of {athletes:,} sampled athletes")
        if arrival not in ARRIVALS:
            raise InvalidInput(f"unknown arrival {arrival!r}; choose one of: {', '.join(ARRIVALS)}")
        if edit_share < 0 or delete_share < 0 or edit_share + delete_share > 1:
            raise InvalidInput("edit_share and delete_share must be >= 0 and add up to at most 1")
        rng = random.Random(seed)
        sizes = [
            min(max_activities, round(math.exp(rng.gauss(math.log(median_activities), sigma)))) for _ in range(athletes)
        ]
        if arrival == "poisson":
            if rate_per_hour <= 0:
                raise InvalidInput("rate_per_hour must be > 0")
            t, times = 0.0, []
            for _ in range(athletes):
                times.append(round(t, 3))
                t += rng.expovariate(rate_per_hour / 3_600.0)
        else:
            times = sorted(round(rng.uniform(0.0, launch_window_s), 3) for _ in range(athletes))
        rows = [WorkloadRow(i, sizes[i], times[i]) for i in range(athletes)]
        if arrival == "webhook":
            for i in range(athletes):
                t = times[i]
                while True:
                    t += rng.expovariate(max(updates_per_athlete, 1e-9) / webhook_window_s)
                    if t > times[i] + webhook_window_s:
                        break
                    aspect: Literal["create", "update", "delete"] = "create"
                    if edit_share or delete_share:  # no draw otherwise: older seeded workloads stay the same
                        u = rng.random()
                        aspect = (
                            "delete" if u < delete_share else "update" if u < delete_share + edit_share else "create"
                        )
                    rows.append(WorkloadRow(i, sizes[i], round(t, 3), "webhook", aspect))
        name = f"{arrival}-{athletes}-seed{seed}"
        return cls.from_rows(rows, name=name)

    @classmethod
    def from_csv(cls, path: str | Path, *, name: str | None = None) -> Workload:
        """Read a CSV with columns ``athlete, activities, arrival_s`` and optionally ``kind`` (sync|webhook) and
        ``aspect`` (create|update|delete, for webhook rows; default create). Lines starting with ``#`` are
        comments. A bad value is refused with its line number."""
        p = Path(path)
        try:
            # utf-8-sig: a CSV saved by a spreadsheet ("CSV UTF-8") starts with a byte-order mark, which would
            # otherwise be read as part of the first column's name.
            with open(p, newline="", encoding="utf-8-sig") as fh:
                numbered = [(number, line) for number, line in enumerate(fh, 1) if not line.startswith("#")]
        except OSError as exc:
            raise InvalidInput(f"cannot read workload {p}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"cannot read workload {p}: not UTF-8 text ({exc.reason})") from None
        reader = csv.DictReader(line for _, line in numbered)
        missing = {"athlete", "activities", "arrival_s"} - set(reader.fieldnames or ())
        if missing:
            raise InvalidInput(f"{p}: missing column(s) {', '.join(sorted(missing))}")
        rows = []
        synced: set[int] = set()
        for r in reader:
            try:
                if None in r:  # DictReader's key for the fields beyond the header's
                    raise ValueError(f"{len(reader.fieldnames or ()) + len(r[None])} fields, the header names fewer")
                row = WorkloadRow(
                    _whole_field("athlete", r["athlete"]),
                    _whole_field("activities", r["activities"], lowest=0),
                    _number_field("arrival_s", r["arrival_s"]),
                    _kind(r.get("kind")),
                    _aspect(r.get("aspect")),
                )
                if row.kind == "sync":
                    if row.athlete in synced:
                        raise ValueError(f"athlete {row.athlete} has a sync row already")
                    synced.add(row.athlete)
                rows.append(row)
            except ValueError as exc:
                line = numbered[reader.line_num - 1][0]  # the data line's number in the file, comments counted
                raise InvalidInput(f"{p}, line {line}: {exc}") from None
        return cls.from_rows(rows, name=name or p.stem)

    @classmethod
    def named(cls, name: str) -> Workload:
        """A committed workload from ``data/workloads/NAME.csv`` (``reference``, ``small``, ``poisson``, ...)."""
        path = workloads_dir() / f"{name}.csv"
        if not path.is_file():
            known = sorted(p.stem for p in workloads_dir().glob("*.csv"))
            raise InvalidInput(f"unknown workload {name!r}; named ones: {', '.join(known) or 'none'}")
        return cls.from_csv(path, name=name)

    @classmethod
    def resolve(cls, spec: Workload | str | Path) -> Workload:
        """A workload from a Workload, a name, or a CSV path."""
        if isinstance(spec, Workload):
            return spec
        text = str(spec)
        if text.endswith(".csv") or "/" in text:
            return cls.from_csv(text)
        return cls.named(text)

    def to_csv(self, path: str | Path, *, comment: str = "") -> None:
        """Write ``athlete, activities, arrival_s, kind`` (with optional ``# comment`` lines first), and
        ``aspect`` when a webhook row is an edit or a deletion."""
        aspects = any(r.aspect != "create" for r in self.rows)
        with open(path, "w", newline="") as fh:
            for line in comment.splitlines():
                fh.write(f"# {line}\n")
            writer = csv.writer(fh)
            writer.writerow(["athlete", "activities", "arrival_s", "kind", *(["aspect"] if aspects else [])])
            for r in self.rows:
                writer.writerow([r.athlete, r.activities, repr(r.arrival_s), r.kind, *([r.aspect] if aspects else [])])


def _whole_field(name: str, text: str | None, *, lowest: int | None = None) -> int:
    value = _present(name, text)
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or (lowest is not None and number < lowest):
        at_least = "" if lowest is None else f" >= {lowest}"
        raise ValueError(f"{name} must be a whole number{at_least}, got {text!r}")
    return number


def _number_field(name: str, text: str | None) -> float:
    value = _present(name, text)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {text!r}")
    return number


def _present(name: str, text: str | None) -> str:
    """A required column's text; a row shorter than the header has ``None`` there."""
    if text is None or not text.strip():
        raise ValueError(f"{name} is missing")
    return text.strip()


def _kind(text: str | None) -> Literal["sync", "webhook"]:
    value = (text or "").strip().lower() or "sync"
    if value == "sync":
        return "sync"
    if value == "webhook":
        return "webhook"
    raise ValueError(f"kind must be sync or webhook, got {text!r}")


def _aspect(text: str | None) -> Literal["create", "update", "delete"]:
    value = (text or "").strip().lower() or "create"
    if value == "create":
        return "create"
    if value == "update":
        return "update"
    if value == "delete":
        return "delete"
    raise ValueError(f"aspect must be create, update or delete, got {text!r}")


def write_named_workloads(target: Path | None = None) -> list[Path]:
    """(Re)generate the committed workloads in ``data/workloads/`` (``python -m syncsim.sim.workload``)."""
    folder = target or workloads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    specs: Sequence[tuple[str, Workload, str]] = (
        (
            "reference",
            Workload.sample(athletes=1000, seed=2026, arrival="launch"),
            "launch day: 1,000 athletes within the first minute; Workload.sample(athletes=1000, seed=2026)",
        ),
        (
            "small",
            Workload.sample(athletes=20, seed=7, arrival="launch"),
            "20 athletes at launch; Workload.sample(athletes=20, seed=7) - quick runs and the validation run",
        ),
        (
            "poisson",
            Workload.sample(athletes=200, seed=11, arrival="poisson", rate_per_hour=60),
            "200 sign-ups at 60/hour; Workload.sample(athletes=200, seed=11, arrival='poisson', rate_per_hour=60)",
        ),
        (
            "webhook",
            Workload.sample(
                athletes=50, seed=13, arrival="webhook", updates_per_athlete=3, edit_share=0.2, delete_share=0.1
            ),
            "50 athletes at launch, then ~3 Strava webhook events each within an hour: 70 % new activities, 20 % "
            "edits, 10 % deletions; Workload.sample(athletes=50, seed=13, arrival='webhook', updates_per_athlete=3, "
            "edit_share=0.2, delete_share=0.1)",
        ),
    )
    paths = []
    for name, workload, how in specs:
        path = folder / f"{name}.csv"
        workload.to_csv(path, comment=f"{how}\ngenerated by python -m syncsim.sim.workload")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_named_workloads():
        print(written)
