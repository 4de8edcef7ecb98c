"""`SinkHandler`: the base of every log sink. A sink is a `logging.Handler` behind the pipeline's one queue.

`emit` only takes the already-rendered record into the sink's `PendingBuffer` (no I/O, never raises); delivery
happens in `ship(deadline)`, called by the pipeline's shipper thread at a flush, when a batch is due, or when an
invocation's deadline nears. A sink never raises: failures are counted and the records stay pending.
Imports: stdlib, `.records`, `.spill`.
"""

from __future__ import annotations

import logging
import time

from telemetry.records import Rendered
from telemetry.spill import PendingBuffer

MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 30.0


class SinkStats:
    __slots__ = ("delivered", "failing_for", "failures", "last_error")

    def __init__(self) -> None:
        self.delivered = 0
        self.failures = 0
        self.failing_for = 0  # failed attempts since the last delivery: > 0 while the peer is unreachable
        self.last_error = ""


class SinkHandler(logging.Handler):
    """Subclasses implement `_deliver(batch, deadline) -> int` (how many of the batch's first records they
    delivered, or gave up on for good); everything else — buffering, spilling, stats — lives here."""

    name_for_logs = "sink"
    #: records handed to `_deliver` at once
    batch_size = 1000
    #: whether the pipeline must treat an undelivered record as an invocation failure under LOGS_POLICY=strict
    strict_capable = False

    def __init__(self, pending: PendingBuffer, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.pending = pending
        self.stats = SinkStats()
        self._backoff_s = 0.0
        self._retry_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        rendered: Rendered | None = getattr(record, "flightrec_rendered", None)
        if rendered is not None:
            self.pending.append(rendered)

    def prepare(self) -> None:
        """Import what delivering needs (a driver). The pipeline calls it on the shipper thread at a moment when
        no user code runs (see `runtime.usercode`), or on the main thread before concurrent workers start."""

    def accept(self, rendered: Rendered) -> None:
        if rendered.levelno >= self.level:
            self.pending.append(rendered)

    def ship(self, deadline: float) -> bool:
        """Deliver what is pending until done or `deadline` (time.monotonic()); True when nothing is left.

        After a failure the sink backs off (doubling up to `MAX_BACKOFF_S`), so a dead peer costs one attempt per
        backoff period instead of a full flush budget on every invocation. `force=True` callers (shutdown,
        strict policy) reset the backoff first via `retry_now()`.
        """
        if time.monotonic() < self._retry_at:
            return not len(self.pending)
        while len(self.pending) and time.monotonic() < deadline:
            batch = self.pending.peek(self.batch_size)
            try:
                done = self._deliver(batch, deadline)
            except Exception as exc:  # a sink never raises into the pipeline
                done = 0
                self._failed(exc)
            if done:
                self.pending.ack(done)
                self.stats.delivered += done
                self.stats.failing_for = 0
            if done < len(batch):
                return False
            self._backoff_s = 0.0
        return not len(self.pending)

    def retry_now(self) -> None:
        self._retry_at = 0.0

    def _failed(self, exc: BaseException) -> None:
        self.stats.failures += 1
        self.stats.failing_for += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self._backoff_s = min(max(self._backoff_s * 2, MIN_BACKOFF_S), MAX_BACKOFF_S)
        self._retry_at = time.monotonic() + self._backoff_s

    def _deliver(self, batch: list[Rendered], deadline: float) -> int:
        raise NotImplementedError

    def flush(self) -> None:
        self.ship(time.monotonic() + 2.0)

    def close_connections(self) -> None:
        """Drop sockets/connections (before a SnapStart snapshot, at shutdown); they reopen lazily."""

    def close(self) -> None:
        self.close_connections()
        super().close()
