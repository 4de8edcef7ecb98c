"""`Otel`: one SERVER span and the metrics of every invocation, a bounded flush, the deadline hook, the init span.

What runs where:
* the caller's thread starts and ends the invocation span (attributes, parent, error status and event); it
  never exports. The invocation's metrics are recorded by the flush that follows (`begin_flush`, after the
  response is posted), so the SDK's instruments are not on the caller's path;
* one export thread (`ExportWorker`) does every export: the spans ended so far, and at the same time, on a helper
  thread, the metrics. A flush is a ticket handed to that thread; the caller waits for it at most its budget, so
  a slow or dead collector holds the export thread (for at most TELEMETRY_OTLP_TIMEOUT_MS per attempt) but never
  the loop. Exporters are built by the first flush (after the first response), or by a deadline guard's export.
  Never while user code runs otherwise (`runtime.usercode`): a full span batch waits for the flush until then,
  since an import racing the handler's can fail it on CPython 3.11. A first invocation that reaches its
  deadline therefore pays the exporters' imports (~100 ms) out of TELEMETRY_DEADLINE_MARGIN_MS.
Spans lost to a full queue or a failed export are counted (`take_dropped`, `flightrec.telemetry.dropped`) and
reported on the real stderr. Telemetry errors never reach the handler or the loop.

Built by `telemetry.otel.install_otel` only when something is configured; importing this module imports the SDK.
A streamed response (`Streamed`) keeps its span open, and current, until the stream ends.
Imports: opentelemetry-api/sdk, stdlib, `runtime.model`, `runtime.dispatch` and `runtime.streaming` (types),
`.config`, `.diagnostics`, `.tracing`, `.metrics`, `.redact`.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from runtime.dispatch import Failure, Next, Outcome, Streamed
from runtime.model import ErrorReport, Invocation
from runtime.streaming import ChunkSink
from runtime.usercode import USER_CODE, UserCodeGate
from telemetry.config import TelemetryConfig
from telemetry.diagnostics import diagnoser, say
from telemetry.metrics import (
    ERROR,
    SCOPE,
    SUCCESS,
    TIMEOUT,
    FlushMetricReader,
    InvocationMetrics,
    build_meter_provider,
)
from telemetry.metrics import metric_exporter as configured_metric_exporter
from telemetry.redact import Redactor
from telemetry.tracing import (
    TIMEOUT_ERROR_TYPE,
    AfterImport,
    SpanQueue,
    build_propagator,
    build_resource,
    build_tracer_provider,
    detect_trigger,
    install_global_propagator,
    instrument_requests_on_import,
    parent_context,
    span_attributes,
)
from telemetry.tracing import span_exporter as configured_span_exporter

SpanIds = tuple[str, str]
EXPORT_BATCH = 512
MAX_QUEUED_SPANS = 2048
_STATUS_MAX_CHARS = 1024


@dataclass(slots=True)
class FlushTicket:
    """One flush request. `wait` returns True only if everything ended before the request was exported."""

    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(max(timeout_s, 0.0)) and self.ok


class ExportWorker:
    """The one thread that talks to the collector. Exporters are built here at their first use, so their
    imports (~60 ms each for OTLP/HTTP) happen after the first response is posted, not during init."""

    def __init__(
        self,
        spans: SpanQueue | None,
        span_exporter: Callable[[], SpanExporter] | None,
        reader: FlushMetricReader | None,
        *,
        export_timeout_ms: int,
        diagnose: Callable[[str], None],
        on_dropped: Callable[[int], None] = lambda n: None,
        batch_size: int = EXPORT_BATCH,
        user_code: UserCodeGate = USER_CODE,
    ) -> None:
        self._spans = spans
        self._user_code = user_code
        self._span_factory = span_exporter
        self._span_exporter: SpanExporter | None = None
        self._span_broken = False
        self._reader = reader
        self._metrics_broken = False
        self._metrics_failing = False
        self._timeout_ms = export_timeout_ms
        self._diagnose = diagnose
        self._on_dropped = on_dropped
        self._batch = batch_size
        self._tickets: deque[FlushTicket] = deque()
        self._wake = threading.Event()
        self._batch_due = False
        self._stopping = False
        self._dropped = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="flightrec-otel-export", daemon=True)
        self._metrics_pump = _Pump(lambda: self._export_metrics(reader), "flightrec-otel-metrics") if reader else None

    def start(self) -> None:
        self._thread.start()
        if self._metrics_pump is not None:
            self._metrics_pump.start()

    def request(self) -> FlushTicket:
        ticket = FlushTicket()
        if self._stopping or not self._thread.is_alive():
            ticket.done.set()
            return ticket
        self._tickets.append(ticket)
        self._wake.set()
        return ticket

    def wake(self) -> None:
        """A batch is full: export spans now (no metrics), without anyone waiting."""
        self._batch_due = True
        self._wake.set()

    @property
    def ready(self) -> bool:
        """The exporters exist (or cannot): an export now costs no imports."""
        spans_ready = self._span_factory is None or self._span_exporter is not None or self._span_broken
        return spans_ready and (self._reader is None or self._reader.prepared or self._metrics_broken)

    def prepare(self) -> None:
        """Build the exporters now, on this thread (concurrent mode: before the workers start)."""
        self._prepare()

    def stop(self, timeout_s: float) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(max(timeout_s, 0.0))
        if self._metrics_pump is not None:
            self._metrics_pump.stop()

    def take_dropped(self) -> int:
        with self._lock:
            n, self._dropped = self._dropped, 0
        return n

    @property
    def span_exporter(self) -> SpanExporter | None:
        return self._span_exporter

    # -- the export thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        # Exports must never trace themselves (the requests instrumentation sees the exporter's HTTP calls).
        otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            tickets: list[FlushTicket] = []
            while self._tickets:
                tickets.append(self._tickets.popleft())
            batch_due, self._batch_due = self._batch_due, False
            if not tickets:
                if batch_due and self.ready:
                    self._guarded_cycle(export_metrics=False)
                elif batch_due:  # nobody waits: build the exporters only while no user code runs
                    with self._user_code.quiet() as quiet:
                        if quiet:
                            self._guarded_cycle(export_metrics=False)
                continue
            ok = self._guarded_cycle(export_metrics=True)
            for ticket in tickets:
                ticket.ok = ok
                ticket.done.set()
        while self._tickets:
            self._tickets.popleft().done.set()

    def _guarded_cycle(self, export_metrics: bool) -> bool:
        try:
            return self._cycle(export_metrics)
        except Exception as exc:  # the export thread must outlive any exporter bug
            self._diagnose(f"OpenTelemetry export error: {type(exc).__name__}: {exc}")
            return False

    def _cycle(self, export_metrics: bool) -> bool:
        """Spans here and metrics on the helper thread at the same time: the two HTTP round trips overlap
        (measured on a 2-vCPU test box: a warm flush to a local collector went from 5.9 to 3.5-4.6 ms)."""
        metrics = self._metrics_pump.request() if export_metrics and self._metrics_pump is not None else None
        ok = self._export_spans() if self._spans is not None else True
        if metrics is not None:
            metrics.done.wait()  # bounded by the metric exporter's own timeout
            ok = metrics.ok and ok
        return ok

    def _export_spans(self) -> bool:
        assert self._spans is not None
        overflow = self._spans.take_overflow()
        if overflow:
            self.drop(overflow, "the span queue was full (the collector is too slow or unreachable)")
        while True:
            batch = self._spans.take(self._batch)
            if not batch:
                return True
            exporter = self._exporter()
            if exporter is None:
                self.drop(len(batch) + len(self._spans.take(sys.maxsize)), "no span exporter is available")
                return False
            try:
                result = exporter.export(batch)
                reason = f"the collector did not accept them within TELEMETRY_OTLP_TIMEOUT_MS={self._timeout_ms}"
            except Exception as exc:
                result, reason = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
            if result is not SpanExportResult.SUCCESS:
                self.drop(len(batch), f"export failed: {reason}")
                return False  # the rest stay queued for the next flush (the queue is bounded)

    def _prepare(self) -> None:
        self._exporter()
        if self._reader is not None and not self._metrics_broken:
            try:
                self._reader.prepare()
            except Exception as exc:
                self._metrics_broken = True
                self._diagnose(f"the metric exporter could not be created, metrics are off: {exc}")

    def _exporter(self) -> SpanExporter | None:
        if self._span_exporter is None and not self._span_broken and self._span_factory is not None:
            try:
                self._span_exporter = self._span_factory()
            except Exception as exc:  # ImportError: the exporter package is not installed
                self._span_broken = True
                self._diagnose(f"the span exporter could not be created, spans will be dropped: {exc}")
        return self._span_exporter

    def _export_metrics(self, reader: FlushMetricReader) -> bool:
        if self._metrics_broken:
            return False
        try:
            ok = reader.export_now(timeout_millis=self._timeout_ms)
        except ImportError as exc:
            self._metrics_broken = True
            self._diagnose(f"the metric exporter could not be created, metrics are off: {exc}")
            return False
        except Exception as exc:
            self._diagnose(f"metrics export error: {type(exc).__name__}: {exc}")
            ok = False
        if not ok and not self._metrics_failing:
            self._diagnose("metrics export failed; the cumulative totals go with the next successful export")
        self._metrics_failing = not ok
        return ok

    def drop(self, count: int, reason: str) -> None:
        """Count `count` spans as lost and say why on stderr."""
        with self._lock:
            self._dropped += count
        self._on_dropped(count)
        self._diagnose(f"{count} span(s) dropped: {reason}")


class _Pump:
    """A daemon thread that runs `job` each time it is asked to, reporting the result on a ticket."""

    def __init__(self, job: Callable[[], bool], name: str) -> None:
        self._job = job
        self._wake = threading.Event()
        self._ticket: FlushTicket | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> FlushTicket:
        """Only the export thread asks, and it waits for each ticket before asking again."""
        self._ticket = FlushTicket()
        self._wake.set()
        return self._ticket

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _run(self) -> None:
        otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            self._wake.wait()
            self._wake.clear()
            ticket, self._ticket = self._ticket, None
            if ticket is None:
                if self._stopping:
                    return
                continue
            try:
                ticket.ok = self._job()
            except Exception:
                ticket.ok = False
            ticket.done.set()


@dataclass(slots=True)
class _Running:
    span: trace.Span
    trigger: str
    started_ns: int
    deadline_ms: int | None
    cold_start: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    ended: bool = False


class Otel:
    """Everything `telemetry.setup` needs from OpenTelemetry. Build it with `telemetry.otel.install_otel`."""

    def __init__(
        self,
        cfg: TelemetryConfig,
        started_ns: int,
        *,
        tracer_provider: TracerProvider | None,
        span_queue: SpanQueue | None,
        meter_provider: MeterProvider | None,
        worker: ExportWorker,
        metrics: InvocationMetrics | None,
        diagnostics: TextIO,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.cfg = cfg
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.span_queue = span_queue
        self.worker = worker
        self._metrics = metrics
        self._diagnostics = diagnostics
        self._clock_ns = clock_ns
        self._started_ns = started_ns
        self._tracer: trace.Tracer = (
            tracer_provider.get_tracer(SCOPE) if tracer_provider is not None else trace.NoOpTracer()
        )
        self._span_name = cfg.function_name or cfg.otel_service_name or "invoke"
        self._redactor = Redactor(cfg.redact_keys)
        self._invocations = itertools.count()  # next() is atomic: exactly one invocation is the cold start
        self._running: dict[str, _Running] = {}
        # (duration ms, trigger, outcome, error type, cold start) of ended invocations, recorded at the next flush
        self._unrecorded: deque[tuple[float, str, str, str | None, bool]] = deque()
        self._budget_s = cfg.flush_budget_ms / 1000
        self._requests_hook: AfterImport | None = None
        self.span_ids = self._make_span_ids()

    @classmethod
    def create(
        cls,
        cfg: TelemetryConfig,
        started_ns: int = 0,
        *,
        span_exporter: Callable[[], SpanExporter] | None = None,
        metric_exporter: Callable[[], MetricExporter] | None = None,
        diagnostics: TextIO | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        user_code: UserCodeGate = USER_CODE,
    ) -> Otel:
        """Providers and the export thread; exporters default to the configured ones (built at first export).
        Tests pass in-memory exporters. Nothing global is touched here (see `install_globals`)."""
        out = diagnostics or sys.__stderr__ or sys.stderr
        diagnose = diagnoser(out)
        resource = build_resource(cfg, instance_id=f"{cfg.log_stream_name or uuid.uuid4().hex}:{os.getpid()}")
        spans_factory = span_exporter
        if spans_factory is None and cfg.otel_traces_exporter != "none":
            spans_factory = lambda: configured_span_exporter(cfg)  # noqa: E731 - a deferred call, named by its use
        metrics_factory = metric_exporter
        if metrics_factory is None and cfg.otel_metrics_exporter != "none":
            metrics_factory = lambda: configured_metric_exporter(cfg)  # noqa: E731
        tracer_provider = queue = None
        if spans_factory is not None:
            queue = SpanQueue(MAX_QUEUED_SPANS, EXPORT_BATCH)
            tracer_provider = build_tracer_provider(resource, queue)
        meter_provider = reader = metrics = None
        if metrics_factory is not None:
            reader = FlushMetricReader(metrics_factory)
            meter_provider = build_meter_provider(resource, reader)
            metrics = InvocationMetrics(meter_provider.get_meter(SCOPE))
        on_dropped = metrics.dropped if metrics is not None else (lambda n: None)
        worker = ExportWorker(queue, spans_factory, reader, export_timeout_ms=cfg.otel_export_timeout_ms,
                              diagnose=diagnose, on_dropped=on_dropped, user_code=user_code)
        if queue is not None:
            queue.on_batch = worker.wake
        worker.start()
        return cls(cfg, started_ns, tracer_provider=tracer_provider, span_queue=queue, meter_provider=meter_provider,
                   worker=worker, metrics=metrics, diagnostics=out, clock_ns=clock_ns)

    def install_globals(self) -> None:
        """Process-wide wiring, once, for handlers and instrumentations: the global providers (so
        `trace.get_tracer(__name__)` in a handler makes children of the invocation span), the propagator, and
        the requests instrumentation, enabled when `requests` gets imported."""
        from opentelemetry import metrics

        diagnose = diagnoser(self._diagnostics)
        if self.tracer_provider is not None:
            trace.set_tracer_provider(self.tracer_provider)
            install_global_propagator(build_propagator(self.cfg.otel_propagators, diagnose), diagnose)
            self._requests_hook = instrument_requests_on_import(self.tracer_provider, self.meter_provider, diagnose)
        if self.meter_provider is not None:
            metrics.set_meter_provider(self.meter_provider)

    # -- per invocation ----------------------------------------------------------------------------------------
    def middleware(self, inner: Next) -> Next:
        """The outermost middleware: the span is current while the log context and the handler run."""

        def dispatch(inv: Invocation) -> Outcome:
            cold = next(self._invocations) == 0
            try:
                running, ctx = self._start(inv, cold)
            except Exception as exc:
                self._diagnose(f"the invocation span could not be started: {type(exc).__name__}: {exc}")
                return inner(inv)
            token = otel_context.attach(ctx)
            outcome: Outcome | None = None
            error: BaseException | None = None
            try:
                outcome = inner(inv)
                if isinstance(outcome, Streamed):
                    return self._streamed(inv.request_id, running, ctx, outcome)
                return outcome
            except BaseException as exc:  # dispatch turns everything into a Failure; this is for the impossible
                error = exc
                raise
            finally:
                otel_context.detach(token)
                if not isinstance(outcome, Streamed):
                    self._finished(inv.request_id, running, outcome, error)

        return dispatch

    def _streamed(self, request_id: str, running: _Running, ctx: otel_context.Context, outcome: Streamed) -> Streamed:
        """A streamed response runs after the middleware returned: the span stays open, and current, while the
        handler produces its chunks, and ends (with the stream's failure, if any) when the stream does."""
        inner_run = outcome.run

        def run(sink: ChunkSink) -> Failure | None:
            token = otel_context.attach(ctx)
            failure: Failure | None = None
            error: BaseException | None = None
            try:
                failure = inner_run(sink)
                return failure
            except BaseException as exc:  # RuntimeApiError: the Runtime API broke mid-stream
                error = exc
                raise
            finally:
                otel_context.detach(token)
                self._finished(request_id, running, failure, error)

        return outcome._replace(run=run)

    def _finished(self, request_id: str, running: _Running, outcome: Outcome | None,
                  error: BaseException | None) -> None:
        self._running.pop(request_id, None)
        self._end(running, outcome, error)

    def _start(self, inv: Invocation, cold: bool) -> tuple[_Running, otel_context.Context]:
        trigger = detect_trigger(inv.body)
        parent, links = parent_context(inv, self.cfg)
        span = self._tracer.start_span(
            self._span_name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=span_attributes(
                inv, cold_start=cold, function_version=self.cfg.function_version, trigger=trigger),
            links=links,
        )
        running = _Running(span, trigger, self._clock_ns(), inv.deadline_ms, cold)
        self._running[inv.request_id] = running
        return running, trace.set_span_in_context(span, parent)

    def _end(self, running: _Running, outcome: Outcome | None, error: BaseException | None) -> None:
        try:
            with running.lock:
                if running.ended:  # the deadline guard got there first
                    return
                running.ended = True
            span = running.span
            error_type: str | None = None
            if isinstance(outcome, Failure):
                report = outcome.report
                error_type = report.error_type
                self._record_error(span, report.error_type, report.error_message, report.stack_trace)
            elif error is not None:
                error_type = type(error).__name__
                stack = traceback.format_list(traceback.extract_tb(error.__traceback__))
                self._record_error(span, error_type, str(error), stack)
            span.end()
            if self._metrics is not None:
                duration_ms = (self._clock_ns() - running.started_ns) / 1e6
                self._unrecorded.append((duration_ms, running.trigger, SUCCESS if error_type is None else ERROR,
                                         error_type, running.cold_start))
        except Exception as exc:
            self._diagnose(f"the invocation span could not be ended: {type(exc).__name__}: {exc}")

    def _record_finished(self) -> None:
        """Record the metrics of the invocations finished since the last flush. Deferred to here (after the
        response is posted, before the export) because the SDK's instruments cost ~25 µs per invocation, which
        the caller would otherwise wait for; every point is still recorded before the export that carries it."""
        if self._metrics is None:
            return
        while True:
            try:
                finished = self._unrecorded.popleft()
            except IndexError:
                return
            try:
                self._metrics.invocation(*finished)
            except Exception as exc:
                self._diagnose(f"invocation metrics could not be recorded: {type(exc).__name__}: {exc}")

    def _record_error(self, span: trace.Span, error_type: str, message: str, stack: list[str]) -> None:
        """ERROR status plus the conventional `exception` event (type, message, stack), message redacted."""
        message = self._redactor.text(message)
        last_line = f"{error_type}: {message}" if message else error_type
        stacktrace = "Traceback (most recent call last):\n" + "".join(stack) + last_line if stack else last_line
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, last_line[:_STATUS_MAX_CHARS]))
        span.add_event("exception", {
            "exception.type": error_type,
            "exception.message": message,
            "exception.stacktrace": stacktrace,
        })

    def _make_span_ids(self) -> Callable[[], SpanIds | None]:
        """For every log record, on the caller's thread: the current span's ids as hex, cached per span."""
        get_current_span = trace.get_current_span
        last: list[tuple[object, SpanIds | None]] = [(None, None)]

        def span_ids() -> SpanIds | None:
            ctx = get_current_span().get_span_context()
            seen, ids = last[0]
            if ctx is seen:
                return ids
            ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")) if ctx.is_valid else None
            last[0] = (ctx, ids)  # one tuple: another thread never sees a context paired with foreign ids
            return ids

        return span_ids

    # -- flushing ----------------------------------------------------------------------------------------------
    def begin_flush(self) -> FlushTicket:
        """Start exporting everything ended so far, on the export thread; wait on the ticket later. Lets the
        caller flush logs meanwhile, so both share one budget instead of adding up."""
        self._record_finished()
        return self.worker.request()

    def flush(self, timeout_s: float) -> bool:
        """Export spans, then metrics, within `timeout_s`. False when that did not complete in time or failed
        (the loop goes on regardless; losses are counted by `take_dropped`)."""
        return self.begin_flush().wait(timeout_s)

    def take_dropped(self) -> int:
        """Spans lost since the previous call (queue overflow, failed or impossible export)."""
        return self.worker.take_dropped()

    # -- deadline guard ----------------------------------------------------------------------------------------
    def deadline_imminent(self, request_id: str | None = None) -> FlushTicket:
        """Called by the deadline guard (any thread), shortly before Lambda kills an invocation that is still
        running: ends its span now as timed out, with a `timeout_imminent` event, counts it, and starts
        exporting. Does not block; the returned ticket can be waited on. `None` means every running
        invocation. A handler that still returns in time keeps its response; its span stays the timed-out one."""
        targets = list(self._running.values()) if request_id is None else [self._running.get(request_id)]
        now_ms = time.time() * 1000
        for running in targets:
            if running is None:
                continue
            with running.lock:
                if running.ended:
                    continue
                running.ended = True
            try:
                remaining_ms = running.deadline_ms - now_ms if running.deadline_ms is not None else None
                attributes = {"flightrec.remaining_ms": round(remaining_ms, 1)} if remaining_ms is not None else {}
                detail = f"{remaining_ms:.0f} ms before its deadline" if remaining_ms is not None else "at its deadline"
                span = running.span
                span.add_event("timeout_imminent", attributes)
                span.set_attribute("error.type", TIMEOUT_ERROR_TYPE)
                span.set_status(Status(StatusCode.ERROR, f"{TIMEOUT_ERROR_TYPE}: the invocation was still running "
                                                         f"{detail}"))
                span.end()
                if self._metrics is not None:
                    duration_ms = (self._clock_ns() - running.started_ns) / 1e6
                    self._metrics.invocation(duration_ms, running.trigger, TIMEOUT, TIMEOUT_ERROR_TYPE,
                                             running.cold_start)
            except Exception as exc:
                self._diagnose(f"the timed-out span could not be ended: {type(exc).__name__}: {exc}")
        self._record_finished()
        return self.worker.request()

    # -- init and shutdown -------------------------------------------------------------------------------------
    def init_done(self) -> None:
        """Record the init duration (process start to the end of init); call it right before the loop starts."""
        if self._metrics is not None and self._started_ns:
            self._metrics.init((self._clock_ns() - self._started_ns) / 1e6)

    def init_failed(self, report: ErrorReport, timeout_s: float | None = None) -> bool:
        """An `init` span covering process start to now, with the exception event, exported within
        `timeout_s` (default the flush budget) because the process exits right after."""
        return self.record_init_failure(report).wait(self._budget_s if timeout_s is None else timeout_s)

    def record_init_failure(self, report: ErrorReport) -> FlushTicket:
        """`init_failed` without the wait: record the span and start exporting it, so the caller can flush its
        log records meanwhile and wait on the ticket with what is left of one budget."""
        try:
            elapsed_ns = self._clock_ns() - self._started_ns if self._started_ns else 0
            end = time.time_ns()
            span = self._tracer.start_span(
                "init", kind=SpanKind.INTERNAL, start_time=end - elapsed_ns, attributes={"faas.coldstart": True})
            self._record_error(span, report.error_type, report.error_message, report.stack_trace)
            span.end(end_time=end)
            if self._metrics is not None:
                self._metrics.init(elapsed_ns / 1e6, failed=True)
        except Exception as exc:
            self._diagnose(f"the init span could not be recorded: {type(exc).__name__}: {exc}")
        if self._requests_hook is not None:
            # The process exits next: when the exporter's own `import requests` comes, instrumenting it would only
            # spend the export's short budget on ~100 ms of imports.
            self._requests_hook.remove()
        return self.begin_flush()

    def shutdown(self, timeout_s: float) -> bool:
        """Flush within `timeout_s`, then stop the export thread and close exporters (best effort)."""
        deadline = time.monotonic() + timeout_s
        ok = self.flush(timeout_s)
        self.worker.stop(max(deadline - time.monotonic(), 0.0))
        if self.span_queue is not None and len(self.span_queue):
            self.worker.drop(len(self.span_queue.take(sys.maxsize)), "still queued at shutdown")
        if self._requests_hook is not None:
            self._requests_hook.remove()
        try:
            if self.tracer_provider is not None:
                self.tracer_provider.shutdown()
            exporter = self.worker.span_exporter
            if exporter is not None:
                exporter.shutdown()
            if self.meter_provider is not None:
                self.meter_provider.shutdown(timeout_millis=max(deadline - time.monotonic(), 0.0) * 1000)
        except Exception as exc:
            self._diagnose(f"OpenTelemetry shutdown error: {type(exc).__name__}: {exc}")
        return ok

    def _diagnose(self, message: str) -> None:
        say(self._diagnostics, message)
