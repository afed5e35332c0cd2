"""What every ``syncsim`` command shares: the handler type and the ``--store`` option."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from syncsim import defaults

__all__ = ["Command", "store_arg"]

#: A sub-command's handler: parsed arguments in, exit status out.
Command = Callable[[argparse.Namespace], int]


def store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: ${defaults.STORE_ENV} or {defaults.STORE_URL})",
    )
