"""The platform's side of the Runtime, Extensions and Invoke APIs, without any HTTP.

Why: this is where Lambda's rules live (one invocation at a time, deadlines, 400/403/413, init errors that
answer the first invoke, timeouts and crashes that replace the runtime, platform log lines). The HTTP server
only translates requests into calls here and `Reply` objects back into bytes, so each rule can be read in
one place and the server stays a thin, replaceable shell.

Two platform modes beyond the default: `max_concurrency > 1` (Managed Instances: up to that many invocations
are handed out at once, to as many concurrent `/next` calls) and `snapstart` (`/runtime/restore/next` is served:
it answers once the test or user releases the "restore", and `/runtime/restore/error` fails the first invoke as
an init error does).

Allowed imports: stdlib, `runtime.emulator.*` (except `server`, `api`, `cli`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from runtime.emulator import wire
from runtime.emulator.extensions import INVOKE, ExtensionRegistry, UnknownExtensionError
from runtime.emulator.faults import DeliveryFault, FaultInjector
from runtime.emulator.platform_log import PlatformLog, format_end, format_report, format_start, format_timeout
from runtime.emulator.state import FifoTurn, Generation, Invocation, InvocationBook, Outcome, OutcomeKind, Verdict
from runtime.emulator.stream import StreamRelay
from runtime.emulator.supervisor import RuntimeProcess, Supervisor, describe_exit

UNHANDLED = "Unhandled"


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """The function as the platform sees it: names, limits and timings."""

    function_name: str
    handler: str = ""
    region: str = "us-east-1"
    timeout_s: float = 3.0
    memory_mb: int = 128
    init_timeout_s: float = 10.0
    max_concurrency: int = 1  # AWS_LAMBDA_MAX_CONCURRENCY: invocations handed out at once
    snapstart: bool = False  # serve /runtime/restore/next and /runtime/restore/error

    @property
    def arn(self) -> str:
        """The invoked function ARN sent on `/next`."""
        return wire.function_arn(self.region, self.function_name)


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """One call to the invoke endpoint, decoded from its HTTP form."""

    event: bytes
    client_context: str | None = None
    cognito_identity: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class PostRecord:
    """What the runtime posted for a request id (or for init), kept so tests can inspect the raw headers."""

    kind: str  # "response", "error", "init_error", "restore_error"
    request_id: str | None
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes  # empty when the body exceeded the payload limit
    body_size: int
    received_at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup, as HTTP intends."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


class InvokeSink(Protocol):
    """Where an invoke answer goes: the invoke endpoint's HTTP response, whole or chunked (streaming)."""

    def reply(self, reply: wire.Reply) -> None:
        """Send a complete answer; raises OSError when the invoker is gone."""

    def begin(self, content_type: str, headers: Mapping[str, str]) -> None:
        """Send the status line and headers."""

    def write(self, chunk: bytes) -> None:
        """Send one chunk; raises OSError when the invoker is gone."""

    def end(self, trailers: Mapping[str, str]) -> None:
        """Send the last chunk and the trailers."""


def _exit_body(request_id: str, returncode: int) -> tuple[str, bytes]:
    if returncode == 0:
        message = f"RequestId: {request_id} Error: Runtime exited without providing a reason"
    else:
        message = f"RequestId: {request_id} Error: Runtime exited with error: {describe_exit(returncode)}"
    body = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}, separators=(",", ":"))
    return message, body.encode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)


class Backend:
    """Lambda's rules for one function, driven by the HTTP server's threads."""

    def __init__(
        self,
        config: FunctionConfig,
        platform_log: PlatformLog,
        faults: FaultInjector,
        extensions: ExtensionRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.faults = faults
        self.extensions = extensions
        self.supervisor: Supervisor | None = None  # None: an external runtime polls us (tests, debuggers)
        self._log = platform_log
        self._clock = clock
        self._book = InvocationBook()
        self._turn = FifoTurn(config.max_concurrency)
        self.restore_gate = threading.Event()  # SnapStart: /restore/next answers once this is set
        self.restore_gate.set()
        self._lock = threading.Lock()
        self._generations: dict[int, Generation] = {0: Generation(0, spawned_at=None)}
        self.posts: list[PostRecord] = []
        self.api_calls: list[tuple[str, str]] = []
        self.last_error_type_header: str | None = None

    # --- runtime generations ----------------------------------------------------------------------------
    def on_spawn(self, number: int) -> None:
        """A new runtime process is about to start: older long-polls and registrations are void."""
        with self._lock:
            self._generations[number] = Generation(number, spawned_at=time.monotonic())
        self.extensions.reset()
        self._book.set_epoch(number)

    def _generation(self, number: int) -> Generation:
        with self._lock:
            return self._generations[number]

    def _current_generation(self) -> Generation:
        return self._generation(self._book.epoch)

    def on_runtime_exit(self, rp: RuntimeProcess, returncode: int) -> None:
        """A runtime process ended; every invocation it still owed an answer fails with `Runtime.ExitError`."""
        with self._lock:
            self._generations[rp.generation].exited = True
        self._book.notify()
        owed = self._book.in_flight(rp.generation)
        inv = self._book.current  # queued for this generation but not taken yet: it waited in vain
        if inv is not None and inv.generation == rp.generation and inv.outcome is None and inv not in owed:
            owed.append(inv)
        for inv in owed:
            message, body = _exit_body(inv.request_id, returncode)
            outcome = Outcome(OutcomeKind.EXIT, body, wire.JSON, UNHANDLED, "Runtime.ExitError")
            self._settle(inv, outcome, [message, "Runtime.ExitError"])

    def _ensure_runtime(self) -> int:
        """The generation that will serve the next invocation, starting a runtime when none is usable."""
        if self.supervisor is None:
            return 0
        current = self.supervisor.current
        if current is not None:
            gen = self._generation(current.generation)
            if gen.stored_init_error is not None:
                return gen.number  # its init error answers this invoke; the restart comes after
            if gen.init_failed:
                return self.supervisor.ensure_running(fresh=True).generation
        return self.supervisor.ensure_running().generation

    # --- Runtime API ------------------------------------------------------------------------------------
    def note_call(self, method: str, path: str) -> None:
        """Remember every Runtime/Extensions API call, so tests can see e.g. that a runtime polled again."""
        with self._lock:
            self.api_calls.append((method, path))

    def runtime_next(self) -> wire.Reply | None:
        """`GET /next`: block until an invocation is queued; None means "close the connection"."""
        epoch = self._book.epoch
        self._book.note_poll()
        refusal = self.faults.take_next_refusal()
        if refusal is not None:
            return refusal
        gen = self._generation(epoch)
        with self._lock:
            if gen.init_done_at is None:
                gen.init_done_at = time.monotonic()
        inv = self._book.take_next(epoch)
        if inv is None:
            return None
        headers = self._invoke_headers(inv)
        fault = self.faults.take_delivery_fault()
        if fault is not None:
            self._book.requeue(inv)  # never reached the runtime: the next `/next` delivers it
            if fault is DeliveryFault.OMIT_REQUEST_ID:
                del headers[wire.H_REQUEST_ID]
                return wire.Reply(200, inv.event, headers=headers)
            return wire.Reply(200, inv.event, headers=headers, truncate_at=len(inv.event) // 2)
        deadline_ms = int(headers[wire.H_DEADLINE_MS])
        self._book.mark_dispatched(inv, deadline_ms)
        if self._book.claim_start(inv):
            self._log.emit(format_start(inv.request_id))
        self.extensions.publish(
            INVOKE,
            {
                "deadlineMs": deadline_ms,
                "requestId": inv.request_id,
                "invokedFunctionArn": self.config.arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": inv.trace_id},
            },
        )
        return wire.Reply(200, inv.event, headers=headers)

    def _invoke_headers(self, inv: Invocation) -> dict[str, str]:
        deadline_ms = int((self._clock() + self.config.timeout_s) * 1000)
        headers = {
            wire.H_REQUEST_ID: inv.request_id,
            wire.H_DEADLINE_MS: str(deadline_ms),
            wire.H_FUNCTION_ARN: self.config.arn,
            wire.H_TRACE_ID: inv.trace_id,
        }
        optional = {
            wire.H_CLIENT_CONTEXT: inv.client_context,
            wire.H_COGNITO_IDENTITY: inv.cognito_identity,
            wire.H_TENANT_ID: inv.tenant_id,
        }
        headers.update({name: value for name, value in optional.items() if value})
        return headers

    def _record(
        self, kind: str, request_id: str | None, *, status: int, headers: Mapping[str, str], body: bytes, size: int
    ) -> None:
        record = PostRecord(kind, request_id, status, tuple(headers.items()), body, size)
        with self._lock:
            self.posts.append(record)
            if kind != "response":
                self.last_error_type_header = _header(headers, wire.H_ERROR_TYPE)

    def runtime_answer(
        self, kind: str, request_id: str, headers: Mapping[str, str], body: bytes, size: int
    ) -> wire.Reply:
        """`POST /{id}/response` or `/{id}/error` with a fully read body of `size` bytes."""
        reply = self._judge_answer(kind, request_id, headers, size)
        if reply is None:
            reply = self._settle_answer(kind, request_id, headers, body)
        kept = body if size <= wire.MAX_PAYLOAD_BYTES else b""
        self._record(kind, request_id, status=reply.status, headers=headers, body=kept, size=size)
        return reply

    def _judge_answer(self, kind: str, request_id: str, headers: Mapping[str, str], size: int) -> wire.Reply | None:
        """A refusal for this answer, or None when it may settle its invocation."""
        refusal = self.faults.take_post_refusal()
        if refusal is not None:
            return refusal
        verdict, _ = self._book.verdict(request_id)
        if verdict is Verdict.UNKNOWN:
            return wire.Reply(400, wire.INVALID_REQUEST_ID_BODY)
        if verdict is Verdict.ANSWERED:
            return wire.Reply(403, wire.invalid_state_body(f"Invocation {request_id} was already answered"))
        mode = _header(headers, wire.H_RESPONSE_MODE)
        if kind == "response" and mode is not None and mode.lower() != "streaming":
            body = wire.error_body("Runtime.InvalidResponseModeHeader", f"Invalid response mode: {mode}")
            return wire.Reply(400, body)
        if kind == "response" and size > wire.MAX_PAYLOAD_BYTES:
            return wire.Reply(413, wire.TOO_LARGE_BODY)  # the id stays open: an /error may follow
        return None

    def _settle_answer(self, kind: str, request_id: str, headers: Mapping[str, str], body: bytes) -> wire.Reply:
        inv = self._book.lookup(request_id)
        assert inv is not None
        content_type = _header(headers, "Content-Type") or wire.JSON
        if kind == "response":
            outcome = Outcome(OutcomeKind.RESPONSE, body, content_type)
        else:
            error_type = wire.normalise_error_type(_header(headers, wire.H_ERROR_TYPE))
            outcome = Outcome(OutcomeKind.ERROR, body, content_type, UNHANDLED, error_type)
        if not self._settle(inv, outcome, []):
            return wire.Reply(403, wire.invalid_state_body(f"Invocation {request_id} was already answered"))
        return wire.ACCEPTED

    def runtime_stream(
        self,
        request_id: str,
        headers: Mapping[str, str],
        chunks: Iterator[bytes],
        trailers: Callable[[], Mapping[str, str]],
    ) -> wire.Reply:
        """`POST /{id}/response` in streaming mode: relay chunks to the invoker as they arrive."""
        reply = self._judge_answer("response", request_id, headers, 0)
        inv = self._book.lookup(request_id)
        if reply is not None or inv is None:
            size = sum(len(chunk) for chunk in chunks)  # read everything before refusing: no EPIPE
            refusal = reply or wire.Reply(400, wire.INVALID_REQUEST_ID_BODY)
            self._record("response", request_id, status=refusal.status, headers=headers, body=b"", size=size)
            return refusal
        relay = StreamRelay(_header(headers, "Content-Type") or "application/octet-stream")
        self._book.start_stream(inv, relay)
        try:
            for chunk in chunks:
                relay.put(chunk)
        except (OSError, ValueError):
            relay.end("Runtime.TruncatedResponse", None)
            raise
        ends = trailers()
        error_type = _header(ends, wire.H_ERROR_TYPE)
        error_body = _header(ends, wire.H_ERROR_BODY)
        relay.end(error_type, error_body)
        if error_type:
            outcome = Outcome(
                OutcomeKind.ERROR,
                _decode_base64(error_body),
                wire.JSON,
                UNHANDLED,
                wire.normalise_error_type(error_type),
            )
        else:
            outcome = Outcome(OutcomeKind.RESPONSE, b"", relay.content_type)
        settled = self._settle(inv, outcome, [])
        status = 202 if settled else 403
        self._record(
            "response", request_id, status=status, headers={**headers, **ends}, body=b"", size=relay.bytes_relayed
        )
        if not settled:
            return wire.Reply(403, wire.invalid_state_body(f"Invocation {request_id} was already answered"))
        return wire.ACCEPTED

    def restore_next(self) -> wire.Reply | None:
        """`GET /restore/next` (SnapStart): the runtime is ready for the snapshot; answer once it is "restored",
        i.e. when `restore_gate` is set (at once, unless a test holds it). None: close the connection."""
        if not self.config.snapstart:  # as RIE: the route exists only for functions initialised for SnapStart
            return wire.Reply(404, wire.error_body("NotFound", "restore/next is only served with SnapStart"))
        gen = self._current_generation()
        with self._lock:
            gen.snapshot_at = time.monotonic()
        while not self.restore_gate.wait(0.05):
            if self._book.closed or gen.exited:
                return None
        with self._lock:
            gen.restored_at = time.monotonic()
        return wire.Reply(200, b"")

    def restore_error(self, headers: Mapping[str, str], body: bytes, size: int) -> wire.Reply:
        """`POST /restore/error` (SnapStart): an after-restore hook failed; it answers the invoke as an init error."""
        if not self.config.snapstart:
            return wire.Reply(404, wire.error_body("NotFound", "restore/error is only served with SnapStart"))
        return self.init_error(headers, body, size, kind="restore_error")

    def init_error(
        self, headers: Mapping[str, str], body: bytes, size: int, kind: str = "init_error"
    ) -> wire.Reply:
        """`POST /init/error`: the error answers the pending (or next) invoke; the runtime is then replaced."""
        reply = self._judge_init_error()
        if reply is None:
            gen = self._current_generation()
            content_type = _header(headers, "Content-Type") or wire.JSON
            error_type = wire.normalise_error_type(_header(headers, wire.H_ERROR_TYPE))
            outcome = Outcome(OutcomeKind.INIT_ERROR, body, content_type, UNHANDLED, error_type)
            with self._lock:
                gen.init_failed = True
                if gen.init_done_at is None:
                    gen.init_done_at = time.monotonic()
            inv = self._book.current
            waiting = inv is not None and inv.generation == gen.number and inv.dispatched_at is None
            if not (waiting and inv is not None and self._settle(inv, outcome, [])):
                with self._lock:
                    gen.stored_init_error = outcome
            reply = wire.ACCEPTED
        self._record(kind, None, status=reply.status, headers=headers, body=body, size=size)
        return reply

    def _judge_init_error(self) -> wire.Reply | None:
        refusal = self.faults.take_post_refusal()
        if refusal is not None:
            return refusal
        gen = self._current_generation()
        inv = self._book.current
        served = inv is not None and inv.generation == gen.number and inv.dispatched_at is not None
        if gen.init_failed or served:
            return wire.Reply(403, wire.invalid_state_body("Init error is only allowed once, before the first /next"))
        return None

    # --- Extensions API ---------------------------------------------------------------------------------
    def extension_register(self, headers: Mapping[str, str], body: bytes) -> wire.Reply:
        """`POST /extension/register`: remember the extension; SIGTERM will now precede SIGKILL at shutdown."""
        name = _header(headers, wire.H_EXTENSION_NAME)
        try:
            events = json.loads(body or b"{}").get("events", [])
        except (ValueError, AttributeError):
            return wire.Reply(400, wire.error_body("InvalidRequest", 'Body must be {"events": [...]}'))
        if not name or not isinstance(events, list):
            return wire.Reply(403, wire.error_body("Extension.RegistrationError", "Missing Lambda-Extension-Name"))
        identifier = self.extensions.register(name, [str(event) for event in events])
        payload = {
            "functionName": self.config.function_name,
            "functionVersion": wire.FUNCTION_VERSION,
            "handler": self.config.handler,
        }
        return wire.Reply(200, json.dumps(payload).encode(), headers={wire.H_EXTENSION_ID: identifier})

    def extension_next(self, headers: Mapping[str, str]) -> wire.Reply | None:
        """`GET /extension/event/next`: long-poll for the extension's next INVOKE or SHUTDOWN event."""
        identifier = _header(headers, wire.H_EXTENSION_ID)
        if not identifier:
            return wire.Reply(403, wire.error_body("Extension.MissingExtensionIdentifier", "Missing identifier"))
        try:
            event = self.extensions.next_event(identifier)
        except UnknownExtensionError:
            return wire.Reply(403, wire.error_body("Extension.UnknownExtensionIdentifier", "Unknown identifier"))
        if event is None:
            return None
        return wire.Reply(200, event, headers={wire.H_EXTENSION_EVENT_ID: wire.new_request_id()})

    # --- Invoke API -------------------------------------------------------------------------------------
    def invoke(self, request: InvokeRequest, sink: InvokeSink) -> None:
        """Serve one invoke, in arrival order, answering through `sink`.

        The invoker gets its answer as soon as the runtime posts it; END and REPORT follow when the runtime
        is back at `/next` (Lambda's "runtime done"), so logs flushed after the response still fall inside
        START..END, and a runtime that does not come back before the deadline is timed out and replaced.
        """
        with self._turn:
            if self._book.closed:
                sink.reply(wire.Reply(503, wire.error_body("ServiceException", "The emulator is stopping")))
                return
            inv = Invocation(
                request_id=wire.new_request_id(),
                event=request.event,
                trace_id=wire.new_trace_id(self._clock()),
                generation=0,
                client_context=request.client_context,
                cognito_identity=request.cognito_identity,
                tenant_id=request.tenant_id,
            )
            try:
                inv.generation = self._ensure_runtime()
            except OSError as exc:
                self._book.submit(inv)
                self._fail_to_start(inv, exc)
            else:
                self._book.submit(inv)
                self._run(inv, sink)
            if inv.outcome is None:  # the emulator stopped underneath this invocation
                message, body = _exit_body(inv.request_id, -9)
                outcome = Outcome(OutcomeKind.EXIT, body, wire.JSON, UNHANDLED, "Runtime.ExitError")
                self._settle(inv, outcome, [message])
            if inv.stream is None:
                with contextlib.suppress(OSError):  # an invoker that left changes nothing for the runtime
                    sink.reply(self._answer(inv))
            self._await_runtime_done(inv)
            self._report(inv)

    def _await_runtime_done(self, inv: Invocation) -> None:
        """Wait until the runtime that answered `inv` polls `/next` again, at the latest until the deadline."""
        outcome = inv.outcome
        if (
            inv.dispatched_at is None
            or outcome is None
            or outcome.kind not in (OutcomeKind.RESPONSE, OutcomeKind.ERROR)
        ):
            return
        gen = self._generation(inv.generation)
        deadline = inv.dispatched_at + self.config.timeout_s
        remaining = max(0.0, deadline - time.monotonic())
        concurrent = self.config.max_concurrency > 1
        back = self._book.back_at_next
        if self._book.wait_for(lambda: back(inv, concurrent) or gen.exited, remaining) or self._book.closed:
            return
        message = format_timeout(wire.rfc3339_now(self._clock()), inv.request_id, self.config.timeout_s)
        self._log.emit(message)
        rp = self.supervisor.current if self.supervisor is not None else None
        if rp is not None and rp.generation == inv.generation and self.supervisor is not None:
            self.supervisor.kill(rp)

    def _fail_to_start(self, inv: Invocation, exc: OSError) -> None:
        message = f"RequestId: {inv.request_id} Error: {exc}"
        body = json.dumps({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": message}, separators=(",", ":"))
        outcome = Outcome(OutcomeKind.EXIT, body.encode(), wire.JSON, UNHANDLED, "Runtime.InvalidEntrypoint")
        self._settle(inv, outcome, [message, "Runtime.InvalidEntrypoint"])

    def _run(self, inv: Invocation, sink: InvokeSink) -> None:
        gen = self._generation(inv.generation)
        with self._lock:
            stored, gen.stored_init_error = gen.stored_init_error, None
        if stored is not None:
            self._settle(inv, Outcome(stored.kind, stored.body, stored.content_type, UNHANDLED, stored.error_type), [])
            return
        taken = self._book.wait_for(
            lambda: inv.dispatched_at is not None or inv.outcome is not None, self.config.init_timeout_s
        )
        if inv.outcome is not None or self._book.closed:
            return
        if not taken:
            self._time_out(inv)
            return
        assert inv.dispatched_at is not None
        deadline = inv.dispatched_at + self.config.timeout_s
        answered = self._book.wait_for(
            lambda: inv.outcome is not None or inv.stream is not None, max(0.0, deadline - time.monotonic())
        )
        if inv.stream is not None:
            self._relay(inv, inv.stream, sink, deadline)
        elif not answered and not self._book.closed:
            self._time_out(inv)

    def _relay(self, inv: Invocation, relay: StreamRelay, sink: InvokeSink, deadline: float) -> None:
        """Copy a streamed answer to the invoker until it ends, the deadline passes or the invoker leaves."""
        head = {wire.H_AMZ_REQUEST_ID: inv.request_id, wire.H_AMZ_EXECUTED_VERSION: wire.FUNCTION_VERSION}
        sink.begin(relay.content_type, head)
        invoker_gone = False
        while True:
            try:
                chunk = relay.next_chunk(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                relay.abandon()
                self._time_out(inv)
                break
            if chunk is None:
                break
            try:
                sink.write(chunk)
            except OSError:
                relay.abandon()
                invoker_gone = True
                break
        ended = self._book.wait_for(lambda: inv.outcome is not None, max(0.0, deadline - time.monotonic()))
        if not ended and not self._book.closed:
            self._time_out(inv)
        if invoker_gone:
            return
        outcome = inv.outcome
        trailers: dict[str, str] = {}
        if outcome is not None and outcome.function_error:
            trailers[wire.H_AMZ_FUNCTION_ERROR] = outcome.function_error
            trailers[wire.H_ERROR_TYPE] = outcome.error_type or "Runtime.Unknown"
            trailers[wire.H_ERROR_BODY] = base64.b64encode(outcome.body).decode()
        try:
            sink.end(trailers)
        except OSError:
            return

    def _time_out(self, inv: Invocation) -> None:
        """The deadline passed: answer with Lambda's timeout message, then SIGKILL the runtime."""
        rp = self.supervisor.current if self.supervisor is not None else None
        if rp is not None and rp.generation == inv.generation:
            rp.sample_memory()
        message = format_timeout(wire.rfc3339_now(self._clock()), inv.request_id, self.config.timeout_s)
        body = json.dumps({"errorMessage": message}).encode()
        settled = self._settle(
            inv, Outcome(OutcomeKind.TIMEOUT, body, wire.JSON, UNHANDLED, "Sandbox.Timeout"), [message]
        )
        if settled and rp is not None and rp.generation == inv.generation and self.supervisor is not None:
            self.supervisor.kill(rp)

    def _settle(self, inv: Invocation, outcome: Outcome, lines: list[str]) -> bool:
        """Settle `inv` once; the winner prints START (if the runtime never got it) and its own lines."""
        if not self._book.settle(inv, outcome):
            return False
        if self._book.claim_start(inv):
            self._log.emit(format_start(inv.request_id))
        for line in lines:
            self._log.emit(line)
        return True

    def _report(self, inv: Invocation) -> None:
        """END and REPORT, with Init Duration only on the first invocation of a runtime generation."""
        outcome = inv.outcome
        assert outcome is not None
        duration_ms = max(0.0, (outcome.finished_at - inv.started_at) * 1000.0)
        gen = self._generation(inv.generation)
        with self._lock:
            init_ms = None if gen.init_reported else gen.init_duration_ms
            gen.init_reported = True
        memory = 0
        if self.supervisor is not None:
            rp = self.supervisor.current
            if rp is not None and rp.generation == inv.generation:
                memory = rp.sample_memory()
        self._log.emit(format_end(inv.request_id))
        self._log.emit(format_report(inv.request_id, duration_ms, self.config.memory_mb, memory, init_ms))

    def _answer(self, inv: Invocation) -> wire.Reply:
        outcome = inv.outcome
        assert outcome is not None
        headers = {wire.H_AMZ_REQUEST_ID: inv.request_id, wire.H_AMZ_EXECUTED_VERSION: wire.FUNCTION_VERSION}
        if outcome.function_error:
            headers[wire.H_AMZ_FUNCTION_ERROR] = outcome.function_error
        return wire.Reply(200, outcome.body, outcome.content_type, headers)

    def outcome_of(self, request_id: str) -> Outcome | None:
        """How a dispatched invocation ended (None while running or unknown)."""
        inv = self._book.lookup(request_id)
        return None if inv is None else inv.outcome

    def close(self, drain_s: float = 2.0) -> None:
        """Stop serving: release every waiter, then give in-flight invokes a moment to send their answers."""
        self._book.close()
        self._turn.wait_idle(drain_s)

    @property
    def book(self) -> InvocationBook:
        """The invocation bookkeeping (the emulator closes it at stop)."""
        return self._book


def _decode_base64(text: str | None) -> bytes:
    if not text:
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


def decode_client_context(header: str | None) -> str | None:
    """`X-Amz-Client-Context` is base64 JSON on the Invoke API and plain JSON on `/next`; ValueError if invalid."""
    if not header:
        return None
    try:
        decoded = base64.b64decode(header, validate=True).decode()
        json.loads(decoded)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Client context must be a valid Base64-encoded JSON object.") from exc
    return decoded
