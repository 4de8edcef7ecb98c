"""Shared plumbing of the commands that read or maintain the logs table: `logs`, `partitions`, `report`.

Why one module: the three commands must agree on where the database and table come from (flags, else the
runtime's own `LOGS_DATABASE_URL` / `LOGS_TABLE`), on how a failure is told (one line, the URL redacted, libpq's
text scrubbed of the password) and on the exit status a script can test:

    0  success
    1  the database refused or could not be reached (connection, authentication, permission, query error)
    2  usage: bad arguments, or a missing or malformed database URL
    3  no rows matched (`flightrec logs`, `flightrec report`)
    4  the table does not exist (run `flightrec migrate`)

Imports: stdlib, `.postgres` and `.schema` (for DSN handling and names); psycopg only inside functions.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2
EXIT_NO_ROWS = 3
EXIT_NO_TABLE = 4


class CommandError(Exception):
    """A failure to report on one line and exit with `code`; the message is already free of secrets."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command reads: the DSN (secret), what may be shown of it, the table and its quoted name."""

    dsn: str
    conninfo: str
    shown: str
    table: str

    def identifier(self) -> sql.Identifier:
        from psycopg import sql

        from telemetry.schema import parse_table_name

        return sql.Identifier(*parse_table_name(self.table))


def run_reporting_errors(command: str, err: TextIO, body: Callable[[], int]) -> int:
    """Run a subcommand's body; a `CommandError` becomes one line on `err` and its exit code."""
    try:
        return body()
    except CommandError as exc:
        print(f"flightrec {command}: {exc}", file=err)
        return exc.code


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """--database-url, --table and --connect-timeout, with the runtime's variables as defaults."""
    parser.add_argument(
        "--database-url", metavar="URL", help="libpq URL or key=value string (default: $LOGS_DATABASE_URL)"
    )
    parser.add_argument(
        "--table", metavar="NAME", help="table, optionally schema-qualified (default: $LOGS_TABLE, else logs)"
    )
    parser.add_argument(
        "--connect-timeout", type=int, default=10, metavar="SECONDS", help="connection timeout (default: 10)"
    )


def resolve(args: argparse.Namespace) -> Target:
    """The target named by the flags or, as their defaults, by the runtime's variables; CommandError(2) if unusable."""
    from telemetry.postgres import DatabaseUrlError, connection_info, redact_dsn
    from telemetry.schema import parse_table_name

    # A command-line tool takes its defaults from the environment like its flags; the runtime never runs this.
    table: str = args.table or os.environ.get("LOGS_TABLE", "").strip() or "logs"
    try:
        parse_table_name(table)
    except ValueError as exc:
        raise CommandError(f"--table: {exc}", EXIT_USAGE) from None
    dsn: str = args.database_url or os.environ.get("LOGS_DATABASE_URL", "").strip()
    if not dsn:
        raise CommandError("no database URL: pass --database-url or set LOGS_DATABASE_URL", EXIT_USAGE)
    try:
        conninfo = connection_info(dsn)
    except DatabaseUrlError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    return Target(dsn=dsn, conninfo=conninfo, shown=redact_dsn(dsn), table=table)


@contextmanager
def connect(target: Target, connect_timeout: int, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    """A connection, or CommandError(1) saying why not (redacted). Query errors inside are translated too."""
    import psycopg

    from telemetry.postgres import scrub

    try:
        conn = psycopg.connect(
            target.conninfo, autocommit=autocommit, prepare_threshold=None, connect_timeout=connect_timeout
        )
    except psycopg.Error as exc:
        reason = scrub(str(exc), target.dsn).strip()
        raise CommandError(f"cannot connect to PostgreSQL at {target.shown}: {reason}", EXIT_DATABASE) from None
    try:
        with conn:
            yield conn
    except psycopg.Error as exc:
        raise database_error(exc, target) from None


def database_error(exc: BaseException, target: Target) -> CommandError:
    """The CommandError for a psycopg error raised by a query: a missing table is 4, anything else 1."""
    from psycopg import errors

    from telemetry.postgres import scrub

    reason = scrub(str(exc).strip(), target.dsn)
    if isinstance(exc, errors.UndefinedTable):
        return CommandError(
            f"table {target.table} does not exist at {target.shown}: create it with `flightrec migrate`",
            EXIT_NO_TABLE,
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return CommandError(
            f"{target.table} at {target.shown}: permission denied ({reason}); reading needs a role granted "
            "flightrec_reader, maintenance needs the table's owner",
            EXIT_DATABASE,
        )
    return CommandError(f"{target.table} at {target.shown}: {type(exc).__name__}: {reason}", EXIT_DATABASE)


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `7d`, `1w` (one number, one unit); ValueError otherwise."""
    match = _RELATIVE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h, 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_time(text: str, now: datetime) -> datetime:
    """A point in time: `now`, a duration ago (`15m`, `2h`, `7d`), or ISO 8601 (`2026-11-30T03:00:00Z`, a date).

    A time without an offset is UTC, as every timestamp flightrec writes is; ValueError for anything else.
    """
    text = text.strip()
    if text == "now":
        return now
    if _RELATIVE.match(text):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither ISO 8601 (2026-11-30T03:00:00Z) nor a duration ago (15m, 2h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, the way records spell their timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
