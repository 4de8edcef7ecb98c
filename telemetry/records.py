"""The single canonical structured event, rendered once per record: the same bytes go to every sink.

`FIELDS` is the documented schema (in this order) of every record, whatever its kind; `extra=` fields follow
them. Rendering uses python-json-logger (its `extra=` merging and reserved-attribute handling) with msgspec as the
serialiser, and happens off the handler's thread. Imports: stdlib, python-json-logger, msgspec.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.msgspec import MsgspecFormatter

# Record kinds (also the syslog MSGID).
LOG = "log"
START = "start"
END = "end"
REPORT = "report"
INIT_ERROR = "init_error"
INVOCATION_ERROR = "invocation_error"
RUNTIME = "runtime"

FIELDS: tuple[str, ...] = (
    "timestamp",  # RFC 3339 UTC with microseconds, e.g. 2026-11-30T03:14:05.123456Z
    "level",  # DEBUG | INFO | WARNING | ERROR | CRITICAL
    "kind",  # log | start | end | report | init_error | invocation_error | runtime
    "logger",
    "message",
    "request_id",
    "trace_id",  # the OpenTelemetry trace id (32 hex) when a span is active
    "span_id",
    "xray_trace_id",  # the Lambda-Runtime-Trace-Id header (Root=...;Parent=...;Sampled=...)
    "function_name",
    "function_version",
    "tenant_id",
    "cold_start",
    "record_id",  # unique per record: <request id or instance id>/<sequence>; the idempotency key
    "exception",  # {type, message, stack} when the record carries one
)

# Attributes the runtime stamps on a LogRecord; never treated as user `extra=` fields.
STAMPED = frozenset({
    "flightrec", "flightrec_kind", "flightrec_fields", "flightrec_seq", "flightrec_exc", "flightrec_span",
    "flightrec_rendered",
})
_RESERVED = frozenset(RESERVED_ATTRS) | STAMPED | {"message", "asctime"}


class Deferred:
    """A field value computed at render time, off the handler's thread (e.g. the redacted event summary)."""

    __slots__ = ()

    def resolve(self) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Rendered:
    """One record, rendered: the structured event (for column extraction) and its JSON bytes (for shipping)."""

    event: Mapping[str, Any]
    data: bytes
    levelno: int


def rfc3339(created: float) -> str:
    seconds = int(created)
    micros = round((created - seconds) * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def parse_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _json_safe(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


class EventFormatter(MsgspecFormatter):
    """Builds the event in `FIELDS` order; static fields (function name, version) come from init."""

    def __init__(self, static: Mapping[str, Any], instance_id: str) -> None:
        super().__init__(reserved_attrs=list(_RESERVED))
        self._static = dict(static)
        self._instance_id = instance_id

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        ctx = getattr(record, "flightrec", None)
        span = getattr(record, "flightrec_span", None)
        request_id = ctx.request_id if ctx is not None else None
        log_data["timestamp"] = rfc3339(record.created)
        log_data["level"] = record.levelname
        log_data["kind"] = getattr(record, "flightrec_kind", LOG)
        log_data["logger"] = record.name
        log_data["message"] = record.getMessage() if not isinstance(record.msg, dict) else ""
        log_data["request_id"] = request_id
        log_data["trace_id"] = span[0] if span else None
        log_data["span_id"] = span[1] if span else None
        log_data["xray_trace_id"] = ctx.xray_trace_id if ctx is not None else None
        log_data.update(self._static)
        log_data["tenant_id"] = ctx.tenant_id if ctx is not None else None
        log_data["cold_start"] = ctx.cold_start if ctx is not None else None
        log_data["record_id"] = f"{request_id or self._instance_id}/{getattr(record, 'flightrec_seq', 0)}"
        exc = getattr(record, "flightrec_exc", None)
        if exc is not None:
            log_data["exception"] = exc
        fields = getattr(record, "flightrec_fields", None)
        if fields:
            for key, value in fields.items():
                log_data[key] = value.resolve() if isinstance(value, Deferred) else value
        for key, value in message_dict.items():
            log_data.setdefault(key, value)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in log_data and not key.startswith("_"):
                log_data[key] = value

    def render(self, record: logging.LogRecord) -> Rendered:
        event: dict[str, Any] = {}
        message_dict = dict(record.msg) if isinstance(record.msg, dict) else {}
        self.add_fields(event, record, message_dict)
        try:
            data = self._encoder.encode(event)
        except (TypeError, ValueError, RecursionError):  # RecursionError: a self-referencing extra
            event = {key: _json_safe(value) if key not in FIELDS else value for key, value in event.items()}
            data = self._encoder.encode(event)
        return Rendered(event=event, data=data, levelno=record.levelno)
