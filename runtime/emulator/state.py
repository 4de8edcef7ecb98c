"""Invocation bookkeeping: which invocation waits, which one the runtime holds, and who answered it.

Why: the Runtime API's rules (400 for an unknown id, 403 for a second answer, long-polls that must give up
when their runtime died) are all questions about shared state touched by several HTTP threads. Keeping that
state behind one condition variable, with no HTTP and no processes in sight, makes the rules easy to check.
With `AWS_LAMBDA_MAX_CONCURRENCY=N` (Managed Instances) up to N invocations are dispatched at once; the book
holds them all, and `FifoTurn` admits N invokes at a time in arrival order.

Allowed imports: stdlib, `runtime.emulator.stream`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from runtime.emulator.stream import StreamRelay


class OutcomeKind(Enum):
    """How an invocation ended; the platform lines and the invoke answer depend on it."""

    RESPONSE = "response"
    ERROR = "error"
    INIT_ERROR = "init_error"
    TIMEOUT = "timeout"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one invocation, as the invoker will receive it."""

    kind: OutcomeKind
    body: bytes
    content_type: str
    function_error: str | None = None  # "Unhandled" when the invoke answer carries X-Amz-Function-Error
    error_type: str | None = None  # normalised error type, for inspection
    finished_at: float = field(default_factory=time.monotonic)


@dataclass(eq=False, slots=True)
class Invocation:
    """One queued or running invocation. Mutable fields change only under the book's lock."""

    request_id: str
    event: bytes
    trace_id: str
    generation: int
    client_context: str | None = None
    cognito_identity: str | None = None
    tenant_id: str | None = None
    queued_at: float = field(default_factory=time.monotonic)
    dispatched_at: float | None = None
    deadline_ms: int | None = None
    outcome: Outcome | None = None
    stream: StreamRelay | None = None
    start_logged: bool = False
    poll_mark: int = 0  # the runtime's `/next` count when it took this invocation
    settle_mark: int = 0  # the `/next` count when it was answered

    @property
    def started_at(self) -> float:
        """Start of the measured duration: the `/next` answer, or the queueing if the runtime never took it."""
        return self.dispatched_at if self.dispatched_at is not None else self.queued_at


@dataclass(slots=True)
class Generation:
    """Init bookkeeping of one runtime process; generation 0 is an external runtime the emulator did not start."""

    number: int
    spawned_at: float | None
    init_done_at: float | None = None
    init_failed: bool = False
    init_reported: bool = False
    stored_init_error: Outcome | None = None
    exited: bool = False
    snapshot_at: float | None = None  # SnapStart: when the runtime called /restore/next
    restored_at: float | None = None  # SnapStart: when /restore/next answered

    @property
    def init_duration_ms(self) -> float | None:
        """Spawn to first `/next` (or to the init error), in ms; None while unknown."""
        if self.spawned_at is None or self.init_done_at is None:
            return None
        return (self.init_done_at - self.spawned_at) * 1000.0


class Verdict(Enum):
    """Whether a posted answer may settle its request id."""

    OPEN = 202
    UNKNOWN = 400
    ANSWERED = 403


class InvocationBook:
    """Thread-safe record of invocations; the only place their state changes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[Invocation] = deque()
        self._dispatched: dict[str, Invocation] = {}
        self._epoch = 0
        self._closed = False
        self._polls = 0
        self.current: Invocation | None = None

    @property
    def epoch(self) -> int:
        """The runtime generation long-polls belong to; a change makes older long-polls give up."""
        with self._cond:
            return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """A new runtime generation starts: every long-poll of an older one gives up."""
        with self._cond:
            self._epoch = epoch
            self._cond.notify_all()

    def note_poll(self) -> None:
        """A `/next` arrived: the runtime finished its previous invocation (Lambda's "runtime done")."""
        with self._cond:
            self._polls += 1
            self._cond.notify_all()

    def back_at_next(self, inv: Invocation, concurrent: bool = False) -> bool:
        """True once the runtime polled `/next` again after taking `inv` (with concurrent workers, after `inv` was
        answered: another worker's poll says nothing about this one). Call only inside `wait_for`."""
        return self._polls > (inv.settle_mark if concurrent else inv.poll_mark)

    def notify(self) -> None:
        """Wake waiters to re-check conditions that live outside the book (e.g. a runtime exited)."""
        with self._cond:
            self._cond.notify_all()

    def submit(self, inv: Invocation) -> None:
        """Queue an invocation for the runtime's next `/next`."""
        with self._cond:
            self.current = inv
            self._queue.append(inv)
            self._cond.notify_all()

    def take_next(self, epoch: int) -> Invocation | None:
        """Block until an invocation is queued; None when the emulator closes or the asking runtime died."""
        with self._cond:
            while not self._queue:
                if self._closed or self._epoch != epoch:
                    return None
                self._cond.wait()
            if self._closed or self._epoch != epoch:
                return None
            return self._queue.popleft()

    def requeue(self, inv: Invocation) -> None:
        """Put back an invocation that a fault kept from reaching the runtime."""
        with self._cond:
            if inv.outcome is None:
                self._queue.appendleft(inv)
                self._cond.notify_all()

    def mark_dispatched(self, inv: Invocation, deadline_ms: int) -> None:
        """The runtime now holds the invocation: its id becomes answerable and its clock starts."""
        with self._cond:
            inv.dispatched_at = time.monotonic()
            inv.deadline_ms = deadline_ms
            inv.poll_mark = self._polls
            self._dispatched[inv.request_id] = inv
            self._cond.notify_all()

    def claim_start(self, inv: Invocation) -> bool:
        """True exactly once per invocation: whoever gets it prints the START line."""
        with self._cond:
            first = not inv.start_logged
            inv.start_logged = True
            return first

    def lookup(self, request_id: str) -> Invocation | None:
        """The dispatched invocation with this id, if any."""
        with self._cond:
            return self._dispatched.get(request_id)

    def verdict(self, request_id: str) -> tuple[Verdict, Invocation | None]:
        """Judge an answer for `request_id` without settling it (400 unknown, 403 already answered)."""
        with self._cond:
            inv = self._dispatched.get(request_id)
            if inv is None:
                return Verdict.UNKNOWN, None
            if inv.outcome is not None:
                return Verdict.ANSWERED, inv
            return Verdict.OPEN, inv

    def settle(self, inv: Invocation, outcome: Outcome) -> bool:
        """Give `inv` its outcome unless it already has one; True when this call settled it."""
        with self._cond:
            if inv.outcome is not None:
                return False
            inv.outcome = outcome
            inv.settle_mark = self._polls
            if inv in self._queue:
                self._queue.remove(inv)
            self._cond.notify_all()
            return True

    def in_flight(self, generation: int) -> list[Invocation]:
        """The dispatched, unanswered invocations a runtime generation holds."""
        with self._cond:
            return [inv for inv in self._dispatched.values() if inv.generation == generation and inv.outcome is None]

    def start_stream(self, inv: Invocation, relay: StreamRelay) -> None:
        """Mark `inv` as streaming so its invoker starts relaying chunks before the outcome exists."""
        with self._cond:
            inv.stream = relay
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait (up to `timeout` seconds) until `predicate` holds; it is evaluated under the lock."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate() or self._closed, timeout) and predicate()

    def close(self) -> None:
        """Release every waiter: the emulator is stopping."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once the emulator began to stop."""
        with self._cond:
            return self._closed


class FifoTurn:
    """A first-come, first-served semaphore: invokes are served `slots` at a time (one, unless the function runs
    with `AWS_LAMBDA_MAX_CONCURRENCY`), admitted in arrival order."""

    def __init__(self, slots: int = 1) -> None:
        self._cond = threading.Condition()
        self._slots = max(slots, 1)
        self._next_ticket = 0
        self._admitted = 0  # tickets admitted so far, in order
        self._active = 0

    def __enter__(self) -> FifoTurn:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._admitted == ticket and self._active < self._slots)
            self._admitted += 1
            self._active += 1
            self._cond.notify_all()  # the next ticket may be admissible too
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invoke holds or awaits its turn; True when idle."""
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0 and self._admitted == self._next_ticket, timeout)
