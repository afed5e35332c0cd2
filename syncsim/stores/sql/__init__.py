"""SQL migrations, one directory per dialect (``postgres/``, ``sqlite/``), loaded from the installed package.

Files are named ``NNNN_what.sql`` and applied in name order; a migration's name is its file name without
``.sql``. Each store records applied names in its ``syncsim_migrations`` table, so a migration runs once and
an applied file is never edited: changes go in a new file.
"""

from __future__ import annotations

from importlib import resources

from syncsim.errors import ConfigError

__all__ = ["DIALECTS", "migration_files"]

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
