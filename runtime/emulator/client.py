"""A small client for the invoke endpoint, used by `Emulator.invoke` and `flightrec invoke`.

Why through HTTP and not a direct call: the invoke endpoint is part of what is being emulated (header
decoding, chunked streaming, error headers); going through it proves the path a `curl` user takes.

Allowed imports: stdlib, `runtime.emulator.wire`.
"""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from typing import Any

from runtime.emulator import wire


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """The invoke endpoint's answer."""

    status: int
    body: bytes
    content_type: str
    function_error: str | None  # "Unhandled" for errors, timeouts and crashes; None on success
    request_id: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True when the function answered without error."""
        return self.status == 200 and self.function_error is None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def encode_event(event: bytes | str | object) -> bytes:
    """Bytes pass as they are, text is UTF-8 encoded, anything else is serialised as JSON."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    return json.dumps(event).encode()


def encode_client_context(client_context: str | dict[str, Any] | None) -> str | None:
    """The Invoke API wants the client context as base64 of its JSON text."""
    if client_context is None:
        return None
    text = client_context if isinstance(client_context, str) else json.dumps(client_context)
    return base64.b64encode(text.encode()).decode()


def invoke(
    host: str,
    port: int,
    event: bytes,
    *,
    client_context: str | None = None,
    tenant_id: str | None = None,
    cognito_identity: str | None = None,
    timeout_s: float | None = None,
    function_name: str = "function",
) -> InvokeResult:
    """POST one event to `/2015-03-31/functions/<name>/invocations` and read the whole answer."""
    headers = {"Content-Type": wire.JSON}
    if client_context is not None:
        headers[wire.H_AMZ_CLIENT_CONTEXT] = client_context
    if tenant_id is not None:
        headers[wire.H_AMZ_TENANT_ID] = tenant_id
    if cognito_identity is not None:
        headers[wire.H_FLIGHTREC_COGNITO_IDENTITY] = cognito_identity
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("POST", f"/2015-03-31/functions/{function_name}/invocations", event, headers)
        response = conn.getresponse()
        body = response.read()
        return InvokeResult(
            status=response.status,
            body=body,
            content_type=response.getheader("Content-Type") or "",
            function_error=response.getheader(wire.H_AMZ_FUNCTION_ERROR),
            request_id=response.getheader(wire.H_AMZ_REQUEST_ID) or "",
            headers=tuple(response.getheaders()),
        )
    finally:
        conn.close()
