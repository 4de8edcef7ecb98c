"""`InvocationRecorder`: the invocation middleware and the flush after it.

Per invocation it enters the log context, writes the start record (event summarised, redacted, size-capped — done
at render time, off the handler's thread), an error record for a failure, the end and report records, and arms
the deadline guard. The report record's fields (`REPORT_FIELDS`) are what the dashboards query; they are stable.
Under `LOGS_POLICY=strict` the records are stored before the response is posted, and an invocation whose records
could not be stored fails with `Runtime.LogSinkUnavailable`.

A streamed response (`Streamed`) is produced after this middleware returned: its `run` is wrapped so that the log
context is current again while the handler produces chunks, the deadline guard stays armed, and the end and
report records (with `STREAM_REPORT_FIELDS`) come when the stream ends. Under the strict policy a stream whose
records could not be stored ends with `Runtime.LogSinkUnavailable` in its trailers. The recorder keeps no
per-invocation state on itself, so concurrent invocations (Managed Instances) share one.
Imports: stdlib, `runtime.model`, `runtime.dispatch` and `runtime.streaming` (types), `.context`, `.pipeline`,
`.records`, `.redact`.
"""

from __future__ import annotations

import itertools
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from runtime.dispatch import Failure, Next, Outcome, Streamed, Success
from runtime.model import MAX_RESPONSE_BYTES, ErrorReport, Invocation, response_too_large
from runtime.streaming import ChunkSink
from telemetry.capture import LineCapture
from telemetry.config import TelemetryConfig
from telemetry.context import LogContext, enter, invocation_scope, leave
from telemetry.pipeline import LogPipeline
from telemetry.records import END, INIT_ERROR, INVOCATION_ERROR, REPORT, RUNTIME, START, Deferred
from telemetry.redact import Redactor, summarise_event

REPORT_FIELDS = (
    "duration_ms",  # handler time: context, decode, handler, encode (ms, float)
    "status",  # success | error
    "error_type",  # the errorType of a failure (e.g. ValueError, Runtime.UnmarshalError), else null
    "init_duration_ms",  # process start to the end of init, on the cold-start invocation only
    "max_memory_used_mb",  # peak RSS of the process so far
    "records_dropped",  # log records lost since the previous report (buffers and spill full)
)
STREAM_REPORT_FIELDS = (  # added to the report of a streamed response only (in the record's JSON)
    "bytes_sent",  # body bytes written to the Runtime API, the HTTP prelude included
    "time_to_first_byte_ms",  # invocation start to the first chunk (null when nothing was sent)
    "stream_duration_ms",  # first chunk to the end of the stream (null when nothing was sent)
)
LOG_SINK_UNAVAILABLE = "Runtime.LogSinkUnavailable"

log = logging.getLogger("flightrec.invocation")


def max_memory_used_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


class _EventSummary(Deferred):
    __slots__ = ("body", "content_type", "max_bytes", "redactor")

    def __init__(self, body: bytes, content_type: str | None, redactor: Redactor, max_bytes: int) -> None:
        self.body = body
        self.content_type = content_type
        self.redactor = redactor
        self.max_bytes = max_bytes

    def resolve(self) -> Any:
        return summarise_event(self.body, self.content_type, self.redactor, self.max_bytes)


class _StreamMeter:
    """Counts what a stream sends and when its first chunk went out, on the way to the loop's sink."""

    __slots__ = ("_clock_ns", "_sink", "bytes_sent", "first_byte_ns")

    def __init__(self, sink: ChunkSink, clock_ns: Callable[[], int]) -> None:
        self._sink = sink
        self._clock_ns = clock_ns
        self.bytes_sent = 0
        self.first_byte_ns: int | None = None

    def open(self, content_type: str) -> None:
        self._sink.open(content_type)

    def write(self, chunk: bytes) -> None:
        if self.first_byte_ns is None:
            self.first_byte_ns = self._clock_ns()
        self._sink.write(chunk)
        self.bytes_sent += len(chunk)


def _recorded_failure(invocation: Invocation, outcome: Outcome) -> ErrorReport | None:
    """The failure to record. A response over the Runtime API's limit is recorded as the error the platform will
    answer it with (413 → `Function.ResponseSizeTooLarge`), because the records are written before it is posted."""
    if isinstance(outcome, Failure):
        return outcome.report
    if isinstance(outcome, Success) and len(outcome.body) > MAX_RESPONSE_BYTES:
        return response_too_large(invocation.request_id, len(outcome.body))
    return None


def error_fields(report: ErrorReport, redactor: Redactor) -> dict[str, Any]:
    return {
        "error_type": report.error_type,
        "error_message": redactor.text(report.error_message),
        "stack_trace": report.stack_trace,
    }


class InvocationRecorder:
    def __init__(
        self,
        cfg: TelemetryConfig,
        pipeline: LogPipeline,
        started_ns: int,
        captures: tuple[LineCapture, ...] = (),
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._cfg = cfg
        self._pipeline = pipeline
        self._redactor = pipeline.redactor
        self._started_ns = started_ns
        self._captures = captures
        self._clock_ns = clock_ns
        self._invocations = itertools.count()  # `next()` is atomic: one cold start, even with concurrent workers
        self._init_duration_ms: float | None = None
        self._lifecycle = cfg.lifecycle_records
        self._budget_s = cfg.flush_budget_ms / 1000

    # -- init ----------------------------------------------------------------------------------------------------
    def init_done(self) -> None:
        self._init_duration_ms = (self._clock_ns() - self._started_ns) / 1e6 if self._started_ns else None

    def init_failed(self, report: ErrorReport) -> None:
        log.error(
            "%s: %s", report.error_type, self._redactor.text(report.error_message),
            extra={"flightrec_kind": INIT_ERROR, "flightrec_fields": error_fields(report, self._redactor)},
        )
        self._pipeline.flush(self._budget_s, force=True)

    def fatal(self, message: str) -> None:
        log.critical(self._redactor.text(message), extra={"flightrec_kind": RUNTIME})
        self._pipeline.flush(self._budget_s, force=True)

    # -- per invocation ------------------------------------------------------------------------------------------
    def middleware(self, inner: Next) -> Next:
        def dispatch(invocation: Invocation) -> Outcome:
            cold = next(self._invocations) == 0
            with invocation_scope(invocation, cold) as ctx:
                started = self._clock_ns()
                if self._lifecycle:
                    log.info("START", extra={"flightrec_kind": START, "flightrec_fields": {
                        "event": _EventSummary(invocation.body, invocation.content_type, self._redactor,
                                               self._cfg.event_max_bytes)}})
                self._pipeline.watch_deadline(invocation.deadline_ms, ctx)
                try:
                    outcome = inner(invocation)
                except BaseException:  # dispatch turns everything into an outcome; this is for the impossible
                    self._end_of_handler(ctx)
                    raise
                if isinstance(outcome, Streamed):  # its guard and captures stay until the stream ends
                    return self._streamed(invocation, ctx, outcome, started, cold)
                self._end_of_handler(ctx)
                duration_ms = (self._clock_ns() - started) / 1e6
                self._record_outcome(_recorded_failure(invocation, outcome), duration_ms, cold)
                if self._cfg.strict:
                    outcome = self._store_strictly(invocation, outcome)
                return outcome

        return dispatch

    def _streamed(self, invocation: Invocation, ctx: LogContext, outcome: Streamed, started: int,
                  cold: bool) -> Streamed:
        """Wrap a stream's `run`: the invocation's log context while it produces, its records when it ends."""
        inner_run = outcome.run

        def run(sink: ChunkSink) -> Failure | None:
            token = enter(ctx)
            try:
                meter = _StreamMeter(sink, self._clock_ns)
                try:
                    failure = inner_run(meter)
                finally:
                    self._end_of_handler(ctx)
                ended = self._clock_ns()
                first = meter.first_byte_ns
                self._record_outcome(failure.report if failure is not None else None, (ended - started) / 1e6,
                                     cold, {
                    "bytes_sent": meter.bytes_sent,
                    "time_to_first_byte_ms": round((first - started) / 1e6, 3) if first is not None else None,
                    "stream_duration_ms": round((ended - first) / 1e6, 3) if first is not None else None,
                })
                if self._cfg.strict:
                    stored = self._store_strictly(invocation, failure or outcome)
                    failure = stored if isinstance(stored, Failure) else None
                return failure
            finally:
                leave(token)

        return outcome._replace(run=run)

    def _end_of_handler(self, ctx: LogContext) -> None:
        self._pipeline.unwatch_deadline(ctx)
        for capture in self._captures:
            capture.flush()

    def _record_outcome(self, failure: ErrorReport | None, duration_ms: float, cold: bool,
                        stream: dict[str, Any] | None = None) -> None:
        if failure is not None:
            log.error("%s: %s", failure.error_type, self._redactor.text(failure.error_message),
                      extra={"flightrec_kind": INVOCATION_ERROR,
                             "flightrec_fields": error_fields(failure, self._redactor)})
        if not self._lifecycle:
            return
        log.info("END", extra={"flightrec_kind": END})
        fields: dict[str, Any] = {
            "duration_ms": round(duration_ms, 3),
            "status": "error" if failure is not None else "success",
            "error_type": failure.error_type if failure is not None else None,
            "init_duration_ms": round(self._init_duration_ms, 3) if cold and self._init_duration_ms else None,
            "max_memory_used_mb": max_memory_used_mb(),
            "records_dropped": self._pipeline.take_dropped(),
        }
        if stream is not None:
            fields.update(stream)
        log.info("REPORT", extra={"flightrec_kind": REPORT, "flightrec_fields": fields})

    def _store_strictly(self, invocation: Invocation, outcome: Outcome) -> Outcome:
        result = self._pipeline.flush(self._budget_s, force=True)
        if result.strict_ok:
            return outcome
        report = ErrorReport(
            error_type=LOG_SINK_UNAVAILABLE,
            error_message=(
                "LOGS_POLICY=strict: this invocation's log records could not be stored "
                f"({', '.join(result.incomplete_sinks) or 'flush timed out'}); the response was withheld"
            ),
            request_id=invocation.request_id,
            header_type=LOG_SINK_UNAVAILABLE,
        )
        log.error(report.error_message, extra={"flightrec_kind": INVOCATION_ERROR,
                                                "flightrec_fields": error_fields(report, self._redactor)})
        return Failure(report)

    def after_each(self, invocation: Invocation, outcome: Outcome) -> None:
        """After the response is posted, before `/next`: ship this invocation's records within the budget."""
        del invocation
        if not isinstance(outcome, Failure) or not self._pipeline.idle():
            self._pipeline.flush(self._budget_s)

    # -- SnapStart -----------------------------------------------------------------------------------------------
    def before_snapshot(self) -> None:
        """Deliver what init logged, then close every sink connection: a socket or database session inside the
        snapshot would be shared by every environment restored from it. Sinks reconnect at their next delivery."""
        for capture in self._captures:
            capture.flush()
        self._pipeline.prepare_snapshot(self._budget_s)

    def after_restore(self) -> None:
        """This copy of the snapshot gets record ids of its own (see `LogPipeline.after_restore`)."""
        self._pipeline.after_restore()
