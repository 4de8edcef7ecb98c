"""SnapStart end to end: the real bootstrap initialised with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start under the
emulator, which holds `/runtime/restore/next` (the "snapshot") until the test releases it.

Proved here: the hooks' order (ours and AWS's `snapshot_restore_py`'s), that no sink connection (PostgreSQL,
syslog over TCP) is open while the snapshot would be taken, that records still arrive after the restore (the
sinks reconnect), and the failure paths with awslambdaric's error types and exit statuses.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psycopg

from tests.integration.conftest import emulator

RESTORE_NEXT = ("GET", "/2018-06-01/runtime/restore/next")

HOOKS = """
    import logging, os
    import snapshot_restore_py
    from runtime.snapstart import register_after_restore, register_before_snapshot

    log = logging.getLogger("app")

    def note(what):
        with open(os.environ["ORDER_FILE"], "a") as f:
            f.write(what + "\\n")

    @register_before_snapshot
    def close_pool():
        note("before 1")
        log.info("closing the pool before the snapshot")

    register_before_snapshot(note, "before 2")
    snapshot_restore_py.register_before_snapshot(note, "aws before")
    register_after_restore(note, "after 1")

    @register_after_restore
    def reopen():
        note("after 2")
        log.info("restored")

    snapshot_restore_py.register_after_restore(note, what="aws after")

    def handler(event, context):
        note("invoked")
        log.info("invoked")
        return {"ok": True}
"""

FAILING = """
    from runtime.snapstart import register_after_restore, register_before_snapshot

    def boom():
        raise RuntimeError("{where} hook failed")

    register_{where}(boom)

    def handler(event, context):
        return {{"ok": True}}
"""


def _sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def _rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('logs')").fetchone()[0] is None:
            return []
        return conn.execute("SELECT message, request_id, record_id FROM logs WHERE kind = 'log' "
                            "ORDER BY ts, record_id").fetchall()


def _wait(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _backends(dsn: str) -> int:
    """Connections to the test's database other than this probe's own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid()").fetchone()[0]


def _request_id_of(message: dict) -> str | None:
    """The request id in a syslog message's JSON; None for what is not ours (the rsyslog peer is shared, and other
    tests send it deliberately truncated or non-JSON messages)."""
    try:
        record = json.loads(message.get("msg") or "{}")
    except ValueError:
        return None
    return record.get("request_id") if isinstance(record, dict) else None


def test_hooks_run_in_order_and_no_sink_connection_survives_into_the_snapshot(task_root, tmp_path, pg_db, rsyslog):
    # GIVEN a function with before-snapshot and after-restore hooks (ours and snapshot_restore_py's), logging to
    # PostgreSQL and to syslog over TCP, started eagerly with SnapStart and a restore the test holds back
    root = task_root("app", HOOKS)
    order = tmp_path / "order"
    env = {"ORDER_FILE": str(order), "LOGS_DATABASE_URL": pg_db, "LOGS_AUTO_MIGRATE": "1",
           "SYSLOG_URL": f"tcp://127.0.0.1:{rsyslog.tcp_port}"}
    with emulator("app.handler", root, env=env, snapstart=True, hold_restore=True, eager=True) as emu:
        # WHEN the runtime is ready for its snapshot (waiting on /restore/next)
        assert emu.wait_for_call(*RESTORE_NEXT, timeout_s=15)
        pid = emu.runtime_pid
        assert pid is not None

        # THEN the before-snapshot hooks ran, the most recently registered first, and nothing else yet
        assert order.read_text().splitlines() == ["before 2", "before 1", "aws before"]
        # AND what they logged was delivered before the snapshot, to both sinks...
        assert [r[0] for r in _rows(pg_db)] == ["closing the pool before the snapshot"]
        rsyslog.wait_for(1, where=lambda m: "closing the pool" in (m.get("msg") or ""))
        # ...after which no connection is left open but the Runtime API's own, waiting for the restore
        assert _wait(lambda: _backends(pg_db) == 0)
        assert _sockets(pid) == 1

        # WHEN the environment is restored and invoked
        emu.release_restore()
        result = emu.invoke({})
        assert result.ok

        # THEN the after-restore hooks ran in registration order, before the first invocation
        assert order.read_text().splitlines() == [
            "before 2", "before 1", "aws before", "after 1", "after 2", "aws after", "invoked"]
        # AND the sinks reconnected: what was logged after the restore arrives in both
        assert _wait(lambda: len(_rows(pg_db)) == 3)
        rsyslog.wait_for(1, where=lambda m: _request_id_of(m) == result.request_id)
    rows = _rows(pg_db)
    assert [r[0] for r in rows] == ["closing the pool before the snapshot", "restored", "invoked"]
    assert rows[2][1] == result.request_id
    # AND the records outside invocations got distinct ids across the restore (each restored copy re-seeds them)
    assert rows[0][2] != rows[1][2]


def test_a_failing_before_snapshot_hook_is_an_init_error_and_exit_64(task_root):
    root = task_root("app", FAILING.format(where="before_snapshot"))
    with emulator("app.handler", root, snapstart=True) as emu:
        result = emu.invoke({})
        assert _wait(lambda: emu.runtime_pid is None)
        returncode = emu._supervisor.current.proc.returncode  # type: ignore[union-attr]
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "RuntimeError"  # the body names the exception, as awslambdaric's does
    assert result.json()["errorMessage"] == "before_snapshot hook failed"
    (post,) = [p for p in emu.posts if p.kind == "init_error"]
    assert post.header("Lambda-Runtime-Function-Error-Type") == "Runtime.BeforeSnapshotError"
    assert RESTORE_NEXT not in emu.api_calls  # no snapshot of a broken environment
    assert returncode == 64


def test_a_failing_after_restore_hook_goes_to_restore_error_and_exit_65(task_root):
    root = task_root("app", FAILING.format(where="after_restore"))
    with emulator("app.handler", root, snapstart=True) as emu:
        result = emu.invoke({})
        assert _wait(lambda: emu.runtime_pid is None)
        returncode = emu._supervisor.current.proc.returncode  # type: ignore[union-attr]
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "RuntimeError"
    (post,) = [p for p in emu.posts if p.kind == "restore_error"]
    assert post.header("Lambda-Runtime-Function-Error-Type") == "Runtime.AfterRestoreError"
    assert RESTORE_NEXT in emu.api_calls
    assert returncode == 65


def test_without_snapstart_the_runtime_never_calls_restore(task_root):
    root = task_root("app", FAILING.format(where="before_snapshot"))  # hooks registered, but never run
    with emulator("app.handler", root) as emu:
        assert emu.invoke({}).ok
    assert RESTORE_NEXT not in emu.api_calls
