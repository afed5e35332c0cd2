"""What every ``syncsim`` command shares: the ``--store`` option, and plain-text tables (:mod:`syncsim.text`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from syncsim import defaults
from syncsim.text import format_table

__all__ = ["Command", "format_table", "store_arg"]

#: A sub-command's handler: parsed arguments in, exit status out.
Command = Callable[[argparse.Namespace], int]


def store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: ${defaults.STORE_ENV} or {defaults.STORE_URL})",
    )
