"""FakeStrava's credentials: access and refresh tokens, authorization codes, and the OAuth token grants.

6-hour access tokens; a refresh with more than an hour left returns the same access token; a rotated refresh
token invalidates the old one at once. Token values are seeded (a hash of seed, kind, athlete and serial), so
a run's tokens are the same for the same seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping

import orjson

from syncsim.strava.fake.data import AthleteState, athlete_json
from syncsim.strava.fake.http import bad_request

__all__ = ["ACCESS_TOKEN_TTL_S", "SAME_TOKEN_IF_LEFT_S", "Credentials"]

ACCESS_TOKEN_TTL_S = 21_600  # Strava's access tokens last 6 h
SAME_TOKEN_IF_LEFT_S = 3_600  # a refresh with more than 1 h left returns the same access token


class Credentials:
    """Every token and code FakeStrava has issued, and the grants that issue them.

    The tokens an athlete currently holds are kept on its :class:`~syncsim.strava.fake.data.AthleteState`
    (shared with the histories through ``athletes``); this class keeps the indexes from token to athlete.
    """

    def __init__(
        self,
        *,
        athletes: Mapping[int, AthleteState],
        seed: int,
        client_id: str,
        client_secret: str,
        rotate_refresh_tokens: bool,
        counts: Counter[str],
    ) -> None:
        self.athletes = athletes
        self.seed = seed
        self.client_id = client_id
        self.client_secret = client_secret
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.counts = counts
        self._access: dict[str, tuple[int, float]] = {}  # access token -> (athlete id, expires_at)
        self._refresh: dict[str, int] = {}
        self._codes: dict[str, int] = {}
        self._serial = 0

    def connect(self, a: AthleteState, now: float) -> None:
        """A newly created athlete: a refresh token, a valid access token and a one-time authorization code."""
        a.refresh_token = self._new_token("refresh", a.athlete_id)
        self._refresh[a.refresh_token] = a.athlete_id
        self._issue_access(a, now)
        self.new_code(a)

    def new_code(self, a: AthleteState) -> str:
        """A fresh one-time authorization code (what Strava's OAuth redirect carries)."""
        a.code = self._new_token("code", a.athlete_id)
        self._codes[a.code] = a.athlete_id
        return a.code

    def revoke(self, a: AthleteState) -> None:
        """The athlete deauthorizes the app: every access and refresh token of theirs stops working now."""
        a.revoked = True
        self.invalidate_access(a)
        if a.refresh_token is not None:
            self._refresh.pop(a.refresh_token, None)
        a.refresh_token = None
        self.counts["revocations"] += 1

    def invalidate_access(self, a: AthleteState) -> None:
        """Drop the athlete's access tokens (not the refresh token): the next API call gets a 401."""
        for token in [t for t, (aid, _) in self._access.items() if aid == a.athlete_id]:
            del self._access[token]
        a.access_token = None

    def athlete_for_token(self, token: str | None, now: float) -> AthleteState | None:
        """The athlete an access token belongs to, if it is valid at ``now``."""
        if not token:
            return None
        entry = self._access.get(token)
        if entry is None:
            return None
        athlete_id, expires_at = entry
        if now >= expires_at:
            return None
        a = self.athletes[athlete_id]
        return None if a.revoked else a

    def grant(self, params: Mapping[str, str], now: float) -> tuple[int, bytes, int | None]:
        """``POST /oauth/token``: (status, body, athlete id) for an ``authorization_code`` or ``refresh_token``
        grant; a wrong client id or secret is Strava's 401 naming the field."""
        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            field_name = "client_id" if params.get("client_id") != self.client_id else "client_secret"
            return 401, bad_request("Application", field_name), None
        grant = params.get("grant_type")
        if grant == "authorization_code":
            athlete_id = self._codes.pop(params.get("code") or "", None)
            if athlete_id is None:
                return 400, bad_request("AuthorizationCode", "code"), None
            a = self.athletes[athlete_id]
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
                return 400, bad_request("RefreshToken", "refresh_token"), None
            a = self.athletes[athlete_id]
            current = self.athlete_for_token(a.access_token, now)
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
        return 400, bad_request("Application", "grant_type"), None

    def _new_token(self, kind: str, athlete_id: int) -> str:
        self._serial += 1
        raw = f"{self.seed}:{kind}:{athlete_id}:{self._serial}".encode()
        return hashlib.blake2b(raw, digest_size=20).hexdigest()  # 40 hex characters, like Strava's

    def _issue_access(self, a: AthleteState, now: float) -> None:
        a.access_token = self._new_token("access", a.athlete_id)
        a.expires_at = float(int(now) + ACCESS_TOKEN_TTL_S)
        self._access[a.access_token] = (a.athlete_id, a.expires_at)

    def _token_response(self, a: AthleteState, now: float, *, with_athlete: bool) -> dict[str, object]:
        body: dict[str, object] = {
            "token_type": "Bearer",
            "access_token": a.access_token,
            "expires_at": int(a.expires_at),
            "expires_in": int(a.expires_at - now),
            "refresh_token": a.refresh_token,
        }
        if with_athlete:
            summary = athlete_json(a)
            summary["resource_state"] = 2
            body["athlete"] = summary
        return body
