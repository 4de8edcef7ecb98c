"""`TelemetryConfig`: every telemetry setting, read once from an environment mapping at init.

Stdlib only; nothing else in `telemetry` reads the environment (the OpenTelemetry SDK reading `OTEL_*` itself is
the one exception). Each field names its variable; the README's configuration table mirrors this file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import NamedTuple

DEFAULT_REDACT_KEYS = (
    "password", "passwd", "secret", "token", "authorization", "cookie", "set-cookie", "api_key", "apikey",
    "x-api-key", "private_key", "client_secret", "credentials", "session",
)


class TelemetryConfigError(ValueError):
    """A telemetry variable has a value we cannot use; the message names the variable."""


_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
           "CRITICAL": logging.CRITICAL}
_FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
               "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, **{f"local{i}": 16 + i for i in range(8)}}
_TRUE = {"1", "true", "yes", "on"}
_OTEL_EXPORTERS = ("otlp", "console", "none")
_FALSE = {"0", "false", "no", "off", ""}


class _Reader:
    """Typed accessors that name the variable in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str = "") -> str:
        return self.env.get(name, "").strip() or default

    def optional(self, name: str) -> str | None:
        return self.env.get(name, "").strip() or None

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise TelemetryConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise TelemetryConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise TelemetryConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def level(self, name: str, default: int) -> int:
        raw = self.env.get(name, "").strip().upper()
        if not raw:
            return default
        if raw not in _LEVELS:
            raise TelemetryConfigError(f"{name} must be one of {', '.join(sorted(_LEVELS))}, got {raw!r}")
        return _LEVELS[raw]

    def pairs(self, name: str) -> tuple[tuple[str, str], ...]:
        """`k1=v1,k2=v2` with URL-encoded values (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS)."""
        raw = self.env.get(name, "")
        if not raw.strip():
            return ()
        from urllib.parse import unquote  # only when set: urllib.parse costs ~2 ms of cold start

        out: list[tuple[str, str]] = []
        for item in raw.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                # the value may be a secret (an API key header): name the variable, never echo it
                raise TelemetryConfigError(f"{name} must be a comma-separated list of key=value pairs")
            out.append((unquote(key.strip()), unquote(value.strip())))
        return tuple(out)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise TelemetryConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


class TelemetryConfig(NamedTuple):
    # Identity (from the Lambda environment)
    function_name: str = ""
    function_version: str = "$LATEST"
    log_stream_name: str = ""
    region: str = ""
    memory_mb: int = 0

    # Pipeline
    log_level: int = logging.INFO  # AWS_LAMBDA_LOG_LEVEL: the root logger's level
    log_format: str = "JSON"  # AWS_LAMBDA_LOG_FORMAT: JSON (default) or Text, for stdout
    stdout_enabled: bool = True  # LOGS_STDOUT
    stdout_lifecycle: bool = False  # LOGS_STDOUT_LIFECYCLE: also print start/end/report records on stdout
    capture_print: bool = True  # LOGS_CAPTURE_PRINT: print()/stderr lines become records
    lifecycle: bool | None = None  # LOGS_LIFECYCLE: start/end/report records (default: on when a remote sink is set)
    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS  # LOGS_REDACT_KEYS (comma separated, replaces the default)
    event_max_bytes: int = 2048  # LOGS_EVENT_MAX_BYTES: size cap of the event summary in the start record
    policy: str = "default"  # LOGS_POLICY: default | strict
    buffer_max_records: int = 10_000  # LOGS_BUFFER_MAX_RECORDS: per sink, in memory, before spilling
    spill_dir: str = "/tmp/flightrec-spill"  # LOGS_SPILL_DIR  # noqa: S108 - /tmp is Lambda's only writable disk
    spill_max_bytes: int = 64 * 1024 * 1024  # LOGS_SPILL_MAX_BYTES: per sink
    flush_budget_ms: int = 1000  # TELEMETRY_FLUSH_BUDGET_MS: max time a flush holds the loop before /next
    deadline_margin_ms: int = 300  # TELEMETRY_DEADLINE_MARGIN_MS: flush this long before the deadline
    flush_interval_ms: int = 1000  # TELEMETRY_FLUSH_INTERVAL_MS: background delivery during long invocations

    # Syslog
    syslog_url: str | None = None  # SYSLOG_URL: udp://host:514 | tcp://host:601 | tls://host:6514
    syslog_facility: int = 1  # SYSLOG_FACILITY: name (user, local0..local7, ...) or number
    syslog_ca_file: str | None = None  # SYSLOG_CA_FILE: private CA bundle for tls://
    syslog_tls_verify: bool = True  # SYSLOG_TLS_VERIFY: 0 turns certificate checks off (logged as a warning)
    syslog_sd_id: str = "lambda@32473"  # SYSLOG_SD_ID: structured-data id; use your own enterprise number
    syslog_app_name: str = ""  # SYSLOG_APP_NAME: default the function name
    syslog_hostname: str | None = None  # SYSLOG_HOSTNAME: default the machine's host name
    syslog_udp_max_bytes: int = 8192  # SYSLOG_UDP_MAX_BYTES: whole datagram; longer messages are truncated
    syslog_timeout_ms: int = 1000  # SYSLOG_TIMEOUT_MS: connect and send timeout
    syslog_level: int = logging.NOTSET  # SYSLOG_LEVEL: minimum level shipped to syslog

    # PostgreSQL
    database_url: str | None = None  # LOGS_DATABASE_URL (libpq URL or key=value DSN)
    database_secret_id: str | None = None  # LOGS_DATABASE_SECRET_ID: read via the Parameters and Secrets extension
    secrets_extension_port: int = 2773  # PARAMETERS_SECRETS_EXTENSION_HTTP_PORT (the extension's own variable)
    aws_session_token: str = ""  # AWS_SESSION_TOKEN: the extension's request token
    table: str = "logs"  # LOGS_TABLE (optionally schema-qualified)
    auto_migrate: bool = False  # LOGS_AUTO_MIGRATE: create/upgrade the table at init (demos, tests)
    database_connect_timeout_s: int = 3  # LOGS_DATABASE_CONNECT_TIMEOUT
    database_level: int = logging.NOTSET  # LOGS_DATABASE_LEVEL: minimum level stored
    batch_size: int = 1000  # LOGS_BATCH_SIZE: rows per INSERT

    # OpenTelemetry spans and metrics (telemetry/otel.py). Nothing is exported, and the SDK is not even imported,
    # unless an exporter or an OTLP endpoint is set explicitly: there is no default localhost collector.
    otel_service_name: str = ""  # OTEL_SERVICE_NAME: default the function name
    otel_traces_exporter: str = "none"  # OTEL_TRACES_EXPORTER: otlp | console | none (otlp if an endpoint is set)
    otel_metrics_exporter: str = "none"  # OTEL_METRICS_EXPORTER: otlp | console | none (same default)
    otel_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT: base URL; /v1/traces and /v1/metrics are appended
    otel_traces_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: full URL, wins over the base
    otel_metrics_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: full URL, wins over the base
    otel_protocol: str = "http/protobuf"  # OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf | grpc (needs the grpc exporter)
    otel_headers: tuple[tuple[str, str], ...] = ()  # OTEL_EXPORTER_OTLP_HEADERS: k=v,... (URL-encoded values)
    otel_resource_attributes: tuple[tuple[str, str], ...] = ()  # OTEL_RESOURCE_ATTRIBUTES: k=v,...
    otel_propagators: tuple[str, ...] = ("tracecontext", "baggage")  # OTEL_PROPAGATORS: tracecontext,baggage,xray,none
    otel_export_timeout_ms: int = 1000  # TELEMETRY_OTLP_TIMEOUT_MS: one export, retries included
    otel_traceparent_from_event: bool = False  # TELEMETRY_TRACEPARENT_FROM_EVENT: parent from an HTTP event's header
    otel_xray_sampled: bool = False  # TELEMETRY_XRAY_SAMPLED: obey Sampled=0 of Lambda-Runtime-Trace-Id (see tracing)

    @property
    def otel_enabled(self) -> bool:
        return self.otel_traces_exporter != "none" or self.otel_metrics_exporter != "none"

    @property
    def strict(self) -> bool:
        return self.policy == "strict"

    @property
    def remote_sinks(self) -> bool:
        return bool(self.syslog_url or self.database_url or self.database_secret_id)

    @property
    def lifecycle_records(self) -> bool:
        return self.remote_sinks or self.stdout_lifecycle if self.lifecycle is None else self.lifecycle

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelemetryConfig:
        r = _Reader(env)
        facility_raw = r.text("SYSLOG_FACILITY", "user").lower()
        if facility_raw.isdigit() and int(facility_raw) <= 23:
            facility = int(facility_raw)
        elif facility_raw in _FACILITIES:
            facility = _FACILITIES[facility_raw]
        else:
            raise TelemetryConfigError(f"SYSLOG_FACILITY must be a facility name or 0-23, got {facility_raw!r}")
        redact = r.optional("LOGS_REDACT_KEYS")
        lifecycle_raw = env.get("LOGS_LIFECYCLE")
        function_name = r.text("AWS_LAMBDA_FUNCTION_NAME")
        otlp_base = r.optional("OTEL_EXPORTER_OTLP_ENDPOINT")
        otlp_traces = r.optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        otlp_metrics = r.optional("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        propagators = tuple(p.strip().lower() for p in r.text("OTEL_PROPAGATORS", "tracecontext,baggage").split(","))
        return cls(
            function_name=function_name,
            function_version=r.text("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            log_stream_name=r.text("AWS_LAMBDA_LOG_STREAM_NAME"),
            region=r.text("AWS_REGION") or r.text("AWS_DEFAULT_REGION"),
            memory_mb=r.integer("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0),
            log_level=r.level("AWS_LAMBDA_LOG_LEVEL", logging.INFO),
            log_format=r.choice("AWS_LAMBDA_LOG_FORMAT", "JSON", ("JSON", "Text")),
            stdout_enabled=r.flag("LOGS_STDOUT", True),
            stdout_lifecycle=r.flag("LOGS_STDOUT_LIFECYCLE", False),
            capture_print=r.flag("LOGS_CAPTURE_PRINT", True),
            lifecycle=None if lifecycle_raw is None or not lifecycle_raw.strip() else r.flag("LOGS_LIFECYCLE", True),
            redact_keys=tuple(k.strip().lower() for k in redact.split(",") if k.strip())
            if redact else DEFAULT_REDACT_KEYS,
            event_max_bytes=r.integer("LOGS_EVENT_MAX_BYTES", 2048),
            policy=r.choice("LOGS_POLICY", "default", ("default", "strict")),
            buffer_max_records=r.integer("LOGS_BUFFER_MAX_RECORDS", 10_000, minimum=1),
            spill_dir=r.text("LOGS_SPILL_DIR", "/tmp/flightrec-spill"),  # noqa: S108
            spill_max_bytes=r.integer("LOGS_SPILL_MAX_BYTES", 64 * 1024 * 1024),
            flush_budget_ms=r.integer("TELEMETRY_FLUSH_BUDGET_MS", 1000, minimum=1),
            deadline_margin_ms=r.integer("TELEMETRY_DEADLINE_MARGIN_MS", 300),
            flush_interval_ms=r.integer("TELEMETRY_FLUSH_INTERVAL_MS", 1000, minimum=10),
            syslog_url=r.optional("SYSLOG_URL"),
            syslog_facility=facility,
            syslog_ca_file=r.optional("SYSLOG_CA_FILE"),
            syslog_tls_verify=r.flag("SYSLOG_TLS_VERIFY", True),
            syslog_sd_id=r.text("SYSLOG_SD_ID", "lambda@32473"),
            syslog_app_name=r.text("SYSLOG_APP_NAME", function_name),
            syslog_hostname=r.optional("SYSLOG_HOSTNAME"),
            syslog_udp_max_bytes=r.integer("SYSLOG_UDP_MAX_BYTES", 8192, minimum=480),
            syslog_timeout_ms=r.integer("SYSLOG_TIMEOUT_MS", 1000, minimum=1),
            syslog_level=r.level("SYSLOG_LEVEL", logging.NOTSET),
            database_url=r.optional("LOGS_DATABASE_URL"),
            database_secret_id=r.optional("LOGS_DATABASE_SECRET_ID"),
            secrets_extension_port=r.integer("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", 2773, minimum=1),
            aws_session_token=env.get("AWS_SESSION_TOKEN", ""),
            table=r.text("LOGS_TABLE", "logs"),
            auto_migrate=r.flag("LOGS_AUTO_MIGRATE", False),
            database_connect_timeout_s=r.integer("LOGS_DATABASE_CONNECT_TIMEOUT", 3, minimum=1),
            database_level=r.level("LOGS_DATABASE_LEVEL", logging.NOTSET),
            batch_size=r.integer("LOGS_BATCH_SIZE", 1000, minimum=1),
            otel_service_name=r.text("OTEL_SERVICE_NAME", function_name),
            otel_traces_exporter=r.choice(
                "OTEL_TRACES_EXPORTER", "otlp" if otlp_base or otlp_traces else "none", _OTEL_EXPORTERS),
            otel_metrics_exporter=r.choice(
                "OTEL_METRICS_EXPORTER", "otlp" if otlp_base or otlp_metrics else "none", _OTEL_EXPORTERS),
            otel_endpoint=otlp_base,
            otel_traces_endpoint=otlp_traces,
            otel_metrics_endpoint=otlp_metrics,
            otel_protocol=r.choice("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", ("http/protobuf", "grpc")),
            otel_headers=r.pairs("OTEL_EXPORTER_OTLP_HEADERS"),
            otel_resource_attributes=r.pairs("OTEL_RESOURCE_ATTRIBUTES"),
            otel_propagators=tuple(p for p in propagators if p),
            otel_export_timeout_ms=r.integer("TELEMETRY_OTLP_TIMEOUT_MS", 1000, minimum=1),
            otel_traceparent_from_event=r.flag("TELEMETRY_TRACEPARENT_FROM_EVENT", False),
            otel_xray_sampled=r.flag("TELEMETRY_XRAY_SAMPLED", False),
        )
