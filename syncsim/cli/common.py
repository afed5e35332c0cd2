"""What every ``syncsim`` command shares: the handler type, the ``--store`` option, output files."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from syncsim import defaults
from syncsim.clock import Clock
from syncsim.errors import InvalidInput, StoreError

__all__ = ["Command", "StoreOutage", "count", "output_file", "port", "store_arg"]

#: A sub-command's handler: parsed arguments in, exit status out.
Command = Callable[[argparse.Namespace], int]


class StoreOutage:
    """A command that waits out a store outage (a restart, a failover, a network cut) instead of ending with it:
    ``say`` gets one line when the store first fails and one when it answers again, and :meth:`failed` says how
    long to pause before the next try (doubling, as a worker's claim loop does)."""

    def __init__(self, clock: Clock, say: Callable[[str], None]) -> None:
        self.clock = clock
        self.say = say
        self.since: float | None = None
        self.pause_s = defaults.WORKER_STORE_RETRY_FIRST_S

    def failed(self, error: StoreError) -> float:
        """A call failed on the store; the pause before the next try (seconds)."""
        if self.since is None:
            self.since = self.clock.now()
            self.say(f"the store failed, retrying until it answers: {' '.join(str(error).split())}")
        pause, self.pause_s = self.pause_s, min(self.pause_s * 2, defaults.WORKER_STORE_RETRY_MAX_S)
        return pause

    def answered(self) -> None:
        """A call succeeded: an outage, if any, is over."""
        if self.since is not None:
            self.say(f"the store answers again after {self.clock.now() - self.since:.1f} s")
            self.since = None
            self.pause_s = defaults.WORKER_STORE_RETRY_FIRST_S


def store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: ${defaults.STORE_ENV} or {defaults.STORE_URL})",
    )


def output_file(text: str | Path, flag: str, *, suffixes: tuple[str, ...] = ()) -> Path:
    """The file a command writes when its work is done, checked before the work starts (a simulation can take a
    minute; it should not end in "no such directory"): one of ``suffixes``, in a folder that exists and may be
    written to, and not a folder itself."""
    path = Path(text)
    if suffixes and path.suffix not in suffixes:
        raise InvalidInput(f"{flag} must end in {' or '.join(suffixes)}, got {str(text)!r}")
    folder = path.parent
    if not folder.is_dir():
        raise InvalidInput(f"{flag} {str(text)!r}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise InvalidInput(f"{flag} {str(text)!r} is a folder, not a file")
    if not _can_create_in(folder):
        raise InvalidInput(f"{flag} {str(text)!r}: folder {str(folder)!r} is not writable")
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, tried for real: ``os.access`` says yes to root everywhere,
    /proc and read-only mounts included, and the work would end in "no such file" after it was done."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def port(text: str) -> int:
    """An argparse ``type``: a TCP port, 0 (any free one) to 65535."""
    return _whole_number(text, 0, 65535)


def count(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (jobs, rows, concurrent loops)."""
    return _whole_number(text, 1, None)


def _whole_number(text: str, lowest: int, highest: int | None) -> int:
    within = f">= {lowest}" if highest is None else f"within {lowest}..{highest}"
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < lowest or (highest is not None and value > highest):
        raise argparse.ArgumentTypeError(f"must be a whole number {within}, got {text!r}")
    return value
