"""A hand-over of streamed response chunks from the runtime's `/response` thread to the invoker's thread.

Why: with `Lambda-Runtime-Function-Response-Mode: streaming` the runtime writes HTTP chunks while its handler
runs, and the invoke endpoint relays them as they come (so `curl -N` shows them), instead of buffering the
whole answer. A bounded queue keeps a fast runtime from filling memory when the invoker reads slowly.

Allowed imports: stdlib.
"""

from __future__ import annotations

import queue

_END = b""  # an empty chunk never travels (chunked encoding ends on it), so it marks the end


class StreamRelay:
    """Chunks from one streaming response, ended once with an optional mid-stream error."""

    def __init__(self, content_type: str, max_pending: int = 256) -> None:
        self.content_type = content_type
        self.error_type: str | None = None
        self.error_body: str | None = None
        self.bytes_relayed = 0
        self._abandoned = False
        self._chunks: queue.Queue[bytes] = queue.Queue(max_pending)

    def put(self, chunk: bytes) -> None:
        """Hand one non-empty chunk to the invoker (blocks while the invoker is far behind)."""
        if not chunk:
            return
        self.bytes_relayed += len(chunk)
        while not self._abandoned:
            try:
                self._chunks.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def abandon(self) -> None:
        """The invoker gave up (timeout, gone): later chunks are dropped instead of blocking the runtime."""
        self._abandoned = True

    def end(self, error_type: str | None = None, error_body: str | None = None) -> None:
        """Close the stream; a mid-stream error travels in the trailers the runtime sent."""
        self.error_type = error_type
        self.error_body = error_body
        self.put_end()

    def put_end(self) -> None:
        """Queue the end marker unless nobody reads any more."""
        while not self._abandoned:
            try:
                self._chunks.put(_END, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_chunk(self, timeout: float | None) -> bytes | None:
        """The next chunk, or None at the end; raises `TimeoutError` when nothing came in time."""
        try:
            chunk = self._chunks.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        return chunk or None
