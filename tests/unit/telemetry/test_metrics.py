"""telemetry.metrics: instrument values, and a reader that exports only when asked (and says if it worked)."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from telemetry.config import TelemetryConfig
from telemetry.metrics import ERROR, SUCCESS, TIMEOUT, FlushMetricReader, InvocationMetrics, metric_exporter


class CollectingExporter(MetricExporter):
    """Keeps every export; answers with `result`."""

    def __init__(self, result: MetricExportResult = MetricExportResult.SUCCESS) -> None:
        super().__init__()
        self.result = result
        self.exports: list[MetricsData] = []

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self.exports.append(metrics_data)
        return self.result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def points(data: MetricsData | None) -> dict[str, list]:
    """metric name → its data points (each with .attributes and .value or .count/.sum)."""
    out: dict[str, list] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def _metrics() -> tuple[InvocationMetrics, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    return InvocationMetrics(provider.get_meter("t")), reader


def test_invocations_errors_durations_and_cold_starts():
    metrics, reader = _metrics()
    # GIVEN a cold successful HTTP invocation of 12 ms, a warm one of 30 ms, two errors and a timeout
    metrics.invocation(12.0, "http", SUCCESS, cold_start=True)
    metrics.invocation(30.0, "http", SUCCESS)
    metrics.invocation(5.0, "pubsub", ERROR, "ValueError")
    metrics.invocation(7.0, "pubsub", ERROR, "ValueError")
    metrics.invocation(2900.0, "http", TIMEOUT, "Sandbox.Timedout")
    data = points(reader.get_metrics_data())
    # THEN the counts and sums are exactly those
    invocations = {(dict(p.attributes)["faas.trigger"], dict(p.attributes)["outcome"]): p.value
                   for p in data["flightrec.invocations"]}
    assert invocations == {("http", "success"): 2, ("pubsub", "error"): 2, ("http", "timeout"): 1}
    errors = {dict(p.attributes)["error.type"]: p.value for p in data["flightrec.errors"]}
    assert errors == {"ValueError": 2, "Sandbox.Timedout": 1}
    durations = {dict(p.attributes)["outcome"] + "/" + dict(p.attributes)["faas.trigger"]: (p.count, p.sum)
                 for p in data["flightrec.invocation.duration"]}
    assert durations == {"success/http": (2, 42.0), "error/pubsub": (2, 12.0), "timeout/http": (1, 2900.0)}
    assert [p.value for p in data["flightrec.coldstarts"]] == [1]
    assert [p.value for p in data["flightrec.timeouts"]] == [1]


def test_duration_buckets_are_milliseconds():
    metrics, reader = _metrics()
    metrics.invocation(3.0, "other", SUCCESS)
    (point,) = points(reader.get_metrics_data())["flightrec.invocation.duration"]
    assert point.explicit_bounds[:4] == (1.0, 2.0, 5.0, 10.0)
    assert point.bucket_counts[2] == 1  # 2 < 3 ≤ 5


def test_init_duration_and_drops():
    metrics, reader = _metrics()
    metrics.init(180.5)
    metrics.dropped(3)
    metrics.dropped(0)
    data = points(reader.get_metrics_data())
    (init,) = data["flightrec.init.duration"]
    assert (init.count, init.sum, dict(init.attributes)) == (1, 180.5, {"outcome": "success"})
    assert [(p.value, dict(p.attributes)) for p in data["flightrec.telemetry.dropped"]] == [(3, {"signal": "spans"})]


def test_flush_reader_exports_only_when_asked_and_builds_its_exporter_lazily():
    built: list[CollectingExporter] = []

    def factory() -> CollectingExporter:
        built.append(CollectingExporter())
        return built[-1]

    reader = FlushMetricReader(factory)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("t").create_counter("c")
    # nothing recorded: no export, and no exporter built
    assert reader.export_now(1000) is True
    assert built == []
    counter.add(2)
    assert built == []  # recording never exports
    assert reader.export_now(1000) is True
    assert len(built) == 1 and len(built[0].exports) == 1
    assert [p.value for p in points(built[0].exports[0])["c"]] == [2]
    counter.add(1)
    assert reader.export_now(1000) is True
    assert len(built) == 1  # the same exporter again
    assert [p.value for p in points(built[0].exports[1])["c"]] == [3]  # cumulative


def test_flush_reader_reports_a_failed_export():
    exporter = CollectingExporter(MetricExportResult.FAILURE)
    reader = FlushMetricReader(lambda: exporter)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("t").create_counter("c").add(1)
    assert reader.export_now(1000) is False
    exporter.result = MetricExportResult.SUCCESS
    assert reader.export_now(1000) is True


def test_metric_exporter_endpoints():
    base = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert metric_exporter(base)._endpoint == "http://collector:4318/v1/metrics"
    explicit = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                                         "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://other:9/m"})
    assert metric_exporter(explicit)._endpoint == "http://other:9/m"
