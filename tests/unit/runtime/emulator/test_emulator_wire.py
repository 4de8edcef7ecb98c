"""Pure pieces of the emulator: wire helpers, platform line formats, the child's environment, exit wording."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from runtime.emulator import wire
from runtime.emulator.platform_log import (
    billed_ms,
    format_end,
    format_report,
    format_start,
    format_timeout,
    read_max_memory_mb,
)
from runtime.emulator.supervisor import FunctionSettings, describe_exit, lambda_environment


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Runtime.ImportModuleError", "Runtime.ImportModuleError"),
        ("Function.ValueError", "Function.ValueError"),
        ("Function.ResponseSizeTooLarge", "Function.ResponseSizeTooLarge"),
        ("ValueError", "Runtime.Unknown"),
        ("Runtime.lowercase", "Runtime.Unknown"),
        ("Runtime.Has9Digit", "Runtime.Unknown"),
        ("Function.with-dash", "Function.Unknown"),
        ("Sandbox.Timeout", "Runtime.Unknown"),
        ("", "Runtime.Unknown"),
        (None, "Runtime.Unknown"),
    ],
)
def test_error_type_header_is_normalised_like_the_platform(header: str | None, expected: str) -> None:
    assert wire.normalise_error_type(header) == expected


def test_trace_id_has_lambdas_shape_and_embeds_the_epoch() -> None:
    trace = wire.new_trace_id(now=0x6567ABCD)
    assert re.fullmatch(r"Root=1-6567abcd-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0", trace)


def test_arn_log_stream_and_default_function_name() -> None:
    assert wire.function_arn("eu-west-1", "echo") == "arn:aws:lambda:eu-west-1:012345678912:function:echo"
    assert re.fullmatch(r"2024/02/29/\[\$LATEST\][0-9a-f]{32}", wire.log_stream_name(now=1709208000))
    assert wire.default_function_name("handlers.echo.handler") == "echo"
    assert wire.default_function_name("app.handler") == "app"
    assert wire.default_function_name("handler") == "function"


def test_error_bodies_are_the_platforms_exact_text() -> None:
    assert wire.INVALID_REQUEST_ID_BODY == b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}'
    assert wire.TOO_LARGE_BODY == (
        b'{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}'
    )
    assert wire.MAX_PAYLOAD_BYTES == 6291556


def test_start_end_and_report_lines_follow_lambdas_format() -> None:
    rid = "8f507cfc-0000-4000-8000-000000000001"
    assert format_start(rid) == f"START RequestId: {rid} Version: $LATEST"
    assert format_end(rid) == f"END RequestId: {rid}"
    assert format_report(rid, 12.344, 128, 31, 45.666) == (
        f"REPORT RequestId: {rid}\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 31 MB\tInit Duration: 45.67 ms\t"
    )
    assert format_report(rid, 3.0, 256, 40, None) == (
        f"REPORT RequestId: {rid}\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 40 MB\t"
    )


@pytest.mark.parametrize(
    ("duration", "billed"), [(12.34, 13), (12.0, 12), (12.001, 12), (12.006, 13), (0.2, 1), (0.0, 1)]
)
def test_billed_duration_is_the_printed_duration_rounded_up(duration: float, billed: int) -> None:
    assert billed_ms(duration) == billed


def test_timeout_line_has_two_decimals() -> None:
    assert format_timeout("2024-01-01T00:00:03.000Z", "rid", 3) == (
        "2024-01-01T00:00:03.000Z rid Task timed out after 3.00 seconds"
    )
    assert format_timeout("t", "rid", 0.5).endswith("Task timed out after 0.50 seconds")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", wire.rfc3339_now())


def test_max_memory_is_read_from_vmhwm_and_rounded_up_to_mb(tmp_path: Path) -> None:
    # GIVEN a fake /proc with one process status file
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text("Name:\tpython\nVmPeak:\t 99999 kB\nVmHWM:\t   31745 kB\nVmRSS:\t 1 kB\n")
    # THEN VmHWM (not VmPeak or VmRSS) is reported, in MB rounded up; a missing process gives None
    assert read_max_memory_mb(42, proc=tmp_path) == 32
    (tmp_path / "42" / "status").write_text("VmHWM:\t   31744 kB\n")
    assert read_max_memory_mb(42, proc=tmp_path) == 31
    assert read_max_memory_mb(43, proc=tmp_path) is None


@pytest.mark.parametrize(
    ("returncode", "text"),
    [
        (1, "exit status 1"),
        (0, "exit status 0"),
        (-signal.SIGKILL, "signal: killed"),
        (-signal.SIGTERM, "signal: terminated"),
        (-signal.SIGSEGV, "signal: segmentation fault"),
    ],
)
def test_exit_is_described_in_gos_wording(returncode: int, text: str) -> None:
    assert describe_exit(returncode) == text


def test_child_environment_has_lambdas_variables_and_user_overrides(tmp_path: Path) -> None:
    settings = FunctionSettings(
        handler="handlers.echo.handler",
        task_root=tmp_path,
        function_name="echo",
        memory_mb=256,
        region="eu-central-1",
        log_stream_name="2024/01/01/[$LATEST]" + "a" * 32,
    )
    env = lambda_environment(
        settings, "127.0.0.1:9001", base_env={"PATH": "/bin", "TZ": "Europe/Paris"}, extra_env={"FOO": "bar"}
    )
    assert env == {
        "PATH": "/bin",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "_HANDLER": "handlers.echo.handler",
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "AWS_LAMBDA_FUNCTION_NAME": "echo",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/echo",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]" + "a" * 32,
        "AWS_REGION": "eu-central-1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "TZ": ":UTC",
        "FOO": "bar",
    }
