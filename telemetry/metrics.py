"""Metrics: the invocation instruments and a reader that exports only when a flush asks it to.

Instruments (names under `flightrec.`, not `faas.`: the FaaS conventions count only successes in
`faas.invocations` and measure durations in seconds, while our REPORT records and dashboards use every
invocation and milliseconds; borrowing the conventional names with other meanings would mislead):

    flightrec.invocations          counter    {invocation}  every invocation; faas.trigger, outcome
    flightrec.errors               counter    {error}       failed invocations; error.type, faas.trigger
    flightrec.invocation.duration  histogram  ms            handler time as the middleware sees it; outcome
    flightrec.coldstarts           counter    {coldstart}   first invocation of a process
    flightrec.init.duration        histogram  ms            process start to the end of init; outcome
    flightrec.timeouts             counter    {timeout}     the deadline guard fired
    flightrec.telemetry.dropped    counter    {span}        spans lost (queue full, export failed); signal

outcome is success | error | timeout. Temporality is cumulative: an export that fails loses nothing, the next
one carries the totals.

Why `FlushMetricReader` rather than `PeriodicExportingMetricReader`: in Lambda a timer thread fires on thaw,
in the middle of the next invocation, while the process must instead export right before it is frozen. The
periodic reader with an infinite interval does run no thread, but it discards the export result, and a flush
must know whether it succeeded; it also builds its exporter eagerly, and the exporter import is what we defer.
Imports: opentelemetry-api/sdk, stdlib, `telemetry.config`, `telemetry.tracing` (the OTLP session, lazily).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricReader, MetricsData
from opentelemetry.sdk.resources import Resource

from telemetry.config import TelemetryConfig

SCOPE = "flightrec"
SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
# Milliseconds: from a warm no-op to Lambda's 15-minute maximum.
DURATION_BUCKETS_MS = (
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10_000.0, 30_000.0,
    60_000.0, 300_000.0, 900_000.0,
)


class FlushMetricReader(MetricReader):
    """Collects and exports only when `export_now` is called (by the export thread, during a flush).

    The exporter is built by `factory` at the first export, so its imports are paid off the caller's path.
    """

    def __init__(self, factory: Callable[[], MetricExporter]) -> None:
        super().__init__()
        self._factory = factory
        self._exporter: MetricExporter | None = None
        self._last_ok = True

    @property
    def prepared(self) -> bool:
        return self._exporter is not None

    def prepare(self) -> None:
        """Build the exporter now (its imports), ahead of the first export."""
        if self._exporter is None:
            self._exporter = self._factory()

    def export_now(self, timeout_millis: float) -> bool:
        """Collect and export everything recorded so far; True when the exporter accepted it (or nothing to do)."""
        self._last_ok = True
        self.collect(timeout_millis=timeout_millis)
        return self._last_ok

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        if not _has_points(metrics_data):
            return
        if self._exporter is None:
            self._exporter = self._factory()
        result = self._exporter.export(metrics_data, timeout_millis=timeout_millis)
        self._last_ok = result is MetricExportResult.SUCCESS

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._exporter is not None:
            self._exporter.shutdown(timeout_millis=timeout_millis)


def _has_points(data: MetricsData) -> bool:
    return any(sm.metrics for rm in data.resource_metrics for sm in rm.scope_metrics)


class InvocationMetrics:
    """The runtime's own instruments. Attribute dicts are small and built per call: a handful per invocation."""

    def __init__(self, meter: Meter) -> None:
        self._invocations = meter.create_counter(
            "flightrec.invocations", unit="{invocation}", description="Invocations, whatever their outcome.")
        self._errors = meter.create_counter(
            "flightrec.errors", unit="{error}", description="Failed invocations, by error type.")
        self._duration = meter.create_histogram(
            "flightrec.invocation.duration", unit="ms", description="Time from event to outcome in the runtime.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_MS)
        self._coldstarts = meter.create_counter(
            "flightrec.coldstarts", unit="{coldstart}", description="First invocations of a runtime process.")
        self._init_duration = meter.create_histogram(
            "flightrec.init.duration", unit="ms", description="Process start to the end of init.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_MS)
        self._timeouts = meter.create_counter(
            "flightrec.timeouts", unit="{timeout}", description="Invocations still running at the deadline guard.")
        self._dropped = meter.create_counter(
            "flightrec.telemetry.dropped", unit="{span}", description="Spans lost: queue full or export failed.")

    def invocation(
        self, duration_ms: float, trigger: str, outcome: str, error_type: str | None = None, cold_start: bool = False
    ) -> None:
        """One finished invocation; `outcome` is SUCCESS, ERROR or TIMEOUT (`error_type` set for the last two)."""
        self._invocations.add(1, {"faas.trigger": trigger, "outcome": outcome})
        self._duration.record(duration_ms, {"faas.trigger": trigger, "outcome": outcome})
        if error_type is not None:
            self._errors.add(1, {"error.type": error_type, "faas.trigger": trigger})
        if outcome == TIMEOUT:
            self._timeouts.add(1, {"faas.trigger": trigger})
        if cold_start:
            self._coldstarts.add(1)

    def init(self, duration_ms: float, failed: bool = False) -> None:
        self._init_duration.record(duration_ms, {"outcome": ERROR if failed else SUCCESS})

    def dropped(self, count: int, signal: str = "spans") -> None:
        if count:
            self._dropped.add(count, {"signal": signal})


def build_meter_provider(resource: Resource, reader: MetricReader) -> MeterProvider:
    """No exit handler (shutdown is ours and bounded); views are not needed: bucket advice is on the instruments."""
    return MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)


def metric_exporter(cfg: TelemetryConfig) -> MetricExporter:
    """The configured metric exporter, importing its package now (on the export thread, at first use)."""
    timeout_s = cfg.otel_export_timeout_ms / 1000
    if cfg.otel_metrics_exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        out = sys.__stdout__ or sys.stdout
        return ConsoleMetricExporter(out=out, formatter=lambda data: data.to_json(indent=None) + "\n")
    from telemetry.tracing import otlp_http_exporter, otlp_url

    headers = dict(cfg.otel_headers)
    endpoint = otlp_url(cfg, cfg.otel_metrics_endpoint, "v1/metrics")
    if cfg.otel_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found]
            OTLPMetricExporter as GrpcMetricExporter,
        )

        exporter: MetricExporter = GrpcMetricExporter(endpoint=endpoint, headers=headers, timeout=timeout_s)
        return exporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    http_exporter: MetricExporter = otlp_http_exporter(OTLPMetricExporter, endpoint, "v1/metrics", headers, timeout_s)
    return http_exporter
