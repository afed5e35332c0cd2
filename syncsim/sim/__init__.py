"""The simulator: the real runner, under virtual time, against FakeStrava, on simulated platforms."""

from __future__ import annotations

from syncsim.sim.virtual import VIRTUAL_EPOCH, run_virtual, virtual_clock

__all__ = ["VIRTUAL_EPOCH", "run_virtual", "virtual_clock"]
