"""``syncsim`` — the command line. Every command prints errors as one clear line and exits non-zero.

Each family of commands lives in its own module with ``register_cli(subparsers) -> {name: handler}``; only
the module of the command being run is imported (the simulator pulls in pandas, and a worker process should
not pay for that at start-up), all of them for ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from syncsim.cli.common import Command
from syncsim.errors import SyncsimError

__all__ = ["main"]

#: Which module defines each command.
COMMAND_MODULES = {
    "migrate": "syncsim.cli.jobs",
    "worker": "syncsim.cli.jobs",
    "jobs": "syncsim.cli.jobs",
    "status": "syncsim.cli.jobs",
    "demo": "syncsim.cli.jobs",
    "sync": "syncsim.cli.strava",
    "fake-strava": "syncsim.cli.strava",
    "serve": "syncsim.cli.serve",
    "token": "syncsim.cli.serve",
    "simulate": "syncsim.cli.simulate",
    "report": "syncsim.cli.report",
    "tick": "syncsim.cli.tick",
    "schedule": "syncsim.cli.tick",
}


def _modules_needed(argv: Sequence[str]) -> list[str]:
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in COMMAND_MODULES:
        return [COMMAND_MODULES[command]]
    return list(dict.fromkeys(COMMAND_MODULES.values()))  # help, or an unknown command: list them all


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line like every other error (argparse prints the whole usage first);
    the line says where the usage is. Sub-commands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = _Parser(
        prog="syncsim",
        description="Background jobs for Strava syncs on serverless platforms, and the simulator that tests them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Command] = {}
    for name in _modules_needed(argv):
        handlers.update(importlib.import_module(name).register_cli(sub))
    return parser, handlers


#: The optional libraries, by the extra that installs them (pyproject.toml's optional-dependencies).
_EXTRAS = {
    "starlette": "api",
    "uvicorn": "api",
    "jwt": "api",
    "pandas": "sim",
    "numpy": "sim",
    "pyarrow": "sim",
    "matplotlib": "notebooks",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "supabase": "supabase",
    "postgrest": "supabase",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, handlers = _build_parser(argv)
    args = parser.parse_args(argv)
    # Commands report a store outage themselves, in one line; psycopg's pool would warn at every reconnection
    # attempt, in libpq's multi-line messages.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    try:
        return handlers[args.command](args)
    except SyncsimError as exc:
        print(f"syncsim {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's, not syncsim's: a file that cannot be read or written (a full disk)
        what = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        print(f"syncsim {args.command}: error: {' '.join(what.split())}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        # A feature of an extra that is not installed (a base install running `serve`, say): name what to install.
        library = (exc.name or "").partition(".")[0]
        extra = _EXTRAS.get(library)
        if extra is None:
            raise
        print(
            f"syncsim {args.command}: error: this needs {library}, which comes with an extra: "
            f"pip install 'syncsim[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
