"""The single canonical structured event, rendered once per record: the same bytes go to every sink.

`FIELDS` is the documented schema (in this order) of every record, whatever its kind; `extra=` fields follow
them. Rendering uses python-json-logger (its `extra=` merging and reserved-attribute handling) with msgspec as the
serialiser (`telemetry.render`, imported off the cold path), and happens off the handler's thread. Imports: stdlib.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import datetime

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


class Deferred:
    """A field value computed at render time, off the handler's thread (e.g. the redacted event summary)."""

    __slots__ = ()

    def resolve(self) -> Any:
        raise NotImplementedError


class Rendered(NamedTuple):
    """One record, rendered: the structured event (for column extraction) and its JSON bytes (for shipping)."""

    event: Mapping[str, Any]
    data: bytes
    levelno: int


_last_second: tuple[int, str] = (-1, "")  # the previous record's second and its text: records come in bursts


def rfc3339(created: float) -> str:
    global _last_second  # noqa: PLW0603 - a one-entry cache, replaced whole (one reference: safe across threads)
    seconds = int(created)
    micros = round((created - seconds) * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    cached_second, text = _last_second
    if cached_second != seconds:  # strftime(gmtime()) was ~7 % of the shipper's CPU, once per record
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    return f"{text}.{micros:06d}Z"


def parse_rfc3339(text: str) -> datetime.datetime:
    import datetime as dt

    return dt.datetime.fromisoformat(text)  # Python 3.11 reads the trailing "Z"


def __getattr__(name: str) -> Any:
    # `EventFormatter` lives in `telemetry.render` so that importing the record vocabulary does not import
    # python-json-logger and msgspec (tens of ms of cold start); it stays reachable here for callers and tests.
    if name == "EventFormatter":
        from telemetry.render import EventFormatter

        return EventFormatter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
