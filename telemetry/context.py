"""Per-invocation log context in one `ContextVar`: set by the invocation middleware, reset in `finally`.

Nothing per-invocation lives on a long-lived object, so nothing leaks from one invocation into the next, and
concurrent invocations (threads, tasks) each see their own. A streamed response is produced after the middleware
returned, while the loop sends it: `enter`/`leave` put the same context back around that production, so the
records it writes carry the invocation's ids. Imports: stdlib, `runtime.model`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from runtime.model import Invocation


class LogContext(NamedTuple):
    request_id: str
    cold_start: bool
    tenant_id: str | None = None
    xray_trace_id: str | None = None


_current: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar("flightrec_log_context", default=None)


def current() -> LogContext | None:
    return _current.get()


def enter(ctx: LogContext) -> contextvars.Token[LogContext | None]:
    """Make `ctx` current again (e.g. while a streamed response is produced); undo with `leave(token)`."""
    return _current.set(ctx)


def leave(token: contextvars.Token[LogContext | None]) -> None:
    _current.reset(token)


@contextmanager
def invocation_scope(invocation: Invocation, cold_start: bool) -> Iterator[LogContext]:
    ctx = LogContext(
        request_id=invocation.request_id,
        cold_start=cold_start,
        tenant_id=invocation.tenant_id,
        xray_trace_id=invocation.trace_id,
    )
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
