"""The pure parts of `flightrec logs`, `partitions` and `report`: argument parsing, query building, axis maths.

Their database behaviour is tested against PostgreSQL in tests/integration/test_dashboards_sql.py.
"""

from __future__ import annotations

import argparse
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
