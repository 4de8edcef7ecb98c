"""The fault matrix: one proven outcome per fault, each stated as records delivered and records lost.

Every cell runs the REAL `bootstrap` (under the project's emulator, or against a raw-socket Runtime API where the
emulator cannot script the fault) with real PostgreSQL, rsyslog and OTLP peers. Cells already proven elsewhere are
referenced, not repeated. The whole matrix is `MATRIX` below: fault, outcome (delivered / lost), and the tests that
prove it; `test_every_cell_of_the_matrix_names_a_test_that_exists` checks every reference and writes the table to
`tests/reliability/results/fault_matrix.json`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, emulator
from tests.reliability.fake_api import CutPost, FakeRuntimeApi, bootstrap_env, next_answer
from tests.reliability.helpers import (
    counts,
    dropped_counts,
    rows,
    wait_count,
    wait_for,
    wait_rows,
    write_summary,
)

MAX_PAYLOAD = 6 * 1024 * 1024 + 100  # 6,291,556 bytes: Lambda's (and the emulator's) synchronous payload limit
TESTS = Path(__file__).resolve().parents[1]

HERE = "reliability/test_fault_matrix.py::"
E2E = "integration/test_pipeline_e2e.py::"
E2E_PG = "integration/test_pipeline_postgres_e2e.py::"
BOOT = "integration/test_bootstrap.py::"

#: fault -> (delivered / lost, the tests proving it as "path::name" under tests/)
MATRIX: dict[str, tuple[str, list[str]]] = {
    "PostgreSQL backend killed between invocations": ("all 16 rows / none", [
        E2E_PG + "test_backend_terminated_between_invocations_reconnects_without_loss_or_duplicates",
        "integration/test_postgres_sink.py::test_a_backend_terminated_between_ships_is_replaced_transparently"]),
    "PostgreSQL down between invocations, then back": ("all 32 rows / none", [
        E2E_PG + "test_postgres_down_the_invocation_succeeds_and_rows_arrive_after_restart"]),
    "PostgreSQL restarted during a run": ("every row exactly once / none", [
        HERE + "test_postgresql_restarted_during_a_run_of_many_invocations_loses_and_duplicates_nothing"]),
    "PostgreSQL down under LOGS_POLICY=strict": ("the refused invocation's rows once it is back / none", [
        E2E_PG + "test_strict_policy_fails_the_invocation_when_rows_cannot_be_stored"]),
    "rsyslog killed and restarted": ("every pending record, once / none", [
        "integration/test_syslog_rsyslog.py::test_killed_server_keeps_records_pending_and_restart_delivers_each_"
        "exactly_once",
        E2E + "test_sigterm_at_shutdown_flushes_records_a_down_sink_still_held"]),
    "collector (OTLP) hung": ("every log row; invocations not held / spans during the hang: at best late", [
        HERE + "test_a_hung_otlp_collector_never_holds_invocations_or_log_records"]),
    "handler exceeds its deadline": ("start, the lines logged, the deadline warning / none", [
        E2E_PG + "test_a_handler_past_its_deadline_leaves_its_rows_behind",
        BOOT + "test_timeout_kills_and_restarts_the_runtime"]),
    "killed at the deadline while a sink is down": ("10 spilled, by the successor / 2 held in memory", [
        E2E + "test_records_spilled_by_a_runtime_killed_at_its_deadline_are_delivered_by_its_successor"]),
    "SIGTERM while records are pending (extension)": ("all 9 / none", [
        E2E + "test_sigterm_at_shutdown_flushes_records_a_down_sink_still_held"]),
    "SIGKILL while records are pending (no extension)": ("0 / 9, the documented window", [
        E2E + "test_without_the_extension_records_a_down_sink_held_die_with_the_sigkill"]),
    "handler calls sys.exit()": ("every record, then the exit / none", [
        BOOT + "test_sys_exit_is_reported_then_the_process_exits_with_its_code"]),
    "handler calls os._exit()": ("earlier and later invocations' rows / the exiting one's 4 unflushed records", [
        HERE + "test_os_exit_in_a_handler_loses_exactly_the_records_not_yet_flushed"]),
    "disk spill full (cap reached, or unwritable)": ("memory + spill / the rest, each counted on stderr and in "
                                                     "the next report", [
        HERE + "test_a_full_spill_drops_records_and_counts_every_drop_on_stderr_and_in_the_next_report"]),
    "6 MB events and responses": ("every row of every invocation that reached the runtime / none", [
        HERE + "test_events_and_responses_at_the_6_mb_limit",
        HERE + "test_a_response_refused_as_too_large_is_reported_as_an_error",
        BOOT + "test_response_over_6mb_becomes_function_response_size_too_large"]),
    "Runtime API cuts the connection mid-/next": ("every row and the fatal record; the cut invocation never ran "
                                                  "/ none", [
        HERE + "test_a_connection_cut_mid_next_fails_that_invocation_and_loses_no_row",
        BOOT + "test_a_connection_lost_mid_next_exits_non_zero_and_is_restarted"]),
    "Runtime API refuses the answer with a 500": ("every row and the fatal record / none", [
        HERE + "test_a_500_on_the_answer_exits_after_flushing_every_record"]),
    "Runtime API resets the connection mid-post": ("every record and the fatal record / none", [
        HERE + "test_a_connection_reset_while_posting_the_response_flushes_then_exits"]),
    "Runtime API answers /next with a 500": ("- (the loop exits, the platform replaces it)", [
        BOOT + "test_a_500_on_next_makes_the_runtime_exit_and_the_platform_restart_it"]),
}


def _db_env(dsn: str, **extra: str) -> dict[str, str]:
    return {"LOGS_DATABASE_URL": dsn, "LOGS_AUTO_MIGRATE": "1", **extra}


def _json_stdout(emu) -> list[dict]:
    out = []
    for stream, line in list(emu.output):
        if stream == "stdout" and line.startswith("{"):
            out.append(json.loads(line))
    return out


def _kinds(found: list[dict]) -> list[str]:
    return [r["kind"] for r in found]


# -- the table itself ------------------------------------------------------------------------------------------------
def test_every_cell_of_the_matrix_names_a_test_that_exists():
    missing = []
    for fault, (_, refs) in MATRIX.items():
        for ref in refs:
            path, _, name = ref.partition("::")
            source = (TESTS / path).read_text() if (TESTS / path).exists() else ""
            if not re.search(rf"^def {re.escape(name)}\(", source, re.MULTILINE):
                missing.append(f"{fault}: {ref}")
    write_summary("fault_matrix", {fault: {"delivered / lost": outcome, "proven by": refs}
                                   for fault, (outcome, refs) in MATRIX.items()})
    assert len(MATRIX) == 18
    assert missing == [], f"cells whose proof does not exist: {missing}"


# -- os._exit ----------------------------------------------------------------------------------------------------------
def test_os_exit_in_a_handler_loses_exactly_the_records_not_yet_flushed(pg_db, task_root):
    """Delivered: every row of the invocations before (flushed before `/next`) and after (a fresh runtime).
    Lost: the exiting invocation's 4 records (start + 3 lines), held only in memory when `os._exit` ended the
    process: no flush, no atexit, no finally runs. Unlike `sys.exit()`, nothing reports the exit but the platform
    (`Runtime.ExitError` from the emulator). The background interval is pushed out so that the loss is exact."""
    root = task_root("exits", """
        import logging, os
        log = logging.getLogger("exits")
        def handler(event, context):
            for i in range(3):
                log.info("line %d before the exit", i + 1)
            if event.get("exit"):
                os._exit(7)
            return "alive"
    """)
    env = _db_env(pg_db, TELEMETRY_FLUSH_INTERVAL_MS="60000")
    with emulator("exits.handler", root, env=env) as emu:
        before = emu.invoke({})
        exited = emu.invoke({"exit": True})
        after = emu.invoke({})
        generation = emu.generation
        rows_before = wait_rows(pg_db, before.request_id, 6)
        rows_after = wait_rows(pg_db, after.request_id, 6)
        time.sleep(0.5)  # give a (wrong) late delivery of the lost records a chance to show up
        rows_exited = rows(pg_db, exited.request_id)
        stdout_exited = [r for r in _json_stdout(emu) if r.get("request_id") == exited.request_id]
    assert before.ok and after.ok and generation == 2
    assert exited.json()["errorType"] == "Runtime.ExitError"
    assert exited.json()["errorMessage"].endswith("exit status 7")
    assert _kinds(rows_before) == ["start", "log", "log", "log", "end", "report"]
    assert _kinds(rows_after) == ["start", "log", "log", "log", "end", "report"]
    # the documented loss: 4 records (start, 3 lines) in memory only, in every sink (stdout ships at the flush too)
    assert rows_exited == [], f"delivered {len(rows_exited)} of the 4 records os._exit was expected to lose"
    assert stdout_exited == []
    assert counts(pg_db) == (12, 12)


# -- the spill full ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spill", ["cap reached", "spill unwritable"])
def test_a_full_spill_drops_records_and_counts_every_drop_on_stderr_and_in_the_next_report(
    private_rsyslog, task_root, spill
):
    """rsyslog is down. The syslog sink keeps 5 records in memory, then spills until the spill is full (4 KiB cap),
    or cannot spill at all (the spill directory cannot be created); every other record is dropped. Each flush's
    drops are printed on stderr and carried by the NEXT report record's `records_dropped`. When rsyslog is back,
    what was held (memory + spill) is delivered. Accounting, per invocation and in total:
    delivered to rsyslog + counted as dropped == records logged (62: 53 + 3 + 3 + 3), none unaccounted for."""
    rsyslog = private_rsyslog
    root = task_root("burst", """
        import logging
        log = logging.getLogger("burst")
        def handler(event, context):
            for i in range(event.get("lines", 0)):
                log.info("burst line %d of a record padded so that the spill fills up quickly %s", i, "x" * 200)
            return "ok"
    """)
    env = {
        "SYSLOG_URL": rsyslog.tcp_url,
        "LOGS_BUFFER_MAX_RECORDS": "5",
        "LOGS_STDOUT_LIFECYCLE": "1",  # the report records, with `records_dropped`, on stdout where they survive
        "TELEMETRY_FLUSH_INTERVAL_MS": "60000",
        "TELEMETRY_FLUSH_BUDGET_MS": "300",
        **({"LOGS_SPILL_MAX_BYTES": "4096"} if spill == "cap reached" else {"LOGS_SPILL_DIR": "/dev/null/spill"}),
    }
    rsyslog.kill()
    with emulator("burst.handler", root, env=env, function_name="burst") as emu:
        flood = emu.invoke({"lines": 50})  # 53 records: start, 50 lines, end, report
        second = emu.invoke({})  # 3 records, all dropped: the spill is still full
        rsyslog.restart()
        time.sleep(1.0)  # past the sink's backoff (0.1 s doubling after each failed attempt; two failed so far)
        third = emu.invoke({})  # its 3 records arrive while memory and spill are full: dropped; then all ships
        fourth = emu.invoke({})  # 3 records into an empty buffer: delivered
        ids = [r.request_id for r in (flood, second, third, fourth)]
        rsyslog.wait_for(3, where=lambda m: json.loads(m["msg"]).get("request_id") == fourth.request_id)
        time.sleep(0.5)  # anything wrongly delivered late would show up now
        delivered = [json.loads(m["msg"]) for m in rsyslog.messages()]
        reports = {r["request_id"]: r for r in _json_stdout(emu) if r["kind"] == "report"}
        drops = dropped_counts(emu.output_lines, "syslog")
    assert all(r.ok for r in (flood, second, third, fourth))
    by_request = {rid: sum(1 for d in delivered if d.get("request_id") == rid) for rid in ids}
    spilled = 0 if spill == "spill unwritable" else by_request[ids[0]] - 5
    # stderr: one line per flush that dropped: the flood's, the second's, the third's
    assert drops == [53 - 5 - spilled, 3, 3], (drops, by_request)
    # every drop is also in the next report record
    assert [reports[rid]["records_dropped"] for rid in ids] == [0, drops[0], drops[1], drops[2]]
    # delivered: what memory and spill held of the flood, nothing of the 2nd and 3rd, all of the 4th
    assert by_request == {ids[0]: 5 + spilled, ids[1]: 0, ids[2]: 0, ids[3]: 3}
    if spill == "cap reached":
        assert spilled > 0
    logged = 53 + 3 + 3 + 3
    assert sum(by_request.values()) + sum(drops) == logged, (by_request, drops)


# -- 6 MB --------------------------------------------------------------------------------------------------------------
def test_events_and_responses_at_the_6_mb_limit(pg_db, task_root):
    """Lambda's limit is 6,291,556 bytes each way. An event of exactly that size is served; one byte more is refused
    by the Invoke API (413) and never reaches the runtime. A response of exactly that size is accepted; one byte
    more is refused with 413 and becomes `Function.ResponseSizeTooLarge` for the same request. Delivered: every
    row of the four invocations that reached the runtime (start with `event_bytes`, end, report, and the error
    record of the refused response); lost: none. One runtime process served them all."""
    root = task_root("sized", """
        def handler(event, context):
            if isinstance(event, dict):
                return "y" * (event["respond"] - 2)  # a JSON string: its quotes make the body exactly that size
            return {"received_chars": len(event)}
    """)
    at_limit_event = b'"' + b"x" * (MAX_PAYLOAD - 2) + b'"'
    with emulator("sized.handler", root, env=_db_env(pg_db), timeout_s=20.0) as emu:
        event_ok = emu.invoke(at_limit_event)
        event_over = emu.invoke(at_limit_event[:-1] + b'x"')
        response_ok = emu.invoke({"respond": MAX_PAYLOAD})
        response_over = emu.invoke({"respond": MAX_PAYLOAD + 1})
        after = emu.invoke({"respond": 10})
        generation = emu.generation
        served = [event_ok, response_ok, response_over, after]
        found = {r.request_id: wait_rows(pg_db, r.request_id, 3) for r in served}
    assert event_ok.ok and event_ok.json() == {"received_chars": MAX_PAYLOAD - 2}
    assert event_over.status == 413 and event_over.json()["errorType"] == "RequestEntityTooLargeException"
    assert response_ok.ok and len(response_ok.body) == MAX_PAYLOAD
    assert response_over.json()["errorType"] == "Function.ResponseSizeTooLarge"
    assert [p.status for p in emu.posts_for(response_over.request_id)] == [413, 202]
    assert after.ok and generation == 1
    assert _kinds(found[event_ok.request_id]) == ["start", "end", "report"]
    start = found[event_ok.request_id][0]["record"]
    assert start["event"]["event_bytes"] == MAX_PAYLOAD
    assert start["event"].get("event_truncated") is True  # summarised by size: a 6 MB event is never parsed twice
    assert _kinds(found[response_ok.request_id]) == ["start", "end", "report"]
    assert {"start", "end", "report"} <= set(_kinds(found[response_over.request_id]))
    # (how the refused response is reported is test_a_response_refused_as_too_large_is_reported_as_an_error)
    total, distinct = counts(pg_db)
    assert total == distinct == sum(len(v) for v in found.values())  # the refused event left no row


def test_a_response_refused_as_too_large_is_reported_as_an_error(pg_db, task_root):
    """The invoker gets `Function.ResponseSizeTooLarge`; the report record must say the same (status error, that
    error type) and an invocation_error record must exist, as for every other failed invocation."""
    root = task_root("toolarge", """
        def handler(event, context):
            return "y" * (6 * 1024 * 1024 + 100)
    """)
    with emulator("toolarge.handler", root, env=_db_env(pg_db), timeout_s=20.0) as emu:
        refused = emu.invoke({})
        found = wait_rows(pg_db, refused.request_id, 3)
        found = wait_rows(pg_db, refused.request_id, 4, timeout_s=1.0)  # the error record, if there is one
    assert refused.json()["errorType"] == "Function.ResponseSizeTooLarge"
    report = next(r for r in found if r["kind"] == "report")
    assert (report["status"], report["error_type"]) == ("error", "Function.ResponseSizeTooLarge")
    assert "invocation_error" in _kinds(found)


# -- the Runtime API cutting the connection ----------------------------------------------------------------------------
def test_a_connection_cut_mid_next_fails_that_invocation_and_loses_no_row(pg_db):
    """The API sends the head and half the body of a `/next` answer, then closes. The runtime logs why (a CRITICAL
    `runtime` record, flushed before it exits non-zero); the invocation never reached the handler and the platform
    fails it with `Runtime.ExitError`, as Lambda does for a runtime that exits; the next invocation gets a new
    runtime. Delivered: 3 + 3 rows of the invocations before and after, and the fatal record; the cut invocation
    has no row because nothing of it ran; lost: none."""
    with emulator("handlers.echo.handler", REPO, env=_db_env(pg_db)) as emu:
        first = emu.invoke({"n": 1})
        wait_rows(pg_db, first.request_id, 3)
        emu.inject.drop_next_midway()
        cut = emu.invoke({"n": 2})
        third = emu.invoke({"n": 3})
        generation = emu.generation
        found = {r.request_id: wait_rows(pg_db, r.request_id, 3) for r in (first, third)}
        fatal = wait_rows(pg_db, None, 1)
        time.sleep(0.5)
        cut_rows = rows(pg_db, cut.request_id)
    assert first.ok and third.ok and generation == 2
    assert cut.json()["errorType"] == "Runtime.ExitError" and cut.json()["errorMessage"].endswith("exit status 1")
    assert all(_kinds(found[rid]) == ["start", "end", "report"] for rid in found), found
    assert cut_rows == []
    assert [r["kind"] for r in fatal] == ["runtime"]
    assert fatal[0]["level"] == "CRITICAL" and "connection to the Runtime API lost" in fatal[0]["message"]
    assert counts(pg_db) == (7, 7)


def test_a_500_on_the_answer_exits_after_flushing_every_record(pg_db):
    """The API refuses a response with 500 (`fail_next_post(500)`): the runtime cannot know whether the answer
    counts, so it exits non-zero and the platform fails the invocation (`Runtime.ExitError`). Before exiting it
    flushes: delivered are the invocation's start, end and report (status success: the handler did succeed) and the
    fatal record; lost: none. The next invocation gets a new runtime."""
    with emulator("handlers.echo.handler", REPO, env=_db_env(pg_db)) as emu:
        first = emu.invoke({"n": 1})
        emu.inject.fail_next_post(500)
        refused = emu.invoke({"n": 2})
        later = emu.invoke({"n": 3})
        generation = emu.generation
        refused_rows = wait_rows(pg_db, refused.request_id, 3)
        fatal = wait_rows(pg_db, None, 1)
        wait_rows(pg_db, later.request_id, 3)
    assert first.ok and later.ok and generation == 2
    assert refused.json()["errorType"] == "Runtime.ExitError"
    assert _kinds(refused_rows) == ["start", "end", "report"]
    assert refused_rows[-1]["status"] == "success"
    assert "Reason: '500'" in fatal[0]["message"]
    assert counts(pg_db) == (10, 10)


def test_a_connection_reset_while_posting_the_response_flushes_then_exits(task_root):
    """A raw-socket Runtime API reads the head and 1 KiB of a 1 MiB response, then resets the connection (the
    emulator can refuse a post, not cut one). The runtime exits 1 saying why; delivered (stdout, the only sink
    here): the invocation's start, its line, end, report, and the fatal record; lost: none."""
    root = task_root("bigreply", """
        import logging
        def handler(event, context):
            logging.getLogger("bigreply").info("about to answer")
            return "z" * (1024 * 1024)
    """)
    with FakeRuntimeApi([CutPost(after_bytes=1024), next_answer("req-cut-1", b"{}")]) as api:
        env = bootstrap_env(api, "bigreply.handler", str(root), {"LOGS_LIFECYCLE": "1", "LOGS_STDOUT_LIFECYCLE": "1"})
        proc = subprocess.run([sys.executable, str(REPO / "bootstrap")], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        posts = list(api.posts)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 1, proc.stderr
    assert [(p.kind, p.complete) for p in posts] == [("response", False)]
    mine = [r for r in records if r["request_id"] == "req-cut-1"]
    assert [r["kind"] for r in mine] == ["start", "log", "end", "report"], records
    fatal = [r for r in records if r["kind"] == "runtime" and r["level"] == "CRITICAL"]
    assert len(fatal) == 1 and "connection to the Runtime API lost during POST" in fatal[0]["message"]


# -- PostgreSQL restarted during a run ---------------------------------------------------------------------------------
def test_postgresql_restarted_during_a_run_of_many_invocations_loses_and_duplicates_nothing(pg_server, pg_db):
    """120 invocations of `handlers.logs` (8 records each) while a second thread restarts PostgreSQL twice (fast
    shutdown: every connection cut, in-flight statements aborted). Invocations never fail or wait past the flush
    budget; rows logged while the server is down wait in memory and are delivered by a later flush. Delivered:
    960 of 960 rows, each exactly once (count == distinct record ids); lost: none."""
    pg, dsn = pg_server, pg_db  # the shared server: restarting it is allowed, and it is running again afterwards
    env = _db_env(dsn, TELEMETRY_FLUSH_BUDGET_MS="500", TELEMETRY_FLUSH_INTERVAL_MS="200")
    n, per_invocation = 120, 8
    progress = {"done": 0, "during_restart": 0}
    restarting = threading.Event()
    restarts: list[float] = []

    def restarter() -> None:
        for at in (20, 70):
            wait_for(lambda at=at: progress["done"] >= at, 120, interval_s=0.01)
            restarting.set()
            started = time.monotonic()
            pg.restart(mode="fast")
            restarts.append(time.monotonic() - started)
            restarting.clear()

    with emulator("handlers.logs.handler", REPO, env=env, timeout_s=10.0) as emu:
        thread = threading.Thread(target=restarter, daemon=True)
        thread.start()
        results = []
        for _ in range(n):
            results.append(emu.invoke({"lines": 2}))
            progress["done"] += 1
            progress["during_restart"] += restarting.is_set()
            if restarting.is_set():
                time.sleep(0.02)  # keep invoking through the restart, not past it in a burst
        thread.join(120)
        total, distinct = wait_count(dsn, n * per_invocation, timeout_s=60)
        generation = emu.generation
    failed = [r.body[:200] for r in results if not r.ok]
    assert failed == []
    assert len(restarts) == 2, "PostgreSQL was not restarted twice"
    assert progress["during_restart"] > 0, "no invocation ran while PostgreSQL was restarting"
    assert generation == 1
    assert (total, distinct) == (n * per_invocation, n * per_invocation), (
        f"rows {total}, distinct {distinct}, expected {n * per_invocation}; "
        f"{progress['during_restart']} invocations ran during the restarts ({restarts})")


# -- a hung OTLP collector ---------------------------------------------------------------------------------------------
#: the most one invocation may take while the collector hangs: flush budget + export timeout + a generous margin
HUNG_COLLECTOR_BOUND_S = 15.0


def test_a_hung_otlp_collector_never_holds_invocations_or_log_records(pg_db, private_otlp_receiver):
    """OpenTelemetry export to an OTLP collector that accepts connections and never answers. Invocations are not
    held past a liveness bound (each export gives up after TELEMETRY_OTLP_TIMEOUT_MS, inside the flush budget) and
    all succeed; delivered: every log row (3 per invocation); the spans of the invocations during the hang are at
    best late (the printed line counts them; not promised); once the collector answers again, the spans of later
    invocations arrive."""
    receiver = private_otlp_receiver
    env = _db_env(pg_db, OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                  OTEL_METRICS_EXPORTER="none", TELEMETRY_OTLP_TIMEOUT_MS="500", TELEMETRY_FLUSH_BUDGET_MS="500")
    with emulator("handlers.echo.handler", REPO, env=env) as emu:
        healthy = emu.invoke({"phase": "healthy"})
        receiver.wait_for_spans(1, timeout=10)  # the healthy baseline: spans do reach the collector
        receiver.hang = True
        hung, took = [], []
        for i in range(5):
            started = time.monotonic()
            hung.append(emu.invoke({"phase": "hung", "i": i}))
            took.append(time.monotonic() - started)
        receiver.hang = False
        later = emu.invoke({"phase": "after"})
        spans_later = receiver.wait_for_spans(2, timeout=15)
        found = {r.request_id: wait_rows(pg_db, r.request_id, 3) for r in [healthy, *hung, later]}
    assert healthy.ok and later.ok and all(r.ok for r in hung)
    assert max(took) < HUNG_COLLECTOR_BOUND_S, f"an invocation was held {max(took):.1f} s by the hung collector"
    assert all(_kinds(found[rid]) == ["start", "end", "report"] for rid in found)
    span_text = " ".join(str(span) for _, _, span in spans_later)
    late = sum(r.request_id in span_text for r in hung)
    print(f"hung collector: {len(spans_later)} spans received in all; spans of the 5 invocations during the hang "
          f"delivered late: {late}; invocation times {[round(t, 2) for t in took]} s")
    assert later.request_id in span_text, "no span of the invocation after the collector recovered"
