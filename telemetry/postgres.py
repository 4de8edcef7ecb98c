"""`PostgresHandler`: the exactly-once sink into the `logs` table (schema in `telemetry.schema`).

Each batch is one statement, one round trip, one implicit transaction:
`INSERT INTO logs (…) SELECT * FROM unnest($1::timestamptz[], $2::text[], …) ON CONFLICT DO NOTHING`,
every column bound as a binary array (encoded here, `binary_array`: byte for byte what psycopg's list dumper
sends, at a fraction of its cost). The primary key (ts, record_id) makes it idempotent, so a batch whose
outcome is unknown (a lost connection, a cancelled statement) is simply sent again and never duplicates a row.
COPY would be faster but cannot skip rows that are already there.

It works through PgBouncer in transaction mode: autocommit, no server-side prepared statements
(`prepare_threshold=None`), no session state (no SET, no `options`). Time is bounded on the client: the connect
timeout is capped by the caller's deadline, and a statement still running at the deadline is cancelled and, if the
server does not answer the cancel, its socket is shut down (a `_Watchdog` does both). A connection that broke while
idle (the backend was terminated while the Lambda environment was frozen) is replaced once per batch; anything
else raises, so `SinkHandler` counts the failure and keeps the rows pending.

Never is the DSN or its password put in a message: errors carry `redact_dsn()` of it, and libpq's text is
scrubbed of the password before it is quoted.

Imports: stdlib, `.config`, `.records`, `.schema`, `.sink`, `.spill`; psycopg only inside methods (importing it
costs ~85 ms of cold start, paid on the first delivery instead of during init).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import math
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from telemetry.config import TelemetryConfig
from telemetry.records import Rendered
from telemetry.schema import COLUMNS, WIRE_TYPES, insert_sql, migrate, parse_table_name
from telemetry.sink import SinkHandler
from telemetry.spill import PendingBuffer

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "COLUMNS",
    "BinaryArray",
    "DatabaseUrlError",
    "PostgresHandler",
    "PostgresSinkError",
    "binary_array",
    "column_arrays",
    "connection_info",
    "encode_columns",
    "redact_dsn",
    "scrub",
    "unverified_tls",
]

#: How long the watchdog waits for the server to acknowledge a cancel request, then for the statement to end,
#: before it shuts the socket down. A deadline can thus be overrun by at most about twice this.
CANCEL_GRACE_S = 0.5
#: Stored in `ts` for a record whose timestamp cannot be parsed: deterministic, so a retry hits the same key.
UNPARSEABLE_TS = datetime(1970, 1, 1, tzinfo=UTC)
_SECRET_KEYS = frozenset({"password", "sslpassword"})
#: sslmodes that leave a remote server unauthenticated (verify-ca checks the chain but not the host name)
_UNVERIFIED_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca"})

log = logging.getLogger("flightrec.postgres")
_I32 = (-(2**31), 2**31 - 1)


class PostgresSinkError(RuntimeError):
    """Delivery failed; the message names the table and a redacted target, never the password."""


class DatabaseUrlError(ValueError):
    """`LOGS_DATABASE_URL` cannot be parsed; the message is redacted."""


# -- DSN handling (no psycopg needed) ----------------------------------------------------------------------------
_KV_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)*)")


def _parse_kv(dsn: str) -> list[tuple[str, str]] | None:
    """libpq's `key=value` syntax (values bare or single-quoted with backslash escapes); None when malformed."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(dsn):
        if dsn[pos:].strip() == "":
            break
        match = _KV_PAIR.match(dsn, pos)
        if match is None or match.end() == pos:
            return None
        key, raw = match.group(1), match.group(2)
        value = raw[1:-1] if raw.startswith("'") else raw
        pairs.append((key, re.sub(r"\\(.)", r"\1", value)))
        pos = match.end()
        if pos < len(dsn) and not dsn[pos].isspace():
            return None
    return pairs


def _split_url(dsn: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, user, password, hosts, rest) of a postgres URL, or None when it is not one we can read safely.

    libpq ends the user info at the first '@' or '/'; a URL with a second '@', or an '@' after the path starts,
    is ambiguous (a password with a raw '@' or '/'), and ambiguity must never show part of a password.
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return None
    end = len(rest)
    for mark in "/?":
        index = rest.find(mark)
        if index != -1:
            end = min(end, index)
    if rest.count("@") > 1 or ("@" in rest and rest.index("@") > end):
        return None
    userinfo, at, hosts = rest[:end].rpartition("@")
    user, _, password = userinfo.partition(":")
    return scheme, user, password if at else "", hosts, rest[end:]


def redact_dsn(dsn: str) -> str:
    """`dsn` fit for a log line: passwords (in the user info, `password=`/`sslpassword=` anywhere) become `***`.

    A string that cannot be read unambiguously is summarised instead of quoted. Never raises.
    """
    try:
        url = _split_url(dsn)
        if url is not None:
            scheme, user, password, hosts, rest = url
            path, qmark, query = rest.partition("?")
            if qmark:
                pairs = [(k, "***" if k in _SECRET_KEYS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
                query = "&".join(f"{k}={v}" for k, v in pairs)
            auth = f"{user}{':***' if password else ''}@" if user or password else ""
            return f"{scheme}://{auth}{hosts}{path}{qmark}{query}"
        if "://" in dsn:
            return "<unreadable database URL>"
        pairs_kv = _parse_kv(dsn)
        if pairs_kv is None:
            return "<unreadable connection string>"
        return " ".join(f"{k}={'***' if k in _SECRET_KEYS else _quote_kv(v)}" for k, v in pairs_kv)
    except Exception:  # a redactor that raises would put the original in a traceback
        return "<unreadable connection string>"


def _quote_kv(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _secrets(dsn: str) -> list[str]:
    """Every form in which the DSN's passwords could appear in a message."""
    found: list[str] = []
    url = _split_url(dsn)
    if url is not None:
        found.append(url[2])
        found += [v for k, v in parse_qsl(url[4].partition("?")[2]) if k in _SECRET_KEYS]
    elif "://" not in dsn:
        found += [v for k, v in (_parse_kv(dsn) or []) if k in _SECRET_KEYS]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, dsn: str) -> str:
    """`text` (e.g. a libpq error) without `dsn` or any of its passwords."""
    if dsn and dsn in text:
        text = text.replace(dsn, redact_dsn(dsn))
    for secret in _secrets(dsn):
        text = text.replace(secret, "***")
    if "://" in dsn and _split_url(dsn) is None:
        # An ambiguous URL: we cannot tell which part is the password, so quote none of libpq's excerpts of it.
        text = re.sub(r'"[^"]*"', '"…"', text)
    return text


def _is_local(host: str) -> bool:
    """A Unix socket directory, an abstract socket, localhost, or a loopback address."""
    host = host.strip()
    if not host or host.startswith(("/", "@")) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connection_info(dsn: str) -> str:
    """Validate `dsn` and return the conninfo to connect with.

    Its `sslmode` is honoured; without one, a host that is not loopback or a socket gets `sslmode=verify-full`
    (DECISIONS.md), and `application_name` defaults to "flightrec" so the sessions are recognisable in
    pg_stat_activity. Raises `DatabaseUrlError` (redacted) when libpq cannot parse it.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise DatabaseUrlError(f"invalid database URL {redact_dsn(dsn)}: {scrub(str(exc), dsn)}") from None
    extra: dict[str, str] = {}
    hosts = str(params.get("host") or "").split(",") + str(params.get("hostaddr") or "").split(",")
    if "sslmode" not in params and not all(_is_local(host) for host in hosts):
        extra["sslmode"] = "verify-full"
    if "application_name" not in params:
        extra["application_name"] = "flightrec"
    return make_conninfo(dsn, **extra) if extra else dsn


def unverified_tls(dsn: str) -> str | None:
    """Why the connection `dsn` describes would not authenticate its server, or None when it would.

    A loopback host or a socket needs no certificate; any other host is unauthenticated under an explicit
    `sslmode` weaker than `verify-full`. The answer names the host and the sslmode, never the password.
    """
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(connection_info(dsn))
    sslmode = str(params.get("sslmode") or "prefer")
    hosts = [h for h in str(params.get("host") or "").split(",") + str(params.get("hostaddr") or "").split(",") if h]
    remote = [h for h in hosts if not _is_local(h)]
    if sslmode not in _UNVERIFIED_SSLMODES or not remote:
        return None
    weakness = {
        "disable": "no TLS at all",
        "verify-ca": "its host name is not checked against its certificate",
    }.get(sslmode, "its certificate is not verified")
    return (
        f"sslmode={sslmode} for the PostgreSQL host {remote[0]}: {weakness}, so the server is not authenticated "
        "and anyone on the path may read or alter the records (use sslmode=verify-full)"
    )


# -- column extraction -------------------------------------------------------------------------------------------
_fromisoformat = datetime.fromisoformat


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            return UNPARSEABLE_TS
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return UNPARSEABLE_TS


def _timestamps(values: list[Any]) -> list[Any]:
    # Our records carry RFC 3339 UTC ("…Z"), which fromisoformat parses in C (0.4 µs; strptime takes 20 µs).
    try:
        return [_fromisoformat(v) if v.__class__ is str and v[-1:] == "Z" else _timestamp(v) for v in values]
    except ValueError:
        return [_timestamp(v) for v in values]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL


def _texts(values: list[Any]) -> list[Any]:
    return [v if v.__class__ is str and "\x00" not in v else _text(v) for v in values]


def _booleans(values: list[Any]) -> list[Any]:
    return [v if v.__class__ is bool else None for v in values]


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _floats(values: list[Any]) -> list[Any]:
    return [v if v.__class__ is float else _float(v) for v in values]


def _int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value.__class__ is int and _I32[0] <= value <= _I32[1]:
        return int(value)
    return None  # out of range for the column: NULL here, the exact value stays in `record`


def _ints(values: list[Any]) -> list[Any]:
    low, high = _I32
    return [v if v.__class__ is int and low <= v <= high else _int(v) for v in values]


_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _json_text(data: bytes) -> str:
    # jsonb rejects the escape \u0000 (an escaped backslash before "u0000" is fine, hence the regex).
    if b"\\u0000" in data:
        data = _JSON_NUL.sub(rb"\1\\ufffd", data)
    return data.decode("utf-8", "replace")


_CONVERTERS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "timestamptz": _timestamps,
    "text": _texts,
    "boolean": _booleans,
    "double precision": _floats,
    "integer": _ints,
}


def column_arrays(batch: Sequence[Rendered]) -> list[list[Any]]:
    """One list per column of `COLUMNS`, in order: the INSERT's array parameters.

    Values are coerced to the column's type (a value of another type becomes NULL; the record keeps it), NUL
    characters become U+FFFD, and `record` is the rendered JSON itself.
    """
    events = [r.event for r in batch]
    arrays: list[list[Any]] = []
    for col in COLUMNS:
        if col.source is None:
            arrays.append([_json_text(r.data) for r in batch])
        else:
            key = col.source
            arrays.append(_CONVERTERS[col.sql_type]([e.get(key) for e in events]))
    return arrays


# -- binary array parameters -------------------------------------------------------------------------------------
# PostgreSQL's binary array format (array_send): ndim, has-nulls flag, element type oid, then per dimension its
# length and lower bound, then each element as a 4-byte length (-1: NULL) and its bytes.
_ARRAY_HEAD = struct.Struct(">iiiii")
_LEN = struct.Struct(">i")
_NULL = _LEN.pack(-1)
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
#: element oid and array oid of each wire type (the INSERT casts `%b::<wire type>[]`)
_OIDS: dict[str, tuple[int, int]] = {
    "text": (25, 1009),
    "timestamptz": (1184, 1185),
    "boolean": (16, 1000),
    "double precision": (701, 1022),
    "integer": (23, 1007),
}


class BinaryArray:
    """One column's values already in PostgreSQL's binary array format; `oid` is the array type's oid.

    Why not let psycopg dump the lists: its list dumper looks up a dumper per element and packs each one through
    several layers of Python, and for a batch of one invocation's records (20 columns of a dozen values) that was
    ~40 % of the shipper thread's CPU. Each column has one known type, so it is encoded here in one pass.
    """

    __slots__ = ("data", "oid")

    def __init__(self, data: bytes, oid: int) -> None:
        self.data = data
        self.oid = oid


def _element_bytes(sql_type: str, value: Any) -> bytes:
    """One non-NULL element of a non-text column: its length and its binary value."""
    if sql_type == "timestamptz":
        delta = value - _PG_EPOCH
        return b"\x00\x00\x00\x08" + _I64.pack((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if sql_type == "boolean":
        return b"\x00\x00\x00\x01\x01" if value else b"\x00\x00\x00\x01\x00"
    if sql_type == "double precision":
        return b"\x00\x00\x00\x08" + _F64.pack(value)
    return b"\x00\x00\x00\x04" + _LEN.pack(value)  # integer



def _text_elements(values: list[Any]) -> tuple[list[bytes], int]:
    parts: list[bytes] = []
    append = parts.append
    pack = _LEN.pack
    nulls = 0
    for value in values:
        if value is None:
            append(_NULL)
            nulls = 1
        else:
            encoded = value.encode("utf-8")  # strict, like psycopg: a lone surrogate raises UnicodeEncodeError
            append(pack(len(encoded)))
            append(encoded)
    return parts, nulls


def binary_array(sql_type: str, values: list[Any]) -> BinaryArray:
    """`values` (as `column_arrays` made them: the column's Python type or None) as one binary array parameter."""
    wire = WIRE_TYPES.get(sql_type, sql_type)
    element_oid, array_oid = _OIDS[wire]
    if wire == "text":
        parts, nulls = _text_elements(values)
    else:
        parts = [_NULL if value is None else _element_bytes(wire, value) for value in values]
        nulls = int(None in values)
    head = _ARRAY_HEAD.pack(1, nulls, element_oid, len(values), 1)
    return BinaryArray(head + b"".join(parts), array_oid)


def encode_columns(arrays: list[list[Any]]) -> list[BinaryArray]:
    """`column_arrays`' output as the INSERT's parameters, one binary array per column of `COLUMNS`."""
    return [binary_array(col.sql_type, values) for col, values in zip(COLUMNS, arrays, strict=True)]


@functools.cache
def _binary_array_dumper() -> type[Any]:
    """psycopg's side of `BinaryArray` (built on first use: psycopg is imported lazily)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class BinaryArrayDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return obj.data  # type: ignore[no-any-return]

        def get_key(self, obj: Any, format: Any) -> Any:
            return (BinaryArray, obj.oid)

        def upgrade(self, obj: Any, format: Any) -> Dumper:
            dumper = BinaryArrayDumper(BinaryArray)
            dumper.oid = obj.oid
            return dumper

    return BinaryArrayDumper


def _stub(record: Rendered, error: BaseException) -> Rendered:
    """What is stored for a record that PostgreSQL rejects even alone: its identity, the reason, and its JSON as
    a string (always storable), so the audit trail shows it instead of the sink retrying it forever."""

    def clean(value: Any) -> Any:
        return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value

    keep = ("timestamp", "record_id", "kind", "level", "logger", "request_id", "function_name", "function_version")
    event = {key: clean(record.event.get(key)) for key in keep}
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    event["flightrec_unstorable"] = {"error": clean(f"{type(error).__name__}: {reason}")}
    event["original"] = record.data.decode("utf-8", "replace").replace("\x00", "\ufffd")
    return Rendered(event=event, data=json.dumps(event, ensure_ascii=False).encode(), levelno=record.levelno)


# -- the deadline guard ------------------------------------------------------------------------------------------
class _Watchdog:
    """Ends a statement that is still running at its deadline: cancel it, then cut the socket if that fails.

    One daemon thread per handler, started on first use and idle between statements. psycopg's sync API has no
    per-statement timeout, and `SET statement_timeout` would be session state that PgBouncer's transaction pooling
    cannot carry; the server-side cancel frees the backend, the socket shutdown frees us from a server that is
    not answering at all.

    The thread is woken only when a statement's deadline is earlier than the time it already plans to wake at;
    a statement that ends does not wake it (it finds no statement when it wakes, and sleeps until the next one).
    One flush after another (one statement each, deadlines a flush budget away) thus costs about one wake-up per
    budget instead of two per statement (measured: the watchdog was ~3 % of the runtime's CPU in the benchmark).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._job: tuple[float, psycopg.Connection[Any], int] | None = None
        self._done = threading.Event()
        self._firing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_at = math.inf  # when the thread wakes by itself (monotonic); inf: only when notified
        self.fired = False

    @contextmanager
    def guard(self, conn: psycopg.Connection[Any], deadline: float) -> Iterator[None]:
        with self._cond:
            self._job = (deadline, conn, conn.fileno())
            self.fired = False
            self._stopping = False
            self._done.clear()
            if self._thread is None or not self._thread.is_alive():
                self._wake_at = math.inf
                self._thread = threading.Thread(target=self._run, name="flightrec-pg-watchdog", daemon=True)
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._job = None
                self._done.set()
            with self._firing:  # a cancel in flight must not reach the connection's next statement
                pass

    def stop(self) -> None:
        """Let the thread end (it starts again with the next `guard`)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    job = self._job
                    if job is None:
                        if self._stopping:
                            self._thread = None  # under the lock: the next `guard` starts a new thread
                            return
                        self._wake_at = math.inf
                        self._cond.wait()
                        continue
                    remaining = job[0] - time.monotonic()
                    if remaining > 0:
                        self._wake_at = job[0]
                        self._cond.wait(remaining)
                        continue
                    self._wake_at = math.inf
                    self._job = None
                    self._firing.acquire()
                    break
            try:
                self.fired = True
                self._expire(job[1], job[2])
            finally:
                self._firing.release()

    def _expire(self, conn: psycopg.Connection[Any], fileno: int) -> None:
        with contextlib.suppress(Exception):  # the socket shutdown below is the fallback
            conn.cancel_safe(timeout=CANCEL_GRACE_S)
        if self._done.wait(CANCEL_GRACE_S):
            return
        try:
            cut = socket.socket(fileno=os.dup(fileno))
        except OSError:
            return
        with contextlib.suppress(OSError), cut:
            cut.shutdown(socket.SHUT_RDWR)


# -- the sink ----------------------------------------------------------------------------------------------------
class PostgresHandler(SinkHandler):
    """Delivers records into `table`, exactly once; see the module docstring for how.

    Counters besides `stats`: `inserted` (rows new to the table), `duplicates` (rows already there),
    `reconnects` (broken connections replaced mid-delivery) and `quarantined` (records PostgreSQL rejected even
    alone, stored as stubs). `close_connections()` is for the shipper thread or an idle sink.
    """

    name_for_logs = "postgres"
    strict_capable = True

    def __init__(
        self,
        pending: PendingBuffer,
        dsn: str,
        *,
        table: str = "logs",
        auto_migrate: bool = False,
        connect_timeout_s: float = 3.0,
        batch_size: int = 1000,
        level: int = 0,
    ) -> None:
        super().__init__(pending, level)
        parse_table_name(table)  # a bad LOGS_TABLE fails at init, not at the first flush
        self.table = table
        self.auto_migrate = auto_migrate
        self.connect_timeout_s = connect_timeout_s
        self.batch_size = batch_size
        self.target = redact_dsn(dsn)
        self._dsn = dsn
        self._conninfo: str | None = None
        self._sql: str | None = None
        self._conn: psycopg.Connection[Any] | None = None
        # one cursor per connection, reused by every INSERT: a new one per statement cost ~20 µs of the ~70 µs
        # psycopg spends on a one-invocation batch (measured)
        self._cursor: psycopg.Cursor[Any] | None = None
        self._migrated = False
        self._watchdog = _Watchdog()
        self.inserted = 0
        self.duplicates = 0
        self.reconnects = 0
        self.quarantined = 0

    @classmethod
    def from_config(cls, cfg: TelemetryConfig, pending: PendingBuffer, dsn: str | None = None) -> PostgresHandler:
        """The sink as `cfg` describes it; `dsn` overrides `cfg.database_url` (e.g. one read from a secret)."""
        url = dsn or cfg.database_url
        if not url:
            raise ValueError("PostgresHandler needs LOGS_DATABASE_URL or a DSN from LOGS_DATABASE_SECRET_ID")
        return cls(
            pending,
            url,
            table=cfg.table,
            auto_migrate=cfg.auto_migrate,
            connect_timeout_s=cfg.database_connect_timeout_s,
            batch_size=cfg.batch_size,
            level=cfg.database_level,
        )

    def __repr__(self) -> str:
        return f"<PostgresHandler {self.table} at {self.target}>"

    # -- delivery ----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        import psycopg  # noqa: F401  (with it: psycopg.conninfo, .sql, .errors; a connection imports nothing more)

    def _deliver(self, batch: list[Rendered], deadline: float) -> int:
        import psycopg

        try:
            self._insert(column_arrays(batch), deadline)
        except (psycopg.DataError, UnicodeEncodeError) as exc:
            self._isolate(batch, exc, deadline)
        return len(batch)

    def _isolate(self, batch: list[Rendered], error: BaseException, deadline: float) -> None:
        """PostgreSQL rejected `batch`'s data (SQLSTATE class 22): store it in halves until each bad record is
        alone, and store those as stubs. About 2·log2(n) round trips, paid only by a poisoned batch; without it,
        one unstorable record would hold back every record behind it for good."""
        import psycopg

        if len(batch) == 1:
            self._insert(column_arrays([_stub(batch[0], error)]), deadline)
            self.quarantined += 1
            return
        middle = len(batch) // 2
        for part in (batch[:middle], batch[middle:]):
            try:
                self._insert(column_arrays(part), deadline)
            except (psycopg.DataError, UnicodeEncodeError) as exc:
                self._isolate(part, exc, deadline)

    def _insert(self, arrays: list[list[Any]], deadline: float) -> None:
        """One INSERT; on a reused connection that turns out broken, one reconnect and the same INSERT again."""
        import psycopg

        if self._sql is None:
            self._sql = insert_sql(self.table)
        params = encode_columns(arrays)
        for attempt in (1, 2):
            conn, fresh = self._connection(deadline)
            try:
                with self._watchdog.guard(conn, deadline):
                    cursor = self._cursor if self._cursor is not None else conn.cursor()
                    cursor.execute(self._sql, params)
            except psycopg.Error as exc:
                if self._watchdog.fired:
                    self.close_connections()
                    raise PostgresSinkError(
                        f"insert into {self.table} at {self.target} was still running at the deadline and was"
                        f" cancelled ({type(exc).__name__}); the rows stay pending"
                    ) from exc
                retryable = isinstance(exc, psycopg.OperationalError) or conn.broken or conn.closed
                if retryable:
                    self.close_connections()
                if not retryable or fresh or attempt == 2 or time.monotonic() >= deadline:
                    raise
                self.reconnects += 1
                continue
            inserted = max(cursor.rowcount, 0)
            self.inserted += inserted
            self.duplicates += len(arrays[0]) - inserted
            return

    def _connection(self, deadline: float) -> tuple[psycopg.Connection[Any], bool]:
        """The open connection, or a new one (and the auto-migration on the first); True when it is new."""
        import psycopg

        conn = self._conn
        if conn is not None and not conn.closed:
            return conn, False
        if self._conninfo is None:
            self._conninfo = connection_info(self._dsn)
            warning = unverified_tls(self._dsn)
            if warning:  # logged once, as a record of its own: the audit trail shows the transport was weak
                log.warning("LOGS_DATABASE_URL has %s", warning)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PostgresSinkError(f"no time left before the deadline to connect to {self.target}")
        # psycopg takes whole seconds (and at least 2); a connect may outlive the deadline by under 2 s.
        timeout = max(1, min(math.ceil(self.connect_timeout_s), math.ceil(remaining)))
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, prepare_threshold=None, connect_timeout=timeout)
        except psycopg.Error as exc:
            raise PostgresSinkError(
                f"cannot connect to PostgreSQL at {self.target}: {scrub(str(exc), self._dsn).strip()}"
            ) from None
        conn.adapters.register_dumper(BinaryArray, _binary_array_dumper())
        if self.auto_migrate and not self._migrated:
            try:
                with self._watchdog.guard(conn, deadline):
                    migrate(conn, self.table)
            except psycopg.Error as exc:
                conn.close()
                raise PostgresSinkError(f"LOGS_AUTO_MIGRATE: migrating {self.table} failed: {exc}") from exc
            self._migrated = True
        self._conn = conn
        self._cursor = conn.cursor()
        return conn, True

    def close(self) -> None:
        super().close()
        self._watchdog.stop()

    def close_connections(self) -> None:
        conn, self._conn = self._conn, None
        self._cursor = None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
                conn.close()
