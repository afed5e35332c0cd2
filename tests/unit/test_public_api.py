from __future__ import annotations

import subprocess
import sys

import syncsim


def test_every_public_name_resolves() -> None:
    missing = [name for name in syncsim.__all__ if getattr(syncsim, name, None) is None]
    assert missing == []


def test_importing_syncsim_does_not_import_pandas() -> None:
    """The worker and the API start fast: the simulator's pandas loads only when it is used."""
    code = "import sys, syncsim; syncsim.open_store; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
