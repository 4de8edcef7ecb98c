"""Shared fixtures: real servers on 127.0.0.1 (see tests/peers and ../shared/reference/test-peers.md).

Session-scoped, shared by every test (start once, ~1 s in all):
    ``pg_server`` (:class:`PostgresServer`), ``pgbouncer`` (:class:`PgBouncerServer`, transaction mode, in front of
    ``pg_server``), ``rsyslog`` (:class:`RsyslogServer`), ``otlp_receiver`` (:class:`OtlpReceiver`).
    Shared means shared: filter syslog messages by something unique to your test (``where=`` in ``wait_for``) or
    call ``rsyslog.clear()`` first; call ``otlp_receiver.clear()`` before counting spans. A test may restart
    ``pg_server`` (``pg_db`` starts it again if a test left it stopped).
Function-scoped:
    ``pg_db``: a fresh database on ``pg_server`` for this test; yields its DSN and drops it afterwards.
    ``private_pg_server``, ``private_rsyslog``, ``private_otlp_receiver``: a server of the test's own, for tests
    that stop, kill or hang it.

A missing server binary makes the fixture FAIL (never skip) with a message saying to run ``./dev test``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # `tests.peers` must import the same way under `pytest` and `python -m pytest`
    sys.path.insert(0, _ROOT)

from tests.peers import (  # noqa: E402
    OtlpReceiver,
    PeerError,
    PeerUnavailable,
    PgBouncerServer,
    PostgresServer,
    RsyslogServer,
)

T = TypeVar("T")


def _start(what: str, factory: Callable[[], T]) -> T:
    """Build and start a peer; a missing binary or a failed start fails the test with the peer's explanation."""
    try:
        return factory()
    except PeerUnavailable as exc:
        problem = f"{what} is unavailable: {exc}"
    except PeerError as exc:
        problem = f"{what} did not start: {exc}"
    pytest.fail(problem, pytrace=False)  # outside the except block: no "during handling of" noise


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = _start("PostgreSQL", lambda: PostgresServer().start())
    yield server
    server.close()


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PostgresServer) -> Iterator[PgBouncerServer]:
    bouncer = _start("PgBouncer", lambda: PgBouncerServer(pg_server, pool_size=4, mode="transaction").start())
    yield bouncer
    bouncer.close()


@pytest.fixture(scope="session")
def rsyslog() -> Iterator[RsyslogServer]:
    server = _start("rsyslog", lambda: RsyslogServer().start())
    yield server
    server.close()


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.close()


@pytest.fixture
def pg_db(pg_server: PostgresServer) -> Iterator[str]:
    """DSN of a database created for this test alone (superuser ``postgres``, trust auth, 127.0.0.1)."""
    if not pg_server.running:  # an earlier test stopped the shared server and did not bring it back
        _start("PostgreSQL", pg_server.start)
    dsn = pg_server.create_database()
    yield dsn
    if pg_server.running:
        pg_server.drop_database(dsn.rsplit("/", 1)[1])


@pytest.fixture
def private_pg_server() -> Iterator[PostgresServer]:
    server = _start("PostgreSQL", lambda: PostgresServer().start())
    yield server
    server.close()


@pytest.fixture
def private_rsyslog() -> Iterator[RsyslogServer]:
    server = _start("rsyslog", lambda: RsyslogServer().start())
    yield server
    server.close()


@pytest.fixture
def private_otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.close()
