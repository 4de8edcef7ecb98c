"""The real `./bootstrap` as a child process under the emulator: the Runtime API contract end to end.

Each test states the input, what the runtime must post, and that the loop survives (a later invocation works).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from runtime.emulator import Emulator
from tests.integration.conftest import REPO, emulator

ERROR_KEYS = ["errorMessage", "errorType", "requestId", "stackTrace"]


def _json_lines(emu: Emulator) -> list[dict]:
    records = []
    for stream, line in emu.output:
        if stream == "stdout" and line.startswith("{"):
            records.append(json.loads(line))
    return records


def test_plain_handler_answers_and_the_context_is_complete(task_root):
    # GIVEN a handler that returns what it sees of its context
    root = task_root("ctx", """
        import os
        def handler(event, context):
            return {
                "event": event,
                "request_id": context.aws_request_id,
                "arn": context.invoked_function_arn,
                "function_name": context.function_name,
                "memory": context.memory_limit_in_mb,
                "version": context.function_version,
                "group": context.log_group_name,
                "stream": context.log_stream_name,
                "remaining_positive": context.get_remaining_time_in_millis() > 0,
                "tenant": context.tenant_id,
                "client_custom": context.client_context.custom if context.client_context else None,
                "trace_env": os.environ.get("_X_AMZN_TRACE_ID"),
            }
    """)
    with emulator("ctx.handler", root, memory_mb=256) as emu:
        # WHEN it is invoked with a client context and a tenant id
        result = emu.invoke({"a": 1}, client_context={"custom": {"k": "v"}}, tenant_id="tenant-7")
    # THEN every field reached the handler
    assert result.ok, result.body
    body = result.json()
    assert body["event"] == {"a": 1}
    assert body["request_id"] == result.request_id
    assert body["arn"].endswith(":function:ctx")
    assert body["function_name"] == "ctx"
    assert body["memory"] == "256"
    assert body["version"] == "$LATEST"
    assert body["group"] == "/aws/lambda/ctx"
    assert body["stream"]
    assert body["remaining_positive"] is True
    assert body["tenant"] == "tenant-7"
    assert body["client_custom"] == {"k": "v"}
    assert body["trace_env"].startswith("Root=1-")


def test_typed_handler_validates_and_encodes():
    with emulator("handlers.orders.handler") as emu:
        good = emu.invoke({"order_id": "o1", "customer": "c", "items": [
            {"sku": "a", "quantity": 2, "unit_price_cents": 150}], "coupon": "HALF"})
        bad = emu.invoke({"order_id": "o2", "customer": "c", "items": [
            {"sku": "a", "quantity": "two", "unit_price_cents": 150}]})
    assert good.ok
    assert good.json() == {"order_id": "o1", "total_cents": 150, "item_count": 1}
    assert bad.function_error == "Unhandled"
    error = bad.json()
    assert error["errorType"] == "Runtime.EventValidationError"
    assert "$.items[0].quantity" in error["errorMessage"]
    posted = emu.posts_for(bad.request_id)[-1]
    assert posted.header("Lambda-Runtime-Function-Error-Type") == "Runtime.EventValidationError"


def test_user_exception_body_headers_and_xray_cause():
    with emulator("handlers.raises.handler") as emu:
        result = emu.invoke({"kind": "value", "value": 3})
        after = emu.invoke({})
    error = result.json()
    assert list(error) == ERROR_KEYS
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "bad value: 3"
    assert error["requestId"] == result.request_id
    # runtime frames are trimmed: the first frame is the handler's own
    assert error["stackTrace"][0].startswith(f'  File "{REPO}/handlers/raises.py"')
    assert all("/runtime/" not in frame for frame in error["stackTrace"])
    posted = emu.posts_for(result.request_id)[-1]
    assert posted.header("Lambda-Runtime-Function-Error-Type") == "Function.ValueError"
    cause = json.loads(posted.header("Lambda-Runtime-Function-XRay-Error-Cause"))
    assert cause["exceptions"][0]["type"] == "ValueError"
    assert cause["exceptions"][0]["stack"][0]["path"].endswith("handlers/raises.py")
    # and the loop survived
    assert after.json()["errorType"] == "PaymentDeclined"


def test_bad_inputs_get_clear_errors_and_the_loop_survives(task_root):
    root = task_root("bad", """
        def handler(event, context):
            if event == "set":
                return {1, 2}
            return {"ok": True}
    """)
    with emulator("bad.handler", root) as emu:
        malformed = emu.invoke(b"{not json")
        invalid_utf8 = emu.invoke(b'"\xff\xfe"')
        unserialisable = emu.invoke(b'"set"')
        bad_cognito = emu.invoke({}, cognito_identity="{broken")
        fine = emu.invoke({})
        generation = emu.generation
    assert malformed.json()["errorType"] == "Runtime.UnmarshalError"
    assert malformed.json()["errorMessage"].startswith("Unable to unmarshal input: ")
    assert invalid_utf8.json()["errorType"] == "Runtime.UnmarshalError"
    assert unserialisable.json() == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError", "requestId": unserialisable.request_id, "stackTrace": []}
    assert bad_cognito.json()["errorType"] == "Runtime.LambdaContextUnmarshalError"
    assert bad_cognito.json()["errorMessage"].startswith("Unable to parse Cognito Identity JSON: ")
    assert fine.ok
    assert generation == 1  # one runtime process served them all


def test_response_over_6mb_becomes_function_response_size_too_large(task_root):
    root = task_root("big", """
        def handler(event, context):
            if event.get("big"):
                return "x" * (7 * 1024 * 1024)
            return {"small": True}
    """)
    with emulator("big.handler", root) as emu:
        big = emu.invoke({"big": True})
        small = emu.invoke({})
    assert big.json()["errorType"] == "Function.ResponseSizeTooLarge"
    posts = emu.posts_for(big.request_id)
    assert [p.kind for p in posts] == ["response", "error"]
    assert posts[0].status == 413
    assert posts[1].header("Lambda-Runtime-Function-Error-Type") == "Function.ResponseSizeTooLarge"
    assert small.ok


def test_a_rejected_post_is_logged_and_the_loop_continues():
    with emulator("handlers.echo.handler") as emu:
        emu.invoke({"warm": 1})
        # GIVEN the API will refuse the next answer with 400
        emu.inject.fail_next_post(400)
        # WHEN an invocation is answered (its invoker never gets an answer: the API refused it)
        with pytest.raises(TimeoutError):
            emu.invoke({"rejected": 1}, timeout_s=2)
        # THEN the runtime logged it loudly and went back to /next in the same process
        assert emu.wait_for_output("rejected the response")
        calls = emu.api_calls
        generation = emu.generation
    last_post = max(i for i, (method, _) in enumerate(calls) if method == "POST")
    assert ("GET", "/2018-06-01/runtime/invocation/next") in calls[last_post + 1:]
    assert generation == 1


def test_a_missing_request_id_is_skipped_and_the_event_served_again():
    with emulator("handlers.echo.handler") as emu:
        emu.invoke({})
        emu.inject.omit_request_id()
        result = emu.invoke({"n": 1})
        assert emu.wait_for_output("without a Lambda-Runtime-Aws-Request-Id")
    assert result.ok and result.json() == {"n": 1}


def _wait_until_exited(emu: Emulator, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while emu.runtime_pid is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.runtime_pid is None, "the runtime did not exit"


def test_a_500_on_next_makes_the_runtime_exit_and_the_platform_restart_it():
    with emulator("handlers.echo.handler") as emu:
        first = emu.invoke({"n": 1})
        # GIVEN the API answers the runtime's waiting /next with a 500
        emu.inject.fail_next(500)
        emu.invoke({"n": 2})  # answered by the emulator once the runtime is gone
        # THEN the runtime exits non-zero at once, saying why, and the next invoke gets a fresh runtime
        _wait_until_exited(emu)
        assert emu.wait_for_output("the Runtime API failed")
        third = emu.invoke({"n": 3})
        generation = emu.generation
    assert first.ok and third.ok
    assert third.json() == {"n": 3}
    assert generation == 2


def test_a_connection_lost_mid_next_exits_non_zero_and_is_restarted():
    with emulator("handlers.echo.handler") as emu:
        emu.invoke({})
        emu.inject.drop_next_midway()
        result = emu.invoke({"n": 2})  # the runtime dies; the emulator restarts it and redelivers or fails
        later = emu.invoke({"n": 3})
        assert emu.wait_for_output("connection to the Runtime API lost")
    assert later.ok and later.json() == {"n": 3}
    assert result.status == 200


def test_init_errors_are_posted_with_aws_types(task_root):
    cases = {
        "nodot": ("Runtime.MalformedHandlerName", "Bad handler 'nodot': not enough values to unpack"),
        "sys.handler": ("Runtime.BuiltInModuleConflict", "Cannot use built-in module sys as a handler module"),
        "missing.handler": ("Runtime.ImportModuleError", "Unable to import module 'missing': No module named"),
        "syntax.handler": ("Runtime.UserCodeSyntaxError", "Syntax error in module 'syntax'"),
        "ok.nothere": ("Runtime.HandlerNotFound", "Handler 'nothere' missing on module 'ok'"),
        "boom.handler": ("Function.RuntimeError", "import-time failure"),
        "../etc.handler": ("Runtime.ImportModuleError", "Unable to import module '../etc'"),
    }
    task_root("syntax", "def handler(event, context):\n    return (\n")
    task_root("ok", "def handler(event, context):\n    return 1\n")
    root = task_root("boom", "raise RuntimeError('import-time failure')\n")
    for handler, (header, message) in cases.items():
        with emulator(handler, root, function_name="fn") as emu:
            result = emu.invoke({})
            posted = [p for p in emu.posts if p.kind == "init_error"]
        assert result.function_error == "Unhandled", handler
        assert posted, handler
        assert posted[0].header("Lambda-Runtime-Function-Error-Type") == header, handler
        body = json.loads(posted[0].body)
        assert list(body) == ERROR_KEYS
        assert body["requestId"] == ""
        assert body["errorMessage"].startswith(message), (handler, body)
        assert result.json()["errorMessage"] == body["errorMessage"]


def test_a_module_named_like_the_runtime_is_an_init_error(task_root):
    task_root("telemetry", "x = 1\n")
    root = task_root("app", "def handler(event, context):\n    return 1\n")
    with emulator("app.handler", root) as emu:
        result = emu.invoke({})
    assert result.json()["errorType"] == "Runtime.ModuleNameConflict"


def test_sys_exit_is_reported_then_the_process_exits_with_its_code(task_root):
    root = task_root("quits", """
        import sys, logging
        def handler(event, context):
            if event.get("exit"):
                logging.getLogger("quits").warning("about to exit")
                sys.exit(3)
            return "alive"
    """)
    with emulator("quits.handler", root) as emu:
        result = emu.invoke({"exit": True})
        _wait_until_exited(emu)
        later = emu.invoke({})  # a fresh runtime
        generation = emu.generation
    # THEN the runtime itself reported the exit for that request, its record was flushed, and it was replaced
    assert result.json()["errorType"] == "Runtime.ExitError"
    assert result.json()["errorMessage"].endswith("exit status 3")
    assert [p.kind for p in emu.posts_for(result.request_id)] == ["error"]
    assert any("about to exit" in line for _, line in emu.output)
    assert later.ok and later.json() == "alive"
    assert generation == 2
    assert any("about to exit" in line for _, line in emu.output)


def test_timeout_kills_and_restarts_the_runtime(task_root):
    root = task_root("slow", """
        import time
        def handler(event, context):
            if event.get("sleep"):
                time.sleep(30)
            return "fast"
    """)
    with emulator("slow.handler", root, timeout_s=1.0) as emu:
        slow = emu.invoke({"sleep": True})
        fast = emu.invoke({})
        platform = list(emu.test_platform_lines)
    assert "Task timed out after 1.00 seconds" in slow.json()["errorMessage"]
    assert fast.ok and fast.json() == "fast"
    reports = [line for line in platform if line.startswith("REPORT")]
    assert len(reports) == 2 and "Init Duration" in reports[-1]


def test_api_unreachable_at_start_exits_non_zero_with_a_clear_message():
    # GIVEN a Runtime API address where nothing listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
           "_HANDLER": "handlers.echo.handler", "LAMBDA_TASK_ROOT": str(REPO)}
    # WHEN bootstrap starts
    proc = subprocess.run([sys.executable, str(REPO / "bootstrap")], env=env, capture_output=True, text=True,
                          check=False, timeout=30)
    # THEN it retries briefly, then exits non-zero saying why
    assert proc.returncode != 0
    assert "cannot connect to the Runtime API" in proc.stdout + proc.stderr


def test_missing_runtime_api_variable_is_a_clear_error():
    proc = subprocess.run([sys.executable, str(REPO / "bootstrap")], env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert "AWS_LAMBDA_RUNTIME_API is not set" in proc.stderr


def test_records_carry_the_request_id_and_print_is_captured():
    with emulator("handlers.logs.handler") as emu:
        result = emu.invoke({"lines": 2})
        emu.wait_for_output("printed to stdout")
    records = [r for r in _json_lines(emu) if r.get("request_id") == result.request_id]
    messages = [r["message"] for r in records]
    assert "line 1 of 2" in messages and "line 2 of 2" in messages
    printed = next(r for r in records if r["message"] == "printed to stdout")
    assert printed["logger"] == "stdout"
    caught = next(r for r in records if r["message"] == "caught and logged")
    assert caught["exception"]["type"] == "ZeroDivisionError"
    assert next(r for r in records if r["message"] == "line 1 of 2")["line_no"] == 1


def test_a_bad_telemetry_variable_is_an_init_error_naming_it():
    with emulator("handlers.echo.handler", env={"LOGS_POLICY": "paranoid"}) as emu:
        result = emu.invoke({})
        posted = [p for p in emu.posts if p.kind == "init_error"]
    assert result.json()["errorType"] == "Runtime.InvalidConfiguration"
    assert "LOGS_POLICY" in result.json()["errorMessage"]
    assert posted[0].header("Lambda-Runtime-Function-Error-Type") == "Runtime.InvalidConfiguration"
