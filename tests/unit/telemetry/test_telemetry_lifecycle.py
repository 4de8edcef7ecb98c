"""Specification of `telemetry.lifecycle.InvocationRecorder`: start/end/report records, error records, strict policy.

Each test runs real invocations through `runtime.dispatch.make_dispatch` with the recorder's middleware, into a
real pipeline with a recording sink. Durations come from a fake nanosecond clock that the handlers advance, so
the report's numbers are checked against values the test controls.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from runtime.config import RuntimeConfig
from runtime.dispatch import Failure, Outcome, Success, make_dispatch
from runtime.model import Invocation
from telemetry.capture import LineCapture
from telemetry.config import TelemetryConfig
from telemetry.lifecycle import LOG_SINK_UNAVAILABLE, REPORT_FIELDS, InvocationRecorder
from telemetry.pipeline import LogPipeline
from telemetry.records import EventFormatter
from telemetry.redact import Redactor
from tests.fakes.sinks import RecordingSink, fresh_logger, wait_until

RUNTIME_CONFIG = RuntimeConfig(api_address="x:1", handler="m.f")
INIT_STARTED_NS = 5_000_000_000


class FakeClockNs:
    """A monotonic nanosecond clock that only moves when a test (or a test's handler) advances it."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance_ms(self, ms: float) -> None:
        self.now_ns += round(ms * 1_000_000)


@dataclass
class World:
    """One recorder wired to a real pipeline; `invoke` runs an invocation the way the loop would."""

    sinks: list[RecordingSink]
    pipeline: LogPipeline
    clock: FakeClockNs
    user_log: logging.Logger  # what a handler's `logging.getLogger(__name__)` would be
    make: Callable[..., InvocationRecorder]
    recorder: InvocationRecorder | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def sink(self) -> RecordingSink:
        return self.sinks[0]

    def setup(self, handler: Callable[..., Any], *, captures: tuple[LineCapture, ...] = (), init: bool = True,
              **cfg: Any) -> Callable[[Invocation], Outcome]:
        cfg.setdefault("lifecycle", True)
        cfg.setdefault("flush_budget_ms", 2000)
        self.recorder = self.make(TelemetryConfig(**cfg), captures)
        if init:
            self.clock.advance_ms(250)  # init takes 250 ms
            self.recorder.init_done()
        return make_dispatch(handler, RUNTIME_CONFIG, [self.recorder.middleware])

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        events = self.sink.events()
        return [e for e in events if kind is None or e["kind"] == kind]


@pytest.fixture
def world():
    sinks = [RecordingSink("postgres", strict_capable=True), RecordingSink("syslog")]
    pipeline = LogPipeline(
        EventFormatter({"function_name": "fn", "function_version": "1"}, instance_id="inst"), sinks,
        redactor=Redactor(TelemetryConfig().redact_keys), diagnostics=io.StringIO(), flush_interval_s=60.0,
        deadline_margin_s=0.3,
    )
    pipeline.start()
    clock = FakeClockNs(INIT_STARTED_NS)
    # The recorder logs through "flightrec.invocation", which normally reaches the root logger's handler;
    # here it gets the pipeline's handler directly and stops propagating, and is restored afterwards.
    recorder_log = logging.getLogger("flightrec.invocation")
    saved = (list(recorder_log.handlers), recorder_log.level, recorder_log.propagate)
    recorder_log.handlers = [pipeline.handler]
    recorder_log.setLevel(logging.DEBUG)
    recorder_log.propagate = False

    def make(cfg: TelemetryConfig, captures: tuple[LineCapture, ...]) -> InvocationRecorder:
        return InvocationRecorder(cfg, pipeline, started_ns=INIT_STARTED_NS, captures=captures, clock_ns=clock)

    yield World(sinks, pipeline, clock, fresh_logger("app.handler", pipeline.handler), make)
    recorder_log.handlers, recorder_log.level, recorder_log.propagate = saved[0], saved[1], saved[2]
    for sink in sinks:
        sink.release()
    pipeline.close(0.5)


def _invocation(request_id: str, body: bytes = b'{"user": "bob"}', **fields: Any) -> Invocation:
    fields.setdefault("content_type", "application/json")
    return Invocation(request_id=request_id, body=body, **fields)


def _run(world: World, dispatch: Callable[[Invocation], Outcome], inv: Invocation) -> Outcome:
    """What the loop does: dispatch, (post,) then after_each."""
    outcome = dispatch(inv)
    assert world.recorder is not None
    world.recorder.after_each(inv, outcome)
    return outcome


def test_a_successful_invocation_writes_start_end_and_report_records(world):
    # GIVEN a handler that logs, takes 123.456 ms and succeeds
    def handler(event: Any, context: Any) -> dict[str, Any]:
        world.user_log.info("handling %s", event["user"])
        world.clock.advance_ms(123.456)
        return {"ok": True}

    dispatch = world.setup(handler)

    # WHEN it is invoked (and the loop flushes after posting)
    outcome = _run(world, dispatch, _invocation("req-1"))
    memory_after_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    # THEN the response is the handler's
    assert isinstance(outcome, Success)
    assert json.loads(outcome.body) == {"ok": True}
    # AND the sink received start, the handler's record, end and report, in order, all for this request
    events = world.events()
    assert [(e["kind"], e["message"]) for e in events] == [
        ("start", "START"), ("log", "handling bob"), ("end", "END"), ("report", "REPORT"),
    ]
    assert {e["request_id"] for e in events} == {"req-1"}
    # AND the report carries the documented fields with the controlled values
    (report,) = world.events("report")
    assert {name: report[name] for name in REPORT_FIELDS if name != "max_memory_used_mb"} == {
        "duration_ms": 123.456,
        "status": "success",
        "error_type": None,
        "init_duration_ms": 250.0,
        "records_dropped": 0,
    }
    assert 0 < report["max_memory_used_mb"] <= memory_after_mb
    assert report["level"] == "INFO"


def test_a_failed_invocation_writes_an_error_record_and_an_error_report(world):
    # GIVEN a handler that raises, with a secret in its message
    secret = "hun" + "ter2"  # built at run time, so the handler's source line in the stack does not hold it

    def handler(event: Any, context: Any) -> None:
        world.clock.advance_ms(7.5)
        raise ValueError(f"cannot log in with password={secret}")

    dispatch = world.setup(handler)

    # WHEN it is invoked
    outcome = _run(world, dispatch, _invocation("req-err"))

    # THEN the outcome is a Failure (the loop posts it as an error)
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == "ValueError"
    # AND an ERROR record of kind invocation_error describes it, redacted
    (error,) = world.events("invocation_error")
    assert error["level"] == "ERROR"
    assert error["request_id"] == "req-err"
    assert error["error_type"] == "ValueError"
    assert error["error_message"] == "cannot log in with password=[REDACTED]"
    assert error["message"] == "ValueError: cannot log in with password=[REDACTED]"
    assert isinstance(error["stack_trace"], list)
    assert any("raise ValueError" in line for line in error["stack_trace"])
    # AND the records come in order, the report saying the invocation failed and how
    assert [e["kind"] for e in world.events()] == ["start", "invocation_error", "end", "report"]
    (report,) = world.events("report")
    assert (report["status"], report["error_type"], report["duration_ms"]) == ("error", "ValueError", 7.5)
    # AND the secret value reached no sink
    for record in world.sink.records:
        assert secret.encode() not in record.data


def test_an_error_outcome_without_an_exception_is_reported_with_its_runtime_error_type(world):
    # GIVEN a handler whose result cannot be serialised (the runtime's own error type)
    dispatch = world.setup(lambda event, context: object())

    # WHEN it is invoked
    outcome = _run(world, dispatch, _invocation("req-marshal"))

    # THEN the error record and report carry the runtime's errorType
    assert isinstance(outcome, Failure)
    (error,) = world.events("invocation_error")
    (report,) = world.events("report")
    assert error["error_type"] == outcome.report.error_type == report["error_type"] == "Runtime.MarshalError"
    assert report["status"] == "error"


def test_cold_start_and_init_duration_only_on_the_first_invocation(world):
    # GIVEN a recorder whose init took 250 ms
    def handler(event: Any, context: Any) -> str:
        world.user_log.info("work")
        return "ok"

    dispatch = world.setup(handler)

    # WHEN two invocations run
    _run(world, dispatch, _invocation("req-1"))
    _run(world, dispatch, _invocation("req-2"))

    # THEN every record of the first says cold_start true, every record of the second false
    cold = {e["request_id"]: set() for e in world.events()}
    for event in world.events():
        cold[event["request_id"]].add(event["cold_start"])
    assert cold == {"req-1": {True}, "req-2": {False}}
    # AND only the first report has an init duration
    first, second = world.events("report")
    assert first["init_duration_ms"] == 250.0
    assert second["init_duration_ms"] is None


def test_without_init_done_no_init_duration_is_claimed(world):
    dispatch = world.setup(lambda event, context: None, init=False)
    _run(world, dispatch, _invocation("req-1"))
    (report,) = world.events("report")
    assert report["init_duration_ms"] is None


def test_the_start_record_carries_the_event_redacted(world):
    # GIVEN an event with secrets at several depths
    body = json.dumps({"user": "bob", "password": "hunter2", "items": [{"api_key": "k-123", "sku": "A1"}]}).encode()
    dispatch = world.setup(lambda event, context: None)

    # WHEN it is invoked
    _run(world, dispatch, _invocation("req-1", body))

    # THEN the start record shows the event with the secrets replaced
    (start,) = world.events("start")
    assert start["event"] == {
        "event_bytes": len(body),
        "event": {"user": "bob", "password": "[REDACTED]", "items": [{"api_key": "[REDACTED]", "sku": "A1"}]},
    }
    # AND the secret values reached no sink
    for record in world.sink.records:
        assert b"hunter2" not in record.data
        assert b"k-123" not in record.data


def test_a_large_event_is_capped_in_the_start_record(world):
    # GIVEN an event larger than LOGS_EVENT_MAX_BYTES, with a password
    body = json.dumps({"password": "hunter2", "blob": "z" * 10_000}).encode()
    dispatch = world.setup(lambda event, context: None, event_max_bytes=200)

    # WHEN it is invoked
    _run(world, dispatch, _invocation("req-big", body))

    # THEN the start record has a truncated preview within the cap, without the secret
    (start,) = world.events("start")
    summary = start["event"]
    assert summary["event_bytes"] == len(body)
    assert summary["event_truncated"] is True
    assert len(summary["event_preview"].encode()) <= 200
    assert "hunter2" not in json.dumps(start)


def test_strict_policy_with_a_failing_strict_capable_sink_withholds_the_response(world):
    # GIVEN LOGS_POLICY=strict and a PostgreSQL-like sink that is down
    world.sink.failing = True
    dispatch = world.setup(lambda event, context: {"ok": True}, policy="strict", flush_budget_ms=500)

    # WHEN an invocation succeeds in the handler
    inv = _invocation("req-strict")
    outcome = dispatch(inv)

    # THEN the outcome is a Failure with Runtime.LogSinkUnavailable in the body and in the header
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == LOG_SINK_UNAVAILABLE == "Runtime.LogSinkUnavailable"
    assert outcome.report.header_type == LOG_SINK_UNAVAILABLE
    assert outcome.report.request_id == "req-strict"
    assert "postgres" in outcome.report.error_message
    # AND the records, including that error, are delivered once the sink is back
    world.sink.failing = False
    assert world.pipeline.flush(2.0, force=True).strict_ok
    kinds = [e["kind"] for e in world.events()]
    assert kinds == ["start", "end", "report", "invocation_error"]
    assert world.events("invocation_error")[0]["error_type"] == LOG_SINK_UNAVAILABLE


def test_strict_policy_with_healthy_sinks_returns_the_original_success_after_storing_the_records(world):
    # GIVEN LOGS_POLICY=strict and healthy sinks
    dispatch = world.setup(lambda event, context: {"ok": True}, policy="strict")

    # WHEN an invocation succeeds
    outcome = dispatch(_invocation("req-strict"))

    # THEN the outcome is the handler's Success
    assert isinstance(outcome, Success)
    assert json.loads(outcome.body) == {"ok": True}
    # AND the records were stored before it was returned (before the response would be posted)
    assert [e["kind"] for e in world.events()] == ["start", "end", "report"]


def test_strict_policy_ignores_a_failing_best_effort_sink(world):
    # GIVEN LOGS_POLICY=strict, a healthy strict-capable sink and a failing best-effort one (syslog)
    world.sinks[1].failing = True
    dispatch = world.setup(lambda event, context: "fine", policy="strict", flush_budget_ms=500)

    # WHEN an invocation succeeds
    outcome = dispatch(_invocation("req-1"))

    # THEN the response is not withheld
    assert isinstance(outcome, Success)
    assert json.loads(outcome.body) == "fine"


def test_after_each_flushes_the_invocations_records(world):
    # GIVEN the default policy and an invocation without a deadline (nothing else wakes the shipper)
    def handler(event: Any, context: Any) -> str:
        world.user_log.warning("careful")
        return "done"

    dispatch = world.setup(handler)
    inv = _invocation("req-1")

    # WHEN it is dispatched
    outcome = dispatch(inv)
    # THEN nothing has been shipped yet: the response is posted first
    assert world.sink.records == []

    # AND WHEN the loop calls after_each
    world.recorder.after_each(inv, outcome)

    # THEN every record of the invocation has been delivered, to every sink
    assert [e["kind"] for e in world.events()] == ["start", "log", "end", "report"]
    assert [r.data for r in world.sinks[0].records] == [r.data for r in world.sinks[1].records]


def test_without_lifecycle_records_only_the_logs_and_errors_are_written(world):
    # GIVEN lifecycle records turned off
    def handler(event: Any, context: Any) -> None:
        world.user_log.info("work")
        raise KeyError("missing")

    dispatch = world.setup(handler, lifecycle=False)

    # WHEN a failing invocation runs
    _run(world, dispatch, _invocation("req-1"))

    # THEN there is no start/end/report, but the log and the error record are there
    assert [e["kind"] for e in world.events()] == ["log", "invocation_error"]


def test_a_partial_printed_line_is_recorded_before_the_end_record(world):
    # GIVEN print() captured, and a handler that prints without a final newline
    capture = LineCapture(fresh_logger("stdout", world.pipeline.handler), logging.INFO, io.StringIO())

    def handler(event: Any, context: Any) -> None:
        capture.write("done\nno newline")

    dispatch = world.setup(handler, captures=(capture,))

    # WHEN it is invoked
    _run(world, dispatch, _invocation("req-1"))

    # THEN both lines are records of this invocation, before its end record
    assert [(e["kind"], e["message"]) for e in world.events()] == [
        ("start", "START"), ("log", "done"), ("log", "no newline"), ("end", "END"), ("report", "REPORT"),
    ]
    assert {e["request_id"] for e in world.events()} == {"req-1"}


def test_the_middleware_arms_the_deadline_guard_for_the_running_invocation(world):
    # GIVEN a pipeline with a 0.3 s deadline margin, and a handler that runs until its records have been shipped

    def handler(event: Any, context: Any) -> str:
        world.user_log.info("slow work")
        shipped = wait_until(lambda: any("deadline" in m for m in world.sink.messages()))
        return "shipped" if shipped else "not shipped"

    dispatch = world.setup(handler)
    deadline_s = time.time() + 0.5

    # WHEN it is invoked with 500 ms left
    outcome = dispatch(_invocation("req-slow", deadline_ms=int(deadline_s * 1000)))

    # THEN the guard shipped its records and a warning while the handler was still running
    assert isinstance(outcome, Success)
    assert json.loads(outcome.body) == "shipped"
    warning = next(e for e in world.events() if "deadline" in e["message"])
    assert warning["request_id"] == "req-slow"
    assert warning["level"] == "WARNING"
    assert "slow work" in world.sink.messages()
