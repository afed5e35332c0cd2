"""A sweep's worker processes, as a script's user meets them: ``spawn`` re-runs the script's top level in each, so
a script that starts a sweep there without ``if __name__ == "__main__":`` gets one line saying so, not a
``BrokenProcessPool`` and a ``freeze_support`` traceback from every worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from syncsim.sim.compare import UNGUARDED_SCRIPT

REPO = Path(__file__).resolve().parents[2]

UNGUARDED = """\
import syncsim

sweep = syncsim.reference_sweep(athletes=2, launch_day=False, processes=2)
print("finished")
"""


def test_a_sweep_at_an_unguarded_scripts_top_level_fails_in_one_line(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(UNGUARDED)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "finished" not in done.stdout
    assert done.stderr.rstrip().splitlines()[-1] == f"syncsim.errors.InvalidInput: {UNGUARDED_SCRIPT}"
    # The script's own traceback, ending in that line; none from the workers, no BrokenProcessPool chained in.
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert "freeze_support" not in done.stderr
    assert "BrokenProcessPool" not in done.stderr
