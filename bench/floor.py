"""The floor: the leanest correct Runtime API loop in Python, to show what any Python runtime must at least pay.

One keep-alive socket with TCP_NODELAY, fixed request bytes built once, header parsing reduced to the two headers
a loop needs (Content-Length, the request id; looked up case-insensitively, as HTTP requires), the event decoded
with the stdlib `json`, the handler called, the result encoded and posted with one `sendmsg` (no copy of a large
body). No context object, no error handling beyond stopping, no logging setup: it is a reference, not a runtime.

    AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001 _HANDLER=bench.handlers.echo python -m bench.floor [--raw]

`--raw` skips decoding, the handler and encoding and posts the event bytes back: the leanest client there is,
which the benchmark uses to measure its own server's ceiling.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

_NEXT_PATH = b"/2018-06-01/runtime/invocation/next"
_RESPONSE_PATH = b"/2018-06-01/runtime/invocation/"


class Connection:
    """Reads whole HTTP/1.1 answers (Content-Length bodies only, which is what the Runtime API sends)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def read_answer(self) -> tuple[bytes, bytes, bytes]:
        """(head, lower-cased head, body) of the next answer; raises EOFError when the server hangs up."""
        recv = self.sock.recv
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            chunk = recv(262144)
            if not chunk:
                raise EOFError
            buf += chunk
            end = buf.find(b"\r\n\r\n")
        head = buf[:end]
        lower = head.lower()  # same length: value positions found in `lower` hold in `head`
        start = end + 4
        length = int(_header(head, lower, b"content-length") or 0)
        while len(buf) - start < length:
            chunk = recv(max(262144, length - (len(buf) - start)))
            if not chunk:
                raise EOFError
            buf += chunk
        self.buf = buf[start + length :]
        return head, lower, buf[start : start + length]


def _header(head: bytes, lower: bytes, name: bytes) -> bytes:
    """The value of header `name` (lower-case) in `head`, or b""."""
    at = lower.find(b"\r\n" + name + b":")
    if at < 0:
        return b""
    at += len(name) + 3
    end = head.find(b"\r\n", at)
    return head[at : end if end >= 0 else None].strip()


def serve(address: str, handler: Callable[[Any, Any], Any] | None) -> int:
    conn = Connection(address)
    host = address.encode()
    next_request = b"GET " + _NEXT_PATH + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    post_prefix = b"POST " + _RESPONSE_PATH
    post_middle = b"/response HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: application/json\r\nContent-Length: "
    sendall, sendmsg = conn.sock.sendall, conn.sock.sendmsg
    loads, dumps = json.loads, json.dumps
    try:
        while True:
            sendall(next_request)
            head, lower, event = conn.read_answer()
            if not lower.startswith(b"http/1.1 200"):
                print(f"floor: /next answered {head[:40]!r}", file=sys.stderr)
                return 1
            request_id = _header(head, lower, b"lambda-runtime-aws-request-id")
            body = event if handler is None else dumps(handler(loads(event), None)).encode()
            request_head = b"%s%s%s%d\r\n\r\n" % (post_prefix, request_id, post_middle, len(body))
            want = len(request_head) + len(body)
            sent = sendmsg((request_head, body))
            if sent < want:
                sendall((request_head + body)[sent:])
            head, lower, _ = conn.read_answer()
            if not lower.startswith(b"http/1.1 202"):
                print(f"floor: /response answered {head[:40]!r}", file=sys.stderr)
                return 1
    except (EOFError, ConnectionError):
        return 0  # the benchmark hangs up when it has measured enough


def main(argv: list[str]) -> int:
    handler: Callable[[Any, Any], Any] | None = None
    if "--raw" not in argv:
        module, _, name = os.environ["_HANDLER"].rpartition(".")
        handler = getattr(importlib.import_module(module), name)
    return serve(os.environ["AWS_LAMBDA_RUNTIME_API"], handler)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
