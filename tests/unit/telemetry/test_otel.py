"""telemetry.otel / telemetry.middleware: the invocation span, errors, metrics, bounded flush, deadline, init.

The SDK's in-memory span exporter (and a collecting metric exporter) stand in for the collector; the OTLP path
against a real receiver is in tests/integration/test_otel_export.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from runtime.dispatch import Failure, Streamed, Success
from runtime.model import ErrorReport, Invocation
from runtime.usercode import UserCodeGate
from telemetry.config import TelemetryConfig, TelemetryConfigError
from telemetry.middleware import EXPORT_BATCH, Otel
from tests.fakes.sinks import wait_until
from tests.unit.telemetry.test_metrics import CollectingExporter, points

REPO = Path(__file__).resolve().parents[3]
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
SQS_EVENT = b'{"Records": [{"messageId": "1", "body": "hi", "eventSource": "aws:sqs"}]}'
CFG = TelemetryConfig(function_name="orders", function_version="$LATEST", flush_budget_ms=500)


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance_ms(self, ms: float) -> None:
        self.ns += int(ms * 1_000_000)


class BlockingSpanExporter(InMemorySpanExporter):
    """A collector that does not answer until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans):
        self.calls += 1
        self.release.wait(30)
        return super().export(spans)


class FailingSpanExporter(InMemorySpanExporter):
    def export(self, spans):
        return SpanExportResult.FAILURE


@pytest.fixture
def diagnostics() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def metric_exports() -> CollectingExporter:
    return CollectingExporter()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def otel(spans, metric_exports, diagnostics, clock) -> Iterator[Otel]:
    instance = Otel.create(CFG, started_ns=clock.ns - 250_000_000, span_exporter=lambda: spans,
                           metric_exporter=lambda: metric_exports, diagnostics=diagnostics, clock_ns=clock)
    yield instance
    instance.shutdown(1.0)


def ok(inv: Invocation) -> Success:
    return Success(b"{}", "application/json")


def _inv(request_id: str = "req-1", **kwargs) -> Invocation:
    kwargs.setdefault("body", b"{}")
    return Invocation(request_id, **kwargs)


def _attrs(span) -> dict:
    return dict(span.attributes or {})


# -- configuration ------------------------------------------------------------------------------------------------
def test_nothing_configured_means_no_opentelemetry_import_at_all():
    script = textwrap.dedent("""
        import sys
        from telemetry.config import TelemetryConfig
        from telemetry.otel import install_otel
        assert install_otel(TelemetryConfig.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f"})) is None
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(loaded)
        sys.exit(1 if loaded else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_runtime_core_never_imports_opentelemetry():
    # (handlers may: they reach the invocation span through the OpenTelemetry API)
    offenders = [str(path.relative_to(REPO)) for path in (REPO / "runtime").rglob("*.py")
                 if "import opentelemetry" in path.read_text() or "from opentelemetry" in path.read_text()]
    assert offenders == []


def test_otel_configuration_from_the_environment():
    off = TelemetryConfig.from_env({})
    assert (off.otel_traces_exporter, off.otel_metrics_exporter, off.otel_enabled) == ("none", "none", False)
    # an endpoint alone turns both signals on, over OTLP
    base = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "AWS_LAMBDA_FUNCTION_NAME": "f"})
    assert (base.otel_traces_exporter, base.otel_metrics_exporter) == ("otlp", "otlp")
    assert base.otel_service_name == "f"
    # a signal endpoint turns on that signal only; an explicit exporter wins
    traces = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert (traces.otel_traces_exporter, traces.otel_metrics_exporter) == ("otlp", "none")
    console = TelemetryConfig.from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
                                        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert (console.otel_traces_exporter, console.otel_metrics_exporter) == ("console", "none")
    full = TelemetryConfig.from_env({
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc%3D,tenant = t1", "OTEL_PROPAGATORS": "tracecontext, XRay",
        "TELEMETRY_OTLP_TIMEOUT_MS": "250", "TELEMETRY_TRACEPARENT_FROM_EVENT": "1", "TELEMETRY_XRAY_SAMPLED": "on",
    })
    assert full.otel_headers == (("x-api-key", "abc="), ("tenant", "t1"))
    assert full.otel_propagators == ("tracecontext", "xray")
    assert (full.otel_export_timeout_ms, full.otel_traceparent_from_event, full.otel_xray_sampled) == (250, True, True)


@pytest.mark.parametrize(("env", "name"), [
    ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ({"TELEMETRY_OTLP_TIMEOUT_MS": "0"}, "TELEMETRY_OTLP_TIMEOUT_MS"),
])
def test_bad_otel_variables_are_config_errors_naming_them(env, name):
    with pytest.raises(TelemetryConfigError, match=name):
        TelemetryConfig.from_env(env)


def test_a_secret_header_value_is_never_echoed_in_the_error():
    with pytest.raises(TelemetryConfigError) as info:
        TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer s3cret,broken"})
    assert "s3cret" not in str(info.value)


# -- the invocation span ------------------------------------------------------------------------------------------
def test_one_server_span_per_invocation_with_the_faas_attributes(otel, spans):
    dispatch = otel.middleware(ok)
    dispatch(_inv("req-1", body=SQS_EVENT, trace_id=XRAY, invoked_function_arn=ARN, tenant_id="t-9"))
    assert otel.flush(2.0)
    (span,) = spans.get_finished_spans()
    assert span.name == "orders"
    assert span.kind is SpanKind.SERVER
    assert _attrs(span) == {
        "faas.invocation_id": "req-1", "faas.coldstart": True, "faas.trigger": "pubsub",
        "aws.lambda.invoked_arn": ARN, "cloud.resource_id": ARN, "cloud.account.id": "123456789012",
        "aws.lambda.tenant_id": "t-9",
    }
    # the parent is the X-Ray context (Sampled=0 does not drop the span unless TELEMETRY_XRAY_SAMPLED is on)
    assert f"{span.context.trace_id:032x}" == "5759e988bd862e3fe1be46a994272793"
    assert f"{span.parent.span_id:016x}" == "53995c3f42cd8ad8"
    assert span.parent.is_remote
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "orders"


def test_obeying_xray_sampled_zero_exports_nothing(spans, diagnostics):
    cfg = TelemetryConfig(function_name="orders", otel_xray_sampled=True)
    instance = Otel.create(cfg, span_exporter=lambda: spans, diagnostics=diagnostics)
    try:
        instance.middleware(ok)(_inv(trace_id=XRAY))
        assert instance.flush(2.0)
        assert spans.get_finished_spans() == ()
    finally:
        instance.shutdown(1.0)


def test_coldstart_is_true_only_on_the_first_invocation(otel, spans):
    dispatch = otel.middleware(ok)
    for n in range(3):
        dispatch(_inv(f"req-{n}"))
    assert otel.flush(2.0)
    assert [_attrs(s)["faas.coldstart"] for s in spans.get_finished_spans()] == [True, False, False]


def test_the_handler_reaches_its_span_through_the_opentelemetry_api(otel, spans):
    seen = {}

    def handler(inv: Invocation) -> Success:
        span = trace.get_current_span()
        span.set_attribute("order.id", "o-1")
        seen["ids"] = otel.span_ids()
        # (a handler would use trace.get_tracer(__name__): the global provider, see the requests test below)
        with otel.tracer_provider.get_tracer("handler").start_as_current_span("child"):
            seen["child_ids"] = otel.span_ids()
        return Success(b"{}", "application/json")

    otel.middleware(handler)(_inv())
    assert otel.flush(2.0)
    child, server = spans.get_finished_spans()
    assert _attrs(server)["order.id"] == "o-1"
    assert seen["ids"] == (f"{server.context.trace_id:032x}", f"{server.context.span_id:016x}")
    assert seen["child_ids"] == (f"{child.context.trace_id:032x}", f"{child.context.span_id:016x}")
    assert child.parent.span_id == server.context.span_id
    assert otel.span_ids() is None  # outside an invocation


def test_a_failure_sets_error_status_and_an_exception_event(otel, spans):
    report = ErrorReport("ValueError", "bad value: 3 password=hunter2",
                         ['  File "/var/task/app.py", line 4, in handler\n    raise ValueError(x)\n'],
                         request_id="req-1", header_type="Function.ValueError")
    otel.middleware(lambda inv: Failure(report))(_inv())
    assert otel.flush(2.0)
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad value: 3 password=[REDACTED]"
    assert _attrs(span)["error.type"] == "ValueError"
    (event,) = span.events
    assert event.name == "exception"
    attrs = dict(event.attributes)
    assert attrs["exception.type"] == "ValueError"
    assert attrs["exception.message"] == "bad value: 3 password=[REDACTED]"
    assert attrs["exception.stacktrace"] == (
        "Traceback (most recent call last):\n"
        '  File "/var/task/app.py", line 4, in handler\n    raise ValueError(x)\n'
        "ValueError: bad value: 3 password=[REDACTED]"
    )


def test_an_exception_escaping_the_core_still_ends_the_span(otel, spans):
    def broken(inv: Invocation) -> Success:
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        otel.middleware(broken)(_inv())
    assert otel.flush(2.0)
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.events[0].attributes)["exception.type"] == "KeyboardInterrupt"


def test_a_streamed_response_keeps_its_span_open_and_current_until_the_stream_ends(otel, spans):
    seen: list[object] = []

    def produce(sink) -> Failure:
        seen.append(otel.span_ids())  # the handler produces its chunks inside the span
        sink.write(b"one")
        return Failure(ErrorReport("BrokenStream", "gave up after one chunk"))

    outcome = otel.middleware(lambda inv: Streamed(produce))(_inv("stream-1"))
    assert isinstance(outcome, Streamed)
    assert otel.flush(2.0)
    assert spans.get_finished_spans() == ()  # the stream has not run yet
    written: list[bytes] = []

    class Sink:
        def open(self, content_type: str) -> None: ...

        def write(self, chunk: bytes) -> None:
            written.append(chunk)

    failure = outcome.run(Sink())
    assert isinstance(failure, Failure) and written == [b"one"]
    assert otel.flush(2.0)
    (span,) = spans.get_finished_spans()
    assert seen == [(f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")]
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "BrokenStream"


# -- metrics ------------------------------------------------------------------------------------------------------
def test_metrics_of_invocations_are_exported_with_the_flush(otel, metric_exports, clock):
    otel.init_done()  # 250 ms after the process started (fixture)

    def handler(inv: Invocation):
        clock.advance_ms(40 if inv.request_id != "bad" else 10)
        if inv.request_id == "bad":
            return Failure(ErrorReport("KeyError", "k"))
        return Success(b"{}", "application/json")

    dispatch = otel.middleware(handler)
    dispatch(_inv("a", body=SQS_EVENT))
    dispatch(_inv("b", body=SQS_EVENT))
    dispatch(_inv("bad"))
    assert otel.flush(2.0)
    data = points(metric_exports.exports[-1])
    assert {(dict(p.attributes)["faas.trigger"], dict(p.attributes)["outcome"]): p.value
            for p in data["flightrec.invocations"]} == {("pubsub", "success"): 2, ("other", "error"): 1}
    assert [(dict(p.attributes), p.value) for p in data["flightrec.errors"]] == [
        ({"error.type": "KeyError", "faas.trigger": "other"}, 1)]
    durations = {dict(p.attributes)["outcome"]: (p.count, p.sum) for p in data["flightrec.invocation.duration"]}
    assert durations == {"success": (2, 80.0), "error": (1, 10.0)}
    assert [p.value for p in data["flightrec.coldstarts"]] == [1]
    (init,) = data["flightrec.init.duration"]
    assert (init.count, init.sum) == (1, 250.0)


# -- flushing -----------------------------------------------------------------------------------------------------
def test_a_hung_collector_does_not_hold_the_flush_past_its_budget(diagnostics):
    # GIVEN a collector that never answers
    exporter = BlockingSpanExporter()
    instance = Otel.create(CFG, span_exporter=lambda: exporter, diagnostics=diagnostics)
    try:
        dispatch = instance.middleware(ok)
        for n in range(3):
            # WHEN each invocation is flushed with a 0.2 s budget
            dispatch(_inv(f"req-{n}"))
            started = time.monotonic()
            assert instance.flush(0.2) is False
            # THEN the loop gets control back (liveness bound: the budget plus a generous margin)
            assert time.monotonic() - started < 0.2 + 2.0
        # AND once the collector answers, nothing was lost
        exporter.release.set()
        assert instance.flush(5.0)
        assert sorted(_attrs(s)["faas.invocation_id"] for s in exporter.get_finished_spans()) == [
            "req-0", "req-1", "req-2"]
        assert instance.take_dropped() == 0
    finally:
        exporter.release.set()
        instance.shutdown(1.0)


def test_a_failed_export_counts_and_reports_the_dropped_spans(diagnostics, metric_exports):
    instance = Otel.create(CFG, span_exporter=FailingSpanExporter, metric_exporter=lambda: metric_exports,
                           diagnostics=diagnostics)
    try:
        dispatch = instance.middleware(ok)
        dispatch(_inv("a"))
        dispatch(_inv("b"))
        assert instance.flush(2.0) is False
        assert instance.take_dropped() == 2
        assert instance.take_dropped() == 0
        assert "2 span(s) dropped" in diagnostics.getvalue()
        dispatch(_inv("c"))
        assert instance.flush(2.0) is False
        dropped = points(metric_exports.exports[-1])["flightrec.telemetry.dropped"]
        assert [p.value for p in dropped] == [3]
    finally:
        instance.shutdown(1.0)


def test_a_missing_exporter_package_drops_spans_and_says_so(diagnostics):
    def factory():
        raise ImportError("No module named 'opentelemetry.exporter.otlp.proto.grpc'")

    instance = Otel.create(CFG, span_exporter=factory, diagnostics=diagnostics)
    try:
        instance.middleware(ok)(_inv())
        assert instance.flush(2.0) is False
        assert instance.take_dropped() == 1
        assert "could not be created" in diagnostics.getvalue()
    finally:
        instance.shutdown(1.0)


def test_a_failed_metric_export_fails_the_flush_but_drops_nothing(spans, diagnostics):
    failing = CollectingExporter(MetricExportResult.FAILURE)
    instance = Otel.create(CFG, span_exporter=lambda: spans, metric_exporter=lambda: failing, diagnostics=diagnostics)
    try:
        instance.middleware(ok)(_inv())
        assert instance.flush(2.0) is False
        assert len(spans.get_finished_spans()) == 1
        assert instance.take_dropped() == 0
        assert "metrics export failed" in diagnostics.getvalue()
    finally:
        instance.shutdown(1.0)


def test_exporters_are_built_at_the_first_flush_not_during_a_quick_invocation(spans, diagnostics):
    built: list[str] = []

    def factory() -> InMemorySpanExporter:
        built.append(threading.current_thread().name)
        return spans

    instance = Otel.create(CFG, span_exporter=factory, diagnostics=diagnostics)
    try:
        instance.middleware(ok)(_inv(deadline_ms=int(time.time() * 1000) + 60_000))
        time.sleep(0.3)
        assert built == []
        assert instance.flush(2.0)
        assert built == ["flightrec-otel-export"]
    finally:
        instance.shutdown(1.0)


def test_a_full_span_batch_builds_the_exporter_only_when_no_user_code_runs(spans, diagnostics):
    # GIVEN no exporter built yet, and user code running (its imports could race the exporter's)
    built: list[str] = []

    def factory() -> InMemorySpanExporter:
        built.append(threading.current_thread().name)
        return spans

    gate = UserCodeGate()
    instance = Otel.create(CFG, span_exporter=factory, diagnostics=diagnostics, user_code=gate)
    assert instance.tracer_provider is not None
    tracer = instance.tracer_provider.get_tracer("test")
    try:
        with gate:
            # WHEN the user code fills a batch of spans
            for n in range(EXPORT_BATCH):
                tracer.start_span(f"s{n}").end()
            time.sleep(0.3)
            # THEN the export waits: no exporter built, nothing exported, nothing dropped
            assert built == []
            assert spans.get_finished_spans() == ()
        # AND WHEN a flush asks for it, it is built and the batch goes out
        assert instance.flush(2.0)
        assert len(spans.get_finished_spans()) == EXPORT_BATCH
        # AND a full batch when no user code runs is exported without a flush
        for n in range(EXPORT_BATCH):
            tracer.start_span(f"t{n}").end()
        assert wait_until(lambda: len(spans.get_finished_spans()) == 2 * EXPORT_BATCH)
        assert built == ["flightrec-otel-export"]
        assert instance.take_dropped() == 0
    finally:
        instance.shutdown(1.0)


# -- deadline guard -----------------------------------------------------------------------------------------------
def test_the_deadline_guard_ends_and_exports_the_running_span(otel, spans, metric_exports):
    # GIVEN a handler still running close to its deadline
    started, release = threading.Event(), threading.Event()

    def slow(inv: Invocation) -> Success:
        started.set()
        release.wait(10)
        return Success(b"{}", "application/json")

    deadline_ms = int(time.time() * 1000) + 300
    worker = threading.Thread(target=otel.middleware(slow), args=(_inv("slow-1", deadline_ms=deadline_ms),))
    worker.start()
    try:
        assert started.wait(5)
        # WHEN the guard (another thread) says the deadline is imminent
        assert otel.deadline_imminent("slow-1").wait(5)
        # THEN the span was exported, as timed out, while the handler still runs
        (span,) = spans.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description.startswith("Sandbox.Timedout: the invocation was still running")
        assert _attrs(span)["error.type"] == "Sandbox.Timedout"
        (event,) = span.events
        assert event.name == "timeout_imminent"
        assert 0 < dict(event.attributes)["flightrec.remaining_ms"] <= 300
        data = points(metric_exports.exports[-1])
        assert [p.value for p in data["flightrec.timeouts"]] == [1]
    finally:
        release.set()
        worker.join(5)
    # AND a handler that still returns does not end (or count) it twice
    assert otel.flush(2.0)
    assert len(spans.get_finished_spans()) == 1
    data = points(metric_exports.exports[-1])
    assert sum(p.value for p in data["flightrec.invocations"]) == 1


def test_the_deadline_guard_without_a_running_invocation_only_flushes(otel, spans):
    otel.middleware(ok)(_inv())
    assert otel.deadline_imminent("not-running").wait(2)
    assert otel.deadline_imminent().wait(2)
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET


# -- init ---------------------------------------------------------------------------------------------------------
def test_an_init_error_is_an_init_span_with_the_exception_exported_at_once(otel, spans, metric_exports):
    report = ErrorReport("Runtime.ImportModuleError", "Unable to import module 'app': No module named 'x'",
                         request_id="", header_type="Runtime.ImportModuleError")
    assert otel.init_failed(report, timeout_s=2.0) is True
    (span,) = spans.get_finished_spans()
    assert span.name == "init"
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.events[0].attributes)["exception.type"] == "Runtime.ImportModuleError"
    assert dict(span.events[0].attributes)["exception.stacktrace"] == (
        "Runtime.ImportModuleError: Unable to import module 'app': No module named 'x'")
    assert span.end_time - span.start_time == 250_000_000  # process start (fixture) to now
    (init,) = points(metric_exports.exports[-1])["flightrec.init.duration"]
    assert dict(init.attributes) == {"outcome": "error"}


def test_shutdown_stops_the_export_thread_and_counts_what_it_could_not_send(diagnostics):
    exporter = BlockingSpanExporter()
    instance = Otel.create(CFG, span_exporter=lambda: exporter, diagnostics=diagnostics)
    dispatch = instance.middleware(ok)
    dispatch(_inv("a"))
    assert instance.flush(0.1) is False  # "a" is stuck in the hung export
    dispatch(_inv("b"))  # "b" waits in the queue behind it
    started = time.monotonic()
    assert instance.shutdown(0.2) is False
    assert time.monotonic() - started < 0.2 + 2.0
    assert instance.take_dropped() == 1
    assert "still queued at shutdown" in diagnostics.getvalue()
    exporter.release.set()
    assert instance.flush(0.5) is False  # after shutdown a flush is refused at once


# -- outgoing HTTP ------------------------------------------------------------------------------------------------
def test_requests_calls_become_child_spans_carrying_the_context_once_requests_is_imported(tmp_path):
    # A subprocess: instrumenting `requests` patches it for the whole process.
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent("""
        import json, sys, threading
        from http.server import BaseHTTPRequestHandler, HTTPServer
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from runtime.dispatch import Success
        from runtime.model import Invocation
        from telemetry.config import TelemetryConfig
        from telemetry.middleware import Otel

        seen = {}
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                seen["traceparent"] = self.headers.get("traceparent")
                self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
            def log_message(self, *a): pass
        server = HTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        spans = InMemorySpanExporter()
        otel = Otel.create(TelemetryConfig(function_name="fn"), span_exporter=lambda: spans)
        otel.install_globals()
        lazy = "requests" not in sys.modules and "opentelemetry.instrumentation.requests" not in sys.modules

        def handler(inv):
            import requests  # the handler's first import switches the instrumentation on
            from opentelemetry import trace
            with trace.get_tracer("handler").start_as_current_span("work"):  # the global provider is ours
                requests.get(f"http://127.0.0.1:{server.server_port}/x", timeout=5)
            return Success(b"{}", "application/json")

        otel.middleware(handler)(Invocation("r1", b"{}"))
        assert otel.flush(5)
        out = [{"name": s.name, "kind": s.kind.name, "trace": f"{s.context.trace_id:032x}",
                "span": f"{s.context.span_id:016x}", "parent": f"{s.parent.span_id:016x}" if s.parent else None}
               for s in spans.get_finished_spans()]
        print(json.dumps({"lazy": lazy, "spans": out, "traceparent": seen.get("traceparent")}))
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["lazy"] is True
    client, work, server = result["spans"]
    assert (client["kind"], work["name"], server["kind"], server["name"]) == ("CLIENT", "work", "SERVER", "fn")
    assert client["parent"] == work["span"] and work["parent"] == server["span"]
    assert client["trace"] == work["trace"] == server["trace"]
    version, trace_id, parent_id, flags = result["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", client["trace"], client["span"])
    assert int(flags, 16) & 1  # sampled
