"""The Strava client's OAuth side: connecting an athlete, keeping access tokens fresh, the token grants.

:class:`_OAuth` is the part of :class:`~syncsim.strava.client.StravaClient` (a base class of it, no state of
its own) that trades an authorization code or a refresh token for tokens (``POST /oauth/token``), refreshes
an access token :data:`REFRESH_MARGIN_S` before it expires — once per user even when several tasks ask at the
same time, re-reading the :class:`~syncsim.strava.tokens.TokenStore` first because Strava invalidates a
rotated refresh token at once — and saves the result. A refused grant is ``Unauthorized``, rejected
application credentials (or missing ones) a ``ConfigError``, a malformed token answer ``MalformedResponse``;
no message ever contains a token or the client secret. Requests go through :class:`~syncsim.strava.http._Http`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson

from syncsim.errors import ConfigError, MalformedResponse, Unauthorized
from syncsim.strava.http import API_PREFIX, _Http
from syncsim.strava.models import Athlete, StravaTokens
from syncsim.strava.tokens import TokenStore

#: Strava's OAuth token endpoint (on its host, not under ``/api/v3``).
TOKEN_PATH = "/oauth/token"
CLIENT_ID_ENV = "STRAVA_CLIENT_ID"
CLIENT_SECRET_ENV = "STRAVA_CLIENT_SECRET"

#: Refresh an access token this long before it expires (seconds): a 200-item page takes ~1 s, so five
#: minutes leaves room for a whole batch of pages without a 401 in the middle.
REFRESH_MARGIN_S = 300.0


class _OAuth(_Http):
    """The token half of :class:`~syncsim.strava.client.StravaClient` (a base class of it, no state of its own).

    The attributes below are StravaClient's, set up by its ``__init__``.
    """

    _store: TokenStore
    _client_id: str | None
    _client_secret: str | None
    _refresh_margin_s: float
    _cache: dict[uuid.UUID, StravaTokens]
    _locks: dict[uuid.UUID, asyncio.Lock]

    async def exchange_code(self, user_id: uuid.UUID, code: str, *, deadline: float | None = None) -> StravaTokens:
        """First connection: trade an OAuth authorization ``code`` for tokens; save them for ``user_id``."""
        tokens = await self._token_grant(
            user_id, {"grant_type": "authorization_code", "code": code}, athlete_id=None, deadline=deadline
        )
        if tokens.athlete_id < 0:
            athlete = await self._athlete_with(tokens.access_token, deadline=deadline)
            tokens = _with_athlete(tokens, athlete.id)
        await self._save(user_id, tokens)
        return tokens

    async def connect_with_refresh_token(
        self, user_id: uuid.UUID, refresh_token: str, *, deadline: float | None = None
    ) -> StravaTokens:
        """Connect ``user_id`` from a refresh token (e.g. ``$STRAVA_REFRESH_TOKEN``): refresh, then save.

        A refresh response carries no athlete, so the athlete id comes from ``GET /athlete`` with the new
        access token (or from tokens already stored for the user) before the tokens are saved.
        """
        known = await self._store.get_tokens(user_id)
        tokens = await self._token_grant(
            user_id,
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            athlete_id=known.athlete_id if known is not None else None,
            deadline=deadline,
        )
        if tokens.athlete_id < 0:
            athlete = await self._athlete_with(tokens.access_token, deadline=deadline)
            tokens = _with_athlete(tokens, athlete.id)
        await self._save(user_id, tokens)
        return tokens

    # -- tokens ---------------------------------------------------------------------------------------------

    async def _valid_tokens(self, user_id: uuid.UUID, *, deadline: float | None) -> StravaTokens:
        tokens = self._cache.get(user_id)
        if tokens is None:
            tokens = await self._store.get_tokens(user_id)
            if tokens is None:
                raise Unauthorized(f"no Strava connection for user {user_id}")
            self._cache[user_id] = tokens
        if self._expiring(tokens):
            tokens = await self._refresh(user_id, stale=tokens, deadline=deadline)
        return tokens

    def _expiring(self, tokens: StravaTokens) -> bool:
        return tokens.expires_at - self._refresh_margin_s <= self._clock.now()

    async def _refresh(self, user_id: uuid.UUID, *, stale: StravaTokens, deadline: float | None) -> StravaTokens:
        """Refresh ``stale`` once, even when several tasks of this process ask at the same time."""
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            # Another task, or another process, may have refreshed while we waited: Strava invalidates a
            # rotated refresh token at once, so using the stale one now would log the athlete out.
            latest = await self._store.get_tokens(user_id)
            if latest is None:
                raise Unauthorized(f"no Strava connection for user {user_id}")
            if latest.access_token != stale.access_token and not self._expiring(latest):
                self._cache[user_id] = latest
                return latest
            fresh = await self._token_grant(
                user_id,
                {"grant_type": "refresh_token", "refresh_token": latest.refresh_token},
                athlete_id=latest.athlete_id,
                deadline=deadline,
                scope=latest.scope,
            )
            await self._save(user_id, fresh)
            return fresh

    async def _save(self, user_id: uuid.UUID, tokens: StravaTokens) -> None:
        await self._store.save_tokens(user_id, tokens, now=self._clock.now())
        self._cache[user_id] = tokens

    def _credentials(self) -> tuple[str, str]:
        if not self._client_id or not self._client_secret:
            raise ConfigError(
                f"Strava client credentials are missing: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} "
                "to refresh or exchange Strava tokens"
            )
        return self._client_id, self._client_secret

    async def _token_grant(
        self,
        user_id: uuid.UUID,
        form: dict[str, str],
        *,
        athlete_id: int | None,
        deadline: float | None,
        scope: str = "",
    ) -> StravaTokens:
        """POST /oauth/token; ``athlete_id`` is -1 if neither the answer nor the caller knew it."""
        client_id, client_secret = self._credentials()
        grant = form["grant_type"]
        what = "refresh token" if grant == "refresh_token" else "authorization code"
        answer = await self._send(
            "POST",
            TOKEN_PATH,
            TOKEN_PATH,
            read=False,
            deadline=deadline,
            data={"client_id": client_id, "client_secret": client_secret, **form},
        )
        status = answer.response.status_code
        if status in (400, 401, 403):
            errors = _fault_errors(answer.response)
            if any(e.get("resource") == "Application" for e in errors):
                self._record(answer, "POST", TOKEN_PATH, error="ConfigError")
                raise ConfigError(
                    f"POST {TOKEN_PATH}: Strava rejected the application credentials (HTTP {status}); "
                    f"check {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}"
                )
            self._record(answer, "POST", TOKEN_PATH, error="Unauthorized")
            raise Unauthorized(
                f"POST {TOKEN_PATH}: Strava refused the {what} of user {user_id} (HTTP {status}): "
                "access was revoked or the token is invalid; the athlete must reconnect"
            )
        self._raise_for_other_4xx(answer, "POST", TOKEN_PATH)
        data = self._parse_json(answer, "POST", TOKEN_PATH)
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            access, refresh, expires_at = data["access_token"], data["refresh_token"], data["expires_at"]
            if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
                raise TypeError("tokens are not strings")
            if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
                raise TypeError("expires_at is not a number")
            athlete = data.get("athlete")
            if isinstance(athlete, dict) and isinstance(athlete.get("id"), int):
                athlete_id = int(athlete["id"])
        except (KeyError, TypeError) as exc:
            self._record(answer, "POST", TOKEN_PATH, error="MalformedResponse")
            # Name only the missing/ill-typed field: the values are secrets.
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise MalformedResponse(f"POST {TOKEN_PATH}: token response is malformed ({detail})") from None
        self._record(answer, "POST", TOKEN_PATH)
        return StravaTokens(
            athlete_id=athlete_id if athlete_id is not None else -1,
            access_token=access,
            refresh_token=refresh,
            expires_at=float(expires_at),
            scope=str(data.get("scope") or scope),
        )

    async def _athlete_with(self, access_token: str, *, deadline: float | None) -> Athlete:
        """GET /athlete with a token that is not (yet) in the store."""
        endpoint = "/athlete"
        answer = await self._send(
            "GET",
            endpoint,
            API_PREFIX + endpoint,
            read=True,
            deadline=deadline,
            headers={"Authorization": f"Bearer {access_token}"},
        )
        if answer.response.status_code in (401, 403):
            self._record(answer, "GET", endpoint, error="Unauthorized")
            raise Unauthorized(f"GET {endpoint}: Strava refused a freshly issued access token")
        self._raise_for_other_4xx(answer, "GET", endpoint)
        data = self._parse_json(answer, "GET", endpoint)
        self._record(answer, "GET", endpoint)
        try:
            return Athlete.from_json(data)
        except MalformedResponse as exc:
            raise MalformedResponse(f"GET {endpoint}: {exc}") from None


def _fault_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The ``errors`` list of a Strava ``Fault`` body, or ``[]``."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _with_athlete(tokens: StravaTokens, athlete_id: int) -> StravaTokens:
    return StravaTokens(
        athlete_id=athlete_id,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        scope=tokens.scope,
    )
