"""Charts of a simulation: matplotlib figures drawn from the tables of :mod:`syncsim.sim.results`.

Every function takes one of the simulator's DataFrames (``jobs``, ``events``, ``budget``, ``metrics``, of a
single run or of a :class:`~syncsim.sim.results.Comparison`), draws on ``ax`` if given or on a new figure,
and returns the :class:`~matplotlib.figure.Figure`. Figures are built without pyplot, so they hold no global
state, render with Agg when saved (:func:`save_figure`) and display inline in Jupyter (``%matplotlib inline``).
An empty table draws an empty chart that says so, never an error. Times are seconds unless an axis says
otherwise.

The charts live in modules by family, all available here (import this module, not those):

- :mod:`syncsim.plots.jobs`: per-job charts, :func:`latency_cdf`, :func:`time_to_complete`,
  :func:`attempts_and_retries` and :func:`sync_progress`, and the store's :func:`divergence` from Strava;
- :mod:`syncsim.plots.timelines`: charts over time, :func:`job_timeline` and :func:`rate_limit_budget`;
- :mod:`syncsim.plots.scorecard`: the success metrics, :func:`scorecard` and :func:`scorecard_table`;
- :mod:`syncsim.plots.style`: the palette and the helpers they share;
- :mod:`syncsim.plots.report`: the reference report (``syncsim report``).

This module keeps :func:`save_figure`. Chart functions load on first use, so importing this package (or
``syncsim.plots.report``) does not import matplotlib.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from syncsim.plots.jobs import (
        API_LATENCY_TARGET_S,
        attempts_and_retries,
        divergence,
        latency_cdf,
        sync_progress,
        time_to_complete,
    )
    from syncsim.plots.scorecard import scorecard, scorecard_table
    from syncsim.plots.timelines import job_timeline, rate_limit_budget

#: Chart names and the module that draws each.
_CHARTS = {
    "API_LATENCY_TARGET_S": "syncsim.plots.jobs",
    "attempts_and_retries": "syncsim.plots.jobs",
    "divergence": "syncsim.plots.jobs",
    "sync_progress": "syncsim.plots.jobs",
    "latency_cdf": "syncsim.plots.jobs",
    "time_to_complete": "syncsim.plots.jobs",
    "scorecard": "syncsim.plots.scorecard",
    "scorecard_table": "syncsim.plots.scorecard",
    "job_timeline": "syncsim.plots.timelines",
    "rate_limit_budget": "syncsim.plots.timelines",
}

__all__ = [
    "API_LATENCY_TARGET_S",
    "attempts_and_retries",
    "divergence",
    "job_timeline",
    "latency_cdf",
    "rate_limit_budget",
    "save_figure",
    "scorecard",
    "scorecard_table",
    "sync_progress",
    "time_to_complete",
]


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (rendered with Agg, whatever the session's backend) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(target, dpi=dpi, format="png")
    return target


def __getattr__(name: str) -> Any:
    module = _CHARTS.get(name)
    if module is None:
        raise AttributeError(f"module 'syncsim.plots' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
