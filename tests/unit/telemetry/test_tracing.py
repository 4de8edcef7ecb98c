"""telemetry.tracing: trigger detection per event shape, X-Ray and W3C parents, span attributes, resource, queue.

Events are the shapes AWS documents for each source (trimmed to the keys that matter, in AWS's key order).
"""

from __future__ import annotations

import base64
import importlib
import json
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from runtime.model import Invocation
from telemetry.config import TelemetryConfig
from telemetry.tracing import (
    AfterImport,
    SpanQueue,
    XRayPropagator,
    account_id,
    build_propagator,
    build_resource,
    detect_trigger,
    otlp_http_session,
    parent_context,
    parse_xray,
    span_attributes,
    traceparent_from_event,
)

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
XRAY_TRACE = 0x5759E988BD862E3FE1BE46A994272793
XRAY_PARENT = 0x53995C3F42CD8AD8
ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
W3C = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

API_GATEWAY_V1 = {
    "resource": "/orders", "path": "/orders", "httpMethod": "POST",
    "headers": {"Content-Type": "application/json", "Traceparent": W3C},
    "multiValueHeaders": {"Traceparent": [W3C]}, "queryStringParameters": None,
    "requestContext": {"apiId": "abc123", "stage": "prod", "httpMethod": "POST"},
    "body": json.dumps({"Records": [{"eventSource": "aws:sqs"}]}), "isBase64Encoded": False,
}
API_GATEWAY_V2 = {
    "version": "2.0", "routeKey": "POST /orders", "rawPath": "/orders", "rawQueryString": "",
    "headers": {"content-type": "application/json", "traceparent": W3C, "tracestate": "vendor=1"},
    "requestContext": {"apiId": "abc123", "http": {"method": "POST", "path": "/orders"}, "stage": "$default"},
    "body": "{}", "isBase64Encoded": False,
}
FUNCTION_URL = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": {},
    "requestContext": {"domainName": "abc.lambda-url.eu-west-1.on.aws", "http": {"method": "GET"}},
    "isBase64Encoded": False,
}
ALB = {
    "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:tg/x/1"}},
    "httpMethod": "GET", "path": "/", "queryStringParameters": {}, "headers": {}, "body": "", "isBase64Encoded": False,
}
SQS = {"Records": [{
    "messageId": "059f36b4", "receiptHandle": "AQEBwJ" + "x" * 300,
    "body": json.dumps({"httpMethod": "GET", "detail-type": "Scheduled Event", "source": "aws.events"}),
    "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "e4e68fb7",
    "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:q", "awsRegion": "eu-west-1",
}]}
SNS = {"Records": [{
    "EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn:aws:sns:eu-west-1:1:t:1",
    "Sns": {"Type": "Notification", "Message": "hello", "TopicArn": "arn:aws:sns:eu-west-1:1:t"},
}]}
S3 = {"Records": [{
    "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1", "eventName": "ObjectCreated:Put",
    "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": 1}},
}]}
DYNAMODB = {"Records": [{
    "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
    "awsRegion": "eu-west-1",
    "dynamodb": {"Keys": {"Id": {"N": "1"}}, "NewImage": {"httpMethod": {"S": "GET"}}, "StreamViewType": "NEW_IMAGE"},
    "eventSourceARN": "arn:aws:dynamodb:eu-west-1:1:table/t/stream/x",
}]}
KINESIS = {"Records": [{
    "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "1", "sequenceNumber": "4959",
                "data": base64.b64encode(b'{"httpMethod": "GET"}' * 1000).decode(),
                "approximateArrivalTimestamp": 1545084650.987},
    "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": "shardId-000000000006:4959",
    "eventName": "aws:kinesis:record", "awsRegion": "eu-west-1",
    "eventSourceARN": "arn:aws:kinesis:eu-west-1:1:stream/s",
}]}
SCHEDULE = {
    "version": "0", "id": "53dc4d37", "detail-type": "Scheduled Event", "source": "aws.events",
    "account": "123456789012", "time": "2015-10-08T16:53:06Z", "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/my-schedule"], "detail": {},
}
EVENTBRIDGE = {**SCHEDULE, "detail-type": "Order Placed", "source": "shop.orders", "detail": {"httpMethod": "x"}}


def _body(event: object, indent: int | None = None) -> bytes:
    return json.dumps(event, indent=indent).encode()


@pytest.mark.parametrize(("event", "trigger"), [
    (API_GATEWAY_V1, "http"),
    (API_GATEWAY_V2, "http"),
    (FUNCTION_URL, "http"),
    (ALB, "http"),
    (SQS, "pubsub"),
    (SNS, "pubsub"),
    (KINESIS, "pubsub"),
    (S3, "datasource"),
    (DYNAMODB, "datasource"),
    (SCHEDULE, "timer"),
    (EVENTBRIDGE, "pubsub"),
    ({}, "other"),
    ({"order_id": "o1"}, "other"),
    ([1, 2], "other"),
    ("just a string", "other"),
], ids=["apigw-v1", "apigw-v2", "function-url", "alb", "sqs", "sns", "kinesis", "s3", "dynamodb", "schedule",
        "eventbridge", "empty", "direct", "list", "string"])
def test_trigger_of_each_event_shape(event, trigger):
    assert detect_trigger(_body(event)) == trigger
    assert detect_trigger(_body(event, indent=2)) == trigger  # console test events are pretty-printed


def test_trigger_of_a_batch_larger_than_the_window_is_found_in_its_tail():
    # GIVEN ten SQS records of 100 KiB each: the first eventSource is far beyond the head window
    record = dict(SQS["Records"][0], body="y" * 100_000)
    body = _body({"Records": [record] * 10})
    assert body.find(b'"aws:sqs"') > 8192
    # THEN the last record's eventSource, near the end, decides
    assert detect_trigger(body) == "pubsub"


def test_trigger_is_not_fooled_by_json_inside_a_message_body():
    # an SQS message whose body is an API Gateway event is still an SQS event (the body's quotes are escaped)
    sqs = {"Records": [dict(SQS["Records"][0], body=json.dumps(API_GATEWAY_V1))]}
    assert detect_trigger(_body(sqs)) == "pubsub"
    # and an API Gateway request whose body mentions aws:sqs is still HTTP
    assert detect_trigger(_body(API_GATEWAY_V1)) == "http"


def test_trigger_of_garbage_is_other():
    assert detect_trigger(b"") == "other"
    assert detect_trigger(b"\xff\xfe{not json") == "other"
    assert detect_trigger(b"{" * 100_000) == "other"


def test_xray_header_gives_trace_id_parent_and_sampled_flag():
    parsed = parse_xray(XRAY)
    assert parsed is not None
    assert (parsed.trace_id, parsed.parent_id, parsed.sampled) == (XRAY_TRACE, XRAY_PARENT, True)
    assert parse_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0").sampled is False
    lineage = parse_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Lineage=a87bd80c:0")
    assert lineage is not None and lineage.sampled is None
    assert parsed.header() == XRAY


@pytest.mark.parametrize("header", [
    None, "", "garbage", "Root=1-5759e988-bd862e3fe1be46a994272793",  # no parent
    "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",  # unknown version
    "Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8",  # short
    "Root=1-zzzzzzzz-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",  # not hex
    "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",  # all zero
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000",
])
def test_malformed_xray_headers_give_no_parent(header):
    assert parse_xray(header) is None


def test_sampled_zero_is_obeyed_only_when_configured():
    parsed = parse_xray(XRAY.replace("Sampled=1", "Sampled=0"))
    assert parsed is not None
    assert parsed.span_context(obey_sampled=False).trace_flags.sampled is True
    assert parsed.span_context(obey_sampled=True).trace_flags.sampled is False
    assert parsed.span_context(obey_sampled=True).is_remote


def test_parent_comes_from_the_xray_header():
    inv = Invocation("r1", b"{}", trace_id=XRAY)
    ctx, links = parent_context(inv, TelemetryConfig())
    parent = trace.get_current_span(ctx).get_span_context()
    assert (parent.trace_id, parent.span_id, parent.is_remote) == (XRAY_TRACE, XRAY_PARENT, True)
    assert links == []


def test_no_trace_header_means_a_root_span():
    assert parent_context(Invocation("r1", b"{}"), TelemetryConfig()) == (None, [])


def test_traceparent_from_an_http_event_wins_when_configured_and_xray_becomes_a_link():
    inv = Invocation("r1", _body(API_GATEWAY_V2), trace_id=XRAY)
    # not configured: the event's header is ignored
    ctx, _ = parent_context(inv, TelemetryConfig())
    assert trace.get_current_span(ctx).get_span_context().trace_id == XRAY_TRACE
    # configured
    ctx, links = parent_context(inv, TelemetryConfig(otel_traceparent_from_event=True))
    parent = trace.get_current_span(ctx).get_span_context()
    assert f"{parent.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{parent.span_id:016x}" == "b7ad6b7169203331"
    assert parent.trace_state.get("vendor") == "1"
    assert [link.context.trace_id for link in links] == [XRAY_TRACE]


def test_traceparent_lookup_in_event_headers():
    assert traceparent_from_event(_body(API_GATEWAY_V1)) == (W3C, None)  # REST API keeps the caller's case
    assert traceparent_from_event(_body(API_GATEWAY_V2)) == (W3C, "vendor=1")
    assert traceparent_from_event(_body(FUNCTION_URL)) is None
    assert traceparent_from_event(b'{"headers": {"traceparent": "not-a-traceparent"}}') is None
    bad = Invocation("r1", b'{"headers": {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"}}',
                     trace_id=XRAY)
    ctx, _ = parent_context(bad, TelemetryConfig(otel_traceparent_from_event=True))
    assert trace.get_current_span(ctx).get_span_context().trace_id == XRAY_TRACE  # invalid → X-Ray


def test_span_attributes_use_the_faas_conventions():
    inv = Invocation("req-1", _body(SQS), invoked_function_arn=ARN + ":live", tenant_id="tenant-7")
    attrs = span_attributes(inv, cold_start=True, function_version="12")
    assert attrs == {
        "faas.invocation_id": "req-1",
        "faas.coldstart": True,
        "faas.trigger": "pubsub",
        "aws.lambda.invoked_arn": ARN + ":live",
        "cloud.resource_id": ARN + ":12",  # the alias replaced by the version that runs
        "cloud.account.id": "123456789012",
        "aws.lambda.tenant_id": "tenant-7",
    }
    assert span_attributes(inv, cold_start=True, function_version="12") == attrs  # pure
    plain = span_attributes(Invocation("req-2", b"{}"), cold_start=False)
    assert plain == {"faas.invocation_id": "req-2", "faas.coldstart": False, "faas.trigger": "other"}
    assert span_attributes(Invocation("r", b"{}", invoked_function_arn=ARN), cold_start=False)[
        "cloud.resource_id"] == ARN


def test_account_id_from_arns():
    assert account_id(ARN) == "123456789012"
    assert account_id(ARN + ":alias") == "123456789012"
    assert account_id("not an arn") is None
    assert account_id(None) is None


def test_resource_has_the_function_identity_and_env_overrides_in_order():
    cfg = TelemetryConfig.from_env({
        "AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_LAMBDA_FUNCTION_VERSION": "7", "AWS_REGION": "eu-west-1",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[7]abc", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=from-attrs,team=a%20b",
    })
    attrs = dict(build_resource(cfg, instance_id="i-1").attributes)
    assert attrs["service.name"] == "orders"  # OTEL_SERVICE_NAME's default (the function name) wins
    assert attrs["cloud.provider"] == "aws"
    assert attrs["cloud.region"] == "eu-west-1"
    assert attrs["faas.name"] == "orders"
    assert attrs["faas.version"] == "7"
    assert attrs["faas.instance"] == "2026/01/01/[7]abc"
    assert attrs["faas.max_memory"] == 512 * 1024 * 1024
    assert attrs["deployment.environment"] == "prod"
    assert attrs["team"] == "a b"
    assert attrs["service.instance.id"] == "i-1"
    named = TelemetryConfig.from_env({"AWS_LAMBDA_FUNCTION_NAME": "orders", "OTEL_SERVICE_NAME": "shop"})
    assert build_resource(named).attributes["service.name"] == "shop"


def test_xray_propagator_round_trip():
    propagator = XRayPropagator()
    ctx = propagator.extract({"X-Amzn-Trace-Id": XRAY})
    carrier: dict[str, str] = {}
    propagator.inject(carrier, ctx)
    assert carrier == {"X-Amzn-Trace-Id": XRAY}
    assert propagator.extract({"x-amzn-trace-id": XRAY}) is not None
    assert not trace.get_current_span(propagator.extract({})).get_span_context().is_valid


def test_unknown_propagators_are_reported_not_fatal():
    said: list[str] = []
    composite = build_propagator(("tracecontext", "b3", "xray"), said.append)
    assert composite.fields == {"traceparent", "tracestate", "X-Amzn-Trace-Id"}
    assert len(said) == 1 and "'b3'" in said[0]
    assert build_propagator(("none", "tracecontext"), said.append).fields == set()


def test_span_queue_drops_the_oldest_and_counts_it():
    queue = SpanQueue(max_spans=3, batch_size=2)
    woken: list[int] = []
    queue.on_batch = lambda: woken.append(len(queue))
    provider = TracerProvider()
    provider.add_span_processor(queue)
    tracer = provider.get_tracer("t")
    for name in "abcde":
        tracer.start_span(name).end()
    assert queue.take_overflow() == 2
    assert queue.take_overflow() == 0
    assert [s.name for s in queue.take(10)] == ["c", "d", "e"]
    assert woken  # a full batch woke the export thread
    assert queue.take(10) == []


def test_unsampled_spans_are_not_queued():
    queue = SpanQueue()
    provider = TracerProvider()
    provider.add_span_processor(queue)
    parent = trace.NonRecordingSpan(parse_xray(XRAY.replace("Sampled=1", "Sampled=0")).span_context(obey_sampled=True))
    provider.get_tracer("t").start_span("x", context=trace.set_span_in_context(parent)).end()
    assert len(queue) == 0


def test_after_import_hook_runs_once_the_module_is_imported(tmp_path, monkeypatch):
    # GIVEN a module nobody imported yet and a hook waiting for it
    (tmp_path / "flightrec_probe_mod.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[object] = []
    hook = AfterImport("flightrec_probe_mod", lambda module: seen.append(module.VALUE))
    hook.install()
    try:
        assert seen == []
        # WHEN it is imported
        module = importlib.import_module("flightrec_probe_mod")
        # THEN the hook ran after its code, and the module keeps its real loader
        assert seen == [42]
        assert type(module.__loader__).__name__ == "SourceFileLoader"
        assert hook not in sys.meta_path
    finally:
        hook.remove()
        sys.modules.pop("flightrec_probe_mod", None)


def test_after_import_hook_runs_at_once_for_a_module_already_imported():
    seen: list[str] = []
    AfterImport("json", lambda module: seen.append(module.__name__)).install()
    assert seen == ["json"]


OTLP_URL = "http://127.0.0.1:4318/v1/traces"


@pytest.fixture
def no_netrc(tmp_path, monkeypatch):
    """A home without a netrc file, so the developer's own ~/.netrc cannot change the outcome (its path is
    returned: write it and pass it as NETRC to have one)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path / "netrc"


def test_otlp_session_ignores_the_environment_when_it_says_nothing(no_netrc):
    # GIVEN an environment without proxy, CA bundle or credential-provider variables
    env = {"PATH": "/usr/bin", "AWS_REGION": "eu-west-1"}
    # WHEN the exporters' session is built
    session = otlp_http_session(OTLP_URL, env)
    # THEN it does not rescan the environment on every POST
    assert session is not None
    assert session.trust_env is False


@pytest.mark.parametrize(("url", "name"), [
    (OTLP_URL, "HTTPS_PROXY"), (OTLP_URL, "http_proxy"), (OTLP_URL, "ALL_PROXY"), (OTLP_URL, "NO_PROXY"),
    (OTLP_URL, "no_proxy"), ("https://collector.example/v1/traces", "REQUESTS_CA_BUNDLE"),
    ("https://collector.example/v1/traces", "CURL_CA_BUNDLE"),
])
def test_otlp_session_keeps_honouring_proxy_and_ca_variables(no_netrc, url, name):
    session = otlp_http_session(url, {name: "/etc/ssl/corp.pem"})
    assert session is not None
    assert session.trust_env is True


def test_a_ca_bundle_does_not_matter_to_plain_http(no_netrc):
    session = otlp_http_session(OTLP_URL, {"REQUESTS_CA_BUNDLE": "/etc/ssl/corp.pem"})
    assert session is not None
    assert session.trust_env is False


def test_otlp_session_keeps_honouring_a_netrc_file(no_netrc):
    no_netrc.write_text("machine 127.0.0.1 login otel password s3cret\n")
    session = otlp_http_session(OTLP_URL, {"NETRC": str(no_netrc)})
    assert session is not None
    assert session.trust_env is True


def test_otlp_session_leaves_a_credential_provider_to_the_exporter(no_netrc):
    env = {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "my_provider"}
    assert otlp_http_session(OTLP_URL, env) is None
