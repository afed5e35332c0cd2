"""The look and the plumbing every chart of :mod:`syncsim.plots` shares: colours, markers, axes, groups.

A colour-blind-safe palette (Okabe–Ito) and the pass/fail/limit colours; :func:`new_axes` draws on the
caller's Axes or on a new pyplot-free :class:`~matplotlib.figure.Figure`; :func:`say_empty` marks a chart with
nothing to show; :func:`groups` splits a simulator table into the runs it holds (by platform and strategy,
when it has more than one of them) and labels each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

#: Colours that stay distinguishable for common colour blindness (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
PASS_COLOUR = "#b7e1a1"
FAIL_COLOUR = "#f4a6a6"
LIMIT_COLOUR = "#D55E00"
MARKERS = ("o", "s", "^", "D", "v", "P")


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        figure = ax.get_figure()
        assert isinstance(figure, Figure)
        return figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def two_panels(axes: Sequence[Axes] | None, figsize: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """The figure and two side-by-side panels: the first two of ``axes`` if given, else a new figure."""
    if axes is not None:
        figure = axes[0].get_figure()
        assert isinstance(figure, Figure)
        return figure, list(axes)[:2]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, list(fig.subplots(1, 2))


def say_empty(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} to show", ha="center", va="center", transform=ax.transAxes, color="grey")


def group_keys(frame: pd.DataFrame) -> list[str]:
    """The columns that tell runs apart: platform and strategy when a table has more than one of them."""
    keys = [c for c in ("platform", "strategy") if c in frame.columns and frame[c].nunique() > 1]
    if not keys and "strategy" in frame.columns:
        keys = ["strategy"]
    return keys


def label(keys: Sequence[str], value: Any) -> str:
    values = value if isinstance(value, tuple) else (value,)
    return " / ".join(str(v) for v in values[: len(keys)]) if keys else "all"


def groups(frame: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    keys = group_keys(frame)
    if not keys:
        yield "all", frame
        return
    for value, group in frame.groupby(keys, sort=False):
        yield label(keys, value), group
