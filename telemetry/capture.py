"""`print()` and stderr writes become log records, one per line, so they reach every sink with the request id.

The stdout sink echoes them once on the real stdout. A partial line is held until its newline or the end of the
invocation. Re-entrant writes (the logging machinery itself writing to stderr) go straight to the real stream.
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
        self._partial = ""
        self._lock = threading.Lock()
        self._inside = threading.local()

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
        if getattr(self._inside, "active", False):
            self._original.write(text)
            return len(text)
        with self._lock:
            pending = self._partial + text
            lines = pending.split("\n")
            self._partial = lines.pop()
        self._emit(lines)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            partial, self._partial = self._partial, ""
        if partial:
            self._emit([partial])

    def _emit(self, lines: list[str]) -> None:
        if not lines:
            return
        self._inside.active = True
        try:
            for line in lines:
                self._logger.log(self._level, line.rstrip("\r"))
        finally:
            self._inside.active = False
