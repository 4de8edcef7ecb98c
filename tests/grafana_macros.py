"""Expand a Grafana PostgreSQL panel query the way Grafana 11.6 does, so the tests can run the exact SQL.

No Grafana server can be installed here (test-peers.md §5), so the tests reproduce its two expansion passes on the
dashboard's `rawSql` and send the result to a real PostgreSQL. What this expander supports, and how Grafana does
the same (read from grafana/grafana: `public/app/features/plugins/sql/datasource/SqlDatasource.ts`,
`pkg/tsdb/grafana-postgresql-datasource/macros.go`, `pkg/tsdb/sqleng/sql_engine.go`):

1. Template variables (Grafana's frontend, `templateSrv.replace` with the SQL data source's `interpolateVariable`):
   `$name`, `${name}` and `[[name]]` of a dashboard variable are replaced by its value, formatted for SQL:
   - a variable with "Multi-value" or "Include All" on (`MultiVariable`): every selected value as a quoted literal,
     `'` doubled, joined by commas: `'fn-a','it''s'`. "All" (without a custom all value, as in our dashboard) is
     every option of the variable, so the tests pass the options as the selection;
   - any other variable (`TextVariable`, e.g. a text box): the text itself with `'` doubled and no quotes added
     (Grafana 10.4+; older versions inserted it raw), so the SQL must quote it: `'$request_id'`.
   Names starting with `__` are left for the later passes; an unknown variable or a `${name:format}` raises.
2. Global macros (backend, `sqleng.Interpolate`): `$__interval_ms` → the interval in milliseconds, `$__interval`
   → the interval text (e.g. `1m`), `$__unixEpochFrom()` / `$__unixEpochTo()` → Unix seconds.
   Grafana computes the interval from the time range and the panel's width; here the caller gives it.
3. PostgreSQL macros (backend, regex `\\$(\\w+)\\(([^)]*)\\)`, arguments split on `,` and trimmed):
   - `$__time(col)` → `col AS "time"`; `$__timeEpoch(col)` → `extract(epoch from col) as "time"`
   - `$__timeFilter(col)` → `col BETWEEN 'FROM' AND 'TO'`, both bounds inclusive, RFC 3339 UTC with Go's
     `RFC3339Nano` layout (trailing zeros of the fraction dropped: `2026-11-30T03:00:00Z`, `…:05.25Z`)
   - `$__timeFrom()` / `$__timeTo()` → `'FROM'` / `'TO'` in the same layout
   - `$__timeGroup(col, interval)` → `floor(extract(epoch from col)/S)*S` with S the interval in seconds printed as
     Go's `%v` prints a float64 (`60`, `0.5`, `2.592e+06`); `$__timeGroupAlias(…)` appends ` AS "time"`.
     The interval is Go/Grafana syntax (`500ms`, `1m`, `1h30m`, `1d`, `1w`; days and weeks taken as 24 h and 7 d,
     which is what Grafana's calendar arithmetic gives in UTC). `$__timeGroup(col, interval)` directly followed by
     `,` is treated as `$__timeGroupAlias`, as Grafana does for pre-5.3 dashboards.
   - `$__unixEpochFilter(col)` → `col >= FROM_S AND col <= TO_S`; `$__unixEpochGroup(col, interval)` →
     `floor((col)/S)*S` (and `…Alias`); `$__unixEpochNanoFilter/From/To` with nanoseconds.
   Not supported (they raise): a fill argument (`$__timeGroup(col, 1m, 0)`: Grafana fills missing buckets in Go
   after the query, which SQL alone cannot show), TimescaleDB's `time_bucket` form, and unknown macros (Grafana
   fails the query for those too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True)
class MultiVariable:
    """A variable with Multi-value or Include All on: its selected values (for "All": all its options)."""

    selected: Sequence[str]


@dataclass(frozen=True)
class TextVariable:
    """A single-value variable (text box, constant, or a query variable without multi/all)."""

    value: str


Variable = MultiVariable | TextVariable

_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|s|m|h|d|w)")
_UNIT_SECONDS = {"ns": Decimal("1e-9"), "us": Decimal("1e-6"), "µs": Decimal("1e-6"), "ms": Decimal("0.001"),
                 "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400),
                 "w": Decimal(604800)}  # fmt: skip


class MacroError(ValueError):
    """The query uses something this expander (or Grafana) cannot expand."""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format_variable(variable: Variable) -> str:
    if isinstance(variable, MultiVariable):
        return ",".join(_quote(value) for value in variable.selected)
    return variable.value.replace("'", "''")


def replace_variables(sql: str, variables: Mapping[str, Variable]) -> str:
    """Pass 1: dashboard variables, formatted as Grafana's SQL data sources format them."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        if name.startswith("__"):
            return match.group(0)  # built-ins and macros: later passes
        if match.group(3) or match.group(5) or match.group(6):
            raise MacroError(f"{match.group(0)}: variable formats and field paths are not supported")
        if name not in variables:
            raise MacroError(f"{match.group(0)}: no such dashboard variable")
        return _format_variable(variables[name])

    return _VARIABLE.sub(substitute, sql)


def parse_interval(text: str) -> Decimal:
    """Seconds in a Grafana interval (`1m`, `500ms`, `1h30m`, `1d`); months and years are refused."""
    text = text.strip().strip("'")
    position, total = 0, Decimal(0)
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            break
        total += Decimal(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if not text or position != len(text) or total <= 0:
        raise MacroError(f"error parsing interval {text!r}")
    return total


def go_float(value: Decimal) -> str:
    """`fmt.Sprintf("%v", float64)`: the shortest round-trip digits, exponent form below 1e-4 and from 1e6."""
    number = float(value)
    digits, exponent = _shortest_digits(number)
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return format(Decimal(repr(number)).normalize(), "f")


def _shortest_digits(number: float) -> tuple[str, int]:
    """The significant digits of repr(number) (shortest round-trip, like Go) and the decimal exponent."""
    sign, digit_tuple, exp = Decimal(repr(number)).normalize().as_tuple()
    del sign
    digits = "".join(map(str, digit_tuple))
    assert isinstance(exp, int)
    return digits, exp + len(digits) - 1


def rfc3339nano(moment: datetime) -> str:
    """Go's `t.UTC().Format(time.RFC3339Nano)`: fraction without trailing zeros, `Z` for UTC."""
    if moment.tzinfo is None:
        raise MacroError("time range bounds must be timezone-aware")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _epoch(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() // 1)


def _epoch_ns(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta // timedelta(microseconds=1)) * 1000


def expand(
    sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval: str = "1m",
    variables: Mapping[str, Variable] | None = None,
) -> str:
    """The SQL Grafana would send to PostgreSQL for this panel, time range, interval and variable values."""
    sql = replace_variables(sql, variables or {})
    interval_s = parse_interval(interval)
    sql = sql.replace("$__interval_ms", str(int(interval_s * 1000)))
    sql = sql.replace("$__interval", interval)
    sql = sql.replace("$__unixEpochFrom()", str(_epoch(time_from)))
    sql = sql.replace("$__unixEpochTo()", str(_epoch(time_to)))
    original = sql

    def macro(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [arg.strip() for arg in match.group(2).split(",")]
        if name == "__timeGroup" and original[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        return _evaluate(name, args, time_from, time_to)

    return _MACRO.sub(macro, sql)


def _evaluate(name: str, args: list[str], time_from: datetime, time_to: datetime) -> str:
    column = args[0] if args and args[0] else None
    needs_column = {"__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter", "__unixEpochNanoFilter"}
    if name in needs_column and column is None:
        raise MacroError(f"missing time column argument for macro {name}")
    if name in {"__timeGroup", "__timeGroupAlias", "__unixEpochGroup", "__unixEpochGroupAlias"}:
        return _group(name, args)
    start, end = rfc3339nano(time_from), rfc3339nano(time_to)
    simple = {
        "__time": lambda: f'{column} AS "time"',
        "__timeEpoch": lambda: f'extract(epoch from {column}) as "time"',
        "__timeFilter": lambda: f"{column} BETWEEN '{start}' AND '{end}'",
        "__timeFrom": lambda: f"'{start}'",
        "__timeTo": lambda: f"'{end}'",
        "__unixEpochFilter": lambda: f"{column} >= {_epoch(time_from)} AND {column} <= {_epoch(time_to)}",
        "__unixEpochNanoFilter": lambda: f"{column} >= {_epoch_ns(time_from)} AND {column} <= {_epoch_ns(time_to)}",
        "__unixEpochNanoFrom": lambda: str(_epoch_ns(time_from)),
        "__unixEpochNanoTo": lambda: str(_epoch_ns(time_to)),
    }
    if name not in simple:
        raise MacroError(f"unknown macro {name!r}")
    return simple[name]()


def _group(name: str, args: list[str]) -> str:
    if len(args) < 2:
        raise MacroError(f"macro {name} needs time column and interval and optional fill value")
    if len(args) > 2:
        raise MacroError(f"macro {name}: fill values are applied by Grafana after the query; not supported here")
    seconds = go_float(parse_interval(args[1]))
    if name.startswith("__timeGroup"):
        group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
    else:
        group = f"floor(({args[0]})/{seconds})*{seconds}"
    return group + (' AS "time"' if name.endswith("Alias") else "")
