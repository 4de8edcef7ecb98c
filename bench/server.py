"""A Runtime API server for benchmarking: lean enough that the runtimes, not the server, are what is measured.

Why not `http.server` (or our emulator): a `BaseHTTPRequestHandler` costs tens of µs per request in parsing and
object churn, the same order as the fastest runtime's whole cycle. This is one thread with `poll(2)` over a
listening socket and whatever connections a runtime opens; `/next` is answered from a pre-built head plus the
event bytes in one `sendmsg` (no copy of a 100 KB event), `/response` and `/error` with a constant 202.

It still speaks the HTTP the runtimes really send: Content-Length and chunked request bodies, `Expect:
100-continue` (libcurl sends it for larger POST bodies and would otherwise wait a second for the server),
keep-alive and `Connection: close`, new connections at any time, several connections at once.

What it records (all `time.perf_counter_ns()`, CLOCK_MONOTONIC, comparable with the timestamps the orchestrator
takes before spawning the runtime):
  * latency of an invocation: from the `/next` answer having been sent to the `/response` (or `/error`) having
    been received in full: what a caller of the function waits for, minus the platform;
  * cycle: from one `/next` request to the next one, i.e. everything the runtime does per invocation, including the
    flushes it performs after answering and before asking for more;
  * init: process spawn to the first `/next`; first response: spawn to the first `/response`;
  * at the first `/next` (init done), the second (after one invocation: what init deferred to a background thread
    or to the first event shows here) and at the end of the window: the runtime's RSS; over the window: its CPU
    (`bench.procfs`) and the server thread's own CPU (`time.thread_time_ns`), to show the server is not the limit.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from bench import procfs

NEXT_PATH = b"/2018-06-01/runtime/invocation/next"
INVOCATION_PREFIX = b"/2018-06-01/runtime/invocation/"
INIT_ERROR_PATH = b"/2018-06-01/runtime/init/error"
ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REFUSED_BODY = b'{"errorType":"Bench.End","errorMessage":"the benchmark is over"}\n'
REFUSED = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY))
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"
TRACE_ID = b"Root=1-6568f2a1-5e3b0c0f1a2b3c4d5e6f7a8b;Parent=53995c3f42cd8ad8;Sampled=1"
FUNCTION_ARN = b"arn:aws:lambda:eu-west-1:123456789012:function:bench-echo"
TIMEOUT_MS = 900_000  # the deadline sent with each event: Lambda's longest timeout, so no runtime ever nears it
_RECV_BYTES = 262144
_MAX_HEAD = 65536
_POLL_IDLE_MS = 250  # how often a silent run checks that the runtime is still alive


class ServerError(RuntimeError):
    """A run could not be completed: the runtime died, stalled, failed init or spoke something unexpected."""


@dataclass(slots=True)
class RunRecord:
    """Everything one runtime process did under the server: raw samples plus the /proc readings."""

    warmup: int
    invocations: int
    spawned_ns: int
    first_next_ns: int = 0
    first_response_ns: int = 0
    window_start_ns: int = 0
    window_end_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    next_ns: list[int] = field(default_factory=list)  # /next arrivals in the window (invocations + 1 of them)
    start: procfs.Snapshot | None = None  # the runtime's CPU, context switches and the machine's load
    end: procfs.Snapshot | None = None
    server_cpu_ns: int = 0
    rss_init_kib: dict[str, int] = field(default_factory=dict)  # at the first /next: init done
    rss_first_kib: dict[str, int] = field(default_factory=dict)  # at the second: work deferred past init included
    rss_end_kib: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    connections: int = 0
    continues: int = 0
    chunked_bodies: int = 0
    last_body: bytes = b""
    last_error: bytes = b""
    sample_heads: dict[str, str] = field(default_factory=dict)  # the first request head of each kind, for the record

    @property
    def cycles_ns(self) -> list[int]:
        n = self.next_ns
        return [b - a for a, b in itertools.pairwise(n)]


class _Head(NamedTuple):
    """A parsed request head (a tuple, so the hot path unpacks it in one step)."""

    method: bytes
    target: bytes
    length: int
    chunked: bool
    close: bool  # hang up after answering
    body_start: int
    expect_continue: bool
    raw: bytes


class _Conn:
    """One client connection: its socket, unparsed bytes, and the head of a request whose body is still coming."""

    __slots__ = ("buf", "continued", "head", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.head: _Head | None = None
        self.continued = False


def _chunked_body(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """A complete chunked body starting at `pos`, and where it ends; None while it is incomplete."""
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        pos = eol + 2
        if size == 0:
            while True:  # optional trailers, then the empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


def _parse_head(buf: bytearray, end: int) -> _Head:
    """The request head that ends at `end` (the index of its blank line)."""
    head = bytes(buf[:end])
    lines = head.split(b"\r\n")
    try:
        method, target, version = lines[0].split(b" ", 2)
    except ValueError:
        raise ServerError(f"malformed request line {lines[0][:100]!r}") from None
    length = 0
    chunked = expect = False
    close = version == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"expect":
            expect = value.strip().lower() == b"100-continue"
        elif name == b"connection":
            token = value.strip().lower()
            close = token == b"close" or (close and token != b"keep-alive")
    return _Head(method, target, length, chunked, close, end + 4, expect, head)


def _take_request(conn: _Conn, record: RunRecord) -> tuple[_Head, bytes] | None:
    """The next complete request in `conn`'s buffer (removed from it), or None until more bytes arrive."""
    buf = conn.buf
    head = conn.head
    if head is None:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ServerError("a request head longer than 64 KiB")
            return None
        head = conn.head = _parse_head(buf, end)
    if head.chunked:
        parsed = _chunked_body(buf, head.body_start)
        if parsed is not None:
            body, body_end = parsed
            record.chunked_bodies += 1
            del buf[:body_end]
            conn.head = None
            conn.continued = False
            return head, body
    elif len(buf) - head.body_start >= head.length:
        body_end = head.body_start + head.length
        body = bytes(buf[head.body_start : body_end])
        del buf[:body_end]
        conn.head = None
        conn.continued = False
        return head, body
    if head.expect_continue and not conn.continued:  # the client waits for this before sending the body
        conn.sock.sendall(CONTINUE)
        conn.continued = True
        record.continues += 1
    return None


class _Session:
    """One run's state: counters, the request id being served, when its event was sent."""

    __slots__ = ("answered", "current_rid", "event", "head_start", "nexts", "pending", "pid", "record",
                 "rid_prefix", "sent_ns", "server_cpu_start", "total")

    def __init__(self, pid: int, event: bytes, record: RunRecord, run_number: int) -> None:
        self.pid = pid
        self.event = event
        self.record = record
        self.total = record.warmup + record.invocations
        self.rid_prefix = b"%08x-0000-4000-8000-" % (run_number & 0xFFFFFFFF)
        self.head_start = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Invoked-Function-Arn: "
            + FUNCTION_ARN + b"\r\nLambda-Runtime-Trace-Id: " + TRACE_ID
            + b"\r\nContent-Length: %d\r\nLambda-Runtime-Deadline-Ms: " % len(event)
        )
        self.nexts = self.answered = self.sent_ns = self.server_cpu_start = 0
        self.current_rid = b""
        self.pending: _Conn | None = None  # the connection of the final /next, left unanswered

    def on_next(self, conn: _Conn, head: _Head, now: int) -> bool:
        """Answer a `/next` with the event; True (and no answer) when it ends the measured window."""
        record = self.record
        self.nexts += 1
        nexts = self.nexts
        if nexts == 1:
            record.first_next_ns = now
            record.rss_init_kib = procfs.memory_kib(self.pid)
            record.sample_heads.setdefault("next", head.raw.decode("latin-1"))
        elif nexts == 2:
            record.rss_first_kib = procfs.memory_kib(self.pid)
        if nexts == record.warmup + 1:
            record.start = procfs.snapshot(self.pid)
            self.server_cpu_start = time.thread_time_ns()
            record.window_start_ns = now = time.perf_counter_ns()  # the /proc read is not the runtime's time
            record.next_ns.append(now)
        elif nexts > record.warmup + 1:
            record.next_ns.append(now)
            if nexts == self.total + 1:
                record.server_cpu_ns = time.thread_time_ns() - self.server_cpu_start
                record.window_end_ns = now
                record.end = procfs.snapshot(self.pid)
                record.rss_end_kib = procfs.memory_kib(self.pid)
                self.pending = conn
                return True
        self.current_rid = rid = self.rid_prefix + b"%012x" % nexts
        deadline = b"%d" % (time.time_ns() // 1_000_000 + TIMEOUT_MS)
        answer = b"".join((self.head_start, deadline, b"\r\nLambda-Runtime-Aws-Request-Id: ", rid, b"\r\n\r\n"))
        event = self.event
        sent = conn.sock.sendmsg((answer, event))
        if sent < len(answer) + len(event):
            conn.sock.sendall((answer + event)[sent:])
        self.sent_ns = time.perf_counter_ns()
        return False

    def handle(self, conn: _Conn, head: _Head, body: bytes, now: int) -> bool:
        """Answer one request; True when it ends the run (the `/next` after the last measured invocation)."""
        if head.target == NEXT_PATH:
            return self.on_next(conn, head, now)
        if head.method == b"POST" and head.target.startswith(INVOCATION_PREFIX):
            self.on_post(conn, head, body, now)
        elif head.target == INIT_ERROR_PATH:
            conn.sock.sendall(ACCEPTED)
            raise ServerError(f"the runtime failed init: {body[:500].decode('utf-8', 'replace')}")
        else:
            conn.sock.sendall(NOT_FOUND)
        return False

    def on_post(self, conn: _Conn, head: _Head, body: bytes, now: int) -> None:
        """Take a `/response` or `/error` for the current request and answer 202."""
        rid, _, leaf = head.target[len(INVOCATION_PREFIX) :].rpartition(b"/")
        if leaf not in (b"response", b"error") or rid != self.current_rid:
            raise ServerError(f"unexpected POST {head.target!r} (serving {self.current_rid!r})")
        record = self.record
        self.answered += 1
        if self.answered == 1:
            record.first_response_ns = now
            record.sample_heads.setdefault(leaf.decode(), head.raw.decode("latin-1"))
        if self.answered > record.warmup:
            record.latencies_ns.append(now - self.sent_ns)
        if leaf == b"error":
            record.errors += 1
            record.last_error = body
        record.last_body = body
        conn.sock.sendall(ACCEPTED)


class BenchServer:
    """Listens on 127.0.0.1 (a free port); `run()` serves one runtime process for a fixed number of invocations."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        self._conns: dict[int, _Conn] = {}
        self._runs = 0
        self._pending: _Conn | None = None

    def close(self) -> None:
        self.drop_connections()
        self._listener.close()

    def refuse_next(self) -> None:
        """Answer the run's final `/next` with a 500 and hang up, so the runtime exits by itself (its atexit hooks,
        e.g. a profiler's, run). Dropping the connection is not enough: libcurl reconnects and asks again."""
        conn, self._pending = self._pending, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sock.sendall(REFUSED)
        self.drop_connections()

    def drop_connections(self) -> None:
        """Hang up on every client (after a run; a runtime still alive then sees the API go away and exits)."""
        for conn in self._conns.values():
            conn.sock.close()
        self._conns.clear()

    def run(
        self,
        pid: int,
        event: bytes,
        *,
        warmup: int,
        invocations: int,
        spawned_ns: int,
        alive: Callable[[], bool],
        timeout_s: float,
    ) -> RunRecord:
        """Serve `warmup + invocations` events to the runtime `pid` and measure the last `invocations` of them.

        Returns when the runtime asks for one more event (which is never answered: the caller kills it), so the
        window ends with every flush the runtime performs before `/next` included.
        """
        self._runs += 1
        record = RunRecord(warmup=warmup, invocations=invocations, spawned_ns=spawned_ns)
        session = _Session(pid, event, record, self._runs)
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # no collector pauses inside a measured window
        try:
            self._serve(session, alive, time.monotonic() + timeout_s)
        finally:
            self._pending = session.pending
            if gc_was_enabled:
                gc.enable()
        return record

    def _close(self, poller: select.poll, fd: int) -> None:
        poller.unregister(fd)
        self._conns.pop(fd).sock.close()

    def _accept(self, poller: select.poll, record: RunRecord) -> None:
        sock, _ = self._listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns[sock.fileno()] = _Conn(sock)
        poller.register(sock.fileno(), select.POLLIN)
        record.connections += 1

    def _serve(self, session: _Session, alive: Callable[[], bool], give_up_at: float) -> None:
        record = session.record
        clock = time.perf_counter_ns
        poller = select.poll()
        listener_fd = self._listener.fileno()
        poller.register(listener_fd, select.POLLIN)
        for fd in self._conns:
            poller.register(fd, select.POLLIN)
        while True:
            ready = poller.poll(_POLL_IDLE_MS)
            if not ready:
                if not alive():
                    raise ServerError(f"the runtime exited after {session.nexts} /next and {session.answered} answers")
                if time.monotonic() > give_up_at:
                    raise ServerError(f"timed out after {session.nexts} /next and {session.answered} answers")
                continue
            for fd, _ in ready:
                if fd == listener_fd:
                    self._accept(poller, record)
                    continue
                conn = self._conns[fd]
                try:
                    data = conn.sock.recv(_RECV_BYTES)
                except OSError:
                    data = b""
                now = clock()
                if not data:
                    self._close(poller, fd)
                    continue
                conn.buf += data
                while (request := _take_request(conn, record)) is not None:
                    head, body = request
                    if session.handle(conn, head, body, now):
                        return
                    if head.close:
                        self._close(poller, fd)
                        break
