"""FakeStrava's HTTP surface: the records of what it answered, Strava's exact error bodies, request parsing,
and the two adapters around a :class:`Responder` (FakeStrava's request core).

The adapters only add the latency (``delay_s``) or the hang the core decided: :class:`FakeStravaTransport`, an
httpx transport for in-process use (tests, the simulator), and :func:`serve_asgi`, the plain ASGI 3 app behind
``FakeStrava.asgi_app`` for loopback (``syncsim fake-strava``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import httpx
import orjson

from syncsim.clock import Clock
from syncsim.strava.fake.config import Faults

__all__ = [
    "BODY_401",
    "BODY_404",
    "BODY_429",
    "BODY_500",
    "BODY_502",
    "BODY_503",
    "JSON",
    "FakeRequest",
    "FakeResponse",
    "FakeStravaTransport",
    "Responder",
    "bad_request",
    "bearer",
    "form_or_json",
    "serve_asgi",
]

JSON = {"content-type": "application/json; charset=utf-8"}
#: Strava's exact bodies (shared/strava/README.md).
BODY_401 = (
    b'{"message":"Authorization Error","errors":[{"resource":"Athlete","field":"access_token","code":"invalid"}]}'
)
BODY_429 = (
    b'{"message":"Rate Limit Exceeded","errors":[{"resource":"Application","field":"rate limit","code":"exceeded"}]}'
)
BODY_404 = b'{"message":"Record Not Found","errors":[{"resource":"Activity","field":"id","code":"invalid"}]}'
BODY_500 = b'{"message":"Internal Server Error","errors":[]}'
BODY_502 = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
BODY_503 = b"<html><body><h1>503 Service Unavailable</h1></body></html>"


def bad_request(resource: str, field_name: str) -> bytes:
    return orjson.dumps(
        {"message": "Bad Request", "errors": [{"resource": resource, "field": field_name, "code": "invalid"}]}
    )


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """One request FakeStrava answered (path without query string: no token can appear)."""

    ts: float
    method: str
    path: str
    status: int
    athlete_id: int | None


@dataclass(slots=True)
class FakeResponse:
    """What the core decided: status, headers, body, how long to take (s), and whether to hang instead."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay_s: float = 0.0
    hang: bool = False


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def form_or_json(content_type: str, body: bytes) -> dict[str, str]:
    if not body:
        return {}
    if "json" in content_type:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


class Responder(Protocol):
    """What the adapters need of FakeStrava: its clock, its faults, and its request core."""

    clock: Clock
    faults: Faults

    def respond(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes = b""
    ) -> FakeResponse: ...

    def remaining_delay(self, resp: FakeResponse, received_at: float) -> float: ...


async def serve_asgi(fake: Responder, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer one ASGI 3 connection (``http`` or ``lifespan``) from ``fake``: its ASGI app, for uvicorn on loopback."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = scope.get("query_string", b"").decode("latin-1")
    received_at = fake.clock.now()
    resp = fake.respond(scope["method"], scope["path"], query, headers, b"".join(chunks))
    await fake.clock.sleep(fake.faults.hang_s if resp.hang else fake.remaining_delay(resp, received_at))
    raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
    await send({"type": "http.response.start", "status": resp.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": resp.body})


class FakeStravaTransport(httpx.AsyncBaseTransport):
    """FakeStrava as an httpx transport: no sockets, latency and timeouts in the fake's clock."""

    def __init__(self, fake: Responder) -> None:
        self.fake = fake

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received_at = self.fake.clock.now()
        resp = self.fake.respond(request.method, request.url.path, request.url.query.decode(), headers, body)
        timeout = request.extensions.get("timeout", {}).get("read")
        if resp.hang or (timeout is not None and resp.delay_s > timeout):
            await self.fake.clock.sleep(timeout if timeout is not None else self.fake.faults.hang_s)
            raise httpx.ReadTimeout("FakeStrava did not answer within the read timeout", request=request)
        delay = self.fake.remaining_delay(resp, received_at)
        if delay > 0:
            await self.fake.clock.sleep(delay)
        return httpx.Response(resp.status, headers=resp.headers, content=resp.body, request=request)
