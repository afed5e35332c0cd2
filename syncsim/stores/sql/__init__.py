"""SQL migrations, one directory per dialect (``postgres/``, ``sqlite/``), loaded from the installed package.

Files are named ``NNNN_what.sql`` and applied in name order; a migration's name is its file name without
``.sql``. Each store records applied names in its ``syncsim_migrations`` table, so a migration runs once and
an applied file is never edited: changes go in a new file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import resources

from syncsim.errors import ConfigError

__all__ = ["DIALECTS", "migration_files", "pending_migrations"]

log = logging.getLogger("syncsim.stores")

#: The dialects that ship migrations: one subdirectory of this package each.
DIALECTS = ("postgres", "sqlite")


def migration_files(dialect: str) -> list[tuple[str, str]]:
    """``[(name, sql), …]`` for ``dialect``, in the order they must be applied."""
    if dialect not in DIALECTS:
        raise ConfigError(f"unknown SQL dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
    directory = resources.files(__name__).joinpath(dialect)
    files = sorted(
        (entry for entry in directory.iterdir() if entry.is_file() and entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")) for entry in files]


def pending_migrations(dialect: str, applied: Iterable[str], *, store: str) -> list[tuple[str, str]]:
    """The migrations of ``dialect`` not in ``applied`` (the names a store's ``syncsim_migrations`` holds), in
    order. A name this syncsim does not ship means a newer syncsim migrated the store (a rolled-back deployment
    runs this one on its schema): that is logged once, as a warning naming ``store``, and is no error, since
    migrations only add."""
    files = migration_files(dialect)
    done = set(applied)
    unknown = sorted(done - {name for name, _ in files})
    if unknown:
        log.warning(
            "%s has migration(s) this syncsim does not ship (%s): a newer syncsim migrated it; upgrade syncsim",
            store,
            ", ".join(unknown),
        )
    return [(name, sql) for name, sql in files if name not in done]
