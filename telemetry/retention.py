"""`flightrec partitions`: keep the logs table's monthly partitions ahead of time, and drop expired ones whole.

    flightrec partitions                      # create this month's and the next 2 months' partitions
    flightrec partitions --keep-days 400      # ... and drop every partition whose rows are all older than 400 days
    flightrec partitions --keep-days 400 --dry-run

Why whole partitions: the table is an audit trail, so nobody may DELETE from it (the writer and reader roles have
no DELETE; see `telemetry.schema`). Retention is the one sanctioned way records leave, and it is coarse on
purpose: `DROP TABLE` of a partition is instant, leaves no dead rows to vacuum, and is visibly a DDL act of the
table's owner (which is what shows up in PostgreSQL's DDL log), never a row-by-row edit.

What `--keep-days N` guarantees: a record is kept at least N days after its timestamp. A partition is dropped
when its upper bound is at or before `now - N days`, so a record lives between N days and N days plus one month.
Rows that landed in the DEFAULT partition (timestamps outside every monthly partition, e.g. a partition that was
not created in time) are first moved into a partition of their own month — the same move `flightrec migrate`
does — so that they too expire by whole partitions. Months in the future beyond `--ahead` stay in the default.

Each create or drop is its own short transaction with `lock_timeout` (default 5 s): a drop needs a brief ACCESS
EXCLUSIVE lock on the table, and it is better to fail and retry at the next run than to queue writers behind a
long report query. Run it from cron or a scheduled job, as the table's owner (the role that ran the migration).

Exit status (see `telemetry.dbtool`): 0 done, 1 the database refused (e.g. not the owner), 2 usage or a bad URL,
4 the table does not exist.

Imports: stdlib, `.dbtool`, `.schema` (partition names and the move-out-of-default DDL); psycopg only when run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from telemetry.dbtool import (
    EXIT_NO_TABLE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_database_arguments,
    connect,
    parse_time,
    resolve,
    run_reporting_errors,
)

if TYPE_CHECKING:
    import psycopg

DEFAULT_AHEAD = 2
DEFAULT_LOCK_TIMEOUT = "5s"


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of the table; `lower`/`upper` are None for the default partition (and MINVALUE/MAXVALUE)."""

    name: str
    lower: datetime | None
    upper: datetime | None
    default: bool


@dataclass(slots=True)
class MaintenanceResult:
    """What `maintain` did (or, with `dry_run`, would do)."""

    created: list[str] = field(default_factory=list)
    dropped: list[Partition] = field(default_factory=list)
    moved_from_default: list[str] = field(default_factory=list)  # partitions created for months found in default
    cutoff: datetime | None = None


def list_partitions(conn: psycopg.Connection[Any], table: str) -> list[Partition]:
    """The table's partitions with their bounds, read from the catalog (bounds cast back to timestamptz)."""
    from telemetry.schema import _Names

    names = _Names(table)
    rows = conn.execute(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT',"
        " (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']*)''\\)'))[1]::timestamptz,"
        " (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']*)''\\)'))[1]::timestamptz"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY 3 NULLS FIRST, 1",
        [names.table.as_string()],
    ).fetchall()
    return [Partition(name, lower, upper, bool(is_default)) for name, is_default, lower, upper in rows]


def _table_exists(conn: psycopg.Connection[Any], table: str) -> bool:
    from telemetry.schema import _Names

    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [_Names(table).table.as_string()]).fetchone()
    return bool(row and row[0])


def _default_months(conn: psycopg.Connection[Any], table: str, before: datetime) -> list[date]:
    """Months (UTC) of the rows in the default partition that are older than `before`."""
    from psycopg import sql

    from telemetry.schema import _Names

    names = _Names(table)
    rows = conn.execute(
        sql.SQL(
            "SELECT DISTINCT (date_trunc('month', ts, 'UTC') AT TIME ZONE 'UTC')::date FROM {} WHERE ts < %s ORDER BY 1"
        ).format(names.default),
        [before],
    ).fetchall()
    return [row[0] for row in rows]


def _in_transaction(conn: psycopg.Connection[Any], lock_timeout: str, statement: str) -> None:
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
        conn.execute(statement)


def maintain(
    conn: psycopg.Connection[Any],
    table: str,
    *,
    now: datetime | None = None,
    ahead: int = DEFAULT_AHEAD,
    keep_days: int | None = None,
    dry_run: bool = False,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> MaintenanceResult:
    """Create missing partitions up to `ahead` months after `now`'s month, move default-partition months up to
    then into partitions of their own, and (with `keep_days`) drop the partitions whose rows are all expired.

    `conn` must be in autocommit mode: each step is its own transaction. Raises psycopg errors.
    """
    from psycopg import sql

    from telemetry.schema import _Names, _partition_sql, next_month, partition_months

    now = (now or datetime.now(UTC)).astimezone(UTC)
    names = _Names(table)
    result = MaintenanceResult()
    existing = {p.name for p in list_partitions(conn, table)}
    wanted = partition_months(now, ahead)
    horizon = datetime.combine(next_month(wanted[-1]), datetime.min.time(), UTC)
    strays = _default_months(conn, table, horizon)
    for month in sorted(set(wanted) | set(strays)):
        name = f"{names.relname}_p{month:%Y%m}"
        if name in existing:
            continue
        if not dry_run:
            _in_transaction(conn, lock_timeout, _partition_sql(names, month).as_string())
        result.created.append(name)
        if month in strays:
            result.moved_from_default.append(name)
    if keep_days is None:
        return result
    cutoff = now - timedelta(days=keep_days)
    result.cutoff = cutoff
    if dry_run:
        partitions = [p for p in list_partitions(conn, table) if not p.default]
        partitions += [
            Partition(name, None, _month_end(name), False)
            for name in result.created
            if name not in {p.name for p in partitions}
        ]
    else:
        partitions = [p for p in list_partitions(conn, table) if not p.default]
    for partition in partitions:
        if partition.upper is None or partition.upper > cutoff:
            continue
        if not dry_run:
            _in_transaction(
                conn, lock_timeout, sql.SQL("DROP TABLE {}").format(names.sibling(partition.name)).as_string()
            )
        result.dropped.append(partition)
    return result


def _month_end(name: str) -> datetime:
    """The upper bound of a partition named `<table>_pYYYYMM` (dry runs, for partitions not created yet)."""
    from telemetry.schema import next_month

    stamp = name.rsplit("_p", 1)[1]
    return datetime.combine(next_month(date(int(stamp[:4]), int(stamp[4:]), 1)), datetime.min.time(), UTC)


# -- the command ---------------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Add the subcommand's arguments to `parser` (the `runtime.cli` table's "module:function" target)."""
    parser.description = (
        "Create the logs table's monthly partitions ahead of time and drop expired ones (whole partitions only)."
    )
    parser.add_argument(
        "--ahead",
        type=int,
        default=DEFAULT_AHEAD,
        metavar="MONTHS",
        help=f"months after the current one to create partitions for (default: {DEFAULT_AHEAD})",
    )
    parser.add_argument(
        "--keep-days",
        type=int,
        metavar="N",
        help="drop every partition whose rows are all older than N days (default: drop nothing)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be created and dropped; change nothing")
    parser.add_argument(
        "--now", metavar="TIME", help="act as if it were TIME (ISO 8601): plan ahead, or rehearse a retention run"
    )
    parser.add_argument(
        "--lock-timeout",
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="DURATION",
        help=f"give up on a step that waits longer for its lock (PostgreSQL syntax; default: {DEFAULT_LOCK_TIMEOUT})",
    )
    add_database_arguments(parser)
    parser.set_defaults(run=run)


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run `flightrec partitions` with parsed `args`; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    return run_reporting_errors("partitions", err, lambda: _run(args, out, clock))


def _run(args: argparse.Namespace, out: TextIO, clock: Callable[[], datetime]) -> int:
    try:
        now = parse_time(args.now, clock()) if args.now else clock()
    except ValueError as exc:
        raise CommandError(f"--now: {exc}", EXIT_USAGE) from None
    if args.ahead < 0 or (args.keep_days is not None and args.keep_days < 1):
        raise CommandError("--ahead must be 0 or more and --keep-days 1 or more", EXIT_USAGE)
    target = resolve(args)
    with connect(target, args.connect_timeout) as conn:
        if not _table_exists(conn, target.table):
            raise CommandError(
                f"table {target.table} does not exist at {target.shown}: create it with `flightrec migrate`",
                EXIT_NO_TABLE,
            )
        result = maintain(
            conn,
            target.table,
            now=now,
            ahead=args.ahead,
            keep_days=args.keep_days,
            dry_run=args.dry_run,
            lock_timeout=args.lock_timeout,
        )
    verb = "would " if args.dry_run else ""
    prefix = f"flightrec partitions: {target.table} at {target.shown}"
    if not result.created and not result.dropped:
        print(f"{prefix}: nothing to do", file=out)
    for name in result.created:
        moved = " (takes over its month's rows from the default partition)" if name in result.moved_from_default else ""
        print(f"{prefix}: {verb}create {name}{moved}", file=out)
    for partition in result.dropped:
        upper = partition.upper.isoformat() if partition.upper else "?"
        print(f"{prefix}: {verb}drop {partition.name} (records before {upper})", file=out)
    if result.cutoff is not None:
        print(f"{prefix}: records are kept from {result.cutoff.isoformat()} on", file=out)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m telemetry.retention`, for when the `flightrec` entry point is not installed."""
    parser = argparse.ArgumentParser(prog="flightrec partitions")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
