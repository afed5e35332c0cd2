"""The reference report: run the platform × strategy comparison, write its charts as PNGs and a markdown summary.

``syncsim report --out DIR`` (or :func:`write_report`) writes ``DIR/report.md`` with the scorecard as a table,
the cost of each design and links to ``scorecard.png``, ``latency_cdf.png``, ``time_to_complete.png``,
``attempts_and_retries.png``, ``job_timeline.png`` and ``rate_limit_budget.png`` beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from syncsim.sim.results import Comparison

__all__ = ["REFERENCE_ATHLETES", "REFERENCE_PLATFORMS", "REFERENCE_SEED", "REFERENCE_STRATEGIES", "write_report"]

#: The design's two plans (hobby 10 s, pro 300 s) and its three strategies.
REFERENCE_PLATFORMS = ("hobby", "pro")
REFERENCE_STRATEGIES = ("waituntil", "resumable", "worker")
#: Athletes in the reference run: enough for the heavy tail (a few thousand activities) to show up.
REFERENCE_ATHLETES = 200
REFERENCE_SEED = 0
#: Strava's answer time (s) and an approved app's raised limits, as in ``syncsim.sim.REFERENCE_SWEEP``: the
#: platform's time limit, not Strava's budget, is what the scorecard judges.
REFERENCE_LATENCY_S = 0.4
REFERENCE_RATE_LIMITS = "approved"


def _ticks(strategy_options: Any) -> str:
    """`` (resumable with a tick every 60 s)`` for the strategies run with a scheduled tick, or nothing."""
    ticked = [
        f"{name} with a tick every {opts['tick_s']:g} s"
        for name, opts in (strategy_options or {}).items()
        if opts.get("tick_s")
    ]
    return f" ({', '.join(ticked)})" if ticked else ""


def _markdown_table(frame: pd.DataFrame, *, index_label: str | None = None) -> str:
    """A GitHub-flavoured markdown table of ``frame`` (no ``tabulate`` needed)."""
    header = [index_label or str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in frame.iterrows():
        cells = [str(label if not isinstance(label, tuple) else " / ".join(map(str, label)))]
        cells += [_cell(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|")


def _figures(comparison: Comparison) -> dict[str, Figure]:
    from syncsim import plots

    figures = {
        "scorecard": plots.scorecard(comparison.metrics),
        "latency_cdf": plots.latency_cdf(comparison.jobs),
        "time_to_complete": plots.time_to_complete(comparison.jobs),
        "attempts_and_retries": plots.attempts_and_retries(comparison.jobs),
    }
    if comparison.events is not None:
        figures["job_timeline"] = plots.job_timeline(
            comparison.events, platform=REFERENCE_PLATFORMS[0], strategy=REFERENCE_STRATEGIES[0]
        )
    if comparison.budget is not None:
        budget = comparison.budget
        if {"platform", "strategy"} <= set(budget.columns):  # one run's budget: the design as approved
            budget = budget[
                (budget["platform"] == REFERENCE_PLATFORMS[0]) & (budget["strategy"] == REFERENCE_STRATEGIES[0])
            ]
        figures["rate_limit_budget"] = plots.rate_limit_budget(budget)
    return figures


def write_report(
    out_dir: str | Path,
    *,
    athletes: int = REFERENCE_ATHLETES,
    seed: int = REFERENCE_SEED,
    platforms: Sequence[str] = REFERENCE_PLATFORMS,
    strategies: Sequence[str] = REFERENCE_STRATEGIES,
    latency: float = REFERENCE_LATENCY_S,
    rate_limits: str = REFERENCE_RATE_LIMITS,
    **simulate_options: Any,
) -> Path:
    """Run the reference comparison (``athletes`` athletes, seeded) and write its report into ``out_dir``.

    Returns the path of ``report.md``. ``simulate_options`` go to :func:`syncsim.sim.compare` unchanged.
    """
    from syncsim import plots
    from syncsim.options import whole
    from syncsim.sim import REFERENCE_SWEEP, compare
    from syncsim.sim.results import SUCCESS_METRICS

    whole("athletes", athletes, lowest=1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    simulate_options.setdefault(
        "strategy_options", {s: opts for s, opts in REFERENCE_SWEEP["strategy_options"].items() if s in strategies}
    )
    comparison = compare(
        platforms=tuple(platforms),
        strategies=tuple(strategies),
        seeds=(seed,),
        athletes=athletes,
        latency=latency,
        rate_limits=rate_limits,
        **simulate_options,
    )
    images = {name: plots.save_figure(fig, out / f"{name}.png").name for name, fig in _figures(comparison).items()}

    table = plots.scorecard_table(comparison.metrics)
    passing = [str(label) for label, row in table.iterrows() if all(str(v).startswith("✓") for v in row)]
    free = [p for p in passing if p.startswith("hobby")]
    lines = [
        "# syncsim reference report",
        "",
        f"{athletes} athletes connect at once (seed {seed}); platforms {', '.join(platforms)}; "
        f"strategies {', '.join(strategies)}{_ticks(simulate_options['strategy_options'])}; "
        f"Strava answers in {latency:g} s with {rate_limits} rate limits. "
        f"Regenerate with "
        f"`syncsim report --out {out} --athletes {athletes} --seed {seed}`.",
        "",
        "## Success metrics",
        "",
        f"Designs that pass every metric: {', '.join(passing) if passing else 'none'}. "
        f"On the free tier (hobby): {', '.join(free) if free else 'none'}.",
        "",
        _markdown_table(table),
        "",
        "| metric | target |",
        "|---|---|",
        *[f"| {name} | {target} |" for name, target in SUCCESS_METRICS],
        "",
    ]
    if len(comparison.cost):
        cost = comparison.cost.copy()
        keys = [c for c in ("platform", "strategy") if c in cost.columns]
        cost = cost.groupby(keys, sort=False).first().drop(columns=["seed"], errors="ignore") if keys else cost
        lines += ["## Cost", "", _markdown_table(cost, index_label=" / ".join(keys) or None), ""]
    lines += ["## Charts", ""]
    lines += [f"![{name}]({file})" for name, file in images.items()]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
