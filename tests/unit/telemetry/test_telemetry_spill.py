"""Specification of `telemetry.spill.PendingBuffer`: memory first, then a spill file, then counted drops; FIFO."""

from __future__ import annotations

import json
import logging

from telemetry.records import Rendered
from telemetry.spill import PendingBuffer

HEADER_BYTES = 5  # the spill file's per-record header: 4-byte length, 1-byte level
DATA_BYTES = 40


def _item(n: int, level: int = logging.INFO) -> Rendered:
    """A rendered record of exactly DATA_BYTES bytes of JSON, numbered `n`."""
    event = {"n": n, "message": "é"}  # a non-ASCII character: bytes must survive the file unchanged
    filler = DATA_BYTES - len(json.dumps({**event, "pad": ""}, ensure_ascii=False).encode())
    event["pad"] = "x" * filler
    data = json.dumps(event, ensure_ascii=False).encode()
    assert len(data) == DATA_BYTES
    return Rendered(event=event, data=data, levelno=level)


def _drain(buffer: PendingBuffer, step: int) -> list[Rendered]:
    """What a sink would deliver: peek a batch, ack it, until nothing is pending."""
    out: list[Rendered] = []
    while len(buffer):
        batch = buffer.peek(step)
        assert batch, "peek returned nothing while records are pending"
        out.extend(batch)
        buffer.ack(len(batch))
    return out


def test_records_stay_in_memory_up_to_max_items(tmp_path):
    # GIVEN a buffer holding 3 records in memory
    buffer = PendingBuffer("sink", max_items=3, spill_dir=str(tmp_path))

    # WHEN 3 records are appended
    for n in range(3):
        buffer.append(_item(n))

    # THEN they are all pending, none spilled, and no file was written
    assert len(buffer) == 3
    assert buffer.spilled == 0
    assert list(tmp_path.iterdir()) == []


def test_beyond_max_items_records_spill_to_a_file_then_drop_when_it_is_full(tmp_path):
    # GIVEN a buffer of 2 records in memory and a spill file that holds exactly 3
    spill_max_bytes = 3 * (HEADER_BYTES + DATA_BYTES)
    buffer = PendingBuffer("sink", max_items=2, spill_dir=str(tmp_path), spill_max_bytes=spill_max_bytes)

    # WHEN 8 records are appended
    for n in range(8):
        buffer.append(_item(n))

    # THEN 2 are in memory, 3 in the spill file, and the other 3 are dropped and counted
    assert len(buffer) == 5
    assert buffer.spilled == 3
    assert buffer.spilled_total == 3
    assert buffer.dropped == 3
    assert buffer.dropped_total == 3
    (spill_file,) = tmp_path.iterdir()
    assert spill_file.name.startswith("sink-")
    assert spill_file.stat().st_size == 3 * (HEADER_BYTES + DATA_BYTES)
    # AND what is delivered is the first 5, in order (the drops are the newest records)
    assert [r.event["n"] for r in _drain(buffer, 2)] == [0, 1, 2, 3, 4]


def test_fifo_order_and_identical_bytes_across_memory_and_spill(tmp_path):
    # GIVEN a buffer that keeps 3 in memory and spills the rest
    buffer = PendingBuffer("sink", max_items=3, spill_dir=str(tmp_path))
    items = [_item(n, level=logging.WARNING if n % 2 else logging.INFO) for n in range(10)]

    # WHEN 10 records are appended, and delivered in batches of 4 by peek/ack
    for item in items:
        buffer.append(item)
    assert buffer.spilled == 7
    delivered = _drain(buffer, 4)

    # THEN they come back in append order, with identical bytes, events and levels
    assert [r.data for r in delivered] == [i.data for i in items]
    assert [dict(r.event) for r in delivered] == [dict(i.event) for i in items]
    assert [r.levelno for r in delivered] == [i.levelno for i in items]
    assert len(buffer) == 0


def test_records_appended_while_a_spill_is_being_drained_keep_their_place(tmp_path):
    # GIVEN a buffer that has spilled, and whose oldest records have been delivered
    buffer = PendingBuffer("sink", max_items=2, spill_dir=str(tmp_path))
    for n in range(5):
        buffer.append(_item(n))
    first = buffer.peek(3)
    buffer.ack(len(first))

    # WHEN more records arrive before the rest is delivered, and more after the memory has room again
    buffer.append(_item(5))
    rest = buffer.peek(1)
    buffer.ack(len(rest))
    buffer.append(_item(6))

    # THEN everything is still delivered exactly once, in append order
    delivered = [r.event["n"] for r in [*first, *rest, *_drain(buffer, 10)]]
    assert delivered == [0, 1, 2, 3, 4, 5, 6]


def test_peek_does_not_consume_and_ack_forgets_only_what_was_acked(tmp_path):
    # GIVEN a buffer with spilled records
    buffer = PendingBuffer("sink", max_items=1, spill_dir=str(tmp_path))
    for n in range(4):
        buffer.append(_item(n))

    # WHEN the same batch is peeked twice (a failed delivery is retried) and then only partly acked
    once = [r.event["n"] for r in buffer.peek(3)]
    twice = [r.event["n"] for r in buffer.peek(3)]
    buffer.ack(2)

    # THEN both peeks saw the same records, and the unacked ones are still first in line
    assert once == twice == [0, 1, 2]
    assert len(buffer) == 2
    assert [r.event["n"] for r in _drain(buffer, 10)] == [2, 3]


def test_take_dropped_returns_the_count_since_the_last_call(tmp_path):
    # GIVEN a buffer without a spill directory (memory only) that has dropped 2 records
    buffer = PendingBuffer("sink", max_items=1, spill_dir=None)
    for n in range(3):
        buffer.append(_item(n))

    # WHEN the drops are taken twice
    first = buffer.take_dropped()
    second = buffer.take_dropped()

    # THEN the first call reports them and resets the count; the total is kept
    assert (first, second) == (2, 0)
    assert buffer.dropped_total == 2
    # AND new drops are counted from zero
    buffer.append(_item(3))
    assert buffer.take_dropped() == 1
    assert buffer.dropped_total == 3


def test_the_spill_file_is_removed_once_drained(tmp_path):
    # GIVEN a buffer that has spilled into a file
    buffer = PendingBuffer("sink", max_items=1, spill_dir=str(tmp_path))
    for n in range(3):
        buffer.append(_item(n))
    assert len(list(tmp_path.iterdir())) == 1

    # WHEN everything is delivered
    _drain(buffer, 1)

    # THEN the file is gone
    assert list(tmp_path.iterdir()) == []
    # AND a later spill starts a fresh file and still reads back correctly
    for n in range(3, 6):
        buffer.append(_item(n))
    assert [r.event["n"] for r in _drain(buffer, 2)] == [3, 4, 5]
    assert list(tmp_path.iterdir()) == []


def test_the_spill_directory_is_created_when_needed(tmp_path):
    # GIVEN a spill directory that does not exist yet
    spill_dir = tmp_path / "a" / "b"
    buffer = PendingBuffer("sink", max_items=1, spill_dir=str(spill_dir))

    # WHEN the buffer spills
    buffer.append(_item(0))
    buffer.append(_item(1))

    # THEN the directory is created, private to the user, and the record is kept
    assert spill_dir.is_dir()
    assert spill_dir.stat().st_mode & 0o777 == 0o700
    assert [r.event["n"] for r in _drain(buffer, 5)] == [0, 1]


def test_an_unwritable_spill_directory_drops_and_counts_without_raising(tmp_path):
    # GIVEN a spill directory that cannot be created (a regular file is in the way; works even as root)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    buffer = PendingBuffer("sink", max_items=2, spill_dir=str(blocker / "spill"))

    # WHEN more records arrive than memory holds
    for n in range(5):
        buffer.append(_item(n))

    # THEN the overflow is dropped and counted, and the in-memory records are still delivered
    assert buffer.take_dropped() == 3
    assert len(buffer) == 2
    assert [r.event["n"] for r in _drain(buffer, 5)] == [0, 1]


def test_an_unreadable_spill_file_is_counted_as_dropped(tmp_path):
    # GIVEN a buffer with 3 spilled records whose file is then corrupted
    buffer = PendingBuffer("sink", max_items=1, spill_dir=str(tmp_path))
    for n in range(4):
        buffer.append(_item(n))
    (spill_file,) = tmp_path.iterdir()
    spill_file.write_bytes(b"\x00\x00\x00\x05\x14garbage-not-json")

    # WHEN the buffer is drained
    delivered = [r.event["n"] for r in _drain(buffer, 5)]

    # THEN the memory record is delivered, the 3 lost ones are counted, and nothing is left pending
    assert delivered == [0]
    assert buffer.take_dropped() == 3
    assert len(buffer) == 0


def test_a_truncated_spill_file_is_counted_as_dropped_instead_of_pending_forever(tmp_path):
    # GIVEN a buffer with 3 spilled records whose file loses its tail (the second and third records)
    buffer = PendingBuffer("sink", max_items=1, spill_dir=str(tmp_path))
    for n in range(4):
        buffer.append(_item(n))
    (spill_file,) = tmp_path.iterdir()
    spill_file.write_bytes(spill_file.read_bytes()[: HEADER_BYTES + DATA_BYTES + 2])

    # WHEN the buffer is drained
    delivered = [r.event["n"] for r in _drain(buffer, 5)]

    # THEN what survived is delivered, the 2 lost records are counted, and nothing stays pending
    assert delivered == [0, 1]
    assert buffer.take_dropped() == 2
    assert len(buffer) == 0
