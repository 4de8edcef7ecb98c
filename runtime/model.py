"""Wire-level value objects: what one `/next` answer carries, and what an error report says.

Pure data with no I/O, so every other module (and telemetry) can depend on it. Stdlib only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

# Header names as the Runtime API spells them (lower-cased: HTTP header names are case-insensitive).
H_REQUEST_ID = "lambda-runtime-aws-request-id"
H_DEADLINE_MS = "lambda-runtime-deadline-ms"
H_FUNCTION_ARN = "lambda-runtime-invoked-function-arn"
H_TRACE_ID = "lambda-runtime-trace-id"
H_CLIENT_CONTEXT = "lambda-runtime-client-context"
H_COGNITO_IDENTITY = "lambda-runtime-cognito-identity"
H_TENANT_ID = "lambda-runtime-aws-tenant-id"
H_CONTENT_TYPE = "content-type"

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_HEADER = "Lambda-Runtime-Function-Error-Body"  # a streamed response's error, in the trailers (base64)
XRAY_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"


class Invocation(NamedTuple):
    """One event as `/next` delivered it. Header values are kept raw; parsing them is the context's job,
    so that a malformed header becomes an error for this request instead of a crash of the loop."""

    request_id: str
    body: bytes
    deadline_ms: int | None = None
    invoked_function_arn: str | None = None
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None
    tenant_id: str | None = None
    content_type: str | None = None
    malformed_headers: tuple[str, ...] = ()

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], body: bytes) -> Invocation:
        """Build from lower-cased header names; a missing header is `None`, never an exception."""
        malformed: list[str] = []
        deadline: int | None = None
        raw_deadline = headers.get(H_DEADLINE_MS)
        if raw_deadline is not None:
            try:
                deadline = int(raw_deadline.strip())
            except ValueError:
                malformed.append(H_DEADLINE_MS)
        return cls(
            request_id=headers.get(H_REQUEST_ID, "").strip(),
            body=body,
            deadline_ms=deadline,
            invoked_function_arn=headers.get(H_FUNCTION_ARN) or None,
            trace_id=headers.get(H_TRACE_ID) or None,
            client_context=headers.get(H_CLIENT_CONTEXT) or None,
            cognito_identity=headers.get(H_COGNITO_IDENTITY) or None,
            tenant_id=headers.get(H_TENANT_ID) or None,
            content_type=headers.get(H_CONTENT_TYPE) or None,
            malformed_headers=tuple(malformed),
        )


class ErrorReport(NamedTuple):
    """An error in the shape awslambdaric posts, plus the two headers that travel with it.

    `error_type` is the body's `errorType` (a bare class name for user exceptions, as awslambdaric sends it);
    `header_type` is the validated `Runtime.X`/`Function.X` value for the error-type header.
    """

    error_type: str
    error_message: str
    stack_trace: list[str] = []  # noqa: RUF012 - never mutated; a NamedTuple's defaults are shared
    request_id: str = ""
    header_type: str = "Runtime.Unknown"
    xray_cause: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "errorMessage": self.error_message,
            "errorType": self.error_type,
            "requestId": self.request_id,
            "stackTrace": self.stack_trace,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode()


MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # the Runtime API's payload limit for a buffered response
RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"


def response_too_large(request_id: str, size: int) -> ErrorReport:
    """The error posted (and recorded) for a response the Runtime API refuses as too large (413)."""
    return ErrorReport(
        error_type=RESPONSE_TOO_LARGE,
        error_message=(
            f"Response payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
        ),
        request_id=request_id,
        header_type=RESPONSE_TOO_LARGE,
    )
