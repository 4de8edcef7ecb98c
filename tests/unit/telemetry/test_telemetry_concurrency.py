"""Concurrent invocations (Managed Instances) sharing one pipeline and one recorder, and the SnapStart hooks.

Real pipelines with recording sinks; concurrent invocations are real threads running the real dispatch with the
recorder's middleware, meeting at barriers so their log calls interleave.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.config import RuntimeConfig
from runtime.dispatch import Success, make_dispatch
from runtime.model import Invocation
from telemetry.capture import LineCapture
from telemetry.config import TelemetryConfig
from telemetry.context import LogContext
from telemetry.lifecycle import InvocationRecorder
from telemetry.pipeline import LogPipeline
from telemetry.records import EventFormatter
from telemetry.redact import Redactor
from tests.fakes.sinks import LIVENESS_S, RecordingSink, fresh_logger, wait_until

RUNTIME_CONFIG = RuntimeConfig(api_address="x:1", handler="m.f")
N = 4


@pytest.fixture
def make_pipeline() -> Iterator[Any]:
    built: list[LogPipeline] = []

    def make(*sinks: RecordingSink, **options: Any) -> LogPipeline:
        options.setdefault("flush_interval_s", 60.0)
        pipeline = LogPipeline(EventFormatter({"function_name": "fn"}, instance_id="inst"), sinks,
                               redactor=Redactor(()), diagnostics=io.StringIO(), **options)
        pipeline.start()
        built.append(pipeline)
        return pipeline

    yield make
    for pipeline in built:
        for sink in pipeline.sinks:
            sink.release()  # type: ignore[attr-defined]
        pipeline.close(0.5)


@pytest.fixture
def recorder_logs_to() -> Iterator[Any]:
    """Route the recorder's own logger ("flightrec.invocation") into a pipeline for the test, then restore it."""
    recorder_log = logging.getLogger("flightrec.invocation")
    saved = (list(recorder_log.handlers), recorder_log.level, recorder_log.propagate)

    def route(pipeline: LogPipeline) -> None:
        recorder_log.handlers = [pipeline.handler]
        recorder_log.setLevel(logging.DEBUG)
        recorder_log.propagate = False

    yield route
    recorder_log.handlers, recorder_log.level, recorder_log.propagate = saved[0], saved[1], saved[2]


def _ctx(request_id: str) -> LogContext:
    return LogContext(request_id=request_id, cold_start=False)


# --- the deadline guard, per invocation -----------------------------------------------------------------------


def test_each_running_invocation_has_its_own_deadline_guard(make_pipeline):
    # GIVEN three invocations running at once, with 0.5 s, 0.7 s and 0.6 s left, and a 0.3 s margin
    sink = RecordingSink()
    pipeline = make_pipeline(sink, deadline_margin_s=0.3)
    fired: list[tuple[str, str]] = []
    pipeline.on_deadline = lambda ctx: fired.append((ctx.request_id, threading.current_thread().name))
    now = time.time()
    pipeline.watch_deadline(int((now + 0.5) * 1000), _ctx("req-a"))
    pipeline.watch_deadline(int((now + 0.7) * 1000), _ctx("req-b"))
    pipeline.watch_deadline(int((now + 0.6) * 1000), _ctx("req-c"))

    # WHEN the third one ends in time
    pipeline.unwatch_deadline(_ctx("req-c"))

    # THEN the other two get their own warning, with their own request id, and the hook hears of each
    assert wait_until(lambda: len(sink.records) == 2)
    time.sleep(0.3)  # long enough for req-c's guard, had it still been armed
    assert sorted(e["request_id"] for e in sink.events()) == ["req-a", "req-b"]
    assert all("about to reach its deadline" in e["message"] for e in sink.events())
    assert sorted(fired) == [("req-a", "flightrec-shipper"), ("req-b", "flightrec-shipper")]


def test_a_failing_deadline_hook_is_diagnosed_and_the_records_still_ship(make_pipeline):
    sink = RecordingSink()
    pipeline = make_pipeline(sink, deadline_margin_s=0.3)

    def hook(ctx: LogContext) -> None:
        raise RuntimeError("span exporter gone")

    pipeline.on_deadline = hook
    pipeline.watch_deadline(int((time.time() + 0.35) * 1000), _ctx("req-x"))
    assert wait_until(lambda: len(sink.records) == 1)
    assert "deadline hook failed" in pipeline._diagnostics.getvalue()  # type: ignore[attr-defined]


# --- concurrent invocations through the recorder --------------------------------------------------------------


def test_concurrent_invocations_with_interleaved_logging_and_print_never_mix(make_pipeline, recorder_logs_to):
    # GIVEN one pipeline, one recorder with print capture, and a handler that logs and prints in steps that the
    # N invocations take in lockstep (a barrier between steps), so their records interleave
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    recorder_logs_to(pipeline)
    app = fresh_logger("app", pipeline.handler)
    out = LineCapture(fresh_logger("stdout", pipeline.handler), logging.INFO, io.StringIO())
    barrier = threading.Barrier(N)

    def handler(event: Any, context: Any) -> dict[str, Any]:
        for step in range(3):
            barrier.wait(LIVENESS_S)
            app.info("step %d of %s", step, context.aws_request_id)
            out.write(f"print {step} ")  # a line written in pieces, as print() does
            barrier.wait(LIVENESS_S)
            out.write(f"of {context.aws_request_id}\n")
        return {"trace": context.xray_trace_id}

    recorder = InvocationRecorder(TelemetryConfig(lifecycle=True), pipeline, started_ns=0, captures=(out,))
    dispatch = make_dispatch(handler, RUNTIME_CONFIG, [recorder.middleware])
    outcomes: dict[str, Any] = {}

    def worker(i: int) -> None:
        inv = Invocation(f"req-{i}", b"{}", trace_id=f"Root=1-0000000{i}-abc", tenant_id=f"tenant-{i % 2}")
        outcomes[inv.request_id] = dispatch(inv)
        recorder.after_each(inv, outcomes[inv.request_id])

    # WHEN N invocations run at once on N threads
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIVENESS_S)

    # THEN every handler saw its own trace id on its context
    for i in range(N):
        outcome = outcomes[f"req-{i}"]
        assert isinstance(outcome, Success)
        assert json.loads(outcome.body) == {"trace": f"Root=1-0000000{i}-abc"}
    # AND every record names the invocation that wrote it, with that invocation's trace and tenant ids
    events = sink.events()
    assert len(events) == N * (3 + 3 + 3)  # start, 3 log lines, 3 print lines, end, report
    for event in events:
        i = event["request_id"].removeprefix("req-")
        assert event["xray_trace_id"] == f"Root=1-0000000{i}-abc"
        assert event["tenant_id"] == f"tenant-{int(i) % 2}"
        if event["kind"] == "log":  # a whole line, of this invocation only
            assert re.fullmatch(rf"(step|print) \d of req-{i}", event["message"]), event["message"]
    # AND exactly one of them was the cold start, and each has its report
    reports = [e for e in events if e["kind"] == "report"]
    assert sorted(e["request_id"] for e in reports) == [f"req-{i}" for i in range(N)]
    assert sum(e["cold_start"] for e in reports) == 1


def test_a_flush_ships_what_was_logged_before_it_even_while_others_keep_logging(make_pipeline):
    # GIVEN a slow sink and another "invocation" that logs without pause
    sink = RecordingSink()
    sink.delay_s = 0.005
    pipeline = make_pipeline(sink)
    log = fresh_logger("app", pipeline.handler)
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            log.info("chatter")

    other = threading.Thread(target=chatter)
    other.start()
    try:
        time.sleep(0.05)
        log.info("mine")
        # WHEN this invocation flushes with a generous budget
        started = time.monotonic()
        result = pipeline.flush(10.0)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        other.join(LIVENESS_S)

    # THEN its record was delivered and the flush did not chase the other's records until its budget ran out
    assert result.complete and not result.timed_out
    assert "mine" in sink.messages()
    assert elapsed < 10.0  # a liveness bound: without the owed-records rule this flush ran to its budget


# --- SnapStart ------------------------------------------------------------------------------------------------


class ConnectedSink(RecordingSink):
    """Counts connections the way a real sink holds them: opened at a delivery, dropped by close_connections."""

    def __init__(self) -> None:
        super().__init__("conn")
        self.connected = False
        self.events_log: list[tuple[str, str]] = []

    def _deliver(self, batch: list[Any], deadline: float) -> int:
        self.connected = True
        self.events_log.append(("deliver", threading.current_thread().name))
        return super()._deliver(batch, deadline)

    def close_connections(self) -> None:
        self.connected = False
        self.events_log.append(("close", threading.current_thread().name))


def test_prepare_snapshot_ships_then_closes_every_connection_on_the_shipper_thread(make_pipeline):
    sink = ConnectedSink()
    pipeline = make_pipeline(sink)
    log = fresh_logger("app", pipeline.handler)
    log.info("logged during init")

    result = pipeline.prepare_snapshot(2.0)

    assert result.complete
    assert sink.messages() == ["logged during init"]
    assert not sink.connected
    assert sink.events_log == [("deliver", "flightrec-shipper"), ("close", "flightrec-shipper")]
    # after the restore the sink reconnects at its next delivery
    log.info("after restore")
    assert pipeline.flush(2.0).complete
    assert sink.connected and sink.messages()[-1] == "after restore"


def test_records_outside_invocations_get_new_ids_after_a_restore(make_pipeline):
    # GIVEN two copies restored from one snapshot: the same pipeline state, each re-seeded at its restore
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    log = fresh_logger("app", pipeline.handler)
    log.info("before the snapshot")
    ids: list[str] = []
    for _ in range(2):
        pipeline.after_restore()
        log.info("after a restore")
        assert pipeline.flush(2.0).complete
        ids.append(sink.events()[-1]["record_id"])
    # THEN their records' ids differ (PostgreSQL's exactly-once insert would otherwise keep only one of them)
    first = sink.events()[0]["record_id"]
    assert first == "inst/1"
    assert len({first, *ids}) == 3


# --- spans: one per invocation, and every record points at its own ---------------------------------------------


def _otel(spans):
    from telemetry.middleware import Otel

    return Otel.create(TelemetryConfig(function_name="fn", flush_budget_ms=2000), span_exporter=lambda: spans,
                       diagnostics=io.StringIO())


def test_concurrent_invocations_each_get_their_own_span_and_their_records_point_at_it(make_pipeline,
                                                                                        recorder_logs_to):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # GIVEN the OTel middleware outermost and the recorder inside it, as telemetry.setup wires them
    spans = InMemorySpanExporter()
    otel = _otel(spans)
    sink = RecordingSink()
    pipeline = make_pipeline(sink, span_ids=otel.span_ids)
    recorder_logs_to(pipeline)
    app = fresh_logger("app", pipeline.handler)
    barrier = threading.Barrier(N)

    def handler(event: Any, context: Any) -> dict[str, Any]:
        for step in range(3):
            barrier.wait(LIVENESS_S)
            app.info("step %d of %s", step, context.aws_request_id)
        return {}

    recorder = InvocationRecorder(TelemetryConfig(lifecycle=True), pipeline, started_ns=0)
    dispatch = make_dispatch(handler, RUNTIME_CONFIG, [otel.middleware, recorder.middleware])
    try:
        threads = [threading.Thread(target=lambda i=i: dispatch(Invocation(f"req-{i}", b"{}"))) for i in range(N)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(LIVENESS_S)
        assert otel.flush(LIVENESS_S)
        assert pipeline.flush(LIVENESS_S).complete
    finally:
        otel.shutdown(1.0)

    # THEN there is one span per invocation
    by_request = {
        span.attributes["faas.invocation_id"]: (format(span.context.trace_id, "032x"), format(span.context.span_id,
                                                                                              "016x"))
        for span in spans.get_finished_spans()
    }
    assert sorted(by_request) == [f"req-{i}" for i in range(N)]
    assert len(set(by_request.values())) == N
    # AND every record written inside an invocation carries that invocation's trace and span ids
    inside = [e for e in sink.events() if e["kind"] in ("log", "end", "report")]
    assert len(inside) == N * 5
    for event in inside:
        assert (event["trace_id"], event["span_id"]) == by_request[event["request_id"]]


def test_the_span_of_a_streamed_response_covers_the_whole_stream(make_pipeline, recorder_logs_to):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    otel = _otel(spans)
    sink = RecordingSink()
    pipeline = make_pipeline(sink, span_ids=otel.span_ids)
    recorder_logs_to(pipeline)
    app = fresh_logger("app", pipeline.handler)

    def handler(event: Any, context: Any) -> Any:
        yield b"one"
        app.info("between chunks")
        time.sleep(0.05)
        yield b"two"

    recorder = InvocationRecorder(TelemetryConfig(lifecycle=True), pipeline, started_ns=0)
    dispatch = make_dispatch(handler, RUNTIME_CONFIG, [otel.middleware, recorder.middleware])
    try:
        outcome = dispatch(Invocation("req-s", b"{}"))
        assert spans.get_finished_spans() == ()  # not ended: the stream has not run yet

        class Sink:
            def open(self, content_type: str) -> None: ...
            def write(self, chunk: bytes) -> None: ...

        assert outcome.run(Sink()) is None  # type: ignore[union-attr]
        assert otel.flush(LIVENESS_S)
        assert pipeline.flush(LIVENESS_S).complete
    finally:
        otel.shutdown(1.0)
    (span,) = spans.get_finished_spans()
    assert (span.end_time - span.start_time) / 1e6 >= 50
    (record,) = [e for e in sink.events() if e["message"] == "between chunks"]
    assert record["span_id"] == format(span.context.span_id, "016x")
