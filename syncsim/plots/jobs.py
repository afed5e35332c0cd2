"""Charts of a simulation's jobs, one point or one count per job: API latency, sync time, attempts.

:func:`latency_cdf` (``POST /api/sync`` answer time against its 1 s target), :func:`time_to_complete` (sync
time against history size, with the platforms' invocation time limits) and :func:`attempts_and_retries`
(attempts and killed invocations per job), all drawn from the ``jobs`` table of a run or a Comparison.
Re-exported by :mod:`syncsim.plots`, whose docstring gives the conventions every chart follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from matplotlib.figure import Figure

from syncsim.plots.style import LIMIT_COLOUR, MARKERS, PALETTE, groups, new_axes, say_empty, two_panels

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = [
    "API_LATENCY_TARGET_S",
    "attempts_and_retries",
    "divergence",
    "latency_cdf",
    "sync_progress",
    "time_to_complete",
]

#: The design's first success metric: POST /api/sync answers in under a second (p99).
API_LATENCY_TARGET_S = 1.0


def latency_cdf(jobs: pd.DataFrame, *, ax: Axes | None = None, target_s: float = API_LATENCY_TARGET_S) -> Figure:
    """Empirical CDF of ``POST /api/sync`` answer time (``api_latency_s``) per platform/strategy.

    A dashed vertical line marks the target (1 s by default); the legend gives each group's p99 in seconds.
    """
    fig, ax = new_axes(ax, (7.0, 4.2))
    # A table without the column (an empty DataFrame()) has nothing to draw: no group to look the column up in.
    grouped = groups(jobs.dropna(subset=["api_latency_s"])) if "api_latency_s" in jobs.columns else []
    drawn = 0
    for i, (label, group) in enumerate(grouped):
        values = group["api_latency_s"].astype(float).sort_values().to_numpy()
        if len(values) == 0:
            continue
        share = [(k + 1) / len(values) for k in range(len(values))]
        p99 = float(group["api_latency_s"].quantile(0.99))
        ax.step(values, share, where="post", color=PALETTE[i % len(PALETTE)], label=f"{label} (p99 {p99:.2f} s)")
        drawn += 1
    ax.axvline(target_s, color=LIMIT_COLOUR, linestyle="--", linewidth=1.5, label=f"{target_s:g} s target")
    ax.set_xlabel("POST /api/sync latency (s)")
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_title("API response time")
    ax.grid(alpha=0.3)
    if not drawn:
        say_empty(ax, "API requests")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _platform_limits(platforms: Iterable[str]) -> list[tuple[str, float]]:
    from syncsim.platforms import load_platforms

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
    fig, ax = new_axes(ax, (8.0, 4.8))
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
        colour = PALETTE[s_index % len(PALETTE)]
        for p_index, platform in enumerate(platform_names):
            marker = MARKERS[p_index % len(MARKERS)]
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
                        edgecolors=LIMIT_COLOUR,
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
            markeredgecolor=LIMIT_COLOUR,
            label="an invocation was killed",
        )
    for name, seconds in limits:
        ax.axhline(seconds, color=LIMIT_COLOUR, linestyle="--", linewidth=1.2)
        ax.annotate(
            f"{name} limit {seconds:g} s",
            xy=(1.0, seconds),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize="small",
            color=LIMIT_COLOUR,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("activities in the athlete's history (log scale)")
    ax.set_ylabel("time to complete (s, log scale)")
    ax.set_title("Sync time against history size")
    ax.grid(alpha=0.3, which="major")
    if not has_rows:
        say_empty(ax, "jobs")
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
    fig, panels = two_panels(axes, (10.0, 4.0))
    specs = (("attempts", "attempts per job", 1, 6), ("killed_invocations", "killed invocations per job", 0, 6))
    for panel, (column, title, lowest, highest) in zip(panels, specs, strict=True):
        data = jobs if column in jobs.columns else jobs.iloc[0:0]
        grouped = list(groups(data)) if len(data) else []
        bins = list(range(lowest, highest + 1))
        width = 0.8 / max(1, len(grouped))
        for i, (label, group) in enumerate(grouped):
            values = group[column].fillna(0).astype(int).clip(lower=lowest, upper=highest)
            shares = [float((values == b).mean()) if len(values) else 0.0 for b in bins]
            offsets = [b - 0.4 + width * (i + 0.5) for b in bins]
            panel.bar(offsets, shares, width=width, color=PALETTE[i % len(PALETTE)], label=label)
        panel.set_xticks(bins, [str(b) if b < highest else f"{b}+" for b in bins])
        panel.set_xlabel(title.replace(" per job", ""))
        panel.set_ylabel("share of jobs")
        panel.set_ylim(0, 1.05)
        panel.set_title(title)
        panel.grid(alpha=0.3, axis="y")
        if grouped:
            panel.legend(fontsize="small")
        else:
            say_empty(panel, "jobs")
    return fig


def sync_progress(runs: dict[str, pd.DataFrame], *, ax: Axes | None = None) -> Figure:
    """Share of athletes over time who see their newest activities (solid: ``time_to_first_page_s``) and whose
    whole history is stored (dashed: ``time_to_complete_s``), one colour per run in ``runs`` (label → jobs).

    Time is in hours for runs longer than three hours, else minutes; a share that stops below 1 is athletes
    whose sync never got there.
    """
    fig, ax = new_axes(ax, (8.0, 4.4))
    longest = max(
        (
            float(jobs[c].max())
            for jobs in runs.values()
            for c in ("time_to_first_page_s", "time_to_complete_s")
            if c in jobs.columns and jobs[c].notna().any()
        ),
        default=0.0,
    )
    scale, unit = (3600.0, "h") if longest > 3 * 3600 else (60.0, "min")
    drawn = 0
    for i, (label, jobs) in enumerate(runs.items()):
        colour = PALETTE[i % len(PALETTE)]
        total = len(jobs)
        for column, style, what in (
            ("time_to_first_page_s", "-", "newest activities"),
            ("time_to_complete_s", "--", "whole history"),
        ):
            if total == 0 or column not in jobs.columns:
                continue
            values = jobs[column].dropna().astype(float).sort_values().to_numpy() / scale
            if len(values) == 0:
                continue
            share = [(k + 1) / total for k in range(len(values))]
            ax.step(
                [0.0, *values], [0.0, *share], where="post", color=colour, linestyle=style, label=f"{label}: {what}"
            )
            drawn += 1
    ax.set_ylim(0, 1.02)
    _finish_timeline(
        ax,
        drawn,
        xlabel=f"time after the launch ({unit})",
        ylabel="share of athletes",
        title="When athletes see their newest activities, and their whole history",
        legend="lower right",
        empty="jobs",
    )
    return fig


def divergence(runs: dict[str, pd.DataFrame], *, ax: Axes | None = None) -> Figure:
    """Activities on which the store and Strava disagree over time (missing + extra + stale, summed over
    athletes), one line per run in ``runs`` (label → a run's ``divergence`` table)."""
    fig, ax = new_axes(ax, (8.0, 4.2))
    longest = max((float(d["t_s"].max()) for d in runs.values() if len(d)), default=0.0)
    scale, unit = (3600.0, "h") if longest > 3 * 3600 else (60.0, "min")
    drawn = 0
    for i, (label, table) in enumerate(runs.items()):
        if not len(table):
            continue
        wrong = table["missing"] + table["extra"] + table["stale"]
        ax.step(table["t_s"] / scale, wrong, where="post", color=PALETTE[i % len(PALETTE)], label=label)
        drawn += 1
    ax.set_ylim(bottom=0)
    _finish_timeline(
        ax,
        drawn,
        xlabel=f"time ({unit})",
        ylabel="activities wrong in the store",
        title="The store against Strava: missing, extra or stale activities",
        legend="upper left",
        empty="samples",
    )
    return fig


def _finish_timeline(
    ax: Axes,
    drawn: int,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    legend: Literal["lower right", "upper left"],
    empty: str,
) -> None:
    """Labels, grid, and the legend — or, when nothing was drawn, a note that says what is missing."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc=legend, fontsize="small")
    else:
        say_empty(ax, empty)
