"""The recorder and a streamed response: the log context while chunks are produced, the guard until the stream
ends, and the end/report records (with bytes sent, time to first byte and stream duration) after it.

Real invocations through `make_dispatch` with the recorder's middleware, a real pipeline and recording sinks; the
`Streamed` outcome is run the way the loop runs it, into a sink that records what it is given. Durations come
from a fake nanosecond clock that the handlers advance.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime.config import RuntimeConfig
from runtime.dispatch import Failure, Streamed, make_dispatch
from runtime.model import Invocation
from telemetry.config import TelemetryConfig
from telemetry.context import current
from telemetry.lifecycle import LOG_SINK_UNAVAILABLE, STREAM_REPORT_FIELDS, InvocationRecorder
from telemetry.pipeline import LogPipeline
from telemetry.records import EventFormatter
from telemetry.redact import Redactor
from tests.fakes.sinks import RecordingSink, fresh_logger, wait_until

RUNTIME_CONFIG = RuntimeConfig(api_address="x:1", handler="m.f")


class FakeClockNs:
    def __init__(self) -> None:
        self.now_ns = 1_000_000_000

    def __call__(self) -> int:
        return self.now_ns

    def advance_ms(self, ms: float) -> None:
        self.now_ns += round(ms * 1_000_000)


class SinkLog:
    """The loop's side of a stream: what `run` opened and wrote."""

    def __init__(self) -> None:
        self.content_type: str | None = None
        self.chunks: list[bytes] = []

    def open(self, content_type: str) -> None:
        self.content_type = content_type

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


class World:
    def __init__(self) -> None:
        self.sink = RecordingSink("postgres", strict_capable=True)
        self.pipeline = LogPipeline(
            EventFormatter({"function_name": "fn", "function_version": "1"}, instance_id="inst"), [self.sink],
            redactor=Redactor(TelemetryConfig().redact_keys), diagnostics=io.StringIO(), flush_interval_s=60.0,
            deadline_margin_s=0.3,
        )
        self.pipeline.start()
        self.clock = FakeClockNs()
        self.log = fresh_logger("app.handler", self.pipeline.handler)
        self.recorder: InvocationRecorder | None = None

    def dispatch(self, handler: Callable[..., Any], **cfg: Any) -> Callable[[Invocation], Any]:
        cfg.setdefault("lifecycle", True)
        cfg.setdefault("flush_budget_ms", 2000)
        self.recorder = InvocationRecorder(TelemetryConfig(**cfg), self.pipeline, started_ns=0, clock_ns=self.clock)
        return make_dispatch(handler, RUNTIME_CONFIG, [self.recorder.middleware])

    def stream(self, dispatch: Callable[[Invocation], Any], inv: Invocation) -> tuple[Failure | None, SinkLog]:
        """What the loop does with a streamed outcome: run it into its sink, then after_each."""
        outcome = dispatch(inv)
        assert isinstance(outcome, Streamed)
        assert current() is None  # the middleware returned: its scope is closed until the stream runs
        sink = SinkLog()
        failure = outcome.run(sink)
        assert self.recorder is not None
        self.recorder.after_each(inv, failure or outcome)
        return failure, sink

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.sink.events() if kind is None or e["kind"] == kind]


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    recorder_log = logging.getLogger("flightrec.invocation")
    saved = (list(recorder_log.handlers), recorder_log.level, recorder_log.propagate)
    recorder_log.handlers = [w.pipeline.handler]
    recorder_log.setLevel(logging.DEBUG)
    recorder_log.propagate = False
    yield w
    recorder_log.handlers, recorder_log.level, recorder_log.propagate = saved[0], saved[1], saved[2]
    w.sink.release()
    w.pipeline.close(0.5)


def test_records_written_while_chunks_are_produced_carry_the_invocation_and_the_report_covers_the_stream(world):
    # GIVEN a generator that takes 5 ms to its first chunk, then logs and produces two more over 20 ms
    def handler(event, context):
        world.clock.advance_ms(5)
        yield b"first"
        for i in range(2):
            world.log.info("producing chunk %d", i)
            world.clock.advance_ms(10)
            yield b"next" * (i + 1)

    dispatch = world.dispatch(handler)

    # WHEN the stream is run as the loop runs it
    failure, sink = world.stream(dispatch, Invocation("req-s", b"{}", tenant_id="t-1", trace_id="Root=1-a-b"))

    # THEN every chunk went out, and every record of the invocation carries its ids, in order
    assert failure is None
    assert sink.chunks == [b"first", b"next", b"nextnext"]
    events = world.events()
    assert [(e["kind"], e["message"]) for e in events] == [
        ("start", "START"), ("log", "producing chunk 0"), ("log", "producing chunk 1"), ("end", "END"),
        ("report", "REPORT"),
    ]
    assert {(e["request_id"], e["tenant_id"], e["xray_trace_id"]) for e in events} == {("req-s", "t-1", "Root=1-a-b")}
    # AND the report covers the whole stream
    (report,) = world.events("report")
    assert {name: report[name] for name in STREAM_REPORT_FIELDS} == {
        "bytes_sent": 17, "time_to_first_byte_ms": 5.0, "stream_duration_ms": 20.0,
    }
    assert (report["duration_ms"], report["status"]) == (25.0, "success")


def test_a_failure_mid_stream_is_recorded_and_returned_for_the_trailers(world):
    def handler(event, context, stream):
        stream.write(b"partial")
        world.clock.advance_ms(3)
        raise ValueError("broke half way")

    failure, sink = world.stream(world.dispatch(handler), Invocation("req-f", b"{}"))

    assert isinstance(failure, Failure) and failure.report.error_type == "ValueError"
    assert sink.chunks == [b"partial"]
    (error,) = world.events("invocation_error")
    assert (error["request_id"], error["error_type"]) == ("req-f", "ValueError")
    (report,) = world.events("report")
    assert (report["status"], report["error_type"], report["bytes_sent"]) == ("error", "ValueError", 7)


def test_a_failure_before_the_first_byte_reports_nothing_sent(world):
    def handler(event, context):
        raise KeyError("early")
        yield b"never"

    failure, sink = world.stream(world.dispatch(handler), Invocation("req-e", b"{}"))
    assert isinstance(failure, Failure)
    assert sink.content_type is None  # nothing opened: the loop answers through /error
    (report,) = world.events("report")
    assert (report["bytes_sent"], report["time_to_first_byte_ms"], report["stream_duration_ms"]) == (0, None, None)


def test_the_deadline_guard_stays_armed_until_the_stream_ends(world):
    import time

    # GIVEN an invocation with 0.5 s left and a 0.3 s margin, whose stream is still producing at the guard
    def handler(event, context):
        yield b"started"
        world.log.info("still streaming")
        assert wait_until(lambda: any("about to reach its deadline" in m for m in world.sink.messages()))
        yield b"done"

    deadline_ms = int((time.time() + 0.5) * 1000)
    failure, _ = world.stream(world.dispatch(handler), Invocation("req-slow", b"{}", deadline_ms=deadline_ms))

    # THEN the guard fired while the stream ran, for this invocation, and shipped what it had logged
    assert failure is None
    warning = next(e for e in world.events("runtime") if "deadline" in e["message"])
    assert warning["request_id"] == "req-slow"
    messages = world.sink.messages()
    assert messages.index("still streaming") < messages.index(warning["message"])


def test_strict_policy_ends_a_stream_whose_records_cannot_be_stored_in_error(world):
    def handler(event, context):
        world.log.info("about to stream")
        yield b"data"

    world.sink.failing = True
    failure, sink = world.stream(world.dispatch(handler, policy="strict", flush_budget_ms=300),
                                 Invocation("req-strict", b"{}"))
    assert sink.chunks == [b"data"]
    assert isinstance(failure, Failure)
    assert failure.report.error_type == LOG_SINK_UNAVAILABLE  # the loop puts it in the trailers
