"""One invocation, from `Invocation` to `Outcome`: build the context, decode, call the handler, encode.

Every exception becomes a `Failure`, so nothing a handler or an event does can cross into the loop.
Middlewares wrap the core (`Middleware = Callable[[Next], Next]`), so telemetry is added from outside and the
core stays ignorant of it. Imports: stdlib, `runtime.*`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.config import RuntimeConfig
from runtime.context import Clock, LambdaContext
from runtime.errors import ExitError, LambdaContextUnmarshalError, report_from
from runtime.model import ErrorReport, Invocation
from runtime.typed import codec_for


@dataclass(frozen=True, slots=True)
class Success:
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Failure:
    """`exit_code` is set when the handler called `sys.exit`: the loop answers, flushes, then exits with it."""

    report: ErrorReport
    exit_code: int | None = None


Outcome = Success | Failure
Next = Callable[[Invocation], Outcome]
Middleware = Callable[[Next], Next]


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def make_dispatch(
    handler: Callable[..., Any],
    config: RuntimeConfig,
    middlewares: Sequence[Middleware] = (),
    clock: Clock = time.time,
) -> Next:
    """Build the per-invocation function once; the first middleware is the outermost."""
    codec = codec_for(handler)
    decode, encode = codec.decode, codec.encode

    def core(invocation: Invocation) -> Outcome:
        try:
            if invocation.malformed_headers:
                raise LambdaContextUnmarshalError(
                    f"Unable to parse headers {', '.join(invocation.malformed_headers)} of the invocation"
                )
            context = LambdaContext(invocation, config, clock)
            event = decode(invocation.body, invocation.content_type)
            body, content_type = encode(handler(event, context))
            return Success(body, content_type)
        except SystemExit as exc:
            code = _exit_code(exc)
            fault = ExitError(
                f"RequestId: {invocation.request_id} Error: Runtime exited with error: exit status {code}"
            )
            return Failure(report_from(fault, invocation.request_id), exit_code=code)
        except Exception as exc:
            return Failure(report_from(exc, invocation.request_id))

    dispatch: Next = core
    for middleware in reversed(middlewares):
        dispatch = middleware(dispatch)
    return dispatch
