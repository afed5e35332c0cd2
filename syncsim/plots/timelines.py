"""Charts over a simulation's time axis: one athlete's job timeline, and the app-wide rate-limit budget.

:func:`job_timeline` draws one athlete's invocations (red if killed) and the events around them in lanes,
from the ``events`` table; :func:`rate_limit_budget` draws Strava's read usage per 15-minute window and per
UTC day against the limits, from the ``budget`` table. Re-exported by :mod:`syncsim.plots`, whose docstring
gives the conventions every chart follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from syncsim.plots.style import LIMIT_COLOUR, groups, new_axes, say_empty, two_panels

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["job_timeline", "rate_limit_budget"]

#: Timeline lanes, top to bottom, and the event kinds each shows (marker, colour).
_TIMELINE_LANES: tuple[tuple[str, dict[str, tuple[str, str]]], ...] = (
    ("requests", {"submit": ("v", "#000000"), "poll": ("|", "#777777")}),
    ("progress", {"claimed": ("o", "#0072B2"), "checkpoint": ("|", "#56B4E9")}),
    (
        "waits & retries",
        {"retry": ("o", "#E69F00"), "rescheduled": ("s", "#CC79A7"), "rate_limited": ("D", "#D55E00")},
    ),
    (
        "outcome",
        {
            "killed": ("X", "#d62728"),
            "completed": ("*", "#009E73"),
            "failed": ("X", "#000000"),
            "gave_up": ("X", "#7f7f7f"),
        },
    ),
)


def _busiest_user(events: pd.DataFrame) -> Any:
    """The athlete whose timeline says the most: most kills, then most rate-limit waits, then most events."""
    counts = events.assign(
        _killed=events["kind"] == "killed", _waited=events["kind"].isin(["rate_limited", "rescheduled"])
    ).groupby("user_id", sort=True)[["_killed", "_waited", "kind"]]
    summary = counts.agg({"_killed": "sum", "_waited": "sum", "kind": "size"})
    return summary.sort_values(["_killed", "_waited", "kind"], ascending=False, kind="stable").index[0]


def _invocation_spans(run: pd.DataFrame, mine: pd.DataFrame) -> list[tuple[float, float, bool]]:
    """(start, end, killed) of the invocations that ran ``mine``'s job, in seconds.

    An invocation's start is logged before anyone knows whose job it will run, so starts are matched to the
    athlete's ends by the invocation named in ``detail``; without such names, starts and ends pair in order.
    """
    starts = {
        str(d): float(t)
        for t, d in zip(
            run.loc[run["kind"] == "invocation_start", "t_s"],
            run.loc[run["kind"] == "invocation_start", "detail"],
            strict=True,
        )
        if d
    }
    kills = [float(t) for t in mine.loc[mine["kind"] == "killed", "t_s"]]
    spans: list[tuple[float, float, bool]] = []
    ends = mine[mine["kind"] == "invocation_end"]
    for t, d in zip(ends["t_s"], ends["detail"], strict=True):
        if str(d) in starts:
            killed = any(abs(k - float(t)) < 1e-3 for k in kills)
            spans.append((starts[str(d)], float(t), killed))
    if spans:
        return spans
    open_start: float | None = None
    for t, kind in zip(mine["t_s"], mine["kind"], strict=True):
        if kind == "invocation_start":
            open_start = float(t)
        elif kind in ("invocation_end", "killed") and open_start is not None:
            spans.append((open_start, float(t), kind == "killed"))
            open_start = None
    if open_start is not None:
        spans.append((open_start, float(mine["t_s"].max()), False))
    return spans


def job_timeline(
    events: pd.DataFrame,
    user_id: Any = None,
    *,
    platform: str | None = None,
    strategy: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """One athlete's sync on a time axis: invocations as bars (red if killed), and the events around them.

    ``user_id`` defaults to the athlete with the most killed invocations (then rate-limit waits). With a
    Comparison's events, pick the run with ``platform`` and ``strategy`` (default: the first in the table).
    """
    fig, ax = new_axes(ax, (10.0, 3.6))
    data = events
    for column, wanted in (("platform", platform), ("strategy", strategy)):
        if column in data.columns and len(data):
            choice = wanted if wanted is not None else data[column].iloc[0]
            data = data[data[column] == choice]
    if len(data) and user_id is None:
        user_id = _busiest_user(data)
    run = data
    if len(data):
        data = data[data["user_id"].astype(str) == str(user_id)].sort_values("t_s", kind="stable")
    lanes = ["invocations"] + [name for name, _ in _TIMELINE_LANES]
    y_of = {name: len(lanes) - 1 - i for i, name in enumerate(lanes)}
    spans = _invocation_spans(run, data) if len(data) else []
    y = y_of["invocations"]
    labelled: set[bool] = set()
    for start, end, killed in spans:
        ax.broken_barh(
            [(start, max(end - start, 1e-3))],
            (y - 0.3, 0.6),
            facecolors=LIMIT_COLOUR if killed else "#0072B2",
            alpha=0.8,
            label=None if killed in labelled else ("invocation (killed)" if killed else "invocation"),
        )
        labelled.add(killed)

    for lane, kinds in _TIMELINE_LANES:
        for kind, (marker, colour) in kinds.items():
            times = data.loc[data["kind"] == kind, "t_s"] if len(data) else []
            if len(times):
                ax.scatter(times, [y_of[lane]] * len(times), marker=marker, color=colour, s=45, label=kind, zorder=3)

    ax.set_yticks([y_of[name] for name in lanes], lanes)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.set_xlabel("simulated time since the run started (s)")
    ax.set_title(f"Timeline of athlete {str(user_id)[:8]}" if user_id is not None else "Timeline")
    ax.grid(alpha=0.3, axis="x")
    if len(data):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        say_empty(ax, "events")
    return fig


def rate_limit_budget(budget: pd.DataFrame, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Strava's app-wide read usage over time against its limits: the 15-minute window and the UTC day.

    Usage is a step line; the limit is a dashed red line. The time axis is in minutes, or hours for runs
    longer than three hours. ``axes``: two Axes to draw on.
    """
    fig, panels = two_panels(axes, (10.0, 3.8))
    data = budget.sort_values("t_s", kind="stable") if len(budget) and "t_s" in budget.columns else None
    span = float(data["t_s"].max()) if data is not None else 0.0
    scale, unit = (3600.0, "h") if span > 3 * 3600 else (60.0, "min")
    for panel, (column, title) in zip(
        panels, (("read_15min", "reads per 15-minute window"), ("read_day", "reads per UTC day")), strict=True
    ):
        if data is not None and column in data.columns:
            for label, group in groups(data):
                t = group["t_s"].astype(float) / scale
                panel.step(t, group[column], where="post", label=f"usage ({label})" if label != "all" else "usage")
            limit = data[f"{column}_limit"] if f"{column}_limit" in data.columns else None
            if limit is not None and limit.notna().any():
                panel.step(
                    data["t_s"].astype(float) / scale,
                    limit,
                    where="post",
                    color=LIMIT_COLOUR,
                    linestyle="--",
                    label=f"limit ({int(limit.max()):,})",
                )
            panel.set_ylim(bottom=0)
            panel.legend(fontsize="small", loc="best")
        else:
            say_empty(panel, "rate-limit usage")
        panel.set_xlabel(f"time since the run started ({unit})")
        panel.set_ylabel("read requests")
        panel.set_title(title)
        panel.grid(alpha=0.3)
    return fig
