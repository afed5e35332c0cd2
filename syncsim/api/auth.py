"""Supabase-style user tokens: HS256 JWTs whose ``sub`` is the user's UUID.

A Supabase project signs its users' access tokens with the project's JWT secret (HS256) and puts the user id
in ``sub``, ``"authenticated"`` in ``role`` and ``aud``, and an expiry in ``exp``. The API accepts exactly
those, so a browser that is logged in to Supabase can call it with its session token, and ``syncsim token``
mints the same kind of token for local use.

Time is passed in (``now``, UTC epoch seconds): PyJWT's own checks of ``exp``/``nbf``/``iat`` read the wall
clock, so they are switched off and done here against the injected clock instead.
"""

from __future__ import annotations

import functools
import math
import os
import uuid
from typing import NamedTuple, TypeGuard

import jwt

from syncsim.errors import ConfigError, InvalidInput

__all__ = [
    "JWT_SECRET_ENV",
    "MIN_SECRET_BYTES",
    "ROLE",
    "AuthError",
    "bearer_token",
    "check_secret",
    "jwt_secret_from_env",
    "mint_token",
    "verify_token",
]

#: Environment variable holding the HS256 secret (a Supabase project's "JWT secret").
JWT_SECRET_ENV = "SYNCSIM_JWT_SECRET"
#: HS256 keys shorter than the hash output (32 bytes) are brute-forceable; Supabase's secrets are longer.
MIN_SECRET_BYTES = 32
#: The role (and audience) Supabase gives a logged-in user's token.
ROLE = "authenticated"
ALGORITHM = "HS256"
#: Verified tokens remembered (their claims, ~0.5 KB each): more than the users active within a few minutes.
VERIFIED_TOKENS_CACHED = 4096


class AuthError(InvalidInput):
    """The request's token is missing, malformed, badly signed, expired or not a user's token (HTTP 401)."""


def check_secret(secret: str) -> bytes:
    """The secret as an HS256 key, or a :class:`ConfigError` (missing, or shorter than 32 bytes)."""
    if not isinstance(secret, str) or not secret:
        raise ConfigError(f"no JWT secret: set {JWT_SECRET_ENV} (the Supabase project's JWT secret)")
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"the JWT secret is too short: HS256 needs at least {MIN_SECRET_BYTES} bytes")
    return key


def jwt_secret_from_env() -> str:
    """``$SYNCSIM_JWT_SECRET``, checked; a :class:`ConfigError` saying what to set when missing or weak."""
    secret = os.environ.get(JWT_SECRET_ENV, "")
    check_secret(secret)
    return secret


def mint_token(user_id: uuid.UUID | str, secret: str, *, ttl_s: float = 3600.0, now: float) -> str:
    """A Supabase-style access token for ``user_id``, valid for ``ttl_s`` seconds from ``now`` (epoch s)."""
    try:
        uid = uuid.UUID(str(user_id))
    except ValueError:
        raise InvalidInput(f"user id must be a UUID, got {str(user_id)[:60]!r}") from None
    if not _is_time(ttl_s) or ttl_s <= 0:
        raise InvalidInput(f"token lifetime must be a finite number of seconds > 0, got {ttl_s!r}")
    claims = {
        "sub": str(uid),
        "role": ROLE,
        "aud": ROLE,
        "iat": int(now),
        "exp": int(now + ttl_s),
    }
    return jwt.encode(claims, check_secret(secret), algorithm=ALGORITHM)


def verify_token(token: str, secret: str, *, now: float, leeway_s: float = 0.0) -> uuid.UUID:
    """The user id of a valid token, or :class:`AuthError` with a one-line reason (never the token).

    Checks: HS256 signature with ``secret``; ``exp`` present and after ``now - leeway_s``; ``nbf`` (if any)
    not after ``now + leeway_s``; ``role == "authenticated"``; ``aud`` (if any) includes ``authenticated``;
    ``sub`` a UUID.
    """
    key = _key(secret)
    if not isinstance(token, str) or not token:
        raise AuthError("missing bearer token")
    try:
        claims = _signed_claims(token, key)
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(f"token algorithm is not allowed (only {ALGORITHM})") from None
    except jwt.InvalidTokenError:
        raise AuthError("token is malformed") from None
    if claims.exp is None:
        raise AuthError("token 'exp' claim is not a finite number")
    if claims.exp <= now - leeway_s:
        raise AuthError("token has expired")
    nbf = claims.nbf
    if nbf is not None and (not _is_time(nbf) or nbf > now + leeway_s):
        raise AuthError("token is not valid yet")
    if claims.user is None:
        raise AuthError(claims.error)
    return claims.user


class _Claims(NamedTuple):
    """What a verified token says: its times (checked against the caller's ``now`` each time), and its user or
    the reason it names none (role, audience, subject: the checks that need no clock)."""

    exp: float | None  # None: not a finite number
    nbf: object
    user: uuid.UUID | None
    error: str


def _is_time(value: object) -> TypeGuard[int | float]:
    """Whether a claim is a time (a finite number): NaN compares false with everything, so an ``exp`` of NaN
    would never expire, nor would Infinity."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return check_secret(secret)  # a bad secret raises, and is not cached


@functools.lru_cache(maxsize=VERIFIED_TOKENS_CACHED)
def _signed_claims(token: str, key: bytes) -> _Claims:
    """The claims of a token whose HS256 signature ``key`` verifies. Cached: a browser polling its job sends
    the same token every few seconds, and PyJWT's checks cost ~70 us a call; time checks are not cached (the
    caller makes them with its ``now``), and a token that fails is checked again each time."""
    claims = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        options={
            "require": ["exp", "sub"],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
            "verify_sub": False,
        },
    )
    exp = claims.get("exp")
    number = _is_time(exp)
    user, error = None, ""
    aud = claims.get("aud")
    if claims.get("role") != ROLE:
        error = f"token role must be {ROLE!r}"
    elif aud is not None and ROLE not in (aud if isinstance(aud, list) else [aud]):
        error = f"token audience must include {ROLE!r}"
    else:
        try:
            user = uuid.UUID(str(claims["sub"]))
        except ValueError:
            error = "token subject is not a user id (UUID)"
    return _Claims(exp if number else None, claims.get("nbf"), user, error)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or :class:`AuthError`."""
    if not authorization:
        raise AuthError("missing bearer token: send 'Authorization: Bearer <jwt>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be 'Bearer <jwt>'")
    return token.strip()
