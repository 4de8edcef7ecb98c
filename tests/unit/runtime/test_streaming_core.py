"""Response streaming in the runtime core: which handlers stream, the writer, and what the loop sends.

Driven by FakeTransport scripts (the loop's wire behaviour) and, at the end, a raw TCP server that reads the
chunked request byte for byte (the socket transport's framing and trailers).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from runtime import loop
from runtime.api_client import Response, RuntimeApiClient, SocketTransport
from runtime.config import RuntimeConfig
from runtime.dispatch import Failure, Streamed, make_dispatch
from runtime.errors import RuntimeApiError
from runtime.streaming import (
    DEFAULT_CONTENT_TYPE,
    HTTP_INTEGRATION_CONTENT_TYPE,
    PRELUDE_SEPARATOR,
    ResponseStream,
    StreamKind,
    streaming_kind,
)
from tests.fakes.transport import ACCEPTED, FakeTransport, Sent, next_response

CONFIG = RuntimeConfig(api_address="127.0.0.1:9001", handler="x.handler")
RESPONSE = "/2018-06-01/runtime/invocation/req-1/response"
ERROR = "/2018-06-01/runtime/invocation/req-1/error"
STREAM_HEADERS = {
    "Lambda-Runtime-Function-Response-Mode": "streaming",
    "Trailer": "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
}


def run_once(handler, after_each=None) -> tuple[list[Sent], FakeTransport]:
    """One invocation through the real loop; the script ends after the answer (the API 'goes away')."""
    transport = FakeTransport([next_response("req-1", b'{"n": 3}'), ACCEPTED])
    kwargs = {"after_each": after_each} if after_each else {}
    with pytest.raises(RuntimeApiError, match="script exhausted"):
        loop.run(RuntimeApiClient(transport), make_dispatch(handler, CONFIG), **kwargs)
    return transport.sent, transport


def trailer_error(sent: Sent) -> dict:
    assert sent.trailers is not None
    return json.loads(base64.b64decode(sent.trailers["Lambda-Runtime-Function-Error-Body"]))


# --- which handlers stream ------------------------------------------------------------------------------------


def plain(event, context):
    return event


def gen(event, context):
    yield b"x"


async def agen(event, context):
    yield b"x"


def writer(event, context, stream):
    stream.write(b"x")


async def awriter(event, context, stream):
    stream.write(b"x")


def optional_third(event, context, extra=None):
    return event


class Handlers:
    def method_gen(self, event, context):
        yield b"x"

    def method_writer(self, event, context, stream):
        stream.write(b"x")

    def __call__(self, event, context, stream):
        stream.write(b"x")


@pytest.mark.parametrize(("handler", "kind"), [
    (plain, None),
    (optional_third, None),
    (gen, StreamKind.GENERATOR),
    (agen, StreamKind.ASYNC_GENERATOR),
    (writer, StreamKind.WRITER),
    (awriter, StreamKind.ASYNC_WRITER),
    (Handlers().method_gen, StreamKind.GENERATOR),
    (Handlers().method_writer, StreamKind.WRITER),
    (Handlers(), None),  # a callable object is plain: only functions and methods are inspected
    (print, None),
])
def test_streaming_kind_is_decided_from_the_function_itself(handler, kind):
    assert streaming_kind(handler) is kind


# --- the writer -----------------------------------------------------------------------------------------------


class SinkLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def open(self, content_type: str) -> None:
        self.calls.append(("open", content_type))

    def write(self, chunk: bytes) -> None:
        self.calls.append(("write", chunk))


def test_writer_opens_with_the_first_bytes_and_sends_each_write_as_it_comes():
    sink = SinkLog()
    stream = ResponseStream(sink)
    stream.content_type = "text/plain"
    assert sink.calls == [] and not stream.started
    stream.write("héllo ")
    stream.write(b"")  # an empty chunk would end the chunked body: skipped
    stream.write(bytearray(b"world"))
    stream.close()
    assert sink.calls == [("open", "text/plain"), ("write", "héllo ".encode()), ("write", b"world")]
    with pytest.raises(RuntimeError, match="cannot change once the response has started"):
        stream.content_type = "application/json"


def test_a_dict_before_any_bytes_is_the_http_prelude():
    sink = SinkLog()
    stream = ResponseStream(sink)
    stream.write({"statusCode": 201, "headers": {"x-a": "1"}, "cookies": ["c=1"]})
    stream.write(b"body")
    prelude = b'{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1"]}' + PRELUDE_SEPARATOR
    assert sink.calls == [("open", HTTP_INTEGRATION_CONTENT_TYPE), ("write", prelude + b"body")]
    with pytest.raises(TypeError, match="bytes or str"):
        stream.write({"statusCode": 500})


def test_an_empty_stream_still_opens_and_a_lone_prelude_is_sent_at_the_end():
    empty, only_prelude = SinkLog(), SinkLog()
    ResponseStream(empty).close()
    stream = ResponseStream(only_prelude)
    stream.set_http_prelude(statusCode=204)
    stream.close()
    assert empty.calls == [("open", DEFAULT_CONTENT_TYPE)]
    assert only_prelude.calls == [("open", HTTP_INTEGRATION_CONTENT_TYPE),
                                  ("write", b'{"statusCode":204}' + PRELUDE_SEPARATOR)]


# --- what the loop sends --------------------------------------------------------------------------------------


def test_generator_chunks_are_posted_as_one_chunked_streaming_response():
    # GIVEN a generator handler
    def handler(event, context):
        for i in range(event["n"]):
            yield f"chunk {i}\n"

    # WHEN the loop serves one invocation
    sent, transport = run_once(handler)

    # THEN one streamed POST went to /response, chunk by chunk, without trailers; the connection was closed
    post = sent[1]
    assert (post.method, post.path) == ("POST", RESPONSE)
    assert post.headers == {"Content-Type": DEFAULT_CONTENT_TYPE, **STREAM_HEADERS}
    assert post.chunks == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]
    assert post.trailers == {}
    assert transport.closed


def test_writer_style_and_the_function_url_prelude():
    def handler(event, context, stream):
        stream.set_http_prelude(statusCode=200, headers={"content-type": "text/html"})
        stream.write("<p>one</p>")
        stream.write("<p>two</p>")

    post = run_once(handler)[0][1]
    assert post.headers["Content-Type"] == HTTP_INTEGRATION_CONTENT_TYPE
    head, _, body = post.body.partition(PRELUDE_SEPARATOR)
    assert json.loads(head) == {"statusCode": 200, "headers": {"content-type": "text/html"}}
    assert body == b"<p>one</p><p>two</p>"
    assert len(post.chunks) == 2  # the prelude travels with the first body chunk


def test_async_generator_sees_its_own_invocation_in_every_chunk():
    async def handler(event, context) -> AsyncIterator[bytes]:
        import asyncio

        for _ in range(2):
            await asyncio.sleep(0)
            yield context.aws_request_id.encode()

    assert run_once(handler)[0][1].chunks == [b"req-1", b"req-1"]


def test_an_error_before_the_first_byte_goes_to_error_as_usual():
    def handler(event, context) -> Iterator[bytes]:
        raise ValueError("no data")
        yield b"never"

    sent, _ = run_once(handler)
    assert [(s.method, s.path) for s in sent[1:]] == [("POST", ERROR), ("GET", "/2018-06-01/runtime/invocation/next")]
    assert sent[1].headers["Lambda-Runtime-Function-Error-Type"] == "Function.ValueError"
    assert json.loads(sent[1].body)["errorMessage"] == "no data"


def test_an_error_mid_stream_ends_the_stream_with_the_error_trailers():
    def handler(event, context):
        yield b"partial "
        raise KeyError("gone")

    post = run_once(handler)[0][1]
    assert post.chunks == [b"partial "]
    assert post.trailers is not None
    assert post.trailers["Lambda-Runtime-Function-Error-Type"] == "Function.KeyError"
    error = trailer_error(post)
    assert (error["errorType"], error["errorMessage"], error["requestId"]) == ("KeyError", "'gone'", "req-1")
    assert any("raise KeyError" in frame for frame in error["stackTrace"])


def test_a_bad_chunk_type_is_the_handlers_error():
    def handler(event, context):
        yield b"ok"
        yield 42

    post = run_once(handler)[0][1]
    assert trailer_error(post)["errorType"] == "TypeError"


def test_sys_exit_mid_stream_is_answered_then_the_loop_exits_with_its_code():
    def handler(event, context):
        yield b"bye"
        sys.exit(3)

    transport = FakeTransport([next_response("req-1"), ACCEPTED])
    code = loop.run(RuntimeApiClient(transport), make_dispatch(handler, CONFIG))
    assert code == 3
    assert transport.sent[1].trailers["Lambda-Runtime-Function-Error-Type"] == "Runtime.ExitError"


def test_after_each_gets_the_streamed_outcome_or_the_failure():
    seen: list[object] = []

    def ok(event, context):
        yield b"x"

    def bad(event, context):
        yield b"x"
        raise RuntimeError("late")

    run_once(ok, after_each=lambda inv, outcome: seen.append(outcome))
    run_once(bad, after_each=lambda inv, outcome: seen.append(outcome))
    assert isinstance(seen[0], Streamed)
    assert isinstance(seen[1], Failure) and seen[1].report.error_type == "RuntimeError"


def test_a_rejected_stream_is_logged_and_the_loop_goes_on(caplog):
    def handler(event, context):
        yield b"x"

    transport = FakeTransport([next_response("req-1"), Response(403, {}, b"already answered")])
    with pytest.raises(RuntimeApiError, match="script exhausted"):
        loop.run(RuntimeApiClient(transport), make_dispatch(handler, CONFIG))
    assert "rejected the streamed response" in caplog.text
    assert transport.sent[-1].method == "GET"  # back at /next


def test_a_runtime_api_failure_under_the_stream_ends_the_loop_even_if_the_handler_swallows_it():
    class BrokenTransport(FakeTransport):
        def open_stream(self, method, path, headers=()):
            request = super().open_stream(method, path, headers)

            def write(chunk: bytes) -> None:
                raise RuntimeApiError("connection lost mid-stream")

            request.write = write  # type: ignore[method-assign]
            return request

    def handler(event, context, stream):
        with contextlib.suppress(Exception):  # user code that swallows everything
            stream.write(b"x")

    transport = BrokenTransport([next_response("req-1")])
    with pytest.raises(RuntimeApiError, match="mid-stream"):
        loop.run(RuntimeApiClient(transport), make_dispatch(handler, CONFIG))


# --- the socket transport's framing ---------------------------------------------------------------------------


def _read_chunked_request(conn: socket.socket) -> tuple[bytes, list[bytes], dict[str, str]]:
    rfile = conn.makefile("rb")
    head = b""
    while (line := rfile.readline()) not in (b"\r\n", b""):
        head += line
    chunks: list[bytes] = []
    while True:
        size = int(rfile.readline().strip(), 16)
        if size == 0:
            break
        chunks.append(rfile.read(size))
        assert rfile.read(2) == b"\r\n"
    trailers: dict[str, str] = {}
    while (line := rfile.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        trailers[name.strip()] = value.strip()
    return head, chunks, trailers


def test_socket_transport_writes_http_chunks_and_trailers_then_closes():
    # GIVEN a raw TCP server that reads one chunked request and answers 202
    server = socket.create_server(("127.0.0.1", 0))
    got: dict[str, object] = {}

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            got["head"], got["chunks"], got["trailers"] = _read_chunked_request(conn)
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
            got["eof"] = conn.recv(1) == b""  # the runtime closes the connection after a streamed answer

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = SocketTransport(f"127.0.0.1:{server.getsockname()[1]}")
    client = RuntimeApiClient(transport)

    # WHEN a stream of a big and a small chunk ends with an error
    from runtime.model import ErrorReport

    response = client.post_stream("req-1", "text/plain")
    big = bytes(range(256)) * 1024
    response.write(big)
    response.write(b"tail")
    outcome = response.finish(ErrorReport("ValueError", "late", header_type="Function.ValueError"))
    thread.join(5)
    server.close()

    # THEN the head, the chunks and the trailers are on the wire as HTTP/1.1 chunked encoding wants them
    assert outcome.status == 202
    head = got["head"].decode()
    assert head.startswith("POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1\r\n")
    assert "Transfer-Encoding: chunked\r\n" in head and "Lambda-Runtime-Function-Response-Mode: streaming" in head
    assert "Content-Length" not in head
    assert got["chunks"] == [big, b"tail"]
    assert got["trailers"]["Lambda-Runtime-Function-Error-Type"] == "Function.ValueError"
    body = json.loads(base64.b64decode(got["trailers"]["Lambda-Runtime-Function-Error-Body"]))
    assert body["errorMessage"] == "late"
    assert got["eof"] is True
