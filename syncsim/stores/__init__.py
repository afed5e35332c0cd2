"""Where jobs and Strava data are kept: the :class:`Store` protocol and ``open_store(url)``.

``sqlite:///path.db`` is the embedded default (:mod:`syncsim.stores.sqlite`), ``postgresql://…`` any
PostgreSQL including a Supabase project's connection string (:mod:`syncsim.stores.postgres`), and
``supabase://<project>`` Supabase's REST API (:mod:`syncsim.stores.supabase`). The implementations load only
when a URL asks for one, so a process that never touches PostgreSQL never imports psycopg.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from syncsim.errors import ConfigError
from syncsim.stores.protocol import Store
from syncsim.stores.urls import default_store_url, redact_url

__all__ = ["Store", "default_store_url", "open_store", "redact_url"]


def open_store(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names (not yet connected for network stores; call ``migrate()`` or use it).

    ``sqlite:///path.db`` (``sqlite://:memory:`` for a private in-memory one), ``postgresql://…`` or
    ``postgres://…``, ``supabase://<project-host>``. Anything else is a :class:`ConfigError`.
    """
    url = url or default_store_url()
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from syncsim.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **options)
    if scheme in {"postgresql", "postgres"}:
        try:
            from syncsim.stores.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(f"postgresql stores need psycopg: pip install 'syncsim[postgres]' ({exc})") from None
        return PostgresStore.from_url(url, **options)
    if scheme == "supabase":
        try:
            from syncsim.stores.supabase import SupabaseStore
        except ImportError as exc:  # pragma: no cover
            raise ConfigError(f"supabase stores need supabase-py: pip install 'syncsim[supabase]' ({exc})") from None
        return SupabaseStore.from_url(url, **options)
    raise ConfigError(
        f"unsupported store URL {redact_url(url)!r}: use sqlite:///path.db, postgresql://… or supabase://…"
    )
