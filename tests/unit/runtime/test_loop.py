"""Specification of `runtime.loop.run`: /next → dispatch → post → after_each, driven by FakeTransport scripts.

Every script ends when it runs out: the fake then raises RuntimeApiError, as a vanished Runtime API would, and
`run` lets it propagate (the process exits and the platform replaces it).
"""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest

from runtime import loop
from runtime.api_client import Response, RuntimeApiClient
from runtime.config import RuntimeConfig
from runtime.dispatch import Failure, Success, make_dispatch
from runtime.errors import RuntimeApiError
from tests.fakes.transport import ACCEPTED, FakeTransport, Sent, next_response

CONFIG = RuntimeConfig(api_address="127.0.0.1:9001", handler="x.handler")
NEXT = Sent("GET", "/2018-06-01/runtime/invocation/next", {}, b"")


def echo(event, context):
    return event


def fails(event, context):
    raise KeyError("missing")


class AfterEach:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __call__(self, invocation, outcome) -> None:
        self.calls.append((invocation.request_id, outcome))


def run_until_api_gone(transport, handler=echo, **kwargs):
    """Run the loop over the script; it ends with the RuntimeApiError of the exhausted script."""
    with pytest.raises(RuntimeApiError, match="script exhausted"):
        loop.run(RuntimeApiClient(transport), make_dispatch(handler, CONFIG), **kwargs)
    return transport.sent


def test_success_is_posted_to_response_with_its_content_type():
    # GIVEN one event and an API that accepts the answer
    transport = FakeTransport([next_response("req-1", b'{"a": 1}'), ACCEPTED])

    # WHEN the loop runs
    sent = run_until_api_gone(transport)

    # THEN it posted the result to the request's /response path, then asked for the next event
    assert sent == [
        NEXT,
        Sent(
            "POST", "/2018-06-01/runtime/invocation/req-1/response", {"Content-Type": "application/json"}, b'{"a": 1}'
        ),
        NEXT,
    ]


def test_bytes_result_is_posted_as_application_unknown():
    transport = FakeTransport([next_response("req-1"), ACCEPTED])
    sent = run_until_api_gone(transport, lambda e, c: b"\x00\x01")
    assert sent[1].headers == {"Content-Type": "application/unknown"}
    assert sent[1].body == b"\x00\x01"


def test_failure_is_posted_to_error_with_its_headers():
    # GIVEN a handler that raises
    transport = FakeTransport([next_response("req-2"), ACCEPTED])

    # WHEN the loop runs
    sent = run_until_api_gone(transport, fails)

    # THEN the error went to /error with the error-type and X-Ray headers and awslambdaric's JSON body
    post = sent[1]
    assert (post.method, post.path) == ("POST", "/2018-06-01/runtime/invocation/req-2/error")
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Lambda-Runtime-Function-Error-Type"] == "Function.KeyError"
    assert json.loads(post.headers["Lambda-Runtime-Function-XRay-Error-Cause"])["exceptions"][0]["type"] == "KeyError"
    body = json.loads(post.body)
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert (body["errorMessage"], body["errorType"], body["requestId"]) == ("'missing'", "KeyError", "req-2")
    assert sent[2] == NEXT


def test_413_on_response_posts_response_size_too_large_for_the_same_request():
    # GIVEN an API that refuses the response as too large
    after_each = AfterEach()
    too_large = Response(413, {}, b'{"errorType":"RequestEntityTooLarge"}')
    transport = FakeTransport([next_response("req-3"), too_large, ACCEPTED])

    # WHEN the loop runs
    sent = run_until_api_gone(transport, lambda e, c: "x" * 100, after_each=after_each)

    # THEN the same request id gets an /error with Function.ResponseSizeTooLarge, then the loop goes on
    assert [s.path for s in sent] == [
        NEXT.path,
        "/2018-06-01/runtime/invocation/req-3/response",
        "/2018-06-01/runtime/invocation/req-3/error",
        NEXT.path,
    ]
    assert sent[2].headers["Lambda-Runtime-Function-Error-Type"] == "Function.ResponseSizeTooLarge"
    assert json.loads(sent[2].body) == {
        "errorMessage": "Response payload size (102 bytes) exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
        "requestId": "req-3",
        "stackTrace": [],
    }
    # AND after_each saw the failure that was finally reported, not the success
    ((request_id, outcome),) = after_each.calls
    assert request_id == "req-3"
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == "Function.ResponseSizeTooLarge"


def test_413_on_an_error_post_is_retried_trimmed():
    # GIVEN a handler failing with a 1 MB message, and an API refusing the first error post as too large
    def giant(event, context):
        raise ValueError("m" * 1_000_000)

    too_large = Response(413, {}, b"")
    transport = FakeTransport([next_response("req-4"), too_large, ACCEPTED])

    # WHEN the loop runs
    sent = run_until_api_gone(transport, giant)

    # THEN the error is posted again for the same request: same type, message cut to 256 KiB, no stack, no X-Ray
    first, second = sent[1], sent[2]
    assert first.path == second.path == "/2018-06-01/runtime/invocation/req-4/error"
    assert json.loads(first.body)["stackTrace"]
    assert second.headers == {
        "Content-Type": "application/json",
        "Lambda-Runtime-Function-Error-Type": "Function.ValueError",
    }
    assert json.loads(second.body) == {
        "errorMessage": "m" * 256 * 1024,
        "errorType": "ValueError",
        "requestId": "req-4",
        "stackTrace": [],
    }
    assert sent[3] == NEXT


@pytest.mark.parametrize("status", [400, 403])
@pytest.mark.parametrize(("handler", "what"), [(echo, "response"), (fails, "error")])
def test_rejected_post_is_logged_and_the_loop_goes_on(caplog, status, handler, what):
    # GIVEN an API that rejects the answer to the first event, then serves a second one
    rejected = Response(status, {}, b'{"errorType":"InvalidStateTransition"}')
    transport = FakeTransport([next_response("req-5"), rejected, next_response("req-6"), ACCEPTED])
    after_each = AfterEach()

    # WHEN the loop runs
    with caplog.at_level(logging.ERROR, logger="flightrec.runtime"):
        sent = run_until_api_gone(transport, handler, after_each=after_each)

    # THEN the rejection is logged loudly, naming the request and the status
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"the Runtime API rejected the {what} for request req-5 with HTTP {status}: "
        '{"errorType":"InvalidStateTransition"}; moving on to the next invocation'
    )
    # AND the loop asked for, and answered, the next event
    assert [s.path.rsplit("/", 2)[-2:] for s in sent] == [
        ["invocation", "next"],
        ["req-5", what],
        ["invocation", "next"],
        ["req-6", what],
        ["invocation", "next"],
    ]
    assert [request_id for request_id, _ in after_each.calls] == ["req-5", "req-6"]


def test_next_without_request_id_is_logged_and_skipped(caplog):
    # GIVEN a /next answer without a request id, followed by a proper one
    transport = FakeTransport([next_response(None, b'{"lost": true}'), next_response("req-7"), ACCEPTED])
    after_each = AfterEach()
    calls = []

    def handler(event, context):
        calls.append(context.aws_request_id)
        return event

    # WHEN the loop runs
    with caplog.at_level(logging.ERROR, logger="flightrec.runtime"):
        sent = run_until_api_gone(transport, handler, after_each=after_each)

    # THEN the nameless one is logged and never dispatched nor answered; the next one is served
    assert [r.getMessage() for r in caplog.records] == [
        "the Runtime API sent an invocation without a Lambda-Runtime-Aws-Request-Id header "
        "(14 bytes of event); it cannot be answered and is skipped"
    ]
    assert calls == ["req-7"]
    assert [s.path for s in sent] == [NEXT.path, NEXT.path, "/2018-06-01/runtime/invocation/req-7/response", NEXT.path]
    assert [request_id for request_id, _ in after_each.calls] == ["req-7"]


def test_500_on_next_propagates():
    # GIVEN an API in a non-recoverable state
    transport = FakeTransport([Response(500, {}, b"Container error. Non-recoverable state.")])

    # WHEN / THEN RuntimeApiError reaches the caller (bootstrap exits), nothing was dispatched
    with pytest.raises(RuntimeApiError, match=r"^Request to Lambda Runtime 'next' endpoint failed. Reason: '500'"):
        loop.run(RuntimeApiClient(transport), make_dispatch(echo, CONFIG))
    assert transport.sent == [NEXT]


def test_500_on_a_post_propagates():
    transport = FakeTransport([next_response("req-8"), Response(500, {}, b"")])
    after_each = AfterEach()
    with pytest.raises(RuntimeApiError, match=r"^Request to Lambda Runtime 'response' endpoint failed. Reason: '500'"):
        loop.run(RuntimeApiClient(transport), make_dispatch(echo, CONFIG), after_each)
    assert after_each.calls == []


def test_trace_id_is_set_and_removed_in_the_given_environ():
    # GIVEN a traced event, then an untraced one, and an environment holding a stale trace id
    environ = {"_X_AMZN_TRACE_ID": "stale", "OTHER": "kept"}
    seen = []

    def handler(event, context):
        seen.append(environ.get("_X_AMZN_TRACE_ID"))

    transport = FakeTransport(
        [
            next_response("req-9", lambda_runtime_trace_id="Root=1-65f0a0b0-0123456789abcdef01234567;Sampled=1"),
            ACCEPTED,
            next_response("req-10"),
            ACCEPTED,
        ]
    )

    # WHEN the loop runs with that environment
    run_until_api_gone(transport, handler, environ=environ)

    # THEN the handler of the traced event saw its trace id, the untraced one saw none
    assert seen == ["Root=1-65f0a0b0-0123456789abcdef01234567;Sampled=1", None]
    assert environ == {"OTHER": "kept"}


def test_environ_none_leaves_the_process_environment_alone(monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "untouched")
    transport = FakeTransport([next_response("req-11", lambda_runtime_trace_id="Root=1-x"), ACCEPTED])
    run_until_api_gone(transport, environ=None)
    assert os.environ["_X_AMZN_TRACE_ID"] == "untouched"


def test_process_environ_writes_the_trace_id_where_python_code_reads_it():
    # GIVEN the process environment as the loop uses it
    environ = loop.process_environ()
    try:
        # WHEN a trace id is set, THEN os.environ and os.getenv see it (X-Ray and OTel SDKs read them)
        environ[loop.TRACE_ENV] = "Root=1-5759e988-bd862e3fe1be46a994272793"
        assert os.environ[loop.TRACE_ENV] == "Root=1-5759e988-bd862e3fe1be46a994272793"
        assert os.getenv(loop.TRACE_ENV) == "Root=1-5759e988-bd862e3fe1be46a994272793"
        # WHEN it is removed, THEN it is gone
        environ.pop(loop.TRACE_ENV, None)
        assert loop.TRACE_ENV not in os.environ
    finally:
        os.environ.pop(loop.TRACE_ENV, None)


def test_after_each_once_per_answered_invocation_with_the_final_outcome():
    # GIVEN a success then a failure
    transport = FakeTransport([next_response("a", b'"ok"'), ACCEPTED, next_response("b", b'"fail"'), ACCEPTED])
    order: list[str] = []
    after_each = AfterEach()

    def handler(event, context):
        if event == "fail":
            raise ValueError(event)
        return event

    def recording_after_each(invocation, outcome):
        order.append(f"after {invocation.request_id} ({len(transport.sent)} requests sent)")
        after_each(invocation, outcome)

    # WHEN the loop runs
    run_until_api_gone(transport, handler, after_each=recording_after_each)

    # THEN after_each ran once per invocation, after its post and before the next /next
    assert order == ["after a (2 requests sent)", "after b (4 requests sent)"]
    (a_id, a_outcome), (b_id, b_outcome) = after_each.calls
    assert (a_id, a_outcome) == ("a", Success(b'"ok"', "application/json"))
    assert b_id == "b"
    assert isinstance(b_outcome, Failure)
    assert b_outcome.report.error_type == "ValueError"


def test_loop_returns_the_handlers_exit_code_after_posting():
    # GIVEN a handler that calls sys.exit(3)
    def handler(event, context):
        sys.exit(3)

    transport = FakeTransport([next_response("req-12"), ACCEPTED, next_response("never-fetched")])
    after_each = AfterEach()

    # WHEN the loop runs
    code = loop.run(RuntimeApiClient(transport), make_dispatch(handler, CONFIG), after_each)

    # THEN the exit was reported for the request, after_each ran, and run returned 3 without another /next
    assert code == 3
    assert [s.path for s in transport.sent] == [NEXT.path, "/2018-06-01/runtime/invocation/req-12/error"]
    assert transport.sent[1].headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.ExitError"
    assert json.loads(transport.sent[1].body)["errorMessage"] == (
        "RequestId: req-12 Error: Runtime exited with error: exit status 3"
    )
    ((request_id, outcome),) = after_each.calls
    assert request_id == "req-12"
    assert outcome.exit_code == 3


def test_loop_survives_many_bad_invocations():
    # GIVEN events that are malformed JSON, a handler that raises, and a malformed deadline
    script = [
        next_response("r1", b"{not json"), ACCEPTED,
        next_response("r2", b'{"x": 1}'), ACCEPTED,
        next_response("r3", lambda_runtime_deadline_ms="soon"), ACCEPTED,
        next_response("r4", b'{"ok": 1}'), ACCEPTED,
    ]  # fmt: skip
    after_each = AfterEach()

    def handler(event, context):
        if "x" in event:
            raise RuntimeError("user bug")
        return event

    # WHEN the loop runs
    run_until_api_gone(FakeTransport(script), handler, after_each=after_each)

    # THEN each got its own answer and the last one still succeeded
    kinds = [
        outcome.report.error_type if isinstance(outcome, Failure) else "Success" for _, outcome in after_each.calls
    ]
    assert kinds == ["Runtime.UnmarshalError", "RuntimeError", "Runtime.LambdaContextUnmarshalError", "Success"]
