"""Concurrency at the database: 32 runtime processes at once (32 emulators, each running its own REAL bootstrap),
all writing through PgBouncer in transaction mode with a server pool of 4, to one PostgreSQL.

Proves, with the numbers printed (end of the pytest run) and written to `tests/reliability/results/pgbouncer_32.json`:
every row exactly once (rows == distinct record ids == records logged), no invocation failed (a connection queued
or refused by the pool never surfaces to an invocation), nothing dropped, and at most 4 server connections used.

    ./dev slow -k pgbouncer
    PGBOUNCER_INVOCATIONS=100 ./dev slow -k pgbouncer      # per runtime process (default 50)
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import psycopg
import pytest

from runtime.emulator import Emulator
from telemetry.schema import migrate
from tests.reliability.helpers import counts, dropped_counts, wait_for, write_summary

PROCESSES = 32
PER_PROCESS = int(os.environ.get("PGBOUNCER_INVOCATIONS", "50"))
RECORDS_PER_INVOCATION = 5  # start, 2 lines, end, report


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_32_runtime_processes_through_a_pool_of_4_store_every_row_exactly_once(pg_server, pgbouncer, task_root):
    assert pgbouncer.pool_size == 4 and pgbouncer.mode == "transaction"
    dsn = pg_server.create_database()
    dbname = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:  # production migrates first (`flightrec migrate`)
        migrate(conn, "logs")
    bouncer_dsn = pgbouncer.dsn_for(dbname)
    root = task_root("busy", """
        import logging
        log = logging.getLogger("busy")
        def handler(event, context):
            log.info("process %s invocation %s", event["p"], event["i"])
            log.info("second line")
            return "ok"
    """)
    stderr: list[str] = []
    lock = threading.Lock()

    def on_output(stream: str, line: str) -> None:
        if stream == "stderr":
            with lock:
                stderr.append(line)

    # the pool: the most server connections of this database seen at once, sampled while the run goes on
    busiest = [0]
    running = threading.Event()
    running.set()

    def sample_backends() -> None:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            while running.is_set():
                # PgBouncer's server connections carry the runtime's application_name; this test's own do not
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                                 "backend_type = 'client backend' AND application_name = 'flightrec'",
                                 (dbname,)).fetchone()[0]
                busiest[0] = max(busiest[0], int(n))
                time.sleep(0.02)

    results: dict[int, list] = {p: [] for p in range(PROCESSES)}
    errors: list[str] = []

    def drive(p: int, emu: Emulator, go: threading.Barrier) -> None:
        try:
            go.wait(timeout=300)
            for i in range(PER_PROCESS):
                results[p].append(emu.invoke({"p": p, "i": i}, wait_for_report=False))
        except Exception as exc:  # reported below; a thread must not die silently
            errors.append(f"process {p}: {type(exc).__name__}: {exc}")

    env = {"LOGS_DATABASE_URL": bouncer_dsn}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        emulators = [
            stack.enter_context(Emulator(handler="busy.handler", task_root=root, function_name=f"busy-{p}",
                                         env={**env, "LOGS_SPILL_DIR": str(root / f"spill-{p}")}, eager=True,
                                         init_timeout_s=120.0, timeout_s=60.0, on_output=on_output,
                                         platform_sink=lambda line: None))
            for p in range(PROCESSES)
        ]
        sampler = threading.Thread(target=sample_backends, daemon=True)
        sampler.start()
        go = threading.Barrier(PROCESSES)
        drivers = [threading.Thread(target=drive, args=(p, emu, go), daemon=True) for p, emu in enumerate(emulators)]
        for thread in drivers:
            thread.start()
        for thread in drivers:
            thread.join(1800)
        elapsed = time.monotonic() - started
        expected = PROCESSES * PER_PROCESS * RECORDS_PER_INVOCATION
        wait_for(lambda: counts(dsn)[0] >= expected, 300, interval_s=0.5)
        time.sleep(2.0)  # a duplicate or a late row would show up now
        rows, distinct = counts(dsn)
        running.clear()
        sampler.join(5)
        generations = [emu.generation for emu in emulators]
        per_function = dict(pg_server.execute(
            "SELECT function_name, count(*) FROM logs GROUP BY function_name", dbname=dbname))
        dropped_in_reports = pg_server.execute(
            "SELECT coalesce(sum((record->>'records_dropped')::int), 0) FROM logs WHERE kind = 'report'",
            dbname=dbname)[0][0]
    invocations = sum(len(r) for r in results.values())
    failed = [r.body[:200].decode("utf-8", "replace") for rs in results.values() for r in rs if not r.ok]
    summary = {
        "runtime_processes": PROCESSES,
        "invocations_per_process": PER_PROCESS,
        "invocations": invocations,
        "failed_invocations": len(failed),
        "driver_errors": errors,
        "seconds": round(elapsed, 1),
        "pgbouncer_pool_size": pgbouncer.pool_size,
        "pgbouncer_mode": pgbouncer.mode,
        "max_server_connections_seen": busiest[0],
        "records_logged": expected,
        "postgres_rows": rows,
        "postgres_distinct_record_ids": distinct,
        "rows_per_process_min": min(per_function.values(), default=0),
        "rows_per_process_max": max(per_function.values(), default=0),
        "records_dropped_in_reports": int(dropped_in_reports),
        "records_dropped_on_stderr": sum(dropped_counts(stderr, "postgres")),
        "runtime_restarts": sum(g - 1 for g in generations),
        "stderr_lines": stderr[:20],
    }
    write_summary("pgbouncer_32", summary)
    numbers = json.dumps(summary)
    assert errors == [] and invocations == PROCESSES * PER_PROCESS, numbers
    assert failed == [], f"{len(failed)} invocations failed, first: {failed[:3]}; {numbers}"
    assert (rows, distinct) == (expected, expected), f"rows != records logged; {numbers}"
    assert len(per_function) == PROCESSES and set(per_function.values()) == {PER_PROCESS * RECORDS_PER_INVOCATION}
    assert summary["records_dropped_in_reports"] == 0 and summary["records_dropped_on_stderr"] == 0, numbers
    assert summary["runtime_restarts"] == 0, numbers
    assert 0 < busiest[0] <= pgbouncer.pool_size, f"server connections beyond the pool; {numbers}"
