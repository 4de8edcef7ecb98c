"""Soak: many invocations through the emulator and the REAL bootstrap with every sink on (stdout, syslog over TCP to a
real rsyslog, PostgreSQL, OpenTelemetry spans over OTLP/HTTP to a receiver), one runtime process throughout.

Proves, with the numbers printed (end of the pytest run) and written to `tests/reliability/results/soak.json`:
- RSS and open file descriptors of the runtime process after warm-up: growth stated, bounded generously (the
  runtime's own growth per invocation is measured by `test_the_runtime_does_not_grow_per_invocation`: 0 bytes
  since the trace id no longer goes through setenv(3), which leaked ~145 bytes per invocation);
- rows in PostgreSQL == records logged (each exactly once), syslog messages received == records logged, stdout
  lines == the handler's records (lifecycle records stay off stdout by default), one invocation span per
  invocation at the OTLP receiver, and nothing was dropped.

    ./dev slow -k soak                      # 50,000 invocations (about 10 minutes here)
    SOAK_INVOCATIONS=5000 ./dev slow -k soak
    SOAK_OTEL=0 ./dev slow -k soak            # without OpenTelemetry
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from runtime.emulator import Emulator
from tests.reliability.helpers import count_lines, counts, dropped_counts, open_fds, rss_kib, wait_for, write_summary

INVOCATIONS = int(os.environ.get("SOAK_INVOCATIONS", "50000"))
OTEL = os.environ.get("SOAK_OTEL", "1") != "0"
WARMUP = max(100, min(2000, INVOCATIONS // 10))
RECORDS_PER_INVOCATION = 5  # start, 2 lines, end, report
HANDLER_LINES_PER_INVOCATION = 2  # what reaches stdout (lifecycle records stay off it)
#: generous bounds: a real leak of a few hundred bytes per invocation exceeds them over 50,000 invocations
RSS_GROWTH_BOUND_KIB = 24 * 1024
FD_GROWTH_BOUND = 2


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_soak_every_record_once_in_every_sink_and_a_flat_runtime(
    private_pg_server, private_rsyslog, private_otlp_receiver, task_root
):
    pg, rsyslog, otlp = private_pg_server, private_rsyslog, private_otlp_receiver
    dsn = pg.create_database()
    root = task_root("soak", """
        import logging
        log = logging.getLogger("soak")
        def handler(event, context):
            log.info("soak %d first line", event["i"])
            log.info("soak second line", extra={"i": event["i"]})
            return {"i": event["i"]}
    """)
    stdout_json, stderr_lines = [0], []
    lock = threading.Lock()

    def on_output(stream: str, line: str) -> None:
        with lock:
            if stream == "stdout" and line.startswith("{"):
                stdout_json[0] += 1
            elif stream == "stderr":
                stderr_lines.append(line)

    env = {"LOGS_DATABASE_URL": dsn, "LOGS_AUTO_MIGRATE": "1", "SYSLOG_URL": rsyslog.tcp_url,
           "LOGS_SPILL_DIR": str(root / "spill")}
    if OTEL:
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_METRICS_EXPORTER": "none"}
    samples: list[dict[str, int]] = []
    failed: list[str] = []
    started = time.monotonic()
    with Emulator(handler="soak.handler", task_root=root, env=env, on_output=on_output, timeout_s=30.0,
                  platform_sink=lambda line: None) as emu:
        for i in range(INVOCATIONS):
            result = emu.invoke({"i": i}, wait_for_report=False)
            if not result.ok:
                failed.append(result.body[:200].decode("utf-8", "replace"))
            if i + 1 == WARMUP or (i + 1 > WARMUP and (i + 1 - WARMUP) % max(1, (INVOCATIONS - WARMUP) // 10) == 0):
                pid = emu.runtime_pid
                assert pid is not None, "the runtime process is gone"
                samples.append({"after": i + 1, "pid": pid, "rss_kib": rss_kib(pid), "open_fds": open_fds(pid)})
        elapsed = time.monotonic() - started
        pid = emu.runtime_pid
        samples.append({"after": INVOCATIONS, "pid": pid or 0, "rss_kib": rss_kib(pid) if pid else 0,
                        "open_fds": open_fds(pid) if pid else 0})
        expected = INVOCATIONS * RECORDS_PER_INVOCATION
        wait_for(lambda: counts(dsn)[0] >= expected, 180, interval_s=1.0)
        wait_for(lambda: count_lines(rsyslog.output_path) >= expected, 180, interval_s=1.0)
        wait_for(lambda: stdout_json[0] >= INVOCATIONS * HANDLER_LINES_PER_INVOCATION, 60, interval_s=0.5)
        if OTEL:
            wait_for(lambda: _invocation_spans(otlp) >= INVOCATIONS, 120, interval_s=2.0)
        time.sleep(2.0)  # anything duplicated or late would show up now
        rows, distinct = counts(dsn)
        syslog_messages = count_lines(rsyslog.output_path)
        generation = emu.generation
        spans = _invocation_spans(otlp) if OTEL else None
        dropped_in_reports = pg.execute(
            "SELECT coalesce(sum((record->>'records_dropped')::int), 0), count(*) FROM logs WHERE kind = 'report'",
            dbname=dsn.rsplit("/", 1)[1])[0]
    warm, end = samples[0], samples[-1]
    summary = {
        "invocations": INVOCATIONS,
        "warmup_invocations": WARMUP,
        "seconds": round(elapsed, 1),
        "ms_per_invocation": round(elapsed / INVOCATIONS * 1000, 2),
        "failed_invocations": len(failed),
        "runtime_processes": generation,
        "records_logged": expected,
        "postgres_rows": rows,
        "postgres_distinct_record_ids": distinct,
        "syslog_messages": syslog_messages,
        "stdout_json_lines": stdout_json[0],
        "stdout_expected": INVOCATIONS * HANDLER_LINES_PER_INVOCATION,
        "otel_invocation_spans": spans,
        "report_rows": int(dropped_in_reports[1]),
        "records_dropped_in_reports": int(dropped_in_reports[0]),
        "records_dropped_on_stderr": sum(dropped_counts(stderr_lines, "syslog") + dropped_counts(stderr_lines,
                                                                                                   "postgres")),
        "rss_kib_after_warmup": warm["rss_kib"],
        "rss_kib_at_end": end["rss_kib"],
        "rss_growth_kib": end["rss_kib"] - warm["rss_kib"],
        "rss_growth_bytes_per_invocation": round(
            (end["rss_kib"] - warm["rss_kib"]) * 1024 / max(1, INVOCATIONS - WARMUP), 1),
        "open_fds_after_warmup": warm["open_fds"],
        "open_fds_at_end": end["open_fds"],
        "open_fds_growth": end["open_fds"] - warm["open_fds"],
        "samples": samples,
        "stderr_lines": stderr_lines[:20],
    }
    write_summary("soak", summary)
    numbers = json.dumps({k: v for k, v in summary.items() if k not in ("samples", "stderr_lines")})
    assert failed == [], f"{len(failed)} invocations failed, first: {failed[:3]}; {numbers}"
    assert generation == 1 and len({s["pid"] for s in samples}) == 1, f"the runtime was replaced; {numbers}"
    assert (rows, distinct) == (expected, expected), f"PostgreSQL rows != records logged; {numbers}"
    assert syslog_messages == expected, f"syslog messages != records logged; {numbers}"
    assert stdout_json[0] == INVOCATIONS * HANDLER_LINES_PER_INVOCATION, f"stdout lines; {numbers}"
    assert spans is None or spans == INVOCATIONS, f"invocation spans != invocations; {numbers}"
    assert summary["records_dropped_in_reports"] == 0 and summary["records_dropped_on_stderr"] == 0, numbers
    assert summary["rss_growth_kib"] < RSS_GROWTH_BOUND_KIB, f"RSS grew after warm-up; {numbers}"
    assert summary["open_fds_growth"] <= FD_GROWTH_BOUND, f"open fds grew after warm-up; {numbers}"


def _invocation_spans(otlp) -> int:
    """Spans carrying `faas.invocation_id` (one per invocation; the init span has none)."""
    return sum(any(a.key == "faas.invocation_id" for a in span.attributes) for _, _, span in otlp.spans())


PER_INVOCATION_WARMUP, PER_INVOCATION_MEASURED = 1000, 5000
#: what "flat" means per invocation: well under the ~145 bytes measured (a distinct trace id leaked each time)
PER_INVOCATION_BOUND_BYTES = 32


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_runtime_does_not_grow_per_invocation(task_root):
    """No sink, no lifecycle records, a handler that does nothing: whatever RSS grows by per invocation after
    warm-up is the runtime's own. Written to results/rss_per_invocation.json."""
    root = task_root("idle", "def handler(event, context):\n    return None\n")
    env = {"LOGS_STDOUT": "0", "LOGS_SPILL_DIR": str(root / "spill")}
    with Emulator(handler="idle.handler", task_root=root, env=env, on_output=lambda stream, line: None,
                  platform_sink=lambda line: None, timeout_s=30.0) as emu:
        for _ in range(PER_INVOCATION_WARMUP):
            emu.invoke(b"{}", wait_for_report=False)
        pid = emu.runtime_pid
        assert pid is not None
        before = rss_kib(pid)
        for _ in range(PER_INVOCATION_MEASURED):
            emu.invoke(b"{}", wait_for_report=False)
        after = rss_kib(pid)
        same_process = emu.runtime_pid == pid
    per_invocation = (after - before) * 1024 / PER_INVOCATION_MEASURED
    write_summary("rss_per_invocation", {"invocations_measured": PER_INVOCATION_MEASURED, "rss_kib_before": before,
                                         "rss_kib_after": after, "bytes_per_invocation": round(per_invocation, 1)})
    assert same_process
    assert per_invocation < PER_INVOCATION_BOUND_BYTES, f"{per_invocation:.0f} bytes per invocation"
