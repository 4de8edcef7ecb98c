"""The emulator's HTTP/1.1 server: Runtime API, Extensions API and the RIE-compatible invoke endpoint.

Why a thin shell: every decision is the backend's; this module only parses requests (Content-Length or
chunked bodies, always read to the end so a client never sees EPIPE), routes them, and writes `Reply`
objects with a Content-Length on every answer so one keep-alive connection serves a whole runtime's life.
Each request gets a daemon thread, because `/next` and extension long-polls block for as long as they must.

Allowed imports: stdlib, `runtime.emulator.wire`, `runtime.emulator.backend`.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from runtime.emulator import wire
from runtime.emulator.backend import Backend, InvokeRequest, decode_client_context

_READ_BLOCK = 64 * 1024
_MAX_CHUNK_LINE = 1024


class BadRequestError(ValueError):
    """The request's framing is broken; the connection cannot be reused."""


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its backend and can drop every open connection at stop."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        """Bind without `HTTPServer.server_bind`'s reverse DNS lookup, which can stall in a sandbox."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket, alive: bool) -> None:
        """Remember open connections so `close_connections` can wake their threads."""
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Shut every open connection down; threads blocked on reads see EOF and end."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue


class RequestHandler(BaseHTTPRequestHandler):
    """Routes one connection's requests to the backend."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    # --- plumbing ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Track the connection for shutdown."""
        super().setup()
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        """Forget the connection."""
        self.server.track(self.connection, alive=False)
        try:
            super().finish()
        except OSError:
            return

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request access logs: the emulator's stdout carries the function's logs."""

    def _headers(self) -> dict[str, str]:
        return {key: value for key, value in self.headers.items()}

    def send_reply(self, reply: wire.Reply) -> None:
        """Write a whole answer in one send: status, headers with Content-Length, body."""
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        lines = [f"{self.protocol_version} {reply.status} {phrase}", f"Date: {self.date_time_string()}"]
        lines.append(f"Content-Type: {reply.content_type}")
        lines.append(f"Content-Length: {len(reply.body)}")
        lines.extend(f"{name}: {value}" for name, value in reply.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if reply.truncate_at is not None:
            self.wfile.write(head + reply.body[: reply.truncate_at])
            self._abort()
            return
        self.wfile.write(head + reply.body)

    def _abort(self) -> None:
        """Close the connection without (further) answer, e.g. a long-poll whose runtime is gone."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            return

    def _send_or_abort(self, reply: wire.Reply | None) -> None:
        if reply is None:
            self._abort()
        else:
            self.send_reply(reply)

    # --- bodies -----------------------------------------------------------------------------------------
    def _is_chunked(self) -> bool:
        return "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()

    def _body_chunks(self) -> Iterator[bytes]:
        """The request body as it arrives, whatever its framing; trailers land in `self._trailers`."""
        self._trailers: dict[str, str] = {}
        if self._is_chunked():
            yield from self._chunked()
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        if remaining < 0:
            raise BadRequestError("negative Content-Length")
        while remaining > 0:
            block = self.rfile.read(min(_READ_BLOCK, remaining))
            if not block:
                raise BadRequestError("body shorter than Content-Length")
            remaining -= len(block)
            yield block

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            if not line.endswith(b"\n"):
                raise BadRequestError("truncated chunk header")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequestError("bad chunk size") from None
            if size == 0:
                break
            remaining = size
            while remaining > 0:
                block = self.rfile.read(min(_READ_BLOCK, remaining))
                if not block:
                    raise BadRequestError("truncated chunk")
                remaining -= len(block)
                yield block
            if self.rfile.readline(_MAX_CHUNK_LINE).strip():
                raise BadRequestError("chunk not followed by CRLF")
        while True:
            trailer = self.rfile.readline(_MAX_CHUNK_LINE)
            if not trailer.endswith(b"\n"):
                raise BadRequestError("truncated trailers")
            if not trailer.strip():
                return
            name, _, value = trailer.decode("latin-1").partition(":")
            self._trailers[name.strip()] = value.strip()

    def _read_body(self, limit: int) -> tuple[bytes, int]:
        """Read the entire body; keep it only if it is at most `limit` bytes. Returns (kept body, size)."""
        parts: list[bytes] = []
        size = 0
        for block in self._body_chunks():
            size += len(block)
            if size <= limit:
                parts.append(block)
            else:
                parts.clear()
        return (b"".join(parts) if size <= limit else b""), size

    # --- routing ----------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        """`/next` and the extensions' `/event/next` long-polls."""
        path = urlsplit(self.path).path
        self._guarded(lambda: self._route_get(path))

    def do_POST(self) -> None:
        """Answers, init errors, extension registration and invokes."""
        path = urlsplit(self.path).path
        self._guarded(lambda: self._route_post(path))

    def _guarded(self, route: Callable[[], None]) -> None:
        try:
            route()
        except BadRequestError as exc:
            self.close_connection = True
            self.send_reply(wire.Reply(400, wire.error_body("BadRequest", str(exc))))
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _route_get(self, path: str) -> None:
        backend = self.server.backend
        if path == wire.NEXT_PATH:
            backend.note_call("GET", path)
            self._send_or_abort(backend.runtime_next())
        elif path == wire.EXTENSION_NEXT_PATH:
            backend.note_call("GET", path)
            self._send_or_abort(backend.extension_next(self._headers()))
        elif path == wire.RESTORE_NEXT_PATH:
            backend.note_call("GET", path)
            self._send_or_abort(backend.restore_next())
        else:
            self._not_found()

    def _route_post(self, path: str) -> None:
        backend = self.server.backend
        answer = wire.INVOCATION_ANSWER_RE.match(path)
        if answer is not None:
            backend.note_call("POST", path)
            self._post_answer(answer["kind"], answer["id"])
        elif path == wire.INIT_ERROR_PATH:
            backend.note_call("POST", path)
            body, size = self._read_body(wire.MAX_PAYLOAD_BYTES)
            self.send_reply(backend.init_error(self._headers(), body, size))
        elif path == wire.RESTORE_ERROR_PATH:
            backend.note_call("POST", path)
            body, size = self._read_body(wire.MAX_PAYLOAD_BYTES)
            self.send_reply(backend.restore_error(self._headers(), body, size))
        elif path == wire.EXTENSION_REGISTER_PATH:
            backend.note_call("POST", path)
            body, _ = self._read_body(wire.MAX_PAYLOAD_BYTES)
            self.send_reply(backend.extension_register(self._headers(), body))
        elif wire.INVOKE_RE.match(path):
            self._invoke()
        else:
            self._read_body(0)
            self._not_found()

    def _not_found(self) -> None:
        self.send_reply(wire.Reply(404, wire.error_body("NotFound", f"No route for {self.command} {self.path}")))

    def _post_answer(self, kind: str, request_id: str) -> None:
        backend = self.server.backend
        headers = self._headers()
        mode = (self.headers.get(wire.H_RESPONSE_MODE) or "").lower()
        if kind == "response" and mode == "streaming":
            chunks = self._body_chunks()
            self.send_reply(backend.runtime_stream(request_id, headers, chunks, lambda: self._trailers))
            return
        body, size = self._read_body(wire.MAX_PAYLOAD_BYTES)
        self.send_reply(backend.runtime_answer(kind, request_id, headers, body, size))

    def _invoke(self) -> None:
        body, size = self._read_body(wire.MAX_PAYLOAD_BYTES)
        if size > wire.MAX_PAYLOAD_BYTES:
            message = f"Request must be smaller than {wire.MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
            self.send_reply(wire.Reply(413, wire.error_body("RequestEntityTooLargeException", message)))
            return
        try:
            client_context = decode_client_context(self.headers.get(wire.H_AMZ_CLIENT_CONTEXT))
        except ValueError as exc:
            self.send_reply(wire.Reply(400, wire.error_body("InvalidRequestContentException", str(exc))))
            return
        request = InvokeRequest(
            event=body,
            client_context=client_context,
            cognito_identity=self.headers.get(wire.H_FLIGHTREC_COGNITO_IDENTITY) or None,
            tenant_id=self.headers.get(wire.H_AMZ_TENANT_ID) or None,
        )
        self.server.backend.invoke(request, InvokeAnswer(self))


class InvokeAnswer:
    """Writes an invoke answer: whole with a Content-Length, or streamed as HTTP/1.1 chunks with trailers."""

    def __init__(self, handler: RequestHandler) -> None:
        self._handler = handler

    def reply(self, reply: wire.Reply) -> None:
        """The whole answer at once."""
        self._handler.send_reply(reply)

    def begin(self, content_type: str, headers: Mapping[str, str]) -> None:
        """Status line and headers; the body follows in chunks."""
        lines = [
            f"{self._handler.protocol_version} 200 OK",
            f"Date: {self._handler.date_time_string()}",
            f"Content-Type: {content_type}",
            "Transfer-Encoding: chunked",
            f"Trailer: {wire.H_AMZ_FUNCTION_ERROR}, {wire.H_ERROR_TYPE}, {wire.H_ERROR_BODY}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        self._handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def write(self, chunk: bytes) -> None:
        """One chunk, sent at once so `curl -N` shows it."""
        self._handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")

    def end(self, trailers: Mapping[str, str]) -> None:
        """The zero-length chunk, then trailers (a mid-stream error), then the blank line."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in trailers.items())
        self._handler.wfile.write(b"0\r\n" + lines.encode("latin-1") + b"\r\n")
