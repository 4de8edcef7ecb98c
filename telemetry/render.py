"""`EventFormatter`: renders a `LogRecord` into the canonical event (`records.FIELDS` first) and its JSON bytes.

Built on python-json-logger (its `extra=` merging and reserved-attribute rules) with msgspec as the serialiser.
Imported only by the shipper thread, after init, so neither library is on the cold-start path.
Imports: stdlib, python-json-logger, msgspec, `.records`, `.redact`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.msgspec import MsgspecFormatter

from telemetry.records import FIELDS, LOG, STAMPED, Deferred, Rendered, rfc3339
from telemetry.redact import without_lone_surrogates

_RESERVED = frozenset(RESERVED_ATTRS) | STAMPED | {"message", "asctime"}


def _json_safe(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def _utf8_safe(value: Any) -> Any:
    """A documented field's value with lone surrogates (not encodable as UTF-8) replaced by U+FFFD."""
    if isinstance(value, str):
        return without_lone_surrogates(value)
    if isinstance(value, dict):
        return {_utf8_safe(k): _utf8_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8_safe(v) for v in value]
    return value


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
            try:  # UnicodeEncodeError (a ValueError): a lone surrogate, e.g. from an event's "\ud800" escape
                event = _utf8_safe(event)
                data = self._encoder.encode(event)
            except (TypeError, ValueError, RecursionError):
                event = {key: _utf8_safe(_json_safe(value) if key not in FIELDS else value)
                         for key, value in event.items()}
                data = self._encoder.encode(event)
        return Rendered(event=event, data=data, levelno=record.levelno)
