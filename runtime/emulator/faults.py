"""One-shot faults a test arms on the emulator to see how a runtime copes with a misbehaving platform.

Why a Python API and not HTTP: only tests need faults, and arming them in-process keeps the Runtime API
surface exactly AWS's. Each call arms one fault for one future request; arming twice arms two.

Allowed imports: stdlib, `runtime.emulator.wire`.
"""

from __future__ import annotations

import threading
from collections import deque
from enum import Enum

from runtime.emulator.wire import Reply, default_error_body


class DeliveryFault(Enum):
    """Faults applied when `/next` hands over an invocation; the invocation stays queued for the next `/next`."""

    OMIT_REQUEST_ID = "omit_request_id"
    DROP_MIDWAY = "drop_midway"


class FaultInjector:
    """Armed faults, consumed in the order they were armed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_refusals: deque[Reply] = deque()
        self._deliveries: deque[DeliveryFault] = deque()
        self._post_refusals: deque[Reply] = deque()

    # --- arming (the test's side) -----------------------------------------------------------------------
    def omit_request_id(self) -> None:
        """The next `/next` that delivers an invocation leaves out `Lambda-Runtime-Aws-Request-Id`.

        The invocation is not consumed: a runtime that logs the error and polls again receives it properly.
        """
        with self._lock:
            self._deliveries.append(DeliveryFault.OMIT_REQUEST_ID)

    def drop_next_midway(self) -> None:
        """The next `/next` that delivers an invocation sends its head and half its body, then closes."""
        with self._lock:
            self._deliveries.append(DeliveryFault.DROP_MIDWAY)

    def fail_next(self, status: int = 500, body: bytes | None = None) -> None:
        """The next `/next` is answered at once with `status` (default: the container-error 500)."""
        with self._lock:
            self._next_refusals.append(Reply(status, default_error_body(status) if body is None else body))

    def fail_next_post(self, status: int, body: bytes | None = None) -> None:
        """The next `/response`, `/error` or `/init/error` is refused with `status`; its id stays open."""
        with self._lock:
            self._post_refusals.append(Reply(status, default_error_body(status) if body is None else body))

    def clear(self) -> None:
        """Disarm everything not yet consumed."""
        with self._lock:
            self._next_refusals.clear()
            self._deliveries.clear()
            self._post_refusals.clear()

    # --- consuming (the emulator's side) ----------------------------------------------------------------
    def take_next_refusal(self) -> Reply | None:
        """The refusal armed for the `/next` now arriving, if any."""
        with self._lock:
            return self._next_refusals.popleft() if self._next_refusals else None

    def take_delivery_fault(self) -> DeliveryFault | None:
        """The fault armed for the invocation `/next` is about to deliver, if any."""
        with self._lock:
            return self._deliveries.popleft() if self._deliveries else None

    def take_post_refusal(self) -> Reply | None:
        """The refusal armed for the answer now arriving, if any."""
        with self._lock:
            return self._post_refusals.popleft() if self._post_refusals else None
