"""rsyslog as an RFC 5424 receiver on 127.0.0.1: UDP, TCP and TLS in, one JSON object per line out (test-peers.md §1).

The config is our own file in a temporary directory: it never touches /etc/rsyslog.conf, /dev/log or a system
daemon. TCP and TLS accept both octet-counted and LF-framed messages on the same port. Messages of up to 64 KiB
arrive whole; control characters are kept (not escaped to ``#012``); structured data is parsed by mmpstrucdata
with the SD names' case kept.

Each received message becomes a dict with the keys ``pri facility severity version timestamp hostname app_name
procid msgid structured_data sd msg input`` (``sd`` is mmpstrucdata's parse: a list of ``{"ID": …, param: value}``;
``input`` is ``udp``, ``tcp`` or ``tls``). A leading UTF-8 BOM is stripped from ``msg``.

    with RsyslogServer() as rs:
        rs.send_udp(b"<14>1 2024-01-01T00:00:00Z host app - - - hello")
        [m] = rs.wait_for(1)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .ports import (
    HOST,
    PeerError,
    free_ports,
    port_accepts,
    require_binary,
    run_checked,
    tail,
    terminate,
    wait_until,
)

Message = dict[str, Any]

#: The APP-NAME of the readiness probe; such messages go to a separate file and never show up in messages().
PROBE_APP = "flightrec-peer-probe"

_CONFIG = """\
global(
  workDirectory="{d}/work"
  maxMessageSize="{max_message_size}"
  net.enableDNS="off"
  processInternalMessages="on"
  parser.escapeControlCharactersOnReceive="off"
)
module(load="imudp")
module(load="imtcp" discardTruncatedMsg="on")
module(load="mmpstrucdata")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="rcv" name="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="rcv" name="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="rcv" name="tls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile="{d}/cert.pem" streamDriver.CertFile="{d}/cert.pem" streamDriver.KeyFile="{d}/key.pem")

template(name="ts3339" type="string" string="%timereported:::date-rfc3339%")
template(name="jsonl"  type="string" string="%$!o%\\n")

ruleset(name="rcv") {{
  if $app-name == "{probe}" then {{
    action(type="omfile" file="{d}/probe.log")
    stop
  }}
  action(type="mmpstrucdata" sd_name.lowercase="off")
  set $!o!pri = cnum($pri);
  set $!o!facility = cnum($syslogfacility);
  set $!o!severity = cnum($syslogseverity);
  set $!o!version = $protocol-version;
  set $!o!timestamp = exec_template("ts3339");
  set $!o!hostname = $hostname;
  set $!o!app_name = $app-name;
  set $!o!procid = $procid;
  set $!o!msgid = $msgid;
  set $!o!structured_data = $structured-data;
  set $!o!sd = $!rfc5424-sd;
  set $!o!msg = $msg;
  set $!o!input = $inputname;
  action(type="omfile" file="{d}/out.jsonl" template="jsonl")
}}
action(type="omfile" file="{d}/internal.log")
"""


class RsyslogServer:
    """A private rsyslogd; ports stay the same across :meth:`restart`, messages accumulate in one file."""

    host = HOST

    def __init__(
        self,
        *,
        udp_port: int | None = None,
        tcp_port: int | None = None,
        tls_port: int | None = None,
        max_message_size: str = "64k",
        start_timeout: float = 10.0,
    ) -> None:
        self._binary = require_binary("rsyslogd")
        self._openssl = require_binary("openssl")
        picked = iter(free_ports(3, udp_too=True))
        self.udp_port = udp_port or next(picked)
        self.tcp_port = tcp_port or next(picked)
        self.tls_port = tls_port or next(picked)
        self.max_message_size = max_message_size
        self.start_timeout = start_timeout
        self.base_dir = Path(tempfile.mkdtemp(prefix="flightrec-rsyslog-", dir="/tmp"))
        self.config_path = self.base_dir / "rsyslog.conf"
        self.output_path = self.base_dir / "out.jsonl"
        self.internal_log_path = self.base_dir / "internal.log"
        self.stdout_path = self.base_dir / "stdout.log"
        self.ca_file = self.base_dir / "cert.pem"
        self.key_file = self.base_dir / "key.pem"
        self._probe_path = self.base_dir / "probe.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._probes = 0
        self._closed = False

    # -- addresses ---------------------------------------------------------------------------------------------
    @property
    def udp_url(self) -> str:
        return f"udp://{self.host}:{self.udp_port}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://{self.host}:{self.tcp_port}"

    @property
    def tls_url(self) -> str:
        return f"tls://{self.host}:{self.tls_port}"

    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise PeerError("rsyslogd is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        (self.base_dir / "work").mkdir(exist_ok=True)
        if not self.ca_file.exists():
            run_checked(
                [self._openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-days", "2", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-keyout", str(self.key_file), "-out", str(self.ca_file)],
                what="openssl (self-signed certificate for rsyslog TLS)",
            )  # fmt: skip
        self.config_path.write_text(
            _CONFIG.format(
                d=self.base_dir, udp=self.udp_port, tcp=self.tcp_port, tls=self.tls_port,
                max_message_size=self.max_message_size, probe=PROBE_APP,
            )
        )  # fmt: skip
        try:
            run_checked([self._binary, "-N1", "-f", str(self.config_path)], what="rsyslogd -N1 (config check)")
        except PeerError as exc:
            raise PeerError(f"{exc}\nconfig: {self.config_path}") from None

    def start(self) -> Self:
        """Check the config, start rsyslogd in the foreground and wait until UDP, TCP and TLS are served."""
        if self._closed:
            raise PeerError("this RsyslogServer was closed; make a new one")
        if self.running:
            return self
        self._prepare()
        with self.stdout_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [self._binary, "-n", "-f", str(self.config_path), "-i", str(self.base_dir / "rsyslogd.pid")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        atexit.register(self.close)
        try:
            self._wait_ready()
        except PeerError:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None

        def exited() -> bool:
            if proc.poll() is not None:
                raise PeerError(f"rsyslogd exited at start with status {proc.returncode}\n{self._logs()}")
            return False

        wait_until(
            lambda: exited() or port_accepts(self.tcp_port),
            self.start_timeout,
            f"rsyslogd to listen on {self.host}:{self.tcp_port}",
            on_timeout=self._logs,
        )
        # A probe message per input, routed to probe.log (never to out.jsonl): the whole pipeline works, TLS
        # included, once all three are written. UDP has no handshake, so its probe is resent until it shows up.
        self._probes += 1
        tokens = {name: f"ready-{name}-{os.getpid()}-{self._probes}" for name in ("udp", "tcp", "tls")}
        probes = {name: f"<14>1 - - {PROBE_APP} - - - {token}".encode() for name, token in tokens.items()}
        self.send_tcp(probes["tcp"])
        tls_deadline = time.monotonic() + self.start_timeout
        while True:  # the TLS listener may come up a moment after the plain one
            try:
                self.send_tls(probes["tls"])
                break
            except OSError as exc:
                exited()
                if time.monotonic() > tls_deadline:
                    raise PeerError(
                        f"rsyslogd's TLS input on port {self.tls_port} never worked: {exc}\n{self._logs()}"
                    ) from exc
                time.sleep(0.02)
        last_send = 0.0

        def probed() -> bool:
            nonlocal last_send
            exited()
            written = self._probe_path.read_text(errors="replace") if self._probe_path.exists() else ""
            if all(token in written for token in tokens.values()):
                return True
            if tokens["udp"] not in written and time.monotonic() - last_send > 0.2:
                self.send_udp(probes["udp"])
                last_send = time.monotonic()
            return False

        wait_until(probed, self.start_timeout, "rsyslogd to write its probe messages", on_timeout=self._logs)

    def stop(self) -> None:
        """Graceful stop (SIGTERM): what was received is written out first."""
        if self._proc is not None:
            terminate(self._proc, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: connections are reset, nothing is flushed."""
        if self._proc is not None:
            terminate(self._proc, signal.SIGKILL)

    def restart(self) -> None:
        """Stop (if running) and start again on the same ports; earlier messages stay readable."""
        self.stop()
        self.start()

    def close(self) -> None:
        if self._closed:
            return
        atexit.unregister(self.close)
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------------------------
    def messages(self) -> list[Message]:
        """Every complete message received since start (or since :meth:`clear`), parsed; BOM stripped from msg."""
        try:
            with self.output_path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        out: list[Message] = []
        for line in data.split(b"\n")[:-1]:  # the last piece is empty or a line still being written
            if not line:
                continue
            message: Message = json.loads(line)
            msg = message.get("msg")
            if isinstance(msg, str) and msg.startswith("\ufeff"):
                message["msg"] = msg[1:]
            out.append(message)
        return out

    def clear(self) -> None:
        """Forget the messages received so far: :meth:`messages` then returns only newer ones."""
        try:
            self._offset = self.output_path.stat().st_size
        except FileNotFoundError:
            self._offset = 0

    def wait_for(
        self, n: int, timeout: float = 10.0, *, where: Callable[[Message], bool] | None = None
    ) -> list[Message]:
        """Poll until at least ``n`` messages (matching ``where``, if given) are in; return those messages.

        On timeout, raises :class:`TimeoutError` showing what did arrive and rsyslog's internal.log.
        """
        found: list[Message] = []

        def enough() -> bool:
            nonlocal found
            found = [m for m in self.messages() if where is None or where(m)]
            return len(found) >= n

        try:
            wait_until(enough, timeout, f"{n} syslog message(s)")
        except PeerError:
            shown = "\n".join(json.dumps(m)[:300] for m in found[-5:]) or "(none)"
            state = "running" if self.running else f"NOT running (exit status {self._proc and self._proc.poll()})"
            raise TimeoutError(
                f"rsyslog received {len(found)} of {n} expected message(s) within {timeout:g} s "
                f"(rsyslogd {state}; udp={self.udp_port} tcp={self.tcp_port} tls={self.tls_port}).\n"
                f"Last ones:\n{shown}\n{self._logs()}"
            ) from None
        return found

    def _logs(self) -> str:
        return f"{tail(self.internal_log_path)}\n{tail(self.stdout_path, 2000)}"

    # -- sending (for tests of the receiver itself, and handy in others) ---------------------------------------
    def send_udp(self, *messages: bytes) -> None:
        """One datagram per message."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for message in messages:
                sock.sendto(message, (self.host, self.udp_port))

    def send_tcp(self, *messages: bytes, octet_counted: bool = True) -> None:
        """All messages on one plain TCP connection, octet-counted (RFC 6587 §3.4.1) or LF-terminated."""
        with socket.create_connection((self.host, self.tcp_port), timeout=5) as sock:
            sock.sendall(frame(messages, octet_counted=octet_counted))

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate (hostname ``localhost`` or the IP)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def send_tls(self, *messages: bytes, octet_counted: bool = True) -> None:
        """All messages on one TLS connection (RFC 5425 uses octet counting)."""
        with (
            socket.create_connection((self.host, self.tls_port), timeout=5) as raw,
            self.tls_context().wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(frame(messages, octet_counted=octet_counted))
            with contextlib.suppress(OSError, ValueError):
                sock.unwrap()  # a clean close_notify; without it rsyslog logs "unexpected eof"

    def __repr__(self) -> str:
        return f"<RsyslogServer udp={self.udp_port} tcp={self.tcp_port} tls={self.tls_port} dir={self.base_dir}>"


def frame(messages: Iterable[bytes], *, octet_counted: bool = True) -> bytes:
    """Frame messages for a syslog stream: ``b"<len> <msg>"`` each, or ``msg + b"\\n"``."""
    if octet_counted:
        return b"".join(b"%d %s" % (len(m), m) for m in messages)
    return b"".join(m + b"\n" for m in messages)
