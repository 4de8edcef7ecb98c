"""The logs table filled by the real bootstrap under the emulator: exactly once, through faults.

Every test says which records were logged, which rows arrived, and which were lost (none, unless stated).
"""

from __future__ import annotations

import time

import psycopg

from tests.integration.conftest import REPO, emulator


def _env(dsn: str, **extra: str) -> dict[str, str]:
    return {"LOGS_DATABASE_URL": dsn, "LOGS_AUTO_MIGRATE": "1", **extra}


def _rows(dsn: str, request_id: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('logs')").fetchone()[0] is None:
            return []  # not migrated yet: the first flush may still be connecting
        return conn.execute(
            "SELECT kind, level, message, record_id, status, error_type, cold_start FROM logs "
            "WHERE request_id = %s ORDER BY ts, record_id", (request_id,)).fetchall()


def _count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM logs").fetchone()[0]


def _wait_rows(dsn: str, request_id: str, n: int, timeout_s: float = 10.0) -> list[tuple]:
    deadline = time.monotonic() + timeout_s
    rows = _rows(dsn, request_id)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = _rows(dsn, request_id)
    return rows


def test_each_record_is_one_row_and_the_report_has_its_fields(pg_db):
    # GIVEN logs.handler logging 3 lines (+ warning, exception, print) → 9 records with start/end/report
    with emulator("handlers.logs.handler", REPO, env=_env(pg_db)) as emu:
        first = emu.invoke({"lines": 3})
        second = emu.invoke({"lines": 3})
        # THEN the rows are there as soon as the invocation is over (flushed before /next)
        rows_first = _wait_rows(pg_db, first.request_id, 9)
        rows_second = _wait_rows(pg_db, second.request_id, 9)
    assert len(rows_first) == 9 and len(rows_second) == 9
    assert [r[0] for r in rows_first][:1] == ["start"]
    report = next(r for r in rows_first if r[0] == "report")
    assert report[4] == "success" and report[6] is True
    assert next(r for r in rows_second if r[0] == "report")[6] is False
    assert len({r[3] for r in rows_first + rows_second}) == 18
    assert _count(pg_db) == 18  # nothing else was logged: no init records on a clean start


def test_through_pgbouncer_in_transaction_mode(pg_server, pgbouncer):
    dsn = pg_server.create_database()
    bouncer_dsn = pgbouncer.dsn_for(dsn.rsplit("/", 1)[1])
    with emulator("handlers.logs.handler", REPO, env=_env(bouncer_dsn)) as emu:
        results = [emu.invoke({"lines": 2}) for _ in range(5)]
        for result in results:
            assert len(_wait_rows(dsn, result.request_id, 8)) == 8
    assert _count(dsn) == 5 * 8


def test_backend_terminated_between_invocations_reconnects_without_loss_or_duplicates(pg_server, pg_db):
    """As after a long freeze: the server dropped the connection. Delivered: all 16 rows. Lost: 0."""
    with emulator("handlers.logs.handler", REPO, env=_env(pg_db)) as emu:
        first = emu.invoke({"lines": 2})
        _wait_rows(pg_db, first.request_id, 8)
        killed = pg_server.kill_backends(pg_db.rsplit("/", 1)[1])
        second = emu.invoke({"lines": 2})
        rows = _wait_rows(pg_db, second.request_id, 8)
    assert killed >= 1
    assert len(rows) == 8
    assert _count(pg_db) == 16


def test_postgres_down_the_invocation_succeeds_and_rows_arrive_after_restart(private_pg_server):
    """PostgreSQL stopped for two invocations. Delivered: all 24 rows once it is back. Lost: 0.
    The down sink costs each invocation at most the flush budget and backs off."""
    pg = private_pg_server
    dsn = pg.create_database()
    env = _env(dsn, TELEMETRY_FLUSH_BUDGET_MS="500", TELEMETRY_FLUSH_INTERVAL_MS="200")
    with emulator("handlers.logs.handler", REPO, env=env) as emu:
        before = emu.invoke({"lines": 2})
        _wait_rows(dsn, before.request_id, 8)
        pg.stop()
        during = [emu.invoke({"lines": 2}) for _ in range(2)]
        assert all(r.ok for r in during)
        pg.start()
        after = emu.invoke({"lines": 2})  # the next flush (or the background interval) delivers the backlog
        for result in [*during, after]:
            assert len(_wait_rows(dsn, result.request_id, 8, timeout_s=40)) == 8
    assert _count(dsn) == 32


def test_strict_policy_fails_the_invocation_when_rows_cannot_be_stored(private_pg_server):
    pg = private_pg_server
    dsn = pg.create_database()
    env = _env(dsn, LOGS_POLICY="strict", TELEMETRY_FLUSH_BUDGET_MS="1500")
    with emulator("handlers.echo.handler", REPO, env=env) as emu:
        ok = emu.invoke({"n": 1})
        pg.stop()
        refused = emu.invoke({"n": 2})
        pg.start()
        later = emu.invoke({"n": 3})
        later_rows = _wait_rows(dsn, later.request_id, 3, timeout_s=20)
        refused_rows = _wait_rows(dsn, refused.request_id, 4, timeout_s=20)
    assert ok.ok
    assert refused.json()["errorType"] == "Runtime.LogSinkUnavailable"
    assert emu.posts_for(refused.request_id)[-1].header(
        "Lambda-Runtime-Function-Error-Type") == "Runtime.LogSinkUnavailable"
    assert later.ok and len(later_rows) == 3
    # the refused invocation's records were kept and stored once the database was back (start, end, report, error)
    assert {r[0] for r in refused_rows} >= {"start", "report", "invocation_error"}


def test_a_handler_past_its_deadline_leaves_its_rows_behind(pg_db, task_root):
    """The handler logs, then sleeps past its 2 s timeout; the emulator kills the process at the deadline.
    Delivered: the start record, the line logged before the sleep and the deadline warning. Lost: nothing logged."""
    root = task_root("sleepy", """
        import logging, time
        def handler(event, context):
            logging.getLogger("sleepy").info("working on it")
            time.sleep(30)
    """)
    with emulator("sleepy.handler", root, timeout_s=2.0, env=_env(pg_db)) as emu:
        result = emu.invoke({})
        rows = _wait_rows(pg_db, result.request_id, 3)
    assert "Task timed out" in result.json()["errorMessage"]
    messages = [r[2] for r in rows]
    assert "working on it" in messages
    assert any("about to reach its deadline" in m for m in messages)
