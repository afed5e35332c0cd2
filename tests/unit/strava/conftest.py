"""Fixtures for the Strava client and FakeStrava tests: a manual clock, a fake, a token store, a client."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from syncsim.strava.client import StravaClient
from syncsim.strava.fake import FakeStrava
from syncsim.strava.tokens import MemoryTokenStore
from syncsim.strava.trace import Trace
from tests.support.clocks import ManualClock
from tests.unit.strava.helpers import START


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def fake(clock: ManualClock) -> FakeStrava:
    return FakeStrava(clock=clock, seed=7)


@pytest.fixture
def store() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def trace() -> Trace:
    return Trace()


@pytest.fixture
async def make_client(
    clock: ManualClock, fake: FakeStrava, store: MemoryTokenStore, trace: Trace
) -> AsyncIterator[Callable[..., StravaClient]]:
    """Build clients on the fake's transport (closed at the end); keyword arguments override defaults."""
    made: list[StravaClient] = []

    def make(**overrides: Any) -> StravaClient:
        options: dict[str, Any] = {
            "tokens": store,
            "clock": clock,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "transport": fake.transport(),
            "trace": trace,
            "rng": random.Random(1),
        }
        options.update(overrides)
        client = StravaClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
