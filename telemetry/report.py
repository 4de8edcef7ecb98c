"""`flightrec report`: error rate and latency for a time range, as one self-contained HTML page with SVG charts.

    flightrec report --since 24h --out report.html
    flightrec report --since 2026-11-01 --until 2026-12-01 --function orders --bucket 1d --out november.html

For people without Grafana. The page has no scripts, fonts, images or links to fetch: it can be mailed, archived
next to an incident write-up, or opened offline, and what it shows cannot change after it was written. It holds:
summary figures (invocations, errors, error rate, p50/p95/p99 of the handler duration, cold starts), three charts
per time bucket (invocations split into successes and errors, error rate %, latency p50/p95/p99), errors by type
and the slowest invocations.

The numbers are the dashboards' numbers: computed by PostgreSQL from the report records (`kind = 'report'`) with
the same aggregates (`percentile_cont`, buckets of `floor(epoch / size) * size` like Grafana's `$__timeGroup`),
over `[since, until)`. Every drawn bar and point carries its exact value in `data-*` attributes (and a tooltip),
so a test, or a script, can read the figures back out of the page.

Why no PNG: that needs a plotting library (matplotlib and its native dependencies) for a command that runs rarely;
an SVG inside HTML is drawn by any browser, prints cleanly, and stays text that can be checked.

Exit status (see `telemetry.dbtool`): 0 written, 1 database error, 2 usage, 3 no report records in the range
(nothing is written), 4 the table does not exist.

Imports: stdlib, `.dbtool`; psycopg only when the command runs.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from telemetry.dbtool import (
    EXIT_NO_ROWS,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_database_arguments,
    connect,
    parse_duration,
    parse_time,
    resolve,
    run_reporting_errors,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

#: Bucket sizes `--bucket auto` chooses from (seconds): the smallest giving at most MAX_BUCKETS buckets.
NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 60
SLOWEST = 10
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class Summary:
    invocations: int
    errors: int
    p50: float | None
    p95: float | None
    p99: float | None
    max_ms: float | None
    cold_starts: int

    @property
    def error_rate(self) -> float | None:
        return 100 * self.errors / self.invocations if self.invocations else None

    @property
    def cold_start_rate(self) -> float | None:
        return 100 * self.cold_starts / self.invocations if self.invocations else None


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    invocations: int
    errors: int
    p50: float
    p95: float
    p99: float

    @property
    def error_rate(self) -> float:
        return 100 * self.errors / self.invocations


@dataclass(frozen=True, slots=True)
class Slow:
    ts: datetime
    function_name: str | None
    request_id: str | None
    duration_ms: float
    status: str | None
    error_type: str | None


@dataclass(frozen=True, slots=True)
class ReportData:
    since: datetime
    until: datetime
    bucket_s: int
    functions: tuple[str, ...]
    table: str
    summary: Summary
    buckets: list[Bucket]
    errors_by_type: list[tuple[str, int]]
    slowest: list[Slow]


def choose_bucket(since: datetime, until: datetime) -> int:
    """The smallest nice bucket size (seconds) that cuts the range into at most MAX_BUCKETS buckets."""
    span = (until - since).total_seconds()
    for size in NICE_BUCKETS:
        if span / size <= MAX_BUCKETS:
            return size
    return NICE_BUCKETS[-1]


# -- data --------------------------------------------------------------------------------------------------------
def _where(functions: Sequence[str]) -> str:
    where = "kind = 'report' AND ts >= %(since)s AND ts < %(until)s"
    return where + (" AND function_name = ANY(%(functions)s)" if functions else "")


_PERCENTILES = "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)"


def _sql(template: str, table: sql.Identifier, functions: Sequence[str]) -> sql.Composed:
    """`template` with {table}, {where} (the report records of the range) and {percentiles} filled in."""
    from psycopg import sql

    return sql.SQL(template).format(
        table=table, where=sql.SQL(_where(functions)), percentiles=sql.SQL(_PERCENTILES), limit=sql.Literal(SLOWEST)
    )


def load(
    conn: psycopg.Connection[Any],
    table: sql.Identifier,
    table_name: str,
    *,
    since: datetime,
    until: datetime,
    bucket_s: int,
    functions: Sequence[str] = (),
) -> ReportData:
    """Everything the page shows, computed by PostgreSQL over the report records of `[since, until)`."""
    params = {"since": since, "until": until, "functions": list(functions), "bucket": bucket_s}
    row = conn.execute(
        _sql(
            "SELECT count(*), count(*) FILTER (WHERE status = 'error'), {percentiles}, max(duration_ms),"
            " count(*) FILTER (WHERE cold_start) FROM {table} WHERE {where}",
            table,
            functions,
        ),
        params,
    ).fetchone()
    assert row is not None
    count, errors, quantiles, max_ms, cold = row
    p50, p95, p99 = quantiles if quantiles is not None else (None, None, None)
    summary = Summary(int(count), int(errors), p50, p95, p99, max_ms, int(cold))
    buckets = [
        Bucket(datetime.fromtimestamp(int(start), UTC), int(n), int(e), q[0], q[1], q[2])
        for start, n, e, q in conn.execute(
            _sql(
                "SELECT floor(extract(epoch from ts) / %(bucket)s) * %(bucket)s AS bucket, count(*),"
                " count(*) FILTER (WHERE status = 'error'), {percentiles} FROM {table} WHERE {where}"
                " GROUP BY 1 ORDER BY 1",
                table,
                functions,
            ),
            params,
        ).fetchall()
    ]
    by_type = [
        (str(error_type), int(n))
        for error_type, n in conn.execute(
            _sql(
                "SELECT coalesce(error_type, '(none)'), count(*) FROM {table} WHERE {where} AND status = 'error'"
                " GROUP BY 1 ORDER BY 2 DESC, 1",
                table,
                functions,
            ),
            params,
        ).fetchall()
    ]
    slowest = [
        Slow(*r)
        for r in conn.execute(
            _sql(
                "SELECT ts, function_name, request_id, duration_ms, status, error_type FROM {table} WHERE {where}"
                " AND duration_ms IS NOT NULL ORDER BY duration_ms DESC, ts, request_id LIMIT {limit}",
                table,
                functions,
            ),
            params,
        ).fetchall()
    ]
    return ReportData(since, until, bucket_s, tuple(functions), table_name, summary, buckets, by_type, slowest)


# -- drawing -----------------------------------------------------------------------------------------------------
WIDTH, HEIGHT = 960, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 36
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
COLORS = {"success": "#3fa34d", "error": "#d64545", "p50": "#3fa34d", "p95": "#e08a1e", "p99": "#d64545"}


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `value` (the top of a y axis)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return float(step * power)
    return float(10 * power)


def axis_top(value: float, ticks: int = 4) -> float:
    """The top of a y axis with `ticks` equal steps, each step a nice number (so 0, 10, 20, 30, 40)."""
    return ticks * nice_ceiling(value / ticks)


def human_seconds(seconds: int) -> str:
    """`90` -> `1m30s`, `86400` -> `1d`: bucket sizes as people write them."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _fmt(value: float) -> str:
    """A coordinate: two decimals are far below a pixel and keep the page small."""
    return f"{value:.2f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


class Chart:
    """One SVG chart: a time x axis over [since, until) and a linear y axis from 0 to `y_max`."""

    def __init__(self, title: str, data: ReportData, y_max: float, unit: str, css: str) -> None:
        self.title, self.data, self.y_max, self.unit, self.css = title, data, y_max, unit, css
        self.span = (data.until - data.since).total_seconds()
        self.parts: list[str] = []

    def x(self, moment: datetime) -> float:
        return LEFT + PLOT_W * ((moment - self.data.since).total_seconds() / self.span)

    def y(self, value: float) -> float:
        return TOP + PLOT_H * (1 - value / self.y_max)

    def bucket_span(self, bucket: Bucket) -> tuple[float, float]:
        """Left edge and width of a bucket's bar, clipped to the plot, with a small gap between bars."""
        start = max(bucket.start, self.data.since)
        end = min(bucket.start + timedelta(seconds=self.data.bucket_s), self.data.until)
        left, right = self.x(start), self.x(end)
        gap = min(2.0, (right - left) * 0.15)
        return left + gap / 2, max(right - left - gap, 0.5)

    def axes(self) -> None:
        for i in range(5):
            value = self.y_max * i / 4
            y = self.y(value)
            self.parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{_fmt(y)}" y2="{_fmt(y)}"/>')
            self.parts.append(
                f'<text class="ytick" x="{LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end">{value:g}{self.unit}</text>'
            )
        for moment in _time_ticks(self.data.since, self.data.until):
            x = self.x(moment)
            self.parts.append(
                f'<line class="tick" x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H + 4}"/>'
            )
            label = moment.strftime(
                "%H:%M:%S" if self.span <= 600 else "%H:%M" if self.span <= 2 * 86400 else "%m-%d %H:%M"
            )
            self.parts.append(
                f'<text class="xtick" x="{_fmt(x)}" y="{TOP + PLOT_H + 18}" text-anchor="middle">{label}</text>'
            )
        self.parts.append(
            f'<line class="axis" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H}"/>'
        )

    def svg(self) -> str:
        body = "\n".join(self.parts)
        return (
            f'<svg class="chart {self.css}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{html.escape(self.title)}" '
            f'data-y-max="{self.y_max!r}" data-plot-top="{TOP}" data-plot-height="{PLOT_H}">\n{body}\n</svg>'
        )


def _time_ticks(since: datetime, until: datetime, count: int = 6) -> list[datetime]:
    """About `count` round times within the range."""
    span = (until - since).total_seconds()
    step = next((s for s in NICE_BUCKETS if span / s <= count), NICE_BUCKETS[-1])
    first = math.ceil(since.timestamp() / step) * step
    return [datetime.fromtimestamp(t, UTC) for t in range(first, int(until.timestamp()) + 1, step)]


def _label(bucket: Bucket, size: int) -> str:
    end = bucket.start + timedelta(seconds=size)
    return f"{bucket.start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC"


def invocations_chart(data: ReportData) -> str:
    top = axis_top(max((b.invocations for b in data.buckets), default=1))
    chart = Chart("Invocations per bucket: successes and errors", data, top, "", "invocations")
    chart.axes()
    for b in data.buckets:
        left, width = chart.bucket_span(b)
        ok = b.invocations - b.errors
        tip = html.escape(f"{_label(b, data.bucket_s)}: {b.invocations} invocations, {b.errors} errors")
        common = f'data-bucket="{b.start.isoformat()}" data-invocations="{b.invocations}" data-errors="{b.errors}"'
        for css, low, high in (("success", 0, ok), ("error", ok, b.invocations)):
            if high == low:
                continue
            chart.parts.append(
                f'<rect class="bar {css}" {common} x="{_fmt(left)}" width="{_fmt(width)}" y="{_fmt(chart.y(high))}" '
                f'height="{_fmt(chart.y(low) - chart.y(high))}" fill="{COLORS[css]}"><title>{tip}</title></rect>'
            )
    return chart.svg()


def error_rate_chart(data: ReportData) -> str:
    top = min(100.0, axis_top(max((b.error_rate for b in data.buckets), default=0.0)))
    chart = Chart("Error rate per bucket (%)", data, top, "%", "error-rate")
    chart.axes()
    for b in data.buckets:
        left, width = chart.bucket_span(b)
        tip = html.escape(f"{_label(b, data.bucket_s)}: {b.error_rate:.2f}% ({b.errors} of {b.invocations})")
        chart.parts.append(
            f'<rect class="bar rate" data-bucket="{b.start.isoformat()}" data-value="{b.error_rate!r}" '
            f'data-errors="{b.errors}" data-invocations="{b.invocations}" x="{_fmt(left)}" width="{_fmt(width)}" '
            f'y="{_fmt(chart.y(b.error_rate))}" height="{_fmt(chart.y(0) - chart.y(b.error_rate))}" '
            f'fill="{COLORS["error"]}"><title>{tip}</title></rect>'
        )
    return chart.svg()


def latency_chart(data: ReportData) -> str:
    top = axis_top(max((b.p99 for b in data.buckets), default=1.0))
    chart = Chart("Handler duration per bucket: p50, p95, p99 (ms)", data, top, " ms", "latency")
    chart.axes()
    for name in ("p50", "p95", "p99"):
        points = []
        for b in data.buckets:
            left, width = chart.bucket_span(b)
            value: float = getattr(b, name)
            points.append((left + width / 2, chart.y(value), b, value))
        path = " ".join(f"{_fmt(px)},{_fmt(py)}" for px, py, _, _ in points)
        chart.parts.append(f'<polyline class="line {name}" points="{path}" fill="none" stroke="{COLORS[name]}"/>')
        for px, py, b, value in points:
            tip = html.escape(f"{_label(b, data.bucket_s)}: {name} {value:.3f} ms")
            chart.parts.append(
                f'<circle class="point {name}" data-bucket="{b.start.isoformat()}" data-value="{value!r}" '
                f'cx="{_fmt(px)}" cy="{_fmt(py)}" r="3" fill="{COLORS[name]}"><title>{tip}</title></circle>'
            )
    return chart.svg()


_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232b; margin: 24px;
       max-width: 1000px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #5b6572; margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; }
.card { border: 1px solid #d8dde3; border-radius: 6px; padding: 8px 14px; }
.card .label { color: #5b6572; font-size: 12px; } .card .value { font-size: 22px; font-weight: 600; }
.card.bad .value { color: #d64545; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg .grid { stroke: #e6e9ed; } svg .axis, svg .tick { stroke: #8a939e; }
svg text { font-size: 11px; fill: #5b6572; } svg .line { stroke-width: 2; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #eceff2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } code { font-size: 12px; }
"""


def _card(label: str, metric: str, value: float | int | None, shown: str, *, bad: bool = False) -> str:
    data_value = "" if value is None else repr(value)
    return (
        f'<div class="card{" bad" if bad else ""}"><div class="label">{label}</div>'
        f'<div class="value" data-metric="{metric}" data-value="{data_value}">{shown}</div></div>'
    )


def _legend(*names: str) -> str:
    items = "".join(f'<span><i style="background:{COLORS[n]}"></i>{n}</span>' for n in names)
    return f'<div class="legend">{items}</div>'


def render(data: ReportData, generated: datetime) -> str:
    """The whole page."""
    s = data.summary
    esc = html.escape
    functions = ", ".join(data.functions) if data.functions else "all functions"
    cards = "".join(
        [
            _card("Invocations", "invocations", s.invocations, f"{s.invocations:,}"),
            _card("Errors", "errors", s.errors, f"{s.errors:,}", bad=s.errors > 0),
            _card("Error rate", "error_rate", s.error_rate, f"{_num(s.error_rate, 2)} %", bad=s.errors > 0),
            _card("p50", "p50", s.p50, f"{_num(s.p50)} ms"),
            _card("p95", "p95", s.p95, f"{_num(s.p95)} ms"),
            _card("p99", "p99", s.p99, f"{_num(s.p99)} ms"),
            _card("Slowest", "max", s.max_ms, f"{_num(s.max_ms)} ms"),
            _card("Cold starts", "cold_starts", s.cold_starts, f"{s.cold_starts:,} ({_num(s.cold_start_rate)} %)"),
        ]
    )
    error_rows = (
        "".join(
            f'<tr><td><code>{esc(t)}</code></td><td class="num" data-error-type="{esc(t)}">{n}</td></tr>'
            for t, n in data.errors_by_type
        )
        or '<tr><td colspan="2">no errors</td></tr>'
    )
    slow_rows = "".join(
        f"<tr><td>{r.ts.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}</td><td>{esc(r.function_name or '-')}</td>"
        f"<td><code>{esc(r.request_id or '-')}</code></td>"
        f'<td class="num" data-request-id="{esc(r.request_id or "")}" data-value="{r.duration_ms!r}">'
        f"{r.duration_ms:,.3f}</td><td>{esc(r.status or '-')}</td><td>{esc(r.error_type or '')}</td></tr>"
        for r in data.slowest
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>flightrec report {data.since:%Y-%m-%d %H:%M} to {data.until:%Y-%m-%d %H:%M} UTC</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Invocations, errors and latency</h1>
<p class="meta" data-since="{data.since.isoformat()}" data-until="{data.until.isoformat()}"
   data-bucket-seconds="{data.bucket_s}">{data.since:%Y-%m-%d %H:%M:%S} to {data.until:%Y-%m-%d %H:%M:%S} UTC
 · {esc(functions)} · buckets of {human_seconds(data.bucket_s)} · table <code>{esc(data.table)}</code>
 · generated {generated:%Y-%m-%d %H:%M:%S} UTC by <code>flightrec report</code></p>
<div class="cards">{cards}</div>
<h2>Invocations</h2>
{_legend("success", "error")}
{invocations_chart(data)}
<h2>Error rate</h2>
{error_rate_chart(data)}
<h2>Latency</h2>
{_legend("p50", "p95", "p99")}
{latency_chart(data)}
<h2>Errors by type</h2>
<table class="errors-by-type"><tr><th>error type</th><th>invocations</th></tr>{error_rows}</table>
<h2>Slowest invocations</h2>
<table class="slowest"><tr><th>time (UTC)</th><th>function</th><th>request id</th><th>duration ms</th><th>status</th>
<th>error type</th></tr>{slow_rows}</table>
</body>
</html>
"""


# -- the command ---------------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Add the subcommand's arguments to `parser` (the `runtime.cli` table's "module:function" target)."""
    parser.description = "Write error-rate and latency charts for a time range as a self-contained HTML page."
    parser.add_argument(
        "--since", required=True, metavar="TIME", help="from TIME (ISO 8601, UTC if no offset; or 2h, 7d ago)"
    )
    parser.add_argument("--until", default="now", metavar="TIME", help="to TIME, exclusive (default: now)")
    parser.add_argument(
        "--function", action="append", default=[], metavar="NAME", help="only this function (repeatable)"
    )
    parser.add_argument(
        "--bucket",
        default="auto",
        metavar="SIZE",
        help=f"bucket size (30s, 5m, 1h, 1d) or auto (≤ {MAX_BUCKETS} buckets)",
    )
    parser.add_argument(
        "--out", default="flightrec-report.html", metavar="FILE", help="output file (default: %(default)s)"
    )
    add_database_arguments(parser)
    parser.set_defaults(run=run)


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run `flightrec report` with parsed `args`; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    return run_reporting_errors("report", err, lambda: _run(args, out, err, clock))


def _run(args: argparse.Namespace, out: TextIO, err: TextIO, clock: Callable[[], datetime]) -> int:
    now = clock()
    try:
        since, until = parse_time(args.since, now).astimezone(UTC), parse_time(args.until, now).astimezone(UTC)
        bucket_s = choose_bucket(since, until) if args.bucket == "auto" else parse_duration(args.bucket).total_seconds()
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if until <= since:
        raise CommandError("--until must be after --since", EXIT_USAGE)
    if bucket_s < 1 or bucket_s != int(bucket_s):
        raise CommandError("--bucket must be a whole number of seconds, at least 1s", EXIT_USAGE)
    if (until - since).total_seconds() / bucket_s > 10_000:
        raise CommandError("--bucket is too small for this range (more than 10000 buckets)", EXIT_USAGE)
    target = resolve(args)
    with connect(target, args.connect_timeout) as conn:
        data = load(
            conn, target.identifier(), target.table, since=since, until=until, bucket_s=int(bucket_s),
            functions=args.function,
        )  # fmt: skip
    if data.summary.invocations == 0:
        print(f"flightrec report: no report records in {target.table} between {since} and {until}", file=err)
        return EXIT_NO_ROWS
    page = render(data, clock().astimezone(UTC))
    Path(args.out).write_text(page, encoding="utf-8")
    s = data.summary
    print(
        f"flightrec report: wrote {args.out}: {s.invocations} invocations, {s.errors} errors"
        f" ({_num(s.error_rate, 2)} %), p50 {_num(s.p50)} ms, p95 {_num(s.p95)} ms, p99 {_num(s.p99)} ms",
        file=out,
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m telemetry.report`, for when the `flightrec` entry point is not installed."""
    parser = argparse.ArgumentParser(prog="flightrec report")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
