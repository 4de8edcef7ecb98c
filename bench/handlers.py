"""The benchmark's handlers, imported by every contestant as `bench.handlers.<name>` from the task root.

Every contestant runs the same function on the same event, so the differences measured are the runtimes'.
`echo_log10` logs through `logging.getLogger(...)` as a typical function does: awslambdaric formats and writes each
line on the handler's thread, our runtime only enqueues it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("bench.handler")

#: lines logged per invocation by `echo_log10`
LOG_LINES = 10


def echo(event: Any, context: Any) -> Any:
    """Return the event: the least work a handler can do, so the runtime's own cost dominates."""
    del context
    return event


def echo_log10(event: Any, context: Any) -> Any:
    """Log the same 10 INFO lines (with %-style arguments, as most code does), then return the event."""
    del context
    for step in range(1, LOG_LINES + 1):
        log.info("processing step %d of %d for %s", step, LOG_LINES, "order-42")
    return event
