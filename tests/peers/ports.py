"""Free loopback ports, readiness polling and the small process helpers every peer shares.

Everything here binds or connects to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HOST = "127.0.0.1"

#: The Debian system user that owns PostgreSQL and PgBouncer processes when the caller is root
#: (initdb, postgres and pgbouncer all refuse to run as root).
SERVICE_USER = "postgres"

SETUP_HINT = "run `./dev test` (or `./dev setup`), which installs it from Debian"


class PeerUnavailable(RuntimeError):
    """A server binary the peer needs is not installed. The message says how to install it."""


class PeerError(RuntimeError):
    """A peer failed to start, stop or answer. The message carries the peer's own log tail."""


def free_port(*, udp_too: bool = False) -> int:
    """A TCP port on 127.0.0.1 that is free right now (and free for UDP too when ``udp_too``)."""
    return free_ports(1, udp_too=udp_too)[0]


def free_ports(count: int, *, udp_too: bool = False) -> list[int]:
    """``count`` distinct free ports. All sockets stay open until every port is picked, so no duplicates."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            if udp_too:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(udp)
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def port_accepts(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.005,
    on_timeout: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; raise :class:`PeerError` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            raise PeerError(f"timed out after {timeout:g} s waiting for {what}" + (f"\n{detail}" if detail else ""))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def wait_for_port(port: int, timeout: float = 10.0, host: str = HOST, *, what: str = "") -> None:
    """Wait until ``host:port`` accepts TCP connections."""
    wait_until(lambda: port_accepts(port, host), timeout, what or f"{host}:{port} to accept connections")


def require_binary(name: str, *, search: Sequence[str] = ()) -> str:
    """The absolute path of executable ``name`` (looked up in ``search`` dirs first, then PATH).

    Raises :class:`PeerUnavailable` with an install hint when it is nowhere to be found.
    """
    for folder in search:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise PeerUnavailable(f"`{name}` is not installed: {SETUP_HINT}")
    return found


def is_root() -> bool:
    return os.geteuid() == 0


def as_service_user(cmd: Sequence[str]) -> list[str]:
    """Prefix ``cmd`` so that it runs as the ``postgres`` system user when we are root.

    ``setpriv`` execs the command, so a Popen of the result has the server's own PID.
    """
    if not is_root():
        return list(cmd)
    setpriv = require_binary("setpriv")
    return [setpriv, f"--reuid={SERVICE_USER}", f"--regid={SERVICE_USER}", "--init-groups", "--", *cmd]


def give_to_service_user(path: Path) -> None:
    """Let the service user own ``path`` (only needed, and only possible, when we are root)."""
    if is_root():
        shutil.chown(path, SERVICE_USER, SERVICE_USER)


def run_checked(cmd: Sequence[str], *, what: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise :class:`PeerError` with its output instead of a bare exit status."""
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{what} timed out after {timeout:g} s: {' '.join(cmd)}") from exc
    if result.returncode != 0:
        raise PeerError(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
        )
    return result


def tail(path: Path, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a log file, or a note saying it does not exist."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return f"({path} does not exist)"
    text = data.decode("utf-8", "replace")
    return f"--- {path} (last {len(data)} bytes) ---\n{text}"


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate(proc: subprocess.Popen[bytes], sig: int, timeout: float = 10.0) -> None:
    """Send ``sig`` to ``proc`` and reap it; escalate to SIGKILL if it outlives ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
