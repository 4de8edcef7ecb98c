"""The Grafana dashboards, offline: schema-valid for Grafana 11.6 and the current v1 model, generated from the SQL
files, wired to the right data source and variables, and every panel's SQL built from the time macros and real
columns. The SQL's numbers are proven against PostgreSQL in tests/integration/test_dashboards_sql.py.

Also the macro expander those integration tests use (tests/grafana_macros.py): exact expansions, as Grafana's
PostgreSQL data source produces them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft7Validator

from telemetry.schema import COLUMNS
from tests.grafana_macros import (
    MacroError,
    MultiVariable,
    TextVariable,
    expand,
    go_float,
    parse_interval,
    rfc3339nano,
)

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
SCHEMAS = REPO.parent / "shared" / "reference" / "grafana"
VENDORED = REPO / "tests" / "data" / "grafana"
SCHEMA_FILES = ("dashboard.v11.6.jsonschema.json", "dashboard.main-2026-06.jsonschema.json")
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))
PG_TYPE = "grafana-postgresql-datasource"
DS_REF = {"type": PG_TYPE, "uid": "${datasource}"}


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def schema(name: str) -> dict[str, Any]:
    path = VENDORED / name
    return json.loads(path.read_text())


def dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in doc["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # panels inside a collapsed row
    return [p for p in found if p["type"] != "row"]


def panel_sql(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["rawSql"]) for p in panels(doc) for t in p["targets"]]


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARD_FILES] == ["flightrec-overview.json"]


# -- the schemas ---------------------------------------------------------------------------------------------------
def test_the_vendored_schemas_are_the_reference_copies() -> None:
    # The tests carry their own copy (the repository must work without ../shared); it must not drift.
    for name in SCHEMA_FILES:
        if (SCHEMAS / name).exists():
            assert (VENDORED / name).read_bytes() == (SCHEMAS / name).read_bytes(), name
    assert (VENDORED / "LICENSE").exists()


@pytest.mark.parametrize("schema_name", SCHEMA_FILES)
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_validates_against_grafanas_published_schema(path: Path, schema_name: str) -> None:
    errors = sorted(Draft7Validator(schema(schema_name)).iter_errors(dashboard(path)), key=lambda e: e.path)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors)


@pytest.mark.parametrize("schema_name", SCHEMA_FILES)
def test_the_schemas_do_reject_a_broken_dashboard(schema_name: str) -> None:
    # Guard against a validator that accepts anything (e.g. a schema that failed to load its definitions).
    doc = dashboard(DASHBOARD_FILES[0])
    doc["panels"][0]["gridPos"]["w"] = 30
    doc["title"] = 123
    doc["unexpected"] = True
    messages = [e.message for e in Draft7Validator(schema(schema_name)).iter_errors(doc)]
    assert len(messages) == 3, messages


def test_schema_version_is_grafana_11_6s() -> None:
    # 41 is Grafana 11.6's dashboard schemaVersion (the default in its schema); newer Grafana migrates it up.
    assert schema(SCHEMA_FILES[0])["definitions"]["Dashboard"]["properties"]["schemaVersion"]["default"] == 41
    for path in DASHBOARD_FILES:
        assert dashboard(path)["schemaVersion"] == 41


def test_the_json_is_what_build_py_generates_from_the_sql_files() -> None:
    build = load_build()
    assert (DASHBOARDS / "flightrec-overview.json").read_text() == build.render(), "run: python dashboards/build.py"
    assert build.main(["--check"]) == 0


def test_every_query_file_is_used_by_exactly_one_panel_or_variable() -> None:
    build = load_build()
    used = [spec.query for spec in build.PANELS] + [build.FUNCTION_VARIABLE_QUERY]
    assert sorted(used) == sorted(p.name for p in (DASHBOARDS / "queries").glob("*.sql"))
    assert len(set(used)) == len(used)
    doc = dashboard(DASHBOARDS / "flightrec-overview.json")
    for spec in build.PANELS:
        [panel] = [p for p in panels(doc) if p["id"] == spec.id]
        assert panel["targets"][0]["rawSql"] == build.read_query(spec.query)[1]


# -- structure -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_panel_ids_are_unique_and_panels_do_not_overlap(path: Path) -> None:
    doc = dashboard(path)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in doc["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_panels_the_issue_asks_for_are_there() -> None:
    doc = dashboard(DASHBOARDS / "flightrec-overview.json")
    titles = {p["title"] for p in panels(doc)}
    for wanted in ("Invocations over time", "Error rate %", "Errors by type", "Latency p50 / p95 / p99",
                   "Cold-start rate %", "Init duration of cold starts", "Slowest invocations"):  # fmt: skip
        assert wanted in titles
    assert any("request id" in t for t in titles)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_and_target_uses_the_datasource_variable(path: Path) -> None:
    doc = dashboard(path)
    for panel in panels(doc):
        assert panel["datasource"] == DS_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS_REF, panel["title"]
            assert target["rawQuery"] is True and target["editorMode"] == "code"
            assert target["format"] in ("time_series", "table")
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == PG_TYPE
    assert source["current"]["value"] == "flightrec-postgres"
    assert variables["function"]["datasource"] == DS_REF


def test_variables_function_and_request_id() -> None:
    variables = {v["name"]: v for v in dashboard(DASHBOARDS / "flightrec-overview.json")["templating"]["list"]}
    function = variables["function"]
    assert function["type"] == "query" and function["multi"] and function["includeAll"]
    assert "allValue" not in function  # "All" expands to every option, quoted: `IN ('a','b')`
    assert function["refresh"] == 2  # re-queried when the time range changes
    assert "$__timeFilter(ts)" in function["query"]
    request_id = variables["request_id"]
    assert request_id["type"] == "textbox" and request_id["current"]["value"] == ""


def test_provisioning_files_point_at_the_same_uid_and_a_folder() -> None:
    datasource = (DASHBOARDS / "provisioning" / "datasources" / "flightrec.yaml").read_text()
    assert re.search(r"^apiVersion: 1$", datasource, re.M)
    assert re.search(r"^\s+uid: flightrec-postgres$", datasource, re.M)
    assert re.search(rf"^\s+type: {PG_TYPE}\b", datasource, re.M)
    assert "${FLIGHTREC_PG_PASSWORD}" in datasource and "secureJsonData:" in datasource
    provider = (DASHBOARDS / "provisioning" / "dashboards" / "flightrec.yaml").read_text()
    assert re.search(r"^apiVersion: 1$", provider, re.M)
    assert re.search(r"^\s+type: file$", provider, re.M)
    assert re.search(r"^\s+path: /\S+$", provider, re.M)


# -- the SQL -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_query_uses_the_time_macros(path: Path) -> None:
    doc = dashboard(path)
    for panel in panels(doc):
        for target in panel["targets"]:
            sql = target["rawSql"]
            assert "$__timeFilter(ts)" in sql, panel["title"]
            if target["format"] == "time_series":
                assert "$__timeGroupAlias(ts, $__interval)" in sql, panel["title"]
                assert re.search(r"GROUP BY 1\s+ORDER BY 1\s*$", sql), panel["title"]  # sorted by time
            assert "function_name IN ($function)" in sql, panel["title"]
            assert "$__timeFilter(" not in sql.replace("$__timeFilter(ts)", ""), "filter on ts: the partition key"


_KEYWORDS = frozenset(
    {"select", "from", "where", "and", "or", "not", "in", "is", "null", "true", "false", "as", "group", "by", "order",
     "desc", "asc", "limit", "filter", "within", "distinct", "on", "case", "when", "then", "else", "end"}
)  # fmt: skip


def referenced_columns(sql: str) -> set[str]:
    """Identifiers in `sql` that can only be column references: not keywords, functions, types, aliases, the table."""
    text = re.sub(r"--[^\n]*", " ", sql)
    text = re.sub(r"'(?:[^']|'')*'", " ", text)  # string literals
    aliases = set(re.findall(r'\bAS\s+"([^"]+)"', text, re.I)) | set(re.findall(r"\bAS\s+(\w+)", text, re.I))
    text = re.sub(r'"[^"]*"', " ", text)  # quoted identifiers are aliases here ("time", "error rate")
    text = re.sub(r"\$__\w+|\$\w+", " ", text)  # macros and variables (their arguments stay)
    text = re.sub(r"::\s*\w+", " ", text)  # casts
    words = re.findall(r"\b([A-Za-z_]\w*)\b(\s*\()?", text)
    return {
        word
        for word, call in words
        if not call and word.lower() not in _KEYWORDS and word not in aliases and word != "logs"
    }


def test_the_column_extractor_finds_columns_and_skips_the_rest() -> None:
    sql = (
        "SELECT $__timeGroupAlias(ts, $__interval), count(*) FILTER (WHERE status = 'error') AS errors, "
        "(100 * x)::float8 / nullif(count(*), 0) AS \"rate\" FROM logs WHERE $__timeFilter(ts) AND kind = 'a b' "
        "AND function_name IN ($function) ORDER BY errors DESC"
    )
    assert referenced_columns(sql) == {"ts", "status", "x", "kind", "function_name"}


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_column_a_panel_references_exists_in_the_table(path: Path) -> None:
    columns = {c.name for c in COLUMNS}
    doc = dashboard(path)
    queries = panel_sql(doc) + [(v["name"], v["query"]) for v in doc["templating"]["list"] if v["type"] == "query"]
    for title, sql in queries:
        unknown = referenced_columns(sql) - columns
        assert not unknown, f"{title}: {sorted(unknown)} not in telemetry.schema.COLUMNS"
        assert re.search(r"\bFROM logs\b", sql), title


# -- the expander --------------------------------------------------------------------------------------------------
FROM = datetime(2026, 11, 30, 3, 0, 0, 250_000, tzinfo=UTC)
TO = datetime(2026, 11, 30, 4, 0, 0, tzinfo=UTC)


def test_expander_time_macros_match_grafanas_postgres_output() -> None:
    sql = "SELECT $__timeGroupAlias(ts, $__interval), $__time(ts), $__timeEpoch(ts) WHERE $__timeFilter( ts )"
    assert expand(sql, time_from=FROM, time_to=TO, interval="1m") == (
        'SELECT floor(extract(epoch from ts)/60)*60 AS "time", ts AS "time", extract(epoch from ts) as "time" '
        "WHERE ts BETWEEN '2026-11-30T03:00:00.25Z' AND '2026-11-30T04:00:00Z'"
    )
    assert expand("$__timeFrom() $__timeTo() $__unixEpochFrom() $__interval_ms", time_from=FROM, time_to=TO,
                  interval="500ms") == "'2026-11-30T03:00:00.25Z' '2026-11-30T04:00:00Z' 1796007600 500"  # fmt: skip
    assert expand("$__timeGroup(ts, '5m')", time_from=FROM, time_to=TO) == "floor(extract(epoch from ts)/300)*300"
    # Grafana's pre-5.3 compatibility: $__timeGroup followed by a comma gets the alias.
    assert expand("$__timeGroup(ts, 1h), x", time_from=FROM, time_to=TO) == (
        'floor(extract(epoch from ts)/3600)*3600 AS "time", x'
    )
    assert expand("$__unixEpochFilter(t)", time_from=FROM, time_to=TO) == "t >= 1796007600 AND t <= 1796011200"


def test_expander_formats_variables_like_grafanas_sql_data_sources() -> None:
    variables = {"function": MultiVariable(["fn-a", "it's"]), "request_id": TextVariable("ab'c")}
    sql = "IN ($function) AND r = '$request_id' AND s = '${request_id}' AND t IN ([[function]])"
    assert expand(sql, time_from=FROM, time_to=TO, variables=variables) == (
        "IN ('fn-a','it''s') AND r = 'ab''c' AND s = 'ab''c' AND t IN ('fn-a','it''s')"
    )


def test_expander_refuses_what_it_cannot_expand_faithfully() -> None:
    with pytest.raises(MacroError, match="fill"):
        expand("$__timeGroup(ts, 1m, 0)", time_from=FROM, time_to=TO)
    with pytest.raises(MacroError, match="unknown macro"):
        expand("$__nope(ts)", time_from=FROM, time_to=TO)
    with pytest.raises(MacroError, match="no such dashboard variable"):
        expand("$typo", time_from=FROM, time_to=TO)
    with pytest.raises(MacroError, match="formats"):
        expand("${function:csv}", time_from=FROM, time_to=TO, variables={"function": MultiVariable(["a"])})
    with pytest.raises(MacroError, match="interval"):
        parse_interval("1M")


@pytest.mark.parametrize(
    ("interval", "printed"),
    [("1s", "1"), ("500ms", "0.5"), ("1m", "60"), ("1h30m", "5400"), ("1d", "86400"), ("7d", "604800"),
     ("12d", "1.0368e+06"), ("30d", "2.592e+06"), ("100us", "0.0001"), ("10us", "1e-05")],
)  # fmt: skip
def test_interval_seconds_are_printed_as_go_prints_a_float64(interval: str, printed: str) -> None:
    assert go_float(parse_interval(interval)) == printed


def test_rfc3339nano_trims_the_fraction_like_go() -> None:
    assert rfc3339nano(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert rfc3339nano(datetime(2026, 1, 2, 3, 4, 5, 120_000, tzinfo=UTC)) == "2026-01-02T03:04:05.12Z"
    assert rfc3339nano(datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC)) == "2026-01-02T03:04:05.000001Z"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_query_expands(path: Path) -> None:
    doc = dashboard(path)
    variables = {"function": MultiVariable(["a"]), "request_id": TextVariable("")}
    for title, sql in panel_sql(doc):
        expanded = expand(sql, time_from=FROM, time_to=TO, interval="1m", variables=variables)
        assert "$" not in expanded, title
