"""What every ``syncsim`` command shares: the ``--store`` option and plain-text tables."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from syncsim import defaults

__all__ = ["Command", "format_table", "store_arg"]

#: A sub-command's handler: parsed arguments in, exit status out.
Command = Callable[[argparse.Namespace], int]


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table (no pandas needed)."""
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body])


def store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: ${defaults.STORE_ENV} or {defaults.STORE_URL})",
    )
