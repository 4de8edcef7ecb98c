"""Per-invocation log context in one `ContextVar`: set by the invocation middleware, reset in `finally`.

Nothing per-invocation lives on a long-lived object, so nothing leaks from one invocation into the next, and
concurrent invocations (threads, tasks) each see their own. A streamed response is produced after the middleware
returned, while the loop sends it: `enter`/`leave` put the same context back around that production, so the
records it writes carry the invocation's ids. Imports: stdlib, `runtime.model`.
"""

from __future__ import annotations

import contextvars
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


class InvocationScope:
    """`with` it around an invocation: its `LogContext` is current inside. A class, not a @contextmanager
    generator: it is entered on every invocation, and the generator machinery cost about a microsecond more."""

    __slots__ = ("_ctx", "_token")

    def __init__(self, ctx: LogContext) -> None:
        self._ctx = ctx
        self._token: contextvars.Token[LogContext | None] | None = None

    def __enter__(self) -> LogContext:
        self._token = _current.set(self._ctx)
        return self._ctx

    def __exit__(self, *exc_info: object) -> None:
        assert self._token is not None
        _current.reset(self._token)


def invocation_scope(invocation: Invocation, cold_start: bool) -> InvocationScope:
    return InvocationScope(LogContext(invocation.request_id, cold_start, invocation.tenant_id, invocation.trace_id))
