"""Specification of `telemetry.capture.LineCapture`: print()/stderr output becomes one log record per line."""

from __future__ import annotations

import io
import logging
import os
import sys
from dataclasses import dataclass

import pytest

from telemetry.capture import LineCapture
from telemetry.config import DEFAULT_REDACT_KEYS
from telemetry.pipeline import LogPipeline
from telemetry.records import EventFormatter
from telemetry.redact import Redactor
from tests.fakes.sinks import RecordingSink, fresh_logger


@dataclass
class Captured:
    capture: LineCapture
    logger: logging.Logger  # the capture's logger
    original: io.StringIO  # the real stream the capture replaced
    sink: RecordingSink
    pipeline: LogPipeline

    def delivered(self) -> list[tuple[str, str, str]]:
        """(logger, level, message) of every record the sink received, after a flush."""
        assert self.pipeline.flush(2.0).complete
        return [(e["logger"], e["level"], e["message"]) for e in self.sink.events()]

    def messages(self) -> list[str]:
        return [message for _, _, message in self.delivered()]


@pytest.fixture
def captured():
    """A LineCapture for stdout (INFO) in front of a StringIO, feeding a real pipeline with a recording sink."""
    sink = RecordingSink()
    pipeline = LogPipeline(EventFormatter({}, instance_id="inst"), [sink], redactor=Redactor(DEFAULT_REDACT_KEYS),
                           diagnostics=io.StringIO(), flush_interval_s=60.0)
    pipeline.start()
    original = io.StringIO()
    logger = fresh_logger("stdout", pipeline.handler)
    yield Captured(LineCapture(logger, logging.INFO, original), logger, original, sink, pipeline)
    pipeline.close(1.0)


def test_print_of_two_lines_gives_two_records(captured):
    # GIVEN print() going to the capture
    capture, original = captured.capture, captured.original

    # WHEN a string with an embedded newline is printed
    print("a\nb", file=capture)

    # THEN there is one record per line, with the capture's logger and level, and nothing on the original stream
    assert captured.delivered() == [("stdout", "INFO", "a"), ("stdout", "INFO", "b")]
    assert original.getvalue() == ""


def test_a_partial_line_is_held_until_flush(captured):
    # GIVEN a line written in pieces, without its newline yet
    capture = captured.capture
    capture.write("progress: ")
    capture.write("50%")

    # WHEN nothing else is written
    # THEN no record exists yet
    assert captured.delivered() == []

    # AND WHEN the capture is flushed (end of invocation)
    capture.flush()

    # THEN the partial line becomes one record; a second flush adds nothing
    capture.flush()
    assert captured.delivered() == [("stdout", "INFO", "progress: 50%")]


def test_pieces_of_a_line_are_joined_and_crlf_endings_trimmed(captured):
    # GIVEN output written in uneven pieces, with Windows line endings and an empty line
    capture = captured.capture

    # WHEN it is written
    for piece in ("he", "llo\r\nwor", "ld\r\n", "\n"):
        capture.write(piece)

    # THEN each line is one record, without its line ending
    assert captured.messages() == ["hello", "world", ""]


def test_write_returns_the_length_written(captured):
    capture = captured.capture
    assert capture.write("abc\nde") == 6


def test_write_of_a_non_str_raises_type_error_like_a_real_text_stream(captured):
    # GIVEN the capture and a real text stream
    capture = captured.capture

    # WHEN bytes (or another non-str) are written
    # THEN both raise TypeError
    with pytest.raises(TypeError):
        io.StringIO().write(b"raw")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str, not bytes"):
        capture.write(b"raw")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str, not int"):
        capture.write(42)  # type: ignore[arg-type]
    # AND nothing was recorded
    capture.flush()
    assert captured.delivered() == []


def test_a_re_entrant_write_goes_to_the_original_stream(captured):
    # GIVEN a handler on the capture's logger that itself writes to the capture (as logging's own error path does)
    capture, original = captured.capture, captured.original

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            capture.write(f"echo: {record.getMessage()}\n")

    captured.logger.addHandler(Echo())

    # WHEN a line is printed
    print("hello", file=capture)

    # THEN the record was logged once, and the nested write went to the original stream instead of looping
    assert captured.messages() == ["hello"]
    assert original.getvalue() == "echo: hello\n"


def test_logging_errors_printed_to_a_captured_stderr_reach_the_real_stderr(captured, monkeypatch):
    # GIVEN stderr replaced by a capture, and a handler on its logger that fails
    capture, original = captured.capture, captured.original
    monkeypatch.setattr(sys, "stderr", capture)
    monkeypatch.setattr(logging, "raiseExceptions", True)

    class Failing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                raise OSError("disk gone")
            except OSError:
                self.handleError(record)  # writes a traceback to sys.stderr: the capture

    captured.logger.addHandler(Failing())

    # WHEN a line is written
    capture.write("user output\n")

    # THEN the user's line is one record, and logging's error report went to the real stream, not back in
    assert captured.messages() == ["user output"]
    assert "OSError: disk gone" in original.getvalue()


def test_the_stream_attributes_look_like_a_real_text_stream():
    # GIVEN a capture in front of a real file
    with open(os.devnull, "w") as devnull:
        capture = LineCapture(fresh_logger("stderr"), logging.WARNING, devnull)

        # THEN it behaves like a writable UTF-8 text stream on the same descriptor
        assert capture.writable() is True
        assert capture.isatty() is False
        assert capture.encoding == "utf-8"
        assert capture.fileno() == devnull.fileno()
        assert isinstance(capture, io.TextIOBase)


def test_the_level_is_the_captures_level(captured):
    # GIVEN a capture for stderr at WARNING, feeding the same pipeline
    stderr_capture = LineCapture(fresh_logger("stderr", captured.pipeline.handler), logging.WARNING, io.StringIO())

    # WHEN a line is written
    stderr_capture.write("deprecated call\n")

    # THEN it is recorded at WARNING under the stderr logger
    assert captured.delivered() == [("stderr", "WARNING", "deprecated call")]
