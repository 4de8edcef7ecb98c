"""A test-only log sink: a real `SinkHandler` whose `_deliver` records each batch it receives.

Its behaviour can be switched while a pipeline runs: `failing` makes every delivery raise (a peer that is down),
`accept_at_most` makes it take only the first records of a batch (a partial write), `delay_s` makes it sleep in
`_deliver` (a slow or hung peer; the sleep is interruptible with `release()` so a test never waits it out).
Everything is read through snapshot accessors, because the pipeline's shipper thread delivers concurrently.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from telemetry.records import Rendered
from telemetry.sink import SinkHandler
from telemetry.spill import PendingBuffer

#: how long a test waits for something the shipper thread does in the background (a liveness bound, not a speed
#: expectation: it only ends a test that would otherwise hang)
LIVENESS_S = 5.0


class SinkDown(ConnectionError):
    """What a failing `RecordingSink` raises from `_deliver`."""


class RecordingSink(SinkHandler):
    def __init__(
        self,
        name: str = "recording",
        *,
        pending: PendingBuffer | None = None,
        level: int = logging.NOTSET,
        strict_capable: bool = False,
        batch_size: int = 1000,
    ) -> None:
        super().__init__(pending if pending is not None else PendingBuffer(name), level)
        self.name_for_logs = name
        self.strict_capable = strict_capable
        self.batch_size = batch_size
        self.failing = False
        self.accept_at_most: int | None = None
        self.delay_s = 0.0
        self.calls = 0  # `_deliver` calls, failed ones included
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._batches: list[list[Rendered]] = []
        self._delivered_at: list[float] = []  # time.time() of each delivered batch

    # -- switches ----------------------------------------------------------------------------------------------
    def release(self) -> None:
        """End any current or future `delay_s` sleep at once."""
        self._released.set()

    # -- what the sink received ----------------------------------------------------------------------------------
    @property
    def batches(self) -> list[list[Rendered]]:
        with self._lock:
            return [list(batch) for batch in self._batches]

    @property
    def records(self) -> list[Rendered]:
        with self._lock:
            return [record for batch in self._batches for record in batch]

    @property
    def delivered_at(self) -> list[float]:
        with self._lock:
            return list(self._delivered_at)

    def events(self) -> list[dict[str, Any]]:
        """Every delivered record's JSON bytes, parsed back."""
        return [json.loads(record.data) for record in self.records]

    def messages(self) -> list[str]:
        return [event["message"] for event in self.events()]

    # -- SinkHandler -----------------------------------------------------------------------------------------------
    def _deliver(self, batch: list[Rendered], deadline: float) -> int:
        del deadline  # a badly behaved peer: this fake ignores the deadline on purpose
        self.calls += 1
        if self.delay_s:
            self._released.wait(self.delay_s)
        if self.failing:
            raise SinkDown(f"{self.name_for_logs} is down")
        taken = batch if self.accept_at_most is None else batch[: self.accept_at_most]
        with self._lock:
            self._batches.append(list(taken))
            self._delivered_at.append(time.time())
        return len(taken)


def fresh_logger(name: str, *handlers: logging.Handler, level: int = logging.DEBUG) -> logging.Logger:
    """A logger of the test's own: not registered with `logging`, not propagating, so the root is never touched."""
    logger = logging.Logger(name, level)
    logger.propagate = False
    for handler in handlers:
        logger.addHandler(handler)
    return logger


def wait_until(predicate: Callable[[], bool], timeout_s: float = LIVENESS_S, interval_s: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes; returns its last value."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= end:
            return predicate()
        time.sleep(interval_s)
    return True
