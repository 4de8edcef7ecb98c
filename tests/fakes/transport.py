"""A scripted Runtime API transport for unit tests: answers from a list, records what the runtime sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from runtime.api_client import Response
from runtime.errors import RuntimeApiError


@dataclass
class Sent:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    chunks: list[bytes] | None = None  # a chunked (streamed) request's chunks, in order; `body` joins them
    trailers: dict[str, str] | None = None


@dataclass
class FakeChunkedRequest:
    """A streamed request: chunks are recorded as they are written; `finish` pops the scripted answer."""

    transport: FakeTransport
    sent: Sent

    def write(self, chunk: bytes) -> None:
        assert chunk, "an empty chunk would end a chunked body"
        assert self.sent.chunks is not None and self.sent.trailers is None, "written after finish"
        self.sent.chunks.append(chunk)
        self.sent.body += chunk

    def finish(self, trailers: Sequence[tuple[str, str]] = ()) -> Response:
        self.sent.trailers = dict(trailers)
        return self.transport.answer()


@dataclass
class FakeTransport:
    """Each request pops the next scripted `Response`; an exhausted script means the API went away."""

    script: list[Response] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    def request(
        self, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> Response:
        self.sent.append(Sent(method, path, dict(headers), body))
        return self.answer()

    def open_stream(self, method: str, path: str, headers: Sequence[tuple[str, str]] = ()) -> FakeChunkedRequest:
        sent = Sent(method, path, dict(headers), b"", chunks=[])
        self.sent.append(sent)
        return FakeChunkedRequest(self, sent)

    def answer(self) -> Response:
        if not self.script:
            raise RuntimeApiError("script exhausted: connection lost")
        return self.script.pop(0)

    def close(self) -> None:
        self.closed = True


def next_response(request_id: str | None = "req-1", body: bytes = b"{}", **headers: str) -> Response:
    all_headers = {"content-type": "application/json", "lambda-runtime-deadline-ms": "9999999999999"}
    if request_id is not None:
        all_headers["lambda-runtime-aws-request-id"] = request_id
    all_headers.update({k.replace("_", "-").lower(): v for k, v in headers.items()})
    return Response(200, all_headers, body)


ACCEPTED = Response(202, {}, b'{"status":"OK"}')
