"""The dashboards' SQL, the audit CLI, the report page and the table's audit rules, against a real PostgreSQL
filled by the real runtime.

How the data gets there: the real `bootstrap` runs under the emulator with `LOGS_DATABASE_URL` and
`LOGS_AUTO_MIGRATE=1`, and the test invokes a handler that sleeps a given number of milliseconds and fails in
known ways (two exception classes, `sys.exit()`, an event that is not JSON), for two functions, with cold starts
the test causes (the first invocation of each runtime process, and the one after `sys.exit()`). Every expected
number is computed here from what the test caused: counts, statuses, error types and cold starts from the plan;
durations and timestamps from the report records the pipeline wrote (time is not under the test's control), with
percentiles computed the way PostgreSQL's `percentile_cont` does and buckets the way Grafana's `$__timeGroup`
does. Each panel's SQL is taken from the dashboard JSON and expanded by tests/grafana_macros.py, as Grafana would.

Also here: EXPLAIN plans on a million generated rows (index and partition use, asserted on plan nodes, never on
timings); the writer and reader roles proven by attempts that must fail; retention dropping whole partitions;
`flightrec logs` (filters, formats, follow, exit codes) and `flightrec report` (numbers read back out of the page).
"""

from __future__ import annotations

import contextlib
import html.parser
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg import sql as pgsql

from runtime.cli import main as flightrec
from runtime.emulator import Emulator
from telemetry import audit
from telemetry.report import PLOT_H
from telemetry.retention import list_partitions, maintain
from telemetry.schema import INDEXES, migrate
from tests.grafana_macros import MultiVariable, TextVariable, expand
from tests.peers import PostgresServer

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((REPO / "dashboards" / "flightrec-overview.json").read_text())
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HANDLER = """
import logging
import sys
import time

log = logging.getLogger("dash")


class PaymentDeclined(Exception):
    pass


class InventoryMissing(Exception):
    pass


def handler(event, context):
    log.info("step %s of %s", event["step"], event["function"])
    time.sleep(event["ms"] / 1000)
    fail = event.get("fail")
    if fail == "declined":
        raise PaymentDeclined("card declined")
    if fail == "missing":
        raise InventoryMissing("sku gone")
    if fail == "exit":
        sys.exit(3)
    return {"ok": True}
"""

#: (sleep ms, failure) per invocation, per function, in order. "bad-json" sends an event that is not JSON.
PLAN: dict[str, list[tuple[int, str | None]]] = {
    "checkout": [(5, None), (15, None), (25, "declined"), (35, None), (45, None), (55, "declined"), (65, "exit"),
                 (75, None), (0, "bad-json"), (85, None), (120, "missing")],
    "inventory": [(10, None), (20, "missing"), (200, None), (30, None), (40, None)],
}  # fmt: skip
ERROR_TYPES = {"declined": "PaymentDeclined", "missing": "InventoryMissing", "exit": "Runtime.ExitError",
               "bad-json": "Runtime.UnmarshalError"}  # fmt: skip


@dataclass(frozen=True)
class Caused:
    """One invocation as the test caused it."""

    request_id: str
    function: str
    sleep_ms: int
    failure: str | None
    cold: bool

    @property
    def status(self) -> str:
        return "error" if self.failure else "success"

    @property
    def error_type(self) -> str | None:
        return ERROR_TYPES[self.failure] if self.failure else None

    @property
    def kinds(self) -> list[str]:
        """The records the runtime must have written for it, in order."""
        if self.failure == "bad-json":
            return ["start", "invocation_error", "end", "report"]
        if self.failure:
            return ["start", "log", "invocation_error", "end", "report"]
        return ["start", "log", "end", "report"]


@dataclass(frozen=True)
class Recorded:
    """The report record the pipeline wrote for an invocation."""

    ts: datetime
    duration_ms: float
    status: str
    error_type: str | None
    cold_start: bool
    init_duration_ms: float | None
    max_memory_used_mb: int | None


@dataclass(frozen=True)
class Filled:
    dsn: str
    caused: list[Caused]
    recorded: dict[str, Recorded]
    start: datetime
    end: datetime

    def invocations(self, functions: Sequence[str]) -> list[tuple[Caused, Recorded]]:
        return [(c, self.recorded[c.request_id]) for c in self.caused if c.function in functions]


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    """Poll until `condition()` is truthy (liveness bound only; returns its value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def count_reports(dsn: str, request_ids: Sequence[str]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM logs WHERE kind = 'report' AND request_id = ANY(%s)", [list(request_ids)]
        ).fetchone()
        return int(row[0]) if row else 0


def run_plan(emu: Emulator, function: str, plan: Sequence[tuple[int, str | None]]) -> list[Caused]:
    caused = []
    cold = True
    for step, (ms, failure) in enumerate(plan):
        event: Any = b"{not json" if failure == "bad-json" else {"step": step, "function": function, "ms": ms}
        if failure not in (None, "bad-json"):
            event["fail"] = failure
        result = emu.invoke(event)
        assert result.request_id
        assert (result.function_error is not None) == (failure is not None), result.body[:300]
        caused.append(Caused(result.request_id, function, ms, failure, cold))
        cold = failure == "exit"  # the runtime exited: the next invocation starts a new process
    return caused


def pipeline_env(dsn: str, **extra: str) -> dict[str, str]:
    return {"LOGS_DATABASE_URL": dsn, "LOGS_AUTO_MIGRATE": "1", "LOGS_STDOUT": "0", **extra}


@pytest.fixture(scope="module")
def filled(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    """A database filled by the real runtime pipeline with PLAN's invocations (module-wide: ~5 s to make)."""
    if not pg_server.running:
        pg_server.start()
    dsn = pg_server.create_database()
    root = tmp_path_factory.mktemp("dash-task")
    (root / "dash_handler.py").write_text(HANDLER)
    start = datetime.now(UTC) - timedelta(seconds=1)
    caused: list[Caused] = []
    for function, plan in PLAN.items():
        with Emulator(handler="dash_handler.handler", task_root=root, function_name=function, timeout_s=5.0,
                      env=pipeline_env(dsn), capture_output=True, platform_sink=lambda line: None) as emu:  # fmt: skip
            caused += run_plan(emu, function, plan)
    ids = [c.request_id for c in caused]
    wait_for(lambda: count_reports(dsn, ids) == len(ids), 30, "every report record in PostgreSQL")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT request_id, ts, duration_ms, status, error_type, cold_start, init_duration_ms, max_memory_used_mb"
            " FROM logs WHERE kind = 'report'"
        ).fetchall()
    recorded = {row[0]: Recorded(*row[1:]) for row in rows}
    yield Filled(dsn, caused, recorded, start, datetime.now(UTC) + timedelta(seconds=1))
    if pg_server.running:
        pg_server.drop_database(dsn.rsplit("/", 1)[1])


# -- independent computations --------------------------------------------------------------------------------------
def percentile_cont(values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: sort, then interpolate linearly between the rows at floor/ceil of f*(n-1)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    if high == low:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bucket(ts: datetime, seconds: int) -> int:
    """Grafana's `$__timeGroup(ts, interval)` for PostgreSQL, `floor(epoch / s) * s`, in exact integer arithmetic."""
    micros = (ts - EPOCH) // timedelta(microseconds=1)
    return (micros // (seconds * 1_000_000)) * seconds


def by_bucket(pairs: list[tuple[Caused, Recorded]], seconds: int) -> dict[int, list[tuple[Caused, Recorded]]]:
    groups: dict[int, list[tuple[Caused, Recorded]]] = {}
    for caused, recorded in pairs:
        groups.setdefault(bucket(recorded.ts, seconds), []).append((caused, recorded))
    return dict(sorted(groups.items()))


def rate(part: int, whole: int) -> float:
    return 100 * part / whole


# -- running panels ----------------------------------------------------------------------------------------------
def panel(title: str) -> dict[str, Any]:
    [found] = [p for p in DASHBOARD["panels"] if p["title"] == title]
    return found


def function_options(conn: psycopg.Connection[Any], filled: Filled) -> list[str]:
    """The `function` variable's options: its own query, expanded for the time range."""
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "function"]
    sql = expand(variable["query"], time_from=filled.start, time_to=filled.end)
    return [row[0] for row in conn.execute(sql).fetchall()]


def run_panel(
    conn: psycopg.Connection[Any],
    filled: Filled,
    title: str,
    *,
    functions: Sequence[str],
    interval: str = "1h",
    request_id: str = "",
) -> list[tuple[Any, ...]]:
    target = panel(title)["targets"][0]
    sql = expand(
        target["rawSql"],
        time_from=filled.start,
        time_to=filled.end,
        interval=interval,
        variables={"function": MultiVariable(functions), "request_id": TextVariable(request_id)},
    )
    return conn.execute(sql).fetchall()


ALL = ("checkout", "inventory")
SELECTIONS = [ALL, ("checkout",), ("inventory",)]


@pytest.fixture
def conn(filled: Filled) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(filled.dsn, autocommit=True) as connection:
        yield connection


# -- the pipeline wrote what the test caused ------------------------------------------------------------------------
def test_the_pipeline_recorded_what_the_test_caused(filled: Filled, conn: psycopg.Connection[Any]) -> None:
    assert len(filled.recorded) == len(filled.caused) == sum(map(len, PLAN.values()))
    for caused in filled.caused:
        recorded = filled.recorded[caused.request_id]
        assert (recorded.status, recorded.error_type) == (caused.status, caused.error_type), caused
        assert recorded.cold_start == caused.cold, caused
        assert (recorded.init_duration_ms is not None) == caused.cold, caused
        assert recorded.duration_ms >= caused.sleep_ms  # time.sleep sleeps at least that long
        kinds = [row[0] for row in conn.execute(
            "SELECT kind FROM logs WHERE request_id = %s ORDER BY ts, length(record_id), record_id",
            [caused.request_id],
        )]  # fmt: skip
        assert kinds == caused.kinds, caused
    assert sum(c.cold for c in filled.caused) == 3  # two processes for checkout (sys.exit), one for inventory


def test_the_function_variable_lists_the_functions(filled: Filled, conn: psycopg.Connection[Any]) -> None:
    assert function_options(conn, filled) == sorted(PLAN)


# -- each panel returns exactly the expected numbers ------------------------------------------------------------------
@pytest.mark.parametrize("functions", SELECTIONS, ids="+".join)
def test_stat_panels(filled: Filled, conn: psycopg.Connection[Any], functions: tuple[str, ...]) -> None:
    pairs = filled.invocations(functions)
    n = len(pairs)
    errors_ = sum(c.failure is not None for c, _ in pairs)
    cold = sum(c.cold for c, _ in pairs)
    durations = [r.duration_ms for _, r in pairs]
    assert run_panel(conn, filled, "Invocations", functions=functions) == [(n,)]
    assert run_panel(conn, filled, "Error rate", functions=functions) == [(rate(errors_, n),)]
    assert run_panel(conn, filled, "Latency p95", functions=functions) == [(percentile_cont(durations, 0.95),)]
    assert run_panel(conn, filled, "Cold starts", functions=functions) == [(rate(cold, n),)]


@pytest.mark.parametrize("interval", ["1s", "1h"])
@pytest.mark.parametrize("functions", SELECTIONS, ids="+".join)
def test_invocations_and_error_rate_over_time(
    filled: Filled, conn: psycopg.Connection[Any], functions: tuple[str, ...], interval: str
) -> None:
    seconds = 1 if interval == "1s" else 3600
    groups = by_bucket(filled.invocations(functions), seconds)
    expected_counts = [
        (t, sum(c.failure is None for c, _ in g), sum(c.failure is not None for c, _ in g)) for t, g in groups.items()
    ]
    rows = run_panel(conn, filled, "Invocations over time", functions=functions, interval=interval)
    assert [(int(t), s, e) for t, s, e in rows] == expected_counts
    assert all(isinstance(t, Decimal) for t, *_ in rows)  # epoch seconds: Grafana reads a numeric time column
    expected_rates = [(t, rate(sum(c.failure is not None for c, _ in g), len(g))) for t, g in groups.items()]
    rows = run_panel(conn, filled, "Error rate %", functions=functions, interval=interval)
    assert [(int(t), r) for t, r in rows] == expected_rates
    if interval == "1s" and functions == ALL:
        assert len(rows) > 1  # the per-second check really spans several buckets (three cold starts alone do)


@pytest.mark.parametrize("functions", SELECTIONS, ids="+".join)
def test_errors_by_type(filled: Filled, conn: psycopg.Connection[Any], functions: tuple[str, ...]) -> None:
    counts = Counter(c.error_type for c, _ in filled.invocations(functions) if c.error_type)
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    assert run_panel(conn, filled, "Errors by type", functions=functions) == expected
    if functions == ALL:
        assert expected == [("InventoryMissing", 2), ("PaymentDeclined", 2), ("Runtime.ExitError", 1),
                            ("Runtime.UnmarshalError", 1)]  # fmt: skip


@pytest.mark.parametrize("interval", ["1s", "1h"])
@pytest.mark.parametrize("functions", SELECTIONS, ids="+".join)
def test_latency_percentiles(
    filled: Filled, conn: psycopg.Connection[Any], functions: tuple[str, ...], interval: str
) -> None:
    seconds = 1 if interval == "1s" else 3600
    expected = [
        (t, *(percentile_cont([r.duration_ms for _, r in g], f) for f in (0.5, 0.95, 0.99)))
        for t, g in by_bucket(filled.invocations(functions), seconds).items()
    ]
    rows = run_panel(conn, filled, "Latency p50 / p95 / p99", functions=functions, interval=interval)
    assert [(int(t), p50, p95, p99) for t, p50, p95, p99 in rows] == expected  # exact: same float operations


@pytest.mark.parametrize("interval", ["1s", "1h"])
@pytest.mark.parametrize("functions", SELECTIONS, ids="+".join)
def test_cold_start_rate_and_init_duration(
    filled: Filled, conn: psycopg.Connection[Any], functions: tuple[str, ...], interval: str
) -> None:
    seconds = 1 if interval == "1s" else 3600
    groups = by_bucket(filled.invocations(functions), seconds)
    expected_rate = [(t, rate(sum(c.cold for c, _ in g), len(g))) for t, g in groups.items()]
    rows = run_panel(conn, filled, "Cold-start rate %", functions=functions, interval=interval)
    assert [(int(t), r) for t, r in rows] == expected_rate
    cold_groups = by_bucket([(c, r) for c, r in filled.invocations(functions) if c.cold], seconds)
    rows = run_panel(conn, filled, "Init duration of cold starts", functions=functions, interval=interval)
    assert [int(t) for t, _, _ in rows] == list(cold_groups)
    for (_, avg, peak), group in zip(rows, cold_groups.values(), strict=True):
        inits = [r.init_duration_ms for _, r in group]
        assert peak == max(inits)
        # avg() adds in whatever order rows arrive; float addition is not associative, so not bit-exact.
        assert math.isclose(avg, math.fsum(inits) / len(inits), rel_tol=1e-12)


@pytest.mark.parametrize("functions", SELECTIONS, ids="+".join)
def test_slowest_invocations(filled: Filled, conn: psycopg.Connection[Any], functions: tuple[str, ...]) -> None:
    pairs = sorted(filled.invocations(functions), key=lambda p: (-p[1].duration_ms, p[1].ts, p[0].request_id))[:20]
    expected = [
        (r.ts, c.function, c.request_id, r.duration_ms, c.status, c.error_type, c.cold, r.init_duration_ms,
         r.max_memory_used_mb)
        for c, r in pairs
    ]  # fmt: skip
    assert run_panel(conn, filled, "Slowest invocations", functions=functions) == expected
    if "inventory" in functions:  # slept 200 ms, far longer than any other; the bound is by construction
        assert expected[0][2] == next(c.request_id for c in filled.caused if c.sleep_ms == 200)


LOG_VIEW = "Log records (filtered by function and request id)"


def test_log_view_of_one_request(filled: Filled, conn: psycopg.Connection[Any]) -> None:
    for caused in filled.caused:
        rows = run_panel(conn, filled, LOG_VIEW, functions=ALL, request_id=caused.request_id)
        assert [row[2] for row in rows] == caused.kinds
        assert {row[4] for row in rows} == {caused.request_id} and {row[3] for row in rows} == {caused.function}
        sequence = [int(row[8].rsplit("/", 1)[1]) for row in rows]
        assert sequence == sorted(sequence)
        report = rows[-1]
        assert report[7] == filled.recorded[caused.request_id].duration_ms
        assert report[6] == caused.error_type
    # The other function's filter hides the request, a quote in the box cannot break out of the literal.
    other = filled.caused[0]
    assert run_panel(conn, filled, LOG_VIEW, functions=("inventory",), request_id=other.request_id) == []
    assert run_panel(conn, filled, LOG_VIEW, functions=ALL, request_id="x' OR 'a' = 'a") == []


@pytest.mark.parametrize("functions", SELECTIONS, ids="+".join)
def test_log_view_by_function(filled: Filled, conn: psycopg.Connection[Any], functions: tuple[str, ...]) -> None:
    rows = run_panel(conn, filled, LOG_VIEW, functions=functions)
    wanted = [c for c in filled.caused if c.function in functions]
    with_request = [row for row in rows if row[4] is not None]
    assert {row[4] for row in with_request} == {c.request_id for c in wanted}
    assert len(with_request) == sum(len(c.kinds) for c in wanted)
    assert {row[3] for row in rows} == set(functions)
    times = [row[0] for row in rows]
    assert times == sorted(times)


# -- EXPLAIN on a million rows ---------------------------------------------------------------------------------------
MILLION = 1_000_000
FUNCTIONS = [f"fn-{i}" for i in range(7)]
SPAN_DAYS = 90


@pytest.fixture(scope="module")
def big(pg_server: PostgresServer) -> Iterator[str]:
    """A migrated logs table with a million generated rows over 90 days, in monthly partitions, analyzed.

    Rows come in invocations of five (start, log, log, end, report) sharing a request id, over seven functions.
    """
    if not pg_server.running:
        pg_server.start()
    dsn = pg_server.create_database()
    now = datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, "logs")
        maintain(conn, "logs", now=now - timedelta(days=SPAN_DAYS + 5), ahead=5)
        # Bulk-load without the secondary indexes (building them afterwards is several times faster than keeping
        # them up to date row by row); the second migration below re-creates them exactly as it defines them.
        for suffix, _, _ in INDEXES:
            conn.execute(pgsql.SQL("DROP INDEX {}").format(pgsql.Identifier(f"logs_{suffix}")))
        conn.execute(
            """
            INSERT INTO logs (ts, record_id, kind, level, logger, message, request_id, function_name, cold_start,
                              duration_ms, status, error_type, init_duration_ms, max_memory_used_mb, record)
            SELECT ts, rid || '/' || (g %% 5), (ARRAY['start', 'log', 'log', 'end', 'report'])[g %% 5 + 1],
                   CASE WHEN g %% 97 = 0 THEN 'ERROR' ELSE 'INFO' END, 'app', 'message ' || g, rid,
                   'fn-' || (g / 5 %% 7), g / 5 %% 50 = 0,
                   CASE WHEN g %% 5 = 4 THEN (g %% 997) / 10.0 END,
                   CASE WHEN g %% 5 = 4 THEN CASE WHEN g %% 41 = 4 THEN 'error' ELSE 'success' END END,
                   CASE WHEN g %% 5 = 4 AND g %% 41 = 4 THEN 'ValueError' END,
                   NULL, 64, '{}'::jsonb
            FROM (SELECT g, %(now)s - (%(n)s - g) * (%(span)s / %(n)s::float8) * interval '1 second' AS ts,
                         md5((g / 5)::text) AS rid
                  FROM generate_series(0, %(n)s - 1) AS g) AS s
            """,
            {"now": now, "span": SPAN_DAYS * 86400, "n": MILLION},
        )
        conn.execute("SET maintenance_work_mem = '256MB'")  # this session only: faster index builds
        migrate(conn, "logs")
        conn.execute("ANALYZE logs")
    yield dsn
    if pg_server.running:
        pg_server.drop_database(dsn.rsplit("/", 1)[1])


def plan_of(conn: psycopg.Connection[Any], sql: Any, params: Any = None) -> dict[str, Any]:
    statement = pgsql.SQL("EXPLAIN (FORMAT JSON) ") + (sql if isinstance(sql, pgsql.Composable) else pgsql.SQL(sql))
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scans(plan: dict[str, Any]) -> dict[str, tuple[str, set[str]]]:
    """relation -> (its scan node type, the indexes used for it)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for node in nodes(plan):
        if "Relation Name" in node:
            used = {node["Index Name"]} if "Index Name" in node else set()
            used |= {n["Index Name"] for n in nodes(node) if n["Node Type"] == "Bitmap Index Scan"}
            found[node["Relation Name"]] = (node["Node Type"], used)
    return found


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, float]:
    rows = conn.execute(
        "SELECT c.relname::text, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'logs'::regclass"
    ).fetchall()
    return dict(rows)


def parent_indexes(conn: psycopg.Connection[Any], children: set[str]) -> set[str]:
    """The table's indexes (as `flightrec migrate` named them) that these partition indexes belong to."""
    rows = conn.execute(
        "SELECT p.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent WHERE c.relname = ANY(%s)",
        [sorted(children)],
    ).fetchall()
    return {row[0] for row in rows}


def assert_indexed(plan: dict[str, Any], conn: psycopg.Connection[Any], index: str | None = None) -> None:
    """Every partition with rows is read through an index (the table's index `index`, if given); only empty ones
    may be seq-scanned (for an empty table that is the cheapest plan, and it reads nothing)."""
    populated = {name for name, tuples in row_counts(conn).items() if tuples > 0}
    found = scans(plan)
    assert found, plan
    for relation, (node_type, used) in found.items():
        if relation not in populated:
            continue
        assert node_type in {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, (relation, node_type)
        assert used, (relation, node_type)
        if index is not None:
            assert parent_indexes(conn, used) == {index}, (relation, used)


def test_the_big_table_is_realistic(big: str) -> None:
    with psycopg.connect(big, autocommit=True) as conn:
        counts = row_counts(conn)
        assert sum(counts.values()) == pytest.approx(MILLION, rel=0.01)
        assert sum(1 for n in counts.values() if n > 0) >= 3  # 90 days: three or four monthly partitions hold rows
        index_names = {
            row[0] for row in conn.execute("SELECT indexname::text FROM pg_indexes WHERE tablename = 'logs'")
        }
        assert index_names == {"logs_pkey"} | {f"logs_{suffix}" for suffix, _, _ in INDEXES}
        assert counts["logs_default"] == 0


def test_request_id_lookup_uses_the_request_id_index_in_every_partition(big: str) -> None:
    with psycopg.connect(big, autocommit=True) as conn:
        request_id = conn.execute("SELECT md5('123456')").fetchone()[0]  # type: ignore[index]
        # The audit CLI's query for one request id, with no time bound: every partition, each through its index.
        statement, params = audit.build_query(pgsql.Identifier("logs"), audit.AuditQuery(request_id=request_id))
        plan = plan_of(conn, statement, params)
        assert_indexed(plan, conn, "logs_request_id_ts_idx")
        rows = conn.execute(statement, params).fetchall()
        assert [r[2] for r in rows] == ["start", "log", "log", "end", "report"]


def six_hours(conn: psycopg.Connection[Any]) -> tuple[datetime, datetime, set[str]]:
    """The dashboards' default range (the last 6 h) and the partitions that overlap it."""
    row = conn.execute("SELECT max(ts) FROM logs").fetchone()
    assert row is not None
    end = row[0]
    start = end - timedelta(hours=6)
    overlapping = {
        p.name
        for p in list_partitions(conn, "logs")
        if not p.default and p.lower is not None and p.upper is not None and p.lower <= end and p.upper > start
    }
    return start, end, overlapping


def test_log_view_for_a_request_id_prunes_partitions_and_uses_the_index(big: str) -> None:
    with psycopg.connect(big, autocommit=True) as conn:
        start, end, overlapping = six_hours(conn)
        request_id = conn.execute("SELECT request_id FROM logs WHERE ts > %s LIMIT 1", [end - timedelta(hours=1)]
                                  ).fetchone()[0]  # type: ignore[index]  # fmt: skip
        sql = expand(
            panel(LOG_VIEW)["targets"][0]["rawSql"], time_from=start, time_to=end,
            variables={"function": MultiVariable(FUNCTIONS), "request_id": TextVariable(request_id)},
        )  # fmt: skip
        plan = plan_of(conn, sql)
        assert set(scans(plan)) == overlapping  # the default partition and the other months are pruned
        assert_indexed(plan, conn, "logs_request_id_ts_idx")
        assert len(conn.execute(sql).fetchall()) == 5


@pytest.mark.parametrize("title", ["Latency p50 / p95 / p99", "Error rate %", "Invocations", "Slowest invocations"])
def test_time_bounded_report_panels_prune_partitions_and_use_an_index(big: str, title: str) -> None:
    with psycopg.connect(big, autocommit=True) as conn:
        start, end, overlapping = six_hours(conn)
        sql = expand(
            panel(title)["targets"][0]["rawSql"], time_from=start, time_to=end, interval="1m",
            variables={"function": MultiVariable(FUNCTIONS)},
        )  # fmt: skip
        plan = plan_of(conn, sql)
        assert set(scans(plan)) == overlapping
        assert_indexed(plan, conn)
        assert conn.execute(sql).fetchall()


def test_the_report_commands_queries_prune_partitions_and_use_an_index(big: str) -> None:
    from telemetry import report

    with psycopg.connect(big, autocommit=True) as conn:
        start, end, overlapping = six_hours(conn)
        params = {"since": start, "until": end, "functions": ["fn-3"], "bucket": 600}
        for template in (
            "SELECT count(*), {percentiles} FROM {table} WHERE {where}",
            "SELECT ts, duration_ms FROM {table} WHERE {where} ORDER BY duration_ms DESC LIMIT {limit}",
        ):
            plan = plan_of(conn, report._sql(template, pgsql.Identifier("logs"), ["fn-3"]), params)
            assert set(scans(plan)) == overlapping
            assert_indexed(plan, conn, "logs_report_fn_ts_idx")


# -- roles: the audit trail is append-only -----------------------------------------------------------------------------
@contextlib.contextmanager
def login_role(pg_server: PostgresServer, granted: str) -> Iterator[str]:
    name = f"t_{granted.rsplit('_', maxsplit=1)[-1]}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(name)))
        admin.execute(pgsql.SQL("GRANT {} TO {}").format(pgsql.Identifier(granted),
                                                                pgsql.Identifier(name)))  # fmt: skip
    try:
        yield name
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
            admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(name)))


def as_role(dsn: str, role: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://{role}@")


def must_fail(conn: psycopg.Connection[Any], statement: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        conn.execute(statement)


def test_writer_can_only_insert_and_reader_can_only_select(
    pg_server: PostgresServer, pg_db: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_db, autocommit=True) as admin:
        migrate(admin, "logs")  # as `flightrec migrate` does, with DDL rights the runtime never gets
    partition = f"logs_p{datetime.now(UTC):%Y%m}"  # this month's, created by the migration
    (tmp_path / "dash_handler.py").write_text(HANDLER)
    with login_role(pg_server, "flightrec_writer") as writer, login_role(pg_server, "flightrec_reader") as reader:
        # The real runtime, connected as the writer (no auto-migration: the writer may not do DDL), stores rows.
        env = {"LOGS_DATABASE_URL": as_role(pg_db, writer), "LOGS_STDOUT": "0"}
        with Emulator(handler="dash_handler.handler", task_root=tmp_path, function_name="writer-fn", env=env,
                      capture_output=True, platform_sink=lambda line: None) as emu:  # fmt: skip
            result = emu.invoke({"step": 0, "function": "writer-fn", "ms": 1})
        wait_for(lambda: count_reports(pg_db, [result.request_id or ""]) == 1, 30, "the writer's rows")

        with psycopg.connect(as_role(pg_db, writer), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO logs (ts, record_id, kind, record) VALUES (now(), %s, 'log', '{}')", [uuid.uuid4().hex]
            )
            for statement in ("SELECT count(*) FROM logs", "UPDATE logs SET message = 'forged'", "DELETE FROM logs",
                              "TRUNCATE logs", f"DELETE FROM {partition}", f"UPDATE {partition} SET message = 'x'",
                              f"SELECT * FROM {partition}"):  # fmt: skip
                must_fail(conn, statement, errors.InsufficientPrivilege)
            must_fail(conn, f"DROP TABLE {partition}", errors.InsufficientPrivilege)  # must be owner
            must_fail(conn, "ALTER TABLE logs DETACH PARTITION " + partition, errors.InsufficientPrivilege)

        with psycopg.connect(as_role(pg_db, reader), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] >= 5  # type: ignore[index]
            for statement in ("INSERT INTO logs (ts, record_id, record) VALUES (now(), 'r', '{}')",
                              "UPDATE logs SET message = 'forged'", "DELETE FROM logs", "TRUNCATE logs",
                              f"DELETE FROM {partition}", f"DROP TABLE {partition}"):  # fmt: skip
                must_fail(conn, statement, errors.InsufficientPrivilege)

        # The commands enforce nothing themselves: the database does. The reader audits; only the owner maintains.
        assert flightrec(["logs", result.request_id or "", "--database-url", as_role(pg_db, reader)]) == 0
        assert flightrec(["logs", result.request_id or "", "--database-url", as_role(pg_db, writer)]) == 1
        assert flightrec(["partitions", "--now", "2020-01-01", "--keep-days", "1",
                          "--database-url", as_role(pg_db, reader)]) == 1  # fmt: skip

    with psycopg.connect(pg_db, autocommit=True) as admin:  # nothing was changed by the attempts
        assert admin.execute("SELECT count(*) FROM logs WHERE message = 'forged'").fetchone()[0] == 0  # type: ignore[index]


# -- retention ---------------------------------------------------------------------------------------------------------
def insert_at(conn: psycopg.Connection[Any], *moments: str) -> None:
    for moment in moments:
        conn.execute(
            "INSERT INTO logs (ts, record_id, kind, message, record) VALUES (%s, %s, 'log', %s, '{}')",
            [moment, f"old/{moment}", moment],
        )


def test_retention_drops_whole_expired_partitions_and_nothing_else(pg_db: str, tmp_path: Path, capsys: Any) -> None:
    # Today's rows, written by the real pipeline (its auto-migration creates this month's partition).
    (tmp_path / "dash_handler.py").write_text(HANDLER)
    with Emulator(handler="dash_handler.handler", task_root=tmp_path, function_name="recent", env=pipeline_env(pg_db),
                  capture_output=True, platform_sink=lambda line: None) as emu:  # fmt: skip
        recent = emu.invoke({"step": 0, "function": "recent", "ms": 1}).request_id or ""
    wait_for(lambda: count_reports(pg_db, [recent]) == 1, 30, "the pipeline's rows")
    db = ["--database-url", pg_db]

    # Partitions for January to April 2025, planned "in January".
    assert flightrec(["partitions", "--now", "2025-01-10", "--ahead", "3", *db]) == 0
    with psycopg.connect(pg_db, autocommit=True) as conn:
        insert_at(conn, "2025-01-05T00:00:00Z", "2025-02-10T00:00:00Z", "2025-03-20T00:00:00Z",
                  "2025-04-02T00:00:00Z",
                  "2024-11-15T00:00:00Z",   # no partition yet: lands in the default partition
                  "2025-07-01T00:00:00Z")  # beyond the horizon of the run below: stays in default  # fmt: skip
        before = {p.name for p in list_partitions(conn, "logs")}
    assert {"logs_p202501", "logs_p202502", "logs_p202503", "logs_p202504", "logs_default"} <= before

    capsys.readouterr()
    # A dry run says what it would do and changes nothing.
    assert flightrec(["partitions", "--now", "2025-04-10", "--ahead", "0", "--keep-days", "45", "--dry-run", *db]) == 0
    dry = capsys.readouterr().out
    assert "would create logs_p202411" in dry and "would drop logs_p202411" in dry and "would drop logs_p202501" in dry
    with psycopg.connect(pg_db, autocommit=True) as conn:
        assert {p.name for p in list_partitions(conn, "logs")} == before

    # Keep 45 days as of 2025-04-10: the cut-off is 2025-02-24. January's partition ends 02-01: dropped whole.
    # February's ends 03-01: kept whole, although its 02-10 row is older than 45 days (whole partitions only).
    # The November 2024 row in the default partition gets a partition of its own first, and expires with it.
    assert flightrec(["partitions", "--now", "2025-04-10", "--ahead", "0", "--keep-days", "45", *db]) == 0
    out = capsys.readouterr().out
    assert "create logs_p202411 (takes over its month's rows from the default partition)" in out
    assert "drop logs_p202411" in out and "drop logs_p202501" in out and "drop logs_p202502" not in out
    with psycopg.connect(pg_db, autocommit=True) as conn:
        after = {p.name for p in list_partitions(conn, "logs")}
        assert after == before - {"logs_p202501"}
        left = [row[0] for row in conn.execute("SELECT message FROM logs WHERE record_id LIKE 'old/%' ORDER BY ts")]
        assert left == ["2025-02-10T00:00:00Z", "2025-03-20T00:00:00Z", "2025-04-02T00:00:00Z", "2025-07-01T00:00:00Z"]
        in_default = conn.execute("SELECT message FROM logs_default").fetchall()
        assert in_default == [("2025-07-01T00:00:00Z",)]
        assert conn.execute("SELECT count(*) FROM logs WHERE request_id = %s", [recent]).fetchone()[0] == 4  # type: ignore[index]

    # Running it again finds nothing to do.
    assert flightrec(["partitions", "--now", "2025-04-10", "--ahead", "0", "--keep-days", "45", *db]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_partitions_exit_codes(pg_db: str, capsys: Any) -> None:
    assert flightrec(["partitions", "--database-url", pg_db]) == 4  # not migrated yet
    assert "flightrec migrate" in capsys.readouterr().err
    assert flightrec(["partitions", "--now", "yesterday-ish", "--database-url", pg_db]) == 2
    assert flightrec(["partitions", "--keep-days", "0", "--database-url", pg_db]) == 2


# -- the audit CLI, against rows written by the pipeline ---------------------------------------------------------------
def logs_cli(filled: Filled, capsys: Any, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = flightrec(["logs", *args, "--database-url", filled.dsn])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def seq(record: dict[str, Any]) -> int:
    return int(record["record_id"].rsplit("/", 1)[1])


def test_logs_shows_one_requests_records_in_order(filled: Filled, capsys: Any) -> None:
    for caused in filled.caused:
        code, out, err = logs_cli(filled, capsys, caused.request_id, "--format", "json")
        assert (code, err) == (0, "")
        records = json_records(out)
        assert [r["kind"] for r in records] == caused.kinds
        assert {r["request_id"] for r in records} == {caused.request_id}
        assert [seq(r) for r in records] == sorted(seq(r) for r in records)
        assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)
        report = records[-1]
        assert report["duration_ms"] == filled.recorded[caused.request_id].duration_ms
        assert report["error_type"] == caused.error_type and report["status"] == caused.status

    declined = next(c for c in filled.caused if c.failure == "declined")
    code, out, _ = logs_cli(filled, capsys, declined.request_id)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["TIME", "(UTC)", "LEVEL"]
    assert [line.split()[2] for line in lines[1:]] == declined.kinds
    assert "PaymentDeclined: card declined" in lines[3]
    assert f"REPORT status=error duration={filled.recorded[declined.request_id].duration_ms:.3f}ms" in lines[-1]
    assert "error_type=PaymentDeclined" in lines[-1]


def since_args(filled: Filled) -> list[str]:
    return ["--since", filled.start.isoformat(), "--until", filled.end.isoformat()]


def request_ids(out: str) -> set[str]:
    return {r["request_id"] for r in json_records(out) if r["request_id"]}


def test_logs_filters(filled: Filled, capsys: Any) -> None:
    window = since_args(filled)
    inventory = {c.request_id for c in filled.caused if c.function == "inventory"}
    code, out, _ = logs_cli(filled, capsys, "--function", "inventory", *window, "--format", "json")
    assert code == 0 and request_ids(out) == inventory
    assert {r["function_name"] for r in json_records(out)} == {"inventory"}

    failed = [c for c in filled.caused if c.failure]
    code, out, _ = logs_cli(filled, capsys, "--level", "error", *window, "--format", "json")
    records = json_records(out)
    assert code == 0 and [r["request_id"] for r in records] == [c.request_id for c in failed]
    assert {r["kind"] for r in records} == {"invocation_error"} and {r["level"] for r in records} == {"ERROR"}

    declined = {c.request_id for c in filled.caused if c.failure == "declined"}
    code, out, _ = logs_cli(filled, capsys, "--error-type", "PaymentDeclined", *window, "--format", "json")
    assert code == 0 and request_ids(out) == declined
    assert len(json_records(out)) == sum(len(c.kinds) for c in filled.caused if c.failure == "declined")

    code, out, _ = logs_cli(filled, capsys, "--grep", "CARD DECLINED", *window, "--format", "json")
    assert code == 0 and request_ids(out) == declined
    code, out, _ = logs_cli(filled, capsys, "--grep", "50%_", *window)  # LIKE wildcards are taken literally
    assert code == 3

    # --since/--until select [since, until) of everything: check against the whole listing, filtered here.
    code, out, _ = logs_cli(filled, capsys, *window, "--format", "json")
    everything = json_records(out)
    assert code == 0 and request_ids(out) == {c.request_id for c in filled.caused}
    middle = filled.recorded[filled.caused[4].request_id].ts
    later = filled.recorded[filled.caused[9].request_id].ts
    code, out, _ = logs_cli(filled, capsys, "--since", middle.isoformat(), "--until", later.isoformat(),
                            "--format", "json")  # fmt: skip
    expected = [r["record_id"] for r in everything if middle <= datetime.fromisoformat(r["timestamp"]) < later]
    assert code == 0 and [r["record_id"] for r in json_records(out)] == expected and expected


def test_logs_exit_codes_and_messages(filled: Filled, capsys: Any, pg_server: PostgresServer,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    code, out, err = logs_cli(filled, capsys, "no-such-request")
    assert (code, out) == (3, "") and "no records match" in err

    code, _, err = logs_cli(filled, capsys, "x", "--table", "missing_table")
    assert code == 4 and "does not exist" in err and "flightrec migrate" in err

    # A DSN that does not work: refused port, and a database that does not exist. The password never shows.
    capsys.readouterr()
    refused = f"postgresql://auditor:pw-s3cret-9@127.0.0.1:{_closed_port()}/flightrec"
    assert flightrec(["logs", "x", "--database-url", refused]) == 1
    captured = capsys.readouterr()
    assert "cannot connect" in captured.err and "pw-s3cret-9" not in captured.err + captured.out
    assert "auditor:***@" in captured.err
    missing_db = filled.dsn.rsplit("/", 1)[0].replace("postgres@", "postgres:pw-s3cret-9@") + "/no_such_db"
    assert flightrec(["logs", "x", "--database-url", missing_db]) == 1
    captured = capsys.readouterr()
    assert "no_such_db" in captured.err and "pw-s3cret-9" not in captured.err + captured.out

    # A malformed one, and none at all, are usage errors.
    assert flightrec(["logs", "x", "--database-url", "postgresql://u:pw-s3cret-9@[::1/x"]) == 2
    captured = capsys.readouterr()
    assert "invalid database URL" in captured.err and "pw-s3cret-9" not in captured.err
    monkeypatch.delenv("LOGS_DATABASE_URL", raising=False)
    assert flightrec(["logs", "x"]) == 2
    assert "LOGS_DATABASE_URL" in capsys.readouterr().err
    assert flightrec(["logs", "--since", "last tuesday", "--database-url", filled.dsn]) == 2

    # The environment is the default, as for the runtime.
    monkeypatch.setenv("LOGS_DATABASE_URL", filled.dsn)
    assert flightrec(["logs", filled.caused[0].request_id]) == 0


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stdout_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines as they come, read by a daemon thread so that waiting for them can time out."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_logs_follow_prints_new_records_as_they_are_stored(pg_db: str, tmp_path: Path) -> None:
    (tmp_path / "dash_handler.py").write_text(HANDLER)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        migrate(conn, "logs")
    command = [sys.executable, "-m", "runtime", "logs", "--function", "follower", "--follow", "--interval", "0.1",
               "--format", "json", "--database-url", pg_db]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    lines = stdout_lines(proc)
    try:
        env = pipeline_env(pg_db)
        with Emulator(handler="dash_handler.handler", task_root=tmp_path, function_name="follower", env=env,
                      capture_output=True, platform_sink=lambda line: None) as emu:  # fmt: skip
            first = emu.invoke({"step": 0, "function": "follower", "ms": 1}).request_id
            second = emu.invoke({"step": 1, "function": "follower", "ms": 1, "fail": "declined"}).request_id
        seen: list[dict[str, Any]] = []

        def both_reports() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    seen.append(json.loads(lines.get_nowait()))
            return sum(r["kind"] == "report" for r in seen) == 2

        wait_for(both_reports, 30, "follow mode to print both invocations")
        assert proc.poll() is None  # still following
        assert [(r["request_id"], r["kind"]) for r in seen] == (
            [(first, k) for k in ("start", "log", "end", "report")]
            + [(second, k) for k in ("start", "log", "invocation_error", "end", "report")]
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


#: `python -c` program: exec the rest of the command line with SIGINT ignored, which the new process inherits. That is
#: how `cmd &` in a non-interactive shell starts a job, e.g. a test suite, and with it the processes the suite spawns.
SIGINT_IGNORED_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def test_logs_follow_ends_on_sigint_even_when_it_inherited_sigint_ignored(filled: Filled) -> None:
    # Python installs no KeyboardInterrupt handler when SIGINT starts out ignored: follow mode must install its own.
    first = filled.caused[0]
    command = [sys.executable, "-c", SIGINT_IGNORED_EXEC, "-m", "runtime", "logs", first.request_id, "--follow",
               "--interval", "0.1", "--format", "json", "--database-url", filled.dsn]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    lines = stdout_lines(proc)
    try:
        seen: list[dict[str, Any]] = []

        def all_printed() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    seen.append(json.loads(lines.get_nowait()))
            return len(seen) >= len(first.kinds)

        wait_for(all_printed, 30, "follow mode to print the invocation's records")
        assert proc.poll() is None  # still following
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert [r["kind"] for r in seen] == first.kinds
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the report page ---------------------------------------------------------------------------------------------------
class PageParser(html.parser.HTMLParser):
    """Collects every element with data-* attributes: (tag, class, attributes, text inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, **{k: v or "" for k, v in attrs}, "text": ""}
        self._open.append(element)
        if any(k.startswith("data-") for k, _ in attrs):
            self.elements.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data

    def find(self, tag: str, css: str) -> list[dict[str, Any]]:
        return [e for e in self.elements if e["tag"] == tag and css in e.get("class", "").split()]


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("functions", [ALL, ("inventory",)], ids="+".join)
def test_report_page_shows_the_numbers_of_the_data(
    filled: Filled, tmp_path: Path, capsys: Any, functions: tuple[str, ...]
) -> None:
    out = tmp_path / "report.html"
    args = ["report", *since_args(filled), "--bucket", "1s", "--out", str(out), "--database-url", filled.dsn]
    if functions != ALL:
        args += [arg for f in functions for arg in ("--function", f)]
    assert flightrec(args) == 0
    assert "wrote" in capsys.readouterr().out
    page = parse_page(out)
    text = out.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained

    pairs = filled.invocations(functions)
    durations = [r.duration_ms for _, r in pairs]
    n, failed = len(pairs), sum(c.failure is not None for c, _ in pairs)
    cards = {e["data-metric"]: e for e in page.elements if "data-metric" in e}
    assert int(cards["invocations"]["data-value"]) == n and cards["invocations"]["text"] == f"{n:,}"
    assert int(cards["errors"]["data-value"]) == failed
    assert float(cards["error_rate"]["data-value"]) == rate(failed, n)
    assert cards["error_rate"]["text"] == f"{rate(failed, n):.2f} %"
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert float(cards[name]["data-value"]) == percentile_cont(durations, fraction)
        assert cards[name]["text"] == f"{percentile_cont(durations, fraction):,.1f} ms"
    assert float(cards["max"]["data-value"]) == max(durations)
    assert int(cards["cold_starts"]["data-value"]) == sum(c.cold for c, _ in pairs)

    groups = by_bucket(pairs, 1)
    keys = [datetime.fromtimestamp(t, UTC).isoformat() for t in groups]
    # Error rate bars: one per bucket, value exact, height proportional to it on the chart's own scale.
    [rate_chart] = page.find("svg", "error-rate")
    y_max = float(rate_chart["data-y-max"])
    bars = page.find("rect", "rate")
    assert [b["data-bucket"] for b in bars] == keys
    for bar, group in zip(bars, groups.values(), strict=True):
        expected = rate(sum(c.failure is not None for c, _ in group), len(group))
        assert float(bar["data-value"]) == expected
        assert float(bar["height"]) == pytest.approx(PLOT_H * expected / y_max, abs=0.01)
    assert y_max >= max(float(b["data-value"]) for b in bars)
    # Invocation bars: successes and errors stacked, counts exact.
    stacked = page.find("rect", "bar")
    for key, group in zip(keys, groups.values(), strict=True):
        mine = [b for b in stacked if b["data-bucket"] == key and "rate" not in b["class"]]
        assert {int(b["data-invocations"]) for b in mine} == {len(group)}
        assert {int(b["data-errors"]) for b in mine} == {sum(c.failure is not None for c, _ in group)}
    # Latency points: p50, p95, p99 per bucket, exact.
    [latency_chart] = page.find("svg", "latency")
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        points = page.find("circle", name)
        assert [p["data-bucket"] for p in points] == keys
        for point, group in zip(points, groups.values(), strict=True):
            value = percentile_cont([r.duration_ms for _, r in group], fraction)
            assert float(point["data-value"]) == value
            top, height = float(latency_chart["data-plot-top"]), float(latency_chart["data-plot-height"])
            y_top = float(latency_chart["data-y-max"])
            assert float(point["cy"]) == pytest.approx(top + height * (1 - value / y_top), abs=0.01)
    # Errors by type and the slowest invocations.
    counts = Counter(c.error_type for c, _ in pairs if c.error_type)
    shown = {e["data-error-type"]: int(e["text"]) for e in page.elements if "data-error-type" in e}
    assert shown == dict(counts)
    slowest = [e["data-request-id"] for e in page.elements if "data-request-id" in e]
    ranked = sorted(pairs, key=lambda p: (-p[1].duration_ms, p[1].ts, p[0].request_id))
    assert slowest == [c.request_id for c, _ in ranked[:10]]


def test_report_exit_codes(filled: Filled, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    db = ["--database-url", filled.dsn]
    assert flightrec(["report", "--since", "2001-01-01", "--until", "2001-01-02", "--out", str(out), *db]) == 3
    assert not out.exists()
    assert flightrec(["report", "--since", "1h", "--until", "2h", "--out", str(out), *db]) == 2  # until <= since
    assert flightrec(["report", "--since", "1h", "--bucket", "0.5s", "--out", str(out), *db]) == 2
    assert flightrec(["report", "--since", "1h", "--table", "nope", "--out", str(out), *db]) == 4
