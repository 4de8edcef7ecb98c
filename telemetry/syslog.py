"""The syslog sink: every record as one RFC 5424 message, over UDP, TCP or TLS, to the server in `SYSLOG_URL`.

Responsibility
    `format_rfc5424` turns a `Rendered` record into ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG``
    where MSG is the record's canonical JSON bytes, unchanged (JSON escapes CR and LF, so a message can never forge a
    second syslog line) and SD carries the ids an operator filters on (request id, function, version, trace id,
    level). `SyslogHandler` delivers those messages: one datagram each over UDP, RFC 6587 octet-counted frames over
    one persistent TCP or TLS (RFC 5425) connection.

Delivery promise: at most once, loss counted where it can be seen
    TCP and TLS have no application-level acknowledgement, so "delivered" means "completely written to the socket".
    What was never completely written stays pending and is resent whole on the next connection; what the kernel had
    already accepted when a connection died is lost (before each batch the sink checks whether the peer has closed
    the connection, which narrows that window to a peer that dies mid-batch). Visible losses are counted: records
    cut to fit a UDP datagram in `SyslogHandler.truncated`, records the pending buffer had to drop in
    `pending.dropped_total`, failed attempts in `stats.failures` (with the last error in `stats.last_error`).

Imports: stdlib, `.records`, `.sink`, `.spill`, `.config`.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import os
import select
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from telemetry.config import TelemetryConfig, TelemetryConfigError
from telemetry.records import Rendered
from telemetry.sink import SinkHandler
from telemetry.spill import PendingBuffer

if TYPE_CHECKING:
    import ssl  # imported for TLS only: ~5 ms of cold start that TCP and UDP do not need

__all__ = [
    "DEFAULT_PORTS",
    "Rfc5424Formatter",
    "SyslogHandler",
    "SyslogTarget",
    "format_rfc5424",
    "parse_syslog_url",
]

log = logging.getLogger("flightrec.syslog")

#: The default port of each transport: RFC 5426 (UDP), RFC 6587 / IANA "syslog-conn" (TCP), RFC 5425 (TLS).
DEFAULT_PORTS: Final[Mapping[str, int]] = {"udp": 514, "tcp": 601, "tls": 6514}

# RFC 5424 §6: field limits in octets.
HOSTNAME_MAX: Final = 255
APP_NAME_MAX: Final = 48
PROCID_MAX: Final = 128
MSGID_MAX: Final = 32
SD_NAME_MAX: Final = 32

NIL: Final = "-"
BOM: Final = b"\xef\xbb\xbf"

# Severity (RFC 5424 table 2) per Python level; levels in between map to the next lower named level, as
# `logging.handlers.SysLogHandler` does for the named ones.
_SEVERITY_CUTS: Final = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

# SD-NAME (RFC 5424 §6.3.2) additionally excludes '=', ']' and '"'.
_SD_NAME_FORBIDDEN: Final = frozenset('=]"')
# PARAM-VALUE may hold any UTF-8, but a raw control character (CR and LF above all) would break LF-framed receivers
# and let a value forge a line; they are written the way rsyslog writes them on receipt (`#012` for LF).
_CONTROL_ESCAPES: Final = {c: f"#{c:03o}" for c in (*range(32), 127)}

# PARAM-NAMEs of the structured data, in the order of the values `Rfc5424Formatter.structured_data` picks.
_SD_PARAMS: Final = ("requestId", "function", "version", "traceId", "level")
_SD_CACHE_MAX: Final = 64

# Frames per socket write: a TLS write is all-or-nothing from our side (an error leaves it unknown how much went
# out), so it is kept to one TLS record's worth; plain TCP reports partial writes exactly and can take more.
_TCP_CHUNK: Final = 64 * 1024
_TLS_CHUNK: Final = 16 * 1024
# How long `close_connections` waits for the TLS close_notify exchange before just closing.
_UNWRAP_TIMEOUT_S: Final = 0.2


def _severity(levelno: int) -> int:
    for cut, severity in _SEVERITY_CUTS:
        if levelno >= cut:
            return severity
    return 7


def _header_field(value: object, limit: int) -> str:
    """Sanitise a header field (HOSTNAME, APP-NAME, PROCID, MSGID): printable US-ASCII, no spaces, cut, or NIL.

    Anything else becomes "_" rather than vanishing, so the field keeps its shape (`my host` → `my_host`).
    """
    text = "" if value is None else str(value)
    if not (text.isascii() and text.isprintable() and " " not in text):
        text = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)
    return text[:limit] or NIL


def _sd_name(sd_id: str) -> str:
    """Validate the configured SD-ID; a bad one would make every message unparseable, so it is refused at init."""
    if not (
        0 < len(sd_id) <= SD_NAME_MAX
        and all(33 <= ord(c) <= 126 for c in sd_id)
        and not _SD_NAME_FORBIDDEN.intersection(sd_id)
    ):
        raise TelemetryConfigError(
            f"SYSLOG_SD_ID must be 1-{SD_NAME_MAX} printable US-ASCII characters without '=', ']', '\"' or spaces "
            f"(e.g. lambda@32473), got {sd_id!r}"
        )
    return sd_id


def _param_value(value: object) -> str:
    """A PARAM-VALUE, escaped per RFC 5424 §6.3.3 (`"`, `\\` and `]` get a backslash), control characters as `#ooo`."""
    text = value if isinstance(value, str) else str(value)
    if not (text.isascii() and text.isprintable()):
        text = text.translate(_CONTROL_ESCAPES)
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if '"' in text:
        text = text.replace('"', '\\"')
    if "]" in text:
        text = text.replace("]", "\\]")
    return text


def _xray_root(value: str) -> str:
    """The trace id proper from a `Lambda-Runtime-Trace-Id` header (`Root=1-…;Parent=…;Sampled=…`)."""
    if value.startswith("Root="):
        return value.split(";", 1)[0][5:]
    return value


class Rfc5424Formatter:
    """Formats records for one sink: the header parts that never change are built once, here.

    Per record only the PRI (looked up by severity), the timestamp, the MSGID (cached per kind) and the structured
    data are assembled; MSG is the record's JSON bytes as they are.
    """

    __slots__ = ("_bom", "_msgids", "_pri", "_sd_cache", "_sd_open", "_static")

    def __init__(
        self, *, facility: int, hostname: str, app_name: str, procid: str | int, sd_id: str, bom: bool = False
    ) -> None:
        if not 0 <= facility <= 23:
            raise TelemetryConfigError(f"SYSLOG_FACILITY must be 0-23, got {facility}")
        self._pri = tuple(f"<{facility * 8 + severity}>1 " for severity in range(8))
        self._static = (
            f" {_header_field(hostname, HOSTNAME_MAX)} {_header_field(app_name, APP_NAME_MAX)}"
            f" {_header_field(procid, PROCID_MAX)} "
        )
        self._sd_open = "[" + _sd_name(sd_id)
        self._bom = BOM if bom else b""
        self._msgids: dict[object, str] = {}
        self._sd_cache: dict[tuple[object, ...], str] = {}

    def _msgid(self, kind: object) -> str:
        msgid = self._msgids.get(kind)
        if msgid is None:
            msgid = _header_field(kind, MSGID_MAX)
            if len(self._msgids) < 64:  # kinds are a small closed set; never grow without bound
                self._msgids[kind] = msgid
        return msgid

    def structured_data(self, event: Mapping[str, Any]) -> str:
        """``[<sd_id> requestId="…" function="…" version="…" traceId="…" level="…"]`` with only present values.

        Records of one invocation share all five values, so the escaped element is cached by them (a few entries:
        the cache is emptied whenever it grows past `_SD_CACHE_MAX`).
        """
        trace = event.get("trace_id")
        if not trace:
            xray = event.get("xray_trace_id")
            trace = _xray_root(xray) if isinstance(xray, str) else xray
        values = (
            event.get("request_id"),
            event.get("function_name"),
            event.get("function_version"),
            trace,
            event.get("level"),
        )
        key: tuple[object, ...] | None = values
        try:
            cached = self._sd_cache.get(values)
        except TypeError:  # an unhashable value (only possible in a hand-made event): no caching
            cached = None
            key = None
        if cached is not None:
            return cached
        parts = [self._sd_open]
        for name, value in zip(_SD_PARAMS, values, strict=True):
            if value is not None and value != "":
                parts.append(f' {name}="{_param_value(value)}"')
        element = NIL if len(parts) == 1 else "".join(parts) + "]"
        if key is not None:
            if len(self._sd_cache) >= _SD_CACHE_MAX:
                self._sd_cache.clear()
            self._sd_cache[key] = element
        return element

    def header(self, rendered: Rendered) -> bytes:
        """Everything before MSG, including the separating space (and the BOM when enabled)."""
        event = rendered.event
        timestamp = event.get("timestamp")
        if not (
            isinstance(timestamp, str)
            and 0 < len(timestamp) <= 32
            and timestamp.isascii()
            and timestamp.isprintable()
            and " " not in timestamp
        ):
            timestamp = NIL
        head = (
            f"{self._pri[_severity(rendered.levelno)]}{timestamp}{self._static}"
            f"{self._msgid(event.get('kind'))} {self.structured_data(event)} "
        )
        # "replace" only matters for lone surrogates, which cannot be UTF-8: the output is always valid UTF-8.
        return head.encode("utf-8", "replace") + self._bom

    def format(self, rendered: Rendered) -> bytes:
        return self.header(rendered) + rendered.data


@functools.lru_cache(maxsize=16)
def _formatter(  # noqa: PLR0917 - positional: the cache key of a call with keywords costs about 1 µs more
    facility: int, hostname: str, app_name: str, procid: str | int, sd_id: str, bom: bool
) -> Rfc5424Formatter:
    return Rfc5424Formatter(
        facility=facility, hostname=hostname, app_name=app_name, procid=procid, sd_id=sd_id, bom=bom
    )


def format_rfc5424(
    rendered: Rendered,
    *,
    facility: int,
    hostname: str,
    app_name: str,
    procid: str | int,
    sd_id: str,
    bom: bool = False,
) -> bytes:
    """One RFC 5424 message for `rendered` (see `Rfc5424Formatter`; the formatter is cached per argument set)."""
    return _formatter(facility, hostname, app_name, procid, sd_id, bom).format(rendered)


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    transport: str  # udp | tcp | tls
    host: str
    port: int


def _shown(url: str) -> str:
    """`url` fit for an error message: user info (a password above all) is never echoed."""
    url = url.strip()
    if "@" not in url:
        return url
    scheme, sep, _ = url.partition("://")
    host = url.rpartition("@")[2]
    return f"{scheme}://***@{host}" if sep else f"***@{host}"


def parse_syslog_url(url: str) -> SyslogTarget:
    """`udp://host[:port]`, `tcp://host[:port]` or `tls://host[:port]` (IPv6 as `[::1]`); anything else is refused.

    A URL with user info is refused without echoing it: the password must not reach an init error or a log line.
    """
    usage = "SYSLOG_URL must be udp://host[:port], tcp://host[:port] or tls://host[:port]"
    shown = _shown(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        detail = "" if shown != url.strip() else f" ({exc})"  # urllib may quote part of the user info
        raise TelemetryConfigError(f"{usage}, got {shown!r}{detail}") from None
    transport = parts.scheme.lower()
    if transport not in DEFAULT_PORTS:
        scheme = parts.scheme if shown == url.strip() else "***"
        raise TelemetryConfigError(f"{usage}, got {shown!r} (unknown scheme {scheme!r})")
    if not parts.hostname:
        raise TelemetryConfigError(f"{usage}, got {shown!r} (no host)")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise TelemetryConfigError(f"{usage}, got {shown!r} (no user, path, query or fragment allowed)")
    if port == 0:
        raise TelemetryConfigError(f"{usage}, got {shown!r} (port 0)")
    return SyslogTarget(transport, parts.hostname, port or DEFAULT_PORTS[transport])


def _tls_would_block(exc: OSError) -> bool:
    """SSLWantReadError/SSLWantWriteError (not BlockingIOErrors); `ssl` is loaded whenever a TLS socket exists."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLWantReadError | ssl.SSLWantWriteError)


class SyslogHandler(SinkHandler):
    """Ships pending records to one syslog server (see the module docstring for the delivery promise).

    UDP: one datagram per message; a message longer than `syslog_udp_max_bytes` has its MSG cut (on a UTF-8
    character boundary) so the datagram fits, and `truncated` counts it. The UDP socket is connected, so an ICMP
    "port unreachable" from an earlier datagram surfaces as a failed attempt instead of passing silently.

    TCP and TLS: RFC 6587 octet counting (``<len> <msg>``) on one persistent connection, opened lazily in
    `_deliver`, with TCP_NODELAY and several frames per socket write. Every socket operation waits at most
    `syslog_timeout_ms` and never past the deadline `ship` was given (DNS resolution excepted: the resolver takes
    no timeout).

    At-most-once per socket write: `_deliver` reports a frame as delivered only once all its bytes were accepted by a
    socket write. A frame cut by a broken connection (or by the deadline, which then closes the connection to keep
    the stream in sync) is resent whole on the next connection. A duplicate is possible only for a frame that the
    peer did receive although its write errored (for TLS the unit is one write of up to 16 KiB of frames: a TLS
    write that errors leaves unknown how much of it went out).
    """

    name_for_logs = "syslog"

    def __init__(self, cfg: TelemetryConfig, pending: PendingBuffer, *, procid: str | int | None = None) -> None:
        if not cfg.syslog_url:
            raise TelemetryConfigError("SYSLOG_URL is not set")
        super().__init__(pending, cfg.syslog_level)
        self.target = parse_syslog_url(cfg.syslog_url)
        self.rfc5424 = Rfc5424Formatter(
            facility=cfg.syslog_facility,
            hostname=cfg.syslog_hostname or socket.gethostname(),
            app_name=cfg.syslog_app_name or cfg.function_name,
            procid=os.getpid() if procid is None else procid,
            sd_id=cfg.syslog_sd_id,
        )
        self.udp_max_bytes = cfg.syslog_udp_max_bytes
        self.timeout_s = cfg.syslog_timeout_ms / 1000
        #: messages whose MSG was cut to fit a UDP datagram
        self.truncated = 0
        #: connections (or UDP sockets) opened; a reconnect after a failure shows up here
        self.connects = 0
        self._sock: socket.socket | None = None
        self._ssl_context: ssl.SSLContext | None = None
        if self.target.transport == "tls":
            import ssl

            context = ssl.create_default_context(cafile=cfg.syslog_ca_file)
            if not cfg.syslog_tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                log.warning(
                    "SYSLOG_TLS_VERIFY is off: the syslog server %s:%d is not authenticated, and anyone on the path "
                    "can read or alter the records",
                    self.target.host,
                    self.target.port,
                )
            self._ssl_context = context

    @classmethod
    def from_config(cls, cfg: TelemetryConfig, pending: PendingBuffer) -> SyslogHandler:
        return cls(cfg, pending)

    # -- delivery ----------------------------------------------------------------------------------------------
    def _deliver(self, batch: list[Rendered], deadline: float) -> int:
        if not batch:
            return 0
        if self.target.transport == "udp":
            return self._deliver_udp(batch, deadline)
        return self._deliver_stream(batch, deadline)

    def _partial_failure(self, exc: OSError, done: int) -> int:
        """Close after an error; report the frames written before it (so they are not resent), or raise."""
        self.close_connections(polite=False)
        if not done:
            raise exc
        self._failed(exc)  # the base class only counts failures that are raised; this one returns a count
        return done

    def _udp_datagram(self, rendered: Rendered) -> bytes:
        header = self.rfc5424.header(rendered)
        data = rendered.data
        if len(header) + len(data) <= self.udp_max_bytes:
            return header + data
        self.truncated += 1
        cut = max(self.udp_max_bytes - len(header), 0)
        while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:  # do not split a UTF-8 character
            cut -= 1
        # Only a header longer than the cap itself (structured-data values of kilobytes) needs the final cut.
        return (header + data[:cut])[: self.udp_max_bytes]

    def _deliver_udp(self, batch: list[Rendered], deadline: float) -> int:
        """One datagram per record on a non-blocking socket: a full send buffer is waited out with `select`, for at
        most `timeout_s` and never past the deadline (cheaper than re-arming a socket timeout per datagram)."""
        done = 0
        try:
            sock = self._sock or self._connect(deadline)
            for rendered in batch:
                if time.monotonic() >= deadline:
                    break
                datagram = self._udp_datagram(rendered)
                while True:
                    try:
                        sock.send(datagram)
                        break
                    except BlockingIOError:
                        wait = min(self.timeout_s, deadline - time.monotonic())
                        if wait <= 0:
                            return done
                        if not select.select([], [sock], [], wait)[1]:
                            if time.monotonic() >= deadline:
                                return done
                            raise TimeoutError(
                                f"the UDP send buffer stayed full for {self.timeout_s * 1000:.0f} ms"
                            ) from None
                done += 1
        except OSError as exc:
            return self._partial_failure(exc, done)
        return done

    def _frame(self, rendered: Rendered) -> bytes:
        message = self.rfc5424.header(rendered) + rendered.data
        return b"%d %b" % (len(message), message)

    def _deliver_stream(self, batch: list[Rendered], deadline: float) -> int:
        done = 0
        tls = self._ssl_context is not None
        chunk_limit = _TLS_CHUNK if tls else _TCP_CHUNK
        try:
            if self._sock is not None and self._peer_closed(self._sock):
                self.close_connections(polite=False)
            sock = self._sock or self._connect(deadline)
        except OSError as exc:
            return self._partial_failure(exc, 0)
        frames = [self._frame(rendered) for rendered in batch]
        start = 0
        while start < len(frames):
            end, size, ends = start, 0, []
            while end < len(frames) and (end == start or size + len(frames[end]) <= chunk_limit):
                size += len(frames[end])
                ends.append(size)
                end += 1
            chunk = frames[start] if end == start + 1 else b"".join(frames[start:end])
            sent, error = self._write(sock, chunk, deadline)
            if sent == len(chunk):
                done += end - start
                start = end
                continue
            # Stopped short, by an error or by the deadline. Frames whose every byte went out count as delivered.
            complete = bisect.bisect_right(ends, sent)
            if error is not None:
                return self._partial_failure(error, done + complete)
            if tls or sent != (ends[complete - 1] if complete else 0):
                # A frame is cut (for TLS, an interrupted write leaves the record state unknown): the stream is
                # out of sync, so it is dropped and the cut frame is resent whole on the next connection.
                self.close_connections(polite=False)
            return done + complete
        return done

    def _write(self, sock: socket.socket, chunk: bytes, deadline: float) -> tuple[int, OSError | None]:
        """Write `chunk`; return how many bytes went out, and the error that stopped the write, if one did.

        Fewer bytes and no error means the deadline came. A peer that takes nothing for `timeout_s` is an error
        (a stalled peer is a failure, running out of time is not). Each bounded `send` reports exactly what it
        wrote (a TLS write is all or nothing), so the count is exact.
        """
        view = memoryview(chunk)
        sent = 0
        while sent < len(chunk):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return sent, None
            sock.settimeout(min(self.timeout_s, remaining))
            try:
                sent += sock.send(view[sent:])
            except TimeoutError:
                if deadline - time.monotonic() <= 0:
                    return sent, None
                return sent, TimeoutError(f"the syslog server took no data for {self.timeout_s * 1000:.0f} ms")
            except OSError as exc:
                return sent, exc
        return sent, None

    def _connect(self, deadline: float) -> socket.socket:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left to connect to the syslog server")
        timeout = min(self.timeout_s, remaining)
        host, port = self.target.host, self.target.port
        if self.target.transport == "udp":
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.connect(address)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._ssl_context is not None:
                    sock.settimeout(min(self.timeout_s, max(deadline - time.monotonic(), 0.001)))
                    sock = self._ssl_context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        self.connects += 1
        self._sock = sock
        return sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """True when the server has closed or reset the connection since the last batch.

        Without this check the first batch after a server restart would be written into a dead connection and
        lost (the kernel accepts it; only the next write fails). Syslog servers send nothing, so anything readable
        is either the end of the stream or TLS housekeeping (e.g. TLS 1.3 session tickets), which is consumed here.
        """
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            sock.setblocking(False)
            while True:
                if not sock.recv(4096):
                    return True
        except BlockingIOError:
            return False
        except OSError as exc:
            return not _tls_would_block(exc)
        except ValueError:
            return True

    # -- connections -------------------------------------------------------------------------------------------
    def close_connections(self, polite: bool = True) -> None:
        """Close the socket; it reopens lazily. A TLS connection is first unwrapped (close_notify) when `polite`."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        unwrap = getattr(sock, "unwrap", None)  # an ssl.SSLSocket's (ssl is imported for TLS only)
        if polite and unwrap is not None:
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(min(self.timeout_s, _UNWRAP_TIMEOUT_S))
                sock = unwrap()
        with contextlib.suppress(OSError):
            sock.close()
