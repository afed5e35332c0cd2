"""Charts of a simulation: matplotlib figures drawn from the tables of :mod:`syncsim.sim.results`.

Every function takes one of the simulator's DataFrames (``jobs``, ``events``, ``budget``, ``metrics``, of a
single run or of a :class:`~syncsim.sim.results.Comparison`), draws on ``ax`` if given or on a new figure,
and returns the :class:`~matplotlib.figure.Figure`. Figures are built without pyplot, so they hold no global
state, render with Agg when saved (:func:`save_figure`) and display inline in Jupyter (``%matplotlib inline``).
An empty table draws an empty chart that says so, never an error. Times are seconds unless an axis says
otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = [
    "API_LATENCY_TARGET_S",
    "attempts_and_retries",
    "job_timeline",
    "latency_cdf",
    "rate_limit_budget",
    "save_figure",
    "scorecard",
    "scorecard_table",
    "time_to_complete",
]

#: The design's first success metric: POST /api/sync answers in under a second (p99).
API_LATENCY_TARGET_S = 1.0

#: Colours that stay distinguishable for common colour blindness (Okabe–Ito).
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_PASS_COLOUR = "#b7e1a1"
_FAIL_COLOUR = "#f4a6a6"
_LIMIT_COLOUR = "#D55E00"
_MARKERS = ("o", "s", "^", "D", "v", "P")


# -- shared helpers -----------------------------------------------------------------------------------------


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        figure = ax.get_figure()
        assert isinstance(figure, Figure)
        return figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _say_empty(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} to show", ha="center", va="center", transform=ax.transAxes, color="grey")


def _group_keys(frame: pd.DataFrame) -> list[str]:
    """The columns that tell runs apart: platform and strategy when a table has more than one of them."""
    keys = [c for c in ("platform", "strategy") if c in frame.columns and frame[c].nunique() > 1]
    if not keys and "strategy" in frame.columns:
        keys = ["strategy"]
    return keys


def _label(keys: Sequence[str], value: Any) -> str:
    values = value if isinstance(value, tuple) else (value,)
    return " / ".join(str(v) for v in values[: len(keys)]) if keys else "all"


def _groups(frame: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    keys = _group_keys(frame)
    if not keys:
        yield "all", frame
        return
    for value, group in frame.groupby(keys, sort=False):
        yield _label(keys, value), group


def _format_value(value: Any) -> str:
    """A metric's value as a short cell text: 3 significant digits for numbers, as-is otherwise."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return "–"
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 18 else text[:17] + "…"


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (rendered with Agg, whatever the session's backend) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(target, dpi=dpi, format="png")
    return target


# -- charts -------------------------------------------------------------------------------------------------


def latency_cdf(jobs: pd.DataFrame, *, ax: Axes | None = None, target_s: float = API_LATENCY_TARGET_S) -> Figure:
    """Empirical CDF of ``POST /api/sync`` answer time (``api_latency_s``) per platform/strategy.

    A dashed vertical line marks the target (1 s by default); the legend gives each group's p99 in seconds.
    """
    fig, ax = _new_axes(ax, (7.0, 4.2))
    data = jobs.dropna(subset=["api_latency_s"]) if "api_latency_s" in jobs.columns else jobs.iloc[0:0]
    drawn = 0
    for i, (label, group) in enumerate(_groups(data)):
        values = group["api_latency_s"].astype(float).sort_values().to_numpy()
        if len(values) == 0:
            continue
        share = [(k + 1) / len(values) for k in range(len(values))]
        p99 = float(group["api_latency_s"].quantile(0.99))
        ax.step(values, share, where="post", color=_PALETTE[i % len(_PALETTE)], label=f"{label} (p99 {p99:.2f} s)")
        drawn += 1
    ax.axvline(target_s, color=_LIMIT_COLOUR, linestyle="--", linewidth=1.5, label=f"{target_s:g} s target")
    ax.set_xlabel("POST /api/sync latency (s)")
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_title("API response time")
    ax.grid(alpha=0.3)
    if not drawn:
        _say_empty(ax, "API requests")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _platform_limits(platforms: Iterable[str]) -> list[tuple[str, float]]:
    from syncsim.platform import load_platforms

    specs = load_platforms()
    limits = []
    for name in platforms:
        spec = specs.get(name)
        if spec is not None and spec.max_duration_s is not None:
            limits.append((name, spec.max_duration_s))
    return sorted(limits, key=lambda item: item[1])


def time_to_complete(
    jobs: pd.DataFrame,
    *,
    platforms: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Submit-to-completed time against history size, one point per job (log-log).

    Colour is the strategy, marker the platform. Jobs that never completed are drawn as red crosses at the
    top edge; jobs with a killed invocation (``timed_out``) are ringed in red. Dashed horizontal lines are the
    invocation time limits of ``platforms`` (default: those in ``jobs``) from ``data/platforms.csv``.
    """
    fig, ax = _new_axes(ax, (8.0, 4.8))
    names = list(platforms) if platforms is not None else _unique(jobs, "platform")
    has_rows = len(jobs) > 0 and {"activities", "time_to_complete_s"} <= set(jobs.columns)
    finished = jobs[jobs["time_to_complete_s"].notna()] if has_rows else jobs.iloc[0:0]
    unfinished = jobs[jobs["time_to_complete_s"].isna()] if has_rows else jobs.iloc[0:0]
    limits = _platform_limits(names)

    ceiling = max([float(finished["time_to_complete_s"].max()) if len(finished) else 1.0, *(s for _, s in limits), 1.0])
    never_y = ceiling * 3.0
    strategies = _unique(jobs, "strategy") or ["all"]
    platform_names = _unique(jobs, "platform") or ["all"]
    for s_index, strategy in enumerate(strategies):
        colour = _PALETTE[s_index % len(_PALETTE)]
        for p_index, platform in enumerate(platform_names):
            marker = _MARKERS[p_index % len(_MARKERS)]
            part = _select(finished, strategy, platform)
            if len(part):
                label = strategy if len(platform_names) == 1 else f"{platform} / {strategy}"
                ax.scatter(
                    part["activities"].clip(lower=1),
                    part["time_to_complete_s"].clip(lower=1e-3),
                    s=18,
                    color=colour,
                    marker=marker,
                    alpha=0.7,
                    label=label,
                )
                killed = part[part["timed_out"].astype(bool)] if "timed_out" in part.columns else part.iloc[0:0]
                if len(killed):
                    ax.scatter(
                        killed["activities"].clip(lower=1),
                        killed["time_to_complete_s"].clip(lower=1e-3),
                        s=60,
                        facecolors="none",
                        edgecolors=_LIMIT_COLOUR,
                        linewidths=1.0,
                    )
    if len(unfinished):
        ax.scatter(
            unfinished["activities"].clip(lower=1),
            [never_y] * len(unfinished),
            marker="x",
            color="red",
            s=40,
            label=f"never completed ({len(unfinished)})",
        )
        ax.axhline(never_y, color="red", linewidth=0.5, alpha=0.3)
    if "timed_out" in finished.columns and finished["timed_out"].astype(bool).any():
        ax.plot(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=8,
            markerfacecolor="none",
            markeredgecolor=_LIMIT_COLOUR,
            label="an invocation was killed",
        )
    for name, seconds in limits:
        ax.axhline(seconds, color=_LIMIT_COLOUR, linestyle="--", linewidth=1.2)
        ax.annotate(
            f"{name} limit {seconds:g} s",
            xy=(1.0, seconds),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize="small",
            color=_LIMIT_COLOUR,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("activities in the athlete's history (log scale)")
    ax.set_ylabel("time to complete (s, log scale)")
    ax.set_title("Sync time against history size")
    ax.grid(alpha=0.3, which="major")
    if not has_rows:
        _say_empty(ax, "jobs")
        ax.set_xlim(1, 10_000)
        ax.set_ylim(0.1, max(1.0, never_y))
    else:
        ax.legend(loc="upper left", fontsize="small")
    return fig


def _unique(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return []
    return [str(v) for v in dict.fromkeys(frame[column].dropna())]


def _select(frame: pd.DataFrame, strategy: str, platform: str) -> pd.DataFrame:
    mask = None
    if "strategy" in frame.columns and strategy != "all":
        mask = frame["strategy"].astype(str) == strategy
    if "platform" in frame.columns and platform != "all":
        by_platform = frame["platform"].astype(str) == platform
        mask = by_platform if mask is None else mask & by_platform
    return frame if mask is None else frame[mask]


def attempts_and_retries(jobs: pd.DataFrame, *, axes: Sequence[Axes] | None = None) -> Figure:
    """How many attempts each job took and how many of its invocations were killed, per platform/strategy.

    Two panels of grouped bars: the share of jobs with 1, 2, 3 … attempts, and with 0, 1, 2 … killed
    invocations (the last bar of each panel collects everything above it). ``axes``: two Axes to draw on.
    """
    if axes is not None:
        first = axes[0].get_figure()
        assert isinstance(first, Figure)
        fig, panels = first, list(axes)[:2]
    else:
        fig = Figure(figsize=(10.0, 4.0), layout="constrained")
        panels = list(fig.subplots(1, 2))
    specs = (("attempts", "attempts per job", 1, 6), ("killed_invocations", "killed invocations per job", 0, 6))
    for panel, (column, title, lowest, highest) in zip(panels, specs, strict=True):
        data = jobs if column in jobs.columns else jobs.iloc[0:0]
        groups = list(_groups(data)) if len(data) else []
        bins = list(range(lowest, highest + 1))
        width = 0.8 / max(1, len(groups))
        for i, (label, group) in enumerate(groups):
            values = group[column].fillna(0).astype(int).clip(lower=lowest, upper=highest)
            shares = [float((values == b).mean()) if len(values) else 0.0 for b in bins]
            offsets = [b - 0.4 + width * (i + 0.5) for b in bins]
            panel.bar(offsets, shares, width=width, color=_PALETTE[i % len(_PALETTE)], label=label)
        panel.set_xticks(bins, [str(b) if b < highest else f"{b}+" for b in bins])
        panel.set_xlabel(title.replace(" per job", ""))
        panel.set_ylabel("share of jobs")
        panel.set_ylim(0, 1.05)
        panel.set_title(title)
        panel.grid(alpha=0.3, axis="y")
        if groups:
            panel.legend(fontsize="small")
        else:
            _say_empty(panel, "jobs")
    return fig


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
    fig, ax = _new_axes(ax, (10.0, 3.6))
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
            facecolors=_LIMIT_COLOUR if killed else "#0072B2",
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
        _say_empty(ax, "events")
    return fig


def rate_limit_budget(budget: pd.DataFrame, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Strava's app-wide read usage over time against its limits: the 15-minute window and the UTC day.

    Usage is a step line; the limit is a dashed red line. The time axis is in minutes, or hours for runs
    longer than three hours. ``axes``: two Axes to draw on.
    """
    if axes is not None:
        first = axes[0].get_figure()
        assert isinstance(first, Figure)
        fig, panels = first, list(axes)[:2]
    else:
        fig = Figure(figsize=(10.0, 3.8), layout="constrained")
        panels = list(fig.subplots(1, 2))
    data = budget.sort_values("t_s", kind="stable") if len(budget) and "t_s" in budget.columns else None
    span = float(data["t_s"].max()) if data is not None else 0.0
    scale, unit = (3600.0, "h") if span > 3 * 3600 else (60.0, "min")
    for panel, (column, title) in zip(
        panels, (("read_15min", "reads per 15-minute window"), ("read_day", "reads per UTC day")), strict=True
    ):
        if data is not None and column in data.columns:
            for label, group in _groups(data):
                t = group["t_s"].astype(float) / scale
                panel.step(t, group[column], where="post", label=f"usage ({label})" if label != "all" else "usage")
            limit = data[f"{column}_limit"] if f"{column}_limit" in data.columns else None
            if limit is not None and limit.notna().any():
                panel.step(
                    data["t_s"].astype(float) / scale,
                    limit,
                    where="post",
                    color=_LIMIT_COLOUR,
                    linestyle="--",
                    label=f"limit ({int(limit.max()):,})",
                )
            panel.set_ylim(bottom=0)
            panel.legend(fontsize="small", loc="best")
        else:
            _say_empty(panel, "rate-limit usage")
        panel.set_xlabel(f"time since the run started ({unit})")
        panel.set_ylabel("read requests")
        panel.set_title(title)
        panel.grid(alpha=0.3)
    return fig


def _scorecard_cells(metrics: pd.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[bool, str]]]:
    """Rows (platform / strategy), columns (metrics in order) and each cell's (passed, value text).

    Over several seeds a cell passes only if every seed passed; it shows the value of the first failing
    seed, or of the first seed if all passed.
    """
    from syncsim.sim.results import SUCCESS_METRICS

    keys = [c for c in ("platform", "strategy") if c in metrics.columns]
    order = {name: i for i, (name, _) in enumerate(SUCCESS_METRICS)}
    columns = sorted(dict.fromkeys(metrics["metric"].astype(str)), key=lambda m: order.get(m, len(order)))
    rows: list[str] = []
    cells: dict[tuple[str, str], tuple[bool, str]] = {}
    grouped = metrics.groupby(keys, sort=False) if keys else [("all", metrics)]
    for value, group in grouped:
        row = _label(keys, value) if keys else "this run"
        rows.append(row)
        for metric, runs in group.groupby(group["metric"].astype(str), sort=False):
            passed = bool(runs["passed"].astype(bool).all())
            deciding = runs[~runs["passed"].astype(bool)] if not passed else runs
            cells[(row, str(metric))] = (passed, _format_value(deciding["value"].iloc[0]))
    return rows, columns, cells


def scorecard_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The scorecard as text: platform/strategy rows, metric columns, cells like ``"✓ 0.42"`` / ``"✗ 3"``."""
    import pandas as pd

    if not len(metrics):
        return pd.DataFrame()
    rows, columns, cells = _scorecard_cells(metrics)
    table = pd.DataFrame(
        [
            [f"{'✓' if cells[(r, c)][0] else '✗'} {cells[(r, c)][1]}" if (r, c) in cells else "" for c in columns]
            for r in rows
        ],
        index=pd.Index(rows, name="platform / strategy"),
        columns=columns,
    )
    return table


def scorecard(metrics: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """The success metrics as a grid: one row per platform/strategy, one column per metric.

    Cells are green when the metric passed and red when it failed, annotated with the value that decided it.
    Takes ``SimulationResult.metrics`` (one row) or ``Comparison.metrics`` (one row per run).
    """
    has_rows = len(metrics) > 0 and {"metric", "passed"} <= set(metrics.columns)
    rows, columns, cells = _scorecard_cells(metrics) if has_rows else ([], [], {})
    size = (1.6 + 1.75 * max(1, len(columns)), 1.2 + 0.48 * max(1, len(rows)))
    fig, ax = _new_axes(ax, size)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            if (row, column) not in cells:
                continue
            passed, text = cells[(row, column)]
            ax.add_patch(_rectangle((c, r), _PASS_COLOUR if passed else _FAIL_COLOUR))
            mark = "✓" if passed else "✗"
            ax.text(c + 0.5, r + 0.5, f"{mark} {text}", ha="center", va="center", fontsize="small")
    ax.set_xlim(0, max(1, len(columns)))
    ax.set_ylim(max(1, len(rows)), 0)
    ax.set_xticks([c + 0.5 for c in range(len(columns))], [c.replace("_", " ") for c in columns])
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.tick_params(axis="x", labelsize="small", length=0)
    ax.tick_params(axis="y", length=0)
    ax.set_yticks([r + 0.5 for r in range(len(rows))], rows)
    ax.set_xlabel("success metric (✓ passed, ✗ failed; value that decided it)")
    ax.set_ylabel("platform / strategy")
    for spine in ax.spines.values():
        spine.set_visible(False)
    if not has_rows:
        _say_empty(ax, "metrics")
    return fig


def _rectangle(corner: tuple[float, float], colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(corner, 1.0, 1.0, facecolor=colour, edgecolor="white", linewidth=2)
