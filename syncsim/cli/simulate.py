"""``syncsim simulate``: one run's success-metric table, or (without arguments) the reference sweep's scorecard."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncsim.cli.common import count, output_file
from syncsim.errors import InvalidInput, SyncsimError

__all__ = ["register_cli", "simulate_command"]

_RUN_FLAGS = (
    "workload",
    "athletes",
    "platform",
    "strategy",
    "seed",
    "latency",
    "rate_limits",
    "tick",
    "give_up",
    "faults",
    "churn",
    "strava_down",
    "strava_clock_behind",
    "instances",
    "shared_budget",
)
#: The faults ``--faults`` sets: FakeStrava's rates (fractions of requests, or of list pages).
_FAULT_RATES = ("error_rate", "timeout_rate", "short_pages", "malformed_pages")


def register_cli(subparsers: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``simulate`` to ``subparsers``; returns ``{"simulate": handler}``."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate syncs on a platform and print the success metrics (no arguments: the reference sweep)",
        description=(
            "Run the real job runner on virtual time against FakeStrava. Without run options, runs the "
            "reference sweep (the 'reference' workload on hobby and pro x every strategy) and prints its scorecard."
        ),
    )
    p.add_argument("--workload", help="a CSV file (athlete,activities,arrival_s[,kind]) or a named workload")
    p.add_argument(
        "--athletes", type=int, help="athletes of a seeded launch (default 100), or the first ones of --workload"
    )
    p.add_argument("--platform", help="hobby | pro | hobby-fluid | pro-fluid | unlimited (default hobby)")
    p.add_argument("--strategy", help="waituntil | resumable | worker (default waituntil)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--latency", help="Strava latency: seconds (0.4) or lognormal:MEDIAN,SIGMA")
    p.add_argument(
        "--rate-limits", dest="rate_limits", help="default | approved | READ_15MIN,READ_DAY (default: default)"
    )
    p.add_argument(
        "--faults",
        metavar="NAME=RATE,...",
        help="what Strava gets wrong, as fractions of requests: error_rate (5xx), timeout_rate (held unanswered), "
        "short_pages, malformed_pages (of list pages)",
    )
    p.add_argument(
        "--churn", type=float, metavar="RATE", help="athletes change their histories: changes per athlete per hour"
    )
    p.add_argument(
        "--strava-down",
        dest="strava_down",
        metavar="START,END",
        help="Strava answers 503 to everything from START to END seconds after the start",
    )
    p.add_argument(
        "--strava-clock-behind",
        dest="strava_clock_behind",
        type=float,
        metavar="SECONDS",
        help="Strava's clock runs SECONDS behind the app's (negative: ahead); its rate-limit windows follow it (0)",
    )
    p.add_argument(
        "--instances",
        type=count,
        metavar="N",
        help="N serverless instances serve the app, each its own process (own Strava client), sharing the store (1)",
    )
    p.add_argument(
        "--no-shared-budget",
        dest="shared_budget",
        action="store_const",
        const=False,
        help="each instance counts only its own Strava requests (as before migration 0017), not the store's count",
    )
    p.add_argument(
        "--tick", type=float, metavar="SECONDS", help="a scheduler calls the tick route every SECONDS, on the clock"
    )
    p.add_argument(
        "--give-up", dest="give_up", type=float, metavar="SECONDS", help="browsers stop polling after SECONDS (7200)"
    )
    p.add_argument("--out", help="write the per-job table to FILE.csv or FILE.parquet")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--processes", type=int, help="worker processes for the sweep (default: every core)")
    return {"simulate": simulate_command}


def _rate_limits(text: str | None) -> Any:
    if text is None or text in ("default", "approved"):
        return text
    try:
        short, daily = (int(x) for x in text.split(","))
    except ValueError:
        raise InvalidInput(f"--rate-limits must be default, approved or READ_15MIN,READ_DAY, got {text!r}") from None
    return (short, daily)


def _write(frame: Any, path: Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def simulate_command(args: argparse.Namespace) -> int:
    """The ``simulate`` handler; errors are one line on stderr and exit status 2."""
    try:
        return _simulate(args)
    except SyncsimError as exc:
        print(f"syncsim simulate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _simulate(args: argparse.Namespace) -> int:
    from syncsim.sim.compare import LAUNCH_DAY, reference_sweep
    from syncsim.sim.results import describe_value
    from syncsim.sim.run import simulate

    out = output_file(args.out, "--out", suffixes=(".csv", ".parquet")) if args.out else None
    given = {k: getattr(args, k, None) for k in _RUN_FLAGS}
    if all(v is None for v in given.values()):
        sweep = reference_sweep(processes=getattr(args, "processes", None), keep_events=False, progress=not args.json)
        card = sweep.scorecard()
        launch = sweep.launch
        assert launch is not None
        if out is not None:
            _write(sweep.jobs, out)
        if args.json:
            print(
                json.dumps(
                    {
                        "scorecard": card.reset_index().to_dict("records"),
                        "metrics": _records(sweep.metrics),
                        "launch_day": _records(launch.reset_index()),
                    }
                )
            )
        else:
            print(
                "reference sweep: workload 'reference' (1,000 athletes at launch), latency 0.4 s, approved-app limits; "
                "resumable with a tick every 60 s"
            )
            print(card.to_string())
            print()
            print("the value that decided each metric:")
            print(sweep.values().to_string())
            print()
            print(
                "launch day under a new app's default limits (read 100 / 15 min, 1,000 / day): "
                f"{LAUNCH_DAY['athletes']} athletes at once, hobby, resumable, browsers leave after 2 h"
            )
            print(launch.to_string(float_format=lambda v: f"{v:.2f}"))
        return 0
    if getattr(args, "processes", None) is not None:
        raise InvalidInput("--processes is for the reference sweep (no run flags): a single run uses one process")
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    options["rate_limits"] = _rate_limits(options.get("rate_limits"))
    if "tick" in options:
        options["tick_s"] = _positive(options.pop("tick"), "--tick")
    if "give_up" in options:
        from syncsim.sim.browser import PollSchedule

        options["poll"] = PollSchedule(give_up_s=_positive(options.pop("give_up"), "--give-up"))
    if "faults" in options:
        options["faults"] = _faults(options["faults"])
    if "strava_down" in options:
        options["strava_down_s"] = _interval(options.pop("strava_down"))
    if "strava_clock_behind" in options:
        options["strava_clock_behind_s"] = options.pop("strava_clock_behind")
    if "churn" in options and not 0 <= options["churn"] < float("inf"):
        raise InvalidInput(f"--churn must be changes per athlete per hour (>= 0), got {options['churn']!r}")
    if options.get("latency") is not None:
        text = str(options["latency"])
        options["latency"] = text if text.startswith("lognormal:") else _float(text)
    result = simulate(**options, progress=not args.json)
    if out is not None:
        _write(result.jobs, out)
    if args.json:
        print(
            json.dumps(
                {"metrics": _records(result.metrics), "cost": _records(result.cost), "params": _plain(result.params)}
            )
        )
    else:
        p = result.params
        print(
            f"{p['platform']} / {p['strategy']}: {p['athletes']} athletes, {p['activities']} activities, "
            f"{p['strava_requests']} Strava requests, {p['simulated_s']:.0f} simulated s"
        )
        table = result.metrics.assign(
            value=[
                describe_value(m, v, bool(ok))
                for m, v, ok in zip(result.metrics.metric, result.metrics.value, result.metrics.passed, strict=True)
            ]
        )
        print(table.to_string(index=False))
    return 0


def _positive(value: float, flag: str) -> float:
    if not value > 0 or value == float("inf"):
        raise InvalidInput(f"{flag} must be a positive number of seconds, got {value!r}")
    return value


def _interval(text: str) -> tuple[float, float]:
    try:
        start, end = (float(x) for x in text.split(","))
    except ValueError:
        raise InvalidInput(f"--strava-down must be START,END in seconds, e.g. 60,660, got {text!r}") from None
    return start, end


def _faults(text: str) -> dict[str, Any]:
    """``error_rate=0.1,timeout_rate=0.02`` (rates in [0, 1]) -> Faults fields."""
    faults: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = (x.strip() for x in part.partition("="))
        if name not in _FAULT_RATES:
            raise InvalidInput(f"--faults knows {', '.join(_FAULT_RATES)}, not {name!r}")
        try:
            rate = float(value)
        except ValueError:
            rate = float("nan")
        if not sep or not 0 <= rate <= 1:
            raise InvalidInput(f"--faults {name} must be a rate in [0, 1], as {name}=0.05, got {part!r}")
        faults[name] = rate
    if not faults:
        raise InvalidInput("--faults needs NAME=RATE, e.g. error_rate=0.1,timeout_rate=0.02")
    return faults


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"--latency must be seconds or lognormal:MEDIAN,SIGMA, got {text!r}") from None


def _records(frame: Any) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
