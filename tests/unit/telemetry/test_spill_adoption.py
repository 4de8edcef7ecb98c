"""A runtime killed with records in its spill file does not lose them: the next process adopts the file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from telemetry.records import EventFormatter
from telemetry.spill import PendingBuffer


def _rendered(n: int):
    formatter = EventFormatter({"function_name": "f", "function_version": "1"}, instance_id="i")
    out = []
    for i in range(n):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, f"message {i}", None, None)
        record.flightrec_seq = i
        out.append(formatter.render(record))
    return out


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def test_records_spilled_by_a_dead_process_are_adopted_in_order(tmp_path):
    # GIVEN a dead process's spill file holding 7 records (it spilled everything past 2 in memory)
    dead = PendingBuffer("syslog", max_items=2, spill_dir=str(tmp_path))
    records = _rendered(9)
    for item in records:
        dead.append(item)
    orphan = tmp_path / f"syslog-{os.getpid()}.spill"
    orphan.rename(tmp_path / f"syslog-{_dead_pid()}.spill")
    # WHEN a new process's buffer adopts orphans
    fresh = PendingBuffer("syslog", max_items=2, spill_dir=str(tmp_path))
    adopted = fresh.adopt_orphans()
    # THEN it owes exactly those 7 records, in their order, with identical bytes and decoded events
    assert adopted == 7
    owed = []
    while len(fresh):
        batch = fresh.peek(3)
        owed.extend(batch)
        fresh.ack(len(batch))
    assert [r.data for r in owed] == [r.data for r in records[2:]]
    assert owed[0].event["message"] == "message 2"
    assert not any(name.endswith(".spill") for name in os.listdir(tmp_path))


def test_a_live_process_spill_file_is_left_alone(tmp_path):
    live = PendingBuffer("postgres", max_items=1, spill_dir=str(tmp_path))
    for item in _rendered(3):
        live.append(item)
    other = tmp_path / f"postgres-{os.getppid()}.spill"  # our parent is alive
    (tmp_path / f"postgres-{os.getpid()}.spill").rename(other)
    assert PendingBuffer("postgres", spill_dir=str(tmp_path)).adopt_orphans() == 0
    assert other.exists()


def test_a_torn_last_record_is_ignored_and_the_rest_adopted(tmp_path):
    dead = PendingBuffer("syslog", max_items=0, spill_dir=str(tmp_path))
    for item in _rendered(3):
        dead.append(item)
    path = tmp_path / f"syslog-{os.getpid()}.spill"
    path.write_bytes(path.read_bytes()[:-5])
    path.rename(tmp_path / f"syslog-{_dead_pid()}.spill")
    assert PendingBuffer("syslog", spill_dir=str(tmp_path)).adopt_orphans() == 2
