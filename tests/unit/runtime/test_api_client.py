"""Specification of `runtime.api_client`: the Runtime API calls and status policy (over FakeTransport), and the
socket-level HTTP/1.1 transport (against a real TCP server on 127.0.0.1 answering scripted raw bytes)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from runtime.api_client import PostOutcome, PostResult, Response, RuntimeApiClient, SocketTransport
from runtime.errors import RuntimeApiError, report_from
from runtime.model import ErrorReport
from tests.fakes.transport import ACCEPTED, FakeTransport, Sent, next_response

NEXT_PATH = "/2018-06-01/runtime/invocation/next"


# --- the client over FakeTransport -------------------------------------------------------------------------------


def test_next_gets_the_next_invocation():
    # GIVEN a Runtime API that answers /next with an event
    transport = FakeTransport(
        [
            next_response(
                "req-1",
                b'{"a": 1}',
                lambda_runtime_trace_id="Root=1-abc;Parent=def;Sampled=1",
                lambda_runtime_invoked_function_arn="arn:aws:lambda:eu-west-1:1:function:f",
            )
        ]
    )

    # WHEN the client asks for the next invocation
    inv = RuntimeApiClient(transport).next()

    # THEN it sent a bare GET to the /next path and returns the Invocation the headers describe
    assert transport.sent == [Sent("GET", NEXT_PATH, {}, b"")]
    assert inv.request_id == "req-1"
    assert inv.body == b'{"a": 1}'
    assert inv.deadline_ms == 9999999999999
    assert inv.trace_id == "Root=1-abc;Parent=def;Sampled=1"
    assert inv.invoked_function_arn == "arn:aws:lambda:eu-west-1:1:function:f"
    assert inv.content_type == "application/json"


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"Container error. Non-recoverable state. Runtime should exit promptly."), (403, b""), (204, b"x")],
)
def test_next_non_200_raises_with_awslambdaric_message(status, body):
    # GIVEN a Runtime API that refuses /next
    transport = FakeTransport([Response(status, {}, body)])

    # WHEN the client asks for the next invocation
    # THEN it raises RuntimeApiError with awslambdaric's LambdaRuntimeClientError text
    with pytest.raises(RuntimeApiError) as err:
        RuntimeApiClient(transport).next()
    assert str(err.value) == (
        f"Request to Lambda Runtime 'next' endpoint failed. Reason: '{status}'. Response body: '{body.decode()}'"
    )


def test_next_transport_failure_propagates():
    # GIVEN a Runtime API that is gone (the fake's script is empty)
    # WHEN / THEN the transport's RuntimeApiError reaches the caller unchanged
    with pytest.raises(RuntimeApiError, match="connection lost"):
        RuntimeApiClient(FakeTransport([])).next()


def test_post_response_sends_body_and_content_type():
    # GIVEN a Runtime API that accepts responses
    transport = FakeTransport([ACCEPTED])

    # WHEN a response is posted
    outcome = RuntimeApiClient(transport).post_response("req-1", b'{"ok": true}', "application/json")

    # THEN it went to the request's /response path with its content type, and 202 means accepted
    assert transport.sent == [
        Sent(
            "POST",
            "/2018-06-01/runtime/invocation/req-1/response",
            {"Content-Type": "application/json"},
            b'{"ok": true}',
        )
    ]
    assert outcome == PostOutcome(PostResult.ACCEPTED, 202, b'{"status":"OK"}')


def post(client: RuntimeApiClient, call: str, report: ErrorReport) -> PostOutcome:
    if call == "response":
        return client.post_response(report.request_id, b"{}", "application/json")
    if call == "error":
        return client.post_error(report)
    return client.post_init_error(report)


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (202, PostResult.ACCEPTED),
        (200, PostResult.ACCEPTED),
        (413, PostResult.TOO_LARGE),
        (400, PostResult.REJECTED),
        (403, PostResult.REJECTED),
    ],
)
@pytest.mark.parametrize("call", ["response", "error", "init/error"])
def test_post_status_policy(status, result, call):
    # GIVEN a Runtime API answering a post with `status`
    body = b'{"errorMessage":"x","errorType":"Y"}'
    client = RuntimeApiClient(FakeTransport([Response(status, {}, body)]))
    report = ErrorReport("ValueError", "x", request_id="req-1", header_type="Function.ValueError")

    # WHEN the runtime posts
    outcome = post(client, call, report)

    # THEN the status maps to accepted / too large / rejected, keeping status and body for the log line
    assert outcome == PostOutcome(result, status, body)


@pytest.mark.parametrize("status", [500, 502, 404, 302])
@pytest.mark.parametrize(
    ("call", "endpoint"), [("response", "response"), ("error", "error"), ("init/error", "init/error")]
)
def test_post_other_status_raises(status, call, endpoint):
    # GIVEN a Runtime API answering a post with a 5xx or anything unexpected
    client = RuntimeApiClient(FakeTransport([Response(status, {}, b"boom")]))
    report = ErrorReport("E", "m", request_id="req-1")

    # WHEN the runtime posts
    # THEN RuntimeApiError names the endpoint, the status and the body
    with pytest.raises(RuntimeApiError) as err:
        post(client, call, report)
    assert str(err.value) == (
        f"Request to Lambda Runtime '{endpoint}' endpoint failed. Reason: '{status}'. Response body: 'boom'"
    )


def test_post_error_carries_type_header_xray_header_and_json_body():
    # GIVEN a report built from a user exception (it has an X-Ray cause)
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        report = report_from(exc, "req-9")
    transport = FakeTransport([ACCEPTED])

    # WHEN it is posted
    RuntimeApiClient(transport).post_error(report)

    # THEN it went to the request's /error path with the error-type and X-Ray headers and the JSON body
    (sent,) = transport.sent
    assert sent.method == "POST"
    assert sent.path == "/2018-06-01/runtime/invocation/req-9/error"
    assert sent.headers == {
        "Content-Type": "application/json",
        "Lambda-Runtime-Function-Error-Type": "Function.ValueError",
        "Lambda-Runtime-Function-XRay-Error-Cause": report.xray_cause,
    }
    assert json.loads(sent.headers["Lambda-Runtime-Function-XRay-Error-Cause"])["exceptions"][0]["type"] == "ValueError"
    assert json.loads(sent.body) == {
        "errorMessage": "bad value",
        "errorType": "ValueError",
        "requestId": "req-9",
        "stackTrace": report.stack_trace,
    }


def test_post_error_without_xray_cause_sends_no_xray_header():
    transport = FakeTransport([ACCEPTED])
    RuntimeApiClient(transport).post_error(ErrorReport("E", "m", request_id="r", header_type="Function.E"))
    assert transport.sent[0].headers == {
        "Content-Type": "application/json",
        "Lambda-Runtime-Function-Error-Type": "Function.E",
    }


def test_post_init_error_path_and_headers():
    # GIVEN an init failure (no request id)
    report = ErrorReport(
        "Runtime.ImportModuleError", "Unable to import module 'x'", header_type="Runtime.ImportModuleError"
    )
    transport = FakeTransport([ACCEPTED])

    # WHEN it is posted
    RuntimeApiClient(transport).post_init_error(report)

    # THEN it goes to /runtime/init/error with the error-type header and the JSON body
    (sent,) = transport.sent
    assert (sent.method, sent.path) == ("POST", "/2018-06-01/runtime/init/error")
    assert sent.headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.ImportModuleError"
    assert sent.body == report.to_json()


@pytest.mark.parametrize(
    ("request_id", "quoted"),
    [
        ("8476a536-e9f4-11e8-9739-2dfe598c3fcd", "8476a536-e9f4-11e8-9739-2dfe598c3fcd"),
        ("abc\r\nX-Injected: 1", "abc%0D%0AX-Injected%3A%201"),
        ("../../init/error", "..%2F..%2Finit%2Ferror"),
        ("a b?c#d", "a%20b%3Fc%23d"),
        ("é", "%C3%A9"),
    ],
)
def test_request_ids_are_percent_quoted_in_the_path(request_id, quoted):
    # GIVEN a request id with characters that are unsafe in a request line
    transport = FakeTransport([ACCEPTED, ACCEPTED])
    client = RuntimeApiClient(transport)

    # WHEN a response and an error are posted for it
    client.post_response(request_id, b"{}", "application/json")
    client.post_error(ErrorReport("E", "m", request_id=request_id))

    # THEN the id is one percent-quoted path segment: no CR/LF, no '/', no space can reach the request line
    assert [s.path for s in transport.sent] == [
        f"/2018-06-01/runtime/invocation/{quoted}/response",
        f"/2018-06-01/runtime/invocation/{quoted}/error",
    ]


def test_close_closes_the_transport():
    transport = FakeTransport()
    RuntimeApiClient(transport).close()
    assert transport.closed


# --- SocketTransport against a real TCP server ------------------------------------------------------------------


@dataclass
class Reply:
    """Raw bytes to answer one request with; `close` closes the connection afterwards."""

    data: bytes
    close: bool = False


@dataclass
class Received:
    request_line: str
    headers: dict[str, str]
    body: bytes


def http(status: str = "200 OK", body: bytes = b"", headers: tuple[str, ...] = (), length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class ScriptedServer:
    """A listening socket on 127.0.0.1 served by one thread: each request read gets the next scripted `Reply`."""

    script: list[Reply]
    listen_after_s: float = 0.0
    listen: bool = True
    received: list[Received] = field(default_factory=list)
    accepts: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))  # bound but not listening: connects are refused until listen()
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        if not self.listen:
            return
        if self.listen_after_s:
            self._stop.wait(self.listen_after_s)
        self.sock.listen()
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepts += 1
            with conn:
                conn.settimeout(5)
                self._serve_connection(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        while not self._stop.is_set():
            request_line = rfile.readline()
            if not request_line:
                return  # the client closed the connection
            headers: dict[str, str] = {}
            while (line := rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = rfile.read(int(headers.get("content-length", "0")))
            self.received.append(Received(request_line.decode("latin-1").rstrip("\r\n"), headers, body))
            if not self.script:
                return
            reply = self.script.pop(0)
            conn.sendall(reply.data)
            if reply.close:
                conn.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def serve():
    servers: list[ScriptedServer] = []

    def start(*script: Reply, **options) -> ScriptedServer:
        server = ScriptedServer(list(script), **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def transports():
    opened: list[SocketTransport] = []

    def make(address: str) -> SocketTransport:
        transport = SocketTransport(address)
        opened.append(transport)
        return transport

    yield make
    for transport in opened:
        transport.close()


def test_socket_request_wire_format(serve, transports):
    # GIVEN a server that answers two requests
    server = serve(Reply(http(body=b"{}")), Reply(http("202 Accepted", b'{"status":"OK"}')))
    transport = transports(server.address)

    # WHEN a GET without body and a POST with one are sent
    transport.request("GET", NEXT_PATH)
    transport.request("POST", "/2018-06-01/runtime/invocation/r/response", (("Content-Type", "text/plain"),), b"hi")

    # THEN they are HTTP/1.1 requests with a Host header; only the POST has a Content-Length
    get, post = server.received
    assert get == Received(f"GET {NEXT_PATH} HTTP/1.1", {"host": server.address}, b"")
    assert post == Received(
        "POST /2018-06-01/runtime/invocation/r/response HTTP/1.1",
        {"host": server.address, "content-type": "text/plain", "content-length": "2"},
        b"hi",
    )


def test_socket_content_length_body_and_headers(serve, transports):
    # GIVEN a server answering with a Content-Length body and mixed-case headers
    server = serve(
        Reply(http(body=b'{"k": "v"}', headers=("Lambda-Runtime-Aws-Request-Id: abc", "X-Spaced:   padded  ")))
    )

    # WHEN a request is sent
    response = transports(server.address).request("GET", NEXT_PATH)

    # THEN status, lower-cased stripped headers and the exact body come back
    assert response.status == 200
    assert response.headers["lambda-runtime-aws-request-id"] == "abc"
    assert response.headers["x-spaced"] == "padded"
    assert response.body == b'{"k": "v"}'


def test_socket_large_request_body_is_sent_whole(serve, transports):
    # GIVEN a body larger than the single-write threshold
    body = bytes(range(256)) * 1024
    server = serve(Reply(http("202 Accepted")))

    # WHEN it is posted
    transports(server.address).request("POST", "/r", (), body)

    # THEN the server received all of it
    assert server.received[0].body == body


def test_socket_chunked_body_with_trailers(serve, transports):
    # GIVEN a chunked answer with a chunk extension and trailers, then a second answer on the same connection
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n"
        b"7\r\n, world\r\n"
        b"0\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n"
    )
    server = serve(Reply(chunked), Reply(http(body=b"second")))
    transport = transports(server.address)

    # WHEN both are requested
    first = transport.request("GET", NEXT_PATH)
    second = transport.request("GET", NEXT_PATH)

    # THEN the chunks are joined, the trailers consumed, and the connection is still usable
    assert first.body == b"hello, world"
    assert second.body == b"second"
    assert server.accepts == 1


def test_socket_close_delimited_body_then_reconnect(serve, transports):
    # GIVEN an answer with neither Content-Length nor chunking: the body ends when the server closes
    server = serve(Reply(http(body=b"until the end", length=False), close=True), Reply(http(body=b"again")))
    transport = transports(server.address)

    # WHEN it is read, and another request follows
    first = transport.request("GET", NEXT_PATH)
    second = transport.request("GET", NEXT_PATH)

    # THEN the whole body was read to EOF and the next request used a new connection
    assert first.body == b"until the end"
    assert second.body == b"again"
    assert server.accepts == 2


def test_socket_keep_alive_reuses_one_connection(serve, transports):
    # GIVEN a server answering many requests
    server = serve(*(Reply(http(body=f"{i}".encode())) for i in range(20)))
    transport = transports(server.address)

    # WHEN the requests are sent one after another
    bodies = [transport.request("GET", NEXT_PATH).body for _ in range(20)]

    # THEN every answer arrived over one single connection
    assert bodies == [f"{i}".encode() for i in range(20)]
    assert server.accepts == 1
    assert len(server.received) == 20


def test_socket_connection_close_header_means_reconnect(serve, transports):
    # GIVEN a server that says `Connection: close` and closes after its first answer
    server = serve(
        Reply(http(body=b"one", headers=("Connection: close",)), close=True),
        Reply(http(body=b"two")),
        Reply(http(body=b"three")),
    )
    transport = transports(server.address)

    # WHEN three requests are sent
    bodies = [transport.request("GET", NEXT_PATH).body for _ in range(3)]

    # THEN the second request opened a new connection, which the third reused
    assert bodies == [b"one", b"two", b"three"]
    assert server.accepts == 2


def test_socket_http_1_0_answer_means_reconnect(serve, transports):
    # GIVEN an HTTP/1.0 server (Python's http.server default) that closes after each answer without saying so
    server = serve(
        Reply(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\none", close=True),
        Reply(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\ntwo", close=True),
    )
    transport = transports(server.address)

    # WHEN two requests are sent
    bodies = [transport.request("GET", NEXT_PATH).body for _ in range(2)]

    # THEN the connection is not reused (HTTP/1.0 without keep-alive closes): each request gets its own
    assert bodies == [b"one", b"two"]
    assert server.accepts == 2


def test_socket_server_closing_mid_body_raises(serve, transports):
    # GIVEN a server that promises 100 bytes, sends 10 and closes
    server = serve(Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", close=True))

    # WHEN the answer is read
    # THEN RuntimeApiError says the connection was lost
    with pytest.raises(RuntimeApiError, match=r"connection to the Runtime API lost during GET .*truncated"):
        transports(server.address).request("GET", NEXT_PATH)


def test_socket_server_closing_before_answering_raises(serve, transports):
    # GIVEN a server that reads the request and closes without a word
    server = serve(Reply(b"", close=True))

    # WHEN / THEN RuntimeApiError
    with pytest.raises(RuntimeApiError, match="closed the connection"):
        transports(server.address).request("GET", NEXT_PATH)


@pytest.mark.parametrize("garbage", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"])
def test_socket_malformed_answer_raises(serve, transports, garbage):
    server = serve(Reply(garbage, close=True))
    with pytest.raises(RuntimeApiError, match="malformed"):
        transports(server.address).request("GET", NEXT_PATH)


def test_socket_connect_retries_while_the_api_starts(serve, transports):
    # GIVEN a Runtime API that starts listening ~200 ms after the runtime starts
    server = serve(Reply(http(body=b"late but here")), listen_after_s=0.2)

    # WHEN the first request is sent at once
    response = transports(server.address).request("GET", NEXT_PATH)

    # THEN the connect was retried until it succeeded
    assert response.body == b"late but here"
    assert server.accepts == 1


def test_socket_connect_gives_up_when_nobody_listens(serve, transports):
    # GIVEN an address where nothing ever listens (the port is bound, so nobody else takes it)
    server = serve(listen=False)
    transport = transports(server.address)

    # WHEN the first request is sent
    started = time.monotonic()
    with pytest.raises(RuntimeApiError, match=f"cannot connect to the Runtime API at {server.address}"):
        transport.request("GET", NEXT_PATH)

    # THEN it gives up after its short retry schedule (liveness bound only, generous)
    assert time.monotonic() - started < 15


def test_socket_has_no_timeout_after_connect(serve, transports):
    # GIVEN a connected transport
    server = serve(Reply(http(body=b"{}")))
    transport = transports(server.address)
    transport.request("GET", NEXT_PATH)

    # THEN its socket blocks forever: /next may legitimately wait for hours while the environment is frozen
    assert transport._sock is not None
    assert transport._sock.gettimeout() is None
    assert transport._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:", ":9001", "host:port"])
def test_socket_bad_address_raises(address):
    with pytest.raises(RuntimeApiError, match="host:port"):
        SocketTransport(address)


def test_client_over_sockets_end_to_end(serve):
    # GIVEN a Runtime API that serves one event and accepts the response
    server = serve(
        Reply(
            http(
                body=b'{"n": 1}',
                headers=(
                    "Lambda-Runtime-Aws-Request-Id: req-42",
                    "Lambda-Runtime-Deadline-Ms: 1700000000000",
                    "Content-Type: application/json",
                ),
            )
        ),
        Reply(http("202 Accepted", b'{"status":"OK"}')),
    )
    client = RuntimeApiClient.connect(server.address)
    try:
        # WHEN the runtime gets the event and answers it
        inv = client.next()
        outcome = client.post_response(inv.request_id, b'{"n": 2}', "application/json")
    finally:
        client.close()

    # THEN the invocation was read from the headers and the answer reached the right path
    assert (inv.request_id, inv.deadline_ms, inv.body) == ("req-42", 1700000000000, b'{"n": 1}')
    assert outcome.result is PostResult.ACCEPTED
    assert server.received[1].request_line == "POST /2018-06-01/runtime/invocation/req-42/response HTTP/1.1"
    assert server.received[1].body == b'{"n": 2}'


def test_client_over_sockets_cannot_inject_headers(serve):
    # GIVEN a request id carrying CR/LF and a header of its own
    server = serve(Reply(http("202 Accepted")))
    client = RuntimeApiClient.connect(server.address)
    try:
        # WHEN an answer is posted for it
        client.post_response("x\r\nX-Injected: yes\r\n", b"{}", "application/json")
    finally:
        client.close()

    # THEN the server saw one request line and no injected header
    (received,) = server.received
    assert (
        received.request_line
        == "POST /2018-06-01/runtime/invocation/x%0D%0AX-Injected%3A%20yes%0D%0A/response HTTP/1.1"
    )
    assert "x-injected" not in received.headers


def test_socket_http_1_0_keep_alive_answer_keeps_the_connection(serve, transports):
    # GIVEN an HTTP/1.0 server that explicitly keeps the connection alive
    keep = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    server = serve(Reply(keep), Reply(keep))
    transport = transports(server.address)

    # WHEN two requests are sent
    bodies = [transport.request("GET", NEXT_PATH).body for _ in range(2)]

    # THEN both went over one connection
    assert bodies == [b"ok", b"ok"]
    assert server.accepts == 1
