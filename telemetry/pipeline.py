"""`LogPipeline`: one queue between every `logging` call and every sink, drained by one shipper thread.

The caller's thread does only the cheap part of a log call: stamp the invocation context, format the message,
append to a deque (see `EnqueueHandler`). The shipper thread renders each record once and hands the same bytes to
every sink, then ships: when the loop asks for a flush (after the response is posted, before `/next`), when a
batch is due, every `flush_interval` during long invocations, and shortly before an invocation's deadline (the
deadline guard), so a function that times out still leaves its records behind.

Concurrent invocations (Managed Instances) share the pipeline: the deadline guard holds one entry per running
invocation, and a flush ships what was queued when it was asked for — records other invocations log meanwhile
wait for the next flush, so N busy workers cannot keep one worker's flush going until its budget runs out.
Records are taken from one queue by one thread, so concurrent flushes never lose or duplicate one.
Until the renderer is built and every sink has made its imports, the shipper works only while no user code runs
(`runtime.usercode`: a background import racing the handler's can fail it on CPython 3.11), unless a flush or a
deadline guard is waiting on it; `prepare` does those imports on the calling thread instead (concurrent mode).
For SnapStart, `prepare_snapshot` ships and then closes every sink connection on the shipper thread (sinks
reopen lazily) and `after_restore` re-seeds the record sequence, so restored copies never share record ids.
Imports: stdlib, `runtime.usercode`, `.records`, `.sink`, `.context`, `.diagnostics`.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import NamedTuple, Protocol, TextIO

from runtime.usercode import USER_CODE, UserCodeGate
from telemetry.context import LogContext, current
from telemetry.diagnostics import say
from telemetry.records import RUNTIME, Rendered
from telemetry.redact import Redactor
from telemetry.sink import SinkHandler

DRAIN_CHUNK = 2000  # records rendered between two ships; below every sink's memory buffer by default
SpanIds = Callable[[], tuple[str, str] | None]
DeadlineHook = Callable[[LogContext], None]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class Formatter(Protocol):
    def render(self, record: logging.LogRecord) -> Rendered: ...


class FlushRequest:
    """A flush the shipper owes someone; its outcome is filled in before `done` is set."""

    __slots__ = ("close_connections", "complete", "deadline", "done", "force", "incomplete_sinks", "strict_ok")

    def __init__(self, deadline: float, force: bool, close_connections: bool = False) -> None:
        self.deadline = deadline
        self.force = force
        self.close_connections = close_connections  # SnapStart: drop every sink connection once shipped
        self.done = threading.Event()
        self.complete = False
        self.incomplete_sinks: tuple[str, ...] = ()
        self.strict_ok = False


class FlushResult(NamedTuple):
    complete: bool  # every sink delivered everything
    strict_ok: bool  # every strict-capable sink (PostgreSQL) delivered everything
    incomplete_sinks: tuple[str, ...] = ()
    timed_out: bool = False


_EMPTY = FlushResult(complete=True, strict_ok=True)


class EnqueueHandler(logging.Handler):
    """The root logger's only handler: stamps context and enqueues. No lock, no I/O, no rendering."""

    def __init__(self, pipeline: LogPipeline) -> None:
        super().__init__()
        self._pipeline = pipeline

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle takes a lock around emit; appending to a deque needs none.
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pipeline.enqueue(record)
        except Exception:
            self.handleError(record)


class LogPipeline:
    def __init__(
        self,
        formatter: Formatter | Callable[[], Formatter],
        sinks: Sequence[SinkHandler],
        *,
        redactor: Redactor,
        diagnostics: TextIO,
        flush_interval_s: float = 1.0,
        batch_threshold: int = 2000,
        deadline_margin_s: float = 0.3,
        span_ids: SpanIds | None = None,
        user_code: UserCodeGate = USER_CODE,
    ) -> None:
        # A factory is called on the shipper thread at its first shipping cycle (after the first response, or a
        # flush interval into a long invocation), keeping the renderer's ~15 ms of imports off init and off the
        # first response. (Building it as soon as init ends competed with the loop's first /next for the GIL.)
        self._formatter: Formatter | None = None
        self._formatter_factory: Callable[[], Formatter] | None = None
        if callable(getattr(formatter, "render", None)):
            self._formatter = formatter  # type: ignore[assignment]
        else:
            self._formatter_factory = formatter  # type: ignore[assignment]
        self._user_code = user_code
        self._cold = True  # the renderer and the sinks have not made their first imports yet
        self.sinks = tuple(sinks)
        self.redactor = redactor
        self.handler = EnqueueHandler(self)
        self.span_ids = span_ids
        self._diagnostics = diagnostics
        self._interval = flush_interval_s
        self._threshold = batch_threshold
        self._margin = deadline_margin_s
        self._queue: deque[logging.LogRecord] = deque()
        self._seq = itertools.count(1)
        self._wake = threading.Event()
        self._requests: deque[FlushRequest] = deque()
        self._draining = False
        self._stopping = False
        # request id -> (monotonic time to fire, its context): one entry per running invocation
        self._guards: dict[str, tuple[float, LogContext]] = {}
        self._planned_wake = 0.0  # when the shipper will wake by itself (monotonic)
        #: called on the shipper thread when an invocation's deadline guard fires (e.g. to end its span)
        self.on_deadline: DeadlineHook | None = None
        self._dropped: deque[int] = deque()
        self._failing: set[SinkHandler] = set()  # sinks reported as failing on diagnostics (shipper thread only)
        self._thread = threading.Thread(target=self._run, name="flightrec-shipper", daemon=True)

    # -- the caller's side -------------------------------------------------------------------------------------
    def enqueue(self, record: logging.LogRecord) -> None:
        record.flightrec = current()
        if self.span_ids is not None:
            record.flightrec_span = self.span_ids()
        if record.args and not isinstance(record.msg, dict):
            record.msg = record.getMessage()  # args may be mutated after the call returns
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.flightrec_exc = self._exception(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.flightrec_seq = next(self._seq)
        self._queue.append(record)
        if len(self._queue) >= self._threshold:
            self._wake.set()

    def _exception(self, exc_info: ExcInfo) -> dict[str, object]:
        etype, value, tb = exc_info
        return {
            "type": getattr(etype, "__name__", str(etype)),
            "message": self.redactor.text(str(value)),
            # the formatted stack ends with the exception's message: redact it as well
            "stack": self.redactor.text("".join(traceback.format_exception(etype, value, tb))),
        }

    # -- the loop's side ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def idle(self) -> bool:
        return not self._queue and not self._draining and not any(len(s.pending) for s in self.sinks)

    def flush(self, timeout_s: float, force: bool = False) -> FlushResult:
        """Deliver everything logged so far, within `timeout_s`. `force` retries sinks that are backing off."""
        if self.idle():
            return _EMPTY
        if not self._thread.is_alive():
            return FlushResult(complete=False, strict_ok=False, timed_out=True)
        request = FlushRequest(deadline=time.monotonic() + timeout_s, force=force)
        self._requests.append(request)
        self._wake.set()
        if not request.done.wait(timeout_s + 0.05):
            return FlushResult(complete=False, strict_ok=False, timed_out=True)
        return FlushResult(request.complete, request.strict_ok, request.incomplete_sinks)

    def watch_deadline(self, deadline_epoch_ms: int | None, ctx: LogContext | None) -> None:
        """Arm the deadline guard for a running invocation (ship its records `margin` before the deadline)."""
        if deadline_epoch_ms is None or ctx is None:
            return
        remaining_s = deadline_epoch_ms / 1000 - time.time()
        fire_at = time.monotonic() + remaining_s - self._margin
        self._guards[ctx.request_id] = (fire_at, ctx)
        if fire_at < self._planned_wake:  # the shipper would sleep past it; waking a thread costs tens of µs
            self._wake.set()

    def unwatch_deadline(self, ctx: LogContext | None = None) -> None:
        """Disarm the guard of the invocation `ctx` (None: of every invocation)."""
        if ctx is None:
            self._guards.clear()
        else:
            self._guards.pop(ctx.request_id, None)

    def take_dropped(self) -> int:
        n = 0
        while self._dropped:
            n += self._dropped.popleft()
        return n

    def prepare_snapshot(self, timeout_s: float) -> FlushResult:
        """SnapStart, before the snapshot: ship everything, then close every sink's connections, both on the
        shipper thread (so no delivery is cut off half way); a sink reconnects at its next delivery."""
        if not self._thread.is_alive():
            self._close_connections()
            return self.flush(timeout_s, force=True)
        request = FlushRequest(deadline=time.monotonic() + timeout_s, force=True, close_connections=True)
        self._requests.append(request)
        self._wake.set()
        if not request.done.wait(timeout_s + 0.05):
            return FlushResult(complete=False, strict_ok=False, timed_out=True)
        return FlushResult(request.complete, request.strict_ok, request.incomplete_sinks)

    def after_restore(self) -> None:
        """SnapStart, after a restore: many copies resume from one snapshot, with one sequence counter between
        them; records outside an invocation (`<instance>/<seq>` ids) would collide, and PostgreSQL's exactly-once
        insert would drop all but one. A random 64-bit offset (fresh entropy after the restore) keeps them apart."""
        self._seq = itertools.count(int.from_bytes(os.urandom(8), "big") << 20)

    def close(self, timeout_s: float) -> FlushResult:
        result = self.flush(timeout_s, force=True)
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():  # join() raises on a thread that was never started
            self._thread.join(0.2)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self._diagnose(f"closing the {sink.name_for_logs} sink failed: {exc}")
        return result

    # -- the shipper thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            timeout = self._interval
            now = time.monotonic()
            if self._guards:
                first = min(fire_at for fire_at, _ in self._guards.copy().values())  # copy: atomic under the GIL
                timeout = max(min(timeout, first - now), 0.0)
            self._planned_wake = now + timeout
            self._wake.wait(timeout)
            self._wake.clear()
            try:
                self._cycle()
            except Exception as exc:  # the shipper must outlive any bug in a sink or formatter
                self._diagnose(f"log shipper error: {type(exc).__name__}: {exc}")

    def _cycle(self) -> None:
        if not self._cold:
            self._ship_cycle()
            return
        owed = bool(self._requests) or self._guard_due()  # someone waits on this cycle
        if not owed and not self._queue and not any(len(s.pending) for s in self.sinks):
            return  # nothing to ship: no reason to import anything yet
        with self._user_code.quiet() as quiet:
            if not quiet and not owed:
                return  # user code may be importing: the records wait for a quiet moment or a flush
            self.prepare()
            self._ship_cycle()

    def _guard_due(self) -> bool:
        now = time.monotonic()
        return any(fire_at <= now for fire_at, _ in self._guards.copy().values())  # copy: atomic under the GIL

    def prepare(self) -> None:
        """Make the renderer's and the sinks' first imports now, on this thread."""
        _ = self.formatter
        for sink in self.sinks:
            try:
                sink.prepare()
            except Exception as exc:  # its deliveries will fail and say why; the other sinks must not wait
                self._diagnose(f"the {sink.name_for_logs} sink could not be prepared: {type(exc).__name__}: {exc}")
        self._cold = False

    def _ship_cycle(self) -> None:
        requests = []
        while self._requests:
            requests.append(self._requests.popleft())
        now = time.monotonic()
        fired = self._fire_guards(now) if self._guards else []
        guard_fired = bool(fired)
        # What is queued now is what this cycle owes (requests were taken first, so everything logged before them
        # is in it); records logged while it ships wait for the next cycle.
        owed = len(self._queue)
        if not requests and not guard_fired and not owed and all(not len(s.pending) for s in self.sinks):
            return
        if requests:
            deadline = min(r.deadline for r in requests)
            if any(r.force for r in requests):
                for sink in self.sinks:
                    sink.retry_now()
        else:
            deadline = now + (self._margin * 0.8 if guard_fired else self._interval)
        for ctx in fired:  # first: the hook only starts its work (e.g. a span export on its own thread)
            self._deadline_hook(ctx)
        self._draining = True
        try:
            while True:  # render and ship in chunks, so a burst never overfills a sink's memory buffer
                chunk = min(DRAIN_CHUNK, owed)
                self._drain(chunk)
                owed -= chunk
                incomplete = tuple(s.name_for_logs for s in self.sinks if not s.ship(deadline))
                if owed <= 0 or not self._queue or time.monotonic() >= deadline:
                    break
        finally:
            self._draining = False
        self._count_drops()
        self._report_sink_health()
        self._settle(requests, incomplete)

    def _settle(self, requests: list[FlushRequest], incomplete: tuple[str, ...]) -> None:
        strict_ok = not any(s.strict_capable and len(s.pending) for s in self.sinks)
        if any(r.close_connections for r in requests):
            self._close_connections()
        for request in requests:
            request.complete = not incomplete
            request.incomplete_sinks = incomplete
            request.strict_ok = strict_ok
            request.done.set()

    @property
    def formatter(self) -> Formatter:
        if self._formatter is None:
            assert self._formatter_factory is not None
            self._formatter = self._formatter_factory()
        return self._formatter

    def _drain(self, limit: int) -> None:
        render = self.formatter.render
        sinks = self.sinks
        for _ in range(min(limit, len(self._queue))):
            record = self._queue.popleft()
            try:
                rendered = render(record)
            except Exception as exc:
                self._diagnose(f"a log record could not be rendered and was dropped: {exc}")
                self._dropped.append(1)
                continue
            for sink in sinks:
                sink.accept(rendered)

    def _fire_guards(self, now: float) -> list[LogContext]:
        """Take the guards that are due and queue their warning records; returns their contexts."""
        fired = [ctx for fire_at, ctx in self._guards.copy().values() if now >= fire_at]  # copy: atomic under GIL
        for ctx in fired:
            self._guards.pop(ctx.request_id, None)
            self._guard_record(ctx)
        return fired

    def _close_connections(self) -> None:
        for sink in self.sinks:
            try:
                sink.close_connections()
            except Exception as exc:
                self._diagnose(f"closing the {sink.name_for_logs} sink's connections failed: {exc}")

    def _deadline_hook(self, ctx: LogContext) -> None:
        hook = self.on_deadline
        if hook is None:
            return
        try:
            hook(ctx)
        except Exception as exc:
            self._diagnose(f"the deadline hook failed: {type(exc).__name__}: {exc}")

    def _guard_record(self, ctx: LogContext) -> None:
        record = logging.LogRecord(
            "flightrec.runtime", logging.WARNING, __file__, 0,
            "the invocation is about to reach its deadline; shipping its records now", None, None,
        )
        record.flightrec = ctx
        record.flightrec_kind = RUNTIME
        record.flightrec_seq = next(self._seq)
        self._queue.append(record)

    def _report_sink_health(self) -> None:
        """Say on stderr when a sink starts failing and when it delivers again, once each: records are not lost
        while it fails (memory, then the spill file), but whoever reads the logs must know they are late."""
        for sink in self.sinks:
            failing = sink.stats.failing_for > 0
            if failing == (sink in self._failing):
                continue
            if failing:
                self._failing.add(sink)
                self._diagnose(
                    f"the {sink.name_for_logs} sink cannot deliver ({sink.stats.last_error}); its {len(sink.pending)} "
                    "pending records are kept (in memory, then in the spill file) and retried with backoff"
                )
            else:
                self._failing.discard(sink)
                self._diagnose(f"the {sink.name_for_logs} sink delivers again; the records it held are being sent")

    def _count_drops(self) -> None:
        for sink in self.sinks:
            dropped = sink.pending.take_dropped()
            if dropped:
                self._dropped.append(dropped)
                self._diagnose(
                    f"{dropped} log records dropped by the {sink.name_for_logs} sink: its memory buffer and spill "
                    f"file are full ({sink.stats.last_error or 'sink unavailable'})"
                )

    def _diagnose(self, message: str) -> None:
        say(self._diagnostics, message)
