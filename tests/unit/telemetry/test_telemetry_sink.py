"""Specification of `telemetry.sink.SinkHandler`: batching, partial delivery, failure counting and backoff."""

from __future__ import annotations

import json
import logging

import pytest

import telemetry.sink as sink_module
from telemetry.records import Rendered
from telemetry.sink import MAX_BACKOFF_S, MIN_BACKOFF_S
from tests.fakes.sinks import RecordingSink


class FakeClock:
    """Stands in for the `time` module inside `telemetry.sink`: a monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(sink_module, "time", fake)
    return fake


def _item(n: int, level: int = logging.INFO) -> Rendered:
    event = {"n": n, "level": logging.getLevelName(level)}
    return Rendered(event=event, data=json.dumps(event).encode(), levelno=level)


def _sink_with(count: int, **options: object) -> RecordingSink:
    sink = RecordingSink(**options)  # type: ignore[arg-type]
    for n in range(count):
        sink.accept(_item(n))
    return sink


def _numbers(sink: RecordingSink) -> list[int]:
    return [event["n"] for event in sink.events()]


def test_ship_delivers_everything_in_batches_in_order(clock):
    # GIVEN a sink with batches of 3 and 7 records pending
    sink = _sink_with(7, batch_size=3)

    # WHEN it ships with time to spare
    done = sink.ship(clock.now + 10)

    # THEN it reports done, the peer got batches of 3, 3 and 1, in order, and the stats say so
    assert done is True
    assert [len(batch) for batch in sink.batches] == [3, 3, 1]
    assert _numbers(sink) == list(range(7))
    assert sink.stats.delivered == 7
    assert sink.stats.failures == 0
    assert len(sink.pending) == 0


def test_a_partial_delivery_keeps_the_rest_pending(clock):
    # GIVEN a peer that takes only 2 records per call, and 5 records pending
    sink = _sink_with(5)
    sink.accept_at_most = 2

    # WHEN the sink ships
    done = sink.ship(clock.now + 10)

    # THEN it stops after the short write: 2 delivered, 3 still pending, no failure counted, no backoff
    assert done is False
    assert _numbers(sink) == [0, 1]
    assert len(sink.pending) == 3
    assert sink.stats.delivered == 2
    assert sink.stats.failures == 0

    # AND WHEN the peer takes everything again
    sink.accept_at_most = None
    done = sink.ship(clock.now + 10)

    # THEN the rest follows, each record exactly once
    assert done is True
    assert _numbers(sink) == [0, 1, 2, 3, 4]
    assert sink.stats.delivered == 5


def test_an_exception_is_counted_and_the_records_stay_pending(clock):
    # GIVEN a sink whose peer is down
    sink = _sink_with(3)
    sink.failing = True

    # WHEN it ships
    done = sink.ship(clock.now + 10)

    # THEN it does not raise: the failure is counted with its error, and every record is still pending
    assert done is False
    assert sink.calls == 1
    assert sink.stats.failures == 1
    assert sink.stats.last_error == "SinkDown: recording is down"
    assert sink.stats.delivered == 0
    assert len(sink.pending) == 3
    assert sink.records == []


def test_after_a_failure_the_sink_backs_off(clock):
    # GIVEN a sink that has just failed
    sink = _sink_with(3)
    sink.failing = True
    sink.ship(clock.now + 10)
    assert sink.calls == 1

    # WHEN it is asked to ship again right away (before MIN_BACKOFF_S has passed)
    clock.now += MIN_BACKOFF_S / 2
    done = sink.ship(clock.now + 10)

    # THEN the peer is not tried again
    assert done is False
    assert sink.calls == 1

    # AND once the backoff has passed, it is tried again; a second failure doubles the backoff
    clock.now += MIN_BACKOFF_S
    sink.ship(clock.now + 10)
    assert sink.calls == 2
    clock.now += MIN_BACKOFF_S * 1.5
    sink.ship(clock.now + 10)
    assert sink.calls == 2
    clock.now += MIN_BACKOFF_S
    sink.ship(clock.now + 10)
    assert sink.calls == 3
    assert sink.stats.failures == 3


def test_the_backoff_is_capped(clock):
    # GIVEN a sink that has failed many times in a row
    sink = _sink_with(1)
    sink.failing = True
    for _ in range(20):
        clock.now += MAX_BACKOFF_S + 1
        sink.ship(clock.now + 10)
    calls = sink.calls

    # WHEN MAX_BACKOFF_S has passed since the last attempt
    clock.now += MAX_BACKOFF_S + 0.001
    sink.ship(clock.now + 10)

    # THEN it is tried again: the wait never grows beyond the cap
    assert sink.calls == calls + 1


def test_retry_now_lifts_the_backoff(clock):
    # GIVEN a sink backing off after a failure, whose peer has come back
    sink = _sink_with(3)
    sink.failing = True
    sink.ship(clock.now + 10)
    sink.failing = False

    # WHEN a forced flush calls retry_now and ships at once
    sink.retry_now()
    done = sink.ship(clock.now + 10)

    # THEN the records are delivered without waiting out the backoff
    assert done is True
    assert _numbers(sink) == [0, 1, 2]


def test_a_success_resets_the_backoff(clock):
    # GIVEN a sink that failed twice (backoff doubled), then delivered
    sink = _sink_with(1)
    sink.failing = True
    sink.ship(clock.now + 10)
    clock.now += MIN_BACKOFF_S
    sink.ship(clock.now + 10)
    clock.now += 2 * MIN_BACKOFF_S
    sink.failing = False
    assert sink.ship(clock.now + 10) is True

    # WHEN it fails again, and MIN_BACKOFF_S passes
    sink.accept(_item(1))
    sink.failing = True
    sink.ship(clock.now + 10)
    calls = sink.calls
    clock.now += MIN_BACKOFF_S
    sink.ship(clock.now + 10)

    # THEN it is retried: the backoff started again from the minimum
    assert sink.calls == calls + 1


def test_ship_does_nothing_past_its_deadline(clock):
    # GIVEN a sink with records pending
    sink = _sink_with(2)

    # WHEN it is asked to ship with a deadline already passed
    done = sink.ship(clock.now - 0.001)

    # THEN it delivers nothing and reports the records as pending
    assert done is False
    assert sink.calls == 0
    assert len(sink.pending) == 2


def test_ship_with_nothing_pending_is_done(clock):
    sink = RecordingSink()
    assert sink.ship(clock.now + 1) is True
    assert sink.calls == 0


def test_accept_filters_by_the_sink_level():
    # GIVEN a sink that keeps WARNING and above
    sink = RecordingSink(level=logging.WARNING)

    # WHEN records of each level are offered
    for n, level in enumerate([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]):
        sink.accept(_item(n, level))
    sink.flush()

    # THEN only WARNING and above were delivered
    assert [event["level"] for event in sink.events()] == ["WARNING", "ERROR", "CRITICAL"]


def test_emit_takes_only_an_already_rendered_record():
    # GIVEN a sink used as a plain logging handler
    sink = RecordingSink()
    logger = logging.Logger("test.sink.emit")
    logger.propagate = False
    logger.addHandler(sink)

    # WHEN one record carries its rendering and one does not
    logger.warning("carries", extra={"flightrec_rendered": _item(1)})
    logger.warning("bare")

    # THEN emitting did no delivery by itself: only the rendered record waits
    assert sink.calls == 0
    assert len(sink.pending) == 1
    # AND a flush delivers it
    sink.flush()
    assert _numbers(sink) == [1]
