#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) and pg_cron are installed, for the integration
# tests' TemporaryPostgres. Installs the distribution's `postgresql` package with apt-get when they are missing;
# does nothing when they are present. Non-interactive and idempotent: CI calls it before the tests.
set -euo pipefail

find_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir="$(pg_config --bindir 2>/dev/null || true)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

# pg_cron for the tick's schedule (Supabase Cron) tests: Debian's postgresql-NN-cron, for the server's version.
ensure_pg_cron() {
  local bindir="$1" libdir major
  libdir="$(dirname "$bindir")/lib"
  [ -f "$libdir/pg_cron.so" ] && { echo "pg_cron: $libdir/pg_cron.so"; return 0; }
  major="$("$bindir/postgres" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: pg_cron is missing and apt-get is not available; install pg_cron for PostgreSQL $major" >&2
    return 1
  fi
  echo "ensure-postgres: installing pg_cron (postgresql-$major-cron) with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q --no-install-recommends "postgresql-$major-cron" \
    || { $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends "postgresql-$major-cron"; }
  [ -f "$libdir/pg_cron.so" ] || { echo "ensure-postgres: pg_cron still missing from $libdir" >&2; return 1; }
}

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi

if bindir="$(find_bindir)"; then
  echo "PostgreSQL server binaries: $bindir ($("$bindir/postgres" --version 2>/dev/null || echo unknown version))"
  ensure_pg_cron "$bindir"
  exit $?
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL server binaries are missing and apt-get is not available;" \
       "install PostgreSQL (initdb, pg_ctl) with this system's package manager" >&2
  exit 1
fi

if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
  echo "ensure-postgres: PostgreSQL server binaries are missing and installing them needs root (or sudo)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure-postgres: installing PostgreSQL server binaries with apt-get"
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends postgresql

if ! bindir="$(find_bindir)"; then
  echo "ensure-postgres: apt-get installed postgresql but initdb/pg_ctl are still not found" >&2
  exit 1
fi
echo "PostgreSQL server binaries: $bindir ($("$bindir/postgres" --version))"
ensure_pg_cron "$bindir"
