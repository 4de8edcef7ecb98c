"""The whole logging pipeline through the real bootstrap: records reach rsyslog (and PostgreSQL) with their ids.

Each test states the records logged and the records delivered.
"""

from __future__ import annotations

import json
import time

from tests.integration.conftest import REPO, emulator


def _syslog_env(rsyslog, transport: str = "tcp") -> dict[str, str]:
    port = {"tcp": rsyslog.tcp_port, "udp": rsyslog.udp_port}[transport]
    return {"SYSLOG_URL": f"{transport}://127.0.0.1:{port}"}


def test_every_record_of_an_invocation_reaches_syslog_with_its_request_id(rsyslog):
    # GIVEN a function that logs 3 lines (+ a warning, an exception and a print) and syslog over TCP
    with emulator("handlers.logs.handler", REPO, env=_syslog_env(rsyslog), function_name="logs") as emu:
        result = emu.invoke({"lines": 3})
        # WHEN the invocation is answered
        assert result.ok
        # THEN its records are in rsyslog: start, 3 lines, warning, exception, print, end, report = 9
        messages = rsyslog.wait_for(9, where=lambda m: m["sd"].get("lambda@32473", {}).get("requestId")
                                    == result.request_id)
    kinds = [m["msgid"] for m in messages]
    assert kinds.count("log") == 6
    assert kinds[0] == "start" and kinds[-2:] == ["end", "report"]
    assert {m["app_name"] for m in messages} == {"logs"}
    bodies = [json.loads(m["msg"]) for m in messages]
    assert [b["message"] for b in bodies if b["logger"] == "handlers.logs"][:3] == [
        "line 1 of 3", "line 2 of 3", "line 3 of 3"]
    report = bodies[-1]
    assert report["status"] == "success" and report["cold_start"] is True
    assert report["init_duration_ms"] > 0 and report["duration_ms"] > 0
    assert len({b["record_id"] for b in bodies}) == 9


def test_secrets_in_the_event_never_reach_syslog(rsyslog):
    with emulator("handlers.echo.handler", REPO, env=_syslog_env(rsyslog), function_name="echo") as emu:
        result = emu.invoke({"user": "ada", "password": "hunter2-secret", "headers": {"Authorization": "Bearer abc"}})
        messages = rsyslog.wait_for(3, where=lambda m: m["sd"].get("lambda@32473", {}).get("requestId")
                                    == result.request_id)
    start = json.loads(next(m["msg"] for m in messages if m["msgid"] == "start"))
    assert start["event"]["event"]["user"] == "ada"
    assert start["event"]["event"]["password"] == "[REDACTED]"
    raw = " ".join(m["msg"] for m in messages)
    assert "hunter2-secret" not in raw and "Bearer abc" not in raw


def test_an_invocation_error_is_a_record_and_the_report_says_so(rsyslog):
    with emulator("handlers.raises.handler", REPO, env=_syslog_env(rsyslog, "udp"), function_name="raises") as emu:
        result = emu.invoke({"kind": "value", "value": 1})
        messages = rsyslog.wait_for(4, where=lambda m: m["sd"].get("lambda@32473", {}).get("requestId")
                                    == result.request_id)
    by_kind = {m["msgid"]: json.loads(m["msg"]) for m in messages}
    assert by_kind["invocation_error"]["error_type"] == "ValueError"
    assert by_kind["invocation_error"]["level"] == "ERROR"
    assert by_kind["report"]["status"] == "error"
    assert by_kind["report"]["error_type"] == "ValueError"
    assert messages[0]["severity"] == 6  # start: INFO
    assert next(m for m in messages if m["msgid"] == "invocation_error")["severity"] == 3


def test_sigterm_at_shutdown_flushes_records_a_down_sink_still_held(private_rsyslog):
    """Delivered: all 9 records of the invocation. Lost: none. rsyslog is down while the invocation runs, comes
    back, and the records reach it only because the runtime, registered as an extension, gets SIGTERM at shutdown
    and flushes (the sink is backing off, so no later invocation would have retried in time)."""
    rsyslog = private_rsyslog
    env = {**_syslog_env(rsyslog), "FLIGHTREC_SHUTDOWN_EXTENSION": "1", "TELEMETRY_FLUSH_BUDGET_MS": "200"}
    with emulator("handlers.logs.handler", REPO, env=env, function_name="logs") as emu:
        emu.invoke({"lines": 1})  # warm: connection established
        rsyslog.kill()
        result = emu.invoke({"lines": 3})
        assert result.ok  # the sink being down never fails the invocation
        rsyslog.restart()
        assert emu.extensions.names == ["flightrec-shutdown"]
    # the emulator's stop sent SIGTERM (an extension registered), and the runtime flushed before exiting
    messages = rsyslog.wait_for(9, where=lambda m: m["sd"].get("lambda@32473", {}).get("requestId")
                                == result.request_id)
    assert len(messages) == 9


def test_without_the_extension_records_a_down_sink_held_die_with_the_sigkill(private_rsyslog):
    """The control for the test above. Delivered: 0 of 9. Lost: 9 — Lambda (and the emulator) SIGKILLs a runtime
    with no registered extension, and records held only in memory die with it (the documented window)."""
    rsyslog = private_rsyslog
    env = {**_syslog_env(rsyslog), "TELEMETRY_FLUSH_BUDGET_MS": "200", "TELEMETRY_FLUSH_INTERVAL_MS": "60000"}
    with emulator("handlers.logs.handler", REPO, env=env, function_name="logs") as emu:
        emu.invoke({"lines": 1})
        rsyslog.kill()
        result = emu.invoke({"lines": 3})
        assert result.ok
        rsyslog.restart()
        assert emu.extensions.names == []
    rsyslog.wait_for(0)
    time.sleep(1.0)  # nothing more will come: the process is gone
    assert [m for m in rsyslog.messages()
            if m["sd"].get("lambda@32473", {}).get("requestId") == result.request_id] == []


def test_records_spilled_by_a_runtime_killed_at_its_deadline_are_delivered_by_its_successor(private_rsyslog, task_root):
    """rsyslog is down; the handler logs 10 lines and sleeps past its deadline; the memory buffer holds 2 records,
    the rest spill to disk; the emulator kills the process. Delivered: the 10 spilled records (lines 2-10 and the
    deadline warning), by the next runtime process, which adopts the dead one's spill file. Lost: 2 (start and
    line 1, held only in memory when the SIGKILL came)."""
    rsyslog = private_rsyslog
    root = task_root("spiller", """
        import logging, time
        log = logging.getLogger("spiller")
        def handler(event, context):
            if event.get("sleep"):
                for i in range(10):
                    log.info("line %d", i + 1)
                time.sleep(30)
            return "ok"
    """)
    env = {**_syslog_env(rsyslog), "LOGS_BUFFER_MAX_RECORDS": "2", "TELEMETRY_FLUSH_INTERVAL_MS": "60000"}
    rsyslog.kill()
    with emulator("spiller.handler", root, env=env, timeout_s=2.0, function_name="spiller") as emu:
        killed = emu.invoke({"sleep": True})
        assert "Task timed out" in killed.json()["errorMessage"]
        rsyslog.restart()
        assert emu.invoke({}).ok  # a new process: adopts the spill at init, ships it after this invocation
        messages = rsyslog.wait_for(10, where=lambda m: m["sd"].get("lambda@32473", {}).get("requestId")
                                    == killed.request_id)
    texts = [json.loads(m["msg"])["message"] for m in messages]
    assert texts[:9] == [f"line {i}" for i in range(2, 11)]
    assert "about to reach its deadline" in texts[9]
    assert len(messages) == 10
