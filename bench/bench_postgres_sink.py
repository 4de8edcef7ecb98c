"""Rows per second through `PostgresHandler` against a plain psycopg binary COPY of the same rows, same run.

Why COPY is the reference: it is the fastest way psycopg can move rows into PostgreSQL, but it cannot skip rows that
are already there, so the sink pays for idempotency with `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`.
This measures what that costs. Both sides start from the same rendered records and extract columns with the same
`column_arrays`; COPY goes into two scratch tables, one bare and one with the logs table's key and indexes (but
no partitioning), so the table's own cost and the statement's cost can be told apart.

A run ships one batch, or for small batches as many as make up 2,000 rows (a single 10-row round trip is too
short to time alone); each figure is the median of the runs' rows per second. Starts a private PostgreSQL
cluster (tests.peers.postgres.PostgresServer: fsync off, loopback, so the figures are CPU and protocol cost, not
disk). Not a test; run it from the repository root:

    .venv/bin/python bench/bench_postgres_sink.py [--runs 5] [--sizes 10,1000,10000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from telemetry.context import LogContext  # noqa: E402
from telemetry.postgres import PostgresHandler, column_arrays  # noqa: E402
from telemetry.records import REPORT, EventFormatter, Rendered  # noqa: E402
from telemetry.schema import COLUMNS, migrate  # noqa: E402
from telemetry.spill import PendingBuffer  # noqa: E402
from tests.peers.postgres import PostgresServer  # noqa: E402

#: A run of small batches ships several, so that it measures at least this many rows.
MIN_ROWS_PER_RUN = 2000
FORMATTER = EventFormatter({"function_name": "bench", "function_version": "1"}, instance_id="bench")


def records(n: int) -> list[Rendered]:
    """`n` records as the runtime renders them: invocations of 10 records, the last of each a report."""
    out: list[Rendered] = []
    ctx = LogContext(request_id="", cold_start=False)
    for i in range(n):
        if i % 10 == 0:
            ctx = LogContext(request_id=str(uuid.uuid4()), cold_start=i == 0, xray_trace_id="Root=1-abc;Sampled=1")
        record = logging.LogRecord("app.orders", logging.INFO, __file__, 1, "order %s processed for %s", (i, "c"), None)
        if i % 10 == 9:
            record.flightrec_kind = REPORT
            record.flightrec_fields = {
                "duration_ms": 12.5, "status": "success", "error_type": None,
                "init_duration_ms": None, "max_memory_used_mb": 64, "records_dropped": 0,
            }  # fmt: skip
        record.flightrec = ctx
        record.flightrec_seq = i % 10
        record.flightrec_span = ("0af7651916cd43dd8448eb211c80319c", f"{i:016x}")
        out.append(FORMATTER.render(record))
    return out


def time_handler(handler: PostgresHandler, batch: list[Rendered]) -> float:
    handler.batch_size = len(batch)
    for record in batch:
        handler.accept(record)
    started = time.perf_counter()
    ok = handler.ship(time.monotonic() + 120)
    elapsed = time.perf_counter() - started
    if not ok or handler.stats.failures:
        raise RuntimeError(f"the handler failed: {handler.stats.last_error}")
    return elapsed


def time_copy(conn: psycopg.Connection[tuple[object, ...]], table: str, batch: list[Rendered]) -> float:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in COLUMNS)
    )
    started = time.perf_counter()
    rows = zip(*column_arrays(batch), strict=True)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types([c.sql_type for c in COLUMNS])
        for row in rows:
            copy.write_row(row)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="10,1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with PostgresServer() as server:
        dsn = server.create_database("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, "logs")
            conn.execute("CREATE TABLE copy_bare (LIKE logs)")
            conn.execute("CREATE TABLE copy_indexed (LIKE logs INCLUDING ALL)")
            version = conn.execute("SHOW server_version").fetchone()
        handler = PostgresHandler(PendingBuffer("bench", max_items=max(sizes) + 1), dsn)
        time_handler(handler, records(10))  # connect and warm up outside the measurements
        results: dict[int, dict[str, list[float]]] = {}
        with psycopg.connect(dsn, autocommit=True) as conn:
            time_copy(conn, "copy_bare", records(10))
            for size in sizes:
                runs: dict[str, list[float]] = {"handler": [], "copy_bare": [], "copy_indexed": []}
                repeats = max(1, MIN_ROWS_PER_RUN // size)  # small batches: many per run, for a stable figure
                for _ in range(args.runs):  # interleaved, so drift hits every column alike
                    # new record ids every run: real inserts, not skipped duplicates
                    batches = [records(size) for _ in range(repeats)]
                    rows = size * repeats
                    runs["handler"].append(rows / sum(time_handler(handler, b) for b in batches))
                    runs["copy_bare"].append(rows / sum(time_copy(conn, "copy_bare", b) for b in batches))
                    runs["copy_indexed"].append(rows / sum(time_copy(conn, "copy_indexed", b) for b in batches))
                results[size] = runs
        handler.close()

    print(f"PostgreSQL {version[0] if version else '?'} (private cluster, fsync off, 127.0.0.1), psycopg "
          f"{psycopg.__version__} ({psycopg.pq.__impl__}); medians of {args.runs} runs, rows/s")  # fmt: skip
    header = (f"{'batch':>7} | {'PostgresHandler':>15} | {'COPY bare':>10} | {'COPY indexed':>12} |"
              f" {'handler/bare':>12} | {'handler/indexed':>15}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for size, runs in results.items():
        med = {name: statistics.median(values) for name, values in runs.items()}
        print(
            f"{size:>7} | {med['handler']:>15,.0f} | {med['copy_bare']:>10,.0f} | {med['copy_indexed']:>12,.0f} |"
            f" {med['handler'] / med['copy_bare']:>12.2f} | {med['handler'] / med['copy_indexed']:>15.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
