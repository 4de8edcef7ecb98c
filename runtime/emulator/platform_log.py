"""The platform's own log lines (START, END, REPORT, the timeout line), formatted exactly as Lambda prints them.

Why: tools and people grep these lines (durations, memory, cold starts), so the emulator must produce Lambda's
text byte for byte: tab-separated REPORT fields in Lambda's order (Duration, Billed Duration, Memory Size,
Max Memory Used, then Init Duration only after a (re)start), each followed by a tab.

Allowed imports: stdlib, `runtime.emulator.wire`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from pathlib import Path

from runtime.emulator.wire import FUNCTION_VERSION

PROC = Path("/proc")


def format_start(request_id: str) -> str:
    """`START RequestId: <id> Version: $LATEST`."""
    return f"START RequestId: {request_id} Version: {FUNCTION_VERSION}"


def format_end(request_id: str) -> str:
    """`END RequestId: <id>`."""
    return f"END RequestId: {request_id}"


def billed_ms(duration_ms: float) -> int:
    """Lambda bills the printed duration rounded up to the next millisecond (at least 1 ms)."""
    return max(1, math.ceil(round(duration_ms, 2)))


def format_report(
    request_id: str,
    duration_ms: float,
    memory_size_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None,
) -> str:
    """The REPORT line; `Init Duration` appears only when given (the first invocation of a runtime)."""
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(duration_ms)} ms",
        f"Memory Size: {memory_size_mb} MB",
        f"Max Memory Used: {max_memory_used_mb} MB",
    ]
    if init_duration_ms is not None:
        fields.append(f"Init Duration: {init_duration_ms:.2f} ms")
    return "\t".join(fields) + "\t"


def format_timeout(timestamp: str, request_id: str, timeout_s: float) -> str:
    """`<RFC 3339 time> <id> Task timed out after 3.00 seconds`: both the log line and the error message."""
    return f"{timestamp} {request_id} Task timed out after {timeout_s:.2f} seconds"


def read_max_memory_mb(pid: int, proc: Path = PROC) -> int | None:
    """The process's peak resident set (VmHWM) in MB, rounded up; None when it cannot be read (gone, not Linux)."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            kib = int(line.split()[1])
            return math.ceil(kib / 1024)
    return None


class PlatformLog:
    """Collects the platform lines and forwards each to a sink (the emulator's stdout by default)."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._cond = threading.Condition()
        self.lines: list[str] = []

    def emit(self, line: str) -> None:
        """Record one line and pass it on; a failing sink must not break an invocation."""
        with self._cond:
            self.lines.append(line)
            self._cond.notify_all()
        with contextlib.suppress(Exception):  # a closed stdout must not turn into a failed invoke
            self._sink(line)

    def wait_for_prefix(self, prefix: str, timeout_s: float) -> str | None:
        """The first line starting with `prefix`, waiting up to `timeout_s` for it; None if it never came."""
        with self._cond:
            found: list[str] = []

            def seen() -> bool:
                found[:] = [line for line in self.lines if line.startswith(prefix)][:1]
                return bool(found)

            self._cond.wait_for(seen, timeout_s)
            return found[0] if found else None
