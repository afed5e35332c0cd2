"""A throwaway PostgreSQL cluster for tests and notebooks: real server, temp dir, gone on ``stop()``.

The cluster is built from the installed server binaries (``initdb``, ``pg_ctl``), listens on 127.0.0.1 on a
free port and on a unix socket inside its temp dir, and trades durability for speed (``fsync=off``,
``synchronous_commit=off``, ``full_page_writes=off``): a crash loses nothing a test cares about. PostgreSQL
refuses to run as root, so when we are root the cluster runs as the ``postgres`` OS user.

:meth:`TemporaryPostgres.stop_server` and :meth:`~TemporaryPostgres.start_server` take the server down and bring
the same cluster back on the same port: the outages that fault tests put their clients through.

``SYNCSIM_TEST_DATABASE_URL``, when set, names an existing server (a CI service container, a Supabase
branch) to use instead; nothing is started and ``stop()`` leaves that server alone.

    with TemporaryPostgres() as pg:
        url = pg.create_database("scratch")
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from syncsim.errors import ConfigError, StoreError

__all__ = ["TEST_DATABASE_URL_ENV", "TemporaryPostgres", "find_postgres_bindir", "test_database_url"]

#: Names an existing PostgreSQL server (superuser URL) to test against instead of starting a cluster.
TEST_DATABASE_URL_ENV = "SYNCSIM_TEST_DATABASE_URL"

_INSTALL_HINT = "install them with `apt-get install postgresql` (or run scripts/ensure-postgres.sh)"
# Speed over durability, and room for the pools of many concurrent test stores.
_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_min_messages": "warning",
    "logging_collector": "off",
}
_START_TIMEOUT_S = 60
_INITDB_OPTIONS = ("-E", "UTF8", "--locale=C", "--no-sync")
_START_OPTIONS = ("-w", "-t", str(_START_TIMEOUT_S), "start")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def test_database_url() -> str | None:
    """``$SYNCSIM_TEST_DATABASE_URL`` if set (a superuser URL of an existing server), else ``None``."""
    return os.environ.get(TEST_DATABASE_URL_ENV) or None


# Not a test, despite its name: keep pytest from collecting it when a test module imports it.
test_database_url.__test__ = False  # type: ignore[attr-defined]


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb``/``pg_ctl``: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``, else ``initdb`` on ``PATH``. :class:`ConfigError` when none is found."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> tuple[int, ...]:
        digits = re.findall(r"\d+", Path(path).parent.name)
        return tuple(int(d) for d in digits)

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise ConfigError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {_INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines)[-limit:] if lines else "no output"


class TemporaryPostgres:
    """A PostgreSQL cluster that lives in a temp dir from :meth:`start` to :meth:`stop`.

    ``url`` is the superuser URL (``postgresql://postgres@127.0.0.1:PORT/postgres``, trust auth, so it
    carries no password). Use as a context manager, or call ``start()``/``stop()``; an unstopped cluster is
    stopped at interpreter exit.
    """

    def __init__(
        self, *, bindir: str | Path | None = None, use_env: bool = True, settings: dict[str, str] | None = None
    ) -> None:
        """``settings``: more ``postgresql.conf`` lines (name -> value as written there), e.g. to preload an
        extension's library."""
        self._bindir = Path(bindir) if bindir else None
        self._use_env = use_env
        self._settings = dict(settings or {})
        self._tmpdir: Path | None = None
        self._external = False
        self.port: int | None = None
        self.url: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the cluster (or adopt ``$SYNCSIM_TEST_DATABASE_URL``); return the superuser URL."""
        if self.url is not None:
            return self.url
        external = test_database_url() if self._use_env else None
        if external:
            self._external = True
            self.url = external
            return external
        bindir = self._bindir or find_postgres_bindir()
        if not (bindir / "initdb").is_file():
            raise ConfigError(f"no initdb in {str(bindir)!r}: {_INSTALL_HINT}")
        run_as = self._os_user()
        tmpdir = Path(tempfile.mkdtemp(prefix="syncsim-pg-"))
        self._tmpdir = tmpdir
        atexit.register(self.stop)
        try:
            if run_as is not None:
                os.chmod(tmpdir, 0o700)
                os.chown(tmpdir, run_as.pw_uid, run_as.pw_gid)
            data = tmpdir / "data"
            self._run(
                run_as,
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", *_INITDB_OPTIONS],
                "initdb",
            )
            with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write("\n# syncsim TemporaryPostgres\n")
                conf.write(f"unix_socket_directories = '{tmpdir}'\n")
                for key, value in {**_SERVER_SETTINGS, **self._settings}.items():
                    conf.write(f"{key} = {value}\n")
            self.port = self._start_server(bindir, run_as, data)
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        return self.url

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl stop -m immediate``) and delete its directory. Idempotent."""
        atexit.unregister(self.stop)
        tmpdir, self._tmpdir = self._tmpdir, None
        self.url = None
        self.port = None
        if self._external or tmpdir is None:
            self._external = False
            return
        data = tmpdir / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError, ConfigError):
                bindir = self._bindir or find_postgres_bindir()
                self._run(
                    self._os_user(),
                    [str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate", "-w"],
                    "pg_ctl stop",
                    check=False,
                )
        shutil.rmtree(tmpdir, ignore_errors=True)

    def stop_server(self, *, mode: str = "immediate") -> None:
        """Stop the server but keep the cluster, so that :meth:`start_server` brings the same data back on the
        same port: an outage, as clients see one. ``mode`` is ``pg_ctl stop``'s: ``immediate`` (like a crash:
        every connection is cut at once), ``fast`` or ``smart``."""
        if mode not in {"immediate", "fast", "smart"}:
            raise ValueError(f"pg_ctl stop mode must be immediate, fast or smart, got {mode!r}")
        data = self._own_data_dir("stop")
        self._run(
            self._os_user(),
            [str((self._bindir or find_postgres_bindir()) / "pg_ctl"), "-D", str(data), "stop", "-m", mode, "-w"],
            "pg_ctl stop",
        )

    def start_server(self) -> None:
        """Start the server that :meth:`stop_server` stopped, on the same port, with the same data."""
        data = self._own_data_dir("start")
        assert self._tmpdir is not None and self.port is not None
        proc = self._run(
            self._os_user(),
            [
                str((self._bindir or find_postgres_bindir()) / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self._tmpdir / "server.log"),
                "-o",
                f"-p {self.port}",
                *_START_OPTIONS,
            ],
            "pg_ctl start",
            check=False,
        )
        if proc.returncode != 0:
            raise StoreError(f"PostgreSQL server did not restart on port {self.port}: {self._failure(proc)}")

    def __enter__(self) -> TemporaryPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"TemporaryPostgres(url={self.url!r})"

    # -- databases ------------------------------------------------------------------------------------------
    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given) and return its URL.

        The template must have no open connections (PostgreSQL's rule for copying a database).
        """
        for ident in (name, template):
            if ident is not None and not _IDENTIFIER.match(ident):
                raise ValueError(f"not a plain SQL identifier: {ident!r}")
        url = self.start()
        import psycopg

        sql = f'create database "{name}"' + (f' template "{template}"' if template else "")
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.encode())
        except psycopg.Error as exc:
            raise StoreError(f"could not create database {name!r}: {_one_line(str(exc))}") from None
        return database_url(url, name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")
        import psycopg

        if self.url is None:
            return
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)'.encode())
        except psycopg.Error as exc:
            raise StoreError(f"could not drop database {name!r}: {_one_line(str(exc))}") from None

    # -- internals ------------------------------------------------------------------------------------------
    def _own_data_dir(self, what: str) -> Path:
        """The cluster's data directory; only a cluster this object started can be stopped and started."""
        if self._external:
            raise ConfigError(
                f"cannot {what} the server at ${TEST_DATABASE_URL_ENV}: TemporaryPostgres did not start it"
            )
        if self._tmpdir is None or self.port is None:
            raise ConfigError(f"cannot {what} the server: the cluster is not running (call start() first)")
        return self._tmpdir / "data"

    def _failure(self, proc: subprocess.CompletedProcess[str]) -> str:
        """Why ``pg_ctl start`` failed: the server log's last lines, else pg_ctl's own output."""
        assert self._tmpdir is not None
        try:
            tail = (self._tmpdir / "server.log").read_text(encoding="utf-8", errors="replace").splitlines()[-3:]
        except OSError:
            tail = []
        return _one_line("\n".join(tail) or proc.stderr or proc.stdout)

    @staticmethod
    def _os_user() -> pwd.struct_passwd | None:
        """The ``postgres`` OS user when we are root (the server refuses root), else ``None``: ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise ConfigError(
                "running as root needs a 'postgres' OS user to own the server "
                f"(created by the postgresql package: {_INSTALL_HINT})"
            ) from None

    @staticmethod
    def _run(
        run_as: pwd.struct_passwd | None, argv: list[str], what: str, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if run_as is not None:
            argv = ["runuser", "-u", run_as.pw_name, "--", *argv]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=_START_TIMEOUT_S, cwd="/", env=_server_env()
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"{what} failed: {exc.filename} not found ({_INSTALL_HINT})") from None
        except subprocess.TimeoutExpired:
            raise StoreError(f"{what} did not finish within {_START_TIMEOUT_S} s") from None
        if check and proc.returncode != 0:
            raise StoreError(f"{what} failed (exit {proc.returncode}): {_one_line(proc.stderr or proc.stdout)}")
        return proc

    def _start_server(self, bindir: Path, run_as: pwd.struct_passwd | None, data: Path) -> int:
        """Start on a free port; retry on another port if one was taken between probing and binding."""
        assert self._tmpdir is not None
        log = self._tmpdir / "server.log"
        last_error = ""
        for _ in range(3):
            port = _free_port()
            proc = self._run(
                run_as,
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    f"-p {port}",
                    *_START_OPTIONS,
                ],
                "pg_ctl start",
                check=False,
            )
            if proc.returncode == 0:
                return port
            last_error = self._failure(proc)
            if "could not bind" not in last_error and "already in use" not in last_error:
                break
        raise StoreError(f"PostgreSQL server did not start: {last_error}")


def database_url(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (same host, user, password, query)."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _server_env() -> dict[str, str]:
    # A stray PGDATA/PGPORT from the caller's environment must not redirect initdb or pg_ctl.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env
