"""Re-execute the notebooks in place with their larger parameters, so the committed outputs show real charts.

    .venv/bin/python scripts/regen_notebooks.py                 # every notebook in notebooks/, then docs/scorecard.png
    .venv/bin/python scripts/regen_notebooks.py rate_limits     # one notebook (name with or without .ipynb)
    .venv/bin/python scripts/regen_notebooks.py --small         # CI-sized parameters (quick check, do not commit)
    .venv/bin/python scripts/regen_notebooks.py --no-docs       # skip docs/scorecard.png
    .venv/bin/python scripts/regen_notebooks.py --docs-only     # only docs/scorecard.png (the reference sweep)

``CI`` and ``SYNCSIM_NOTEBOOK_SMALL`` are removed from the kernel's environment (unless ``--small``), so each
notebook's parameter cell picks its larger sizes. Strava credentials in the environment make ``real_sync``
sync a real account: unset them first unless that is what you want committed. Prints each notebook's run time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SMALL_ENV = ("CI", "SYNCSIM_NOTEBOOK_SMALL")
STRAVA_ENV = ("STRAVA_CLIENT_ID", "STRAVA_CLIENT_SECRET", "STRAVA_REFRESH_TOKEN")


def execute(path: Path, *, small: bool, timeout_s: int) -> float:
    """Run ``path`` top to bottom in a fresh kernel (cwd = notebooks/) and write it back; returns seconds."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    elapsed = time.perf_counter() - started
    for cell in notebook.cells:  # execution metadata holds wall-clock timestamps: noise in every diff
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(notebook, path)
    return elapsed


def write_docs_scorecard() -> Path:
    """``docs/scorecard.png`` for the README: the scorecard of the reference sweep, the run `syncsim simulate`
    prints and the README's finding quotes (not the smaller report), so the picture and its paragraph agree."""
    from syncsim import plots
    from syncsim.sim import reference_sweep

    sweep = reference_sweep(launch_day=False, keep_events=False, progress=True)
    return plots.save_figure(plots.scorecard(sweep.metrics), ROOT / "docs" / "scorecard.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--small", action="store_true", help="CI-sized parameters")
    parser.add_argument("--no-docs", action="store_true", help="do not regenerate docs/scorecard.png")
    parser.add_argument("--docs-only", action="store_true", help="only regenerate docs/scorecard.png")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = parser.parse_args(argv)

    for name in SMALL_ENV:
        os.environ.pop(name, None)
    if args.small:
        os.environ["SYNCSIM_NOTEBOOK_SMALL"] = "1"
    if any(os.environ.get(k) for k in STRAVA_ENV):
        print("note: Strava credentials are set: real_sync.ipynb will sync a real account", file=sys.stderr)

    wanted = [n if n.endswith(".ipynb") else f"{n}.ipynb" for n in args.names]
    paths = [NOTEBOOKS / n for n in wanted] if wanted else sorted(NOTEBOOKS.glob("*.ipynb"))
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        print(f"regen_notebooks: error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    for path in [] if args.docs_only else paths:
        seconds = execute(path, small=args.small, timeout_s=args.timeout)
        print(f"{path.relative_to(ROOT)}: {seconds:.1f} s")
    if args.docs_only or (not args.no_docs and not args.small and not args.names):
        print(f"wrote {write_docs_scorecard().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
