"""A private, throwaway PostgreSQL cluster on 127.0.0.1 (test-peers.md §3.1).

initdb and postgres refuse to run as root, so when we are root they run as the Debian ``postgres`` user through
``setpriv``; the cluster lives in its own temporary directory with fsync off, and never touches the system cluster.

    with PostgresServer() as pg:
        db_dsn = pg.create_database("t1")
        with pg.connect("t1") as conn:
            conn.execute("select 1")
        pg.kill_backends()
        pg.restart()
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

from .ports import (
    HOST,
    SETUP_HINT,
    PeerError,
    PeerUnavailable,
    as_service_user,
    free_port,
    give_to_service_user,
    pid_alive,
    require_binary,
    run_checked,
    tail,
)

SUPERUSER = "postgres"

#: Settings for a fast, disposable cluster. Durability is off: a crash may lose the data, which is fine here.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def find_pg_bin() -> str:
    """The directory of initdb/pg_ctl/postgres: ``$PG_BIN``, else Debian's newest ``/usr/lib/postgresql/N/bin``."""
    override = os.environ.get("PG_BIN")
    if override:
        if not (Path(override) / "initdb").is_file():
            raise PeerUnavailable(f"PG_BIN={override} has no initdb: unset PG_BIN, or {SETUP_HINT}")
        return override
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return str(Path(candidates[-1]).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if bindir and (Path(bindir) / "initdb").is_file():
            return bindir
    initdb = shutil.which("initdb")
    if initdb:
        return str(Path(initdb).parent)
    raise PeerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed: run `./dev test` (or `./dev setup`), "
        "which installs the Debian `postgresql` package; or set PG_BIN to their directory"
    )


class PostgresServer:
    """A PostgreSQL cluster of our own, listening on ``127.0.0.1:port``; superuser ``postgres``, trust auth.

    ``start()`` runs initdb the first time; ``stop()`` keeps the data so ``start()``/``restart()`` bring the same
    cluster back on the same port; ``close()`` (or leaving the ``with`` block) stops it and deletes everything.
    """

    host = HOST
    user = SUPERUSER

    def __init__(
        self,
        *,
        port: int | None = None,
        base_dir: str | Path | None = None,
        pg_bin: str | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.pg_bin = pg_bin or find_pg_bin()
        self._initdb = require_binary("initdb", search=[self.pg_bin])
        self._pg_ctl = require_binary("pg_ctl", search=[self.pg_bin])
        self._psql = require_binary("psql", search=[self.pg_bin])
        self.port = port or free_port()
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="flightrec-pg-", dir="/tmp"))
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "server.log"
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.start_timeout = start_timeout
        self._closed = False

    # -- addresses ---------------------------------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def pid(self) -> int:
        """The postmaster's PID (changes on every start)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError) as exc:
            raise PeerError(f"PostgreSQL on port {self.port} is not running") from exc

    @property
    def running(self) -> bool:
        try:
            return pid_alive(self.pid)
        except PeerError:
            return False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _initialise(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        give_to_service_user(self.base_dir)
        run_checked(
            as_service_user([
                self._initdb, "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync", "--no-instructions",
            ]),
            what="initdb",
        )  # fmt: skip
        lines = [f"{key} = {value}" for key, value in self.settings.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{self.base_dir}'"]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# flightrec test peer\n" + "\n".join(lines) + "\n")

    def start(self) -> Self:
        """Start the server (running initdb the first time). A no-op when it is already running."""
        if self._closed:
            raise PeerError("this PostgresServer was closed; make a new one")
        if self.running:
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initialise()
        cmd = [self._pg_ctl, "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
               "-t", str(int(self.start_timeout)), "start"]  # fmt: skip
        try:
            run_checked(as_service_user(cmd), what="pg_ctl start", timeout=self.start_timeout + 10)
        except PeerError as exc:
            raise PeerError(f"{exc}\n{tail(self.log_path)}") from None
        atexit.register(self.close)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate — immediate is a crash, recovery runs on start)."""
        if not self.running:
            return
        run_checked(
            as_service_user([self._pg_ctl, "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop"]),
            what="pg_ctl stop",
            timeout=70,
        )

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port; every connection is cut and the postmaster PID changes."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directory. Idempotent."""
        if self._closed:
            return
        atexit.unregister(self.close)
        try:
            if self.data_dir.exists():
                self.stop("immediate")
        finally:
            self._closed = True
            if self._own_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- clients -----------------------------------------------------------------------------------------------
    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        """A psycopg connection as the superuser, autocommit on unless ``autocommit=False`` is passed."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(self.dsn_for(dbname), **kwargs)

    def execute(
        self, query: str | sql.Composable, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh autocommit connection; return its rows (``[]`` when it has none)."""
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def psql(self, script: str, *, dbname: str = "postgres") -> str:
        """Run ``script`` with the psql binary (unaligned, tuples only, stop on error) and return its stdout."""
        cmd = [self._psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
               "-U", self.user, "-d", dbname, "-c", script]  # fmt: skip
        return run_checked(cmd, what="psql").stdout

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create a database (a random ``t_…`` name when ``name`` is None) and return its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not _IDENT.match(name):
            raise ValueError(f"database name {name!r} is not a plain identifier")
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        self.execute(query)
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database even if clients are still connected to it."""
        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def kill_backends(self, dbname: str | None = None) -> int:
        """Terminate every client backend (of ``dbname`` only, if given) except our own; return how many.

        Waits (up to 5 s each) until the backends are really gone, so the next query of a victim fails.
        """
        query = (
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            " AND (%s::text IS NULL OR datname = %s::text)"
        )
        rows = self.execute(query, [dbname, dbname])
        return int(rows[0][0])

    def log_tail(self, max_bytes: int = 4000) -> str:
        return tail(self.log_path, max_bytes)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        with contextlib.suppress(Exception):
            return f"<PostgresServer {self.dsn} {state} dir={self.base_dir}>"
        return "<PostgresServer>"
