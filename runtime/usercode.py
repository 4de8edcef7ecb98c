"""`USER_CODE`: held while user code may be importing; the runtime's own threads take it for first imports.

Why it exists: on CPython 3.11 `importlib` takes a submodule's lock *before* importing its parent package, so
two threads importing the same package tree (the shipper importing `msgspec.json` for its renderer, a handler
importing `msgspec`) can wait on each other, and the import system breaks the cycle by raising `_DeadlockError`
in one of them — possibly in the user's import. The runtime imports its heavy dependencies (renderer, PostgreSQL
driver, OTLP exporters) lazily on background threads to keep them off the path to the first response, so it
must never do so while user code runs.

The single loop holds the gate from `/next` to the posted response, and `bootstrap` while it imports the
handler's module. Background threads never *wait* for it (the loop may be waiting on them): they try it, and
when it is taken they either come back later (a periodic flush, a warm-up) or, when something is waiting on them
right now (a flush the loop asked for, a deadline guard, SIGTERM), go ahead anyway — by then the handler has
returned or is about to be stopped. Under `AWS_LAMBDA_MAX_CONCURRENCY` the workers do not hold it: there the
runtime imports everything on the main thread before the first invocation instead.
Imports: stdlib.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType


class UserCodeGate:
    """A lock with two sides: `with gate:` around user code, `with gate.quiet() as quiet:` on a background
    thread before work that may import for the first time (`quiet` is False while user code holds it)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()

    @contextmanager
    def quiet(self) -> Iterator[bool]:
        """Hold the gate if no user code runs now; never waits. Yields whether it is held."""
        held = self._lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                self._lock.release()

    @property
    def user_code_running(self) -> bool:
        return self._lock.locked()


#: The process's gate: the import system is process-wide, so is the rule.
USER_CODE = UserCodeGate()
