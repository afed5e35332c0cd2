"""The local platform: invocations on the running asyncio loop, killed at the preset's time limit.

The same class is the simulated platform: on the simulator's virtual-time loop its kills happen in simulated
time.
"""

from __future__ import annotations

from syncsim.clock import Clock, SystemClock
from syncsim.platforms.invocation import Invocation
from syncsim.platforms.spec import PlatformSpec, platform_spec

__all__ = ["LocalPlatform"]


class LocalPlatform:
    """A platform on the running asyncio loop that enforces ``spec.max_duration_s`` by killing invocations.

    ``invocations`` keeps every invocation it started (for tests and the simulator's metrics).
    """

    def __init__(self, spec: PlatformSpec | str = "unlimited", *, clock: Clock | None = None) -> None:
        self.spec = platform_spec(spec)
        self.clock: Clock = clock or SystemClock()
        self.invocations: list[Invocation] = []
        self.keep_history = True

    def start_invocation(self) -> Invocation:
        now = self.clock.now()
        limit = self.spec.max_duration_s
        invocation = Invocation(
            clock=self.clock,
            started_at=now,
            deadline=None if limit is None else now + limit,
            platform=self.spec.name,
        )
        invocation.arm(now)
        if self.keep_history:
            self.invocations.append(invocation)
        return invocation

    def __repr__(self) -> str:
        return f"LocalPlatform({self.spec.name!r}, max_duration_s={self.spec.max_duration_s})"
