"""The invocation loop: `/next` → dispatch → post → `after_each` (the telemetry flush) → `/next`.

It knows only the client, the dispatch function and the after-each hook. Bad events and bad handlers never stop
it (dispatch turns them into `Failure`s); a broken Runtime API does: `RuntimeApiError` propagates and the process
exits, because the platform then replaces the environment. A `Streamed` outcome is sent while it is produced:
the POST opens with the first chunk, a failure before it goes to `/error`, one after it into the trailers.
The loop holds no per-invocation state outside its own frame, so `runtime.concurrency` runs several of them.
Imports: stdlib, `runtime.*`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, MutableMapping
from contextlib import AbstractContextManager, nullcontext

from runtime.api_client import PostOutcome, PostResult, RuntimeApiClient, StreamingResponse
from runtime.dispatch import Failure, Next, Outcome, Streamed, Success
from runtime.errors import RuntimeApiError, report_from
from runtime.model import ErrorReport, Invocation, response_too_large

AfterEach = Callable[[Invocation, Outcome], None]
TRACE_ENV = "_X_AMZN_TRACE_ID"
_ERROR_MESSAGE_CAP = 256 * 1024

log = logging.getLogger("flightrec.runtime")


def _no_op(invocation: Invocation, outcome: Outcome) -> None:
    del invocation, outcome


def _warn_rejected(what: str, invocation: Invocation, outcome: PostOutcome) -> None:
    log.error(
        "the Runtime API rejected the %s for request %s with HTTP %d: %s; moving on to the next invocation",
        what, invocation.request_id, outcome.status, outcome.body[:300].decode("utf-8", "replace"),
    )


def _post_error(client: RuntimeApiClient, invocation: Invocation, report: ErrorReport) -> None:
    outcome = client.post_error(report)
    if outcome.result is PostResult.TOO_LARGE:
        # A gigantic message or stack: send the type and the start of the message, which always fits.
        report = ErrorReport(
            error_type=report.error_type,
            error_message=report.error_message[:_ERROR_MESSAGE_CAP],
            stack_trace=[],
            request_id=report.request_id,
            header_type=report.header_type,
        )
        outcome = client.post_error(report)
    if outcome.result is not PostResult.ACCEPTED:
        _warn_rejected("error", invocation, outcome)


class _LazyStream:
    """The `ChunkSink` a `Streamed` outcome writes to: the POST opens with the first chunk (so a handler that fails
    before it is answered through `/error`), and a broken connection is remembered even if user code swallowed
    the `RuntimeApiError` that `write` raised into it."""

    __slots__ = ("_client", "_request_id", "error", "response")

    def __init__(self, client: RuntimeApiClient, request_id: str) -> None:
        self._client = client
        self._request_id = request_id
        self.response: StreamingResponse | None = None
        self.error: RuntimeApiError | None = None

    def open(self, content_type: str) -> None:
        try:
            self.response = self._client.post_stream(self._request_id, content_type)
        except RuntimeApiError as exc:
            self.error = exc
            raise

    def write(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        assert self.response is not None
        try:
            self.response.write(chunk)
        except RuntimeApiError as exc:
            self.error = exc
            raise


def _answer_streamed(client: RuntimeApiClient, invocation: Invocation, outcome: Streamed) -> Outcome:
    sink = _LazyStream(client, invocation.request_id)
    try:
        failure = outcome.run(sink)
    except RuntimeApiError:
        raise
    except Exception as exc:  # `run` turns handler errors into Failures; this is for a broken middleware
        failure = Failure(report_from(exc, invocation.request_id))
    if sink.error is not None:
        raise sink.error
    if sink.response is None:
        if failure is not None:
            _post_error(client, invocation, failure.report)
            return failure
        sink.open("application/octet-stream")
        assert sink.response is not None
    posted = sink.response.finish(failure.report if failure is not None else None)
    if posted.result is not PostResult.ACCEPTED:
        _warn_rejected("streamed response", invocation, posted)
    return failure if failure is not None else outcome


def answer(client: RuntimeApiClient, invocation: Invocation, outcome: Outcome) -> Outcome:
    """Post the outcome; returns what was finally reported (a 413 turns a success into a failure)."""
    if isinstance(outcome, Success):
        posted = client.post_response(invocation.request_id, outcome.body, outcome.content_type)
        if posted.result is PostResult.ACCEPTED:
            return outcome
        if posted.result is PostResult.REJECTED:
            _warn_rejected("response", invocation, posted)
            return outcome
        outcome = Failure(response_too_large(invocation.request_id, len(outcome.body)))
    elif isinstance(outcome, Streamed):
        return _answer_streamed(client, invocation, outcome)
    _post_error(client, invocation, outcome.report)
    return outcome


def run(
    client: RuntimeApiClient,
    dispatch: Next,
    after_each: AfterEach = _no_op,
    environ: MutableMapping[str, str] | None = None,
    user_code: AbstractContextManager[None] | None = None,
) -> int:
    """Serve invocations until a handler exits the process; returns that exit code.

    `environ` receives `_X_AMZN_TRACE_ID` (the platform contract for X-Ray SDKs); pass `None` to leave the
    process environment alone, as concurrent mode must. `user_code` is held from the event's arrival until
    its answer is posted (`runtime.usercode.USER_CODE`: background threads do not import meanwhile).
    """
    gate: AbstractContextManager[None] = user_code if user_code is not None else nullcontext()
    while True:
        invocation = client.next()
        if not invocation.request_id:
            log.error(
                "the Runtime API sent an invocation without a Lambda-Runtime-Aws-Request-Id header "
                "(%d bytes of event); it cannot be answered and is skipped", len(invocation.body),
            )
            continue
        if environ is not None:
            if invocation.trace_id and "\0" not in invocation.trace_id:  # a NUL cannot go into the environment
                environ[TRACE_ENV] = invocation.trace_id
            else:
                environ.pop(TRACE_ENV, None)
        with gate:
            outcome = answer(client, invocation, dispatch(invocation))
        after_each(invocation, outcome)
        if isinstance(outcome, Failure) and outcome.exit_code is not None:
            return outcome.exit_code


class _TraceIdEnviron:
    """Writes `_X_AMZN_TRACE_ID` into `os.environ` without `setenv(3)`.

    glibc never frees the value `setenv` replaces, so writing a new trace id per invocation leaks ~150 bytes each
    time (140 MiB per million invocations; measured by the soak test — awslambdaric has the same leak). X-Ray
    and OpenTelemetry SDKs read `os.environ`, so updating CPython's mapping is what they see; a subprocess started
    with the inherited C environment does not get the per-invocation value.
    """

    def __init__(self, environ: os._Environ[str]) -> None:
        self._environ = environ
        self._data = environ._data  # type: ignore[attr-defined]

    def __setitem__(self, key: str, value: str) -> None:
        self._data[self._environ.encodekey(key)] = self._environ.encodevalue(value)

    def pop(self, key: str, default: str | None = None) -> str | None:
        raw = self._data.pop(self._environ.encodekey(key), None)
        return self._environ.decodevalue(raw) if raw is not None else default


def process_environ() -> MutableMapping[str, str]:
    """The process environment, for the single-concurrency trace-id contract (named so the write is visible)."""
    if hasattr(os.environ, "_data") and hasattr(os.environ, "encodekey"):
        return _TraceIdEnviron(os.environ)  # type: ignore[return-value]
    return os.environ
