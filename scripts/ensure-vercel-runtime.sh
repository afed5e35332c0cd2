#!/usr/bin/env bash
# Make sure .venv-vercel holds Vercel's own Python runtime (vercel-runtime, which needs Python >= 3.12) and what
# the function installs on Vercel (requirements.txt), for tests/integration/test_vercel_runtime.py. The function
# runs from the checkout (api/index.py puts the repository on sys.path), so syncsim itself is not installed.
# Idempotent: reinstalls only when the runtime's pin, requirements.txt or the interpreter changed. Prints the
# environment's python as its last line.
#   VERCEL_PYTHON=/path/to/python3.12   the interpreter to use (default: python3.12, or pyenv's newest 3.12.x)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-vercel
# Vercel's Python runtime as of this pin: vercel_runtime.dev is its dev server, vercel-runtime's get_deadline
# the x-vercel-internal-deadline header, and `vercel` (requirements.txt) the vercel.functions that syncsim uses.
RUNTIME_PIN="vercel-runtime==0.24.1"

find_python() {
  local candidate
  for candidate in "${VERCEL_PYTHON:-}" python3.12 $(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python 2>/dev/null | sort -V -r); do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

if ! python="$(find_python)"; then
  echo "ensure-vercel-runtime: Vercel's Python runtime (vercel-runtime) needs Python >= 3.12, and none was found" \
       "(tried \$VERCEL_PYTHON, python3.12, ~/.pyenv/versions/3.12*); install one, e.g. 'pyenv install 3.12'," \
       "or set VERCEL_PYTHON" >&2
  exit 1
fi

stamp="$VENV/.installed"
wanted="$("$python" -c 'import sys; print(sys.version.split()[0])') $RUNTIME_PIN $(sha256sum requirements.txt | cut -c1-16)"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "$PWD/$VENV/bin/python"
  exit 0
fi

echo "ensure-vercel-runtime: building $VENV with $python ($wanted)" >&2
rm -rf "$VENV"
"$python" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$RUNTIME_PIN" -r requirements.txt >&2
echo "$wanted" > "$stamp"
echo "$PWD/$VENV/bin/python"
