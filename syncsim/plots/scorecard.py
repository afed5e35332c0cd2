"""The success-metrics scorecard: which platform/strategy passed which metric, as a chart and as a table.

:func:`scorecard` draws the grid (green passed, red failed, each cell annotated with the value that decided
it); :func:`scorecard_table` gives the same cells as text for a report. Both take ``SimulationResult.metrics``
or ``Comparison.metrics``. Re-exported by :mod:`syncsim.plots`, whose docstring gives the conventions every
chart follows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from syncsim.plots.style import FAIL_COLOUR, PASS_COLOUR, label, new_axes, say_empty

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["scorecard", "scorecard_table"]


def _format_value(metric: str, value: Any, passed: bool) -> str:
    """A metric's value as a short cell text: with its unit for the success metrics (``5 ms``, ``US$5.00/month``,
    ``3 of 4 passed``: see :func:`syncsim.sim.results.describe_value`), 3 significant digits for other numbers,
    as-is otherwise."""
    from syncsim.sim.results import SUCCESS_METRICS, describe_value

    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return "–"
        if metric in dict(SUCCESS_METRICS):
            return describe_value(metric, float(value), passed)
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"


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
        row = label(keys, value) if keys else "this run"
        rows.append(row)
        for metric, runs in group.groupby(group["metric"].astype(str), sort=False):
            passed = bool(runs["passed"].astype(bool).all())
            deciding = runs[~runs["passed"].astype(bool)] if not passed else runs
            cells[(row, str(metric))] = (passed, _format_value(str(metric), deciding["value"].iloc[0], passed))
    return rows, columns, cells


def scorecard_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The scorecard as text: platform/strategy rows, metric columns, cells like ``"✓ 5 ms"`` or
    ``"✗ 3 of 4 passed"``."""
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
    fig, ax = new_axes(ax, size)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            if (row, column) not in cells:
                continue
            passed, text = cells[(row, column)]
            ax.add_patch(_rectangle((c, r), PASS_COLOUR if passed else FAIL_COLOUR))
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
        say_empty(ax, "metrics")
    return fig


def _rectangle(corner: tuple[float, float], colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(corner, 1.0, 1.0, facecolor=colour, edgecolor="white", linewidth=2)
