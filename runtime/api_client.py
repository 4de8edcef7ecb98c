"""The Lambda Runtime API client: HTTP and the wire format, nothing else.

No spans, no logging setup, no retries (but one short retry of the very first connect, because the API may be a
moment late at start). It sits on every invocation's path, so it speaks HTTP/1.1 over one keep-alive socket
itself: measured, that beats `http.client` and is several times faster than `requests`. `/next` has no timeout:
Lambda may keep the process frozen between invocations for as long as it likes.

A streamed response (`post_stream`) is one chunked POST written chunk by chunk as the handler produces them,
ending with the error trailers when the handler failed mid-stream; as the custom-runtime docs ask, the connection
is closed once the stream is answered (the next call reconnects). One client, hence one connection, per loop:
concurrent loops each build their own. SnapStart's `restore/next` and `restore/error` live here too.
Imports: stdlib, `runtime.model`, `runtime.errors`.
"""

from __future__ import annotations

import _socket  # socket.py's Python layer (enum conversions, selectors): ~2 ms of import we would not use
import enum
import re
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from runtime.errors import RuntimeApiError
from runtime.http1 import ResponseReader
from runtime.model import (
    ERROR_BODY_HEADER,
    ERROR_TYPE_HEADER,
    RESPONSE_MODE_HEADER,
    XRAY_CAUSE_HEADER,
    ErrorReport,
    Invocation,
)

API_VERSION = "/2018-06-01"
_SAFE_ID = re.compile(r"[A-Za-z0-9._~-]+")
_CONNECT_ATTEMPTS_S = (0.05, 0.1, 0.2, 0.4, 0.8)


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class ChunkedRequest(Protocol):
    """A request whose body is being sent as HTTP/1.1 chunks."""

    def write(self, chunk: bytes) -> None:
        """Send one non-empty chunk now."""

    def finish(self, trailers: Sequence[tuple[str, str]] = ()) -> Response:
        """Send the last chunk and the trailers, then read the answer."""


class Transport(Protocol):
    """The seam tests plug a fake into (as httpx's MockTransport does)."""

    def request(
        self, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> Response: ...

    def open_stream(self, method: str, path: str, headers: Sequence[tuple[str, str]] = ()) -> ChunkedRequest: ...

    def close(self) -> None: ...


class SocketTransport:
    """HTTP/1.1 over one persistent TCP connection; handles Content-Length, chunked and close-delimited bodies.

    Responses are read with `recv` into one buffer and parsed with `bytes.find`/`split`: one system call and a
    handful of C-level operations per typical answer, instead of a readline per header line.
    """

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RuntimeApiError(f"AWS_LAMBDA_RUNTIME_API must be host:port, got {address!r}")
        host = host.strip("[]")
        self._host = host
        self._port = int(port)
        self._host_header = address
        self._sock: _socket.socket | None = None
        self._reader: ResponseReader | None = None
        self._ever_connected = False

    def _open_socket(self) -> _socket.socket:
        """`socket.create_connection` on the C module: each address getaddrinfo gives, in order, until one connects.

        An ASCII host goes to getaddrinfo as bytes: given a str, it first imports the IDNA codec (encodings.idna,
        stringprep, unicodedata: 1-3 ms of every cold start) to encode a plain name."""
        host: str | bytes = self._host.encode("ascii") if self._host.isascii() else self._host
        last: OSError = OSError(f"no address found for {self._host!r}")
        for family, kind, proto, _, address in _socket.getaddrinfo(host, self._port, 0, _socket.SOCK_STREAM):
            sock = _socket.socket(family, kind, proto)
            try:
                sock.settimeout(2.0)
                sock.connect(address)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            return sock
        raise last

    def _connect(self) -> None:
        attempts = (0.0,) if self._ever_connected else (0.0, *_CONNECT_ATTEMPTS_S)
        last: OSError | None = None
        for delay in attempts:
            time.sleep(delay)
            try:
                sock = self._open_socket()
            except OSError as exc:
                last = exc
                continue
            sock.settimeout(None)  # no client timeout: /next may legitimately wait for hours
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self._sock = sock
            self._reader = ResponseReader(sock)
            self._ever_connected = True
            return
        raise RuntimeApiError(f"cannot connect to the Runtime API at {self._host_header}: {last}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._reader = None

    def request(
        self, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> Response:
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        head = [f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in headers)
        if method != "GET" or body:
            head.append(f"Content-Length: {len(body)}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1")
        try:
            if len(body) <= 16384:
                self._sock.sendall(data + body)
            else:
                self._sock.sendall(data)
                self._sock.sendall(body)
            response = self._read_response()
        except (OSError, ValueError) as exc:
            self.close()
            raise RuntimeApiError(f"connection to the Runtime API lost during {method} {path}: {exc}") from exc
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def open_stream(
        self, method: str, path: str, headers: Sequence[tuple[str, str]] = ()
    ) -> _SocketChunkedRequest:
        """Send the head of a chunked request; the body follows chunk by chunk (see `_SocketChunkedRequest`)."""
        if self._sock is None:
            self._connect()
        head = [f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in headers)
        head.append("Transfer-Encoding: chunked\r\n\r\n")
        request = _SocketChunkedRequest(self, f"{method} {path}")
        request.send(["".join(head).encode("latin-1")])
        return request

    # -- reading ---------------------------------------------------------------------------------------------
    def _read_response(self) -> Response:
        assert self._reader is not None
        head, body = self._reader.answer()
        if not head.keep_alive:
            head.headers["connection"] = "close"  # `request` closes the connection after this answer
        return Response(head.status, head.headers, body)


class _SocketChunkedRequest:
    """The body of a chunked request on a `SocketTransport`'s connection: one `sendmsg` per chunk (size line,
    data and CRLF gathered by the kernel, so a large chunk is never copied into a bigger buffer)."""

    def __init__(self, transport: SocketTransport, what: str) -> None:
        self._transport = transport
        self._what = what

    def write(self, chunk: bytes) -> None:
        self.send([b"%x\r\n" % len(chunk), chunk, b"\r\n"])

    def finish(self, trailers: Sequence[tuple[str, str]] = ()) -> Response:
        lines = "".join(f"{name}: {value}\r\n" for name, value in trailers)
        self.send([b"0\r\n" + lines.encode("latin-1") + b"\r\n"])
        try:
            return self._transport._read_response()
        except (OSError, ValueError) as exc:
            self._transport.close()
            raise RuntimeApiError(f"connection to the Runtime API lost during {self._what}: {exc}") from exc

    def send(self, parts: list[bytes]) -> None:
        sock = self._transport._sock
        try:
            if sock is None:
                raise OSError("the connection is closed")
            sent = sock.sendmsg(parts)
            total = sum(len(part) for part in parts)
            if sent < total:  # the socket buffer was full: send the rest, without joining the parts
                for part in parts:
                    if sent >= len(part):
                        sent -= len(part)
                        continue
                    sock.sendall(memoryview(part)[sent:])
                    sent = 0
        except OSError as exc:
            self._transport.close()
            raise RuntimeApiError(f"connection to the Runtime API lost during {self._what}: {exc}") from exc


class PostResult(enum.Enum):
    ACCEPTED = "accepted"
    TOO_LARGE = "too large"
    REJECTED = "rejected"


class PostOutcome(NamedTuple):
    result: PostResult
    status: int
    body: bytes


def _request_path(request_id: str, leaf: str) -> str:
    if _SAFE_ID.fullmatch(request_id):
        rid = request_id
    else:  # never for the platform's UUIDs: urllib.parse costs ~2 ms of cold start
        from urllib.parse import quote

        rid = quote(request_id, safe="")
    return f"{API_VERSION}/runtime/invocation/{rid}/{leaf}"


def _failure(endpoint: str, response: Response) -> RuntimeApiError:
    body = response.body[:500].decode("utf-8", "replace")
    return RuntimeApiError(
        f"Request to Lambda Runtime '{endpoint}' endpoint failed. Reason: '{response.status}'. "
        f"Response body: '{body}'"
    )


class StreamingResponse:
    """An open streaming `/response`: `write` sends one chunk, `finish` ends the body (with the error trailers when
    the handler failed mid-stream), reads the answer and closes the connection."""

    def __init__(self, transport: Transport, request: ChunkedRequest) -> None:
        self._transport = transport
        self._request = request

    def write(self, chunk: bytes) -> None:
        self._request.write(chunk)

    def finish(self, error: ErrorReport | None = None) -> PostOutcome:
        trailers: tuple[tuple[str, str], ...] = ()
        if error is not None:
            import base64

            body = base64.b64encode(error.to_json()).decode("ascii")
            trailers = ((ERROR_TYPE_HEADER, error.header_type), (ERROR_BODY_HEADER, body))
        try:
            response = self._request.finish(trailers)
        finally:
            self._transport.close()  # "send the response in chunks, then close the connection"
        return RuntimeApiClient._judge("response", response)


class RuntimeApiClient:
    """The calls a runtime makes, with AWS's status-code policy; transport failures raise `RuntimeApiError`."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @classmethod
    def connect(cls, address: str) -> RuntimeApiClient:
        return cls(SocketTransport(address))

    def next(self) -> Invocation:
        response = self._transport.request("GET", f"{API_VERSION}/runtime/invocation/next")
        if response.status != 200:
            raise _failure("next", response)
        return Invocation.from_headers(response.headers, response.body)

    def post_response(self, request_id: str, body: bytes, content_type: str) -> PostOutcome:
        response = self._transport.request(
            "POST", _request_path(request_id, "response"), (("Content-Type", content_type),), body
        )
        return self._judge("response", response)

    def post_stream(self, request_id: str, content_type: str) -> StreamingResponse:
        """Start a streamed `/response` (the head goes out now); write its chunks, then `finish` it."""
        headers = (
            ("Content-Type", content_type),
            (RESPONSE_MODE_HEADER, "streaming"),
            ("Trailer", f"{ERROR_TYPE_HEADER}, {ERROR_BODY_HEADER}"),
        )
        request = self._transport.open_stream("POST", _request_path(request_id, "response"), headers)
        return StreamingResponse(self._transport, request)

    def post_error(self, report: ErrorReport) -> PostOutcome:
        response = self._transport.request(
            "POST", _request_path(report.request_id, "error"), self._error_headers(report), report.to_json()
        )
        return self._judge("error", response)

    def post_init_error(self, report: ErrorReport) -> PostOutcome:
        response = self._transport.request(
            "POST", f"{API_VERSION}/runtime/init/error", self._error_headers(report), report.to_json()
        )
        return self._judge("init/error", response)

    def restore_next(self) -> None:
        """SnapStart: the snapshot may be taken now; returns once this environment has been restored from it."""
        response = self._transport.request("GET", f"{API_VERSION}/runtime/restore/next")
        if response.status != 200:
            raise _failure("restore/next", response)

    def post_restore_error(self, report: ErrorReport) -> PostOutcome:
        """SnapStart: an after-restore hook failed (the runtime exits after this)."""
        response = self._transport.request(
            "POST", f"{API_VERSION}/runtime/restore/error", self._error_headers(report), report.to_json()
        )
        return self._judge("restore/error", response)

    def close(self) -> None:
        self._transport.close()

    @staticmethod
    def _error_headers(report: ErrorReport) -> tuple[tuple[str, str], ...]:
        headers = [("Content-Type", "application/json"), (ERROR_TYPE_HEADER, report.header_type)]
        if report.xray_cause:
            headers.append((XRAY_CAUSE_HEADER, report.xray_cause))
        return tuple(headers)

    @staticmethod
    def _judge(endpoint: str, response: Response) -> PostOutcome:
        if 200 <= response.status < 300:  # the API answers 202; any 2xx means it took the answer
            return PostOutcome(PostResult.ACCEPTED, response.status, response.body)
        if response.status == 413:
            return PostOutcome(PostResult.TOO_LARGE, 413, response.body)
        if response.status in (400, 403):
            return PostOutcome(PostResult.REJECTED, response.status, response.body)
        raise _failure(endpoint, response)
