"""Specification of `telemetry.records`: the one canonical event each record is rendered to, and its JSON bytes."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from datetime import UTC, datetime

import pytest

from runtime.model import Invocation
from telemetry.config import DEFAULT_REDACT_KEYS
from telemetry.context import LogContext, invocation_scope
from telemetry.pipeline import LogPipeline
from telemetry.records import FIELDS, Deferred, EventFormatter, parse_rfc3339, rfc3339
from telemetry.redact import Redactor
from tests.fakes.sinks import RecordingSink, fresh_logger

STATIC = {"function_name": "orders", "function_version": "7"}
RFC3339_MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _record(msg: object = "hello", *args: object, level: int = logging.INFO, **attrs: object) -> logging.LogRecord:
    record = logging.LogRecord("app.orders", level, "orders.py", 12, msg, args or None, None)
    for key, value in attrs.items():
        setattr(record, key, value)
    return record


def _render(record: logging.LogRecord) -> dict:
    rendered = EventFormatter(STATIC, instance_id="inst-1").render(record)
    event = json.loads(rendered.data)
    assert event == json.loads(json.dumps(rendered.event, default=str))  # the bytes say what the event says
    return event


@pytest.fixture
def shipped():
    """A real pipeline with one recording sink, and a private logger feeding it."""
    sink = RecordingSink()
    pipeline = LogPipeline(
        EventFormatter(STATIC, instance_id="inst-1"), [sink],
        redactor=Redactor(DEFAULT_REDACT_KEYS), diagnostics=io.StringIO(), flush_interval_s=60.0,
    )
    pipeline.start()
    yield sink, pipeline, fresh_logger("test.records", pipeline.handler)
    pipeline.close(1.0)


def test_fields_come_first_in_schema_order_then_the_extra_fields():
    # GIVEN a record with `extra=` fields, given in a particular order
    record = _record("order %s placed", "o-1", order_id="o-1", amount=12.5, customer={"tier": "gold"})

    # WHEN it is rendered
    event = _render(record)

    # THEN every schema field but `exception` (there is none) comes first, in FIELDS order
    keys = list(event)
    assert keys[: len(FIELDS) - 1] == [f for f in FIELDS if f != "exception"]
    # AND the extras follow, in the order they were given
    assert keys[len(FIELDS) - 1 :] == ["order_id", "amount", "customer"]
    assert event["message"] == "order o-1 placed"
    assert event["level"] == "INFO"
    assert event["kind"] == "log"
    assert event["logger"] == "app.orders"
    assert event["function_name"] == "orders"
    assert event["function_version"] == "7"
    assert event["customer"] == {"tier": "gold"}


def test_the_timestamp_is_rfc3339_utc_with_microseconds():
    # GIVEN a record created at a known instant
    created = 1_700_000_000.123456
    record = _record()
    record.created = created

    # WHEN it is rendered
    event = _render(record)

    # THEN the timestamp is RFC 3339, UTC, with six fractional digits, naming that instant
    assert RFC3339_MICROS.fullmatch(event["timestamp"])
    assert event["timestamp"] == "2023-11-14T22:13:20.123456Z"
    assert parse_rfc3339(event["timestamp"]) == datetime.fromtimestamp(created, UTC)


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (0.9999995, "1970-01-01T00:00:01.000000Z"),  # rounds up into the next second, not to ".1000000"
        (59.9999999, "1970-01-01T00:01:00.000000Z"),  # and the carry reaches the minutes
        (1_767_225_599.9999999, "2026-01-01T00:00:00.000000Z"),  # and the year
        (1.000001, "1970-01-01T00:00:01.000001Z"),
        (1_700_000_000.5, "2023-11-14T22:13:20.500000Z"),
    ],
)
def test_rfc3339_rounding_edges(created, expected):
    # GIVEN an instant near a boundary WHEN it is formatted
    text = rfc3339(created)

    # THEN it is well formed, carries correctly, and parses back
    assert text == expected
    assert RFC3339_MICROS.fullmatch(text)
    assert parse_rfc3339(text).tzinfo is UTC


def test_request_id_cold_start_and_tenant_come_from_the_stamped_context():
    # GIVEN a record stamped with an invocation's context
    ctx = LogContext(request_id="req-9", cold_start=True, tenant_id="tenant-a", xray_trace_id="Root=1-a;Sampled=1")
    record = _record(flightrec=ctx, flightrec_seq=4)

    # WHEN it is rendered
    event = _render(record)

    # THEN the ids come from the context, and the record id is derived from the request id and sequence
    assert event["request_id"] == "req-9"
    assert event["cold_start"] is True
    assert event["tenant_id"] == "tenant-a"
    assert event["xray_trace_id"] == "Root=1-a;Sampled=1"
    assert event["record_id"] == "req-9/4"


def test_a_record_outside_any_invocation_has_null_ids_and_an_instance_record_id():
    # GIVEN a record logged during init (no context stamped)
    event = _render(_record("init", flightrec=None, flightrec_seq=3))

    # THEN the invocation fields are null and the record id uses the instance id
    assert event["request_id"] is None
    assert event["cold_start"] is None
    assert event["tenant_id"] is None
    assert event["record_id"] == "inst-1/3"


def test_extra_fields_cannot_overwrite_the_stamped_ids():
    # GIVEN a record whose `extra=` tries to set schema fields
    ctx = LogContext(request_id="req-real", cold_start=False, tenant_id="tenant-real")
    record = _record(flightrec=ctx, request_id="spoofed", tenant_id="spoofed", level_name="x")

    # WHEN it is rendered
    event = _render(record)

    # THEN the schema fields keep the runtime's values
    assert event["request_id"] == "req-real"
    assert event["tenant_id"] == "tenant-real"
    assert event["level_name"] == "x"


def test_a_dict_message_becomes_fields_and_an_empty_message():
    # GIVEN a record whose message is a dict (structured logging)
    event = _render(_record({"action": "refund", "order": "o-2"}))

    # THEN its keys are fields after the schema ones, and the message is empty
    assert event["message"] == ""
    assert event["action"] == "refund"
    assert event["order"] == "o-2"
    assert list(event)[-2:] == ["action", "order"]


def test_non_json_serialisable_extras_do_not_break_rendering():
    # GIVEN a record with extras JSON cannot represent, including a self-referencing list
    loop: list[object] = []
    loop.append(loop)
    ctx = LogContext(request_id="req-odd", cold_start=False)
    record = _record("still here", flightrec=ctx, thing=object(), loop=loop, tags={"b", "a"}, blob=b"\x00\xff")

    # WHEN it is rendered
    event = _render(record)

    # THEN the record is valid JSON with the schema fields intact, and each odd value is rendered as text
    assert event["message"] == "still here"
    assert event["request_id"] == "req-odd"
    assert "object object at" in event["thing"]
    assert isinstance(event["loop"], str)
    assert "..." in event["loop"]
    assert "tags" in event
    assert "blob" in event


class _Counted(Deferred):
    """A deferred field that records when, and on which thread, it was resolved."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.threads: list[str] = []

    def resolve(self) -> object:
        self.threads.append(threading.current_thread().name)
        return self.value


def test_deferred_fields_are_resolved_at_render_time():
    # GIVEN a record carrying a deferred field
    deferred = _Counted({"summary": [1, 2]})
    record = _record("START", flightrec_fields={"event": deferred})
    assert deferred.threads == []

    # WHEN it is rendered
    event = _render(record)

    # THEN the field holds the resolved value, computed exactly once
    assert event["event"] == {"summary": [1, 2]}
    assert len(deferred.threads) == 1


def test_deferred_fields_are_resolved_off_the_logging_thread(shipped):
    # GIVEN a pipeline and a record with a deferred field
    sink, pipeline, logger = shipped
    deferred = _Counted("resolved")

    # WHEN the record is logged
    logger.info("START", extra={"flightrec_fields": {"event": deferred}})
    # THEN nothing is resolved on the caller's path
    assert deferred.threads in ([], ["flightrec-shipper"])

    # AND WHEN it is flushed
    assert pipeline.flush(2.0).complete

    # THEN the shipper thread resolved it, and the sink received the value
    assert deferred.threads == ["flightrec-shipper"]
    assert sink.events()[0]["event"] == "resolved"


def test_the_exception_is_a_dict_of_type_message_and_stack(shipped):
    # GIVEN a pipeline and an exception being handled
    sink, pipeline, logger = shipped

    # WHEN it is logged with `exception()`
    try:
        raise KeyError("missing-order")
    except KeyError:
        logger.exception("lookup failed")
    assert pipeline.flush(2.0).complete

    # THEN the event has an `exception` object, placed last among the schema fields
    (event,) = sink.events()
    assert list(event)[-1] == "exception"
    assert event["exception"]["type"] == "KeyError"
    assert event["exception"]["message"] == "'missing-order'"
    assert "Traceback (most recent call last)" in event["exception"]["stack"]
    assert "raise KeyError" in event["exception"]["stack"]
    assert event["level"] == "ERROR"


def test_record_ids_are_unique_across_records(shipped):
    # GIVEN a pipeline; records are logged outside and inside two invocations
    sink, pipeline, logger = shipped
    for i in range(5):
        logger.info("init %d", i)
    for request_id in ("req-a", "req-b"):
        with invocation_scope(Invocation(request_id=request_id, body=b""), cold_start=False):
            for i in range(5):
                logger.info("work %d", i)

    # WHEN they are delivered
    assert pipeline.flush(2.0).complete

    # THEN every record has its own record id, prefixed by its request id (or the instance id)
    ids = [event["record_id"] for event in sink.events()]
    assert len(ids) == 15
    assert len(set(ids)) == 15
    assert all(i.startswith("inst-1/") for i in ids[:5])
    assert all(i.startswith("req-a/") for i in ids[5:10])
    assert all(i.startswith("req-b/") for i in ids[10:])


def test_rfc3339_is_right_across_second_boundaries_in_any_order():
    # GIVEN timestamps that cross second boundaries forwards and backwards (the text of the last second is reused)
    stamps = [1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.0, 1_699_999_999.5, 1_700_000_000.9999996]
    # WHEN / THEN each is formatted as if alone
    assert [rfc3339(t) for t in stamps] == [
        "2023-11-14T22:13:20.250000Z",
        "2023-11-14T22:13:20.750000Z",
        "2023-11-14T22:13:21.000000Z",
        "2023-11-14T22:13:19.500000Z",
        "2023-11-14T22:13:21.000000Z",
    ]
