"""Store URLs: the default one, and a form of any URL or connection string that is safe to print."""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

from syncsim import defaults

__all__ = ["SECRET_PARAMETERS", "default_store_url", "redact_url"]

#: libpq's parameters that hold a secret: the password, and the passphrase of the client certificate's key.
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
#: What a redacted secret is replaced with.
MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def default_store_url() -> str:
    """``$SYNCSIM_STORE`` if set, else the embedded SQLite file."""
    return os.environ.get(defaults.STORE_ENV) or defaults.STORE_URL


def redact_url(url: str) -> str:
    """``url`` with every secret libpq would read from it replaced by ``***``, for messages and logs.

    Covers both forms libpq accepts: URIs (``scheme://user:password@host/db?password=…&sslpassword=…``, with
    percent-encoded names and values) and keyword/value strings (``host=h password='s e c' …``); a ``dbname``
    that is itself a connection string is redacted too. Where Python's URL parser and libpq would split a
    malformed URI differently, the larger of the two candidate secrets is masked.
    """
    match = _SCHEME.match(url)
    if match is not None:
        return match.group(0) + _redact_uri_rest(url[match.end() :])
    if "=" in url:
        return _redact_keywords(url)
    return url


def _redact_uri_rest(rest: str) -> str:
    """The part of a URI after ``scheme://``: ``[user[:password]@]hosts[/db][?params]``."""
    # libpq's user info ends at the first '@' before any '/'; Python's at the last '@' before any '/', '?' or
    # '#'. Masking up to the last '@' before the first '/' (or, failing that, before the first '?') covers both.
    slash, query = rest.find("/"), rest.find("?")
    end = max(rest.rfind("@", 0, slash if slash >= 0 else len(rest)), rest.rfind("@", 0, query if query >= 0 else 0))
    if end >= 0:
        userinfo, rest = rest[:end], rest[end + 1 :]
        user = userinfo.split(":", 1)[0].split("@", 1)[0]
        prefix = f"{user}:{MASK}@" if userinfo != user else f"{user}@"
    else:
        prefix = ""
    base, sep, params = rest.partition("?")
    if not sep:
        return prefix + rest
    return prefix + base + "?" + "&".join(_redact_uri_parameter(item) for item in params.split("&"))


def _redact_uri_parameter(item: str) -> str:
    name, sep, value = item.partition("=")
    key = unquote(name).strip().lower()
    if sep and key in SECRET_PARAMETERS:
        return f"{name}={MASK}"
    if sep and key == "dbname":
        inner = unquote(value)
        redacted = redact_url(inner)
        return item if redacted == inner else f"{name}={quote(redacted, safe='*')}"
    return item


def _redact_keywords(conninfo: str) -> str:
    """A libpq keyword/value string (``key = value`` pairs, values optionally single-quoted with backslash
    escapes) with its secrets masked; from the first token it cannot parse, everything is masked."""
    out: list[str] = []
    i, n = 0, len(conninfo)
    while i < n:
        if conninfo[i].isspace():
            out.append(conninfo[i])
            i += 1
            continue
        start = i
        while i < n and conninfo[i] != "=" and not conninfo[i].isspace():
            i += 1
        key = conninfo[start:i]
        while i < n and conninfo[i].isspace():
            i += 1
        if i >= n or conninfo[i] != "=" or not key:
            out.append(conninfo[start:] if "password" not in conninfo[start:].lower() else MASK)
            break
        i += 1
        while i < n and conninfo[i].isspace():
            i += 1
        value_start = i
        value: list[str] = []
        if i < n and conninfo[i] == "'":
            i += 1
            while i < n and conninfo[i] != "'":
                if conninfo[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(conninfo[i])
                i += 1
            if i >= n:  # unterminated quote: libpq refuses it, and it may hold a secret
                out.append(f"{key}={MASK}")
                break
            i += 1
        else:
            while i < n and not conninfo[i].isspace():
                if conninfo[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(conninfo[i])
                i += 1
        raw_value = conninfo[value_start:i]
        lowered = key.lower()
        if lowered in SECRET_PARAMETERS or (lowered == "dbname" and redact_url("".join(value)) != "".join(value)):
            out.append(f"{key}={MASK}")
        else:
            out.append(f"{key}={raw_value}")
    return "".join(out)
