"""FakeStrava's credentials: access and refresh tokens, authorization codes, and the OAuth token grants.

6-hour access tokens; a refresh with more than an hour left returns the same access token; a rotated refresh
token invalidates the old one at once. Token values are seeded (a hash of seed, kind, athlete and serial), so
a run's tokens are the same for the same seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson

from syncsim.strava.fake_data import _Athlete, _athlete_json
from syncsim.strava.fake_transport import _bad_request

ACCESS_TOKEN_TTL_S = 21_600  # Strava's access tokens last 6 h
SAME_TOKEN_IF_LEFT_S = 3_600  # a refresh with more than 1 h left returns the same access token


class _Credentials:
    """The token half of :class:`~syncsim.strava.fake.FakeStrava` (a base class of it, no state of its own).

    The attributes below are FakeStrava's, set up by its ``__init__``.
    """

    seed: int
    client_id: str
    client_secret: str
    rotate_refresh_tokens: bool
    counts: Counter[str]
    _athletes: dict[int, _Athlete]
    _access: dict[str, tuple[int, float]]  # access token -> (athlete id, expires_at)
    _refresh: dict[str, int]
    _codes: dict[str, int]
    _token_serial: int

    def _new_token(self, kind: str, athlete_id: int) -> str:
        self._token_serial += 1
        raw = f"{self.seed}:{kind}:{athlete_id}:{self._token_serial}".encode()
        return hashlib.blake2b(raw, digest_size=20).hexdigest()  # 40 hex characters, like Strava's

    def _issue_access(self, a: _Athlete, now: float) -> None:
        a.access_token = self._new_token("access", a.athlete_id)
        a.expires_at = float(int(now) + ACCESS_TOKEN_TTL_S)
        self._access[a.access_token] = (a.athlete_id, a.expires_at)

    def _athlete_for_token(self, token: str | None, now: float) -> _Athlete | None:
        if not token:
            return None
        entry = self._access.get(token)
        if entry is None:
            return None
        athlete_id, expires_at = entry
        if now >= expires_at:
            return None
        a = self._athletes[athlete_id]
        return None if a.revoked else a

    def _token_response(self, a: _Athlete, now: float, *, with_athlete: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": a.access_token,
            "expires_at": int(a.expires_at),
            "expires_in": int(a.expires_at - now),
            "refresh_token": a.refresh_token,
        }
        if with_athlete:
            summary = _athlete_json(a)
            summary["resource_state"] = 2
            body["athlete"] = summary
        return body

    def _grant(self, params: Mapping[str, str], now: float) -> tuple[int, bytes, int | None]:
        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            field_name = "client_id" if params.get("client_id") != self.client_id else "client_secret"
            return 401, _bad_request("Application", field_name), None
        grant = params.get("grant_type")
        if grant == "authorization_code":
            athlete_id = self._codes.pop(params.get("code") or "", None)
            if athlete_id is None:
                return 400, _bad_request("AuthorizationCode", "code"), None
            a = self._athletes[athlete_id]
            a.code, a.revoked = None, False
            if a.refresh_token is None:
                a.refresh_token = self._new_token("refresh", athlete_id)
                self._refresh[a.refresh_token] = athlete_id
            self._issue_access(a, now)
            self.counts["token_grants"] += 1
            return 200, orjson.dumps(self._token_response(a, now, with_athlete=True)), athlete_id
        if grant == "refresh_token":
            athlete_id = self._refresh.get(params.get("refresh_token") or "")
            if athlete_id is None:
                return 400, _bad_request("RefreshToken", "refresh_token"), None
            a = self._athletes[athlete_id]
            current = self._athlete_for_token(a.access_token, now)
            if current is None or a.expires_at - now <= SAME_TOKEN_IF_LEFT_S:
                self._issue_access(a, now)
                if self.rotate_refresh_tokens:
                    old = a.refresh_token
                    if old is not None:
                        del self._refresh[old]
                    a.refresh_token = self._new_token("refresh", athlete_id)
                    self._refresh[a.refresh_token] = athlete_id
                    self.counts["refresh_rotations"] += 1
            self.counts["token_refreshes"] += 1
            return 200, orjson.dumps(self._token_response(a, now, with_athlete=False)), athlete_id
        return 400, _bad_request("Application", "grant_type"), None
