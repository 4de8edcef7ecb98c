"""One invocation, from `Invocation` to `Outcome`: build the context, decode, call the handler, encode.

Every exception becomes a `Failure`, so nothing a handler or an event does can cross into the loop.
Middlewares wrap the core (`Middleware = Callable[[Next], Next]`), so telemetry is added from outside and the
core stays ignorant of it. A streaming handler (see `runtime.streaming`) yields a `Streamed` outcome: the
handler runs later, while the loop sends its chunks, inside `Streamed.run`; a middleware that must cover the
whole stream (log context, span, report) returns a `Streamed` whose `run` wraps the inner one.
Imports: stdlib, `runtime.*`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from runtime.config import RuntimeConfig
from runtime.context import Clock, LambdaContext
from runtime.errors import ExitError, LambdaContextUnmarshalError, RuntimeApiError, report_from
from runtime.model import ErrorReport, Invocation
from runtime.streaming import ChunkSink, ResponseStream, StreamKind, produce, streaming_kind
from runtime.typed import codec_for


class Success(NamedTuple):
    body: bytes
    content_type: str


class Failure(NamedTuple):
    """`exit_code` is set when the handler called `sys.exit`: the loop answers, flushes, then exits with it."""

    report: ErrorReport
    exit_code: int | None = None


class Streamed(NamedTuple):
    """A streaming handler's response, produced while it is sent: the loop calls `run(sink)` once, which runs the
    handler, writing each chunk to `sink` as it comes, and returns None when the stream completed or the
    `Failure` it ended with. The loop posts a failure before the first byte to `/error`, after it in the
    trailers. `run` never raises, except `RuntimeApiError` when the sink (the Runtime API) broke."""

    run: Callable[[ChunkSink], Failure | None]


Outcome = Success | Failure | Streamed
Next = Callable[[Invocation], Outcome]
Middleware = Callable[[Next], Next]


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def _exit_failure(invocation: Invocation, exc: SystemExit) -> Failure:
    code = _exit_code(exc)
    fault = ExitError(f"RequestId: {invocation.request_id} Error: Runtime exited with error: exit status {code}")
    return Failure(report_from(fault, invocation.request_id), exit_code=code)


def make_dispatch(
    handler: Callable[..., Any],
    config: RuntimeConfig,
    middlewares: Sequence[Middleware] = (),
    clock: Clock = time.time,
) -> Next:
    """Build the per-invocation function once; the first middleware is the outermost."""
    codec = codec_for(handler)
    decode, encode = codec.decode, codec.encode
    kind = streaming_kind(handler)
    if kind is not None:
        return _wrap(_streaming_core(handler, kind, decode, config, clock), middlewares)

    def core(invocation: Invocation) -> Outcome:
        try:
            event, context = _prepare(invocation, decode, config, clock)
            body, content_type = encode(handler(event, context))
            return Success(body, content_type)
        except SystemExit as exc:
            return _exit_failure(invocation, exc)
        except Exception as exc:
            return Failure(report_from(exc, invocation.request_id))

    return _wrap(core, middlewares)


def _prepare(
    invocation: Invocation, decode: Callable[[bytes, str | None], Any], config: RuntimeConfig, clock: Clock
) -> tuple[Any, LambdaContext]:
    """The handler's two arguments; raises the error the invocation then fails with (bad headers, bad event)."""
    if invocation.malformed_headers:
        raise LambdaContextUnmarshalError(
            f"Unable to parse headers {', '.join(invocation.malformed_headers)} of the invocation"
        )
    context = LambdaContext(invocation, config, clock)
    return decode(invocation.body, invocation.content_type), context


def _wrap(core: Next, middlewares: Sequence[Middleware]) -> Next:
    dispatch = core
    for middleware in reversed(middlewares):
        dispatch = middleware(dispatch)
    return dispatch


def _streaming_core(
    handler: Callable[..., Any], kind: StreamKind, decode: Callable[[bytes, str | None], Any], config: RuntimeConfig,
    clock: Clock,
) -> Next:
    """The core for a streaming handler: the context and the event are prepared now (their failures are ordinary
    `Failure`s), the handler runs inside `Streamed.run`."""

    def core(invocation: Invocation) -> Outcome:
        try:
            event, context = _prepare(invocation, decode, config, clock)
        except Exception as exc:
            return Failure(report_from(exc, invocation.request_id))

        def run(sink: ChunkSink) -> Failure | None:
            try:
                produce(kind, handler, event, context, ResponseStream(sink))
            except RuntimeApiError:
                raise  # the Runtime API broke under the stream: the process exits, as for any post
            except SystemExit as exc:
                return _exit_failure(invocation, exc)
            except Exception as exc:
                return Failure(report_from(exc, invocation.request_id))
            return None

        return Streamed(run)

    return core
