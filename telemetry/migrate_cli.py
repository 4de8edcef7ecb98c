"""`flightrec migrate`: create or upgrade the logs table, its partitions and roles (`telemetry.schema.migrate`).

An explicit command because it needs DDL rights that the runtime's writer role must not have. `--print-sql`
shows the statements without connecting, for a DBA who applies them by hand (`psql -1 -f`).

Exit status: 0 done, 1 the database refused (or could not be reached), 2 a missing or malformed database URL.
No message ever shows the password: URLs are printed through `redact_dsn`, libpq's text through `scrub`.

Imports: stdlib, `.schema`, `.postgres` (psycopg only when the command runs).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the subcommand's arguments to `parser` (the `runtime.cli` table's "module:function" target)."""
    parser.description = "Create or upgrade the PostgreSQL logs table, its monthly partitions and the roles."
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="libpq URL or key=value string of a role with DDL rights (default: $LOGS_DATABASE_URL)",
    )
    parser.add_argument(
        "--table", metavar="NAME", help="table, optionally schema-qualified (default: $LOGS_TABLE, else logs)"
    )
    parser.add_argument(
        "--print-sql", action="store_true", help="print the migration's SQL and exit without connecting"
    )
    parser.add_argument(
        "--connect-timeout", type=int, default=10, metavar="SECONDS", help="connection timeout (default: 10)"
    )
    parser.set_defaults(run=run)


def _inputs(args: argparse.Namespace, err: TextIO) -> tuple[str, str] | None:
    """(table, DSN) from the flags or, as their defaults, the runtime's variables; None after a usage error."""
    from telemetry.schema import parse_table_name

    # A command-line tool takes its defaults from the environment like its flags; the runtime never runs this.
    table: str = args.table or os.environ.get("LOGS_TABLE", "").strip() or "logs"
    try:
        parse_table_name(table)
    except ValueError as exc:
        print(f"flightrec migrate: --table: {exc}", file=err)
        return None
    dsn: str = args.database_url or os.environ.get("LOGS_DATABASE_URL", "").strip()
    if not dsn and not args.print_sql:
        print("flightrec migrate: no database URL: pass --database-url or set LOGS_DATABASE_URL", file=err)
        return None
    return table, dsn


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `flightrec migrate` with parsed `args`; returns the exit status."""
    from telemetry.postgres import DatabaseUrlError, connection_info, redact_dsn, scrub
    from telemetry.schema import migrate, migration_sql

    out = out or sys.stdout
    err = err or sys.stderr
    inputs = _inputs(args, err)
    if inputs is None:
        return EXIT_USAGE
    table, dsn = inputs
    if args.print_sql:
        for statement in migration_sql(table):
            print(statement + ";\n", file=out)
        return EXIT_OK
    target = redact_dsn(dsn)
    try:
        conninfo = connection_info(dsn)
    except DatabaseUrlError as exc:
        print(f"flightrec migrate: {exc}", file=err)
        return EXIT_USAGE

    import psycopg

    try:
        with psycopg.connect(
            conninfo, autocommit=True, prepare_threshold=None, connect_timeout=args.connect_timeout
        ) as conn:
            result = migrate(conn, table)
    except psycopg.Error as exc:
        reason = scrub(str(exc), dsn).strip()
        print(f"flightrec migrate: {table} at {target}: {type(exc).__name__}: {reason}", file=err)
        return EXIT_DATABASE

    if result.created:
        state = f"created (schema version {result.version})"
    elif result.previous_version != result.version:
        state = f"upgraded from schema version {result.previous_version} to {result.version}"
    else:
        state = f"already at schema version {result.version}"
    print(f"flightrec migrate: {table} at {target}: {state}", file=out)
    if result.created_partitions:
        print(f"  partitions created: {', '.join(result.created_partitions)}", file=out)
    if result.created_roles:
        print(f"  roles created (NOLOGIN; GRANT them to login roles): {', '.join(result.created_roles)}", file=out)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m telemetry.migrate_cli`, for when the `flightrec` entry point is not installed."""
    parser = argparse.ArgumentParser(prog="flightrec migrate")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
