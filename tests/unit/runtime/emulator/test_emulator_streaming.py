"""Response streaming: a runtime's chunked `/response` reaches the invoker chunk by chunk, errors in trailers."""

from __future__ import annotations

import base64
import http.client
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.emulator import Emulator

INVOKE = "/2015-03-31/functions/function/invocations"


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture
def emu(pool: ThreadPoolExecutor) -> Iterator[Emulator]:
    """The pool outlives the emulator: stopping it releases long-polls that pool threads still hold."""
    with Emulator(spawn=False, timeout_s=5, platform_sink=lambda _: None) as emulator:
        yield emulator


def _next_request_id(emu: Emulator) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    response = conn.getresponse()
    response.read()
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    assert request_id is not None
    return request_id


def _open_stream(emu: Emulator, request_id: str, content_type: str = "text/plain") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
    head = (
        f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
        "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    return int(data.split(b" ", 2)[1])


def test_chunks_reach_the_invoker_before_the_stream_ends(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    # GIVEN an invoker waiting and a runtime that starts streaming
    invoker = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    invoker.request("POST", INVOKE, b"{}")
    answer = pool.submit(invoker.getresponse)
    request_id = _next_request_id(emu)
    runtime = _open_stream(emu, request_id)
    runtime.sendall(_chunk(b"first chunk\n"))
    # WHEN only the first chunk was sent THEN the invoker already reads it, chunked, with its content type
    response = answer.result(timeout=5)
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Type") == "text/plain"
    assert response.read1() == b"first chunk\n"
    # AND the rest follows; the runtime's request is accepted once it ends
    runtime.sendall(_chunk(b"second") + b"0\r\n\r\n")
    assert response.read() == b"second"
    assert _read_status(runtime) == 202
    # the runtime's next poll ends the invocation
    pool.submit(_next_request_id, emu)
    assert emu.wait_for_report(request_id) == emu.platform_lines[-1]


def test_midstream_error_in_trailers_becomes_a_function_error(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = pool.submit(emu.invoke, b"{}")
    request_id = _next_request_id(emu)
    runtime = _open_stream(emu, request_id)
    error = b'{"errorMessage":"half way","errorType":"RuntimeError"}'
    trailers = (
        "Lambda-Runtime-Function-Error-Type: Function.RuntimeError\r\n"
        f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(error).decode()}\r\n\r\n"
    )
    runtime.sendall(_chunk(b"partial ") + b"0\r\n" + trailers.encode())
    assert _read_status(runtime) == 202
    result = pending.result(timeout=5)
    # THEN the body streamed so far arrives, and the error is known for that request id
    assert result.body == b"partial "
    assert result.function_error == "Unhandled"
    outcome = emu._backend.outcome_of(request_id)
    assert outcome is not None
    assert (outcome.error_type, outcome.body) == ("Function.RuntimeError", error)
    [post] = emu.posts_for(request_id)
    assert post.header("Lambda-Runtime-Function-Error-Type") == "Function.RuntimeError"


def test_invalid_response_mode_header_is_refused(emu: Emulator, pool: ThreadPoolExecutor) -> None:
    pending = pool.submit(emu.invoke, b"{}")
    request_id = _next_request_id(emu)
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    path = f"/2018-06-01/runtime/invocation/{request_id}/response"
    conn.request("POST", path, b"{}", {"Lambda-Runtime-Function-Response-Mode": "buffered-ish"})
    response = conn.getresponse()
    assert response.status == 400
    assert b"Runtime.InvalidResponseModeHeader" in response.read()
    conn.request("POST", path, b'"ok"')
    assert conn.getresponse().status == 202
    assert pending.result(timeout=5).body == b'"ok"'
