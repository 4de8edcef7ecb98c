"""`print()` and stderr writes become log records, one per line, so they reach every sink with the request id.

The stdout sink echoes them once on the real stdout. A partial line is held until its newline or the end of the
invocation, per thread: `print("a")` writes "a" and "\n" separately, and with concurrent invocations (one per
thread) a shared buffer would glue one invocation's text to another's line and request id.
Re-entrant writes (the logging machinery itself writing to stderr) go straight to the real stream.
Imports: stdlib.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import TextIO


class LineCapture(io.TextIOBase):
    def __init__(self, logger: logging.Logger, level: int, original: TextIO) -> None:
        super().__init__()
        self._logger = logger
        self._level = level
        self._original = original
        self._local = threading.local()  # .partial: this thread's unfinished line; .active: inside _emit

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        local = self._local
        if getattr(local, "active", False):
            self._original.write(text)
            return len(text)
        lines = (getattr(local, "partial", "") + text).split("\n")
        local.partial = lines.pop()
        self._emit(lines)
        return len(text)

    def flush(self) -> None:
        """Emit this thread's unfinished line (the end of an invocation; each worker flushes its own)."""
        partial = getattr(self._local, "partial", "")
        if partial:
            self._local.partial = ""
            self._emit([partial])

    def _emit(self, lines: list[str]) -> None:
        if not lines:
            return
        self._local.active = True
        try:
            for line in lines:
                self._logger.log(self._level, line.rstrip("\r"))
        finally:
            self._local.active = False
