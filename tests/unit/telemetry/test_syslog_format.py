"""Specification of `telemetry.syslog.format_rfc5424` (and `parse_syslog_url`): pure, no sockets.

Records are rendered by the real `EventFormatter`, and every message is read back with the small RFC 5424 parser
below (written from RFC 5424 §6 alone, not from the code under test), so the tests check what a receiver would see.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.config import TelemetryConfigError
from telemetry.context import LogContext
from telemetry.records import END, EventFormatter, Rendered
from telemetry.syslog import DEFAULT_PORTS, SyslogTarget, format_rfc5424, parse_syslog_url

SD_ID = "lambda@32473"
REQUEST_ID = "8f4b1c1e-1234-4d2a-9a3b-0c1d2e3f4a5b"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
BOM = b"\xef\xbb\xbf"


# -- a receiver's view: an RFC 5424 parser written from the RFC --------------------------------------------------
@dataclasses.dataclass
class Parsed:
    pri: int
    version: str
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]] | None  # None for the NILVALUE
    msg: bytes


def parse_sd(text: str, pos: int = 0) -> tuple[dict[str, dict[str, str]] | None, int]:
    """STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT (RFC 5424 §6.3); returns the elements and the index after them.

    In PARAM-VALUE a backslash escapes '"', '\\' and ']'; before any other character it is a plain backslash.
    """
    if text.startswith("-", pos):
        return None, pos + 1
    elements: dict[str, dict[str, str]] = {}
    if not text.startswith("[", pos):
        raise ValueError(f"structured data must start with '[' or be '-' at {pos}: {text[pos : pos + 40]!r}")
    name_chars = re.compile(r"[!#-<>-\\^-~]{1,32}")  # PRINTUSASCII except '=', ']', '"' (and SP)
    while text.startswith("[", pos):
        match = name_chars.match(text, pos + 1)
        if match is None:
            raise ValueError(f"bad SD-ID at {pos + 1}")
        sd_id, pos = match.group(), match.end()
        params: dict[str, str] = {}
        while text.startswith(" ", pos):
            match = name_chars.match(text, pos + 1)
            if match is None or not text.startswith('="', match.end()):
                raise ValueError(f"bad SD-PARAM at {pos + 1}")
            name, pos = match.group(), match.end() + 2
            value: list[str] = []
            while True:
                char = text[pos]
                if char == "\\" and text[pos + 1] in '"\\]':
                    value.append(text[pos + 1])
                    pos += 2
                elif char == '"':
                    pos += 1
                    break
                elif char == "]":
                    raise ValueError(f"unescaped ']' inside PARAM-VALUE at {pos}")
                else:
                    value.append(char)
                    pos += 1
            params[name] = "".join(value)
        if not text.startswith("]", pos):
            raise ValueError(f"SD-ELEMENT not closed at {pos}")
        pos += 1
        elements[sd_id] = params
    return elements, pos


def parse(message: bytes) -> Parsed:
    """SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]; the header fields are checked against their grammar."""
    match = re.match(rb"<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ", message)
    assert match, message[:200]
    pri, version, timestamp, hostname, app_name, procid, msgid = (g.decode("ascii") for g in match.groups())
    for field, limit in ((hostname, 255), (app_name, 48), (procid, 128), (msgid, 32)):
        assert len(field) <= limit
        assert all(33 <= ord(c) <= 126 for c in field)
    head_len = match.end()
    text = message[head_len:].decode("utf-8")  # raises if the message is not valid UTF-8
    sd, end = parse_sd(text)
    rest = text[end:].encode("utf-8")
    assert rest == b"" or rest.startswith(b" "), rest[:40]
    return Parsed(int(pri), version, timestamp, hostname, app_name, procid, msgid, sd, rest[1:])


# -- real records --------------------------------------------------------------------------------------------------
def render(
    message: str = "hello",
    *,
    level: int = logging.INFO,
    request_id: str | None = REQUEST_ID,
    xray: str | None = None,
    span: tuple[str, str] | None = None,
    kind: str | None = None,
    function_name: str | None = "my-fn",
    function_version: str | None = "$LATEST",
) -> Rendered:
    formatter = EventFormatter({"function_name": function_name, "function_version": function_version}, "inst-1")
    record = logging.LogRecord("app", level, __file__, 1, message, None, None)
    if request_id is not None:
        record.flightrec = LogContext(request_id=request_id, cold_start=False, xray_trace_id=xray)
    if span is not None:
        record.flightrec_span = span
    if kind is not None:
        record.flightrec_kind = kind
    return formatter.render(record)


def fmt(rendered: Rendered, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "facility": 1, "hostname": "host-1", "app_name": "my-fn", "procid": 4242, "sd_id": SD_ID,
    }  # fmt: skip
    args.update(overrides)
    return format_rfc5424(rendered, **args)


# -- PRI, header, nil values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("level", "severity"),
    [(logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2),
     (5, 7), (25, 6), (45, 3), (60, 2)],
)  # fmt: skip
@pytest.mark.parametrize("facility", [0, 1, 16, 23])
def test_pri_is_facility_times_eight_plus_the_level_severity(level: int, severity: int, facility: int) -> None:
    # GIVEN a record at a level, WHEN formatted for a facility
    parsed = parse(fmt(render(level=level), facility=facility))
    # THEN PRI = facility * 8 + severity (RFC 5424 §6.2.1), version 1
    assert (parsed.pri, parsed.version) == (facility * 8 + severity, "1")


def test_header_fields_come_from_the_sink_and_the_record() -> None:
    rendered = render(kind=END)
    parsed = parse(fmt(rendered))
    assert parsed.timestamp == rendered.event["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", parsed.timestamp)
    assert (parsed.hostname, parsed.app_name, parsed.procid, parsed.msgid) == ("host-1", "my-fn", "4242", "end")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("hostname", "my host\tname", "my_host_name"),
        ("hostname", "hôte.example", "h_te.example"),
        ("hostname", "h" * 300, "h" * 255),
        ("hostname", "", "-"),
        ("app_name", "my app\n", "my_app_"),
        ("app_name", "a" * 60, "a" * 48),
        ("app_name", "", "-"),
        ("procid", "pid 1", "pid_1"),
        ("procid", "p" * 200, "p" * 128),
        ("procid", "", "-"),
    ],
)
def test_header_fields_are_sanitised_and_cut_to_rfc_limits(field: str, value: str, expected: str) -> None:
    parsed = parse(fmt(render(), **{field: value}))
    assert getattr(parsed, field) == expected


def test_msgid_is_the_kind_sanitised_and_cut() -> None:
    parsed = parse(fmt(render(kind="a kind with spaces and more than thirty-two characters")))
    assert parsed.msgid == "a_kind_with_spaces_and_more_than"
    assert len(parsed.msgid) == 32


def test_absent_values_are_left_out_of_the_structured_data() -> None:
    # GIVEN a record outside any invocation (no request id, no trace) and no function name
    parsed = parse(fmt(render(request_id=None, function_name=None)))
    # THEN only the values that exist are parameters
    assert parsed.sd == {SD_ID: {"version": "$LATEST", "level": "INFO"}}


def test_structured_data_is_nil_when_no_value_exists() -> None:
    rendered = render(request_id=None, function_name=None, function_version=None)
    event = {key: value for key, value in rendered.event.items() if key != "level"}
    parsed = parse(fmt(rendered._replace(event=event)))
    assert parsed.sd is None
    assert json.loads(parsed.msg) == json.loads(rendered.data)


def test_structured_data_carries_request_function_version_trace_and_level() -> None:
    parsed = parse(fmt(render(level=logging.ERROR, xray=XRAY)))
    assert parsed.sd == {
        SD_ID: {
            "requestId": REQUEST_ID,
            "function": "my-fn",
            "version": "$LATEST",
            "traceId": "1-5759e988-bd862e3fe1be46a994272793",  # the X-Ray Root, without Parent and Sampled
            "level": "ERROR",
        }
    }


def test_the_opentelemetry_trace_id_wins_over_the_xray_header() -> None:
    parsed = parse(fmt(render(xray=XRAY, span=("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"))))
    assert parsed.sd is not None
    assert parsed.sd[SD_ID]["traceId"] == "0af7651916cd43dd8448eb211c80319c"


def test_param_values_escape_quote_backslash_and_bracket() -> None:
    # GIVEN values with every character RFC 5424 §6.3.3 says must be escaped
    nasty = 'a"b\\c]d [x="y"] \\"'
    out = fmt(render(request_id=nasty, function_name="fn]", function_version='v"1'))
    # THEN the raw text has them backslash-escaped
    assert b'requestId="a\\"b\\\\c\\]d [x=\\"y\\"\\] \\\\\\""' in out
    # AND a receiver gets the original values back
    parsed = parse(out)
    assert parsed.sd is not None
    assert parsed.sd[SD_ID]["requestId"] == nasty
    assert (parsed.sd[SD_ID]["function"], parsed.sd[SD_ID]["version"]) == ("fn]", 'v"1')


def test_control_characters_in_param_values_are_written_as_octal_escapes() -> None:
    parsed = parse(fmt(render(request_id="line1\r\nline2\x00\x7f")))
    assert parsed.sd is not None
    assert parsed.sd[SD_ID]["requestId"] == "line1#015#012line2#000#177"


def test_the_message_is_the_json_bytes_unchanged_and_non_ascii_stays_utf8() -> None:
    rendered = render('grüße, 世界, emoji 🎉, quote " and ] and \\')
    out = fmt(rendered)
    assert out.endswith(b" " + rendered.data)
    parsed = parse(out)
    assert parsed.msg == rendered.data
    assert "grüße, 世界, emoji 🎉".encode() in parsed.msg  # not \u-escaped
    assert json.loads(parsed.msg)["message"] == 'grüße, 世界, emoji 🎉, quote " and ] and \\'


def test_newlines_in_the_message_appear_only_json_escaped() -> None:
    # GIVEN a message that tries to forge a second syslog line
    forged = "ok\n<11>1 2026-01-01T00:00:00Z evil app - - - forged\r\nagain"
    out = fmt(render(forged))
    # THEN no raw CR or LF is written; the message survives as JSON
    assert b"\n" not in out
    assert b"\r" not in out
    assert b"ok\\n<11>1" in out
    assert json.loads(parse(out).msg)["message"] == forged


def test_no_bom_by_default_and_a_bom_before_msg_when_asked() -> None:
    rendered = render()
    assert BOM not in fmt(rendered)
    with_bom = fmt(rendered, bom=True)
    assert with_bom.endswith(b"] " + BOM + rendered.data)
    assert parse(with_bom).msg == BOM + rendered.data


@pytest.mark.parametrize("sd_id", ["", "has space", "a=b", "a]b", 'a"b', "x" * 33, "ünï@1"])
def test_an_invalid_sd_id_is_refused_naming_the_variable(sd_id: str) -> None:
    with pytest.raises(TelemetryConfigError, match="SYSLOG_SD_ID"):
        fmt(render(), sd_id=sd_id)


@pytest.mark.parametrize("facility", [-1, 24])
def test_an_invalid_facility_is_refused(facility: int) -> None:
    with pytest.raises(ValueError, match="SYSLOG_FACILITY"):
        fmt(render(), facility=facility)


# -- the property: nothing can forge a line, and the structured data survives -------------------------------------
def expected_param(value: str) -> str:
    """What a receiver must get back for a value: the value, with control characters as `#ooo` (as rsyslog)."""
    return "".join(f"#{ord(c):03o}" if ord(c) < 32 or ord(c) == 127 else c for c in value)


@settings(max_examples=300, deadline=None)
@given(
    message=st.text(),
    request_id=st.text(),
    function_name=st.text(),
    function_version=st.text(),
    xray=st.one_of(st.none(), st.text(), st.text().map(lambda t: "Root=" + t)),
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]),
)
def test_no_raw_cr_or_lf_and_the_structured_data_reparses_to_the_original_values(
    *, message: str, request_id: str, function_name: str, function_version: str, xray: str | None, level: int
) -> None:
    rendered = render(
        message, level=level, request_id=request_id, xray=xray,
        function_name=function_name, function_version=function_version,
    )  # fmt: skip
    out = fmt(rendered, facility=16)
    assert b"\n" not in out
    assert b"\r" not in out
    parsed = parse(out)

    trace = xray.split(";", 1)[0][5:] if xray and xray.startswith("Root=") else xray
    values = {
        "requestId": request_id, "function": function_name, "version": function_version,
        "traceId": trace, "level": logging.getLevelName(level),
    }  # fmt: skip
    assert parsed.sd == {SD_ID: {name: expected_param(v) for name, v in values.items() if v}}
    assert parsed.msg == rendered.data
    assert json.loads(parsed.msg)["message"] == message


# -- SYSLOG_URL ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("udp://logs.example", SyslogTarget("udp", "logs.example", 514)),
        ("tcp://10.0.0.5", SyslogTarget("tcp", "10.0.0.5", 601)),
        ("tls://logs.example", SyslogTarget("tls", "logs.example", 6514)),
        ("TCP://logs.example:1514/", SyslogTarget("tcp", "logs.example", 1514)),
        ("tls://[::1]:6515", SyslogTarget("tls", "::1", 6515)),
    ],
)
def test_syslog_url_with_default_ports(url: str, target: SyslogTarget) -> None:
    assert parse_syslog_url(url) == target
    assert DEFAULT_PORTS == {"udp": 514, "tcp": 601, "tls": 6514}


@pytest.mark.parametrize(
    "url",
    ["syslog://host", "http://host:514", "host:514", "udp://", "udp://host:99999", "tcp://host:abc", "tcp://host:0",
     "tcp://user@host", "tcp://host/path", "tcp://host?x=1", ""],
)  # fmt: skip
def test_any_other_syslog_url_is_a_clear_error_naming_the_variable(url: str) -> None:
    with pytest.raises(ValueError, match="SYSLOG_URL"):
        parse_syslog_url(url)
