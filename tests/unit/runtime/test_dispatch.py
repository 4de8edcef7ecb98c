"""Specification of `runtime.dispatch.make_dispatch`: one invocation in, one Outcome out, never an exception."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from runtime.config import RuntimeConfig
from runtime.context import LambdaContext
from runtime.dispatch import Failure, Success, make_dispatch
from runtime.model import Invocation

CONFIG = RuntimeConfig(api_address="127.0.0.1:9001", handler="x.handler", function_name="fn", memory_limit_in_mb="256")


def inv(body: bytes = b"{}", request_id: str = "req-1", **fields) -> Invocation:
    return Invocation(request_id=request_id, body=body, **fields)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return importlib.import_module(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)


def test_success_carries_the_encoded_result():
    # GIVEN a handler that answers from its event and context
    def handler(event, context):
        return {"got": event, "request_id": context.aws_request_id, "fn": context.function_name}

    # WHEN an invocation is dispatched
    outcome = make_dispatch(handler, CONFIG)(inv(b'{"a": 1}'))

    # THEN the outcome is a Success with the JSON body
    assert outcome == Success(b'{"got": {"a": 1}, "request_id": "req-1", "fn": "fn"}', "application/json")


def test_handler_gets_a_lambda_context_with_the_injected_clock():
    seen = {}

    def handler(event, context):
        seen["ctx"] = context
        return context.get_remaining_time_in_millis()

    outcome = make_dispatch(handler, CONFIG, clock=lambda: 100.0)(inv(deadline_ms=100_250))
    assert isinstance(seen["ctx"], LambdaContext)
    assert seen["ctx"].memory_limit_in_mb == "256"
    assert outcome == Success(b"250", "application/json")


def test_bytes_result():
    outcome = make_dispatch(lambda event, context: b"\x89PNG", CONFIG)(inv())
    assert outcome == Success(b"\x89PNG", "application/unknown")


def test_raw_event_for_non_json_content_type():
    outcome = make_dispatch(lambda event, context: event.decode(), CONFIG)(inv(b"plain", content_type="text/plain"))
    assert outcome == Success(b'"plain"', "application/json")


def test_handler_exception_becomes_a_failure_for_the_request(user_module):
    # GIVEN a handler that raises
    module = user_module(
        "dispatch_raises",
        """
        class PaymentDeclined(Exception):
            pass

        def handler(event, context):
            raise PaymentDeclined("card declined")
        """,
    )

    # WHEN it is dispatched
    outcome = make_dispatch(module.handler, CONFIG)(inv(request_id="req-42"))

    # THEN a Failure with the request id, the bare class name in the body and Function.<Name> in the header
    assert isinstance(outcome, Failure)
    assert outcome.exit_code is None
    report = outcome.report
    assert json.loads(report.to_json()) == {
        "errorMessage": "card declined",
        "errorType": "PaymentDeclined",
        "requestId": "req-42",
        "stackTrace": report.stack_trace,
    }
    assert report.header_type == "Function.PaymentDeclined"
    # AND its stack starts in the user's module (the runtime's frames are trimmed)
    assert report.stack_trace[0].startswith(f'  File "{module.__file__}", line 6, in handler')
    assert len(report.stack_trace) == 1


@pytest.mark.parametrize(
    ("body", "error_type"),
    [(b"{bad json", "Runtime.UnmarshalError"), (b"[" * 100_000, "Runtime.UnmarshalError")],
)
def test_bad_event_becomes_a_failure(body, error_type):
    called = []
    outcome = make_dispatch(lambda event, context: called.append(event), CONFIG)(inv(body))
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == error_type
    assert outcome.report.request_id == "req-1"
    assert called == []


def test_unserialisable_result_becomes_a_marshal_error():
    outcome = make_dispatch(lambda event, context: {1, 2}, CONFIG)(inv())
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == "Runtime.MarshalError"
    assert outcome.report.error_message == "Unable to marshal response: Object of type set is not JSON serializable"


@pytest.mark.parametrize(("code", "expected"), [(3, 3), (0, 0), (None, 0), ("fatal: bye", 1)])
def test_sys_exit_becomes_an_exit_failure(code, expected):
    # GIVEN a handler that calls sys.exit
    def handler(event, context):
        sys.exit(code)

    # WHEN it is dispatched
    outcome = make_dispatch(handler, CONFIG)(inv(request_id="req-x"))

    # THEN it is answered as a Runtime.ExitError failure carrying the exit code (the loop exits after posting)
    assert isinstance(outcome, Failure)
    assert outcome.exit_code == expected
    assert outcome.report.error_type == "Runtime.ExitError"
    assert outcome.report.header_type == "Runtime.ExitError"
    assert outcome.report.error_message == (
        f"RequestId: req-x Error: Runtime exited with error: exit status {expected}"
    )
    assert outcome.report.request_id == "req-x"


def test_malformed_deadline_header_is_a_context_unmarshal_failure():
    # GIVEN an invocation whose deadline header did not parse
    called = []
    invocation = Invocation.from_headers(
        {"lambda-runtime-aws-request-id": "req-5", "lambda-runtime-deadline-ms": "tomorrow"}, b"{}"
    )

    # WHEN it is dispatched
    outcome = make_dispatch(lambda event, context: called.append(1), CONFIG)(invocation)

    # THEN it fails for that request only, naming the header, and the handler never ran
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == "Runtime.LambdaContextUnmarshalError"
    assert outcome.report.request_id == "req-5"
    assert "lambda-runtime-deadline-ms" in outcome.report.error_message
    assert called == []


def test_bad_client_context_is_a_context_unmarshal_failure():
    outcome = make_dispatch(lambda event, context: None, CONFIG)(inv(client_context="{nope"))
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == "Runtime.LambdaContextUnmarshalError"
    assert outcome.report.error_message.startswith("Unable to parse Client Context JSON: ")


def test_middlewares_wrap_in_order_first_is_outermost():
    # GIVEN two middlewares that record when they enter and leave
    calls: list[str] = []

    def recording(name):
        def middleware(nxt):
            def wrapped(invocation):
                calls.append(f"{name} in")
                outcome = nxt(invocation)
                calls.append(f"{name} out {type(outcome).__name__}")
                return outcome

            return wrapped

        return middleware

    def handler(event, context):
        calls.append("handler")
        return "ok"

    # WHEN a dispatch is built with [outer, inner] and called
    outcome = make_dispatch(handler, CONFIG, [recording("outer"), recording("inner")])(inv())

    # THEN the first middleware is the outermost
    assert calls == ["outer in", "inner in", "handler", "inner out Success", "outer out Success"]
    assert outcome == Success(b'"ok"', "application/json")


def test_middleware_sees_failures_as_outcomes_not_exceptions():
    seen = []

    def middleware(nxt):
        def wrapped(invocation):
            outcome = nxt(invocation)
            seen.append(outcome)
            return outcome

        return wrapped

    def handler(event, context):
        raise RuntimeError("boom")

    outcome = make_dispatch(handler, CONFIG, [middleware])(inv())
    assert seen == [outcome]
    assert isinstance(outcome, Failure)


def test_middleware_can_replace_the_outcome():
    def override(nxt):
        return lambda invocation: Success(b"{}", "application/json")

    assert make_dispatch(lambda e, c: 1 / 0, CONFIG, [override])(inv()) == Success(b"{}", "application/json")


def test_one_dispatch_serves_many_invocations():
    dispatch = make_dispatch(lambda event, context: event["n"] * 2, CONFIG)
    assert [dispatch(inv(f'{{"n": {n}}}'.encode())) for n in range(3)] == [
        Success(f"{n * 2}".encode(), "application/json") for n in range(3)
    ]
