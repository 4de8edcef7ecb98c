"""The PostgreSQL sink against real servers: a private PostgreSQL cluster, and PgBouncer in transaction mode.

Records are rendered by the real `EventFormatter`; rows are read back with plain SQL. Fault tests state in their
docstrings which records are delivered and which (if any) are lost: the promise is exactly once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from telemetry.context import LogContext
from telemetry.migrate_cli import EXIT_DATABASE, EXIT_OK, EXIT_USAGE, configure, run
from telemetry.postgres import PostgresHandler
from telemetry.records import REPORT, EventFormatter, Rendered, parse_rfc3339
from telemetry.schema import COLUMNS, READER_ROLE, SCHEMA_VERSION, WRITER_ROLE, migrate
from telemetry.spill import PendingBuffer
from tests.peers import PgBouncerServer, free_port

#: liveness margin: a failing ship must return within its deadline plus this (never a speed expectation)
MARGIN_S = 5.0
FORMATTER = EventFormatter({"function_name": "orders", "function_version": "7"}, instance_id="inst-1")


# -- helpers -------------------------------------------------------------------------------------------------------
def make_records(n: int, request_id: str | None = None, *, first_seq: int = 0, report: bool = True) -> list[Rendered]:
    """`n` records of one invocation as the runtime renders them; the last is its report record."""
    ctx = LogContext(
        request_id=request_id or str(uuid.uuid4()),
        cold_start=first_seq == 0,
        tenant_id="tenant-a",
        xray_trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
    )
    out = []
    for i in range(n):
        seq = first_seq + i
        if report and i == n - 1:
            record = logging.LogRecord("flightrec", logging.INFO, __file__, 1, "REPORT", (), None)
            record.flightrec_kind = REPORT
            record.flightrec_fields = {
                "duration_ms": 12.5 + seq, "status": "error" if seq % 2 else "success",
                "error_type": "Function.ValueError" if seq % 2 else None, "init_duration_ms": 80 + seq,
                "max_memory_used_mb": 60 + seq, "records_dropped": 0,
            }  # fmt: skip
        else:
            level = logging.WARNING if i % 3 == 0 else logging.INFO
            record = logging.LogRecord("app.orders", level, __file__, 1, "order %s: ünïcode ✓ 'quoted'", (seq,), None)
            record.order_id = seq  # an `extra=` field: only in the JSON
        record.flightrec = ctx
        record.flightrec_seq = seq
        record.flightrec_span = ("0af7651916cd43dd8448eb211c80319c", f"{seq:016x}")
        out.append(FORMATTER.render(record))
    return out


def make_handler(dsn: str, *, pending: PendingBuffer | None = None, **kwargs: Any) -> PostgresHandler:
    return PostgresHandler(pending if pending is not None else PendingBuffer("pg"), dsn, **kwargs)


def feed(handler: PostgresHandler, records: list[Rendered]) -> None:
    for record in records:
        handler.accept(record)


def ship(handler: PostgresHandler, within_s: float = 10.0) -> bool:
    return handler.ship(time.monotonic() + within_s)


def record_ids(dsn: str, table: str = "logs") -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = sql.SQL("SELECT record_id FROM {} ORDER BY record_id").format(sql.Identifier(*table.split(".")))
        return [row[0] for row in conn.execute(query)]


def expected_ids(records: list[Rendered]) -> list[str]:
    return sorted(r.event["record_id"] for r in records)


def dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def migrated(dsn: str, table: str = "logs") -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, table)
    return dsn


@contextlib.contextmanager
def closing(handler: PostgresHandler) -> Iterator[PostgresHandler]:
    try:
        yield handler
    finally:
        handler.close()


# -- migration -----------------------------------------------------------------------------------------------------
def _catalog(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Everything the migration is responsible for, as plain data (to compare before and after a re-run)."""
    one = conn.execute
    return {
        "relkind": one("SELECT relkind FROM pg_class WHERE oid = 'logs'::regclass").fetchone(),
        "partkey": one("SELECT pg_get_partkeydef('logs'::regclass)").fetchone(),
        "columns": one(
            "SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull"
            " THEN ' NOT NULL' ELSE '' END ORDER BY attnum) FROM pg_attribute"
            " WHERE attrelid = 'logs'::regclass AND attnum > 0 AND NOT attisdropped"
        ).fetchone(),
        "pk": one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'logs'::regclass AND contype = 'p'"
        ).fetchone(),
        "partitions": one(
            "SELECT array_agg(c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) ORDER BY c.relname)"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'logs'::regclass"
        ).fetchone(),
        "indexes": one(
            "SELECT array_agg(indexdef ORDER BY indexname) FROM pg_indexes WHERE tablename = 'logs'"
        ).fetchone(),
        "acl": one("SELECT relacl::text FROM pg_class WHERE oid = 'logs'::regclass").fetchone(),
        "roles": one(
            "SELECT array_agg(rolname || ' ' || rolcanlogin ORDER BY rolname) FROM pg_roles WHERE rolname = ANY(%s)",
            [[WRITER_ROLE, READER_ROLE]],
        ).fetchone(),
        "version": one("SELECT table_name, version FROM flightrec_schema_version").fetchall(),
    }


def test_migrate_creates_the_table_partitions_indexes_and_roles_and_is_idempotent(pg_db):
    # GIVEN an empty database
    with psycopg.connect(pg_db, autocommit=True) as conn:
        # WHEN it is migrated
        first = migrate(conn, "logs")
        created = _catalog(conn)

        # THEN the table is partitioned by ts, with COLUMNS as its columns and (ts, record_id) as its key
        assert first.created and first.version == SCHEMA_VERSION
        assert created["relkind"] == ("p",)
        assert created["partkey"] == ("RANGE (ts)",)
        assert created["columns"][0] == [
            f"{c.name} {'timestamp with time zone' if c.sql_type == 'timestamptz' else c.sql_type}"
            + (" NOT NULL" if c.not_null else "")
            for c in COLUMNS
        ]
        assert created["pk"] == ("PRIMARY KEY (ts, record_id)",)
        # AND it has a default partition and the current and next months, in UTC
        month = datetime.now(UTC).strftime("%Y%m")
        partitions = created["partitions"][0]
        assert partitions[0] == "logs_default DEFAULT"
        assert len(partitions) == 3
        assert partitions[1].startswith(f"logs_p{month} FOR VALUES FROM ('")
        assert set(first.created_partitions) == {p.split()[0] for p in partitions}
        # AND the audit and dashboard indexes
        indexes = "\n".join(created["indexes"][0])
        assert "(request_id, ts)" in indexes
        assert "(function_name, level, ts)" in indexes
        assert "(function_name, ts) WHERE (kind = 'report'::text)" in indexes
        # AND the roles exist, cannot log in, and may only insert (writer) or select (reader)
        assert created["roles"] == ([f"{READER_ROLE} false", f"{WRITER_ROLE} false"],)
        privileges = conn.execute(
            "SELECT r, p, has_table_privilege(r, 'logs', p) FROM unnest(%s::text[]) r,"
            " unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) p",
            [[WRITER_ROLE, READER_ROLE]],
        ).fetchall()
        allowed = {(r, p) for r, p, ok in privileges if ok}
        assert allowed == {(WRITER_ROLE, "INSERT"), (READER_ROLE, "SELECT")}
        assert created["version"] == [("logs", SCHEMA_VERSION)]

        # WHEN it is migrated again
        second = migrate(conn, "logs")

        # THEN nothing changes
        assert (second.previous_version, second.version) == (SCHEMA_VERSION, SCHEMA_VERSION)
        assert not second.changed
        assert _catalog(conn) == created


def test_concurrent_migrators_serialise_on_the_advisory_lock(pg_db):
    # GIVEN four migrators starting at once on an empty database
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def migrator() -> None:
        try:
            with psycopg.connect(pg_db, autocommit=True) as conn:
                start.wait()
                results.append(migrate(conn, "logs"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # THEN none of them fails and exactly one created the table
    assert errors == []
    assert sorted(r.created for r in results) == [False, False, False, True]


def test_a_new_partition_takes_over_its_rows_from_the_default_partition(pg_db):
    """Rows for a month without a partition land in the default one (an insert never fails); the migration that
    creates that month's partition moves them into it. Delivered: all; lost: none."""
    # GIVEN a migrated table and records from a month three months ahead, which only the default partition takes
    migrated(pg_db)
    records = make_records(5)
    future = "2031-03-15T10:00:00.000001Z"
    records = [Rendered({**r.event, "timestamp": future}, r.data, r.levelno) for r in records]
    with closing(make_handler(pg_db)) as handler:
        feed(handler, records)
        assert ship(handler)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        where = "SELECT tableoid::regclass::text, count(*) FROM logs GROUP BY 1"
        assert conn.execute(where).fetchall() == [("logs_default", 5)]

        # WHEN the migration runs in that month
        result = migrate(conn, "logs", now=datetime(2031, 3, 20, tzinfo=UTC))

        # THEN the month's partition exists and holds the rows
        assert result.created_partitions == ("logs_p203103", "logs_p203104")
        assert conn.execute(where).fetchall() == [("logs_p203103", 5)]
    assert record_ids(pg_db) == expected_ids(records)


def test_migrate_upgrades_an_older_table_and_refuses_a_newer_one(pg_db):
    # GIVEN a table from an older flightrec: a column missing and an older version recorded
    with psycopg.connect(pg_db, autocommit=True) as conn:
        migrate(conn, "logs")
        conn.execute("ALTER TABLE logs DROP COLUMN error_type")
        conn.execute("UPDATE flightrec_schema_version SET version = 0")

        # WHEN it is migrated
        result = migrate(conn, "logs")

        # THEN the column is back and the version is current
        assert (result.previous_version, result.version) == (0, SCHEMA_VERSION)
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'logs'::regclass"
                            " AND attname = 'error_type' AND NOT attisdropped").fetchone() == (1,)  # fmt: skip

        # AND a table that a newer flightrec migrated is left alone, with a clear error
        conn.execute("UPDATE flightrec_schema_version SET version = 99")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="newer than this flightrec"):
            migrate(conn, "logs")
        conn.execute("CREATE TABLE plain (ts timestamptz)")
        with pytest.raises(psycopg.errors.WrongObjectType, match="not a partitioned table"):
            migrate(conn, "plain")


def test_a_schema_qualified_table_with_an_awkward_name_works_end_to_end(pg_db):
    table = 'audit.Flight "Logs"'
    migrated(pg_db, table)
    records = make_records(4)
    with closing(make_handler(pg_db, table=table)) as handler:
        feed(handler, records)
        assert ship(handler)
    assert record_ids(pg_db, table) == expected_ids(records)


# -- delivery ------------------------------------------------------------------------------------------------------
def test_shipped_records_become_rows_with_their_column_values_and_json(pg_db):
    # GIVEN a migrated table and 3 invocations' records (logs, extras, unicode, reports), one with a NUL
    migrated(pg_db)
    records = make_records(10) + make_records(7, first_seq=3) + make_records(3)
    with closing(make_handler(pg_db)) as handler:
        feed(handler, records)

        # WHEN they are shipped
        assert ship(handler) is True

    # THEN there is exactly one row per record
    names = [c.name for c in COLUMNS]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        rows = {
            row[1]: dict(zip(names, row, strict=True)) for row in conn.execute(f"SELECT {', '.join(names)} FROM logs")
        }
    assert sorted(rows) == expected_ids(records)
    assert handler.inserted == len(records)
    # AND each column holds its event key's value, and `record` is the rendered JSON
    for record in records:
        event, row = record.event, rows[record.event["record_id"]]
        assert row["ts"] == parse_rfc3339(event["timestamp"])
        assert row["record"] == json.loads(record.data)
        for col in COLUMNS:
            if col.source not in (None, "timestamp"):
                assert row[col.name] == event.get(col.source), col.name
    reports = [row for row in rows.values() if row["kind"] == "report"]
    assert len(reports) == 3
    assert all(isinstance(r["duration_ms"], float) and r["max_memory_used_mb"] >= 60 for r in reports)
    assert {r["status"] for r in reports} <= {"success", "error"}


def test_shipping_the_same_records_again_adds_no_rows(pg_db):
    """A batch whose outcome was unknown is sent again. Delivered: every record once; duplicates: none."""
    migrated(pg_db)
    records = make_records(50)
    with closing(make_handler(pg_db)) as handler:
        feed(handler, records)
        assert ship(handler)
        # WHEN the same batch is shipped again, plus a batch holding one record twice
        feed(handler, records)
        assert ship(handler)
        feed(handler, [records[0], records[0]])
        assert ship(handler)
    # THEN there is still one row per record
    assert record_ids(pg_db) == expected_ids(records)
    assert (handler.inserted, handler.duplicates) == (50, 52)


def test_auto_migrate_creates_the_table_at_the_first_delivery(pg_db):
    records = make_records(3)
    with closing(make_handler(pg_db, auto_migrate=True)) as handler:
        feed(handler, records)
        assert ship(handler)
    assert record_ids(pg_db) == expected_ids(records)


def _watchdogs() -> int:
    return sum(t.name == "flightrec-pg-watchdog" for t in threading.enumerate())


def test_closing_the_handler_ends_its_watchdog_thread_and_a_reuse_restarts_it(pg_db):
    migrated(pg_db)
    before = _watchdogs()
    handler = make_handler(pg_db)
    feed(handler, make_records(2))
    assert ship(handler)
    assert _watchdogs() == before + 1
    handler.close()
    deadline = time.monotonic() + MARGIN_S
    while _watchdogs() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _watchdogs() == before
    # a closed sink reopens lazily (SnapStart restores call close_connections, shutdown calls close)
    feed(handler, make_records(2))
    assert ship(handler)
    assert len(record_ids(pg_db)) == 4
    handler.close()


def test_a_record_postgresql_rejects_is_stored_as_a_stub_and_does_not_block_the_rest(pg_db):
    """One record in a batch is not valid JSON for jsonb. Delivered: the other 9 as they are, and the bad one as a
    stub row (its id, the reason, its text); lost: none. Without this the bad record would block the sink."""
    migrated(pg_db)
    records = make_records(10)
    bad = records[6]
    records[6] = Rendered(bad.event, b'{"message": "\\ud800 half a surrogate"}', bad.levelno)
    with closing(make_handler(pg_db)) as handler:
        feed(handler, records)
        assert ship(handler) is True
        assert handler.quarantined == 1
    assert record_ids(pg_db) == expected_ids(records)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        stub = conn.execute("SELECT record FROM logs WHERE record_id = %s", [bad.event["record_id"]]).fetchone()
        good = conn.execute("SELECT count(*) FROM logs WHERE NOT record ? 'flightrec_unstorable'").fetchone()
    assert stub is not None
    assert "InvalidTextRepresentation" in stub[0]["flightrec_unstorable"]["error"]
    assert "half a surrogate" in stub[0]["original"]
    assert good == (9,)


# -- PgBouncer -----------------------------------------------------------------------------------------------------
def test_delivery_through_pgbouncer_in_transaction_mode(pgbouncer, pg_db):
    """Through PgBouncer (transaction pooling): migration, delivery and a repeat. Delivered: all once."""
    dsn = pgbouncer.dsn_for(dbname(pg_db))
    records = make_records(30)
    with closing(make_handler(dsn, auto_migrate=True)) as handler:
        feed(handler, records)
        assert ship(handler)
        feed(handler, records)
        assert ship(handler)
    assert record_ids(pg_db) == expected_ids(records)


def test_eight_writers_through_a_pool_of_four_store_every_row_exactly_once(pgbouncer, pg_db):
    """8 threads, each with its own handler, write through PgBouncer's pool of 4 server connections; each also
    re-sends half of its neighbour's records. Delivered: every record exactly once; lost: none."""
    migrated(pg_db)
    dsn = pgbouncer.dsn_for(dbname(pg_db))
    own = [make_records(200) for _ in range(8)]
    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        try:
            with closing(make_handler(dsn, batch_size=25)) as handler:
                start.wait()
                feed(handler, own[i] + own[(i + 1) % 8][:100])
                results.append(ship(handler, within_s=60))
                if handler.stats.failures:
                    errors.append(AssertionError(handler.stats.last_error))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert errors == []
    assert results == [True] * 8
    assert record_ids(pg_db) == expected_ids([r for records in own for r in records])


# -- faults --------------------------------------------------------------------------------------------------------
def test_a_backend_terminated_between_ships_is_replaced_transparently(pg_server, pg_db):
    """The backend dies while the connection is idle (as when Lambda froze the environment). The next ship's first
    execute fails, the sink reconnects once and resends. Delivered: all; lost: none; duplicates: none."""
    migrated(pg_db)
    first, second = make_records(5), make_records(5)
    with closing(make_handler(pg_db)) as handler:
        feed(handler, first)
        assert ship(handler)
        # WHEN every backend of the database is terminated
        assert pg_server.kill_backends(dbname(pg_db)) >= 1
        feed(handler, second)
        # THEN the next ship succeeds at once, with one reconnect and no failure
        assert ship(handler) is True
        assert (handler.reconnects, handler.stats.failures) == (1, 0)
    assert record_ids(pg_db) == expected_ids(first + second)


def test_records_shipped_after_a_postgresql_restart_are_delivered(private_pg_server):
    """PostgreSQL restarts between two ships. Delivered: all (the second ship reconnects); lost: none."""
    dsn = migrated(private_pg_server.create_database())
    first, second = make_records(5), make_records(5)
    with closing(make_handler(dsn)) as handler:
        feed(handler, first)
        assert ship(handler)
        private_pg_server.restart()
        feed(handler, second)
        assert ship(handler) is True
        assert handler.reconnects == 1
    assert record_ids(dsn) == expected_ids(first + second)


def test_while_postgresql_is_down_rows_stay_pending_and_spill_then_all_arrive_once(private_pg_server, tmp_path):
    """PostgreSQL is stopped. The ship fails within its deadline (plus a margin); the records stay pending, the
    ones beyond `max_items` in the spill file. After a start: delivered all, exactly once; lost: none."""
    dsn = migrated(private_pg_server.create_database())
    pending = PendingBuffer("pg", max_items=5, spill_dir=str(tmp_path))
    before, during = make_records(3), make_records(12)
    with closing(make_handler(dsn, pending=pending)) as handler:
        feed(handler, before)
        assert ship(handler)

        # WHEN the server stops and more records arrive
        private_pg_server.stop()
        feed(handler, during)
        assert pending.spilled == 7  # beyond max_items, on disk
        started = time.monotonic()
        delivered = handler.ship(started + 1.0)

        # THEN the ship gives up within the deadline plus a margin, and keeps every record
        assert delivered is False
        assert time.monotonic() - started < 1.0 + MARGIN_S
        assert len(pending) == 12
        assert pending.spilled_total == 7
        assert pending.dropped_total == 0
        assert handler.stats.failures == 1
        assert "127.0.0.1" in handler.stats.last_error

        # WHEN the server is back
        private_pg_server.start()
        handler.retry_now()

        # THEN everything is delivered, once
        assert ship(handler) is True
        assert len(pending) == 0
    assert record_ids(dsn) == expected_ids(before + during)


def test_a_statement_still_running_at_the_deadline_is_cancelled(pg_db):
    """The INSERT waits on a lock held by another session past the ship's deadline: the watchdog cancels it on the
    server and the ship returns. Delivered after the lock is released: all, once; lost: none."""
    migrated(pg_db)
    records = make_records(8)
    with closing(make_handler(pg_db)) as handler, psycopg.connect(pg_db) as blocker:
        blocker.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")  # held until the rollback below
        feed(handler, records)
        started = time.monotonic()
        assert handler.ship(started + 1.0) is False
        assert time.monotonic() - started < 1.0 + MARGIN_S
        assert "cancelled" in handler.stats.last_error
        assert len(handler.pending) == 8
        with psycopg.connect(pg_db, autocommit=True) as observer:
            left = observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND query LIKE 'INSERT INTO%%'"
            ).fetchone()
        assert left == (0,)  # the server stopped working on it, not only the client
        blocker.rollback()
        handler.retry_now()
        assert ship(handler) is True
    assert record_ids(pg_db) == expected_ids(records)


def test_a_short_deadline_after_a_long_one_is_still_kept(pg_db):
    """The watchdog sleeps until the earliest deadline it knows of; a statement with an earlier deadline than the
    one it last slept towards must still be cancelled at its own."""
    migrated(pg_db)
    first, second = make_records(3, "req-long"), make_records(5, "req-short")
    with closing(make_handler(pg_db)) as handler, psycopg.connect(pg_db) as blocker:
        # GIVEN a delivery with a distant deadline (the watchdog now sleeps towards it)
        feed(handler, first)
        assert handler.ship(time.monotonic() + 60.0) is True
        # WHEN the next statement blocks past a much nearer deadline
        blocker.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
        feed(handler, second)
        started = time.monotonic()
        assert handler.ship(started + 0.5) is False
        # THEN it is cancelled at that deadline, not at the distant one
        assert time.monotonic() - started < 0.5 + MARGIN_S
        assert "cancelled" in handler.stats.last_error
        blocker.rollback()
        handler.retry_now()
        assert ship(handler) is True
    assert record_ids(pg_db) == expected_ids(first + second)


def test_an_unresponsive_peer_is_cut_off_at_the_deadline(pg_server, pg_db):
    """PgBouncer is frozen (SIGSTOP) mid-session: the INSERT gets no answer and the cancel request none either,
    so the watchdog shuts the socket. After it resumes: delivered all, exactly once (the frozen INSERT may have
    gone through as well); lost: none."""
    migrated(pg_db)
    first, second = make_records(4), make_records(6)
    with PgBouncerServer(pg_server, pool_size=2) as bouncer:
        dsn = bouncer.dsn_for(dbname(pg_db))
        with closing(make_handler(dsn)) as handler:
            feed(handler, first)
            assert ship(handler)
            os.kill(bouncer.pid, signal.SIGSTOP)
            try:
                feed(handler, second)
                started = time.monotonic()
                assert handler.ship(started + 1.0) is False
                assert time.monotonic() - started < 1.0 + MARGIN_S
            finally:
                os.kill(bouncer.pid, signal.SIGCONT)
            handler.retry_now()
            assert ship(handler) is True
    assert record_ids(pg_db) == expected_ids(first + second)


def test_the_writer_role_may_insert_but_not_read_update_delete_or_truncate(pg_server, pg_db):
    """A login role granted flightrec_writer runs the sink. Delivered: all; and the rows cannot be changed."""
    migrated(pg_db)
    login = f"app_{uuid.uuid4().hex[:8]}"
    reader = f"dash_{uuid.uuid4().hex[:8]}"
    pg_server.execute(f"CREATE ROLE {login} LOGIN IN ROLE {WRITER_ROLE}")
    pg_server.execute(f"CREATE ROLE {reader} LOGIN IN ROLE {READER_ROLE}")
    try:
        as_writer = pg_db.replace("postgres@", f"{login}@")
        records = make_records(6)
        with closing(make_handler(as_writer)) as handler:
            feed(handler, records)
            assert ship(handler) is True
            feed(handler, records)  # the idempotent repeat needs no SELECT privilege either
            assert ship(handler) is True
        assert record_ids(pg_db) == expected_ids(records)

        with psycopg.connect(as_writer, autocommit=True) as conn:
            for statement in (
                "UPDATE logs SET message = 'forged'",
                "DELETE FROM logs",
                "TRUNCATE logs",
                "SELECT count(*) FROM logs",
                "DELETE FROM logs_default",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        with psycopg.connect(pg_db.replace("postgres@", f"{reader}@"), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM logs").fetchone() == (6,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO logs (ts, record_id, record) VALUES (now(), 'x', '{}')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE logs SET message = 'forged'")
        assert record_ids(pg_db) == expected_ids(records)
    finally:
        pg_server.execute(f"DROP ROLE IF EXISTS {login}")
        pg_server.execute(f"DROP ROLE IF EXISTS {reader}")


def test_no_error_or_log_line_shows_the_password(caplog, tmp_path):
    """Nothing listens on the port: the ship fails. Delivered: none yet; lost: none (the records stay pending)."""
    caplog.set_level(logging.DEBUG)
    port = free_port()
    for dsn in (
        f"postgresql://app:S3cretPw@127.0.0.1:{port}/db",
        f"host=127.0.0.1 port={port} user=app password=S3cretPw dbname=db",
        "postgresql://app:S3cretPw@127.0.0.1/db?bogus=1",
    ):
        handler = make_handler(dsn)
        feed(handler, make_records(2))
        assert ship(handler, within_s=3) is False
        assert len(handler.pending) == 2
        assert handler.stats.last_error
        assert "S3cretPw" not in handler.stats.last_error
        assert "S3cretPw" not in repr(handler)
        handler.close()
    assert "S3cretPw" not in caplog.text


# -- flightrec migrate ---------------------------------------------------------------------------------------------
def _migrate_cli(*argv: str) -> tuple[int, str, str]:
    import argparse
    import io

    parser = argparse.ArgumentParser()
    configure(parser)
    out, err = io.StringIO(), io.StringIO()
    code = run(parser.parse_args(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_migrate_command_creates_then_reports_up_to_date(pg_db):
    code, out, err = _migrate_cli("--database-url", pg_db, "--table", "audit.logs")
    assert (code, err) == (EXIT_OK, "")
    assert "audit.logs" in out
    assert f"created (schema version {SCHEMA_VERSION})" in out
    assert "partitions created: logs_default, logs_p" in out

    code, out, err = _migrate_cli("--database-url", pg_db, "--table", "audit.logs")
    assert code == EXIT_OK
    assert f"already at schema version {SCHEMA_VERSION}" in out
    assert "partitions created" not in out
    assert record_ids(pg_db, "audit.logs") == []


def test_the_migrate_command_exits_2_on_a_bad_url_and_1_when_the_database_is_unreachable():
    code, out, err = _migrate_cli("--database-url", "postgresql://app:S3cretPw@127.0.0.1/db?bogus=1")
    assert code == EXIT_USAGE
    assert "invalid database URL postgresql://app:***@127.0.0.1/db" in err
    assert "S3cretPw" not in out + err

    code, out, err = _migrate_cli(
        "--database-url", f"postgresql://app:S3cretPw@127.0.0.1:{free_port()}/db", "--connect-timeout", "2"
    )
    assert code == EXIT_DATABASE
    assert "postgresql://app:***@127.0.0.1:" in err
    assert "S3cretPw" not in out + err


def test_the_migrate_command_prints_the_sql_without_connecting():
    code, out, _ = _migrate_cli("--print-sql", "--table", "logs")
    assert code == EXIT_OK
    assert 'CREATE TABLE IF NOT EXISTS "logs" (' in out
    assert out.count(";\n") > 10
