"""`flightrec logs`: the audit query. Everything recorded about one request id, in time order, from the logs table.

    flightrec logs 8f1c…-request-id                 # every record of one invocation
    flightrec logs --function orders --level ERROR --since 2h
    flightrec logs --error-type Runtime.ExitError --since 7d --format json | jq .
    flightrec logs --function orders --follow        # like tail -f

Time order is (ts, then the record's sequence number within its invocation): the order in which the runtime
created the records. Filters combine with AND:
- `REQUEST_ID` (positional): that invocation only; the (request_id, ts) index finds it in any partition.
- `--function NAME` (repeatable), `--level LEVEL` (that level and above, like syslog's severity).
- `--since` / `--until`: `[since, until)`, ISO 8601 (UTC when no offset) or a duration ago (`15m`, `2h`, `7d`).
  Without a request id, `--since` defaults to 24h ago, so a query never scans the whole history by accident.
- `--error-type TYPE`: the records of the invocations that failed with that errorType (all their records, so the
  failure is seen in context), plus init errors of that type.
- `--grep TEXT`: case-insensitive substring of the message or of anything in the stored record.
Output: `--format table` (one line per record, the report's numbers spelled out) or `--format json` (the stored
record, one JSON object per line: feed it to jq). `--follow` keeps polling for new records until interrupted:
SIGINT ends it with status 0, even when the process inherited SIGINT as ignored (see `_Interrupt`).

Exit status (shared with `partitions` and `report`, see `telemetry.dbtool`): 0 records printed, 1 the database
refused or could not be reached, 2 usage or a malformed/missing database URL, 3 no record matched, 4 the table
does not exist. The password is never printed: URLs are shown redacted and libpq's messages scrubbed.

Imports: stdlib, `.dbtool` (psycopg only when the command runs).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from telemetry.dbtool import (
    EXIT_NO_ROWS,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Target,
    add_database_arguments,
    connect,
    iso,
    parse_duration,
    parse_time,
    resolve,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG"}
DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_LIMIT = 10_000
#: Follow mode's longest sleep between two looks at the SIGINT flag, which the handler cannot wake (see `_pause`).
_FLAG_CHECK_S = 0.05

#: What the query selects, in this order (`Row` mirrors it).
_SELECT = (
    "ts", "level", "kind", "function_name", "request_id", "message", "error_type", "status", "duration_ms",
    "init_duration_ms", "record_id",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    """One record as the audit shows it; `record` is the stored JSON text, exactly as PostgreSQL renders it."""

    ts: datetime
    level: str | None
    kind: str | None
    function_name: str | None
    request_id: str | None
    message: str | None
    error_type: str | None
    status: str | None
    duration_ms: float | None
    init_duration_ms: float | None
    record_id: str
    record: str


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """The filters of one `flightrec logs` call (all optional; they combine with AND)."""

    request_id: str | None = None
    functions: tuple[str, ...] = ()
    min_level: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error_type: str | None = None
    grep: str | None = None
    limit: int = DEFAULT_LIMIT


def normalise_level(text: str) -> str:
    """DEBUG…CRITICAL, case-insensitive, with the AWS_LAMBDA_LOG_LEVEL spellings (WARN, FATAL, TRACE) accepted."""
    level = text.strip().upper()
    level = _LEVEL_ALIASES.get(level, level)
    if level not in LEVELS:
        raise ValueError(f"unknown level {text!r}; use one of {', '.join(LEVELS)}")
    return level


def _like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with LIKE's own wildcards and escape taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def build_query(
    table: sql.Identifier, query: AuditQuery, *, after: datetime | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    """The audit SELECT and its parameters. `after` narrows to `ts >= after` (follow mode's re-polls).

    Every condition is a plain comparison on an indexed column or the partition key, so the planner can use the
    (request_id, ts) and (function_name, level, ts) indexes and prune partitions by time.
    """
    from psycopg import sql

    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": query.limit + 1}
    time_conditions: list[sql.Composable] = []
    if query.since is not None or after is not None:
        lower = max(t for t in (query.since, after) if t is not None)
        time_conditions.append(sql.SQL("ts >= %(since)s"))
        params["since"] = lower
    if query.until is not None:
        time_conditions.append(sql.SQL("ts < %(until)s"))
        params["until"] = query.until
    conditions += time_conditions
    if query.request_id is not None:
        conditions.append(sql.SQL("request_id = %(request_id)s"))
        params["request_id"] = query.request_id
    if query.functions:
        conditions.append(sql.SQL("function_name = ANY(%(functions)s)"))
        params["functions"] = list(query.functions)
    if query.min_level is not None:
        conditions.append(sql.SQL("level = ANY(%(levels)s)"))
        params["levels"] = list(LEVELS[LEVELS.index(query.min_level) :])
    if query.error_type is not None:
        failed = sql.SQL(
            "SELECT request_id FROM {} WHERE error_type = %(error_type)s AND request_id IS NOT NULL"
        ).format(table)
        if time_conditions:
            failed = sql.Composed([failed, sql.SQL(" AND "), sql.SQL(" AND ").join(time_conditions)])
        conditions.append(sql.SQL("(error_type = %(error_type)s OR request_id IN ({}))").format(failed))
        params["error_type"] = query.error_type
    if query.grep is not None:
        conditions.append(sql.SQL("(message ILIKE %(grep)s OR record::text ILIKE %(grep)s)"))
        params["grep"] = _like_pattern(query.grep)
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")
    statement = sql.SQL(
        "SELECT {columns}, record::text FROM {table} WHERE {where}"
        # length() first: within one invocation the record ids share a prefix, so this is the sequence number order
        " ORDER BY ts, length(record_id), record_id LIMIT %(limit)s"
    ).format(columns=sql.SQL(", ").join(map(sql.Identifier, _SELECT)), table=table, where=where)
    return statement, params


def fetch(
    conn: psycopg.Connection[Any], table: sql.Identifier, query: AuditQuery, *, after: datetime | None = None
) -> list[Row]:
    """The matching records in time order, at most `query.limit + 1` of them (one more tells "truncated")."""
    statement, params = build_query(table, query, after=after)
    return [Row(*row) for row in conn.execute(statement, params).fetchall()]


# -- output ------------------------------------------------------------------------------------------------------
def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe(row: Row) -> str:
    """The message column of the table format: the report's numbers spelled out, newlines shown as `\\n`."""
    if row.kind == "report":
        text = f"REPORT status={row.status or '-'} duration={_number(row.duration_ms)}ms"
        if row.error_type:
            text += f" error_type={row.error_type}"
        if row.init_duration_ms is not None:
            text += f" init={_number(row.init_duration_ms)}ms"
    else:
        text = row.message or ""
    return text.replace("\r", "\\r").replace("\n", "\\n")


_HEADER = ("TIME (UTC)", "LEVEL", "KIND", "FUNCTION", "REQUEST ID", "MESSAGE")


class TableWriter:
    """Aligned columns; widths grow as wider values arrive (follow mode prints in several batches)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._widths = [len(h) for h in _HEADER[:-1]]
        self._header_done = False

    def write(self, rows: Sequence[Row]) -> None:
        cells = [
            (iso(r.ts), r.level or "-", r.kind or "-", r.function_name or "-", r.request_id or "-", describe(r))
            for r in rows
        ]
        for line in cells:
            self._widths = [max(w, len(c)) for w, c in zip(self._widths, line[:-1], strict=True)]
        if not self._header_done:
            self._line(_HEADER)
            self._header_done = True
        for line in cells:
            self._line(line)
        self._out.flush()

    def _line(self, cells: Sequence[str]) -> None:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], self._widths, strict=True)]
        print("  ".join([*padded, cells[-1]]), file=self._out)


class JsonWriter:
    """One stored record per line (JSON Lines), as PostgreSQL renders the jsonb: ready for `jq`."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, rows: Sequence[Row]) -> None:
        for row in rows:
            print(row.record, file=self._out)
        self._out.flush()


# -- the command ---------------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Add the subcommand's arguments to `parser` (the `runtime.cli` table's "module:function" target)."""
    parser.description = "Audit the logs table: every record of one request id, in time order, or a filtered view."
    parser.add_argument("request_id", nargs="?", metavar="REQUEST_ID", help="show this invocation's records")
    parser.add_argument("--function", action="append", default=[], metavar="NAME", help="function name (repeatable)")
    parser.add_argument("--level", metavar="LEVEL", help="this level and above: DEBUG, INFO, WARNING, ERROR, CRITICAL")
    parser.add_argument("--since", metavar="TIME", help="from TIME (ISO 8601, UTC if no offset; or 15m, 2h, 7d ago)")
    parser.add_argument("--until", metavar="TIME", help="before TIME (same forms as --since)")
    parser.add_argument("--error-type", metavar="TYPE", help="invocations that failed with this errorType")
    parser.add_argument("--grep", metavar="TEXT", help="case-insensitive text in the message or the stored record")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new records until interrupted")
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="follow mode's polling interval (default: 1)"
    )
    parser.add_argument(
        "--lookback",
        default="5m",
        metavar="DURATION",
        help="follow mode: also show records stored this late after their timestamp (default: 5m)",
    )
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"at most N records (default: {DEFAULT_LIMIT})"
    )
    add_database_arguments(parser)
    parser.set_defaults(run=run)


def query_from(args: argparse.Namespace, now: datetime) -> AuditQuery:
    """The AuditQuery the flags describe; CommandError(2) for a malformed one."""
    try:
        since = parse_time(args.since, now) if args.since else None
        until = parse_time(args.until, now) if args.until else None
        level = normalise_level(args.level) if args.level else None
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if args.limit < 1:
        raise CommandError("--limit must be at least 1", EXIT_USAGE)
    if args.follow and until is not None:
        raise CommandError("--follow cannot be combined with --until", EXIT_USAGE)
    if since is not None and until is not None and until <= since:
        raise CommandError("--until must be after --since", EXIT_USAGE)
    if since is None and args.request_id is None:
        since = now - DEFAULT_WINDOW
    return AuditQuery(
        request_id=args.request_id,
        functions=tuple(args.function),
        min_level=level,
        since=since,
        until=until,
        error_type=args.error_type,
        grep=args.grep,
        limit=args.limit,
    )


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run `flightrec logs` with parsed `args`; returns the exit status. `stop` ends follow mode (tests)."""
    out = out or sys.stdout
    err = err or sys.stderr
    interrupt = _Interrupt()
    try:
        with _sigint_ends_following(interrupt, enabled=bool(args.follow)):
            return _run(args, out, err, stop or threading.Event(), clock, interrupt=interrupt)
    except CommandError as exc:
        print(f"flightrec logs: {exc}", file=err)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_OK


class _Interrupt:
    """Follow mode's SIGINT handler: a flag the poll loop reads, and an exception only while a query runs.

    Why not Python's default handler: Python installs it only when SIGINT is not ignored at start-up, and SIG_IGN is
    inherited: a job started with `cmd &` by a non-interactive shell has SIGINT ignored, and so has every process it
    starts (a test suite run that way, and the `flightrec logs --follow` it spawns). `--follow` would then never end
    on `kill -INT`; only SIGTERM or SIGKILL would stop it, with a failure status.
    Why not `stop.set()`: the handler runs in the main thread between two bytecodes, possibly while that thread holds
    the Event's internal lock inside `stop.wait()`, and that lock is not reentrant: a deadlock.
    Why raise during a query: psycopg answers a KeyboardInterrupt inside its wait by cancelling the statement on the
    server (giving the cancel and the drain 5 s each), so a slow poll ends at once instead of running to completion.
    Between queries (sleeping, writing output) nothing is raised, so a record is never cut half-printed.
    """

    def __init__(self) -> None:
        self.requested = False
        self.raise_now = True  # connecting and the first query: nothing to finish, so stop at once

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self.requested = True
        if self.raise_now:
            raise KeyboardInterrupt


@contextmanager
def _sigint_ends_following(interrupt: _Interrupt, *, enabled: bool) -> Iterator[None]:
    """Install `interrupt` as the SIGINT handler for the block, then put the previous one back (callers in-process
    keep theirs). Only in the main thread, the only one Python lets set handlers; elsewhere `stop` ends following."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        if previous is not None:  # None: installed outside Python, nothing we could put back
            signal.signal(signal.SIGINT, previous)


def _run(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    stop: threading.Event,
    clock: Callable[[], datetime],
    *,
    interrupt: _Interrupt,
) -> int:
    query = query_from(args, clock())
    try:
        lookback = parse_duration(args.lookback)
    except ValueError as exc:
        raise CommandError(f"--lookback: {exc}", EXIT_USAGE) from None
    if args.interval <= 0:
        raise CommandError("--interval must be positive", EXIT_USAGE)
    target: Target = resolve(args)
    writer = JsonWriter(out) if args.format == "json" else TableWriter(out)
    with connect(target, args.connect_timeout) as conn:
        table = target.identifier()
        rows = fetch(conn, table, query)
        interrupt.raise_now = False
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            print(
                f"flightrec logs: showing the first {query.limit} matching records; "
                "narrow the filters or raise --limit",
                file=err,
            )
        if rows:
            writer.write(rows)
        if not args.follow:
            if not rows:
                print("flightrec logs: no records match", file=err)
                return EXIT_NO_ROWS
            return EXIT_OK
        _follow(
            conn, table, query, rows, writer, stop=stop, interrupt=interrupt, interval=args.interval, lookback=lookback
        )
    return EXIT_OK


def _pause(stop: threading.Event, interrupt: _Interrupt, interval: float) -> bool:
    """Sleep up to `interval`; True as soon as following should end. The sleep is cut into slices of at most
    `_FLAG_CHECK_S` because the SIGINT handler may only set a flag (see `_Interrupt`), which nothing can wait on."""
    deadline = time.monotonic() + interval
    while not (stop.is_set() or interrupt.requested):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        stop.wait(min(remaining, _FLAG_CHECK_S))
    return True


def _poll(
    conn: psycopg.Connection[Any],
    table: sql.Identifier,
    query: AuditQuery,
    *,
    after: datetime | None,
    interrupt: _Interrupt,
) -> list[Row]:
    """`fetch`, with SIGINT raising KeyboardInterrupt for exactly as long as the query runs (see `_Interrupt`)."""
    interrupt.raise_now = True
    try:
        if interrupt.requested:  # SIGINT came between the last look at the flag and here: run no new query
            raise KeyboardInterrupt
        return fetch(conn, table, query, after=after)
    finally:
        interrupt.raise_now = False


def _follow(
    conn: psycopg.Connection[Any],
    table: sql.Identifier,
    query: AuditQuery,
    shown: list[Row],
    writer: TableWriter | JsonWriter,
    *,
    stop: threading.Event,
    interrupt: _Interrupt,
    interval: float,
    lookback: timedelta,
) -> None:
    """Poll for records not shown yet. Records can be stored after later ones (each invocation's records are
    flushed when it ends), so each poll looks `lookback` behind the newest timestamp shown and skips record ids
    already printed; a record stored later than that after its timestamp is missed (run the query again)."""
    seen: dict[str, datetime] = {row.record_id: row.ts for row in shown}
    newest = max((row.ts for row in shown), default=None)
    poll = replace(query, limit=DEFAULT_LIMIT)
    while not _pause(stop, interrupt, interval):
        after = newest - lookback if newest is not None else None
        fresh = [row for row in _poll(conn, table, poll, after=after, interrupt=interrupt) if row.record_id not in seen]
        if not fresh:
            continue
        writer.write(fresh)
        for row in fresh:
            seen[row.record_id] = row.ts
        newest = max([*(r.ts for r in fresh), *([newest] if newest else [])])
        horizon = newest - lookback
        seen = {rid: ts for rid, ts in seen.items() if ts >= horizon}


def main(argv: list[str] | None = None) -> int:
    """`python -m telemetry.audit`, for when the `flightrec` entry point is not installed."""
    parser = argparse.ArgumentParser(prog="flightrec logs")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
