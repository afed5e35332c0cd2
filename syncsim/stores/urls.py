"""Store URLs: the default one, and a form of any URL that is safe to print."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from syncsim import defaults

__all__ = ["default_store_url", "redact_url"]


def default_store_url() -> str:
    """``$SYNCSIM_STORE`` if set, else the embedded SQLite file."""
    return os.environ.get(defaults.STORE_ENV) or defaults.STORE_URL


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
