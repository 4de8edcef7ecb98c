"""AWS's own runtime client (`awslambdaric`) against the emulator: proof that it speaks the real protocol."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.emulator import Emulator

APP = """
def ok(event, context):
    print("handling", context.aws_request_id, flush=True)
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "custom": context.client_context.custom if context.client_context else None,
        "tenant_id": getattr(context, "tenant_id", None),
        "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 2000,
    }


class PaymentDeclined(Exception):
    pass


def boom(event, context):
    raise PaymentDeclined("card ending 4242 was declined")
"""


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    (tmp_path / "ric_app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def ric(task_root: Path, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    handler = f"ric_app.{request.param}"
    with Emulator(
        handler=handler,
        task_root=task_root,
        command=[sys.executable, "-m", "awslambdaric", handler],
        timeout_s=2,
        capture_output=True,
        platform_sink=lambda _: None,
    ) as emulator:
        yield emulator


@pytest.mark.parametrize("ric", ["ok"], indirect=True)
def test_awslambdaric_success_with_context(ric: Emulator) -> None:
    result = ric.invoke({"a": 1}, client_context={"custom": {"k": "v"}}, tenant_id="tenant-7")
    assert (result.status, result.function_error, result.content_type) == (200, None, "application/json")
    assert result.json() == {
        "event": {"a": 1},
        "request_id": result.request_id,
        "function_name": "ric_app",
        "memory": "128",
        "arn": "arn:aws:lambda:us-east-1:012345678912:function:ric_app",
        "custom": {"k": "v"},
        "tenant_id": "tenant-7",
        "remaining_ok": True,
    }
    # a second invocation on the same runtime (one keep-alive client, no restart)
    again = ric.invoke({"b": 2})
    assert again.json()["event"] == {"b": 2}
    assert ric.generation == 1
    assert ric.wait_for_output(f"handling {again.request_id}")
    reports = [line for line in ric.platform_lines if line.startswith("REPORT")]
    assert ["Init Duration" in line for line in reports] == [True, False]


@pytest.mark.parametrize("ric", ["boom"], indirect=True)
def test_awslambdaric_exception(ric: Emulator) -> None:
    result = ric.invoke({})
    assert (result.status, result.function_error) == (200, "Unhandled")
    body = result.json()
    assert body["errorType"] == "PaymentDeclined"
    assert body["errorMessage"] == "card ending 4242 was declined"
    assert body["requestId"] == result.request_id
    assert any("ric_app.py" in frame for frame in body["stackTrace"])
    [post] = ric.posts_for(result.request_id)
    assert post.kind == "error"
    cause = post.header("Lambda-Runtime-Function-XRay-Error-Cause")
    assert cause is not None
    exceptions = json.loads(cause)["exceptions"]
    assert exceptions[0]["type"] == "PaymentDeclined"
    # the runtime survives a handler exception
    assert ric.invoke({}).function_error == "Unhandled"
    assert ric.generation == 1


@pytest.mark.parametrize("ric", ["missing_function"], indirect=True)
def test_awslambdaric_init_error(ric: Emulator) -> None:
    result = ric.invoke({})
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Runtime.HandlerNotFound"
    assert ric.last_error_type_header == "Runtime.HandlerNotFound"
    assert [post.kind for post in ric.posts] == ["init_error"]
