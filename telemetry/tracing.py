"""Spans: the resource, the invocation span's attributes and parent, and a span queue emptied only by flushes.

This module imports the OpenTelemetry SDK, so `telemetry.otel` imports it only when spans or metrics are
configured; with nothing configured none of this is loaded. Exporter packages load later still: `span_exporter`
is called on the export thread at the first export, after the first response is posted, so the exporter's
~60 ms of imports never sit on a caller's path.

Event shapes (`detect_trigger`, `traceparent_from_event`) are recognised from a bounded window of the raw body,
never by parsing it: the handler decodes the event anyway, and a second `json.loads` of a 6 MB event would cost
the caller tens of milliseconds. Matching whole JSON string tokens (`"aws:sqs"`, quotes included) keeps this
exact enough: inside a JSON string value every quote is escaped, so a message body that merely mentions
`aws:sqs` cannot match.

Imports: opentelemetry-api/sdk, stdlib, `runtime.model`, `runtime.http1`, `telemetry.config`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import re
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.util.types import AttributeValue

from runtime.http1 import ResponseReader
from runtime.model import Invocation
from telemetry.config import TelemetryConfig

if TYPE_CHECKING:
    import requests

Attributes = dict[str, AttributeValue]
_Exporter = TypeVar("_Exporter")

# faas.trigger values (OpenTelemetry FaaS semantic conventions).
HTTP = "http"
PUBSUB = "pubsub"
DATASOURCE = "datasource"
TIMER = "timer"
OTHER = "other"

HEAD_BYTES = 8 * 1024  # where HTTP, EventBridge and the first record's keys live
TAIL_BYTES = 2 * 1024  # SQS and Kinesis records put eventSource after their (large) payload: the last one is here
TRACEPARENT_HEAD_BYTES = 32 * 1024  # HTTP events carry their headers (≤ 10 KiB at API Gateway) before the body
_LEAD_BYTES = 160  # a record batch's first key ("Records", or "eventSource" for Kafka/MQ) is right at the start

# eventSource values of record batches → trigger. SNS spells the key EventSource; the value token is the same.
_RECORD_SOURCES: tuple[tuple[bytes, str], ...] = (
    (b'"aws:sqs"', PUBSUB),
    (b'"aws:sns"', PUBSUB),
    (b'"aws:kinesis"', PUBSUB),
    (b'"aws:kafka"', PUBSUB),
    (b'"SelfManagedKafka"', PUBSUB),
    (b'"aws:mq"', PUBSUB),
    (b'"aws:amq"', PUBSUB),
    (b'"aws:rmq"', PUBSUB),
    (b'"aws:s3"', DATASOURCE),
    (b'"aws:dynamodb"', DATASOURCE),
)
_TRACEPARENT = re.compile(rb'"traceparent"\s*:\s*"([0-9a-fA-F-]{55})"', re.IGNORECASE)
_TRACESTATE = re.compile(rb'"tracestate"\s*:\s*"([^"\\]{1,512})"', re.IGNORECASE)

TIMEOUT_ERROR_TYPE = "Sandbox.Timedout"  # what Lambda reports for an invocation that ran out of time
TENANT_ATTRIBUTE = "aws.lambda.tenant_id"  # no semantic convention yet; aws.lambda.* is the namespace for Lambda


# -- event shapes --------------------------------------------------------------------------------------------------
def detect_trigger(body: bytes) -> str:
    """`faas.trigger` for an event, from at most `HEAD_BYTES + TAIL_BYTES` of it (microseconds, any event size).

    Record batches are checked first because their payloads are escaped strings (SQS, SNS) or base64 (Kinesis),
    so they cannot fake an HTTP or EventBridge key, while an EventBridge `detail` or a DynamoDB image is raw JSON
    that could contain an `httpMethod` key. EventBridge Scheduler targets get whatever payload the schedule
    defines and are therefore `other` unless that payload is the classic scheduled-event shape.
    """
    head = body[:HEAD_BYTES].lstrip()
    if not head.startswith(b"{"):
        return OTHER
    lead = head[:_LEAD_BYTES]
    if b'"Records"' in lead or b'"eventSource"' in lead:
        tail = body[-TAIL_BYTES:] if len(body) > HEAD_BYTES else b""
        for token, trigger in _RECORD_SOURCES:
            if token in head or token in tail:
                return trigger
    if b'"detail-type"' in head and b'"source"' in head:
        return TIMER if b'"Scheduled Event"' in head and b'"aws.events"' in head else PUBSUB
    if b'"httpMethod"' in head or b'"routeKey"' in head:  # API Gateway REST and ALB; HTTP API and function URLs
        return HTTP
    return OTHER


def traceparent_from_event(body: bytes) -> tuple[str, str | None] | None:
    """The W3C `traceparent` (and `tracestate`) header of an HTTP event, looked up in its first 32 KiB."""
    head = body[:TRACEPARENT_HEAD_BYTES]
    if b"raceparent" not in head and b"RACEPARENT" not in head and b"raceParent" not in head:
        return None
    found = _TRACEPARENT.search(head)
    if found is None:
        return None
    state = _TRACESTATE.search(head)
    return found.group(1).decode("ascii"), state.group(1).decode("ascii", "replace") if state else None


# -- AWS X-Ray -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class XRayHeader:
    trace_id: int  # the Root's 8 + 24 hex digits as one 128-bit W3C trace id
    parent_id: int
    sampled: bool | None  # None: "Sampled=?" or absent (the decision is left to us)

    def span_context(self, obey_sampled: bool) -> SpanContext:
        """A remote parent. Lambda sends `Sampled=0` whenever active tracing is off, so unless told to obey it
        the flag is treated as sampled: otherwise every span of a function that configured an exporter, but not
        X-Ray, would be silently dropped. Obeyed, it lets X-Ray's sampling rules decide for OpenTelemetry too."""
        sampled = self.sampled is not False if obey_sampled else True
        return SpanContext(
            self.trace_id, self.parent_id, is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )

    def header(self) -> str:
        hexid = f"{self.trace_id:032x}"
        flag = "?" if self.sampled is None else "1" if self.sampled else "0"
        return f"Root=1-{hexid[:8]}-{hexid[8:]};Parent={self.parent_id:016x};Sampled={flag}"


def parse_xray(header: str | None) -> XRayHeader | None:
    """`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1` → ids and flag; None if the
    header is absent or malformed (a bad header never fails an invocation: the span becomes a root instead)."""
    if not header:
        return None
    root = parent = None
    sampled: bool | None = None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            pieces = value.split("-")
            if len(pieces) == 3 and pieces[0] == "1" and len(pieces[1]) == 8 and len(pieces[2]) == 24:
                root = pieces[1] + pieces[2]
        elif key == "Parent" and len(value) == 16:
            parent = value
        elif key == "Sampled":
            sampled = True if value == "1" else False if value == "0" else None
    if root is None or parent is None:
        return None
    try:
        trace_id, parent_id = int(root, 16), int(parent, 16)
    except ValueError:
        return None
    if not trace_id or not parent_id:
        return None
    return XRayHeader(trace_id, parent_id, sampled)


class XRayPropagator(TextMapPropagator):
    """`X-Amzn-Trace-Id` in and out (`OTEL_PROPAGATORS=xray`), so calls to AWS services join the X-Ray trace.

    Ours, rather than the opentelemetry-propagator-aws-xray package: the parsing is already here for
    `Lambda-Runtime-Trace-Id`, and one dependency fewer is one import fewer at cold start.
    """

    HEADER = "X-Amzn-Trace-Id"

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        values = getter.get(carrier, self.HEADER) or getter.get(carrier, self.HEADER.lower())
        parsed = parse_xray(values[0] if values else None)
        if parsed is None:
            return context if context is not None else Context()
        return trace.set_span_in_context(NonRecordingSpan(parsed.span_context(obey_sampled=True)), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        ctx = trace.get_current_span(context).get_span_context()
        if not ctx.is_valid:
            return
        setter.set(carrier, self.HEADER, XRayHeader(ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled).header())

    @property
    def fields(self) -> set[str]:
        return {self.HEADER}


def build_propagator(names: Sequence[str], diagnose: Callable[[str], None]) -> TextMapPropagator:
    """OTEL_PROPAGATORS as a composite; names we do not know are reported and skipped, never fatal."""
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    known: dict[str, Callable[[], TextMapPropagator]] = {
        "tracecontext": TraceContextTextMapPropagator,
        "baggage": W3CBaggagePropagator,
        "xray": XRayPropagator,
    }
    if "none" in names:
        return CompositePropagator([])
    chosen: list[TextMapPropagator] = []
    for name in names:
        if name in known:
            chosen.append(known[name]())
        else:
            diagnose(f"OTEL_PROPAGATORS: {name!r} is not supported here (use tracecontext, baggage, xray or none)")
    return CompositePropagator(chosen)


def install_global_propagator(propagator: TextMapPropagator, diagnose: Callable[[str], None]) -> None:
    """Make our propagator the one instrumentations inject with (`opentelemetry.propagate` reads the
    environment on import and raises for a name without an installed entry point, e.g. `xray`)."""
    try:
        from opentelemetry import propagate
    except Exception as exc:
        diagnose(f"OTEL_PROPAGATORS could not be loaded by OpenTelemetry ({exc}); outgoing calls carry no context")
        return
    propagate.set_global_textmap(propagator)


# -- the invocation span -------------------------------------------------------------------------------------------
def account_id(arn: str | None) -> str | None:
    """`arn:aws:lambda:us-east-1:123456789012:function:name[:qualifier]` → `123456789012`."""
    parts = (arn or "").split(":")
    return parts[4] if len(parts) >= 7 and parts[0] == "arn" and parts[4].isdigit() else None


def function_resource_id(arn: str | None, function_version: str) -> str | None:
    """cloud.resource_id as the conventions define it for Lambda: the function ARN with an alias replaced by the
    version that runs (one runtime instance may be invoked through several aliases)."""
    if not arn:
        return None
    parts = arn.split(":")
    if len(parts) < 7:
        return arn
    base = ":".join(parts[:7])
    return base if function_version in ("", "$LATEST") else f"{base}:{function_version}"


def span_attributes(
    inv: Invocation, *, cold_start: bool, function_version: str = "$LATEST", trigger: str | None = None
) -> Attributes:
    """The invocation span's attributes (FaaS semantic conventions). Pure: same invocation, same attributes."""
    attrs: Attributes = {
        "faas.invocation_id": inv.request_id,
        "faas.coldstart": cold_start,
        "faas.trigger": trigger if trigger is not None else detect_trigger(inv.body),
    }
    if inv.invoked_function_arn:
        attrs["aws.lambda.invoked_arn"] = inv.invoked_function_arn
        attrs["cloud.resource_id"] = function_resource_id(inv.invoked_function_arn, function_version) or ""
        account = account_id(inv.invoked_function_arn)
        if account:
            attrs["cloud.account.id"] = account
    if inv.tenant_id:
        attrs[TENANT_ATTRIBUTE] = inv.tenant_id
    return attrs


def parent_context(
    inv: Invocation, cfg: TelemetryConfig
) -> tuple[Context | None, list[trace.Link]]:
    """The invocation span's parent and links.

    The parent is the event's W3C `traceparent` when `TELEMETRY_TRACEPARENT_FROM_EVENT` is on and one is there
    (then the X-Ray context becomes a link, so neither trace loses the invocation), else the X-Ray context of
    `Lambda-Runtime-Trace-Id`, else none (a root span).
    """
    xray = parse_xray(inv.trace_id)
    xray_ctx = xray.span_context(cfg.otel_xray_sampled) if xray is not None else None
    if cfg.otel_traceparent_from_event:
        found = traceparent_from_event(inv.body)
        if found is not None:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            carrier = {"traceparent": found[0]}
            if found[1]:
                carrier["tracestate"] = found[1]
            ctx = TraceContextTextMapPropagator().extract(carrier)
            if trace.get_current_span(ctx).get_span_context().is_valid:
                return ctx, [trace.Link(xray_ctx)] if xray_ctx is not None else []
    if xray_ctx is not None:
        return trace.set_span_in_context(NonRecordingSpan(xray_ctx)), []
    return None, []


# -- provider ------------------------------------------------------------------------------------------------------
def build_resource(cfg: TelemetryConfig, instance_id: str | None = None) -> Resource:
    """The process's resource. Built from the config alone (no resource detectors reading the environment):
    our FaaS/cloud attributes, overridden by OTEL_RESOURCE_ATTRIBUTES, overridden by OTEL_SERVICE_NAME."""
    attrs: Attributes = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "service.name": cfg.function_name or "unknown_service",
        "service.instance.id": instance_id or uuid.uuid4().hex,
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
    }
    if cfg.region:
        attrs["cloud.region"] = cfg.region
    if cfg.function_name:
        attrs["faas.name"] = cfg.function_name
    if cfg.function_version:
        attrs["faas.version"] = cfg.function_version
    if cfg.log_stream_name:
        attrs["faas.instance"] = cfg.log_stream_name
    if cfg.memory_mb:
        attrs["faas.max_memory"] = cfg.memory_mb * 1024 * 1024  # bytes, as the conventions define it
    attrs.update(dict(cfg.otel_resource_attributes))
    if cfg.otel_service_name:
        attrs["service.name"] = cfg.otel_service_name
    return Resource(attrs)


class SpanQueue(SpanProcessor):
    """Ended spans wait here until a flush (or a full batch) wakes the export thread.

    Why not the SDK's BatchSpanProcessor: its `force_flush` ignores its timeout and exports on the caller's thread
    (SDK 1.45, see the TODO on opentelemetry-python#4568), so a hung collector would hold the loop for the whole
    exporter timeout; it wakes on a 5 s timer, which in Lambda fires on thaw in the middle of the next invocation;
    and its queue drops silently. Here the queue is bounded (the oldest span goes first and every loss is
    counted), and exporting is the export thread's job alone (`telemetry.middleware.ExportWorker`).
    """

    def __init__(
        self, max_spans: int = 2048, batch_size: int = 512, on_batch: Callable[[], None] | None = None
    ) -> None:
        self._spans: deque[ReadableSpan] = deque(maxlen=max_spans)
        self._max = max_spans
        self._batch = batch_size
        self.on_batch = on_batch  # called (on the ending thread) each time another full batch is queued
        self._overflow = 0
        self._lock = threading.Lock()
        self._closed = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if self._closed or ctx is None or not ctx.trace_flags.sampled:
            return
        if len(self._spans) >= self._max:
            with self._lock:
                self._overflow += 1  # the deque's maxlen drops the oldest span on append
        self._spans.append(span)
        if self.on_batch is not None and len(self._spans) % self._batch == 0:
            self.on_batch()

    def take(self, limit: int) -> list[ReadableSpan]:
        batch: list[ReadableSpan] = []
        try:
            while len(batch) < limit:
                batch.append(self._spans.popleft())
        except IndexError:
            pass
        return batch

    def __len__(self) -> int:
        return len(self._spans)

    def take_overflow(self) -> int:
        with self._lock:
            n, self._overflow = self._overflow, 0
        return n

    def shutdown(self) -> None:
        self._closed = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flushing is `Otel.flush`'s job (bounded, on the export thread); the provider's own call is a no-op."""
        del timeout_millis
        return True


def build_tracer_provider(resource: Resource, processor: SpanProcessor) -> TracerProvider:
    """The sampler comes from OTEL_TRACES_SAMPLER(_ARG) as the SDK reads it (default parentbased_always_on).
    No exit handler: shutdown is ours, within a budget, and an atexit flush could hang on a dead collector."""
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider


def otlp_url(cfg: TelemetryConfig, signal_endpoint: str | None, path: str) -> str | None:
    if signal_endpoint:
        return signal_endpoint
    if cfg.otel_endpoint:
        return f"{cfg.otel_endpoint.rstrip('/')}/{path}" if cfg.otel_protocol == "http/protobuf" else cfg.otel_endpoint
    return None  # the exporter's own default (localhost:4318), because an exporter was asked for explicitly


def span_exporter(cfg: TelemetryConfig) -> SpanExporter:
    """The configured span exporter, importing its package now (called on the export thread, at first use).
    Raises ImportError when the package is not installed."""
    timeout_s = cfg.otel_export_timeout_ms / 1000
    if cfg.otel_traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # The real stdout, one JSON line per span: sys.stdout may be the print() capture, which would turn
        # every exported span into a log record.
        out = sys.__stdout__ or sys.stdout
        return ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    headers = dict(cfg.otel_headers)
    endpoint = otlp_url(cfg, cfg.otel_traces_endpoint, "v1/traces")
    if cfg.otel_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter as GrpcSpanExporter,
        )

        exporter: SpanExporter = GrpcSpanExporter(endpoint=endpoint, headers=headers, timeout=timeout_s)
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    http_exporter: SpanExporter = otlp_http_exporter(OTLPSpanExporter, endpoint, "v1/traces", headers, timeout_s)
    return http_exporter


def otlp_http_exporter(
    exporter_class: Callable[..., _Exporter], endpoint: str | None, path: str, headers: dict[str, str],
    timeout_s: float,
) -> _Exporter:
    """An OTLP/HTTP span or metric exporter: on the lean transport when it applies (`lean_otlp_transport`),
    else posting through `requests` (`otlp_http_session`)."""
    url = endpoint or OTLP_HTTP_DEFAULT_BASE + path
    transport = lean_otlp_transport(url)
    if transport is not None:
        try:
            # OtlpHttpTransport has BaseHTTPTransport's shape without subclassing it: the base lives in a beta
            # package's private module, and a duck-typed seam cannot break our import when that moves.
            return exporter_class(endpoint=url, headers=headers, timeout=timeout_s, _transport=transport)
        except TypeError:  # an exporter release without the transport seam: requests it is
            pass
    return exporter_class(endpoint=endpoint, headers=headers, timeout=timeout_s, session=otlp_http_session(url))


#: where the OTLP/HTTP exporters send when no endpoint is configured (their own default)
OTLP_HTTP_DEFAULT_BASE = "http://localhost:4318/"
#: the exporters load a credential provider's session only when they are given none
_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_METRICS_CREDENTIAL_PROVIDER",
)
#: what `requests` reads from the environment besides proxies and netrc (they override the exporter's `verify`)
_REQUESTS_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def requests_would_use_environment(url: str, environ: Mapping[str, str]) -> bool:
    """Whether a `requests` session that trusts the environment would send to `url` differently than one that
    does not: a proxy variable (`*_proxy` in any case, `no_proxy` included, as `urllib.request.getproxies`
    reads them), for an `https` URL a CA bundle variable (it overrides the exporter's `verify`), or a netrc
    file (`NETRC`, else `~/.netrc` or `~/_netrc`, where `requests` looks for credentials: whether it holds an
    entry for this host is not worth parsing it for). Answered without importing `requests`, so the lean
    transport's exporters never import it (nor the instrumentation it switches on)."""
    import os

    if any(value and name.lower().endswith("_proxy") for name, value in environ.items()):
        return True
    if url.lower().startswith("https:") and any(environ.get(name) for name in _REQUESTS_CA_VARIABLES):
        return True
    netrc = environ.get("NETRC")
    candidates = [netrc] if netrc else [os.path.expanduser("~/.netrc"), os.path.expanduser("~/_netrc")]
    return any(os.path.exists(path) for path in candidates)


def otlp_http_session(url: str, environ: Mapping[str, str] | None = None) -> requests.Session | None:
    """The `requests` session an OTLP/HTTP exporter posts to `url` with; None leaves the choice to the exporter.

    A session trusts the environment by default, and then `requests` rescans every environment variable for
    proxies, a CA bundle and a netrc file on every POST: measured, that was a quarter of each export's CPU, paid
    twice per flush (spans, metrics). When the environment says nothing that would change this URL's requests
    (`requests_would_use_environment`), the session stops looking (`trust_env = False`); otherwise it keeps
    trusting it exactly as before. Checked once, when the exporter is built (at the first export, after the
    handler's module and first invocation ran). With an OTLP credential provider configured, None: the exporter
    then loads the provider's session itself. Like the SDK's own reading of `OTEL_*` (the documented exception
    to "config is read once"), this looks at the process environment, which is where `requests` looks.
    """
    import os

    import requests

    env: Mapping[str, str] = os.environ if environ is None else environ
    if any(env.get(name) for name in _CREDENTIAL_PROVIDERS):
        return None
    session = requests.Session()
    if not requests_would_use_environment(url, env):
        session.trust_env = False
    return session


def lean_otlp_transport(url: str, environ: Mapping[str, str] | None = None) -> OtlpHttpTransport | None:
    """An `OtlpHttpTransport` for `url` when nothing that only `requests` provides is needed: plain `http`,
    no OTLP credential provider, and nothing in the environment that `requests` would apply to `url`
    (`requests_would_use_environment`); otherwise None (the exporter then posts through `requests`).
    """
    import os

    env: Mapping[str, str] = os.environ if environ is None else environ
    if not url.lower().startswith("http://") or any(env.get(name) for name in _CREDENTIAL_PROVIDERS):
        return None
    if requests_would_use_environment(url, env):
        return None
    try:
        return OtlpHttpTransport(url)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class OtlpHttpResult:
    """One answer (or the error that stopped it), shaped like the exporters' `BaseHTTPResult`."""

    status_code: int | None = None
    reason: str | None = None
    error: Exception | None = None
    body: bytes = b""
    header_map: Mapping[str, str] | None = None  # names in lower case

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return _LowerCaseHeaders(self.header_map or {})

    def text(self) -> str:
        return self.body.decode("utf-8")


class _LowerCaseHeaders(Mapping[str, str]):
    """Case-insensitive lookups over a dict whose keys are already lower case."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class OtlpHttpProtocolError(ConnectionError):
    """The collector's answer was not HTTP/1.1 we can read; the connection is dropped (and the export retried
    once on a new one, as for any connection error)."""


_MAX_HEAD_BYTES = 64 * 1024
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


class OtlpHttpTransport:
    """POSTs OTLP payloads to one plain-HTTP URL over one keep-alive connection: the exporters' transport seam
    (`request`, `is_connection_error`, `close`), without `requests`.

    Why: through `requests` (session, request preparation, urllib3's pool, `http.client`'s email-based header
    parser) one export took ~6x the CPU of encoding its span batch (cProfile of the benchmark's "everything on"
    run, even with `trust_env` off), and a flush makes two (spans and metrics, each on its own thread, competing
    for the GIL while the loop waits); with this transport the runtime's background threads went from ~2.3 to
    ~1.3 ms of CPU per invocation in that benchmark. The exporter keeps doing everything else as before:
    headers, compression, the retry policy and its timeout. Only what plain HTTP to a collector needs is here:
    Content-Length requests; Content-Length, chunked or close-delimited answers; 1xx skipped; every socket
    operation bounded by the request's timeout. A connection the collector closed while idle (or while Lambda
    kept the process frozen) is noticed before the next POST and replaced; any error drops the connection, and
    the exporter retries a connection error once at once, as it does with `requests`.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise ValueError(f"not a plain-HTTP URL: {url!r}")
        self.url = url
        self._address = (parts.hostname, parts.port or 80)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        self._host_header = host if parts.port is None else f"{host}:{parts.port}"
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.connects = 0

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> OtlpHttpResult:
        if url != self.url:
            return OtlpHttpResult(error=ValueError(f"this transport posts to {self.url}, not {url}"))
        deadline = None if timeout is None else time.monotonic() + timeout
        body = data or b""
        head = [f"{method} {self._target} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in (headers or {}).items():
            if not _HEADER_NAME.fullmatch(name) or "\r" in value or "\n" in value:
                # as requests refuses them: a CR or LF in a configured header would forge the request
                return OtlpHttpResult(error=ValueError(f"invalid HTTP header {name!r}"))
            head.append(f"{name}: {value}\r\n")
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        try:
            message = "".join(head).encode("latin-1") + body
        except UnicodeEncodeError as exc:
            return OtlpHttpResult(error=exc)
        with self._lock:
            if self._closed:
                return OtlpHttpResult(error=RuntimeError("the transport is closed"))  # not retried
            try:
                sock = self._connection(deadline)
                _settimeout(sock, deadline)
                sock.sendall(message)
                return self._read_response(sock, method, deadline)
            except (OSError, ValueError) as exc:
                self._drop()
                error = exc if isinstance(exc, OSError) else OtlpHttpProtocolError(str(exc))
                return OtlpHttpResult(error=error)

    def is_connection_error(self, exception: Exception | None) -> bool:
        return isinstance(exception, OSError)

    def close(self) -> None:
        """Close the connection without waiting for an export in flight: a shutdown within a budget must not sit
        out a hung collector's timeout. The socket is shut down under that export, which then fails at once."""
        self._closed = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()

    # -- the connection ----------------------------------------------------------------------------------------
    def _connection(self, deadline: float | None) -> socket.socket:
        sock = self._sock
        if sock is not None:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return sock
            self._drop()  # the collector closed it (or sent something unasked): either way it cannot be reused
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("no time left to connect to the collector")
        sock = socket.create_connection(self._address, timeout=remaining)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self.connects += 1
        return sock

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- the answer --------------------------------------------------------------------------------------------
    def _read_response(self, sock: socket.socket, method: str, deadline: float | None) -> OtlpHttpResult:
        reader = ResponseReader(sock, deadline, head_limit=_MAX_HEAD_BYTES)
        head, body = reader.answer(head_request=method == "HEAD")
        if not head.keep_alive or reader.leftover:
            self._drop()
        return OtlpHttpResult(status_code=head.status, reason=head.reason, body=body, header_map=head.headers)


def _settimeout(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        sock.settimeout(None)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the export timed out")
    sock.settimeout(remaining)


# -- outgoing HTTP -------------------------------------------------------------------------------------------------
class _HookedLoader(importlib.abc.Loader):
    """Runs the real loader, then the hook. The module keeps its real loader (resources, reloads)."""

    def __init__(self, inner: importlib.abc.Loader, hook: Callable[[ModuleType], None]) -> None:
        self._inner = inner
        self._hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._inner
        if module.__spec__ is not None:
            module.__spec__.loader = self._inner
        self._inner.exec_module(module)
        self._hook(module)


class AfterImport(importlib.abc.MetaPathFinder):
    """Call `hook(module)` once `name` has been imported, by whoever imports it (one-shot; stdlib only)."""

    def __init__(self, name: str, hook: Callable[[ModuleType], None]) -> None:
        self._name = name
        self._hook = hook

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._name:
            return None
        self.remove()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader, self._hook)
                return spec  # type: ignore[no-any-return]
        return None

    def install(self) -> None:
        if self._name in sys.modules:
            self._hook(sys.modules[self._name])
        else:
            sys.meta_path.insert(0, self)

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


def instrument_requests_on_import(
    tracer_provider: trace.TracerProvider,
    meter_provider: object | None,
    diagnose: Callable[[str], None],
) -> AfterImport:
    """Turn on opentelemetry-instrumentation-requests when `requests` is imported, by the handler or by our
    OTLP exporter (only when it needs `requests`: TLS, a proxy, netrc, a credential provider; a plain-HTTP
    collector gets `OtlpHttpTransport`), and not before: its imports cost ~100 ms (measured,
    bench/bench_otel_import.py), which a function that never uses `requests` should not pay, and a handler that
    does use it imports it at init or before its first call, so no call escapes. The exporter's own calls run on
    the export thread with instrumentation suppressed, and the Runtime API client does not use `requests`."""

    def hook(module: ModuleType) -> None:
        del module
        try:
            from opentelemetry.instrumentation.requests import RequestsInstrumentor

            RequestsInstrumentor().instrument(
                tracer_provider=tracer_provider, meter_provider=meter_provider, skip_dep_check=True
            )
        except Exception as exc:  # a broken instrumentation must never break the handler's import
            diagnose(f"the requests instrumentation could not be enabled: {type(exc).__name__}: {exc}")

    finder = AfterImport("requests", hook)
    finder.install()
    return finder
