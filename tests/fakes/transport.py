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
