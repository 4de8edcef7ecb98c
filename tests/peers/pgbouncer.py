"""PgBouncer in front of a :class:`PostgresServer` (test-peers.md §3.4).

PgBouncer refuses to run as root, so as root it runs as the ``postgres`` user. It runs in the foreground under
our own Popen (no daemonising), so stopping and killing it is exact. Every database name is routed to the cluster
(``* = …``), so per-test databases work through it too.

Transaction pooling means no session state between transactions: connect with ``prepare_threshold=None``
(:meth:`PgBouncerServer.connect` does), no ``SET`` outside a transaction, no session advisory locks, no ``LISTEN``.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg

from .ports import (
    HOST,
    PeerError,
    as_service_user,
    free_port,
    give_to_service_user,
    port_accepts,
    require_binary,
    tail,
    terminate,
    wait_until,
)
from .postgres import PostgresServer

POOL_MODES = ("session", "transaction", "statement")


class PgBouncerServer:
    """PgBouncer on ``127.0.0.1:port`` pooling connections to ``pg``; trust auth as user ``postgres``."""

    host = HOST

    def __init__(
        self,
        pg: PostgresServer,
        pool_size: int = 4,
        mode: str = "transaction",
        *,
        port: int | None = None,
        max_client_conn: int = 200,
        start_timeout: float = 10.0,
    ) -> None:
        if mode not in POOL_MODES:
            raise ValueError(f"mode must be one of {POOL_MODES}, not {mode!r}")
        self.pg = pg
        self.pool_size = pool_size
        self.mode = mode
        self.max_client_conn = max_client_conn
        self.start_timeout = start_timeout
        self._binary = require_binary("pgbouncer")
        self.port = port or free_port()
        self.base_dir = Path(tempfile.mkdtemp(prefix="flightrec-pgbouncer-", dir="/tmp"))
        self.ini_path = self.base_dir / "pgbouncer.ini"
        self.log_path = self.base_dir / "pgbouncer.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    @property
    def user(self) -> str:
        return self.pg.user

    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database through PgBouncer."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise PeerError(f"PgBouncer on port {self.port} is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        userlist = self.base_dir / "userlist.txt"
        userlist.write_text(f'"{self.user}" ""\n')
        self.ini_path.write_text(
            "[databases]\n"
            f"* = host={self.pg.host} port={self.pg.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.host}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {userlist}\n"
            f"admin_users = {self.user}\n"
            f"pool_mode = {self.mode}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            f"default_pool_size = {self.pool_size}\n"
            f"logfile = {self.log_path}\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            # After a PostgreSQL restart, retry the server login after 1 s rather than the default 15 s.
            "server_login_retry = 1\n"
        )
        for path in (self.base_dir, userlist, self.ini_path):
            give_to_service_user(path)

    def start(self) -> Self:
        """Start PgBouncer (same port on a restart) and wait until it accepts connections."""
        if self._closed:
            raise PeerError("this PgBouncerServer was closed; make a new one")
        if self.running:
            return self
        self._write_config()
        self._proc = subprocess.Popen(
            as_service_user([self._binary, str(self.ini_path)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self._proc
        try:
            wait_until(
                lambda: proc.poll() is not None or port_accepts(self.port),
                self.start_timeout,
                f"PgBouncer to listen on {self.host}:{self.port}",
                on_timeout=self.log_tail,
            )
        except PeerError:
            terminate(proc, signal.SIGKILL)
            raise
        if proc.poll() is not None:
            raise PeerError(f"PgBouncer exited at start with status {proc.returncode}\n{self.log_tail()}")
        atexit.register(self.close)
        return self

    def stop(self) -> None:
        """Immediate shutdown (SIGTERM): client connections are cut."""
        if self._proc is not None:
            terminate(self._proc, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is not None:
            terminate(self._proc, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        if self._closed:
            return
        atexit.unregister(self.close)
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        """A psycopg connection through PgBouncer: autocommit, and no server-side prepared statements."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("prepare_threshold", None)
        return psycopg.connect(self.dsn_for(dbname), **kwargs)

    def log_tail(self, max_bytes: int = 4000) -> str:
        return tail(self.log_path, max_bytes)

    def __repr__(self) -> str:
        return f"<PgBouncerServer {self.dsn} mode={self.mode} pool_size={self.pool_size}>"
