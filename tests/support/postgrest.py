"""A PostgREST-compatible ``httpx`` transport that executes requests as SQL on a real PostgreSQL.

No PostgREST server is available here (no Debian package, none on the registries we reach), so the Supabase
store's REST layer is tested against this stand-in. It implements the subset of PostgREST's HTTP API that
supabase-py / postgrest-py send for the store's operations, under ``/rest/v1``:

* ``GET``/``HEAD /<table>?select=a,b&col=op.value&order=col.desc&limit=n&offset=m`` with filters ``eq``,
  ``neq``, ``gt``, ``gte``, ``lt``, ``lte``, ``like``, ``ilike``, ``is`` (``null``/``true``/``false``),
  ``in.(…)`` and ``not.<op>``; ``Prefer: count=exact`` → ``Content-Range``;
* ``POST /<table>`` (one object or an array; ``columns=``), ``Prefer: return=representation|minimal``,
  ``resolution=merge-duplicates|ignore-duplicates`` with ``on_conflict=`` (default: the primary key);
* ``PATCH`` and ``DELETE /<table>?filters`` with the same ``Prefer`` options;
* ``POST /rpc/<function>`` with a JSON object of named arguments (set-returning functions → an array of
  rows, scalar functions → the bare JSON value).

Each request runs in one transaction as PostgREST runs it: the bearer token (else the ``apikey`` header) is
decoded **without verifying its signature** (this is a test stand-in), then ``set_config('role', <role
claim>, true)`` and ``set_config('request.jwt.claims', <claims json>, true)``, so grants and row-level
security apply for real. Errors come back in PostgREST's JSON shape ``{"code","message","details","hint"}``:
409 for unique (23505) and foreign-key (23503) violations, 404 for unknown tables or functions, 401/403 for
missing privileges, 400 otherwise. Identifiers are checked against a strict pattern and quoted; values are
always bound as parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgrestTransport", "sign_test_jwt"]

#: Roles a token may name, as on Supabase. Anything else is refused with 401.
ALLOWED_ROLES = frozenset({"anon", "authenticated", "service_role"})
#: Enough connections for the store's concurrent requests (claim races, the runner's parallel jobs).
MAX_CONNECTIONS = 10

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TYPE = re.compile(r"^[a-z_][a-z0-9_ ]*(\(\d+(,\d+)?\))?(\[\])?$")
_RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns"})
_OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "like", "ilike": "ilike"}
_IS_VALUES = {"null": sql.SQL("null"), "true": sql.SQL("true"), "false": sql.SQL("false")}
_JSON = {"content-type": "application/json; charset=utf-8"}


class _HttpError(Exception):
    """A PostgREST-shaped error response."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.hint = status, code, message, details, hint

    def response(self) -> httpx.Response:
        body = {"code": self.code, "message": self.message, "details": self.details, "hint": self.hint}
        return httpx.Response(self.status, headers=_JSON, content=json.dumps(body).encode())


def sign_test_jwt(claims: Mapping[str, Any], secret: str = "syncsim-test-secret") -> str:
    """An HS256 JWT for ``claims`` (e.g. ``{"role": "service_role"}``), for tests against this transport."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(dict(claims), separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def _claims(request: httpx.Request) -> dict[str, Any]:
    """The token's claims, unverified: ``Authorization: Bearer`` first, else ``apikey``; none → anon."""
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("apikey", "")
    if not token:
        return {"role": "anon"}
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        raise _HttpError(401, "PGRST301", "JWSError JWSInvalid: the token is not a JWT") from None
    if not isinstance(claims, dict):
        raise _HttpError(401, "PGRST301", "JWT claims are not an object")
    if claims.get("role", "anon") not in ALLOWED_ROLES:
        raise _HttpError(401, "PGRST301", f"role {str(claims.get('role'))[:40]!r} is not allowed")
    return claims


def _ident(name: str, what: str = "identifier") -> sql.Identifier:
    if not _IDENT.match(name):
        raise _HttpError(400, "PGRST100", f"invalid {what}: {name[:60]!r}")
    return sql.Identifier(name)


def _columns(spec: str | None) -> sql.Composable:
    """``select=a,b`` → ``"a", "b"``; ``*`` or nothing → ``*``; ``alias:column->key`` → the JSON field of a
    json(b) column as JSON, named ``alias``, as PostgREST's JSON paths do (embedding is not supported)."""
    if not spec or spec.strip() == "*":
        return sql.SQL("*")
    parts: list[sql.Composable] = []
    for item in (c.strip() for c in spec.split(",")):
        if not item:
            continue
        alias, _, path = item.rpartition(":") if ":" in item else ("", "", item)
        column, arrow, key = path.partition("->")
        if not arrow:
            parts.append(
                _ident(column, "column") if not alias else sql.SQL("{} as {}").format(_ident(column), _ident(alias))
            )
            continue
        part = sql.SQL("{} -> {}").format(_ident(column, "column"), sql.Literal(key))
        parts.append(sql.SQL("{} as {}").format(part, _ident(alias or key, "alias")))
    return sql.SQL(", ").join(parts)


def _split_list(text: str) -> list[str]:
    """``(a,"b,c",d)`` → ``['a', 'b,c', 'd']``."""
    if not (text.startswith("(") and text.endswith(")")):
        raise _HttpError(400, "PGRST100", f"expected a parenthesized list, got {text[:60]!r}")
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text[1:-1]:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def _where(params: Iterable[tuple[str, str]]) -> tuple[sql.Composable, list[Any]]:
    """The horizontal filters of a query string as a ``where`` clause and its parameters."""
    clauses: list[sql.Composable] = []
    values: list[Any] = []
    for key, raw in params:
        if key in _RESERVED_PARAMS:
            continue
        column = _ident(key, "column")
        negate = raw.startswith("not.")
        op, _, value = raw.removeprefix("not.").partition(".")
        if op in _OPERATORS:
            clause: sql.Composable = sql.SQL("{} {} %s").format(column, sql.SQL(_OPERATORS[op]))
            values.append(value)
        elif op == "is" and value in _IS_VALUES:
            clause = sql.SQL("{} is {}").format(column, _IS_VALUES[value])
        elif op == "in":
            items = _split_list(value)
            clause = sql.SQL("{} in ({})").format(column, sql.SQL(", ").join(sql.SQL("%s") for _ in items))
            values.extend(items)
        else:
            raise _HttpError(400, "PGRST100", f"unsupported filter {key}={raw[:60]}")
        clauses.append(sql.SQL("not ({})").format(clause) if negate else clause)
    if not clauses:
        return sql.SQL(""), values
    return sql.SQL(" where ") + sql.SQL(" and ").join(clauses), values


def _order(spec: str | None) -> sql.Composable:
    if not spec:
        return sql.SQL("")
    terms: list[sql.Composable] = []
    for term in spec.split(","):
        name, *mods = term.strip().split(".")
        parts: list[sql.Composable] = [_ident(name, "column")]
        for mod in mods:
            if mod not in {"asc", "desc", "nullsfirst", "nullslast"}:
                raise _HttpError(400, "PGRST100", f"unsupported order modifier {mod[:20]!r}")
            parts.append(sql.SQL({"nullsfirst": "nulls first", "nullslast": "nulls last"}.get(mod, mod)))
        terms.append(sql.SQL(" ").join(parts))
    return sql.SQL(" order by ") + sql.SQL(", ").join(terms)


def _int_param(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise _HttpError(400, "PGRST100", f"{name} must be a non-negative integer")
    return int(value)


@dataclass(frozen=True, slots=True)
class _Prefer:
    representation: bool
    count: bool
    resolution: str | None

    @classmethod
    def parse(cls, request: httpx.Request) -> _Prefer:
        tokens = {t.strip() for v in request.headers.get_list("prefer") for t in v.split(",")}
        resolution = next((t.split("=", 1)[1] for t in tokens if t.startswith("resolution=")), None)
        return cls("return=representation" in tokens, "count=exact" in tokens, resolution)


def _content_range(offset: int, shown: int, total: int | None) -> str:
    span = f"{offset}-{offset + shown - 1}" if shown else "*"
    return f"{span}/{'*' if total is None else total}"


class PostgrestTransport(httpx.AsyncBaseTransport):
    """Serve PostgREST's HTTP API (the subset above) from the PostgreSQL at ``database_url``.

    ``database_url`` must name a role that may ``SET ROLE`` to ``anon``/``authenticated``/``service_role``
    (a superuser in tests). Connections come from a pool opened on first use; ``aclose()`` closes it.
    """

    def __init__(self, database_url: str, *, prefix: str = "/rest/v1", max_connections: int = MAX_CONNECTIONS):
        self._database_url = database_url
        self._prefix = prefix.rstrip("/")
        self._max_connections = max_connections
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None

    async def _connections(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is None:
            pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                self._database_url,
                min_size=0,
                max_size=self._max_connections,
                kwargs={"autocommit": True},
                open=False,
                name="postgrest-transport",
            )
            await pool.open()
            self._pool = pool
        return self._pool

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._handle(request)
        except _HttpError as exc:
            return exc.response()
        except psycopg.Error as exc:
            return _database_error(exc, request).response()

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not path.startswith(self._prefix + "/"):
            raise _HttpError(404, "PGRST125", f"invalid path {path[:80]!r}")
        resource = path[len(self._prefix) + 1 :].strip("/")
        claims = _claims(request)
        await request.aread()
        try:
            body: Any = json.loads(request.content) if request.content else None
        except ValueError:
            raise _HttpError(400, "PGRST102", "the request body is not valid JSON") from None
        pool = await self._connections()
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
                "set_config('request.method', %s, true), set_config('request.path', %s, true), "
                "set_config('timezone', 'UTC', true)",
                (claims.get("role", "anon"), json.dumps(claims), request.method, path),
            )
            if resource.startswith("rpc/"):
                if request.method != "POST":
                    raise _HttpError(405, "PGRST101", "only POST is supported for functions here")
                return await _call(conn, resource[4:], body or {})
            return await _table(conn, request, resource, body)


async def _table(conn: AsyncConnection[Any], request: httpx.Request, table: str, body: Any) -> httpx.Response:
    target = _ident(table, "table")
    query = request.url.params
    prefer = _Prefer.parse(request)
    where, values = _where(query.multi_items())
    returning = sql.SQL(" returning {}").format(_columns(query.get("select")))
    method = request.method
    if method in {"GET", "HEAD"}:
        offset = _int_param(query.get("offset"), "offset") or 0
        limit = _int_param(query.get("limit"), "limit")
        select = sql.SQL("select {} from {}{}{}").format(
            _columns(query.get("select")), target, where, _order(query.get("order"))
        )
        if limit is not None:
            select += sql.SQL(" limit {}").format(sql.Literal(limit))
        if offset:
            select += sql.SQL(" offset {}").format(sql.Literal(offset))
        rows = await _json_rows(conn, select, values)
        total = None
        if prefer.count:
            cur = await conn.execute(sql.SQL("select count(*) from {}{}").format(target, where), values)
            row = await cur.fetchone()
            total = int(row[0]) if row else 0
        headers = {**_JSON, "content-range": _content_range(offset, len(rows), total)}
        return httpx.Response(200, headers=headers, content=b"" if method == "HEAD" else json.dumps(rows).encode())
    if method == "POST":
        rows_in = body if isinstance(body, list) else [body]
        if not all(isinstance(r, dict) for r in rows_in):
            raise _HttpError(400, "PGRST102", "the body must be a JSON object or an array of objects")
        names = query.get("columns")
        # postgrest-py sends columns="a","b": PostgREST's quoted-identifier syntax.
        keys = (
            [k.strip().strip('"') for k in names.split(",")]
            if names
            else list(dict.fromkeys(k for r in rows_in for k in r))
        )
        cols = [_ident(k, "column") for k in keys]
        col_list = sql.SQL(", ").join(cols)
        statement = sql.SQL("insert into {} ({}) select {} from json_populate_recordset(null::{}, %s::json)").format(
            target, col_list, col_list, target
        )
        if prefer.resolution is not None:
            conflict = query.get("on_conflict")
            keys_conflict = (
                [k.strip().strip('"') for k in conflict.split(",")] if conflict else await _primary_key(conn, table)
            )
            target_cols = sql.SQL(", ").join(_ident(k, "column") for k in keys_conflict)
            updates = [c for k, c in zip(keys, cols, strict=True) if k not in keys_conflict]
            if prefer.resolution == "ignore-duplicates" or not updates:
                statement += sql.SQL(" on conflict ({}) do nothing").format(target_cols)
            else:
                sets = sql.SQL(", ").join(sql.SQL("{} = excluded.{}").format(c, c) for c in updates)
                statement += sql.SQL(" on conflict ({}) do update set {}").format(target_cols, sets)
        return await _write(conn, statement, [json.dumps(rows_in), *values], returning, prefer, 201)
    if method == "PATCH":
        if not isinstance(body, dict) or not body:
            raise _HttpError(400, "PGRST102", "the body must be a non-empty JSON object")
        cols = [_ident(k, "column") for k in body]
        statement = sql.SQL("update {} set ({}) = (select {} from json_populate_record(null::{}, %s::json)){}").format(
            target, sql.SQL(", ").join(cols), sql.SQL(", ").join(cols), target, where
        )
        if len(cols) == 1:  # a one-column row constructor needs ROW(...) on the left
            statement = sql.SQL(
                "update {} set {} = (select {} from json_populate_record(null::{}, %s::json)){}"
            ).format(target, cols[0], cols[0], target, where)
        return await _write(conn, statement, [json.dumps(body), *values], returning, prefer, 200)
    if method == "DELETE":
        statement = sql.SQL("delete from {}{}").format(target, where)
        return await _write(conn, statement, values, returning, prefer, 200)
    raise _HttpError(405, "PGRST117", f"unsupported method {method}")


async def _json_rows(conn: AsyncConnection[Any], query: sql.Composable, values: list[Any]) -> list[Any]:
    cur = await conn.execute(sql.SQL("select coalesce(json_agg(t), '[]')::text from ({}) t").format(query), values)
    row = await cur.fetchone()
    return list(json.loads(row[0])) if row else []


async def _write(
    conn: AsyncConnection[Any],
    statement: sql.Composable,
    values: list[Any],
    returning: sql.Composable,
    prefer: _Prefer,
    status: int,
) -> httpx.Response:
    """Run a write; ``return=representation`` answers with the rows, else an empty body (201/204)."""
    cur = await conn.execute(
        sql.SQL("with w as ({}{}) select coalesce(json_agg(w), '[]')::text, count(*) from w").format(
            statement, returning
        ),
        values,
    )
    row = await cur.fetchone()
    rows, n = (json.loads(row[0]), int(row[1])) if row else ([], 0)
    headers = {**_JSON, "content-range": _content_range(0, n, n if prefer.count else None)}
    if prefer.representation:
        return httpx.Response(status, headers=headers, content=json.dumps(rows).encode())
    return httpx.Response(201 if status == 201 else 204, headers=headers)


async def _primary_key(conn: AsyncConnection[Any], table: str) -> list[str]:
    cur = await conn.execute(
        """select a.attname from pg_index i
           join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
           where i.indrelid = to_regclass(%s) and i.indisprimary order by a.attnum""",
        (f"public.{table}",),
    )
    names = [str(r[0]) for r in await cur.fetchall()]
    if not names:
        raise _HttpError(400, "42P10", f"table {table!r} has no primary key: name on_conflict columns")
    return names


async def _call(conn: AsyncConnection[Any], name: str, args: Any) -> httpx.Response:
    """``POST /rpc/<name>``: named arguments typed from the catalog, as PostgREST's ``json_to_record``."""
    function = _ident(name, "function")
    if not isinstance(args, dict):
        raise _HttpError(400, "PGRST102", "function arguments must be a JSON object")
    cur = await conn.execute(
        """select coalesce(p.proargnames[1:p.pronargs], '{}'),
                  array(select format_type(t, null) from unnest(p.proargtypes) t),
                  p.proretset, rt.typtype = 'c'
           from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_type rt on rt.oid = p.prorettype
           where n.nspname = 'public' and p.proname = %s""",
        (name,),
    )
    candidates = await cur.fetchall()
    signature = next(((a, t, s, c) for a, t, s, c in candidates if set(args) <= set(a)), None)
    if signature is None:
        raise _HttpError(
            404,
            "PGRST202",
            f"Could not find the function public.{name}({', '.join(sorted(args))}) in the schema cache",
        )
    arg_names, arg_types, returns_set, returns_row = signature
    types = dict(zip(arg_names, arg_types, strict=True))
    given = [a for a in arg_names if a in args]
    for a in given:
        if not _TYPE.match(types[a]):
            raise _HttpError(400, "PGRST100", f"unsupported argument type {types[a]!r}")
    record = sql.SQL(", ").join(sql.SQL("{} {}").format(_ident(a), sql.SQL(types[a])) for a in given)
    call_args = sql.SQL(", ").join(sql.SQL("{} := a.{}").format(_ident(a), _ident(a)) for a in given)
    source = (
        sql.SQL("(select * from jsonb_to_record(%s::jsonb) as a({})) a").format(record)
        if given
        else sql.SQL("(select) a")
    )
    if returns_set or returns_row:
        query = sql.SQL("select coalesce(json_agg(r), '[]')::text from {}, {}({}) r").format(
            source, function, call_args
        )
    else:
        query = sql.SQL("select to_json({}({}))::text from {}").format(function, call_args, source)
    cur = await conn.execute(query, [json.dumps(args)] if given else [])
    row = await cur.fetchone()
    result: Any = json.loads(row[0]) if row and row[0] is not None else None
    if returns_row and not returns_set:
        result = result[0] if result else None
    return httpx.Response(200, headers=_JSON, content=json.dumps(result).encode())


def _database_error(exc: psycopg.Error, request: httpx.Request) -> _HttpError:
    """PostgREST's mapping of SQLSTATEs to HTTP statuses (the cases the store meets)."""
    diag = exc.diag
    code = exc.sqlstate or "XX000"
    message = diag.message_primary or str(exc).strip().splitlines()[0]
    if code in {"23505", "23503"}:
        status = 409
    elif code in {"42P01", "42883"}:
        status = 404
    elif code == "42501":
        status = 401 if _claims(request).get("role", "anon") == "anon" else 403
    elif code.startswith(("08", "53", "57")):
        status = 503
    else:
        status = 400 if code[:2] in {"22", "23", "42", "P0"} else 500
    return _HttpError(status, code, message, diag.message_detail, diag.message_hint)
