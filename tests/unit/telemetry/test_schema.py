"""Specification of `telemetry.schema` and the pure parts of `telemetry.postgres` (no server needed).

COLUMNS is the only definition of the table: the migration's CREATE TABLE, its upgrade step and the sink's INSERT
are all checked against it here. Names are quoted wherever they appear, and a DSN's password never shows.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import msgspec
import pytest

from telemetry.context import LogContext
from telemetry.postgres import (
    UNPARSEABLE_TS,
    DatabaseUrlError,
    binary_array,
    column_arrays,
    connection_info,
    redact_dsn,
    scrub,
)
from telemetry.records import REPORT, EventFormatter, Rendered, parse_rfc3339
from telemetry.schema import (
    COLUMNS,
    INDEXES,
    MAX_TABLE_NAME_BYTES,
    MIGRATION_LOCK_ID,
    PARTITION_KEY,
    PRIMARY_KEY,
    READER_ROLE,
    WIRE_TYPES,
    WRITER_ROLE,
    insert_sql,
    migration_sql,
    parse_table_name,
    partition_months,
    partition_sql,
)

NOW = datetime(2026, 11, 30, 3, 14, 5, tzinfo=UTC)


def _create_table(statements: list[str]) -> str:
    return next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS") and "PARTITION BY" in s)


def _rendered(**fields: object) -> Rendered:
    event = {"timestamp": "2026-11-30T03:14:05.123456Z", "record_id": "req/1", **fields}
    return Rendered(event=event, data=msgspec.json.encode(event), levelno=logging.INFO)


# -- COLUMNS and the SQL generated from them ----------------------------------------------------------------------
def test_the_create_table_declares_exactly_the_columns_in_order_with_their_types():
    # GIVEN the migration of the default table
    body = _create_table(migration_sql("logs", NOW))

    # WHEN its column lines are read back
    declared = re.findall(r'^\s+"(\w+)" ([a-z ]+?)( NOT NULL)?,$', body, re.MULTILINE)

    # THEN they are COLUMNS, in order, with their types and nullability, and nothing else
    assert [(name, sql_type, bool(nn)) for name, sql_type, nn in declared] == [
        (c.name, c.sql_type, c.not_null) for c in COLUMNS
    ]
    assert 'PRIMARY KEY ("ts", "record_id")' in body
    assert body.endswith('PARTITION BY RANGE ("ts")')


def test_the_documented_columns_are_there_with_the_documented_types():
    by_name = {c.name: c for c in COLUMNS}
    assert [c.name for c in COLUMNS][:2] == ["ts", "record_id"]
    assert by_name["ts"].source == "timestamp"
    assert by_name["record"].source is None  # the whole rendered JSON
    assert by_name["record"].sql_type == "jsonb"
    assert {c.name for c in COLUMNS if c.not_null} == {"ts", "record_id", "record"}
    assert by_name["cold_start"].sql_type == "boolean"
    assert by_name["max_memory_used_mb"].sql_type == "integer"
    assert by_name["duration_ms"].sql_type == by_name["init_duration_ms"].sql_type == "double precision"
    assert len({c.name for c in COLUMNS}) == len(COLUMNS)


def test_the_idempotency_key_contains_the_partition_key_and_serves_time_range_scans():
    assert PARTITION_KEY in PRIMARY_KEY
    assert PRIMARY_KEY[0] == PARTITION_KEY  # the primary key's index is the (ts) index
    assert set(PRIMARY_KEY) <= {c.name for c in COLUMNS if c.not_null}


def test_the_upgrade_step_adds_exactly_the_nullable_columns_with_their_types():
    upgrade = next(s for s in migration_sql("logs", NOW) if "ADD COLUMN" in s)
    pairs = re.findall(r"\('(\w+)', '([a-z ]+)'\)", upgrade)
    assert pairs == [(c.name, c.sql_type) for c in COLUMNS if not c.not_null]


def test_the_insert_names_every_column_and_casts_each_array_to_its_type():
    text = insert_sql("logs")
    names = re.search(r"\((.*?)\) SELECT", text)
    assert names is not None
    assert names.group(1).split(", ") == [f'"{c.name}"' for c in COLUMNS]
    assert re.findall(r"%b::([a-z ]+)\[\]", text) == [WIRE_TYPES.get(c.sql_type, c.sql_type) for c in COLUMNS]
    # a column sent as another type is cast back to its own in the SELECT list
    values = re.search(r"SELECT (.*?) FROM unnest", text)
    assert values is not None
    assert values.group(1).split(", ") == [
        f'"{c.name}"::{c.sql_type}' if c.sql_type in WIRE_TYPES else f'"{c.name}"' for c in COLUMNS
    ]
    # no conflict target: naming one needs SELECT privilege, which the INSERT-only writer role does not have
    assert text.endswith("ON CONFLICT DO NOTHING")


def test_secondary_indexes_cover_audits_and_the_report_dashboards():
    statements = migration_sql("logs", NOW)
    indexes = [s for s in statements if "CREATE INDEX" in s]
    assert len(indexes) == len(INDEXES)
    text = "\n".join(indexes)
    assert 'ON "logs" ("request_id", "ts")' in text
    assert 'ON "logs" ("function_name", "level", "ts")' in text
    assert 'ON "logs" ("function_name", "ts") WHERE kind = \'report\'' in text
    # every referenced column exists
    for _, columns, _ in INDEXES:
        assert set(columns) <= {c.name for c in COLUMNS}


def test_the_migration_starts_with_the_advisory_lock_and_ends_with_the_version():
    statements = migration_sql("logs", NOW)
    assert statements[0] == f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"
    assert statements[-1].startswith('INSERT INTO "flightrec_schema_version"')


def test_partitions_are_the_current_and_next_month_across_a_year_end():
    # GIVEN a migration in December
    statements = migration_sql("logs", datetime(2026, 12, 31, 23, 59, tzinfo=UTC))

    # THEN it creates December and January, with UTC month bounds
    parts = [s for s in statements if "ATTACH PARTITION" in s]
    assert len(parts) == 2
    assert "FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')" in parts[0]
    assert '"logs_p202612"' in parts[0]
    assert "FOR VALUES FROM ('2027-01-01 00:00:00+00') TO ('2027-02-01 00:00:00+00')" in parts[1]
    assert '"logs_p202701"' in parts[1]
    # AND each partition takes over its month's rows from the default partition before it is attached
    assert 'DELETE FROM "logs_default"' in parts[0]


def test_partitions_can_be_created_ahead_for_any_month():
    statements = partition_sql("audit.logs", [date(2027, 2, 14), date(2027, 3, 1)])
    assert len(statements) == 2
    assert '"audit"."logs_p202702"' in statements[0]
    assert "FROM ('2027-02-01 00:00:00+00') TO ('2027-03-01 00:00:00+00')" in statements[0]
    assert '"audit"."logs_p202703"' in statements[1]


def test_partition_months_use_utc():
    # 23:30 on the 30th of November in UTC-5 is already December in UTC
    from datetime import timedelta, timezone

    local = datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert [d.isoformat() for d in partition_months(local)] == ["2026-12-01", "2027-01-01"]


def test_roles_are_nologin_and_only_insert_and_select_are_granted():
    text = "\n".join(migration_sql("logs", NOW))
    assert f'CREATE ROLE "{WRITER_ROLE}" NOLOGIN' in text
    assert f'CREATE ROLE "{READER_ROLE}" NOLOGIN' in text
    grants = re.findall(r"^GRANT (.*?) ON (?:TABLE|SCHEMA) .*? TO (.*)$", text, re.MULTILINE)
    assert ("INSERT", f'"{WRITER_ROLE}"') in grants
    assert ("SELECT", f'"{READER_ROLE}"') in grants
    assert not [g for g in grants if re.search(r"UPDATE|DELETE|TRUNCATE|ALL", g[0])]
    assert re.search(r'^REVOKE UPDATE, DELETE, TRUNCATE ON TABLE "logs" FROM', text, re.MULTILINE)
    assert 'REVOKE ALL ON TABLE "logs" FROM PUBLIC' in text


# -- identifiers ---------------------------------------------------------------------------------------------------
def test_a_schema_qualified_name_is_quoted_part_by_part():
    text = "\n".join(migration_sql("audit.Logs", NOW))
    assert 'CREATE TABLE IF NOT EXISTS "audit"."Logs" (' in text
    assert '"audit"."Logs_default" PARTITION OF "audit"."Logs"' in text
    assert 'GRANT USAGE ON SCHEMA "audit"' in text
    assert 'CREATE SCHEMA "audit"' in text
    assert insert_sql("audit.Logs").startswith('INSERT INTO "audit"."Logs" (')


def test_a_hostile_table_name_stays_inside_its_quotes():
    # GIVEN a name that would end the statement if it were pasted in unquoted, and one that holds the DO tag
    hostile = "x'\"; DROP TABLE users; --"
    quoted = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")  # SQL literals and identifiers, left to right
    statements = [*migration_sql(hostile, NOW), insert_sql(hostile)]
    assert sum("DROP TABLE users" in s for s in statements) > 10
    for statement in statements:
        # THEN every occurrence is inside a quoted identifier or literal (its quotes doubled)
        assert "DROP TABLE users" not in quoted.sub("", statement)
    assert '"x\'""; DROP TABLE users; --"' in insert_sql(hostile)

    dollar = "a$flightrec$b"
    for statement in migration_sql(dollar, NOW):
        if statement.startswith("DO "):
            tag = statement.split()[1]
            assert statement.count(tag) == 2  # the tag occurs only where it opens and closes the body
            if dollar in statement:
                assert tag != "$flightrec$"


@pytest.mark.parametrize("bad", ["", ".", "a.", ".b", "a.b.c", "x" * (MAX_TABLE_NAME_BYTES + 1), "a\x00b"])
def test_unusable_table_names_are_rejected(bad):
    with pytest.raises(ValueError, match=r"table name|schema name|NUL"):
        parse_table_name(bad)


def test_the_longest_allowed_name_keeps_derived_names_within_63_bytes():
    name = "t" * MAX_TABLE_NAME_BYTES
    assert parse_table_name(name) == (name,)
    derived = set(re.findall(r'"(t+_[a-z0-9_]+)"', "\n".join(migration_sql(name, NOW))))
    assert derived
    assert all(len(d.encode()) <= 63 for d in derived)


# -- column extraction ---------------------------------------------------------------------------------------------
def test_columns_are_extracted_from_real_rendered_records():
    # GIVEN a log record and a report record rendered by the real formatter
    formatter = EventFormatter({"function_name": "orders", "function_version": "7"}, instance_id="inst")
    ctx = LogContext(request_id="req-9", cold_start=True, tenant_id="t1", xray_trace_id="Root=1-a;Sampled=1")
    log = logging.LogRecord("app", logging.WARNING, __file__, 1, "low stock: %s", ("x",), None)
    log.flightrec = ctx
    log.flightrec_seq = 3
    report = logging.LogRecord("flightrec", logging.INFO, __file__, 1, "REPORT", (), None)
    report.flightrec = ctx
    report.flightrec_seq = 4
    report.flightrec_kind = REPORT
    report.flightrec_fields = {"duration_ms": 12, "status": "success", "error_type": None,
                               "init_duration_ms": 80.5, "max_memory_used_mb": 64, "records_dropped": 0}  # fmt: skip
    batch = [formatter.render(log), formatter.render(report)]

    # WHEN the INSERT's arrays are built
    arrays = dict(zip([c.name for c in COLUMNS], column_arrays(batch), strict=True))

    # THEN every column has one value per record, taken from its event key and typed for the column
    assert all(len(values) == 2 for values in arrays.values())
    assert arrays["ts"] == [parse_rfc3339(r.event["timestamp"]) for r in batch]
    assert arrays["record_id"] == ["req-9/3", "req-9/4"]
    assert arrays["kind"] == ["log", "report"]
    assert arrays["level"] == ["WARNING", "INFO"]
    assert arrays["message"][0] == "low stock: x"
    assert arrays["function_name"] == ["orders", "orders"]
    assert arrays["tenant_id"] == ["t1", "t1"]
    assert arrays["cold_start"] == [True, True]
    assert arrays["duration_ms"] == [None, 12.0]
    assert isinstance(arrays["duration_ms"][1], float)  # an int among floats would break the array's type
    assert arrays["init_duration_ms"] == [None, 80.5]
    assert arrays["max_memory_used_mb"] == [None, 64]
    assert arrays["status"] == [None, "success"]
    assert arrays["record"] == [r.data.decode() for r in batch]


def test_values_of_the_wrong_type_become_null_and_nul_characters_are_replaced():
    batch = [
        _rendered(cold_start="yes", duration_ms="12", max_memory_used_mb=2**40, message="a\x00b", level=5),
        _rendered(cold_start=False, duration_ms=True, max_memory_used_mb=128.0, message=None),
    ]
    arrays = dict(zip([c.name for c in COLUMNS], column_arrays(batch), strict=True))
    assert arrays["cold_start"] == [None, False]
    assert arrays["duration_ms"] == [None, None]  # a string and a bool are not durations
    assert arrays["max_memory_used_mb"] == [None, 128]  # out of the integer range: NULL; the record keeps it
    assert arrays["message"] == ["a\ufffdb", None]
    assert arrays["level"] == ["5", None]
    # the JSON escape \u0000 is replaced too (jsonb rejects it), and the rest of the JSON is untouched
    assert json.loads(arrays["record"][0])["message"] == "a\ufffdb"
    assert json.loads(arrays["record"][1]) == json.loads(batch[1].data)


def test_only_a_real_json_nul_escape_is_replaced():
    # an escaped backslash followed by the text "u0000" is not a NUL and must survive
    data = b'{"a":"\\\\u0000","b":"\\u0000","c":"\\\\\\u0000"}'
    rendered = Rendered(event={"timestamp": "x", "record_id": "r"}, data=data, levelno=20)
    record = json.loads(column_arrays([rendered])[-1][0])
    assert record == {"a": "\\u0000", "b": "\ufffd", "c": "\\\ufffd"}


def test_timestamps_parse_like_the_records_helper_and_fall_back_deterministically():
    stamps = ["2026-11-30T03:14:05.123456Z", "2027-01-01T00:00:00.000001Z"]
    batch = [_rendered(timestamp=s) for s in stamps]
    assert column_arrays(batch)[0] == [parse_rfc3339(s) for s in stamps]
    # a record whose timestamp cannot be read still gets a key, the same on every retry
    odd = [_rendered(timestamp="yesterday"), _rendered(timestamp=None), _rendered(timestamp="2026-11-30T03:14:05")]
    values = column_arrays(odd)[0]
    assert values[:2] == [UNPARSEABLE_TS, UNPARSEABLE_TS]
    assert values[2] == datetime(2026, 11, 30, 3, 14, 5, tzinfo=UTC)  # a naive time is read as UTC


@pytest.mark.parametrize(("sql_type", "values"), [
    ("text", ["a", None, "h\u00e9llo \u2713", "", "x" * 300]),
    ("jsonb", ['{"a": 1}', '{"message": "\u2713"}']),
    ("timestamptz", [datetime(2026, 11, 30, 3, 14, 5, 123456, tzinfo=UTC), UNPARSEABLE_TS, None,
                     datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2)))]),
    ("boolean", [True, False, None]),
    ("double precision", [1.5, -0.0, float("nan"), float("inf"), None, 1e308]),
    ("integer", [0, -1, 2**31 - 1, -(2**31), None]),
    ("text", ["only", "strings"]),
])
def test_binary_arrays_are_byte_for_byte_what_psycopg_would_send(sql_type, values):
    # GIVEN one column's values as column_arrays makes them
    from psycopg.adapt import PyFormat, Transformer

    dumper = Transformer().get_dumper(values, PyFormat.BINARY)
    # WHEN the sink encodes them itself
    ours = binary_array(sql_type, values)
    # THEN the bytes and the array type are those of psycopg's own list dumper (which is far slower)
    assert ours.data == bytes(dumper.dump(values))
    assert ours.oid == dumper.oid


def test_a_lone_surrogate_fails_the_encoding_as_it_failed_psycopg():
    # the sink isolates such a batch on UnicodeEncodeError and stores the culprit as a stub
    with pytest.raises(UnicodeEncodeError):
        binary_array("text", ["fine", "bad \ud800"])


def test_importing_the_sink_does_not_import_psycopg():
    # psycopg costs ~85 ms of cold start; it is imported at the first delivery, not at init
    code = "import sys, telemetry.postgres, telemetry.schema, telemetry.migrate_cli; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- DSN redaction -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://app:S3cret@db.example.com:5432/logs", "postgresql://app:***@db.example.com:5432/logs"),
        ("postgres://app:p%40ss@h/db?sslmode=require", "postgres://app:***@h/db?sslmode=require"),
        ("postgresql://app@h/db?password=S3cret&application_name=x", "postgresql://app@h/db?password=***&application_name=x"),
        ("postgresql://h1:1,h2:2/db", "postgresql://h1:1,h2:2/db"),
        ("postgresql:///db?host=/var/run/postgresql", "postgresql:///db?host=/var/run/postgresql"),
        ("postgresql://app:S3cret@h/db?sslpassword=K3y", "postgresql://app:***@h/db?sslpassword=***"),
        ("host=h user=app password=S3cret dbname=logs", "host=h user=app password=*** dbname=logs"),
        ("host=h password='S3 cr\\'et' dbname=logs", "host=h password=*** dbname=logs"),
        ("host = h  password = S3cret", "host=h password=***"),
        ("dbname='my logs'", "dbname='my logs'"),
    ],
)  # fmt: skip
def test_redact_dsn_hides_passwords_and_keeps_the_rest(dsn, expected):
    assert redact_dsn(dsn) == expected


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:S3/cret@h/db",  # a raw '/' in the password: libpq would read "app" as the host
        "postgresql://app:S3@cret@h/db",  # a raw '@'
        "postgresql://app:S3cret@h/db?x=1@2",
        "host=h password='S3cret",  # unterminated quote
        "password=S3cret garbage",
        "mysql://app:S3cret@h/db",
    ],
)
def test_redact_dsn_never_shows_any_part_of_an_ambiguous_password(dsn):
    out = redact_dsn(dsn)
    assert "S3" not in out
    assert "cret" not in out


def test_scrub_removes_the_password_in_every_spelling():
    dsn = "postgresql://app:p%40ss%2Fword@h/db"
    text = f'connection to "{dsn}" failed for p@ss/word and p%40ss%2Fword'
    out = scrub(text, dsn)
    assert "p@ss/word" not in out
    assert "p%40ss" not in out
    assert "postgresql://app:***@h/db" in out


def test_a_malformed_dsn_is_reported_without_its_password():
    with pytest.raises(DatabaseUrlError) as caught:
        connection_info("host=h password=S3cret port")
    assert "S3cret" not in str(caught.value)
    with pytest.raises(DatabaseUrlError) as caught:
        connection_info("postgresql://app:S3cret@h/db?bogus=1")
    assert "S3cret" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None
    assert "S3cret" not in repr(caught.value.args)


# -- TLS default ---------------------------------------------------------------------------------------------------
def _params(conninfo: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    return {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}


@pytest.mark.parametrize(
    ("dsn", "sslmode"),
    [
        ("postgresql://app@db.example.com/logs", "verify-full"),
        ("postgresql://app@10.0.0.5/logs", "verify-full"),
        ("postgresql://app@127.0.0.1/logs", None),
        ("postgresql://app@localhost/logs", None),
        ("postgresql://app@[::1]/logs", None),
        ("postgresql:///logs?host=/var/run/postgresql", None),
        ("dbname=logs", None),  # no host: the default Unix socket
        ("postgresql://app@127.0.0.1,db.example.com/logs", "verify-full"),
        ("postgresql://app@db.example.com/logs?sslmode=require", "require"),  # the DSN's own sslmode is honoured
        ("host=db.example.com sslmode=disable", "disable"),
    ],
)
def test_a_remote_host_without_sslmode_gets_verify_full(dsn, sslmode):
    params = _params(connection_info(dsn))
    assert params.get("sslmode") == sslmode
    assert params["application_name"] == "flightrec"
