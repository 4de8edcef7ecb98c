#!/usr/bin/env python3
"""Generate `flightrec-overview.json` from `queries/*.sql`: the SQL files are the one source of truth.

Why generated: each panel's SQL must be readable and runnable on its own (psql, the tests, a code review), and a
dashboard JSON holds it as an escaped one-line string. So the SQL lives in `queries/NN-name.sql` (its leading
`--` comment becomes the panel's description), the layout and display options live in `PANELS` below, and this
script writes the JSON. `python dashboards/build.py --check` fails when the committed JSON is not what the
sources produce (the unit tests run that check too), so the two never drift apart.

Target: Grafana 11.6+, classic (v1) dashboard JSON, schemaVersion 41, the PostgreSQL data source plugin
(`grafana-postgresql-datasource`). Stdlib only: it runs without the project's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
QUERIES = HERE / "queries"
OUTPUT = HERE / "flightrec-overview.json"

DASHBOARD_UID = "flightrec-overview"
DATASOURCE_UID = "flightrec-postgres"  # the provisioned data source (provisioning/datasources/flightrec.yaml)
DATASOURCE_TYPE = "grafana-postgresql-datasource"  # the plugin id since Grafana 10.2 ("postgres" before)
SCHEMA_VERSION = 41  # Grafana 11.6's dashboard schema version
DS = {"type": DATASOURCE_TYPE, "uid": "${datasource}"}

#: Clicking a cell of a table row opens this dashboard filtered to that row's request, same time range and
#: functions. (A field link in `defaults`, because the published schema only admits object-valued overrides.)
ROW_REQUEST_LINK = {
    "title": "Show this request's log records",
    "type": "link",
    "icon": "doc",
    "tooltip": "Filter the log records panel to this row's request id",
    "url": f"/d/{DASHBOARD_UID}/?${{__url_time_range}}&${{function:queryparam}}"
    "&var-request_id=${__data.fields.request_id}",
    "tags": [],
    "asDropdown": False,
    "targetBlank": False,
    "includeVars": False,
    "keepTime": True,
}


@dataclass(frozen=True)
class PanelSpec:
    """One panel: where its SQL is, how it is drawn, where it sits (x, y, w, h on the 24-column grid)."""

    id: int
    query: str
    title: str
    type: str  # stat | timeseries | barchart | table
    fmt: str  # time_series | table (the SQL data source's result format)
    grid: tuple[int, int, int, int]
    unit: str = "short"
    decimals: int | None = None
    color: str | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)


def _color(name: str, color: str) -> dict[str, Any]:
    """A fixed color for the series `name`. `byNames` (object options) rather than `byName` (a string), and only
    object values: the published dashboard schema admits nothing else in an override, and Grafana reads both."""
    return {
        "matcher": {"id": "byNames", "options": {"mode": "include", "names": [name]}},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }


_STAT_OPTIONS = {
    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    "colorMode": "value",
    "graphMode": "none",
    "justifyMode": "auto",
    "orientation": "auto",
    "textMode": "value",
    "wideLayout": True,
    "showPercentChange": False,
}
_LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
_TOOLTIP = {"mode": "multi", "sort": "none"}
_LINES = {"drawStyle": "line", "lineWidth": 2, "fillOpacity": 10, "pointSize": 4, "showPoints": "auto",
          "spanNulls": False, "axisPlacement": "auto"}  # fmt: skip
_BARS = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "stacking": {"mode": "normal", "group": "A"},
         "axisPlacement": "auto"}  # fmt: skip
_TABLE_OPTIONS = {
    "showHeader": True,
    "cellHeight": "sm",
    "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""},
}

PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(1, "01-stat-invocations.sql", "Invocations", "stat", "table", (0, 0, 6, 4),
              unit="short", color="blue", options=_STAT_OPTIONS),
    PanelSpec(2, "02-stat-error-rate.sql", "Error rate", "stat", "table", (6, 0, 6, 4),
              unit="percent", decimals=2, color="red", options=_STAT_OPTIONS),
    PanelSpec(3, "03-stat-p95.sql", "Latency p95", "stat", "table", (12, 0, 6, 4),
              unit="ms", decimals=1, color="purple", options=_STAT_OPTIONS),
    PanelSpec(4, "04-stat-cold-starts.sql", "Cold starts", "stat", "table", (18, 0, 6, 4),
              unit="percent", decimals=1, color="orange", options=_STAT_OPTIONS),
    PanelSpec(5, "05-invocations-over-time.sql", "Invocations over time", "timeseries", "time_series",
              (0, 4, 12, 8), unit="short", custom=_BARS, options={"legend": _LEGEND, "tooltip": _TOOLTIP},
              overrides=[_color("success", "green"), _color("error", "red")]),
    PanelSpec(6, "06-error-rate.sql", "Error rate %", "timeseries", "time_series", (12, 4, 12, 8),
              unit="percent", decimals=1, color="red", custom={**_LINES, "axisSoftMin": 0, "axisSoftMax": 100},
              options={"legend": _LEGEND, "tooltip": _TOOLTIP}),
    PanelSpec(7, "08-latency-percentiles.sql", "Latency p50 / p95 / p99", "timeseries", "time_series",
              (0, 12, 12, 8), unit="ms", custom=_LINES, options={"legend": _LEGEND, "tooltip": _TOOLTIP},
              overrides=[_color("p50", "green"), _color("p95", "orange"), _color("p99", "red")]),
    PanelSpec(8, "07-errors-by-type.sql", "Errors by type", "barchart", "table", (12, 12, 12, 8),
              unit="short", color="red",
              options={"orientation": "horizontal", "xField": "error type", "showValue": "auto",
                       "stacking": "none", "barWidth": 0.8, "groupWidth": 0.7, "xTickLabelRotation": 0,
                       "legend": {**_LEGEND, "showLegend": False}, "tooltip": {"mode": "single", "sort": "none"}}),
    PanelSpec(9, "09-cold-start-rate.sql", "Cold-start rate %", "timeseries", "time_series", (0, 20, 12, 8),
              unit="percent", decimals=1, color="orange", custom={**_LINES, "axisSoftMin": 0, "axisSoftMax": 100},
              options={"legend": _LEGEND, "tooltip": _TOOLTIP}),
    PanelSpec(10, "10-init-duration.sql", "Init duration of cold starts", "timeseries", "time_series",
              (12, 20, 12, 8), unit="ms", custom={**_LINES, "drawStyle": "points", "pointSize": 6},
              options={"legend": _LEGEND, "tooltip": _TOOLTIP},
              overrides=[_color("init duration (avg)", "blue"), _color("init duration (max)", "purple")]),
    PanelSpec(11, "11-slowest-invocations.sql", "Slowest invocations", "table", "table", (0, 28, 24, 9),
              unit="none", decimals=1, links=[ROW_REQUEST_LINK],
              options={**_TABLE_OPTIONS, "sortBy": [{"displayName": "duration_ms", "desc": True}]}),
    PanelSpec(12, "12-log-records.sql", "Log records (filtered by function and request id)", "table", "table",
              (0, 37, 24, 12), unit="none", links=[ROW_REQUEST_LINK], options=_TABLE_OPTIONS),
)  # fmt: skip

FUNCTION_VARIABLE_QUERY = "variable-function.sql"


def read_query(name: str) -> tuple[str, str]:
    """(description, SQL) of `queries/<name>`: the leading `--` lines are the description, the rest is the SQL."""
    lines = (QUERIES / name).read_text().strip().splitlines()
    description: list[str] = []
    while lines and lines[0].startswith("--"):
        description.append(lines.pop(0)[2:].strip())
    return " ".join(description), "\n".join(lines).strip()


def _panel(spec: PanelSpec) -> dict[str, Any]:
    description, sql = read_query(spec.query)
    x, y, w, h = spec.grid
    defaults: dict[str, Any] = {"unit": spec.unit}
    if spec.decimals is not None:
        defaults["decimals"] = spec.decimals
    defaults["color"] = {"mode": "fixed", "fixedColor": spec.color} if spec.color else {"mode": "palette-classic"}
    if spec.custom:
        defaults["custom"] = spec.custom
    if spec.links:
        defaults["links"] = spec.links
    return {
        "id": spec.id,
        "type": spec.type,
        "title": spec.title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {
                "refId": "A",
                "datasource": DS,
                "editorMode": "code",
                "format": spec.fmt,
                "rawQuery": True,
                "rawSql": sql,
            }
        ],
        "fieldConfig": {"defaults": defaults, "overrides": spec.overrides},
        "options": spec.options,
    }


def _variables() -> list[dict[str, Any]]:
    _, function_sql = read_query(FUNCTION_VARIABLE_QUERY)
    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "description": "The PostgreSQL data source holding the flightrec logs table",
            "query": DATASOURCE_TYPE,
            "current": {"text": DATASOURCE_UID, "value": DATASOURCE_UID},
            "regex": "",
            "hide": 0,
            "refresh": 1,
            "includeAll": False,
            "multi": False,
            "options": [],
        },
        {
            "type": "query",
            "name": "function",
            "label": "Function",
            "description": "Functions that reported an invocation in the time range",
            "datasource": DS,
            "query": function_sql,
            "current": {"text": ["All"], "value": ["$__all"]},
            "refresh": 2,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "regex": "",
            "hide": 0,
            "options": [],
        },
        {
            "type": "textbox",
            "name": "request_id",
            "label": "Request id",
            "description": "Show only this request's log records (empty: all requests)",
            "query": "",
            "current": {"text": "", "value": ""},
            "hide": 0,
            "options": [],
        },
    ]


def build() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    return {
        "uid": DASHBOARD_UID,
        "title": "Flight recorder: invocations, errors, latency",
        "description": "Error rates, latency and cold starts from the report records of lambda-flight-recorder's "
        "PostgreSQL logs table, and the log records of one request.",
        "tags": ["flightrec", "lambda", "postgresql"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": _variables()},
        "panels": [_panel(spec) for spec in PANELS],
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.name} is out of date: run python dashboards/build.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
