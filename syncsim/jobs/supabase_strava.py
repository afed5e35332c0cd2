"""SupabaseStore's Strava tables over REST: a user's tokens (``strava_tokens``) and activities.

Tokens are upserted on ``user_id``; activities in one ``POST`` per batch merged on ``id``. Writes that
reference a user add it first where the database allows (plain PostgreSQL's compat ``auth.users``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from postgrest.types import CountMethod, ReturnMethod
from supabase import AsyncClient

from syncsim.errors import InvalidInput
from syncsim.jobs.supabase_rest import _dt, _iso, _SupabaseRest, _UniqueViolation
from syncsim.strava.models import Activity, StravaTokens

_TOKEN_COLUMNS = "athlete_id,access_token,refresh_token,expires_at,scope"


class _SupabaseStrava(_SupabaseRest):
    """The Strava-data part of :class:`~syncsim.jobs.supabase.SupabaseStore` (a base class, no state of its own)."""

    # -- Strava data ---------------------------------------------------------------------------------------
    async def get_tokens(self, user_id: uuid.UUID) -> StravaTokens | None:
        async def select(client: AsyncClient) -> Any:
            return await client.table("strava_tokens").select(_TOKEN_COLUMNS).eq("user_id", str(user_id)).execute()

        rows = (await self._run(f"get tokens of user {user_id}", select)).data
        if not rows:
            return None
        row = rows[0]
        expires = _dt(row["expires_at"])
        assert expires is not None
        return StravaTokens(
            athlete_id=row["athlete_id"],
            access_token=row["access_token"],
            refresh_token=row["refresh_token"],
            expires_at=expires.timestamp(),
            scope=row["scope"],
        )

    async def save_tokens(self, user_id: uuid.UUID, tokens: StravaTokens, *, now: float) -> None:
        row = {
            "user_id": str(user_id),
            "athlete_id": tokens.athlete_id,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_at": _iso(tokens.expires_at),
            "scope": tokens.scope,
            "updated_at": _iso(now),
        }

        async def upsert(client: AsyncClient) -> Any:
            return (
                await client.table("strava_tokens")
                .upsert(row, on_conflict="user_id", returning=ReturnMethod.minimal)
                .execute()
            )

        try:
            await self._with_user(f"save tokens of user {user_id}", user_id, upsert)
        except _UniqueViolation:
            raise InvalidInput(f"Strava athlete {tokens.athlete_id} is already connected to another user") from None

    async def delete_tokens(self, user_id: uuid.UUID) -> bool:
        async def delete(client: AsyncClient) -> Any:
            return (
                await client.table("strava_tokens")
                .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .execute()
            )

        return (await self._run(f"delete tokens of user {user_id}", delete)).count == 1

    async def user_for_athlete(self, athlete_id: int) -> uuid.UUID | None:
        async def select(client: AsyncClient) -> Any:
            return await client.table("strava_tokens").select("user_id").eq("athlete_id", athlete_id).execute()

        rows = (await self._run(f"find user of athlete {athlete_id}", select)).data
        return uuid.UUID(rows[0]["user_id"]) if rows else None

    async def upsert_activities(self, user_id: uuid.UUID, activities: Sequence[Activity], *, now: float) -> int:
        """One ``POST`` per batch with ``Prefer: resolution=merge-duplicates`` on ``id``; returns the number of
        distinct ids written (a repeated id keeps its last occurrence, as one statement may not update a row
        twice)."""
        unique = {activity.id: activity for activity in activities}
        if not unique:
            return 0
        synced_at = _iso(now)
        rows = [
            {
                "id": a.id,
                "user_id": str(user_id),
                "athlete_id": a.athlete_id,
                "name": a.name,
                "sport_type": a.sport_type,
                "start_date": a.start_date.astimezone(UTC).isoformat(),
                "distance": a.distance,
                "moving_time": a.moving_time,
                "elapsed_time": a.elapsed_time,
                "total_elevation_gain": a.total_elevation_gain,
                "raw": a.raw,
                "synced_at": synced_at,
            }
            for a in unique.values()
        ]

        async def upsert(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .upsert(rows, on_conflict="id", returning=ReturnMethod.minimal)
                .execute()
            )

        await self._with_user(f"upsert activities of user {user_id}", user_id, upsert)
        return len(rows)

    async def delete_activity(self, user_id: uuid.UUID, activity_id: int) -> bool:
        async def delete(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
                .eq("user_id", str(user_id))
                .eq("id", activity_id)
                .execute()
            )

        return (await self._run(f"delete activity {activity_id}", delete)).count == 1

    async def count_activities(self, user_id: uuid.UUID) -> int:
        async def count(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .select("id", count=CountMethod.exact, head=True)
                .eq("user_id", str(user_id))
                .execute()
            )

        return (await self._run(f"count activities of user {user_id}", count)).count or 0

    async def latest_activity_start(self, user_id: uuid.UUID) -> datetime | None:
        async def latest(client: AsyncClient) -> Any:
            return (
                await client.table("strava_activities")
                .select("start_date")
                .eq("user_id", str(user_id))
                .order("start_date", desc=True)
                .limit(1)
                .execute()
            )

        rows = (await self._run(f"find latest activity of user {user_id}", latest)).data
        return _dt(rows[0]["start_date"]) if rows else None
