"""Vercel's entry point: the syncsim API as an ASGI app named ``app``, configured from the environment.

See :func:`syncsim.platforms.vercel.build_vercel_app` for the variables (``SYNCSIM_STORE``, ``SYNCSIM_JWT_SECRET``,
``SYNCSIM_STRATEGY``, ...). The repository root goes on ``sys.path`` so the function runs from the checkout
without installing the package.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from syncsim.api.vercel import build_vercel_app  # noqa: E402

app = build_vercel_app()
