"""Helpers shared by the Strava unit tests."""

from __future__ import annotations

import uuid
from typing import Any

from syncsim.strava.client import StravaClient
from syncsim.strava.fake import FakeStrava
from syncsim.strava.tokens import MemoryTokenStore

#: 2023-11-14T22:13:20Z; ten minutes and 40 s into a quarter hour, far from UTC midnight.
START = 1_700_000_000.0


async def connect(fake: FakeStrava, store: MemoryTokenStore, *, activities: int) -> tuple[uuid.UUID, int]:
    """A user connected to a new fake athlete with ``activities`` activities: (user id, athlete id)."""
    athlete = fake.add_athlete(activities=activities)
    user_id = uuid.uuid4()
    await store.save_tokens(user_id, athlete.tokens(), now=fake.clock.now())
    return user_id, athlete.athlete_id


async def all_pages(client: StravaClient, user_id: uuid.UUID, **params: Any) -> list[list[Any]]:
    """Page until an empty page, as a sync does; returns every non-empty page."""
    pages: list[list[Any]] = []
    page = 1
    while True:
        activities = await client.list_activities(user_id, page=page, **params)
        if not activities:
            return pages
        pages.append(activities)
        page += 1
