"""`ResponseReader`: one HTTP/1.1 answer read off a socket: the head, then its body in whichever framing it uses.

Shared by the two hand-written HTTP clients: the Runtime API client (no timeout once connected: `/next` may wait
for hours) and the OTLP/HTTP transport in `telemetry.tracing` (every read bounded by the export's deadline). It
keeps a receive buffer: bytes past the answer stay in it (the Runtime API client reuses one reader per
connection; `leftover` tells the OTLP transport that the connection cannot be reused).
A peer that closes or cuts an answer short raises `ConnectionError`; a malformed answer raises `ValueError`.
Imports: stdlib.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol

MAX_HEAD_BYTES = 1024 * 1024  # a status line and headers longer than this are not an answer we can use
_OWS = " \t\r\n\x0b\x0c"  # what bytes.strip() strips: str.strip() would also take latin-1's NBSP (0xA0)
_RECV_BYTES = 65536


class Readable(Protocol):
    def recv(self, bufsize: int, /) -> bytes: ...
    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int: ...
    def settimeout(self, value: float | None, /) -> None: ...


class Head(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased
    keep_alive: bool  # HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`


class ResponseReader:
    """Buffered reads of answers on one connection; `deadline` (time.monotonic(), None: wait forever) bounds
    each read."""

    __slots__ = ("_buf", "_head_limit", "_sock", "deadline")

    def __init__(self, sock: Readable, deadline: float | None = None, head_limit: int = MAX_HEAD_BYTES) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._head_limit = head_limit
        self.deadline = deadline

    @property
    def leftover(self) -> bool:
        """Bytes beyond the answers read so far (a server that sent more than it was asked for)."""
        return bool(self._buf)

    def answer(self, *, head_request: bool = False) -> tuple[Head, bytes]:
        """The next final answer (1xx interim answers are skipped) and its body. A body that runs until the
        server closes the connection comes back with `keep_alive` False."""
        head = self.head()
        while 100 <= head.status < 200:
            head = self.head()
        if head_request or head.status in (204, 304):
            return head, b""
        if "chunked" in head.headers.get("transfer-encoding", "").lower():
            return head, self.chunked()
        length = head.headers.get("content-length")
        if length is not None:
            if not length.isdigit() or not length.isascii():
                raise ValueError(f"malformed Content-Length {length[:40]!r}")
            return head, self.exact(int(length))
        return head._replace(keep_alive=False), self.rest()

    def head(self) -> Head:
        # One decode of the whole head (latin-1 maps every byte), then str operations: two bytes.decode calls per
        # header line were a measurable part of an invocation's CPU.
        lines = self.until(b"\r\n\r\n", self._head_limit).decode("latin-1").split("\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit() or not parts[1].isascii():
            raise ValueError(f"malformed status line {lines[0][:100]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"malformed header line {line[:100]!r}")
            headers[name.strip(_OWS).lower()] = value.strip(_OWS)
        connection = headers.get("connection", "").lower()
        keep_alive = connection == "keep-alive" if parts[0] == "HTTP/1.0" else connection != "close"
        return Head(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, keep_alive)

    def until(self, marker: bytes, limit: int) -> bytes:
        start = 0
        while True:
            index = self._buf.find(marker, start)
            if index >= 0:
                out = bytes(self._buf[:index])
                del self._buf[: index + len(marker)]
                return out
            if len(self._buf) > limit:
                raise ValueError(f"answer head longer than {limit} bytes")
            start = max(len(self._buf) - len(marker) + 1, 0)
            if not self._fill():
                raise ConnectionError("the server closed the connection")

    def exact(self, n: int) -> bytes:
        if len(self._buf) >= n:
            out = bytes(self._buf[:n])
            del self._buf[:n]
            return out
        whole = bytearray(n)  # a large body (a 6 MB event) is received straight into its final buffer
        have = len(self._buf)
        whole[:have] = self._buf
        self._buf = bytearray()
        view = memoryview(whole)
        while have < n:
            self._bound()
            got = self._sock.recv_into(view[have:])
            if not got:
                raise ConnectionError(f"body truncated: expected {n} bytes, got {have}")
            have += got
        return bytes(whole)

    def chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self.until(b"\r\n", self._head_limit)
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError(f"malformed chunk size {size_text[:40]!r}") from None
            if size == 0:
                while self.until(b"\r\n", self._head_limit):
                    pass  # trailers: nothing either client needs from them
                return b"".join(chunks)
            chunks.append(self.exact(size))
            if self.exact(2) != b"\r\n":
                raise ValueError("malformed chunk: no CRLF after its data")

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        out, self._buf = bytes(self._buf), bytearray()
        return out

    def _fill(self) -> bool:
        self._bound()
        data = self._sock.recv(_RECV_BYTES)
        if not data:
            return False
        self._buf += data
        return True

    def _bound(self) -> None:
        if self.deadline is None:
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer did not come in time")
        self._sock.settimeout(remaining)
