from __future__ import annotations

import syncsim


def test_every_public_name_resolves() -> None:
    missing = [name for name in syncsim.__all__ if getattr(syncsim, name, None) is None]
    assert missing == []
