"""The runtime child: lazy start, Lambda environment, output, timeouts, crashes, init errors, restarts, shutdown.

The child is a tiny runtime written below and run with `python -c`; each event tells it what to do.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.emulator import Emulator

FAKE_RUNTIME = r"""
import http.client, json, os, signal, sys, threading, time

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))

def call(method, path, body=None, headers=None, connection=conn):
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.headers, response.read()

mode = sys.argv[1] if len(sys.argv) > 1 else "loop"
if mode == "init-error":
    error = {
        "errorMessage": "Unable to import module 'app': No module named 'app'",
        "errorType": "Runtime.ImportModuleError",
    }
    body = json.dumps(error, separators=(",", ":")).encode()
    call("POST", "/2018-06-01/runtime/init/error", body, {"Lambda-Runtime-Function-Error-Type": error["errorType"]})
    sys.exit(1)
if mode in ("extension", "sigterm-marker"):
    marker = os.environ["MARKER"]
    got_shutdown = threading.Event()
    def on_term(signum, frame):
        got_shutdown.wait(0.4)  # like a runtime that flushes on SIGTERM, within the 500 ms grace
        with open(marker, "a") as f:
            f.write("SIGTERM\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
if mode == "extension":
    ext = http.client.HTTPConnection(host, int(port))
    _, headers, _ = call("POST", "/2020-01-01/extension/register", b'{"events": ["SHUTDOWN"]}',
                         {"Lambda-Extension-Name": "internal-no-op"}, connection=ext)
    identifier = headers["Lambda-Extension-Identifier"]
    def wait_shutdown():
        path = "/2020-01-01/extension/event/next"
        _, _, event = call("GET", path, headers={"Lambda-Extension-Identifier": identifier}, connection=ext)
        with open(marker, "a") as f:
            f.write(event.decode() + "\n")
        got_shutdown.set()
    threading.Thread(target=wait_shutdown, daemon=True).start()
while True:
    _, headers, body = call("GET", "/2018-06-01/runtime/invocation/next")
    request_id = headers["Lambda-Runtime-Aws-Request-Id"]
    event = json.loads(body)
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "exit":
        sys.exit(event["code"])
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "env":
        body = json.dumps(dict(os.environ) | {"cwd": os.getcwd()}).encode()
    elif action == "print":
        print(event["text"], flush=True)
        print(event["text"] + " on stderr", file=sys.stderr, flush=True)
    elif action == "pid":
        body = json.dumps(os.getpid()).encode()
    elif action == "respond-then-hang":
        call("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", b'"answered"')
        print("flushing after the response", flush=True)
        time.sleep(60)
    call("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", body, {"Content-Type": "application/json"})
"""


def fake_runtime(mode: str = "loop") -> list[str]:
    return [sys.executable, "-c", FAKE_RUNTIME, mode]


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(
        handler="handlers.echo.handler",
        task_root=tmp_path,
        command=fake_runtime(),
        timeout_s=0.5,
        capture_output=True,
        platform_sink=lambda _: None,
    ) as emulator:
        yield emulator


def _report_fields(line: str) -> list[str]:
    """REPORT's field names in order; also checks the tab layout and the billed duration rule."""
    assert line.endswith("\t")
    parts = line[:-1].split("\t")
    values = dict(part.split(": ", 1) for part in parts[1:])
    duration = float(values["Duration"].removesuffix(" ms"))
    assert int(values["Billed Duration"].removesuffix(" ms")) == max(1, math.ceil(duration))
    assert re.fullmatch(r"\d+\.\d\d ms", values["Duration"])
    return [part.split(": ", 1)[0] for part in parts]


def _gone(pid: int) -> bool:
    """True once `pid` no longer exists (the kill is immediate; reaping by the emulator may take a moment)."""
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


def _reports(emu: Emulator) -> list[str]:
    return [line for line in emu.platform_lines if line.startswith("REPORT")]


def test_runtime_starts_at_the_first_invoke_with_lambdas_environment(emu: Emulator, tmp_path: Path) -> None:
    # GIVEN an emulator without eager start: no child yet
    assert emu.runtime_pid is None
    # WHEN invoked
    result = emu.invoke({"action": "env"})
    # THEN a child runs, with Lambda's variables, in the task root
    env = result.json()
    assert emu.runtime_pid is not None
    assert env["AWS_LAMBDA_RUNTIME_API"] == emu.runtime_api
    assert env["_HANDLER"] == "handlers.echo.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(tmp_path)
    assert env["cwd"] == str(tmp_path)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "echo"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/echo"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert (env["AWS_REGION"], env["AWS_DEFAULT_REGION"]) == ("us-east-1", "us-east-1")
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["TZ"] == ":UTC"


def test_eager_start_and_extra_environment(tmp_path: Path) -> None:
    with Emulator(
        handler="app.handler",
        task_root=tmp_path,
        command=fake_runtime(),
        function_name="orders",
        memory_mb=512,
        region="eu-west-1",
        env={"LOGS_POLICY": "strict", "AWS_LAMBDA_LOG_FORMAT": "JSON"},
        eager=True,
        platform_sink=lambda _: None,
    ) as emu:
        assert emu.runtime_pid is not None  # started before any invoke
        env = emu.invoke({"action": "env"}).json()
    assert env["LOGS_POLICY"] == "strict"
    assert env["AWS_LAMBDA_LOG_FORMAT"] == "JSON"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "orders"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["AWS_REGION"] == "eu-west-1"


def test_child_output_is_captured_line_by_line(emu: Emulator) -> None:
    emu.invoke({"action": "print", "text": "hello-7f3a"})
    assert emu.wait_for_output("hello-7f3a on stderr")
    assert ("stdout", "hello-7f3a") in emu.output
    assert ("stderr", "hello-7f3a on stderr") in emu.output


def test_report_has_init_duration_only_after_a_start(emu: Emulator) -> None:
    # WHEN two invocations run on one runtime, then the runtime crashes, then one more runs
    emu.invoke({})
    emu.invoke({})
    emu.invoke({"action": "exit", "code": 2})
    emu.invoke({})
    # THEN Lambda's field order; Init Duration on the first of each runtime only
    base = ["REPORT RequestId", "Duration", "Billed Duration", "Memory Size", "Max Memory Used"]
    fields = [_report_fields(line) for line in _reports(emu)]
    cold = [*base, "Init Duration"]
    assert fields == [cold, base, base, cold]
    first = _reports(emu)[0]
    assert "\tMemory Size: 128 MB\t" in first
    assert int(re.search(r"Max Memory Used: (\d+) MB", first)[1]) > 0  # type: ignore[index]


def test_each_invocation_gets_start_end_report_in_order(emu: Emulator) -> None:
    result = emu.invoke({})
    rid = result.request_id
    lines = emu.platform_lines
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[1] == f"END RequestId: {rid}"
    assert lines[2].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert len(lines) == 3


def test_timeout_kills_the_runtime_answers_lambdas_message_and_restarts(emu: Emulator) -> None:
    # GIVEN a runtime that answered once (so its pid is known)
    first_pid = emu.invoke({"action": "pid"}).json()
    # WHEN an invocation outlives the 0.5 s timeout
    result = emu.invoke({"action": "sleep", "seconds": 30})
    # THEN the invoker gets Lambda's timeout error...
    assert (result.status, result.function_error) == (200, "Unhandled")
    body = json.loads(result.body)
    assert list(body) == ["errorMessage"]
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {result.request_id} Task timed out after 0.50 seconds",
        body["errorMessage"],
    )
    # ...the timeout line sits between START and END...
    lines = emu.platform_lines
    start = lines.index(f"START RequestId: {result.request_id} Version: $LATEST")
    assert lines[start + 1] == body["errorMessage"]
    assert lines[start + 2] == f"END RequestId: {result.request_id}"
    # ...the runtime was killed, and the next invoke runs on a fresh one (with an Init Duration again)
    assert _gone(first_pid)
    second = emu.invoke({"action": "pid"})
    assert second.ok
    assert second.json() != first_pid
    assert emu.generation == 2
    assert "Init Duration" in _reports(emu)[-1]


def test_logs_written_after_the_response_still_come_before_end(emu: Emulator) -> None:
    # GIVEN a runtime that posts the response, then writes a log line (its flush), then polls /next
    emu.invoke({"action": "print", "text": "before the response"})
    result = emu.invoke({"x": 1})
    # THEN REPORT is there when invoke returns, and it is the last line
    assert emu.platform_lines[-1].startswith(f"REPORT RequestId: {result.request_id}\t")


def test_runtime_not_back_at_next_by_the_deadline_is_timed_out_but_the_invoker_keeps_its_answer(
    emu: Emulator,
) -> None:
    # WHEN the runtime answers, then hangs instead of polling /next
    result = emu.invoke({"action": "respond-then-hang"})
    # THEN the invoker has the answer; the platform logs a timeout and replaces the runtime
    assert (result.body, result.function_error) == (b'"answered"', None)
    lines = emu.platform_lines
    assert re.fullmatch(rf"\S+Z {result.request_id} Task timed out after 0.50 seconds", lines[-3])
    assert lines[-2] == f"END RequestId: {result.request_id}"
    assert emu.runtime_pid is None
    assert emu.invoke({"y": 2}).json() == {"y": 2}
    assert emu.generation == 2


def test_runtime_exit_during_an_invocation_is_a_runtime_exit_error(emu: Emulator) -> None:
    result = emu.invoke({"action": "exit", "code": 3})
    assert (result.status, result.function_error) == (200, "Unhandled")
    assert (
        result.body
        == json.dumps(
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3",
            },
            separators=(",", ":"),
        ).encode()
    )
    # the next invoke re-inits
    assert emu.invoke({"x": 1}).json() == {"x": 1}
    assert emu.generation == 2


def test_runtime_killed_by_a_signal_is_reported_as_such(emu: Emulator) -> None:
    result = emu.invoke({"action": "kill"})
    assert result.json() == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: signal: killed",
    }
    assert f"RequestId: {result.request_id} Error: Runtime exited with error: signal: killed" in emu.platform_lines
    assert emu.invoke({}).ok


def test_init_error_answers_the_first_invoke_and_the_next_invoke_reinits(tmp_path: Path) -> None:
    with Emulator(
        task_root=tmp_path, command=fake_runtime("init-error"), timeout_s=1, platform_sink=lambda _: None
    ) as emu:
        first = emu.invoke({})
        assert first.function_error == "Unhandled"
        assert first.json() == {
            "errorMessage": "Unable to import module 'app': No module named 'app'",
            "errorType": "Runtime.ImportModuleError",
        }
        assert emu.last_error_type_header == "Runtime.ImportModuleError"
        assert emu.generation == 1
        second = emu.invoke({})
        assert second.json()["errorType"] == "Runtime.ImportModuleError"
        assert emu.generation == 2  # a new runtime tried again
        # an init that failed still reports its Init Duration
        assert all("Init Duration" in line for line in _reports(emu))


def test_eager_init_error_is_kept_for_the_first_invoke(tmp_path: Path) -> None:
    with Emulator(
        task_root=tmp_path, command=fake_runtime("init-error"), eager=True, platform_sink=lambda _: None
    ) as emu:
        # GIVEN the runtime reported its init error before any invoke
        deadline = time.monotonic() + 5
        while not emu.posts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [post.kind for post in emu.posts] == ["init_error"]
        # WHEN the first invoke arrives THEN it gets that error, from the same runtime generation
        assert emu.invoke({}).json()["errorType"] == "Runtime.ImportModuleError"
        assert emu.generation == 1


def test_runtime_that_never_reaches_next_times_out_at_init(tmp_path: Path) -> None:
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    with Emulator(
        task_root=tmp_path, command=hang, timeout_s=0.2, init_timeout_s=0.3, platform_sink=lambda _: None
    ) as emu:
        result = emu.invoke({})
        assert result.function_error == "Unhandled"
        assert "Task timed out after 0.20 seconds" in result.json()["errorMessage"]
        assert emu.runtime_pid is None  # killed


def test_a_command_that_cannot_start_is_an_invalid_entrypoint(tmp_path: Path) -> None:
    with Emulator(task_root=tmp_path, command=[str(tmp_path / "missing")], platform_sink=lambda _: None) as emu:
        result = emu.invoke({})
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Runtime.InvalidEntrypoint"


def test_shutdown_with_an_extension_sends_shutdown_event_then_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with Emulator(
        task_root=tmp_path,
        command=fake_runtime("extension"),
        env={"MARKER": str(marker)},
        platform_sink=lambda _: None,
    ) as emu:
        assert emu.invoke({"a": 1}).json() == {"a": 1}
        assert emu.extensions.names == ["internal-no-op"]
    lines = marker.read_text().splitlines()
    assert lines[-1] == "SIGTERM"
    shutdown = json.loads(lines[0])
    assert shutdown["eventType"] == "SHUTDOWN"
    assert shutdown["shutdownReason"] == "spindown"


def test_shutdown_without_an_extension_is_sigkill(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with Emulator(
        task_root=tmp_path,
        command=fake_runtime("sigterm-marker"),
        env={"MARKER": str(marker)},
        platform_sink=lambda _: None,
    ) as emu:
        assert emu.invoke({}).ok
        pid = emu.runtime_pid
    assert pid is not None
    assert not marker.exists()  # the SIGTERM handler never ran
    assert _gone(pid)
