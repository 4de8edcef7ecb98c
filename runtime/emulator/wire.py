"""Wire vocabulary of the Lambda Runtime, Extensions and Invoke APIs, as the emulator speaks it.

Why a module of its own: every other emulator module (server, state, supervisor) must agree on the same
header names, paths, limits and error bodies, and `runtime.model` is written concurrently by another hand,
so the emulator keeps its own copy of the contract here. Pure functions and constants only.

Allowed imports: stdlib.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

# --- paths -------------------------------------------------------------------------------------------------
RUNTIME_PREFIX = "/2018-06-01/runtime"
NEXT_PATH = f"{RUNTIME_PREFIX}/invocation/next"
INIT_ERROR_PATH = f"{RUNTIME_PREFIX}/init/error"
RESTORE_NEXT_PATH = f"{RUNTIME_PREFIX}/restore/next"
RESTORE_ERROR_PATH = f"{RUNTIME_PREFIX}/restore/error"
INVOCATION_ANSWER_RE = re.compile(r"^/2018-06-01/runtime/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
EXTENSION_REGISTER_PATH = "/2020-01-01/extension/register"
EXTENSION_NEXT_PATH = "/2020-01-01/extension/event/next"
INVOKE_RE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")

# --- Runtime API headers --------------------------------------------------------------------------------
H_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
H_DEADLINE_MS = "Lambda-Runtime-Deadline-Ms"
H_FUNCTION_ARN = "Lambda-Runtime-Invoked-Function-Arn"
H_TRACE_ID = "Lambda-Runtime-Trace-Id"
H_CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
H_COGNITO_IDENTITY = "Lambda-Runtime-Cognito-Identity"
H_TENANT_ID = "Lambda-Runtime-Aws-Tenant-Id"
H_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
H_ERROR_BODY = "Lambda-Runtime-Function-Error-Body"
H_XRAY_CAUSE = "Lambda-Runtime-Function-XRay-Error-Cause"
H_RESPONSE_MODE = "Lambda-Runtime-Function-Response-Mode"

# --- Extensions API headers -----------------------------------------------------------------------------
H_EXTENSION_NAME = "Lambda-Extension-Name"
H_EXTENSION_ID = "Lambda-Extension-Identifier"
H_EXTENSION_EVENT_ID = "Lambda-Extension-Event-Identifier"

# --- Invoke API headers ---------------------------------------------------------------------------------
H_AMZ_CLIENT_CONTEXT = "X-Amz-Client-Context"
H_AMZ_TENANT_ID = "X-Amz-Tenant-Id"
H_AMZ_FUNCTION_ERROR = "X-Amz-Function-Error"
H_AMZ_REQUEST_ID = "X-Amzn-RequestId"
H_AMZ_EXECUTED_VERSION = "X-Amz-Executed-Version"
# Not part of AWS's Invoke API (only mobile SDKs carry a Cognito identity); the emulator's way to set it.
H_FLIGHTREC_COGNITO_IDENTITY = "X-Flightrec-Cognito-Identity"

# --- limits and fixed values ----------------------------------------------------------------------------
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024 + 100  # RIE interop/model.go MaxPayloadSize = 6291556
ACCOUNT_ID = "012345678912"
FUNCTION_VERSION = "$LATEST"
JSON = "application/json"

_VALID_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")


def error_body(error_type: str, message: str) -> bytes:
    """The `{errorMessage, errorType}` body the Runtime API and the platform use for every refusal."""
    return json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":")).encode()


STATUS_OK_BODY = b'{"status":"OK"}'
INVALID_REQUEST_ID_BODY = error_body("InvalidRequestID", "Invalid request ID")
CONTAINER_ERROR_BODY = error_body(
    "Runtime.ContainerError", "Container error. Non-recoverable state. Runtime should exit promptly."
)
TOO_LARGE_BODY = error_body(
    "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."
)


def invalid_state_body(detail: str) -> bytes:
    """403 body: the request id is known but this transition (e.g. a second answer) is not allowed."""
    return error_body("InvalidStateTransition", detail)


def default_error_body(status: int) -> bytes:
    """The body a fault-injected refusal carries, chosen so a runtime sees what the platform would send."""
    if status == 400:
        return INVALID_REQUEST_ID_BODY
    if status == 403:
        return invalid_state_body("State transition is not allowed")
    if status == 413:
        return TOO_LARGE_BODY
    return CONTAINER_ERROR_BODY


def normalise_error_type(header: str | None) -> str:
    """Map the runtime's error-type header onto what the platform records (RIE fatalerror.go).

    A valid `Runtime.X`/`Function.X` name is kept; anything else under `Function.` becomes `Function.Unknown`,
    and everything else (including a missing header) becomes `Runtime.Unknown`.
    """
    if header and _VALID_ERROR_TYPE.fullmatch(header):
        return header
    if header and header.startswith("Function."):
        return "Function.Unknown"
    return "Runtime.Unknown"


def new_request_id() -> str:
    """A fresh request id, a uuid4 like Lambda's."""
    return str(uuid.uuid4())


def new_trace_id(now: float | None = None) -> str:
    """An X-Ray trace header value in the shape Lambda sends on `/next` (not sampled)."""
    epoch = int(time.time() if now is None else now)
    return f"Root=1-{epoch:08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


def function_arn(region: str, function_name: str) -> str:
    """The unqualified function ARN in the emulator's fixed account."""
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"


def log_stream_name(now: float | None = None) -> str:
    """A new log stream name, `YYYY/MM/DD/[$LATEST]<32 hex>`, as each Lambda environment gets one."""
    day = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y/%m/%d")
    return f"{day}/[{FUNCTION_VERSION}]{secrets.token_hex(16)}"


def default_function_name(handler: str) -> str:
    """`handlers.echo.handler` -> `echo`: the handler's module name, or `function` when there is none."""
    module = handler.rsplit(".", 1)[0] if "." in handler else ""
    return module.rsplit(".", 1)[-1] or "function"


def rfc3339_now(now: float | None = None) -> str:
    """UTC timestamp with milliseconds and a `Z`, as Lambda prints in its timeout line."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer, decided by the emulator core and written by the server.

    `truncate_at` is a fault: send the head and only that many body bytes, then close the connection.
    """

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    truncate_at: int | None = None


ACCEPTED = Reply(202, STATUS_OK_BODY)
