"""Response streaming: which handlers stream, the writer they get, and how their chunks reach the Runtime API.

A handler streams when it is a generator function (sync or async) that yields `bytes`/`str` chunks, or when it
takes a required third parameter, the `ResponseStream` writer (`def handler(event, context, stream)`, sync or
async). Both are decided once, at init, from the function's code flags and argument count — no decorator to
import, so a user module needs nothing from this runtime, and no `inspect` import on the cold path.

A `dict` written (or yielded) before any bytes is the HTTP prelude of a function URL or API Gateway streaming
response (`{"statusCode", "headers", "cookies"}`): the content type becomes
`application/vnd.awslambda.http-integration-response` and the prelude travels as JSON plus 8 NUL bytes ahead of the
body. Nothing is buffered: each chunk is handed to the `ChunkSink` (the loop's chunked POST) as it is produced,
and the POST itself opens only with the first chunk, so a handler that fails before its first byte is answered
through `/error` as usual.
Imports: stdlib (`asyncio` lazily, for async handlers only).
"""

from __future__ import annotations

import contextvars
import enum
import json
import threading
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
PRELUDE_SEPARATOR = b"\0" * 8

# Code-object flags (`inspect.CO_*`), spelled out so that deciding a handler's kind does not import `inspect`.
_CO_COROUTINE = 0x80
_CO_GENERATOR = 0x20
_CO_ASYNC_GENERATOR = 0x200


class ChunkSink(Protocol):
    """Where a stream's bytes go: `open` once with the content type, then `write` per chunk (never empty)."""

    def open(self, content_type: str) -> None: ...

    def write(self, chunk: bytes) -> None: ...


class StreamKind(enum.Enum):
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async generator"
    WRITER = "writer"
    ASYNC_WRITER = "async writer"


def streaming_kind(handler: Callable[..., Any]) -> StreamKind | None:
    """How `handler` streams, or None for a plain (buffered) handler. Functions and bound methods only: other
    callables (instances with `__call__`, partials) are plain."""
    func: object = handler
    skipped = 0
    if isinstance(handler, types.MethodType):
        func, skipped = handler.__func__, 1
    if not isinstance(func, types.FunctionType):
        return None
    code = func.__code__
    if code.co_flags & _CO_ASYNC_GENERATOR:
        return StreamKind.ASYNC_GENERATOR
    if code.co_flags & _CO_GENERATOR:
        return StreamKind.GENERATOR
    required = code.co_argcount - skipped - len(func.__defaults__ or ())
    if required >= 3:
        return StreamKind.ASYNC_WRITER if code.co_flags & _CO_COROUTINE else StreamKind.WRITER
    return None


class ResponseStream:
    """The writer a streaming handler writes to (`write(bytes | str)`); each write is sent at once, as one chunk.

    Set `content_type` (default `application/octet-stream`) or call `set_http_prelude(...)` before the first
    write; a `dict` as the first write is the same as `set_http_prelude(**that_dict)`.
    """

    __slots__ = ("_content_type", "_opened", "_prelude", "_sink")

    def __init__(self, sink: ChunkSink) -> None:
        self._sink = sink
        self._content_type = DEFAULT_CONTENT_TYPE
        self._prelude: bytes | None = None
        self._opened = False

    @property
    def content_type(self) -> str:
        return self._content_type

    @content_type.setter
    def content_type(self, value: str) -> None:
        self._not_started("content_type")
        self._content_type = value

    @property
    def started(self) -> bool:
        """True once the first bytes went out (from then on an error can only travel in the trailers)."""
        return self._opened

    def set_http_prelude(
        self,
        statusCode: int = 200,  # the wire name, so that a prelude dict can be passed with **
        headers: dict[str, str] | None = None,
        cookies: list[str] | None = None,
        **more: Any,
    ) -> None:
        """Answer a function URL (or API Gateway streaming integration) with this status, headers and cookies."""
        self._not_started("the HTTP prelude")
        prelude: dict[str, Any] = {"statusCode": statusCode, **more}
        if headers is not None:
            prelude["headers"] = headers
        if cookies is not None:
            prelude["cookies"] = cookies
        self._prelude = json.dumps(prelude, separators=(",", ":")).encode() + PRELUDE_SEPARATOR
        self._content_type = HTTP_INTEGRATION_CONTENT_TYPE

    def write(self, data: bytes | bytearray | memoryview | str | dict[str, Any]) -> None:
        if isinstance(data, bytes):
            chunk = data
        elif isinstance(data, str):
            chunk = data.encode()
        elif isinstance(data, bytearray | memoryview):
            chunk = bytes(data)
        elif isinstance(data, dict) and not self._opened and self._prelude is None:
            self.set_http_prelude(**data)
            return
        else:
            raise TypeError(
                f"a streamed chunk must be bytes or str, not {type(data).__name__} (a dict is accepted once, "
                "before any bytes, as the HTTP prelude)"
            )
        if not chunk:
            return  # an empty chunk would end the chunked body
        if not self._opened:
            self._open()
            if self._prelude is not None:
                chunk = self._prelude + chunk
        self._sink.write(chunk)

    def flush(self) -> None:
        """Nothing is buffered; present so the stream can stand in for a file (`print(..., file=stream)`)."""

    def close(self) -> None:
        """End of the handler: a stream that sent nothing still opens (an empty body, or just the prelude)."""
        if not self._opened:
            self._open()
            if self._prelude is not None:
                self._sink.write(self._prelude)

    def _open(self) -> None:
        self._opened = True
        self._sink.open(self._content_type)

    def _not_started(self, what: str) -> None:
        if self._opened:
            raise RuntimeError(f"{what} cannot change once the response has started")


def produce(kind: StreamKind, handler: Callable[..., Any], event: Any, context: Any, stream: ResponseStream) -> None:
    """Run a streaming handler to its end, sending what it produces through `stream`; its exceptions propagate."""
    if kind is StreamKind.GENERATOR:
        chunks: Iterator[Any] = handler(event, context)
        for item in chunks:
            stream.write(item)
    elif kind is StreamKind.WRITER:
        handler(event, context, stream)
    elif kind is StreamKind.ASYNC_GENERATOR:
        _run_async(_drain(handler(event, context), stream))
    else:
        _run_async(handler(event, context, stream))
    stream.close()


async def _drain(chunks: AsyncIterator[Any], stream: ResponseStream) -> None:
    async for item in chunks:
        stream.write(item)


_loops = threading.local()


def _run_async(awaitable: Awaitable[None]) -> None:
    """One event loop per thread, kept for the process's life: clients a handler created on it at an earlier
    invocation (sessions, pools) stay usable, as they would not with a fresh `asyncio.run` per invocation."""
    runner: asyncio.Runner | None = getattr(_loops, "runner", None)
    if runner is None:
        import asyncio

        runner = _loops.runner = asyncio.Runner()

    async def main() -> None:
        await awaitable

    # The current context, not the runner's (a copy taken at its creation, i.e. the first invocation's): the log
    # context and the span of *this* invocation must be current while the handler runs.
    runner.run(main(), context=contextvars.copy_context())
