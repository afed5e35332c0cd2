"""The simulated browsers' HTTP: the real ASGI app called in-process, with no HTTP client library in between.

:class:`AsgiCaller` builds the ASGI ``http`` scope, feeds the request body, and collects the response — what
``httpx.ASGITransport`` does, without httpx's request/response models, header normalisation and stream
machinery, which cost a simulation more than the app itself (up to ~180,000 status polls a run). The app, its
middleware and every handler run exactly as under a server; only the bytes never touch a socket.

It speaks the small part of ``httpx.AsyncClient`` that :class:`~syncsim.sim.browser.Browser` uses (``get``,
``post`` with ``json=``; responses with ``status_code``, ``json()`` and ``text``), so a browser talks to a
real server over an ``httpx.AsyncClient`` or to the in-process app through this, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = ["AsgiCaller", "AsgiResponse", "HttpCaller", "HttpResponse"]

#: URLs whose split and encoded parts :class:`AsgiCaller` keeps (one per job polled; cleared when full).
_URLS_KEPT = 4096


class HttpResponse(Protocol):
    """What a browser reads from a response (``httpx.Response`` has it too)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class HttpCaller(Protocol):
    """What a browser needs to send requests (``httpx.AsyncClient`` has it too)."""

    async def get(self, url: str, *, headers: Mapping[str, str] | None = ...) -> HttpResponse: ...

    async def post(self, url: str, *, headers: Mapping[str, str] | None = ..., json: Any = ...) -> HttpResponse: ...


@dataclass(frozen=True, slots=True)
class AsgiResponse:
    """A collected response: status, raw header pairs, body."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


class _Exchange:
    """One request's two ASGI channels: ``receive`` hands over the body, ``send`` collects the response."""

    __slots__ = ("_done", "body", "complete", "head", "headers", "parts", "sent", "status")

    def __init__(self, body: bytes, *, head: bool) -> None:
        self.body = body
        self.head = head
        self.sent = False
        self.complete = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self._done: asyncio.Future[None] | None = None

    async def receive(self) -> dict[str, Any]:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        # After the body, the only news is the client leaving, once the response is complete.
        if not self.complete:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            await self._done
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            chunk = message.get("body", b"")
            if chunk and not self.head:
                self.parts.append(chunk)
            if not message.get("more_body", False):
                self.complete = True
                if self._done is not None and not self._done.done():
                    self._done.set_result(None)


class AsgiCaller:
    """Send HTTP requests to an ASGI 3 app in the current task (as ``httpx.ASGITransport`` does).

    Exceptions the app raises propagate to the caller (``httpx.ASGITransport``'s default). ``host`` is the
    ``Host`` header and the scope's server name.
    """

    def __init__(self, app: Any, *, host: str = "syncsim.sim", client: tuple[str, int] = ("127.0.0.1", 123)) -> None:
        self.app = app
        self.host = host
        self.client = client
        self._host_header = (b"host", host.encode("latin-1"))
        self._server = (host, 80)
        self._urls: dict[str, tuple[str, bytes, bytes]] = {}
        self.requests = 0

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> AsgiResponse:
        return await self.request("GET", url, headers=headers)

    async def post(self, url: str, *, headers: Mapping[str, str] | None = None, json: Any = None) -> AsgiResponse:
        return await self.request("POST", url, headers=headers, json=json)

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, json: Any = None
    ) -> AsgiResponse:
        """Call the app with one request; ``url`` is a path with an optional query string."""
        parts = self._urls.get(url)
        if parts is None:  # a browser polls one URL all run long: split and encode it once
            path, _, query = url.partition("?")
            parts = (path, path.encode(), query.encode())
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            self._urls[url] = parts
        path, raw_path, query_string = parts
        raw = [self._host_header]
        body = b""
        if json is not None:
            body = orjson.dumps(json)
            raw.append((b"content-type", b"application/json"))
        if method != "GET" or body:
            raw.append((b"content-length", str(len(body)).encode()))
        if headers:
            raw.extend([(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()])
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "headers": raw,
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": query_string,
            "server": self._server,
            "client": self.client,
            "root_path": "",
        }
        exchange = _Exchange(body, head=method == "HEAD")
        self.requests += 1
        await self.app(scope, exchange.receive, exchange.send)
        if not exchange.complete:
            raise RuntimeError(f"{method} {path}: the app returned without completing its response")
        return AsgiResponse(exchange.status, exchange.headers, b"".join(exchange.parts))

    async def aclose(self) -> None:
        """Nothing to close (no connections); here so it can stand in for an ``httpx.AsyncClient``."""
