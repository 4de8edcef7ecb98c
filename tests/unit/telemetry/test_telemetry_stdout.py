"""Specification of `telemetry.stdout.StdoutSink`: one line per record on a file descriptor, JSON or Lambda's text."""

from __future__ import annotations

import io
import json
import logging
import os
import threading

import pytest

from telemetry.config import DEFAULT_REDACT_KEYS
from telemetry.context import LogContext
from telemetry.pipeline import LogPipeline
from telemetry.records import END, INVOCATION_ERROR, REPORT, RUNTIME, START, EventFormatter, Rendered
from telemetry.redact import Redactor
from telemetry.stdout import StdoutSink
from tests.fakes.sinks import fresh_logger

FORMATTER = EventFormatter({"function_name": "fn", "function_version": "1"}, instance_id="inst")
CREATED = 1_700_000_000.123456
TIMESTAMP = "2023-11-14T22:13:20.123456Z"


@pytest.fixture
def pipe():
    """A real pipe: (read fd, write fd). `read_all()` closes the write end and returns everything written."""
    read_fd, write_fd = os.pipe()
    state = {"write_open": True}

    def read_all() -> bytes:
        os.close(write_fd)
        state["write_open"] = False
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)

    yield write_fd, read_all
    if state["write_open"]:
        os.close(write_fd)
    os.close(read_fd)


def _rendered(message: str, *, level: int = logging.INFO, kind: str | None = None, request_id: str | None = "req-1",
              exc: dict | None = None) -> Rendered:
    record = logging.LogRecord("app", level, "app.py", 1, message, None, None)
    record.created = CREATED
    record.flightrec = LogContext(request_id=request_id, cold_start=False) if request_id else None
    if kind is not None:
        record.flightrec_kind = kind
    if exc is not None:
        record.flightrec_exc = exc
    return FORMATTER.render(record)


def _ship(sink: StdoutSink, *records: Rendered) -> None:
    for record in records:
        sink.accept(record)
    assert sink.ship(float("inf")) is True


def test_json_lines_one_per_record(pipe):
    # GIVEN a JSON stdout sink on a pipe
    write_fd, read_all = pipe
    sink = StdoutSink(write_fd)
    records = [_rendered("first"), _rendered("second", level=logging.WARNING), _rendered("third")]

    # WHEN three records are shipped
    _ship(sink, *records)

    # THEN the pipe holds exactly three lines, each the record's rendered bytes, each valid JSON
    lines = read_all().split(b"\n")
    assert lines[-1] == b""  # the output ends with a newline
    assert lines[:-1] == [r.data for r in records]
    events = [json.loads(line) for line in lines[:-1]]
    assert [(e["message"], e["level"], e["request_id"]) for e in events] == [
        ("first", "INFO", "req-1"), ("second", "WARNING", "req-1"), ("third", "INFO", "req-1"),
    ]


def test_a_multi_line_message_is_still_one_json_line(pipe):
    # GIVEN a record whose message has newlines (a pasted stack, user input)
    write_fd, read_all = pipe
    sink = StdoutSink(write_fd)

    # WHEN it is shipped
    _ship(sink, _rendered("line one\nline two\n{\"level\": \"ERROR\"}"))

    # THEN it is one line, and the message round-trips exactly
    (line,) = read_all().splitlines()
    assert json.loads(line)["message"] == "line one\nline two\n{\"level\": \"ERROR\"}"


def test_the_text_format_is_level_timestamp_request_id_message(pipe):
    # GIVEN a text-format stdout sink
    write_fd, read_all = pipe
    sink = StdoutSink(write_fd, text_format=True)

    # WHEN a record with and one without a request id are shipped
    _ship(sink, _rendered("order placed", level=logging.WARNING), _rendered("init done", request_id=None))

    # THEN each is one tab-separated line in Lambda's text layout
    assert read_all().decode().splitlines() == [
        f"[WARNING]\t{TIMESTAMP}\treq-1\torder placed",
        f"[INFO]\t{TIMESTAMP}\t\tinit done",
    ]


def test_text_format_turns_newlines_into_carriage_returns_so_a_message_cannot_forge_a_line(pipe):
    # GIVEN a message that tries to inject a second, forged log line
    write_fd, read_all = pipe
    sink = StdoutSink(write_fd, text_format=True)
    forged = f"user input\n[ERROR]\t{TIMESTAMP}\treq-forged\tadmin logged in"

    # WHEN it is shipped in text format
    _ship(sink, _rendered(forged))

    # THEN the output is exactly one line; the newline became a carriage return
    output = read_all()
    assert output.count(b"\n") == 1
    assert output.decode() == (
        f"[INFO]\t{TIMESTAMP}\treq-1\tuser input\r[ERROR]\t{TIMESTAMP}\treq-forged\tadmin logged in\n"
    )


def test_text_format_appends_the_stack_on_the_same_line(pipe):
    # GIVEN an error record carrying an exception with a multi-line stack
    write_fd, read_all = pipe
    sink = StdoutSink(write_fd, text_format=True)
    stack = "Traceback (most recent call last):\n  File x\nValueError: bad\n"
    exc = {"type": "ValueError", "message": "bad", "stack": stack}

    # WHEN it is shipped
    _ship(sink, _rendered("failed", level=logging.ERROR, exc=exc))

    # THEN message and stack share one line, separated by carriage returns
    output = read_all().decode()
    assert output == (
        f"[ERROR]\t{TIMESTAMP}\treq-1\tfailed\rTraceback (most recent call last):\r  File x\rValueError: bad\n"
    )


@pytest.mark.parametrize("text_format", [False, True])
def test_lifecycle_records_are_skipped_unless_enabled(pipe, text_format):
    # GIVEN a stdout sink with lifecycle records off (the default: Lambda prints its own START/END/REPORT)
    write_fd, read_all = pipe
    sink = StdoutSink(write_fd, text_format=text_format)

    # WHEN records of every kind are offered
    kinds = [START, "log", INVOCATION_ERROR, END, REPORT, RUNTIME]
    _ship(sink, *[_rendered(f"msg-{kind}", kind=kind) for kind in kinds])

    # THEN only the non-lifecycle records are written
    output = read_all().decode()
    assert len(output.splitlines()) == 3
    for kind in kinds:
        assert (f"msg-{kind}" in output) is (kind not in (START, END, REPORT))


def test_lifecycle_records_are_written_when_enabled(pipe):
    # GIVEN a stdout sink with lifecycle records on (LOGS_STDOUT_LIFECYCLE=1)
    write_fd, read_all = pipe
    sink = StdoutSink(write_fd, lifecycle=True)

    # WHEN start/end/report records are offered
    _ship(sink, _rendered("START", kind=START), _rendered("END", kind=END), _rendered("REPORT", kind=REPORT))

    # THEN all of them are written, in order
    assert [json.loads(line)["kind"] for line in read_all().splitlines()] == [START, END, REPORT]


def test_output_larger_than_the_pipe_buffer_is_written_completely():
    # GIVEN a pipe drained by a concurrent reader, and a batch far larger than a pipe's buffer
    read_fd, write_fd = os.pipe()
    received: list[bytes] = []

    def reader() -> None:
        while chunk := os.read(read_fd, 65536):
            received.append(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    sink = StdoutSink(write_fd)
    records = [_rendered(f"{n:05d} " + "x" * 2000) for n in range(200)]
    try:
        # WHEN the batch is shipped
        _ship(sink, *records)
    finally:
        os.close(write_fd)
        thread.join(timeout=10)
        os.close(read_fd)

    # THEN every record arrived, whole and in order
    assert b"".join(received).splitlines() == [r.data for r in records]


def test_through_the_pipeline_each_logged_record_is_one_line(pipe):
    # GIVEN a real pipeline with a stdout sink on a pipe
    write_fd, read_all = pipe
    pipeline = LogPipeline(FORMATTER, [StdoutSink(write_fd)], redactor=Redactor(DEFAULT_REDACT_KEYS),
                           diagnostics=io.StringIO(), flush_interval_s=60.0)
    pipeline.start()
    logger = fresh_logger("test.stdout", pipeline.handler)
    try:
        # WHEN records are logged and flushed
        logger.info("one")
        logger.error("two\nlines")
        assert pipeline.flush(2.0).complete
    finally:
        pipeline.close(1.0)

    # THEN stdout has one JSON line per record
    events = [json.loads(line) for line in read_all().splitlines()]
    assert [(e["level"], e["message"]) for e in events] == [("INFO", "one"), ("ERROR", "two\nlines")]
