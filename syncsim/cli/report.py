"""``syncsim report --out DIR``: run the reference comparison and write its charts and a markdown summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from syncsim.cli.common import Command
from syncsim.plots.report import REFERENCE_ATHLETES, REFERENCE_SEED, write_report

__all__ = ["register_cli"]


def _report_command(args: argparse.Namespace) -> int:
    path = write_report(args.out, athletes=args.athletes, seed=args.seed)
    print(f"report written to {path}")
    return 0


def register_cli(subparsers: Any) -> dict[str, Command]:
    """Add ``report --out DIR [--athletes N] [--seed S]`` to ``subparsers``; return its handler by name."""
    parser = subparsers.add_parser("report", help="run the reference comparison and write charts + a summary")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for report.md and PNGs")
    parser.add_argument(
        "--athletes", type=int, default=REFERENCE_ATHLETES, help=f"athletes (default {REFERENCE_ATHLETES})"
    )
    parser.add_argument("--seed", type=int, default=REFERENCE_SEED, help=f"seed (default {REFERENCE_SEED})")
    return {"report": _report_command}
