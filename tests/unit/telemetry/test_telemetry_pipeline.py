"""Specification of `telemetry.pipeline.LogPipeline`: one queue, one shipper thread, flushes that report honestly.

A real pipeline (real `EventFormatter` and `Redactor`) ships to `RecordingSink`s; `diagnostics` is a StringIO.
Loggers are private and non-propagating: the root logger is never touched. With the default flush interval of
60 s used here, nothing is shipped unless the test flushes, crosses the batch threshold or arms the deadline guard.
"""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest

from runtime.model import Invocation
from runtime.usercode import UserCodeGate
from telemetry.config import DEFAULT_REDACT_KEYS
from telemetry.context import LogContext, invocation_scope
from telemetry.pipeline import FlushResult, LogPipeline
from telemetry.records import Deferred, EventFormatter
from telemetry.redact import Redactor
from telemetry.spill import PendingBuffer
from tests.fakes.sinks import LIVENESS_S, RecordingSink, fresh_logger, wait_until

QUIET_INTERVAL_S = 60.0  # long enough that no test ever sees a timed background cycle unless it asks for one


@pytest.fixture
def make_pipeline():
    """Build (and by default start) pipelines; each is released and closed after the test."""
    built: list[LogPipeline] = []

    def make(*sinks: RecordingSink, start: bool = True, diagnostics: io.StringIO | None = None,
             **options: float) -> LogPipeline:
        options.setdefault("flush_interval_s", QUIET_INTERVAL_S)
        pipeline = LogPipeline(
            EventFormatter({"function_name": "fn", "function_version": "1"}, instance_id="inst"),
            sinks,
            redactor=Redactor(DEFAULT_REDACT_KEYS),
            diagnostics=diagnostics if diagnostics is not None else io.StringIO(),
            **options,  # type: ignore[arg-type]
        )
        if start:
            pipeline.start()
        built.append(pipeline)
        return pipeline

    yield make
    for pipeline in built:
        for sink in pipeline.sinks:
            sink.release()  # type: ignore[attr-defined]
        pipeline.close(0.5)


def _logger(pipeline: LogPipeline) -> logging.Logger:
    return fresh_logger("test.pipeline", pipeline.handler)


def test_a_logger_call_is_delivered_by_flush_with_the_same_bytes_to_every_sink(make_pipeline):
    # GIVEN a pipeline with two sinks, and a private logger feeding it
    first, second = RecordingSink("first"), RecordingSink("second")
    pipeline = make_pipeline(first, second)
    logger = _logger(pipeline)

    # WHEN a record is logged
    logger.info("hello %s", "world", extra={"order_id": "o-1"})
    # THEN nothing is shipped on the caller's path
    assert first.records == []
    assert second.records == []

    # AND WHEN the pipeline is flushed
    result = pipeline.flush(2.0)

    # THEN the flush is complete and both sinks received the record, rendered once (the same bytes)
    assert result == FlushResult(complete=True, strict_ok=True, incomplete_sinks=(), timed_out=False)
    (event,) = first.events()
    assert event["message"] == "hello world"
    assert event["logger"] == "test.pipeline"
    assert event["level"] == "INFO"
    assert event["order_id"] == "o-1"
    assert [r.data for r in first.records] == [r.data for r in second.records]


def test_records_logged_in_an_invocation_carry_its_context(make_pipeline):
    # GIVEN a pipeline
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    logger = _logger(pipeline)

    # WHEN records are logged inside and after an invocation, and flushed only afterwards
    with invocation_scope(Invocation(request_id="req-1", body=b"", tenant_id="t-1"), cold_start=True):
        logger.info("inside")
    logger.info("after")
    assert pipeline.flush(2.0).complete

    # THEN the context was captured at call time, not at render time
    inside, after = sink.events()
    assert (inside["request_id"], inside["tenant_id"], inside["cold_start"]) == ("req-1", "t-1", True)
    assert (after["request_id"], after["tenant_id"], after["cold_start"]) == (None, None, None)


def test_args_are_formatted_at_call_time(make_pipeline):
    # GIVEN a pipeline and a mutable argument
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    logger = _logger(pipeline)
    items = ["a"]

    # WHEN it is logged, then changed before the record is shipped
    logger.info("items: %s", items)
    items.append("b")
    assert pipeline.flush(2.0).complete

    # THEN the message shows the argument as it was at the call
    assert sink.messages() == ["items: ['a']"]


def test_the_exception_is_captured_at_call_time_and_redacted(make_pipeline):
    # GIVEN a pipeline
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    logger = _logger(pipeline)

    # WHEN an exception is logged while handled, then changed after the handler returned
    error = ValueError("login failed: password=hunter2")
    try:
        raise error
    except ValueError:
        logger.exception("request failed")
    error.args = ("changed later",)
    assert pipeline.flush(2.0).complete

    # THEN the record has the exception as it was when logged, with the secret redacted
    (event,) = sink.events()
    assert event["message"] == "request failed"
    assert event["exception"]["type"] == "ValueError"
    assert event["exception"]["message"] == "login failed: password=[REDACTED]"
    assert "raise error" in event["exception"]["stack"]
    assert event["exception"]["stack"].endswith("ValueError: login failed: password=[REDACTED]\n")
    assert b"changed later" not in sink.records[0].data
    # AND the secret is nowhere in the record (the formatted stack repeats the message, redacted too)
    assert b"hunter2" not in sink.records[0].data


def test_flush_on_an_idle_pipeline_returns_complete_without_the_thread(make_pipeline):
    # GIVEN a pipeline whose shipper thread was never started, with nothing logged
    sink = RecordingSink()
    pipeline = make_pipeline(sink, start=False)

    # WHEN it is flushed
    result = pipeline.flush(1.0)

    # THEN the flush is complete at once: there was nothing to ask the (absent) thread for
    assert result == FlushResult(complete=True, strict_ok=True)
    assert sink.calls == 0

    # AND (the contrast) once something is pending, the same pipeline cannot claim completeness
    _logger(pipeline).info("pending")
    result = pipeline.flush(0.1)
    assert result.complete is False
    assert result.timed_out is True


def test_a_failing_sink_makes_the_flush_incomplete_and_its_records_are_delivered_once_after_it_recovers(
    make_pipeline,
):
    # GIVEN a healthy sink and a sink whose peer is down
    healthy, broken = RecordingSink("healthy"), RecordingSink("broken")
    broken.failing = True
    pipeline = make_pipeline(healthy, broken)
    logger = _logger(pipeline)

    # WHEN three records are logged and flushed
    for n in range(3):
        logger.info("record %d", n)
    result = pipeline.flush(2.0)

    # THEN the flush says which sink is incomplete; the healthy sink has everything
    assert result.complete is False
    assert result.incomplete_sinks == ("broken",)
    assert result.timed_out is False
    assert result.strict_ok is True  # the broken sink is not strict-capable
    assert healthy.messages() == ["record 0", "record 1", "record 2"]
    assert broken.records == []
    assert broken.stats.failures >= 1
    assert pipeline.idle() is False  # the records are still owed

    # AND WHEN the peer recovers and later (unforced) flushes run, as after the next invocations
    broken.failing = False
    assert wait_until(lambda: pipeline.flush(1.0).complete)

    # THEN the broken sink received each record exactly once, in order, and the healthy one got no duplicates
    assert broken.messages() == ["record 0", "record 1", "record 2"]
    assert len({event["record_id"] for event in broken.events()}) == 3
    assert healthy.messages() == ["record 0", "record 1", "record 2"]
    assert pipeline.flush(1.0) == FlushResult(complete=True, strict_ok=True)
    assert broken.messages() == ["record 0", "record 1", "record 2"]


def test_a_sink_that_starts_failing_and_one_that_recovers_are_each_said_once_on_stderr(make_pipeline):
    # GIVEN a sink whose peer is down, and the pipeline's diagnostics (the real stderr in Lambda)
    broken, diagnostics = RecordingSink("broken"), io.StringIO()
    broken.failing = True
    pipeline = make_pipeline(broken, diagnostics=diagnostics)
    logger = _logger(pipeline)

    # WHEN records are logged and flushed several times while it is down
    for n in range(3):
        logger.info("record %d", n)
        pipeline.flush(0.5, force=True)

    # THEN one line says it cannot deliver, why, and that the records are kept (not one line per attempt)
    said = diagnostics.getvalue().splitlines()
    assert [line for line in said if "cannot deliver" in line] == [
        "flightrec: the broken sink cannot deliver (SinkDown: broken is down); its 1 pending records are kept"
        " (in memory, then in the spill file) and retried with backoff"
    ]
    assert broken.stats.failures >= 3

    # AND WHEN the peer recovers, one line says so, and the held records arrive
    broken.failing = False
    assert pipeline.flush(2.0, force=True).complete
    assert diagnostics.getvalue().splitlines()[-1] == (
        "flightrec: the broken sink delivers again; the records it held are being sent")
    assert broken.messages() == ["record 0", "record 1", "record 2"]


def test_a_forced_flush_retries_a_sink_that_is_backing_off(make_pipeline):
    # GIVEN a sink that failed once and is backing off, whose peer is back
    sink = RecordingSink()
    sink.failing = True
    pipeline = make_pipeline(sink)
    _logger(pipeline).info("one")
    assert pipeline.flush(2.0).complete is False
    sink.failing = False

    # WHEN a forced flush runs right away
    result = pipeline.flush(2.0, force=True)

    # THEN the sink is retried at once and the record delivered
    assert result.complete is True
    assert sink.messages() == ["one"]


def test_a_failing_strict_capable_sink_makes_strict_ok_false(make_pipeline):
    # GIVEN a strict-capable sink (like PostgreSQL) that is down, next to a healthy best-effort one
    stdout_like, database = RecordingSink("stdout"), RecordingSink("postgres", strict_capable=True)
    database.failing = True
    pipeline = make_pipeline(stdout_like, database)

    # WHEN a record is logged and flushed
    _logger(pipeline).info("audit")
    result = pipeline.flush(2.0, force=True)

    # THEN the flush is neither complete nor strict-ok
    assert result.complete is False
    assert result.strict_ok is False
    assert result.incomplete_sinks == ("postgres",)


def test_a_hung_sink_cannot_hold_a_flush_past_its_timeout(make_pipeline):
    # GIVEN a sink that hangs in delivery far past any deadline
    sink = RecordingSink("hung")
    sink.delay_s = 60.0
    pipeline = make_pipeline(sink)
    _logger(pipeline).info("stuck")

    # WHEN the loop flushes with a 0.2 s timeout
    started = time.monotonic()
    result = pipeline.flush(0.2)
    elapsed = time.monotonic() - started

    # THEN the flush gives up and says so, within a generous liveness bound
    assert result.timed_out is True
    assert result.complete is False
    assert result.strict_ok is False
    assert elapsed < LIVENESS_S

    # AND once the peer answers again, the record is delivered and flushes complete again
    sink.delay_s = 0.0
    sink.release()
    assert wait_until(lambda: sink.messages() == ["stuck"])
    assert wait_until(lambda: pipeline.flush(1.0).complete)


def test_drops_from_a_full_spill_are_reported_on_diagnostics_and_by_take_dropped(make_pipeline, tmp_path):
    # GIVEN a failing sink that holds 2 records in memory and has a spill file with room for one ~1.2 kB record
    pending = PendingBuffer("tiny", max_items=2, spill_dir=str(tmp_path), spill_max_bytes=1500)
    sink = RecordingSink("tiny", pending=pending)
    sink.failing = True
    diagnostics = io.StringIO()
    pipeline = make_pipeline(sink, diagnostics=diagnostics)
    logger = _logger(pipeline)

    # WHEN 6 records of about 1.2 kB are logged and flushed
    for n in range(6):
        logger.info("record %d %s", n, "x" * 900)
    pipeline.flush(2.0)

    # THEN 3 are still owed (2 kept in memory, 1 that went through the spill file), and the 3 drops are reported
    # on stderr (diagnostics) with the sink's name and last error
    assert (len(pending), pending.spilled_total) == (3, 1)
    report = diagnostics.getvalue()
    assert "flightrec: 3 log records dropped by the tiny sink" in report
    assert "SinkDown: tiny is down" in report
    # AND counted once, for the next report record
    assert pipeline.take_dropped() == 3
    assert pipeline.take_dropped() == 0
    # AND the 3 that were kept are delivered, in order, once the sink recovers
    sink.failing = False
    assert pipeline.flush(2.0, force=True).complete
    assert [m.split()[1] for m in sink.messages()] == ["0", "1", "2"]
    assert list(tmp_path.iterdir()) == []


def test_a_record_that_cannot_be_rendered_is_dropped_counted_and_diagnosed(make_pipeline):
    # GIVEN a record whose deferred field fails to resolve, between two good ones
    class Broken(Deferred):
        def resolve(self) -> object:
            raise RuntimeError("cannot summarise")

    sink = RecordingSink()
    diagnostics = io.StringIO()
    pipeline = make_pipeline(sink, diagnostics=diagnostics)
    logger = _logger(pipeline)
    logger.info("before")
    logger.info("broken", extra={"flightrec_fields": {"event": Broken()}})
    logger.info("after")

    # WHEN the pipeline is flushed
    assert pipeline.flush(2.0).complete

    # THEN the good records are delivered, and the bad one is not lost silently
    assert sink.messages() == ["before", "after"]
    assert pipeline.take_dropped() == 1
    assert "could not be rendered" in diagnostics.getvalue()
    assert "cannot summarise" in diagnostics.getvalue()


def test_the_deadline_guard_ships_records_and_a_warning_before_the_deadline(make_pipeline):
    # GIVEN a pipeline with a 0.3 s deadline margin and no timed flushes, and an invocation with 500 ms left
    sink = RecordingSink()
    pipeline = make_pipeline(sink, deadline_margin_s=0.3)
    logger = _logger(pipeline)
    ctx = LogContext(request_id="req-slow", cold_start=False)
    deadline_s = time.time() + 0.5
    with invocation_scope(Invocation(request_id="req-slow", body=b""), cold_start=False):
        logger.info("started work")
        pipeline.watch_deadline(int(deadline_s * 1000), ctx)
        logger.info("still working")

        # WHEN nobody flushes (the handler is still running)
        assert wait_until(lambda: any("deadline" in m for m in sink.messages()))

    # THEN the records logged so far and a WARNING about the deadline reached the sink before the deadline
    events = sink.events()
    assert [e["message"] for e in events[:2]] == ["started work", "still working"]
    warning = events[-1]
    assert warning["level"] == "WARNING"
    assert warning["kind"] == "runtime"
    assert warning["logger"] == "flightrec.runtime"
    assert "about to reach its deadline" in warning["message"]
    assert warning["request_id"] == "req-slow"
    assert max(sink.delivered_at) < deadline_s


def test_an_unwatched_deadline_writes_no_warning(make_pipeline):
    # GIVEN a deadline guard armed for an invocation that then ends well before its deadline
    sink = RecordingSink()
    pipeline = make_pipeline(sink, deadline_margin_s=0.3)
    ctx = LogContext(request_id="req-fast", cold_start=False)
    pipeline.watch_deadline(int((time.time() + 0.6) * 1000), ctx)
    pipeline.unwatch_deadline()

    # WHEN the moment the guard would have fired has passed
    time.sleep(0.5)

    # THEN no warning was written
    assert sink.records == []
    assert pipeline.idle()


def test_records_are_shipped_in_the_background_every_flush_interval(make_pipeline):
    # GIVEN a pipeline with a short flush interval
    sink = RecordingSink()
    pipeline = make_pipeline(sink, flush_interval_s=0.05)

    # WHEN a record is logged and nobody flushes
    _logger(pipeline).info("long invocation")

    # THEN it reaches the sink anyway
    assert wait_until(lambda: sink.messages() == ["long invocation"])


class _CountingFactory:
    """A renderer factory that records which threads built it (building it is where the imports happen)."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self) -> EventFormatter:
        self.threads.append(threading.current_thread().name)
        return EventFormatter({"function_name": "fn", "function_version": "1"}, instance_id="inst")


def _gated_pipeline(sink: RecordingSink, factory: _CountingFactory, gate: UserCodeGate) -> LogPipeline:
    pipeline = LogPipeline(factory, [sink], redactor=Redactor(DEFAULT_REDACT_KEYS), diagnostics=io.StringIO(),
                           flush_interval_s=0.02, user_code=gate)  # fmt: skip
    pipeline.start()
    return pipeline


def test_while_user_code_runs_no_timed_cycle_makes_the_first_imports():
    # GIVEN a fresh pipeline (renderer not built) with a 20 ms flush interval, and user code running
    sink, factory, gate = RecordingSink(), _CountingFactory(), UserCodeGate()
    pipeline = _gated_pipeline(sink, factory, gate)
    try:
        with gate:
            # WHEN a record is logged and many flush intervals pass
            _logger(pipeline).info("during the handler")
            time.sleep(0.3)
            # THEN the renderer was not built (its imports could race the handler's) and nothing shipped yet
            assert factory.threads == []
            assert sink.records == []
        # AND WHEN the user code is done, the next timed cycle builds it on the shipper and ships
        assert wait_until(lambda: sink.messages() == ["during the handler"])
        assert factory.threads == ["flightrec-shipper"]
    finally:
        pipeline.close(0.5)


def test_a_flush_asked_for_while_user_code_runs_goes_ahead():
    # GIVEN a fresh pipeline and user code running (e.g. SIGTERM arrives mid-invocation)
    sink, factory, gate = RecordingSink(), _CountingFactory(), UserCodeGate()
    pipeline = _gated_pipeline(sink, factory, gate)
    try:
        with gate:
            _logger(pipeline).info("pending at SIGTERM")
            # WHEN someone waits on a flush
            result = pipeline.flush(2.0)
        # THEN it is not held back: someone is waiting, and the handler is done or about to be stopped
        assert result.complete
        assert sink.messages() == ["pending at SIGTERM"]
    finally:
        pipeline.close(0.5)


def test_prepare_makes_the_first_imports_on_the_calling_thread():
    # GIVEN a fresh pipeline (concurrent mode calls prepare on the main thread before its workers start)
    sink, factory, gate = RecordingSink(), _CountingFactory(), UserCodeGate()
    pipeline = _gated_pipeline(sink, factory, gate)
    try:
        # WHEN it is prepared
        pipeline.prepare()
        # THEN the renderer was built here, and timed cycles no longer wait for user code to finish
        assert factory.threads == [threading.current_thread().name]
        with gate:
            _logger(pipeline).info("concurrent")
            assert wait_until(lambda: sink.messages() == ["concurrent"])
    finally:
        pipeline.close(0.5)


def test_a_full_batch_wakes_the_shipper(make_pipeline):
    # GIVEN a pipeline that ships when 5 records are queued (and never on a timer)
    sink = RecordingSink()
    pipeline = make_pipeline(sink, batch_threshold=5)
    logger = _logger(pipeline)

    # WHEN 5 records are logged and nobody flushes
    for n in range(5):
        logger.info("r%d", n)

    # THEN they are shipped
    assert wait_until(lambda: len(sink.records) == 5)


def test_close_flushes_and_stops_the_thread(make_pipeline):
    # GIVEN a running pipeline with records not yet shipped
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    logger = _logger(pipeline)
    logger.info("last words")
    logger.warning("really last")

    # WHEN it is closed
    result = pipeline.close(2.0)

    # THEN the records were delivered and the shipper thread ends
    assert result.complete is True
    assert sink.messages() == ["last words", "really last"]
    assert wait_until(lambda: not pipeline._thread.is_alive())


def test_close_of_a_pipeline_that_never_started_does_not_raise(make_pipeline):
    # GIVEN a pipeline whose thread was never started (init failed before `start`)
    pipeline = make_pipeline(RecordingSink(), start=False)

    # WHEN it is closed THEN it returns a result instead of raising
    assert pipeline.close(0.1).complete is True
