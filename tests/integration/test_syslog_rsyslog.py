"""`SyslogHandler` against a real rsyslog (tests/peers/rsyslog.py): what arrives, and what each fault costs.

Outcomes proved, per fault (DECISIONS.md, "Delivery promises"):
- healthy UDP, TCP, TLS: every record arrives once, header and structured data as sent, the JSON message intact;
- a certificate the CA file does not vouch for: nothing is sent, the failure is counted, every record stays pending;
- an oversize UDP message: cut at the cap, counted in `truncated`, never split into a second message;
- rsyslog killed (SIGKILL) with a connection open: the next ship fails and keeps all its records pending; after a
  restart on the same ports the next ship delivers each of them exactly once (none lost, none duplicated);
- a peer that accepts and never reads: `ship(deadline)` comes back by the deadline (plus a generous margin) without
  raising, and what was not completely written stays pending.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry.config import TelemetryConfig
from telemetry.context import LogContext
from telemetry.records import EventFormatter, Rendered
from telemetry.spill import PendingBuffer
from telemetry.syslog import SyslogHandler
from tests.peers import RsyslogServer
from tests.peers.rsyslog import Message

SD_ID = "lambda@32473"
FACILITY = 16  # local0
HOSTNAME = "fr-host"
APP = "fr-app"
PROCID = 4321

#: Messages that must survive the trip: newlines, quotes, brackets, backslashes, tabs, non-ASCII.
TRICKY = [
    "plain",
    "two\nlines\r\nand CRLF",
    'quotes " and \' and ] and [x="y"] and \\ backslash \\" end',
    "tab\tand non-ASCII: grüße, 世界, 🎉",
    "<11>1 2026-01-01T00:00:00Z evil app - - - forged\nsecond",
]
LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
SEVERITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

#: Liveness bounds: how far past its deadline a ship may return. Generous on purpose: not a speed assertion.
MARGIN_S = 5.0


def records(
    n: int, *, request_id: str, messages: list[str] | None = None, levels: list[int] | None = None
) -> list[Rendered]:
    """`n` real records of one invocation, rendered by the runtime's own formatter."""
    formatter = EventFormatter({"function_name": "my-fn", "function_version": "7"}, "inst-1")
    context = LogContext(request_id=request_id, cold_start=False, xray_trace_id="Root=1-abc-def;Sampled=1")
    out = []
    for i in range(n):
        text = messages[i % len(messages)] if messages else f"record {i}"
        record = logging.LogRecord(
            "app", (levels or [logging.INFO])[i % len(levels or [0])], __file__, 1, text, (), None
        )
        record.flightrec = context
        record.flightrec_seq = i
        out.append(formatter.render(record))
    return out


def handler(url: str, **config: Any) -> SyslogHandler:
    cfg = TelemetryConfig(
        syslog_url=url, syslog_facility=FACILITY, syslog_hostname=HOSTNAME, syslog_app_name=APP, **config
    )
    return SyslogHandler(cfg, PendingBuffer("syslog-test", max_items=100_000), procid=PROCID)


def ship_all(sink: SyslogHandler, batch: list[Rendered], budget_s: float = 10.0) -> bool:
    for rendered in batch:
        sink.accept(rendered)
    return sink.ship(time.monotonic() + budget_s)


def of_request(request_id: str) -> Any:
    def where(message: Message) -> bool:
        sd = message.get("sd")
        return isinstance(sd, dict) and sd.get(SD_ID, {}).get("requestId") == request_id

    return where


def url_of(rs: RsyslogServer, transport: str) -> str:
    return {"udp": rs.udp_url, "tcp": rs.tcp_url, "tls": rs.tls_url}[transport]


def tls_config(rs: RsyslogServer, transport: str) -> dict[str, Any]:
    return {"syslog_ca_file": str(rs.ca_file)} if transport == "tls" else {}


def seqs(messages: list[Message]) -> list[int]:
    return [int(json.loads(m["msg"])["record_id"].rsplit("/", 1)[1]) for m in messages]


# -- healthy delivery ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_records_arrive_with_header_structured_data_and_message_as_sent(rsyslog: RsyslogServer, transport: str) -> None:
    # GIVEN records at every level with messages that need escaping somewhere
    request_id = f'req-{uuid.uuid4().hex[:8]} "q" ]\\'  # the SD value itself needs escaping too
    batch = records(len(TRICKY) * 2, request_id=request_id, messages=TRICKY, levels=LEVELS)
    sink = handler(url_of(rsyslog, transport), **tls_config(rsyslog, transport))

    # WHEN they are shipped, in two ships
    assert ship_all(sink, batch[:3])
    assert ship_all(sink, batch[3:])

    # THEN rsyslog parsed each into exactly what was sent
    received = rsyslog.wait_for(len(batch), where=of_request(request_id))
    assert len(received) == len(batch)
    if transport != "udp":  # one ordered stream; UDP datagrams may be reordered in principle
        assert seqs(received) == list(range(len(batch)))
    by_seq = dict(zip(seqs(received), received, strict=True))
    for seq, rendered in enumerate(batch):
        message, event = by_seq[seq], rendered.event
        assert message["input"] == transport
        assert (message["pri"], message["facility"]) == (FACILITY * 8 + SEVERITY[rendered.levelno], FACILITY)
        assert message["severity"] == SEVERITY[rendered.levelno]
        assert message["version"] == "1"
        assert message["timestamp"] == event["timestamp"]
        assert (message["hostname"], message["app_name"], message["procid"]) == (HOSTNAME, APP, str(PROCID))
        assert message["msgid"] == "log"
        assert message["sd"] == {
            SD_ID: {
                "requestId": request_id, "function": "my-fn", "version": "7", "traceId": "1-abc-def",
                "level": logging.getLevelName(rendered.levelno),
            }
        }  # fmt: skip
        assert message["msg"].encode() == rendered.data  # the JSON bytes, unchanged
        assert json.loads(message["msg"])["message"] == TRICKY[seq % len(TRICKY)]
    assert sink.stats.failures == 0
    assert len(sink.pending) == 0
    assert sink.connects == 1  # one persistent connection (or socket), kept across ships
    sink.close()


def test_tls_close_unwraps_politely_and_the_next_ship_reconnects(rsyslog: RsyslogServer) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    sink = handler(rsyslog.tls_url, syslog_ca_file=str(rsyslog.ca_file))
    assert ship_all(sink, records(2, request_id=request_id))
    sink.close_connections()  # as before a SnapStart snapshot
    assert ship_all(sink, records(3, request_id=request_id)[2:])
    assert sink.connects == 2
    assert seqs(rsyslog.wait_for(3, where=of_request(request_id))) == [0, 1, 2]
    sink.close()


# -- TLS verification ----------------------------------------------------------------------------------------------
@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    """A self-signed certificate for the same names that rsyslog's certificate has, but not rsyslog's."""
    cert = tmp_path / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(tmp_path / "other-key.pem"), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def test_tls_with_the_wrong_ca_fails_verification_and_keeps_the_records(rsyslog: RsyslogServer, other_ca: Path) -> None:
    # GIVEN a sink that trusts a CA that did not sign rsyslog's certificate
    request_id = f"req-{uuid.uuid4().hex}"
    sink = handler(rsyslog.tls_url, syslog_ca_file=str(other_ca))

    # WHEN it ships
    assert not ship_all(sink, records(4, request_id=request_id))

    # THEN the handshake fails, the failure is counted, and all 4 records stay pending
    assert sink.stats.failures == 1
    assert "CERTIFICATE_VERIFY_FAILED" in sink.stats.last_error
    assert (sink.stats.delivered, len(sink.pending)) == (0, 4)

    # AND nothing of them reached rsyslog (checked after a message sent later over a trusted connection arrived)
    marker = f"req-{uuid.uuid4().hex}"
    assert ship_all(handler(rsyslog.tls_url, syslog_ca_file=str(rsyslog.ca_file)), records(1, request_id=marker))
    rsyslog.wait_for(1, where=of_request(marker))
    assert [m for m in rsyslog.messages() if of_request(request_id)(m)] == []
    sink.close()


def test_tls_without_verification_delivers_and_warns_once(
    rsyslog: RsyslogServer, other_ca: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN verification turned off (the CA file would not vouch for the server)
    request_id = f"req-{uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING, logger="flightrec.syslog"):
        sink = handler(rsyslog.tls_url, syslog_ca_file=str(other_ca), syslog_tls_verify=False)
        # WHEN it ships, twice
        assert ship_all(sink, records(2, request_id=request_id))
        assert ship_all(sink, records(3, request_id=request_id)[2:])

    # THEN the records arrive, and exactly one warning was logged, at construction
    assert seqs(rsyslog.wait_for(3, where=of_request(request_id))) == [0, 1, 2]
    warnings = [r for r in caplog.records if r.name == "flightrec.syslog"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "SYSLOG_TLS_VERIFY" in warnings[0].getMessage()
    assert sink.connects == 1
    sink.close()


# -- UDP size cap --------------------------------------------------------------------------------------------------
def rsyslog_msgs(rs: RsyslogServer, request_id: str) -> list[Message]:
    return [m for m in rs.messages() if of_request(request_id)(m)]


def test_udp_messages_over_the_cap_are_truncated_to_fit_and_counted(rsyslog: RsyslogServer) -> None:
    # GIVEN a 1024-byte datagram cap, a small record, and two records far over it (one of two-byte characters)
    cap = 1024
    tag = uuid.uuid4().hex
    texts = {f"req-{tag}-small": "small", f"req-{tag}-ascii": "x" * 5000, f"req-{tag}-utf8": "é" * 3000}
    batch = {rid: records(1, request_id=rid, messages=[text])[0] for rid, text in texts.items()}
    sink = handler(rsyslog.udp_url, syslog_udp_max_bytes=cap)

    # WHEN shipped
    assert ship_all(sink, list(batch.values()))

    # THEN the small one arrived whole
    [small] = rsyslog.wait_for(1, where=of_request(f"req-{tag}-small"))
    assert small["msg"].encode() == batch[f"req-{tag}-small"].data
    # AND the two big ones were cut so that the whole datagram fits the cap, and were counted
    assert sink.truncated == 2
    for kind in ("ascii", "utf8"):
        rendered = batch[f"req-{tag}-{kind}"]
        [message] = rsyslog.wait_for(1, where=of_request(f"req-{tag}-{kind}"))
        body = message["msg"].encode()  # rsyslog's JSON holds valid UTF-8: the cut never splits a character
        datagram = len(sink.rfc5424.header(rendered)) + len(body)
        assert rendered.data.startswith(body)
        assert cap - 1 <= datagram <= cap  # at the cap, or one byte short where a character was in the way
    assert len(rsyslog_msgs(rsyslog, f"req-{tag}-ascii")) == 1  # no remainder arriving as a second message
    sink.close()


# -- rsyslog killed and restarted ----------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_killed_server_keeps_records_pending_and_restart_delivers_each_exactly_once(
    private_rsyslog: RsyslogServer, transport: str
) -> None:
    rs = private_rsyslog
    request_id = f"req-{uuid.uuid4().hex}"
    batch = records(8, request_id=request_id)
    sink = handler(url_of(rs, transport), **tls_config(rs, transport))

    # GIVEN a sink with an open connection that has delivered 3 records
    assert ship_all(sink, batch[:3])
    rs.wait_for(3, where=of_request(request_id))

    # WHEN rsyslog is killed and 5 more records are shipped
    rs.kill()
    assert not ship_all(sink, batch[3:])

    # THEN the attempt fails (counted) and all 5 stay pending: nothing went into the dead connection
    assert sink.stats.failures == 1
    assert (sink.stats.delivered, len(sink.pending)) == (3, 5)

    # WHEN rsyslog comes back on the same ports and the sink ships again (skipping its backoff)
    rs.restart()
    sink.retry_now()
    assert sink.ship(time.monotonic() + 10)

    # THEN all 8 arrived exactly once, in order
    assert (sink.stats.delivered, len(sink.pending)) == (8, 0)
    rs.wait_for(8, where=of_request(request_id))
    marker = f"req-{uuid.uuid4().hex}"  # anything late (a duplicate) would arrive before this
    assert ship_all(sink, records(1, request_id=marker))
    rs.wait_for(1, where=of_request(marker))
    assert seqs(rsyslog_msgs(rs, request_id)) == list(range(8))
    sink.close()


# -- a peer that never reads ---------------------------------------------------------------------------------------
class NeverReads:
    """A TCP listener that accepts connections and holds them without ever reading, with a tiny receive buffer."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # inherited by accepted sockets
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def never_reads() -> Iterator[NeverReads]:
    server = NeverReads()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("timeout_ms", "budget_s", "counted_failure"),
    [
        (60_000, 0.5, False),  # the deadline comes first: not a failure, just out of time
        (200, 30.0, True),  # the peer stalls for the send timeout first: a counted failure, long before the deadline
    ],
)
def test_a_peer_that_never_reads_cannot_hold_ship_past_its_deadline(
    never_reads: NeverReads, timeout_ms: int, budget_s: float, counted_failure: bool
) -> None:
    # GIVEN far more data than the socket buffers on both sides can hold (200 records of ~64 KiB)
    sink = handler(f"tcp://127.0.0.1:{never_reads.port}", syslog_timeout_ms=timeout_ms)
    batch = records(200, request_id=f"req-{uuid.uuid4().hex}", messages=["y" * 64_000])
    for rendered in batch:
        sink.accept(rendered)

    # WHEN shipped with a deadline
    started = time.monotonic()
    complete = sink.ship(started + budget_s)
    elapsed = time.monotonic() - started

    # THEN ship returned (without raising) by the deadline plus a generous margin, incomplete
    assert not complete
    assert elapsed < min(budget_s, timeout_ms / 1000) + MARGIN_S
    # AND every record not completely written is still pending; only whole frames count as delivered
    assert sink.stats.delivered + len(sink.pending) == len(batch)
    assert len(sink.pending) > 0
    assert (sink.stats.failures == 1) is counted_failure
    sink.close()
