#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it into a clean venv outside the checkout, and use
# it from a working directory outside the checkout, so nothing can come from the source tree.
#   1. `pip install syncsim-*.whl[sim]`        then `syncsim simulate --athletes 20`   ([sim] works alone)
#   2. `pip install syncsim-*.whl[notebooks]`  into the same venv, then execute notebooks/real_sync.ipynb with
#      `jupyter nbconvert --execute` (small sizes) and check that tqdm.auto drew its widget bar (ipywidgets).
# real_sync is the notebook that needs the most of [notebooks]: FakeStrava served by uvicorn, a tqdm bar, charts.
#
# Usage: scripts/check-install.sh [PYTHON]   (PYTHON: an interpreter with pip >= 22.3; default .venv/bin/python)
#
# Speed: pip's cache (~/.cache/pip) is used as is. The clean venv has no pip of its own; the given interpreter's
# pip installs into it (`pip --python`), with --no-compile: byte-compiling jupyterlab, pandas and matplotlib at
# install time is most of an install's time, and only the modules a run imports need compiling.
set -euo pipefail

checkout="$(cd "$(dirname "$0")/.." && pwd)"
python="${1:-$checkout/.venv/bin/python}"
# Absolute, since the checks run from another directory (a venv's python is a symlink: keep its path, not its target).
case "$python" in
  */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;;
  *) python="$(command -v "$python")" ;;
esac
notebook="real_sync"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/syncsim-check-install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
case "$tmp" in "$checkout"/*) echo "check-install: temp dir $tmp is inside the checkout" >&2; exit 1 ;; esac

start=$SECONDS
step() { echo "check-install: $* ($((SECONDS - start)) s)"; }

# What the user's shell would not have: nothing from the checkout on the path, no Strava account, own Jupyter dirs.
unset PYTHONPATH VIRTUAL_ENV STRAVA_CLIENT_ID STRAVA_CLIENT_SECRET STRAVA_REFRESH_TOKEN SYNCSIM_STORE
export JUPYTER_CONFIG_DIR="$tmp/jupyter/config" JUPYTER_DATA_DIR="$tmp/jupyter/data"
export JUPYTER_RUNTIME_DIR="$tmp/jupyter/runtime" IPYTHONDIR="$tmp/ipython"

# The wheel is built from a copy of the files git would commit (tracked and new, not ignored): a build in the
# checkout would reuse its build/ folder, where files since moved or deleted stay and end up in the wheel.
step "building the wheel"
mkdir -p "$tmp/src"
git -C "$checkout" ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do if [ -e "$checkout/$file" ]; then printf '%s\0' "$file"; fi; done |
  tar -C "$checkout" --null -T - -cf - | tar -C "$tmp/src" -xf -
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$tmp/dist" "$tmp/src"
wheels=("$tmp"/dist/syncsim-*.whl)
[ -f "${wheels[0]}" ] || { echo "check-install: no wheel was built" >&2; exit 1; }
wheel="${wheels[0]}"

venv="$tmp/venv"
"$python" -m venv --without-pip "$venv"
install() { "$python" -m pip --python "$venv/bin/python" install --quiet --no-compile "$@"; }

mkdir -p "$tmp/work"
cd "$tmp/work"

step "installing $(basename "$wheel")[sim] into a clean venv"
install "$wheel[sim]"
"$venv/bin/python" - "$venv" <<'EOF'
import sys
from pathlib import Path

import syncsim
from syncsim.data import data_dir
from syncsim.stores.sql import DIALECTS, migration_files

venv = Path(sys.argv[1]).resolve()
assert venv in Path(syncsim.__file__).resolve().parents, f"syncsim imported from {syncsim.__file__}, not {venv}"
assert (data_dir() / "platforms.csv").is_file(), "platforms.csv is missing from the wheel"
assert sorted(p.name for p in (data_dir() / "workloads").glob("*.csv")), "workloads are missing from the wheel"
for dialect in DIALECTS:
    assert migration_files(dialect), f"the {dialect} migrations are missing from the wheel"
EOF

step "syncsim simulate --athletes 20 (from [sim])"
"$venv/bin/syncsim" simulate --athletes 20

step "installing $(basename "$wheel")[notebooks]"
install "$wheel[notebooks]"

step "executing notebooks/$notebook.ipynb (from [notebooks])"
cp "$checkout/notebooks/$notebook.ipynb" "$tmp/work/"
SYNCSIM_NOTEBOOK_SMALL=1 "$venv/bin/jupyter" nbconvert --to notebook --execute --log-level=WARN \
  --output "$tmp/work/executed.ipynb" "$tmp/work/$notebook.ipynb"
"$venv/bin/python" - "$tmp/work/executed.ipynb" <<'EOF'
import sys

import nbformat

nb = nbformat.read(sys.argv[1], as_version=4)
mimes = {m for c in nb.cells for o in c.get("outputs", []) for m in o.get("data", {})}
assert "application/vnd.jupyter.widget-view+json" in mimes, "tqdm.auto drew no widget bar: is ipywidgets installed?"
EOF

step "done"
