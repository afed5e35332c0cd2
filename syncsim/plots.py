"""Charts of a simulation: matplotlib figures drawn from the tables of :mod:`syncsim.sim.results`.

Every function takes one of the simulator's DataFrames (``jobs``, ``events``, ``budget``, ``metrics``, of a
single run or of a :class:`~syncsim.sim.results.Comparison`), draws on ``ax`` if given or on a new figure,
and returns the :class:`~matplotlib.figure.Figure`. Figures are built without pyplot, so they hold no global
state, render with Agg when saved (:func:`save_figure`) and display inline in Jupyter (``%matplotlib inline``).
An empty table draws an empty chart that says so, never an error. Times are seconds unless an axis says
otherwise.

The charts live in sibling modules by family, all re-exported here (import this module, not those):

- :mod:`syncsim.plots_jobs`: per-job charts, :func:`latency_cdf`, :func:`time_to_complete` and
  :func:`attempts_and_retries`;
- :mod:`syncsim.plots_timelines`: charts over time, :func:`job_timeline` and :func:`rate_limit_budget`;
- :mod:`syncsim.plots_scorecard`: the success metrics, :func:`scorecard` and :func:`scorecard_table`;
- :mod:`syncsim.plots_style`: the palette and the helpers they share.

This module keeps :func:`save_figure`. Like its siblings it imports matplotlib, so :mod:`syncsim` loads it
only on first use.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from syncsim.plots_jobs import API_LATENCY_TARGET_S, attempts_and_retries, latency_cdf, time_to_complete
from syncsim.plots_scorecard import scorecard, scorecard_table
from syncsim.plots_timelines import job_timeline, rate_limit_budget

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


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (rendered with Agg, whatever the session's backend) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(target, dpi=dpi, format="png")
    return target
