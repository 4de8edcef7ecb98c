"""A raw-socket Runtime API for faults the emulator cannot script: byte-exact `/next` answers (malformed or
oversized headers) and a connection cut while the runtime is still sending its answer.

The server speaks just enough HTTP/1.1 for a runtime: it reads each request (head and Content-Length body), records
it, and answers with the next scripted step. `/next` steps are raw HTTP responses; posts get a 202 unless a step
says otherwise. When the script runs out, `/next` gets a 500 (a runtime exits on it, which ends a test's run).

    with FakeRuntimeApi([next_answer("req-1", b"{}")]) as api:
        run bootstrap (or `RuntimeApiClient.connect(api.address)`) against api.address
        api.posts  # what the runtime answered
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

NEXT_PATH = "/2018-06-01/runtime/invocation/next"
ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'
CONTAINER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


def next_answer(
    request_id: str | bytes | None,
    body: bytes = b"{}",
    *,
    deadline_ms: int | bytes | None = None,
    headers: Sequence[tuple[bytes | str, bytes | str]] = (),
) -> bytes:
    """A 200 answer to `/next`, byte for byte: header values may hold any bytes the test wants (no CR/LF framing
    is added or checked; a value with CR LF in it really does start a new header line)."""
    import time

    def raw(value: bytes | str) -> bytes:
        return value if isinstance(value, bytes) else value.encode("latin-1")

    lines: list[bytes] = [b"HTTP/1.1 200 OK", b"Content-Type: application/json"]
    if request_id is not None:
        lines.append(b"Lambda-Runtime-Aws-Request-Id: " + raw(request_id))
    deadline = deadline_ms if deadline_ms is not None else int((time.time() + 30) * 1000)
    lines.append(b"Lambda-Runtime-Deadline-Ms: " + raw(str(deadline) if isinstance(deadline, int) else deadline))
    lines.append(b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:012345678912:function:fake")
    lines.extend(raw(name) + b": " + raw(value) for name, value in headers)
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass
class CutPost:
    """Answer the next post by reading `after_bytes` of its body, then resetting the connection."""

    after_bytes: int = 0


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    complete: bool = True

    @property
    def request_id(self) -> str:
        return self.path.split("/")[-2]

    @property
    def kind(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class FakeRuntimeApi:
    """Serves `script` (raw `/next` answers, and `CutPost` steps that apply to the next post) on 127.0.0.1."""

    script: list[bytes | CutPost]
    posts: list[Post] = field(default_factory=list)
    nexts: int = 0
    connections: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._cut: CutPost | None = None
        self._done = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="fake-runtime-api", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join(5)
        self._sock.close()

    # -- serving ---------------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    self._serve_connection(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        while not self._done.is_set():
            request_line = rfile.readline(65536)
            if not request_line:
                return
            method, path = request_line.decode("latin-1").split()[:2]
            headers: dict[str, str] = {}
            while (line := rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if method == "GET" and path == NEXT_PATH:
                self.nexts += 1
                step = self._next_step()
                conn.sendall(step)
                continue
            cut, self._cut = self._cut, None
            if cut is not None:
                body = rfile.read(min(cut.after_bytes, length))
                with self._lock:
                    self.posts.append(Post(path, headers, body, complete=False))
                # RST instead of FIN: the runtime's next read or write fails at once
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            body = rfile.read(length)
            with self._lock:
                self.posts.append(Post(path, headers, body))
            conn.sendall(ACCEPTED)

    def _next_step(self) -> bytes:
        while True:
            with self._lock:
                step = self.script.pop(0) if self.script else CONTAINER_ERROR
            if isinstance(step, CutPost):
                self._cut = step
                continue
            return step

    def posts_for(self, request_id: str) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if p.request_id == request_id]


def bootstrap_env(api: FakeRuntimeApi, handler: str, task_root: str, extra: Mapping[str, str] = ()) -> dict[str, str]:
    """A Lambda-like environment for the real bootstrap, pointed at `api`."""
    import os

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": task_root,
        "AWS_LAMBDA_FUNCTION_NAME": "fake",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]fake",
    }
    env.update(dict(extra))
    return env
