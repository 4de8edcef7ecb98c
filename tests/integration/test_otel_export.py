"""Spans and metrics over real OTLP/HTTP to a real receiver (tests/peers/otlp.py, decoding with opentelemetry-proto).

Two groups:
* in-process: `Otel.create` with the configured (real) OTLP exporter, driven like the loop drives it;
* `test_wired_bootstrap_*`: the real `./bootstrap` under the emulator, as `telemetry.setup` wires it (OTel
  middleware outermost, its flush in `after_each` beside the log flush, the deadline guard calling
  `Otel.deadline_imminent`).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from runtime.dispatch import Failure, Success
from runtime.model import ErrorReport, Invocation
from telemetry.config import TelemetryConfig
from telemetry.metrics import metric_exporter
from telemetry.middleware import Otel
from telemetry.tracing import OtlpHttpTransport, lean_otlp_transport, span_exporter
from tests.integration.conftest import REPO, emulator

SPAN_KIND_SERVER = 2
STATUS_CODE_ERROR = 2
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
SQS_EVENT = {"Records": [{"messageId": "1", "body": "hi", "eventSource": "aws:sqs"}]}


def attrs(items) -> dict:
    """OTLP KeyValue list → plain dict."""
    out = {}
    for kv in items:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return out


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **extra}


def _cfg(endpoint: str, **extra: str) -> TelemetryConfig:
    return TelemetryConfig.from_env({
        "AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_REGION": "eu-west-1", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[$LATEST]0123abcd", **_env(endpoint, **extra),
    })


@pytest.fixture
def make_otel() -> Iterator:
    made: list[Otel] = []

    def make(cfg: TelemetryConfig, started_ns: int = 0) -> tuple[Otel, io.StringIO]:
        out = io.StringIO()
        made.append(Otel.create(cfg, started_ns, diagnostics=out))  # the configured OTLP exporters
        return made[-1], out

    yield make
    for otel in made:
        otel.shutdown(0.5)


def ok(inv: Invocation) -> Success:
    return Success(b"{}", "application/json")


# -- in-process, real OTLP/HTTP ------------------------------------------------------------------------------------
def test_spans_and_metrics_reach_a_real_receiver(otlp_receiver, make_otel):
    otlp_receiver.clear()
    otel, _ = make_otel(_cfg(otlp_receiver.endpoint, OTEL_EXPORTER_OTLP_HEADERS="x-api-key=k%3D1"),
                        started_ns=time.monotonic_ns() - 5_000_000)
    otel.init_done()
    dispatch = otel.middleware(ok)
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
    dispatch(Invocation("req-1", json.dumps(SQS_EVENT).encode(), trace_id=XRAY, invoked_function_arn=arn))
    dispatch(Invocation("req-2", b"{}", invoked_function_arn=arn))
    assert otel.flush(5.0)
    received = otlp_receiver.wait_for_spans(2)
    by_id = {attrs(span.attributes)["faas.invocation_id"]: (resource, scope, span)
             for resource, scope, span in received}
    resource, scope, first = by_id["req-1"]
    assert first.name == "orders" and first.kind == SPAN_KIND_SERVER
    assert first.trace_id.hex() == "5759e988bd862e3fe1be46a994272793"
    assert first.parent_span_id.hex() == "53995c3f42cd8ad8"
    assert attrs(first.attributes) == {
        "faas.invocation_id": "req-1", "faas.coldstart": True, "faas.trigger": "pubsub",
        "aws.lambda.invoked_arn": arn, "cloud.resource_id": arn, "cloud.account.id": "123456789012",
    }
    assert attrs(by_id["req-2"][2].attributes)["faas.coldstart"] is False
    assert scope.name == "flightrec"
    res = attrs(resource.attributes)
    assert {k: res[k] for k in ("service.name", "cloud.provider", "cloud.region", "faas.name", "faas.version",
                                "faas.instance", "faas.max_memory")} == {
        "service.name": "orders", "cloud.provider": "aws", "cloud.region": "eu-west-1", "faas.name": "orders",
        "faas.version": "$LATEST", "faas.instance": "2026/11/30/[$LATEST]0123abcd", "faas.max_memory": 256 << 20}
    trace_posts = [r for r in otlp_receiver.requests if r.path == "/v1/traces"]
    assert trace_posts[0].headers.get("x-api-key") == "k=1"
    metrics = {metric.name: metric for _, _, metric in otlp_receiver.wait_for_metrics(4)}
    assert sum(p.as_int for p in metrics["flightrec.invocations"].sum.data_points) == 2
    assert [p.as_int for p in metrics["flightrec.coldstarts"].sum.data_points] == [1]
    assert sum(p.count for p in metrics["flightrec.invocation.duration"].histogram.data_points) == 2
    assert metrics["flightrec.init.duration"].histogram.data_points[0].sum >= 5.0


def test_an_error_reaches_the_receiver_as_status_and_exception_event(otlp_receiver, make_otel):
    otlp_receiver.clear()
    otel, _ = make_otel(_cfg(otlp_receiver.endpoint))
    report = ErrorReport("ValueError", "bad value: 3", ['  File "/var/task/app.py", line 4, in handler\n'])
    otel.middleware(lambda inv: Failure(report))(Invocation("req-err", b"{}"))
    assert otel.flush(5.0)
    (_, _, span), = otlp_receiver.wait_for_spans(1)
    assert span.status.code == STATUS_CODE_ERROR and span.status.message == "ValueError: bad value: 3"
    (event,) = span.events
    assert event.name == "exception"
    assert attrs(event.attributes)["exception.type"] == "ValueError"
    assert "app.py" in attrs(event.attributes)["exception.stacktrace"]


def test_a_collector_that_never_answers_does_not_hold_the_loop(private_otlp_receiver, make_otel):
    rx = private_otlp_receiver
    rx.hang = True
    otel, diagnostics = make_otel(_cfg(rx.endpoint, TELEMETRY_OTLP_TIMEOUT_MS="500"))
    dispatch = otel.middleware(ok)
    for n in range(4):
        dispatch(Invocation(f"req-{n}", b"{}"))
        started = time.monotonic()
        assert otel.flush(0.2) is False
        assert time.monotonic() - started < 0.2 + 3.0  # liveness: the budget plus a generous margin
    # the hung exports gave up after TELEMETRY_OTLP_TIMEOUT_MS; what they carried is counted, not silently lost
    deadline = time.monotonic() + 10
    dropped = 0
    while time.monotonic() < deadline and dropped == 0:
        dropped += otel.take_dropped()
        time.sleep(0.05)
    assert dropped >= 1
    assert "span(s) dropped" in diagnostics.getvalue()
    # and once the collector answers again, spans flow
    rx.clear()
    dispatch(Invocation("req-after", b"{}"))
    assert otel.flush(10.0)
    ids = {attrs(span.attributes)["faas.invocation_id"] for _, _, span in rx.wait_for_spans(1)}
    assert "req-after" in ids


def test_the_init_span_reaches_the_receiver_within_the_budget(otlp_receiver, make_otel):
    otlp_receiver.clear()
    otel, _ = make_otel(_cfg(otlp_receiver.endpoint), started_ns=time.monotonic_ns() - 40_000_000)
    report = ErrorReport("Runtime.ImportModuleError", "Unable to import module 'app': boom")
    assert otel.init_failed(report, timeout_s=5.0)
    (_, _, span), = otlp_receiver.wait_for_spans(1)
    assert span.name == "init" and span.status.code == STATUS_CODE_ERROR
    assert attrs(span.events[0].attributes)["exception.message"] == "Unable to import module 'app': boom"
    assert span.end_time_unix_nano - span.start_time_unix_nano >= 40_000_000


def test_the_deadline_hook_exports_the_span_of_a_handler_that_is_still_running(otlp_receiver, make_otel):
    otlp_receiver.clear()
    otel, _ = make_otel(_cfg(otlp_receiver.endpoint))
    running, release = threading.Event(), threading.Event()

    def sleeper(inv: Invocation) -> Success:
        running.set()
        release.wait(10)
        return Success(b"{}", "application/json")

    deadline_ms = int(time.time() * 1000) + 1000
    thread = threading.Thread(target=otel.middleware(sleeper), args=(Invocation("req-slow", b"{}",
                                                                                deadline_ms=deadline_ms),))
    thread.start()
    try:
        assert running.wait(5)
        assert otel.deadline_imminent("req-slow").wait(5)
        (_, _, span), = otlp_receiver.wait_for_spans(1)
        assert attrs(span.attributes)["faas.invocation_id"] == "req-slow"
        assert span.status.code == STATUS_CODE_ERROR
        assert [e.name for e in span.events] == ["timeout_imminent"]
    finally:
        release.set()
        thread.join(5)


# -- the lean OTLP/HTTP transport --------------------------------------------------------------------------------
def test_the_configured_exporters_post_through_the_lean_transport(otlp_receiver, monkeypatch):
    # The exporters' transport seam is a private keyword of a beta package: this notices when it moves (the
    # exporters would then fall back to requests, correct but slower).
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)  # a developer's proxy would (rightly) keep requests
    cfg = _cfg(otlp_receiver.endpoint)
    spans, metrics = span_exporter(cfg), metric_exporter(cfg)
    try:
        assert isinstance(spans._client._transport, OtlpHttpTransport)  # type: ignore[attr-defined]
        assert isinstance(metrics._client._transport, OtlpHttpTransport)  # type: ignore[attr-defined]
    finally:
        spans.shutdown()
        metrics.shutdown()


@pytest.mark.parametrize(("url", "env"), [
    ("https://collector.example:4318/v1/traces", {}),
    ("http://127.0.0.1:4318/v1/traces", {"HTTP_PROXY": "http://proxy.internal:3128"}),
    ("http://127.0.0.1:4318/v1/traces", {"no_proxy": "localhost"}),
    ("http://127.0.0.1:4318/v1/traces", {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "vault"}),
])
def test_what_only_requests_provides_keeps_requests(url, env, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert lean_otlp_transport(url, env) is None


def test_the_lean_exporters_never_import_requests(otlp_receiver, tmp_path):
    # GIVEN a process that exports spans and metrics to a plain-HTTP collector
    code = (
        "import sys\n"
        "from telemetry.config import TelemetryConfig\n"
        "from telemetry.tracing import span_exporter\n"
        "from telemetry.metrics import metric_exporter\n"
        f"cfg = TelemetryConfig.from_env({{'OTEL_EXPORTER_OTLP_ENDPOINT': {otlp_receiver.endpoint!r}}})\n"
        "span_exporter(cfg).export([]); metric_exporter(cfg)\n"
        "print('requests' in sys.modules, 'urllib3' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env=env).stdout
    # THEN neither requests nor urllib3 (nor the instrumentation `import requests` switches on) was imported
    assert out.split() == ["False", "False"]


def test_the_lean_transport_keeps_its_connection_and_replaces_one_the_collector_closed():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    # GIVEN a collector that answers twice on one connection, then closes it (an idle timeout, a restart)
    url, served = _canned_server([[ok, ok], [ok]])
    transport = OtlpHttpTransport(url)
    try:
        for body in (b"one", b"two"):
            result = transport.request("POST", url, headers={}, data=body, timeout=5)
            assert result.error is None and result.status_code == 200
        assert transport.connects == 1
        time.sleep(0.2)  # the close reaches us while the connection is idle
        # WHEN the next export comes
        result = transport.request("POST", url, headers={}, data=b"three", timeout=5)
        # THEN the dead connection is noticed before the POST, and a new one carries it
        assert result.error is None and result.status_code == 200
        assert transport.connects == 2
        assert served() == [b"one", b"two", b"three"]
    finally:
        transport.close()


def test_the_lean_transport_reports_a_failing_status_with_its_headers(private_otlp_receiver):
    rx = private_otlp_receiver
    rx.fail_status = 503
    transport = OtlpHttpTransport(rx.metrics_url)
    try:
        result = transport.request("POST", rx.metrics_url, headers={}, data=b"", timeout=5)
        assert result.error is None and result.status_code == 503
        assert result.headers()["Content-Type"] == "application/x-protobuf"  # looked up in any case
    finally:
        transport.close()


def test_the_lean_transport_gives_up_at_its_timeout(private_otlp_receiver):
    rx = private_otlp_receiver
    rx.hang = True
    transport = OtlpHttpTransport(rx.traces_url)
    try:
        started = time.monotonic()
        result = transport.request("POST", rx.traces_url, headers={}, data=b"x", timeout=0.3)
        assert isinstance(result.error, TimeoutError)
        assert transport.is_connection_error(result.error)
        assert time.monotonic() - started < 2.0
    finally:
        rx.hang = False
        transport.close()


@pytest.mark.parametrize("headers", [{"x-api-key": "k\r\nX-Forged: 1"}, {"bad name": "v"}, {"x-key": "\u2713"}])
def test_the_lean_transport_refuses_headers_that_would_forge_the_request(headers):
    transport = OtlpHttpTransport("http://127.0.0.1:9/v1/traces")  # nothing is sent, so nothing needs to listen
    result = transport.request("POST", "http://127.0.0.1:9/v1/traces", headers=headers, data=b"", timeout=1)
    assert result.status_code is None and isinstance(result.error, ValueError)
    assert transport.connects == 0


def test_closing_the_lean_transport_does_not_wait_for_a_hung_export(private_otlp_receiver):
    rx = private_otlp_receiver
    rx.hang = True
    transport = OtlpHttpTransport(rx.traces_url)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(
        transport.request("POST", rx.traces_url, headers={}, data=b"x", timeout=30)))
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while transport.connects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the POST is out; the collector sits on it
        # WHEN the exporter is shut down (a SIGTERM flush has a few hundred ms)
        started = time.monotonic()
        transport.close()
        # THEN close returns at once, and the export in flight fails promptly instead of after its 30 s timeout
        assert time.monotonic() - started < 1.0
        worker.join(5)
        assert not worker.is_alive()
        assert results[0].status_code is None and results[0].error is not None
        assert transport.request("POST", rx.traces_url, headers={}, data=b"", timeout=1).error is not None
    finally:
        rx.hang = False
        worker.join(5)


def test_the_lean_transport_is_refused_cleanly_when_nobody_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = OtlpHttpTransport(f"http://127.0.0.1:{port}/v1/traces")
    result = transport.request("POST", f"http://127.0.0.1:{port}/v1/traces", headers={}, data=b"", timeout=1)
    assert isinstance(result.error, ConnectionRefusedError) and transport.is_connection_error(result.error)


def _canned_server(connections: list[list[bytes]]) -> tuple[str, Callable[[], list[bytes]]]:
    """An HTTP server that accepts one connection per list, answers each request on it with the next canned
    bytes, then closes it; `served()` waits for it to finish and returns the request bodies it read."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[bytes] = []

    def serve() -> None:
        with listener:
            for answers in connections:
                conn, _ = listener.accept()
                with conn:
                    buf = b""
                    for answer in answers:
                        while b"\r\n\r\n" not in buf:
                            buf += conn.recv(65536)
                        head, _, buf = buf.partition(b"\r\n\r\n")
                        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                        while len(buf) < length:
                            buf += conn.recv(65536)
                        seen.append(buf[:length])
                        buf = buf[length:]
                        conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces", lambda: (thread.join(5), seen)[1]


def test_the_lean_transport_reads_chunked_continued_and_close_delimited_answers():
    url, served = _canned_server([[
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nslow",
        b"HTTP/1.0 200 OK\r\nContent-Type: application/x-protobuf\r\n\r\nuntil-close",
    ]])
    transport = OtlpHttpTransport(url)
    try:
        first = transport.request("POST", url, headers={"A": "1"}, data=b"one", timeout=5)
        assert (first.status_code, first.content()) == (200, b"abcde")
        second = transport.request("POST", url, headers={}, data=b"two", timeout=5)
        assert (second.status_code, second.reason, second.headers().get("retry-after")) == (
            429, "Too Many Requests", "7")
        third = transport.request("POST", url, headers={}, data=b"three", timeout=5)
        assert (third.status_code, third.content()) == (200, b"until-close")
        assert transport.connects == 1
        assert served() == [b"one", b"two", b"three"]
    finally:
        transport.close()


# -- the real bootstrap (after telemetry.setup calls install_otel) -------------------------------------------------
SPAN_PROBE = """
    import logging, os
    from opentelemetry import trace
    log = logging.getLogger("probe")
    def handler(event, context):
        ctx = trace.get_current_span().get_span_context()
        log.info("inside the span")
        return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
                "xray": os.environ.get("_X_AMZN_TRACE_ID"), "arn": context.invoked_function_arn}
"""


def _json_lines(emu) -> list[dict]:
    return [json.loads(line) for stream, line in emu.output if stream == "stdout" and line.startswith("{")]


def test_wired_bootstrap_spans_and_metrics_reach_the_receiver(otlp_receiver, task_root):
    otlp_receiver.clear()
    root = task_root("probe", SPAN_PROBE)
    # a generous budget: the first flush imports the exporter, and this proves delivery, not speed
    with emulator("probe.handler", root, function_name="probe", memory_mb=256,
                  env=_env(otlp_receiver.endpoint, TELEMETRY_FLUSH_BUDGET_MS="5000")) as emu:
        first = emu.invoke(SQS_EVENT)
        second = emu.invoke({"direct": True})
        records = _json_lines(emu)
    assert first.ok and second.ok, (first.body, second.body)
    received = otlp_receiver.wait_for_spans(2)
    # the runtime's own Runtime API calls never become spans: only the two invocations are there
    assert [(span.name, span.kind) for _, _, span in received] == [("probe", SPAN_KIND_SERVER)] * 2
    spans = {attrs(span.attributes)["faas.invocation_id"]: (resource, span) for resource, _, span in received}
    for result, cold, trigger in ((first, True, "pubsub"), (second, False, "other")):
        resource, span = spans[result.request_id]
        body = result.json()
        span_attrs = attrs(span.attributes)
        assert span.name == "probe" and span.kind == SPAN_KIND_SERVER
        assert (span_attrs["faas.coldstart"], span_attrs["faas.trigger"]) == (cold, trigger)
        assert span_attrs["cloud.resource_id"] == body["arn"]
        assert span_attrs["cloud.account.id"] == body["arn"].split(":")[4]
        # the parent is the X-Ray context Lambda sent; the handler saw this very span
        root_id = body["xray"].split(";")[0].split("-", 1)[1].replace("-", "")
        parent_id = body["xray"].split("Parent=")[1].split(";")[0]
        assert (span.trace_id.hex(), span.parent_span_id.hex()) == (root_id, parent_id)
        assert (body["trace_id"], body["span_id"]) == (span.trace_id.hex(), span.span_id.hex())
        # and the handler's log record carries the same ids
        inside = next(r for r in records if r.get("message") == "inside the span"
                      and r.get("request_id") == result.request_id)
        assert (inside["trace_id"], inside["span_id"]) == (body["trace_id"], body["span_id"])
        res = attrs(resource.attributes)
        assert (res["service.name"], res["faas.name"], res["cloud.provider"]) == ("probe", "probe", "aws")
        assert (res["cloud.region"], res["faas.max_memory"]) == ("us-east-1", 256 << 20)
        assert res["faas.instance"]
    names = {metric.name for _, _, metric in otlp_receiver.wait_for_metrics(1)}
    assert {"flightrec.invocations", "flightrec.invocation.duration", "flightrec.coldstarts"} <= names


def test_wired_bootstrap_a_hung_collector_does_not_stall_the_loop(private_otlp_receiver):
    rx = private_otlp_receiver
    rx.hang = True
    env = _env(rx.endpoint, TELEMETRY_FLUSH_BUDGET_MS="300", TELEMETRY_OTLP_TIMEOUT_MS="2000")
    with emulator("handlers.echo.handler", REPO, env=env, timeout_s=10.0) as emu:
        emu.invoke({"warm": True})  # init is not what is measured
        for n in range(3):
            started = time.monotonic()
            result = emu.invoke({"n": n})  # returns once the runtime is back at /next (its REPORT)
            # liveness: the flush budget plus a generous margin, not a speed figure
            assert time.monotonic() - started < 0.3 + 5.0
            assert result.ok
        generation = emu.generation
        rx.hang = False
        later = emu.invoke({"later": True})
        ids = set()
        deadline = time.monotonic() + 15
        while later.request_id not in ids and time.monotonic() < deadline:
            ids = {attrs(span.attributes)["faas.invocation_id"] for _, _, span in rx.spans()}
            time.sleep(0.05)
    assert generation == 1
    assert later.request_id in ids


def test_wired_bootstrap_an_init_error_span_reaches_the_receiver(otlp_receiver, task_root):
    otlp_receiver.clear()
    root = task_root("boom", "raise RuntimeError('import-time failure')\n")
    env = _env(otlp_receiver.endpoint, TELEMETRY_FLUSH_BUDGET_MS="5000")  # delivery before the exit, not speed
    with emulator("boom.handler", root, function_name="boom", env=env) as emu:
        result = emu.invoke({})
        posted = [p for p in emu.posts if p.kind == "init_error"]
    assert posted and result.function_error == "Unhandled"  # the error still went to /runtime/init/error
    spans = [(r, s) for r, _, s in otlp_receiver.wait_for_spans(1) if s.name == "init"]
    resource, span = spans[0]
    assert attrs(resource.attributes)["faas.name"] == "boom"
    assert span.status.code == STATUS_CODE_ERROR
    event = attrs(span.events[0].attributes)
    assert (event["exception.type"], event["exception.message"]) == ("RuntimeError", "import-time failure")


def test_wired_bootstrap_the_deadline_guard_exports_the_span_of_a_sleeping_handler(otlp_receiver, task_root):
    otlp_receiver.clear()
    root = task_root("sleepy", """
        import time
        def handler(event, context):
            time.sleep(30)
    """)
    # a generous margin: this proves the export happens before the kill, not how fast it is
    env = _env(otlp_receiver.endpoint, TELEMETRY_DEADLINE_MARGIN_MS="1500")
    with emulator("sleepy.handler", root, function_name="sleepy", env=env, timeout_s=3.0) as emu:
        result = emu.invoke({})
        output = list(emu.output_lines)
    assert "Task timed out" in result.json()["errorMessage"]
    try:
        received = otlp_receiver.wait_for_spans(1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; runtime output: {output[-20:]}") from None
    (span,) = [s for _, _, s in received if attrs(s.attributes).get("faas.invocation_id") == result.request_id]
    assert span.status.code == STATUS_CODE_ERROR
    assert attrs(span.attributes)["error.type"] == "Sandbox.Timedout"
    assert [e.name for e in span.events] == ["timeout_imminent"]
