"""Specification of `runtime.model`: what one `/next` answer becomes, and the exact error JSON awslambdaric posts."""

from __future__ import annotations

import json

import pytest

from runtime.model import ErrorReport, Invocation

ALL_HEADERS = {
    "lambda-runtime-aws-request-id": "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
    "lambda-runtime-deadline-ms": "1542409706888",
    "lambda-runtime-invoked-function-arn": "arn:aws:lambda:us-east-2:123456789012:function:custom-runtime",
    "lambda-runtime-trace-id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
    "lambda-runtime-client-context": '{"custom": {"k": "v"}}',
    "lambda-runtime-cognito-identity": '{"cognitoIdentityId": "id-1"}',
    "lambda-runtime-aws-tenant-id": "tenant-42",
    "content-type": "application/json",
}


def test_from_headers_reads_every_header():
    # GIVEN a /next answer carrying every header the Runtime API can send
    body = b'{"hello": "world"}'

    # WHEN it becomes an Invocation
    inv = Invocation.from_headers(ALL_HEADERS, body)

    # THEN every value is kept raw (parsing JSON headers is the context's job) and the deadline is an int
    assert inv == Invocation(
        request_id="8476a536-e9f4-11e8-9739-2dfe598c3fcd",
        body=body,
        deadline_ms=1542409706888,
        invoked_function_arn="arn:aws:lambda:us-east-2:123456789012:function:custom-runtime",
        trace_id="Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
        client_context='{"custom": {"k": "v"}}',
        cognito_identity='{"cognitoIdentityId": "id-1"}',
        tenant_id="tenant-42",
        content_type="application/json",
        malformed_headers=(),
    )


def test_from_headers_with_no_headers_does_not_crash():
    # GIVEN a /next answer without any header at all
    # WHEN it becomes an Invocation
    inv = Invocation.from_headers({}, b"")

    # THEN nothing raises: the request id is empty (the loop skips it) and every optional value is None
    assert inv.request_id == ""
    assert inv.body == b""
    assert inv.deadline_ms is None
    assert inv.invoked_function_arn is None
    assert inv.trace_id is None
    assert inv.client_context is None
    assert inv.cognito_identity is None
    assert inv.tenant_id is None
    assert inv.content_type is None
    assert inv.malformed_headers == ()


def test_empty_header_values_are_none():
    # GIVEN headers that are present but empty (RIE only sets non-empty ones, but a proxy may not)
    headers = {name: "" for name in ALL_HEADERS if name != "lambda-runtime-deadline-ms"}

    # WHEN it becomes an Invocation
    inv = Invocation.from_headers(headers, b"{}")

    # THEN empty values read as absent
    assert inv.request_id == ""
    assert (inv.trace_id, inv.client_context, inv.cognito_identity, inv.tenant_id) == (None, None, None, None)
    assert inv.content_type is None


def test_request_id_and_deadline_are_stripped():
    # GIVEN values surrounded by whitespace
    inv = Invocation.from_headers(
        {"lambda-runtime-aws-request-id": "  abc \t", "lambda-runtime-deadline-ms": " 12345 "}, b""
    )

    # THEN they are read without it
    assert inv.request_id == "abc"
    assert inv.deadline_ms == 12345
    assert inv.malformed_headers == ()


@pytest.mark.parametrize("deadline", ["soon", "", "12.5", "0x10"])
def test_malformed_deadline_is_recorded_not_raised(deadline):
    # GIVEN a deadline header that is not an integer
    headers = {"lambda-runtime-aws-request-id": "r-1", "lambda-runtime-deadline-ms": deadline}

    # WHEN it becomes an Invocation
    inv = Invocation.from_headers(headers, b"{}")

    # THEN it does not raise (the loop must survive); the header is named in malformed_headers
    assert inv.request_id == "r-1"
    assert inv.deadline_ms is None
    assert inv.malformed_headers == ("lambda-runtime-deadline-ms",)


def test_invocation_is_immutable():
    inv = Invocation.from_headers(ALL_HEADERS, b"{}")
    with pytest.raises(AttributeError):
        inv.request_id = "other"  # type: ignore[misc]


def test_error_report_json_has_awslambdaric_key_order_and_shape():
    # GIVEN a report as awslambdaric's make_error would build it
    report = ErrorReport(
        error_type="ValueError",
        error_message="bad value: 'ü'",
        stack_trace=['  File "/var/task/app.py", line 3, in handler\n    raise ValueError(x)\n'],
        request_id="req-1",
        header_type="Function.ValueError",
        xray_cause="{}",
    )

    # WHEN it is serialised
    raw = report.to_json()
    decoded = json.loads(raw)

    # THEN exactly four keys, in awslambdaric's order; headers and the X-Ray cause are not part of the body
    assert list(decoded) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert decoded == {
        "errorMessage": "bad value: 'ü'",
        "errorType": "ValueError",
        "requestId": "req-1",
        "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n    raise ValueError(x)\n'],
    }
    # AND the bytes are UTF-8 JSON (non-ASCII characters are not escaped)
    assert "ü".encode() in raw


def test_error_report_defaults_match_an_init_error():
    # GIVEN a report with only type and message (an init error has no request id and maybe no stack)
    report = ErrorReport("Runtime.ImportModuleError", "Unable to import module 'x': No module named 'x'")

    # THEN the body has an empty request id and an empty stack, as awslambdaric's make_error sends them
    assert json.loads(report.to_json()) == {
        "errorMessage": "Unable to import module 'x': No module named 'x'",
        "errorType": "Runtime.ImportModuleError",
        "requestId": "",
        "stackTrace": [],
    }
