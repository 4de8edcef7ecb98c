"""The pure parts of `flightrec logs`, `partitions` and `report`: argument parsing, query building, axis maths,
and where a SIGINT may land in `logs --follow` (with the database faked).

Their database behaviour is tested against PostgreSQL in tests/integration/test_dashboards_sql.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from telemetry import audit, dbtool, report, retention
from telemetry.dbtool import CommandError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T03:04:05Z", datetime(2026, 11, 1, 3, 4, 5, tzinfo=UTC)),
        ("2026-11-01T03:04:05+02:00", datetime(2026, 11, 1, 1, 4, 5, tzinfo=UTC)),
        ("2026-11-01 03:04", datetime(2026, 11, 1, 3, 4, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert dbtool.parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "-2h", "2026-13-01", ""])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        dbtool.parse_time(text, NOW)


def test_levels_accept_lambdas_spellings() -> None:
    assert audit.normalise_level("warn") == "WARNING"
    assert audit.normalise_level("FATAL") == "CRITICAL"
    assert audit.normalise_level(" error ") == "ERROR"
    with pytest.raises(ValueError, match="unknown level"):
        audit.normalise_level("LOUD")


def args(**overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    audit.configure(parser)
    namespace = parser.parse_args([])
    for key, value in overrides.items():
        setattr(namespace, key, value)
    return namespace


def test_query_defaults_to_the_last_day_without_a_request_id_and_no_bound_with_one() -> None:
    assert audit.query_from(args(), NOW).since == NOW - timedelta(hours=24)
    assert audit.query_from(args(request_id="r-1"), NOW).since is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"since": "2h", "until": "3h"}, "--until must be after --since"),
        ({"follow": True, "until": "1h"}, "--follow cannot be combined with --until"),
        ({"limit": 0}, "--limit"),
        ({"level": "loud"}, "unknown level"),
    ],
)
def test_query_usage_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        audit.query_from(args(**overrides), NOW)
    assert caught.value.code == dbtool.EXIT_USAGE


def test_build_query_uses_plain_indexable_conditions_and_escapes_like_wildcards() -> None:
    query = audit.AuditQuery(
        request_id="r-1", functions=("a", "b"), min_level="WARNING", since=NOW, error_type="E", grep="50%_x\\"
    )
    statement, params = audit.build_query(sql.Identifier("logs"), query)
    text = statement.as_string()
    assert "request_id = %(request_id)s" in text and "function_name = ANY(%(functions)s)" in text
    assert "level = ANY(%(levels)s)" in text and "ts >= %(since)s" in text
    assert "ORDER BY ts, length(record_id), record_id" in text
    assert params["levels"] == ["WARNING", "ERROR", "CRITICAL"]
    assert params["grep"] == "%50\\%\\_x\\\\%"
    assert params["limit"] == audit.DEFAULT_LIMIT + 1


def test_describe_spells_out_a_report_and_keeps_one_line() -> None:
    row = audit.Row(NOW, "INFO", "report", "fn", "r-1", "REPORT", "ValueError", "error", 12.3456, 310.5, "r-1/4", "{}")
    assert audit.describe(row) == "REPORT status=error duration=12.346ms error_type=ValueError init=310.500ms"
    log = audit.Row(NOW, "INFO", "log", "fn", "r-1", "two\nlines", None, None, None, None, "r-1/1", "{}")
    assert audit.describe(log) == "two\\nlines"


# -- follow mode and SIGINT ------------------------------------------------------------------------------------------
#: Without the SIGINT handler under test nothing would end the loop: the fake database stops it after this many polls.
SAFETY_POLLS = 50


def follow_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    audit.configure(parser)
    return parser.parse_args(
        ["--follow", "--interval", "0.01", "--format", "json", "--database-url", "postgresql://u@127.0.0.1/db"]
    )


def record(n: int) -> audit.Row:
    return audit.Row(
        NOW + timedelta(seconds=n), "INFO", "log", "fn", "r-1", f"m{n}", None, None, None, None, f"r-1/{n}",
        json.dumps({"n": n}),
    )  # fmt: skip


def fake_database(
    monkeypatch: pytest.MonkeyPatch, stop: threading.Event, answer: Callable[[int], list[audit.Row]]
) -> list[int]:
    """`audit.connect` and `audit.fetch` replaced: query number n (1 is the first query) returns `answer(n)`.
    Returns the list of query numbers run so far."""
    queries: list[int] = []

    @contextlib.contextmanager
    def connect(target: object, connect_timeout: int) -> Iterator[None]:
        yield None

    def fetch(
        conn: object, table: object, query: audit.AuditQuery, *, after: datetime | None = None
    ) -> list[audit.Row]:
        queries.append(len(queries) + 1)
        if len(queries) > SAFETY_POLLS:
            stop.set()
        return answer(len(queries))

    monkeypatch.setattr(audit, "connect", connect)
    monkeypatch.setattr(audit, "fetch", fetch)
    return queries


@contextlib.contextmanager
def sigint_inherited_as_ignored() -> Iterator[None]:
    """What a process started with `cmd &` by a non-interactive shell has. It also keeps a KeyboardInterrupt that the
    code under test failed to catch from ending the pytest session."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_follow_ends_with_0_on_sigint_during_a_query_even_if_sigint_was_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = threading.Event()

    def answer(n: int) -> list[audit.Row]:
        if n == 3:  # the first query, then two polls; this one is interrupted
            os.kill(os.getpid(), signal.SIGINT)
            return [record(n)]
        return []

    queries = fake_database(monkeypatch, stop, answer)
    out = io.StringIO()
    with sigint_inherited_as_ignored():
        code = audit.run(follow_args(), out, io.StringIO(), stop=stop)
        restored = signal.getsignal(signal.SIGINT)
    assert (code, len(queries), out.getvalue()) == (0, 3, "")  # the interrupted poll's rows are not printed
    assert restored is signal.SIG_IGN  # the caller's disposition is put back


def test_follow_sigint_while_printing_finishes_the_record_and_queries_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    queries = fake_database(monkeypatch, stop, lambda n: [record(n)])  # a new record on every query

    class Terminal(io.StringIO):
        def write(self, text: str) -> int:
            if text == record(2).record:  # the first poll's record: SIGINT between its text and its newline
                os.kill(os.getpid(), signal.SIGINT)
            return super().write(text)

    out = Terminal()
    with sigint_inherited_as_ignored():
        code = audit.run(follow_args(), out, io.StringIO(), stop=stop)
    assert (code, len(queries)) == (0, 2)
    assert out.getvalue() == f"{record(1).record}\n{record(2).record}\n"


@pytest.mark.parametrize(
    ("span", "bucket"), [(timedelta(seconds=30), 1), (timedelta(hours=1), 60), (timedelta(days=1), 1800),
                         (timedelta(days=30), 43200), (timedelta(days=3000), 604800)],
)  # fmt: skip
def test_report_chooses_at_most_60_nice_buckets(span: timedelta, bucket: int) -> None:
    assert report.choose_bucket(NOW - span, NOW) == bucket


def test_report_axis_and_labels() -> None:
    assert report.axis_top(4) == 4 and report.axis_top(25) == 40 and report.axis_top(131.4) == 200
    assert report.axis_top(0) == 4  # an all-zero chart still gets a scale
    assert report.nice_ceiling(0.03) == pytest.approx(0.05)
    assert report.human_seconds(90) == "1m30s" and report.human_seconds(86400) == "1d"


def test_retention_month_arithmetic() -> None:
    assert retention._month_end("logs_p202612") == datetime(2027, 1, 1, tzinfo=UTC)
