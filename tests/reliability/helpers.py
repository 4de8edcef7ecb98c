"""Shared by the reliability suites: reading the logs table, counting syslog messages, sampling a process, and
writing a JSON summary to `tests/reliability/results/` (gitignored) so that slow runs leave their numbers behind.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

RESULTS = Path(__file__).resolve().parent / "results"
#: (name, summary) of every summary written in this pytest session; tests/reliability/conftest.py prints them
WRITTEN: list[tuple[str, dict[str, Any]]] = []
DROPPED_LINE = re.compile(r"flightrec: (\d+) log records dropped by the (\w+) sink")


# -- PostgreSQL ------------------------------------------------------------------------------------------------------
def table_exists(dsn: str, table: str = "logs") -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None


def rows(dsn: str, request_id: str | None) -> list[dict[str, Any]]:
    """Rows of one request id (or of none: the runtime's own records outside invocations), oldest first."""
    if not table_exists(dsn):
        return []
    where = "request_id = %s" if request_id is not None else "request_id IS NULL"
    params = (request_id,) if request_id is not None else ()
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT kind, level, message, record_id, status, error_type, record FROM logs "
            f"WHERE {where} ORDER BY ts, record_id", params)  # fmt: skip
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def counts(dsn: str) -> tuple[int, int]:
    """(rows, distinct record ids) of the whole table: equal when nothing was stored twice."""
    if not table_exists(dsn):
        return 0, 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT record_id) FROM logs").fetchone()
        return int(total), int(distinct)


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll until `predicate()` holds or `timeout_s` passed (a liveness bound); returns its last value."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= end:
            return predicate()
        time.sleep(interval_s)
    return True


def wait_rows(dsn: str, request_id: str | None, n: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal found
        found = rows(dsn, request_id)
        return len(found) >= n

    wait_for(enough, timeout_s)
    return found


def wait_count(dsn: str, n: int, timeout_s: float) -> tuple[int, int]:
    last = (0, 0)

    def enough() -> bool:
        nonlocal last
        last = counts(dsn)
        return last[0] >= n

    wait_for(enough, timeout_s, interval_s=0.25)
    return last


# -- the runtime process ---------------------------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def count_lines(path: Path) -> int:
    """Newline-terminated lines of a (possibly large) file, read in blocks."""
    n = 0
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                n += block.count(b"\n")
    except FileNotFoundError:
        return 0
    return n


# -- stderr diagnostics ------------------------------------------------------------------------------------------------
def dropped_counts(lines: list[str], sink: str) -> list[int]:
    """The counts of every "N log records dropped by the <sink> sink" diagnostic, in order."""
    return [int(m[1]) for line in lines if (m := DROPPED_LINE.search(line)) and m[2] == sink]


# -- summaries ---------------------------------------------------------------------------------------------------------
def write_summary(name: str, summary: dict[str, Any]) -> Path:
    """`results/<name>.json` (and one line on stdout, shown with -s or in a failure's captured output)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    summary = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **summary}
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    WRITTEN.append((name, summary))
    print(f"{name}: {json.dumps(summary, sort_keys=True)}")
    return path
