"""The receivers of the "everything on" contestant: PostgreSQL, rsyslog (TCP) and an OTLP endpoint, all local.

Started once per benchmark run (the peers from `tests.peers`, which start real servers on 127.0.0.1); the OTLP
receiver runs in its own process (`bench.otlp_receiver`) so that it does not share the GIL with the Runtime API
server. Between runs the log table is emptied, so every round inserts into a table of the same size.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench import procfs

DATABASE = "flightrec_bench"
TABLE = "logs"


class OtlpProcess:
    """`python -m bench.otlp_receiver` as a context manager; `counts()` asks it what it received so far."""

    def __init__(self, root: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.otlp_receiver"], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        self.endpoint = self._readline().strip()
        if not self.endpoint.startswith("http://"):
            raise RuntimeError(f"the OTLP receiver did not start: {self.endpoint!r}")

    def _readline(self) -> str:
        stdout: IO[str] | None = self._proc.stdout
        assert stdout is not None
        return stdout.readline()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def counts(self) -> dict[str, int]:
        stdin: IO[str] | None = self._proc.stdin
        assert stdin is not None
        stdin.write("count\n")
        stdin.flush()
        result: dict[str, int] = json.loads(self._readline())
        return result

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@dataclass
class Peers:
    """Running receivers and the variables that point our bootstrap at them."""

    env: dict[str, str]
    postgres: Any  # tests.peers.PostgresServer (imported lazily: psycopg is heavy and only needed here)
    rsyslog: Any  # tests.peers.RsyslogServer
    otlp: OtlpProcess

    def cpu_ns(self) -> dict[str, int]:
        """CPU used so far by each receiver (PostgreSQL: the postmaster and its live backends), in ns.

        Why: "everything on" waits for these before `/next`, and they share the machine's two cores with the
        runtime, so their cost per invocation belongs next to the runtime's own.
        """
        postmaster = self.postgres.pid
        return {
            "postgres": sum(procfs.process_cpu_ns(p) for p in [postmaster, *procfs.children(postmaster)]),
            "rsyslog": procfs.process_cpu_ns(self.rsyslog.pid),
            "otlp": procfs.process_cpu_ns(self.otlp.pid),
        }

    def stored_rows(self) -> int:
        """Rows in the log table (0 before the runtime's auto-migration created it)."""
        try:
            rows = self.postgres.execute(f"SELECT count(*) FROM {TABLE}", dbname=DATABASE)  # noqa: S608 - constant
        except Exception:  # the table does not exist yet
            return 0
        return int(rows[0][0])

    def syslog_messages(self) -> int:
        return len(self.rsyslog.messages())

    def reset(self) -> None:
        """Empty the log table and forget the syslog messages received, so every run starts alike."""
        with contextlib.suppress(Exception):  # no table before the first run of the bootstrap
            self.postgres.execute(f"TRUNCATE {TABLE}", dbname=DATABASE)
        self.rsyslog.clear()


@contextlib.contextmanager
def started(root: Path, spill_dir: Path) -> Iterator[Peers]:
    """Start the three receivers; raises tests.peers.PeerUnavailable when a server binary is missing."""
    from tests.peers import PostgresServer, RsyslogServer

    with PostgresServer() as pg, RsyslogServer() as rs:
        dsn = pg.create_database(DATABASE)
        otlp = OtlpProcess(root)
        try:
            env = {
                "SYSLOG_URL": rs.tcp_url,
                "LOGS_DATABASE_URL": dsn,
                "LOGS_AUTO_MIGRATE": "1",
                "LOGS_SPILL_DIR": str(spill_dir),
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_SERVICE_NAME": "bench-echo",
            }
            yield Peers(env=env, postgres=pg, rsyslog=rs, otlp=otlp)
        finally:
            otlp.close()
