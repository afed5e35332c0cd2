"""Faults of a SQLite store on a file, made for real: a full disk, another process's write lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from syncsim.stores.sqlite import SQLiteStore

__all__ = ["full_disk", "write_lock_held"]


@contextmanager
def full_disk(store: SQLiteStore) -> Iterator[None]:
    """While inside, ``store``'s file can grow no more: every write that needs a new page fails with SQLITE_FULL,
    as on a full disk. (SQLite's ``max_page_count``, on the store's own connection: no mount, no root.)"""
    conn = store.conn
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    assert free == 0, "a file with free pages would take writes without growing"
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (before,) = conn.execute("PRAGMA max_page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA max_page_count = {before}")


@contextmanager
def write_lock_held(path: str) -> Iterator[None]:
    """While inside, another connection (another process, to the store) holds the file's write lock, as a long
    write does: a migration, a backup, ``sqlite3`` at a prompt in a transaction."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.close()  # rolls the empty transaction back
