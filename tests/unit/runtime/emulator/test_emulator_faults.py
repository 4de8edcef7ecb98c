"""Fault injection (`emu.inject`): what a runtime sees when the platform misbehaves, one fault at a time."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.emulator import Emulator

NEXT = "/2018-06-01/runtime/invocation/next"


def _conn(emu: Emulator) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)


def _get(conn: http.client.HTTPConnection, path: str = NEXT) -> http.client.HTTPResponse:
    conn.request("GET", path)
    return conn.getresponse()


def _post(conn: http.client.HTTPConnection, path: str, body: bytes = b"{}") -> tuple[int, bytes]:
    conn.request("POST", path, body=body)
    response = conn.getresponse()
    return response.status, response.read()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture
def emu(pool: ThreadPoolExecutor) -> Iterator[Emulator]:
    """The pool outlives the emulator: stopping it releases long-polls that pool threads still hold."""
    with Emulator(spawn=False, timeout_s=5, platform_sink=lambda _: None) as emulator:
        yield emulator


def test_next_answered_with_500_container_error(emu: Emulator) -> None:
    emu.inject.fail_next()
    response = _get(_conn(emu))
    assert response.status == 500
    assert json.loads(response.read()) == {
        "errorMessage": "Container error. Non-recoverable state. Runtime should exit promptly.",
        "errorType": "Runtime.ContainerError",
    }


def test_next_answered_with_a_chosen_status_and_body(emu: Emulator) -> None:
    emu.inject.fail_next(403, b'{"errorMessage":"x","errorType":"InvalidStateTransition"}')
    response = _get(_conn(emu))
    assert (response.status, response.read()) == (403, b'{"errorMessage":"x","errorType":"InvalidStateTransition"}')


def test_next_without_request_id_then_the_same_invocation_properly(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    # GIVEN the next delivery will miss its request id
    emu.inject.omit_request_id()
    pending = pool.submit(emu.invoke, b'{"n": 1}')
    conn = _conn(emu)
    # WHEN the runtime polls
    first = _get(conn)
    # THEN it gets the event without an id...
    assert first.status == 200
    assert first.read() == b'{"n": 1}'
    assert first.getheader("Lambda-Runtime-Aws-Request-Id") is None
    assert first.getheader("Lambda-Runtime-Deadline-Ms") is not None
    # ...and a runtime that polls again receives the same invocation, answerable this time
    second = _get(conn)
    request_id = second.getheader("Lambda-Runtime-Aws-Request-Id")
    assert second.read() == b'{"n": 1}'
    assert _post(conn, f"/2018-06-01/runtime/invocation/{request_id}/response", b'"ok"')[0] == 202
    assert pending.result(timeout=5).body == b'"ok"'
    assert emu.api_calls.count(("GET", NEXT)) == 2


def test_next_connection_closed_midway(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    emu.inject.drop_next_midway()
    pending = pool.submit(emu.invoke, b'{"padding": "' + b"x" * 100 + b'"}')
    conn = _conn(emu)
    response = _get(conn)
    # THEN the body stops short of its Content-Length and the connection is closed
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    # the invocation was not consumed: a new connection receives it whole
    fresh = _conn(emu)
    again = _get(fresh)
    body = again.read()
    assert body.startswith(b'{"padding": "x')
    request_id = again.getheader("Lambda-Runtime-Aws-Request-Id")
    assert _post(fresh, f"/2018-06-01/runtime/invocation/{request_id}/response", b"1")[0] == 202
    assert pending.result(timeout=5).body == b"1"


@pytest.mark.parametrize("status", [400, 403, 500])
def test_next_post_refused_with_a_status_and_the_id_stays_open(
    emu: Emulator, pool: ThreadPoolExecutor, status: int
) -> None:
    emu.inject.fail_next_post(status)
    pending = pool.submit(emu.invoke, b"{}")
    conn = _conn(emu)
    response = _get(conn)
    response.read()
    path = f"/2018-06-01/runtime/invocation/{response.getheader('Lambda-Runtime-Aws-Request-Id')}/response"
    # WHEN the runtime posts its answer THEN it is refused with the armed status and a platform-like body
    refused, body = _post(conn, path, b'"first"')
    assert refused == status
    assert set(json.loads(body)) == {"errorMessage", "errorType"}
    # the refusal settled nothing: posting again is accepted (the fault is one-shot)
    assert _post(conn, path, b'"second"')[0] == 202
    assert pending.result(timeout=5).body == b'"second"'


def test_faults_are_consumed_in_order_and_can_be_cleared(emu: Emulator) -> None:
    emu.inject.fail_next(500)
    emu.inject.fail_next(403)
    conn = _conn(emu)
    first = _get(conn)
    first.read()
    second = _get(_conn(emu))
    second.read()
    assert (first.status, second.status) == (500, 403)
    emu.inject.fail_next_post(500)
    emu.inject.clear()
    status, _ = _post(_conn(emu), "/2018-06-01/runtime/invocation/unknown/response")
    assert status == 400  # the cleared fault did not fire; the normal rule did
