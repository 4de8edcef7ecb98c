"""`LambdaContext`: the second argument of every handler, attribute-compatible with awslambdaric's.

Built per invocation from the `Invocation` and the init-time `RuntimeConfig` (never from `os.environ`), with an
injectable clock so remaining-time logic can be tested. Beyond awslambdaric's attributes it carries
`xray_trace_id`, the invocation's `Lambda-Runtime-Trace-Id`: with concurrent invocations the process-wide
`_X_AMZN_TRACE_ID` cannot name the right one, so the context is where a handler finds its own.
Malformed client-context or Cognito JSON raises `LambdaContextUnmarshalError`, which becomes an error for that
request only.
Imports: stdlib, `runtime.model`, `runtime.config`, `runtime.errors`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from runtime.config import RuntimeConfig
from runtime.errors import LambdaContextUnmarshalError
from runtime.model import Invocation

Clock = Callable[[], float]
W3C_FIELDS = ("traceparent", "tracestate", "baggage")


def _parse_json_header(raw: str, name: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise LambdaContextUnmarshalError(f"Unable to parse {name} JSON: {exc}") from None


def _slots_repr(obj: object) -> str:
    """awslambdaric's repr, fields in its order (`_repr_fields`), so logged contexts read the same."""
    fields = ",".join(f"{name}={getattr(obj, name)}" for name in obj._repr_fields)  # type: ignore[attr-defined]
    return f"{type(obj).__name__}([{fields}])"


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")
    _repr_fields = __slots__

    def __init__(self, raw: dict[str, Any] | None = None) -> None:
        raw = raw or {}
        self.cognito_identity_id = raw.get("cognitoIdentityId")
        self.cognito_identity_pool_id = raw.get("cognitoIdentityPoolId")

    __repr__ = _slots_repr


class Client:
    __slots__ = ("app_package_name", "app_title", "app_version_code", "app_version_name", "installation_id")
    _repr_fields = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, raw: dict[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, raw.get(name))

    __repr__ = _slots_repr


class ClientContext:
    __slots__ = ("client", "custom", "env")
    _repr_fields = ("custom", "env", "client")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.custom = raw.get("custom")
        self.env = raw.get("env")
        client = raw.get("client")
        self.client = Client(client) if isinstance(client, dict) else client

    __repr__ = _slots_repr


class LambdaContext:
    """What awslambdaric's `LambdaContext` offers, with the same attribute names and types."""

    __slots__ = (
        "_clock",
        "_deadline_ms",
        "_w3c",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "tenant_id",
        "xray_trace_id",
    )

    def __init__(self, invocation: Invocation, config: RuntimeConfig, clock: Clock = time.time) -> None:
        self.aws_request_id = invocation.request_id
        self.invoked_function_arn = invocation.invoked_function_arn
        self.tenant_id = invocation.tenant_id
        self.xray_trace_id = invocation.trace_id
        self.function_name = config.function_name
        self.function_version = config.function_version
        self.memory_limit_in_mb = config.memory_limit_in_mb
        self.log_group_name = config.log_group_name
        self.log_stream_name = config.log_stream_name
        self._deadline_ms = invocation.deadline_ms
        self._clock = clock
        self._w3c: dict[str, str] = {}
        self.client_context: ClientContext | None = None
        if invocation.client_context:
            raw = _parse_json_header(invocation.client_context, "Client Context")
            if isinstance(raw, dict):
                w3c = raw.pop("w3c", None)
                if isinstance(w3c, dict):
                    self._w3c = {k: v for k in W3C_FIELDS if isinstance(v := w3c.get(k), str)}
                self.client_context = ClientContext(raw)
        self.identity = CognitoIdentity()
        if invocation.cognito_identity:
            raw = _parse_json_header(invocation.cognito_identity, "Cognito Identity")
            if isinstance(raw, dict):
                self.identity = CognitoIdentity(raw)

    def get_remaining_time_in_millis(self) -> int:
        if self._deadline_ms is None:
            return 0
        return max(self._deadline_ms - int(self._clock() * 1000), 0)

    def w3c(self) -> dict[str, str]:
        """The W3C trace context the caller passed in the client context (awslambdaric 4.2 API)."""
        return dict(self._w3c)

    def log(self, msg: object) -> None:
        """Write to the function's log, as `context.log` does on AWS's runtime (through stdout)."""
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        fields = ",".join(
            f"{name}={getattr(self, name)}"
            for name in (
                "aws_request_id", "log_group_name", "log_stream_name", "function_name", "memory_limit_in_mb",
                "function_version", "invoked_function_arn", "client_context", "identity", "tenant_id",
            )
        )
        return f"LambdaContext([{fields}])"
