"""`install(cfg)`: build the log pipeline and its sinks, take over the root logger and stdout/stderr, and hand
`bootstrap` the middleware, the after-each flush and the init/shutdown hooks.

Sink modules are imported only when configured (psycopg alone costs ~85 ms of cold start).
Imports: `telemetry.*`, `runtime.model`, `runtime.dispatch` (types only).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple

from runtime.dispatch import Middleware, Outcome
from runtime.model import ErrorReport, Invocation
from telemetry.capture import LineCapture
from telemetry.config import TelemetryConfig
from telemetry.lifecycle import InvocationRecorder
from telemetry.otel import install_otel
from telemetry.pipeline import DRAIN_CHUNK, DeadlineHook, LogPipeline
from telemetry.redact import Redactor
from telemetry.sink import SinkHandler
from telemetry.spill import PendingBuffer
from telemetry.stdout import StdoutSink

if TYPE_CHECKING:
    from telemetry.context import LogContext
    from telemetry.middleware import Otel
    from telemetry.render import EventFormatter

SHUTDOWN_BUDGET_S = 0.3  # Lambda gives the runtime ~300 ms between SIGTERM and SIGKILL


class Telemetry(NamedTuple):
    middlewares: tuple[Middleware, ...]
    after_each: Callable[[Invocation, Outcome], None]
    init_done: Callable[[], None]
    init_failed: Callable[[ErrorReport], None]
    fatal: Callable[[str], None]
    shutdown: Callable[[], None]
    pipeline: LogPipeline
    before_snapshot: Callable[[], None]
    after_restore: Callable[[], None]
    #: the background threads' first imports (renderer, drivers, exporters), made on the calling thread now
    prepare: Callable[[], None]


class _HeldRecords(logging.Handler):
    """Keeps the records logged before the pipeline exists, so that they reach it instead of logging's stderr."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _pending(name: str, cfg: TelemetryConfig) -> PendingBuffer:
    pending = PendingBuffer(name, cfg.buffer_max_records, cfg.spill_dir, cfg.spill_max_bytes)
    pending.adopt_orphans()  # records a killed predecessor spilled are delivered by this process
    return pending


def _sinks(cfg: TelemetryConfig, stdout_fd: int) -> list[SinkHandler]:
    sinks: list[SinkHandler] = []
    if cfg.stdout_enabled:
        sinks.append(StdoutSink(stdout_fd, text_format=cfg.log_format == "Text", lifecycle=cfg.stdout_lifecycle,
                                max_items=max(cfg.buffer_max_records, DRAIN_CHUNK)))  # stdout cannot spill
    if cfg.syslog_url:
        from telemetry.syslog import SyslogHandler

        sinks.append(SyslogHandler.from_config(cfg, _pending("syslog", cfg)))
    if cfg.database_secret_id and not cfg.database_url:
        from telemetry.secrets import database_url_from_secret, fetch_secret_string

        secret = fetch_secret_string(cfg.database_secret_id, port=cfg.secrets_extension_port,
                                     token=cfg.aws_session_token)
        cfg = cfg._replace(database_url=database_url_from_secret(secret))
    if cfg.database_url:
        from telemetry.postgres import PostgresHandler

        sinks.append(PostgresHandler.from_config(cfg, _pending("postgres", cfg)))
    return sinks


def install(cfg: TelemetryConfig, started_ns: int = 0) -> Telemetry:
    real_stdout = sys.__stdout__ or sys.stdout
    real_stderr = sys.__stderr__ or sys.stderr
    instance_id = cfg.log_stream_name.rsplit("]", 1)[-1] or os.urandom(16).hex()
    def formatter() -> EventFormatter:
        from telemetry.render import EventFormatter

        return EventFormatter(
            {"function_name": cfg.function_name or None, "function_version": cfg.function_version},
            instance_id=f"{instance_id}-{os.getpid()}",
        )

    otel = install_otel(cfg, started_ns, diagnostics=real_stderr)  # None (and no SDK import) unless configured
    root = logging.getLogger()
    held = _HeldRecords()  # what building the sinks logs (e.g. "SYSLOG_TLS_VERIFY is off") waits for the pipeline
    root.addHandler(held)
    try:
        sinks = _sinks(cfg, real_stdout.fileno())
    finally:
        root.removeHandler(held)
    pipeline = LogPipeline(
        formatter,
        sinks,
        redactor=Redactor(cfg.redact_keys),
        diagnostics=real_stderr,
        flush_interval_s=cfg.flush_interval_ms / 1000,
        deadline_margin_s=cfg.deadline_margin_ms / 1000,
        span_ids=otel.span_ids if otel is not None else None,
    )
    if otel is not None:
        pipeline.on_deadline = _end_span_on_deadline(otel)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(pipeline.handler)
    root.setLevel(cfg.log_level)
    for record in held.records:  # recorded like any other record: in every sink, the audit trail included
        pipeline.handler.handle(record)
    logging.captureWarnings(True)
    pipeline.start()

    captures: tuple[LineCapture, ...] = ()
    if cfg.capture_print:
        captures = (
            LineCapture(logging.getLogger("stdout"), logging.INFO, real_stdout),
            LineCapture(logging.getLogger("stderr"), logging.WARNING, real_stderr),
        )
        sys.stdout, sys.stderr = captures

    recorder = InvocationRecorder(cfg, pipeline, started_ns, captures)
    budget_s = cfg.flush_budget_ms / 1000

    def close_all(timeout_s: float) -> None:
        for capture in captures:
            capture.flush()
        deadline = time.monotonic() + timeout_s
        ticket = otel.begin_flush() if otel is not None else None  # spans export while the logs ship
        pipeline.close(timeout_s)
        if otel is not None and ticket is not None:
            ticket.wait(max(deadline - time.monotonic(), 0.0))
            otel.shutdown(max(deadline - time.monotonic(), 0.0))

    def shutdown() -> None:
        close_all(budget_s)
        sys.stdout, sys.stderr = real_stdout, real_stderr

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        close_all(SHUTDOWN_BUDGET_S)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)

    def prepare() -> None:
        pipeline.prepare()
        if otel is not None:
            otel.worker.prepare()

    logs_only = Telemetry(
        middlewares=(recorder.middleware,),
        after_each=recorder.after_each,
        init_done=recorder.init_done,
        init_failed=recorder.init_failed,
        fatal=recorder.fatal,
        shutdown=shutdown,
        pipeline=pipeline,
        before_snapshot=recorder.before_snapshot,
        after_restore=recorder.after_restore,
        prepare=prepare,
    )
    return logs_only if otel is None else _with_otel(logs_only, otel, recorder, budget_s)


def _end_span_on_deadline(otel: Otel) -> DeadlineHook:
    def hook(ctx: LogContext) -> None:
        otel.deadline_imminent(ctx.request_id)  # exports on the OTel thread; the logs ship meanwhile

    return hook


def _with_otel(logs_only: Telemetry, otel: Otel, recorder: InvocationRecorder, budget_s: float) -> Telemetry:
    """The span middleware outermost (so the span is current while every record is written), and spans and logs
    flushed concurrently within one budget: the collector's and PostgreSQL's round trips overlap."""

    def after_each(invocation: Invocation, outcome: Outcome) -> None:
        deadline = time.monotonic() + budget_s
        ticket = otel.begin_flush()
        recorder.after_each(invocation, outcome)
        ticket.wait(max(deadline - time.monotonic(), 0.0))

    def init_done() -> None:
        otel.init_done()
        recorder.init_done()

    def init_failed(report: ErrorReport) -> None:
        deadline = time.monotonic() + budget_s
        ticket = otel.record_init_failure(report)
        recorder.init_failed(report)
        ticket.wait(max(deadline - time.monotonic(), 0.0))

    return logs_only._replace(
        middlewares=(otel.middleware, recorder.middleware),
        after_each=after_each,
        init_done=init_done,
        init_failed=init_failed,
    )
