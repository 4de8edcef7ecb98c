"""The Runtime API contract, checked with a raw HTTP runtime in the test (the emulator starts no child).

Each test plays the runtime by hand over one keep-alive `http.client` connection, while invokes run on a
helper thread (an invoke blocks until the runtime answers).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from runtime.emulator import Emulator, InvokeResult

NEXT = "/2018-06-01/runtime/invocation/next"


class RawRuntime:
    """A runtime reduced to its HTTP calls, over one connection."""

    def __init__(self, api: str) -> None:
        host, port = api.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=5)

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, response.headers, response.read()

    def next(self) -> tuple[str, http.client.HTTPMessage, bytes]:
        status, headers, body = self.call("GET", NEXT)
        assert status == 200, body
        return headers["Lambda-Runtime-Aws-Request-Id"], headers, body

    def respond(self, request_id: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        status, _, answer = self.call("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", body, headers)
        return status, answer

    def error(self, request_id: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        status, _, answer = self.call("POST", f"/2018-06-01/runtime/invocation/{request_id}/error", body, headers)
        return status, answer


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


@pytest.fixture
def emu(pool: ThreadPoolExecutor) -> Iterator[Emulator]:
    """The pool outlives the emulator: stopping it releases long-polls that pool threads still hold."""
    with Emulator(handler="handlers.echo.handler", spawn=False, timeout_s=5, platform_sink=lambda _: None) as emulator:
        yield emulator


def _invoke(pool: ThreadPoolExecutor, emu: Emulator, event: object = b"{}", **kwargs: object) -> Future[InvokeResult]:
    return pool.submit(emu.invoke, event, **kwargs)  # type: ignore[arg-type]


def test_next_carries_the_event_and_lambdas_headers(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    # GIVEN a queued invocation
    before_ms = time.time() * 1000
    pending = _invoke(pool, emu, b'{"a": 1}')
    runtime = RawRuntime(emu.runtime_api)
    # WHEN the runtime asks for it
    request_id, headers, body = runtime.next()
    # THEN it gets the event bytes and exactly Lambda's headers
    assert body == b'{"a": 1}'
    assert uuid.UUID(request_id).version == 4
    deadline = int(headers["Lambda-Runtime-Deadline-Ms"])
    assert before_ms + 4000 <= deadline <= time.time() * 1000 + 5000 + 1
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == "arn:aws:lambda:us-east-1:012345678912:function:echo"
    assert re.fullmatch(
        r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0", headers["Lambda-Runtime-Trace-Id"]
    )
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(body))
    for absent in ("Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity", "Lambda-Runtime-Aws-Tenant-Id"):
        assert absent not in headers
    assert runtime.respond(request_id, b'"done"') == (202, b'{"status":"OK"}')
    result = pending.result(timeout=5)
    assert (result.status, result.body, result.function_error, result.request_id) == (200, b'"done"', None, request_id)


def test_client_context_tenant_and_cognito_identity_are_passed_on(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    # GIVEN an invoke with a client context (base64 JSON on the Invoke API), a tenant id and a Cognito identity
    context = {"custom": {"k": "v"}, "client": {"app_title": "t"}}
    identity = '{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}'
    pending = _invoke(pool, emu, b"{}", client_context=context, tenant_id="tenant-7", cognito_identity=identity)
    runtime = RawRuntime(emu.runtime_api)
    # WHEN the runtime receives it
    request_id, headers, _ = runtime.next()
    # THEN the client context arrives decoded (plain JSON), the others verbatim
    assert json.loads(headers["Lambda-Runtime-Client-Context"]) == context
    assert headers["Lambda-Runtime-Aws-Tenant-Id"] == "tenant-7"
    assert headers["Lambda-Runtime-Cognito-Identity"] == identity
    runtime.respond(request_id, b"{}")
    assert pending.result(timeout=5).ok


def test_invalid_client_context_is_refused_by_the_invoke_endpoint(emu: Emulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request(
        "POST", "/2015-03-31/functions/function/invocations", b"{}", {"X-Amz-Client-Context": "not base64 json!"}
    )
    response = conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["errorType"] == "InvalidRequestContentException"


def test_unknown_request_id_gets_400(emu: Emulator) -> None:
    runtime = RawRuntime(emu.runtime_api)
    for answer in (runtime.respond, runtime.error):
        status, body = answer("no-such-id", b"{}")
        assert status == 400
        assert json.loads(body) == {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}


def test_second_answer_to_the_same_id_gets_403(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    assert runtime.respond(request_id, b'"first"')[0] == 202
    # WHEN the runtime answers the same id again, with either kind of answer
    for second in (runtime.respond, runtime.error):
        status, body = second(request_id, b'"second"')
        # THEN the platform refuses the state transition and the invoker keeps the first answer
        assert status == 403
        assert json.loads(body)["errorType"] == "InvalidStateTransition"
    assert pending.result(timeout=5).body == b'"first"'


def test_oversized_response_gets_413_and_the_id_stays_open_for_an_error(
    emu: Emulator, pool: ThreadPoolExecutor
) -> None:
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    # WHEN the response is one byte over the limit (the whole body is sent: no EPIPE on the client)
    status, body = runtime.respond(request_id, b"x" * 6291557)
    # THEN 413 with the platform's body, on a connection that still works
    assert status == 413
    assert json.loads(body) == {
        "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "RequestEntityTooLarge",
    }
    error = b'{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).",'
    error += b'"errorType":"Function.ResponseSizeTooLarge"}'
    status, _ = runtime.error(
        request_id, error, {"Lambda-Runtime-Function-Error-Type": "Function.ResponseSizeTooLarge"}
    )
    assert status == 202
    result = pending.result(timeout=5)
    assert (result.status, result.function_error, result.body) == (200, "Unhandled", error)
    posts = emu.posts_for(request_id)
    assert [(post.kind, post.status, post.body_size) for post in posts] == [
        ("response", 413, 6291557),
        ("error", 202, len(error)),
    ]


def test_a_response_exactly_at_the_limit_is_accepted(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    assert runtime.respond(request_id, b"y" * 6291556)[0] == 202
    assert len(pending.result(timeout=5).body) == 6291556


def test_error_is_returned_verbatim_with_the_function_error_header(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    body = b'{"errorMessage": "boom", "errorType": "ValueError", "requestId": "", "stackTrace": []}'
    cause = json.dumps({"working_directory": "/var/task", "exceptions": [{"message": "boom", "type": "ValueError"}]})
    headers = {
        "Lambda-Runtime-Function-Error-Type": "Function.ValueError",
        "Lambda-Runtime-Function-XRay-Error-Cause": cause,
    }
    assert runtime.error(request_id, body, headers)[0] == 202
    result = pending.result(timeout=5)
    assert (result.status, result.function_error, result.body) == (200, "Unhandled", body)
    assert emu.last_error_type_header == "Function.ValueError"
    [post] = emu.posts_for(request_id)
    assert post.header("lambda-runtime-function-xray-error-cause") == cause
    assert post.header("LAMBDA-RUNTIME-FUNCTION-ERROR-TYPE") == "Function.ValueError"


@pytest.mark.parametrize(
    ("header", "recorded"),
    [("Function.KeyError", "Function.KeyError"), ("KeyError", "Runtime.Unknown"), (None, "Runtime.Unknown")],
)
def test_error_type_header_is_normalised(
    emu: Emulator, pool: ThreadPoolExecutor, header: str | None, recorded: str
) -> None:
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    headers = {} if header is None else {"Lambda-Runtime-Function-Error-Type": header}
    runtime.error(request_id, b"{}", headers)
    pending.result(timeout=5)
    outcome = emu._backend.outcome_of(request_id)
    assert outcome is not None
    assert outcome.error_type == recorded
    assert emu.last_error_type_header == header


def test_chunked_response_body_is_read_whole(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    path = f"/2018-06-01/runtime/invocation/{request_id}/response"
    runtime.conn.request("POST", path, body=iter([b'{"part": ', b"1", b"}"]), encode_chunked=True)
    response = runtime.conn.getresponse()
    assert (response.status, response.read()) == (202, b'{"status":"OK"}')
    assert pending.result(timeout=5).body == b'{"part": 1}'


def test_one_keep_alive_connection_serves_many_invocations(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    runtime = RawRuntime(emu.runtime_api)
    runtime.conn.connect()
    first_socket = runtime.conn.sock
    for i in range(30):
        pending = _invoke(pool, emu, {"i": i})
        request_id, _, body = runtime.next()
        assert runtime.respond(request_id, body)[0] == 202
        assert pending.result(timeout=5).json() == {"i": i}
        # the same socket every time: no answer closed the connection
        assert runtime.conn.sock is first_socket
    assert emu.api_calls.count(("GET", NEXT)) == 30


def test_invocations_are_served_one_at_a_time_in_order(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    # GIVEN three invokes submitted at once
    results = []
    for i in range(3):
        results.append(_invoke(pool, emu, {"i": i}))
        time.sleep(0.05)  # arrival order only; nothing is asserted about speed
    runtime = RawRuntime(emu.runtime_api)
    seen = []
    for _ in range(3):
        request_id, _, body = runtime.next()
        seen.append(json.loads(body)["i"])
        runtime.respond(request_id, body)
    # THEN the runtime saw them in arrival order, each invoker got its own answer, and lines never interleave
    assert seen == [0, 1, 2]
    answers = [future.result(timeout=5) for future in results]
    assert [answer.json() for answer in answers] == [{"i": 0}, {"i": 1}, {"i": 2}]
    pool.submit(runtime.next)  # the runtime is done with the last one
    assert emu.wait_for_report(answers[-1].request_id) is not None
    kinds = [line.split(" ", 1)[0] for line in emu.platform_lines]
    assert kinds == ["START", "END", "REPORT"] * 3


def test_end_and_report_come_when_the_runtime_is_back_at_next(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    runtime.respond(request_id, b"{}")
    # WHEN the runtime answered but has not polled again (it may still be flushing its logs)
    assert pending.result(timeout=5).ok  # the invoker does not wait for that
    assert emu.wait_for_report(request_id, timeout_s=0.2) is None
    assert emu.platform_lines == [f"START RequestId: {request_id} Version: $LATEST"]
    # THEN END and REPORT follow its next poll
    pool.submit(runtime.next)
    report = emu.wait_for_report(request_id)
    assert report is not None
    assert emu.platform_lines[1:] == [f"END RequestId: {request_id}", report]


def test_answer_before_next_is_unknown_and_next_blocks_until_an_invoke(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    # GIVEN a runtime polling before anything is queued
    runtime = RawRuntime(emu.runtime_api)
    polled = pool.submit(runtime.next)
    time.sleep(0.2)
    assert not polled.done()  # a long-poll: no answer while nothing is queued
    # WHEN an invoke arrives THEN the waiting poll gets it
    pending = _invoke(pool, emu, b'"late"')
    request_id, _, body = polled.result(timeout=5)
    assert body == b'"late"'
    runtime.respond(request_id, b"1")
    assert pending.result(timeout=5).body == b"1"


def test_invoke_with_a_timeout_without_a_runtime_answers_with_the_timeout_message(pool: ThreadPoolExecutor) -> None:
    with Emulator(spawn=False, timeout_s=0.3, platform_sink=lambda _: None) as emu:
        pending = _invoke(pool, emu)
        runtime = RawRuntime(emu.runtime_api)
        request_id, _, _ = runtime.next()
        result = pending.result(timeout=5)  # the runtime never answers
        message = json.loads(result.body)["errorMessage"]
        assert result.function_error == "Unhandled"
        assert re.fullmatch(rf"\S+Z {request_id} Task timed out after 0.30 seconds", message)
        # a late answer finds the invocation settled
        assert runtime.respond(request_id, b"{}")[0] == 403


def test_every_answer_has_a_content_length(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    runtime = RawRuntime(emu.runtime_api)
    pending = _invoke(pool, emu)
    request_id, headers, _ = runtime.next()
    answers = [headers]
    for path, body in [
        (f"/2018-06-01/runtime/invocation/{request_id}/response", b"{}"),
        (f"/2018-06-01/runtime/invocation/{request_id}/response", b"{}"),
        ("/2018-06-01/runtime/invocation/nope/error", b"{}"),
        ("/2018-06-01/runtime/nowhere", b""),
    ]:
        _, answer_headers, answer = runtime.call("POST", path, body)
        assert int(answer_headers["Content-Length"]) == len(answer)
        answers.append(answer_headers)
    pending.result(timeout=5)
    assert all("Content-Length" in answer for answer in answers)


def test_init_error_answers_the_pending_invoke(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = _invoke(pool, emu)
    time.sleep(0.05)
    runtime = RawRuntime(emu.runtime_api)
    body = b'{"errorMessage":"Unable to import module \'app\'","errorType":"Runtime.ImportModuleError"}'
    status, _, answer = runtime.call(
        "POST",
        "/2018-06-01/runtime/init/error",
        body,
        {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
    )
    assert (status, answer) == (202, b'{"status":"OK"}')
    result = pending.result(timeout=5)
    assert (result.function_error, result.body) == ("Unhandled", body)
    assert emu.last_error_type_header == "Runtime.ImportModuleError"
    # a second init error from the same runtime is refused
    status, _, answer = runtime.call("POST", "/2018-06-01/runtime/init/error", b"{}")
    assert status == 403
    assert json.loads(answer)["errorType"] == "InvalidStateTransition"


def test_client_context_header_is_base64_of_json() -> None:
    # the Python API encodes like the AWS SDKs do, so the endpoint's decoding is the one being exercised
    from runtime.emulator.client import encode_client_context

    encoded = encode_client_context({"custom": {"a": 1}})
    assert encoded is not None
    assert json.loads(base64.b64decode(encoded)) == {"custom": {"a": 1}}


def test_stopping_with_an_invocation_in_flight_answers_it_without_a_false_timeout(pool: ThreadPoolExecutor) -> None:
    emu = Emulator(spawn=False, timeout_s=30, platform_sink=lambda _: None).start()
    pending = _invoke(pool, emu)
    runtime = RawRuntime(emu.runtime_api)
    request_id, _, _ = runtime.next()
    # WHEN the emulator stops while the runtime still holds the invocation
    emu.stop()
    result = pending.result(timeout=5)
    # THEN the invoker is answered (the runtime is gone) and no timeout is claimed
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Runtime.ExitError"
    assert not any("Task timed out" in line for line in emu.platform_lines)
    assert emu.platform_lines[-1].startswith(f"REPORT RequestId: {request_id}\t")
