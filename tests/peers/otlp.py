"""A tiny in-process OTLP/HTTP receiver on 127.0.0.1: traces, metrics and logs (test-peers.md §4).

stdlib ``http.server`` plus the official ``opentelemetry-proto`` messages. It accepts protobuf and JSON bodies,
gzip or deflate, and answers like a collector (200 with an empty Export*ServiceResponse).

Fault switches, for "the collector is down/hung/failing" tests:
    * ``hang = True``: connections are accepted and the request is left unread and unanswered until ``hang`` is
      turned off again or the receiver closes;
    * ``fail_status = 503``: every export gets that HTTP status (and nothing is recorded).

    with OtlpReceiver() as rx:
        exporter = OTLPSpanExporter(endpoint=rx.traces_url)
        ...
        resource, scope, span = rx.wait_for_spans(1)[0]
"""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from google.protobuf.json_format import Parse
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .ports import HOST

ROUTES: dict[str, tuple[type[Message], type[Message]]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}


@dataclass(frozen=True)
class ExportRequest:
    """One export as received: URL path, decoded request message and HTTP headers."""

    path: str
    message: Any  # ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest
    headers: dict[str, str]


class OtlpReceiver:
    """An OTLP/HTTP endpoint in a background thread. ``endpoint`` is the base URL (no ``/v1/...`` path)."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.requests: list[ExportRequest] = []
        self._hang = False
        self.fail_status: int | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a hung handler must not block close()
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self.endpoint = f"http://{host}:{self.port}"

    @property
    def traces_url(self) -> str:
        return self.endpoint + "/v1/traces"

    @property
    def metrics_url(self) -> str:
        return self.endpoint + "/v1/metrics"

    @property
    def logs_url(self) -> str:
        return self.endpoint + "/v1/logs"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the exporters expect

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if receiver._wait_while_hung():
                    self.close_connection = True
                    return
                route = ROUTES.get(self.path.split("?", 1)[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if route is None:
                    self._reply(404, b"")
                    return
                if receiver.fail_status is not None:
                    self._reply(receiver.fail_status, b"")
                    return
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request_cls, response_cls = route
                message = request_cls()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    Parse(body, message, ignore_unknown_fields=True)
                else:  # application/x-protobuf
                    message.ParseFromString(body)
                receiver._record(ExportRequest(self.path, message, dict(self.headers.items())))
                self._reply(200, response_cls().SerializeToString())

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _wait_while_hung(self) -> bool:
        """Block while ``hang`` is on; True when the receiver closed meanwhile (then drop the connection)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._hang or self._closing)
            return self._closing

    def _record(self, request: ExportRequest) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    @property
    def hang(self) -> bool:
        """The "collector hung" switch: while on, requests are accepted and never answered."""
        return self._hang

    @hang.setter
    def hang(self, value: bool) -> None:
        with self._cond:  # turning it off releases the requests held so far
            self._hang = value
            self._cond.notify_all()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="otlp-receiver", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def clear(self) -> None:
        """Forget everything received so far (also turns ``hang`` and ``fail_status`` off)."""
        with self._cond:
            self.requests.clear()
            self._hang = False
            self.fail_status = None
            self._cond.notify_all()

    # -- reading -----------------------------------------------------------------------------------------------
    def _of(self, path: str) -> list[Any]:
        with self._cond:
            return [r.message for r in self.requests if r.path.split("?", 1)[0] == path]

    def spans(self) -> list[tuple[Resource, InstrumentationScope, Span]]:
        """Every span received, with its resource and instrumentation scope (ids are raw bytes: use ``.hex()``)."""
        return [
            (rs.resource, ss.scope, span)
            for req in self._of("/v1/traces")
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def metrics(self) -> list[tuple[Resource, InstrumentationScope, Metric]]:
        """Every metric data set received (one entry per metric per export)."""
        return [
            (rm.resource, sm.scope, metric)
            for req in self._of("/v1/metrics")
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        ]

    def logs(self) -> list[tuple[Resource, InstrumentationScope, LogRecord]]:
        """Every log record received."""
        return [
            (rl.resource, sl.scope, record)
            for req in self._of("/v1/logs")
            for rl in req.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]

    def _wait(self, count: Any, n: int, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(count()) >= n, timeout):
                raise TimeoutError(
                    f"OTLP receiver got {len(count())} of {n} expected {what} within {timeout:g} s "
                    f"({len(self.requests)} export request(s) in all; endpoint {self.endpoint})"
                )

    def wait_for_spans(self, n: int, timeout: float = 10.0) -> list[tuple[Resource, InstrumentationScope, Span]]:
        """Block until at least ``n`` spans arrived; return all spans. Raises TimeoutError otherwise."""
        self._wait(self.spans, n, timeout, "span(s)")
        return self.spans()

    def wait_for_metrics(self, n: int, timeout: float = 10.0) -> list[tuple[Resource, InstrumentationScope, Metric]]:
        self._wait(self.metrics, n, timeout, "metric(s)")
        return self.metrics()

    def wait_for_logs(self, n: int, timeout: float = 10.0) -> list[tuple[Resource, InstrumentationScope, LogRecord]]:
        self._wait(self.logs, n, timeout, "log record(s)")
        return self.logs()

    def __repr__(self) -> str:
        return f"<OtlpReceiver {self.endpoint} requests={len(self.requests)} hang={self.hang}>"
