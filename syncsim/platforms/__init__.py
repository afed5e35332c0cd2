"""Platforms: where an invocation runs, how long it may run, and what happens at its deadline.

:class:`~syncsim.platforms.local.LocalPlatform` runs invocations on the running asyncio loop (a server, a test,
the simulator); :class:`~syncsim.platforms.vercel.VercelPlatform` (imported from its module: it needs Vercel's
runtime) wires the same invocations to Vercel's ``wait_until`` and deadline.
"""

from __future__ import annotations

from syncsim.platforms.invocation import Invocation, Platform, guard_store
from syncsim.platforms.local import LocalPlatform
from syncsim.platforms.spec import PlatformSpec, load_platforms, platform_spec

__all__ = ["Invocation", "LocalPlatform", "Platform", "PlatformSpec", "guard_store", "load_platforms", "platform_spec"]
