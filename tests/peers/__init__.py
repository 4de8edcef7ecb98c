"""Real servers for tests, benchmarks and soak runs, on 127.0.0.1 only.

Each peer is a context manager that starts a private server and removes it on exit::

    from tests.peers import PostgresServer, PgBouncerServer, RsyslogServer, OtlpReceiver

    with PostgresServer() as pg, PgBouncerServer(pg) as bouncer, RsyslogServer() as rs, OtlpReceiver() as rx:
        ...

A missing server binary raises :class:`PeerUnavailable` (whose message says to run ``./dev test``); a server that
will not start raises :class:`PeerError` with its log tail.
"""

from .otlp import OtlpReceiver
from .pgbouncer import PgBouncerServer
from .ports import PeerError, PeerUnavailable, free_port, free_ports
from .postgres import PostgresServer
from .rsyslog import RsyslogServer

__all__ = [
    "OtlpReceiver",
    "PeerError",
    "PeerUnavailable",
    "PgBouncerServer",
    "PostgresServer",
    "RsyslogServer",
    "free_port",
    "free_ports",
]
