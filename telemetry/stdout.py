"""`StdoutSink`: JSON lines (or Lambda's text format) on the process's real stdout, best effort.

Writes go to the original file descriptor, never through `sys.stdout` (which the runtime replaces to capture
`print()`), so nothing written here re-enters the pipeline. Lifecycle records (start/end/report) are skipped by
default: Lambda already prints START/END/REPORT lines. Imports: stdlib, `.records`, `.sink`, `.spill`.
"""

from __future__ import annotations

import logging
import os

from telemetry.records import END, REPORT, START, Rendered
from telemetry.sink import SinkHandler
from telemetry.spill import PendingBuffer

LIFECYCLE_KINDS = frozenset({START, END, REPORT})


class StdoutSink(SinkHandler):
    name_for_logs = "stdout"

    def __init__(self, fd: int, *, text_format: bool = False, lifecycle: bool = False, max_items: int = 10_000) -> None:
        super().__init__(PendingBuffer("stdout", max_items=max_items), logging.NOTSET)
        self._fd = fd
        self._text = text_format
        self._lifecycle = lifecycle

    def accept(self, rendered: Rendered) -> None:
        if self._lifecycle or rendered.event.get("kind") not in LIFECYCLE_KINDS:
            self.pending.append(rendered)

    def _line(self, rendered: Rendered) -> bytes:
        if not self._text:
            return rendered.data + b"\n"
        event = rendered.event
        message = str(event.get("message", "")).replace("\n", "\r")  # one record, one line (as Lambda's text logs)
        exc = event.get("exception")
        if isinstance(exc, dict) and exc.get("stack"):
            message += "\r" + str(exc["stack"]).rstrip("\n").replace("\n", "\r")
        line = f"[{event.get('level')}]\t{event.get('timestamp')}\t{event.get('request_id') or ''}\t{message}\n"
        return line.encode("utf-8", "replace")

    def _deliver(self, batch: list[Rendered], deadline: float) -> int:
        data = memoryview(b"".join(self._line(r) for r in batch))
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        return len(batch)
