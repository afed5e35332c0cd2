"""Where athletes' Strava tokens are kept: the :class:`TokenStore` protocol and :class:`MemoryTokenStore`.

:class:`~syncsim.strava.client.StravaClient` reads and writes tokens only through a :class:`TokenStore`; the
project's Store implements it for real deployments, :class:`MemoryTokenStore` for everything else. Both are
re-exported by :mod:`syncsim.strava.client`.
"""

from __future__ import annotations

import uuid
from typing import Protocol, runtime_checkable

from syncsim.strava.models import StravaTokens

__all__ = ["MemoryTokenStore", "TokenStore"]


@runtime_checkable
class TokenStore(Protocol):
    """Where athletes' Strava tokens live (the project's Store implements this)."""

    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None: ...

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None: ...


class MemoryTokenStore:
    """A :class:`TokenStore` in a dict: for tests, notebooks and simulations that need no database."""

    def __init__(self, tokens: dict[uuid.UUID, StravaTokens] | None = None) -> None:
        self.tokens: dict[uuid.UUID, StravaTokens] = dict(tokens or {})
        self.saves = 0  # how many times tokens were written, for tests

    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None:
        return self.tokens.get(user_id)

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None:
        self.tokens[user_id] = tokens
        self.saves += 1

    def __repr__(self) -> str:
        return f"MemoryTokenStore(users={len(self.tokens)})"
