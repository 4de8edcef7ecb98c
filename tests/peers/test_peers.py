"""Smoke tests: each real peer starts, receives and answers as the other tests rely on."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest

from tests.peers import OtlpReceiver, PgBouncerServer, PostgresServer, RsyslogServer
from tests.peers.ports import PeerUnavailable, free_ports, require_binary
from tests.peers.rsyslog import Message

TIMESTAMP = "2024-05-06T07:08:09.123456Z"


def rfc5424(msgid: str, text: str, *, bom: bool = True) -> bytes:
    """An RFC 5424 line with two SD elements, one of them with characters that need escaping."""
    sd = (
        f'[lambda@32473 requestId="{msgid}" fn="my-fn"]'
        r'[origin@32473 note="quote \" bracket \] backslash \\"]'
    )
    body = ("\ufeff" if bom else "") + text
    return f"<134>1 {TIMESTAMP} host.example my-fn 4242 {msgid} {sd} {body}".encode()


def check_parsed(message: Message, msgid: str, text: str, input_name: str) -> None:
    assert message["input"] == input_name
    assert message["pri"] == 134
    assert (message["facility"], message["severity"]) == (16, 6)  # local0.info
    assert message["version"] == "1"
    assert message["timestamp"] == TIMESTAMP
    assert (message["hostname"], message["app_name"], message["procid"]) == ("host.example", "my-fn", "4242")
    assert message["msgid"] == msgid
    assert message["msg"] == text  # BOM stripped, newline kept
    assert message["sd"]["lambda@32473"] == {"requestId": msgid, "fn": "my-fn"}
    assert message["sd"]["origin@32473"] == {"note": 'quote " bracket ] backslash \\'}


@pytest.mark.parametrize("transport", ["udp", "tcp", "tcp-lf", "tls"])
def test_rsyslog_receives_rfc5424_with_structured_data(rsyslog: RsyslogServer, transport: str) -> None:
    msgid = uuid.uuid4().hex[:16]
    if transport == "tcp-lf":
        text = "single line, LF framed"
        rsyslog.send_tcp(rfc5424(msgid, text), octet_counted=False)
    else:
        text = f"hello over {transport}\nsecond line\tand a tab"
        {"udp": rsyslog.send_udp, "tcp": rsyslog.send_tcp, "tls": rsyslog.send_tls}[transport](rfc5424(msgid, text))
    [message] = rsyslog.wait_for(1, where=lambda m: m.get("msgid") == msgid)
    check_parsed(message, msgid, text, "tcp" if transport == "tcp-lf" else transport)


def test_rsyslog_takes_large_messages_whole_and_keeps_order(rsyslog: RsyslogServer) -> None:
    msgid = uuid.uuid4().hex[:16]
    big = "x" * 60_000
    rsyslog.send_tcp(*(rfc5424(msgid, f"{i} {big}", bom=False) for i in range(3)))
    messages = rsyslog.wait_for(3, where=lambda m: m.get("msgid") == msgid)
    assert [m["msg"] for m in messages] == [f"{i} {big}" for i in range(3)]


def test_rsyslog_kill_and_restart_keep_ports_and_messages(private_rsyslog: RsyslogServer) -> None:
    rs = private_rsyslog
    ports, pid = (rs.udp_port, rs.tcp_port, rs.tls_port), rs.pid
    rs.send_tcp(rfc5424("before", "before"))
    rs.wait_for(1)
    rs.kill()
    assert not rs.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((rs.host, rs.tcp_port), timeout=1).close()
    rs.restart()
    assert (rs.udp_port, rs.tcp_port, rs.tls_port) == ports
    assert rs.pid != pid
    rs.send_tls(rfc5424("after", "after"))
    assert [m["msgid"] for m in rs.wait_for(2)] == ["before", "after"]
    rs.clear()
    assert rs.messages() == []
    with pytest.raises(TimeoutError, match=r"(?s)received 0 of 1 .*internal\.log"):
        rs.wait_for(1, timeout=0.2)


def test_postgres_insert_and_select(pg_server: PostgresServer, pg_db: str) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO t VALUES (%s, %s)", (1, "héllo"))
        assert conn.execute("SELECT body FROM t WHERE id = 1").fetchone() == ("héllo",)
        assert conn.info.port == pg_server.port
        assert conn.info.host == "127.0.0.1"
    assert pg_server.psql("SELECT 40 + 2").strip() == "42"
    with pg_server.connect() as conn:
        assert conn.autocommit


def test_pg_db_is_fresh_per_test(pg_db: str) -> None:
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_pgbouncer_insert_and_select(pgbouncer: PgBouncerServer, pg_db: str) -> None:
    dbname = pg_db.rsplit("/", 1)[1]
    with pgbouncer.connect(dbname) as conn:
        assert conn.info.port == pgbouncer.port
        with conn.transaction():
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
            conn.execute("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g")
        for _ in range(3):  # the same statement again: no server-side prepared statements through PgBouncer
            assert conn.execute("SELECT count(*) FROM t WHERE id > %s", (50,)).fetchone() == (50,)
    with psycopg.connect(pgbouncer.dsn_for(dbname), prepare_threshold=None) as conn:
        assert conn.execute("SELECT body FROM t WHERE id = 7").fetchone() == ("row 7",)
    assert pgbouncer.mode == "transaction"


def test_postgres_restart_and_reconnect(pg_server: PostgresServer, pg_db: str) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        old_pid = pg_server.pid
        pg_server.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert pg_server.pid != old_pid
    assert pg_db.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/")
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_postgres_kill_backends(pg_server: PostgresServer, pg_db: str) -> None:
    dbname = pg_db.rsplit("/", 1)[1]
    victims = [psycopg.connect(pg_db, autocommit=True) for _ in range(2)]
    try:
        assert pg_server.kill_backends(dbname) == 2
        for conn in victims:
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
    finally:
        for conn in victims:
            conn.close()
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_stop_and_start(private_pg_server: PostgresServer) -> None:
    pg = private_pg_server
    pg.execute("CREATE TABLE kept (x int)")
    pg.stop()
    assert not pg.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn, connect_timeout=2)
    pg.start()
    assert pg.execute("SELECT count(*) FROM kept") == [(0,)]


def test_otlp_receiver_gets_a_span_from_the_sdk_exporter(otlp_receiver: OtlpReceiver) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    otlp_receiver.clear()
    provider = TracerProvider(resource=Resource.create({"service.name": "my-fn"}))
    exporter = OTLPSpanExporter(endpoint=otlp_receiver.traces_url, compression=Compression.Gzip, timeout=5)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        tracer = provider.get_tracer("runtime.test", "0.1")
        with tracer.start_as_current_span(
            "invoke", kind=trace.SpanKind.SERVER, attributes={"faas.invocation_id": "abc"}
        ) as span:
            span.add_event("init-done", {"ms": 12})
            trace_id = span.get_span_context().trace_id
    finally:
        provider.shutdown()
    [(resource, scope, received)] = otlp_receiver.wait_for_spans(1)
    assert received.name == "invoke"
    assert received.kind == 2  # SPAN_KIND_SERVER
    assert received.trace_id.hex() == f"{trace_id:032x}"
    assert {a.key: a.value.string_value for a in received.attributes} == {"faas.invocation_id": "abc"}
    assert [e.name for e in received.events] == ["init-done"]
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "my-fn"
    assert (scope.name, scope.version) == ("runtime.test", "0.1")
    assert otlp_receiver.requests[0].headers["Content-Encoding"] == "gzip"


def test_otlp_receiver_gets_metrics(otlp_receiver: OtlpReceiver) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    otlp_receiver.clear()
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_receiver.metrics_url, timeout=5), export_interval_millis=3_600_000
    )
    provider = MeterProvider(metric_readers=[reader])
    try:
        provider.get_meter("runtime.test").create_counter("invocations").add(3)
        assert provider.force_flush(5_000)
    finally:
        provider.shutdown()
    metrics = otlp_receiver.wait_for_metrics(1)
    counters = [m for _, _, m in metrics if m.name == "invocations"]  # force_flush and shutdown both export
    assert counters
    assert all(sum(p.as_int for p in c.sum.data_points) == 3 for c in counters)  # cumulative


def test_otlp_receiver_hang_accepts_but_never_answers(private_otlp_receiver: OtlpReceiver) -> None:
    rx = private_otlp_receiver
    rx.hang = True
    request = urllib.request.Request(
        rx.traces_url, data=b"", headers={"Content-Type": "application/x-protobuf"}, method="POST"
    )
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(request, timeout=0.3)  # connects (no refusal), then waits for an answer in vain
    assert time.monotonic() - started < 5  # liveness bound only
    rx.hang = False
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    rx.fail_status = 503
    with pytest.raises(urllib.error.HTTPError, match="503"):
        urllib.request.urlopen(request, timeout=5)


def test_missing_binary_says_how_to_install_it() -> None:
    with pytest.raises(PeerUnavailable, match=r"\./dev test"):
        require_binary("flightrec-no-such-server")


def test_free_ports_are_distinct_and_bindable_for_udp() -> None:
    ports = free_ports(5, udp_too=True)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", port))
