#!/usr/bin/env bash
# The simulator's tests on Python 3.12 and 3.13, beside the 3.11 run of `make test`: the virtual loop must behave,
# and every workload's pinned digest (tests/sim/test_digests.py) must come out the same, on each Python.
#
# Each of 3.12 and 3.13 that is found (pyenv's versions first, then python3.12 / python3.13 on PATH) gets a venv
# kept in the checkout (.venv-py312, .venv-py313; rebuilt when pyproject.toml changes) with syncsim installed
# editable with [sim,test] (by the checkout's .venv pip when there is one). Fails if neither is found. The two Pythons run at once, each in its own process.
#
# Which tests: all of tests/sim except test_exact_sync.py. The digests (the reference workload alone is most of
# the time) and the loop machinery are what differ between Pythons; test_exact_sync's long runs check that a
# sync leaves the store equal to FakeStrava, which depends on the runner rather than the interpreter, and the
# 3.11 run covers them. Running all of tests/sim three times would make `make test` too slow.
set -euo pipefail
cd "$(dirname "$0")/.."

pytest_args=(-q -p no:cacheprovider tests/sim --ignore=tests/sim/test_exact_sync.py)

# An interpreter for version $1 (e.g. 3.12), or nothing.
find_python() {
  local version="$1" root="${PYENV_ROOT:-$HOME/.pyenv}" dir candidate
  local candidates=()
  if [ -d "$root/versions" ]; then
    for dir in $(ls -1 "$root/versions" | grep -E "^${version//./\\.}\.[0-9]+$" | sort -V -r); do
      candidates+=("$root/versions/$dir/bin/python")
    done
  fi
  candidate="$(command -v "python$version" || true)"
  [ -n "$candidate" ] && candidates+=("$candidate")
  for candidate in "${candidates[@]}"; do
    # A pyenv shim exists for every installed version but fails when that version is not selected: run it.
    if [ -x "$candidate" ] && "$candidate" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$version')" 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# A venv for interpreter $1 at $2 with syncsim (editable) and what tests/sim needs; reused while it is current.
ensure_venv() {
  local python="$1" venv="$2"
  if [ -f "$venv/.installed" ] && [ "$venv/.installed" -nt pyproject.toml ] && "$venv/bin/python" -c "" 2>/dev/null; then
    return 0
  fi
  rm -rf "$venv"
  if [ -x .venv/bin/python ]; then
    # The checkout's pip installs into a venv without one of its own (`pip --python`): no pip to set up each time.
    "$python" -m venv --without-pip "$venv"
    .venv/bin/python -m pip --python "$venv/bin/python" install --quiet -e ".[sim,test]"
  else
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet -e ".[sim,test]"
  fi
  touch "$venv/.installed"
}

start=$SECONDS
versions=()
for version in 3.12 3.13; do
  if python="$(find_python "$version")"; then
    venv=".venv-py${version//./}"
    echo "test-sim-pythons: Python $version: $python -> $venv"
    ensure_venv "$python" "$venv"
    versions+=("$version")
  else
    echo "test-sim-pythons: Python $version not found (pyenv versions or python$version on PATH)"
  fi
done
if [ ${#versions[@]} -eq 0 ]; then
  echo "test-sim-pythons: neither Python 3.12 nor 3.13 is installed: the simulator must be tested on one" >&2
  exit 1
fi
echo "test-sim-pythons: venvs ready ($((SECONDS - start)) s)"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
pids=()
for version in "${versions[@]}"; do
  venv=".venv-py${version//./}"
  ( begun=$SECONDS
    status=0
    "$venv/bin/python" -m pytest "${pytest_args[@]}" >"$logs/$version.log" 2>&1 || status=$?
    echo "test-sim-pythons: Python $version: pytest exited $status in $((SECONDS - begun)) s" >>"$logs/$version.log"
    exit "$status" ) &
  pids+=($!)
done

failed=0
for i in "${!versions[@]}"; do
  wait "${pids[$i]}" || failed=1
  echo "--- Python ${versions[$i]}: pytest ${pytest_args[*]}"
  cat "$logs/${versions[$i]}.log"
done
echo "test-sim-pythons: done in $((SECONDS - start)) s"
exit "$failed"
