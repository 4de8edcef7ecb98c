"""Specification of `runtime.context.LambdaContext`: awslambdaric's handler context, attribute for attribute."""

from __future__ import annotations

import json
import types

import pytest
from awslambdaric import lambda_context as ric_context
from awslambdaric.bootstrap import create_lambda_context, parse_json_header
from awslambdaric.lambda_runtime_exception import FaultException

from runtime.config import RuntimeConfig
from runtime.context import LambdaContext
from runtime.errors import LambdaContextUnmarshalError
from runtime.model import Invocation

ENV = {
    "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
    "AWS_LAMBDA_FUNCTION_NAME": "orders",
    "AWS_LAMBDA_FUNCTION_VERSION": "7",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[7]0123456789abcdef",
}
CONFIG = RuntimeConfig.from_env(ENV)
ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders:7"
CLIENT_CONTEXT = {
    "custom": {"tenant": "acme", "n": 1},
    "env": {"platform": "Android", "locale": "en_GB"},
    "client": {
        "installation_id": "inst-1",
        "app_title": "Shop",
        "app_version_name": "1.2.3",
        "app_version_code": "123",
        "app_package_name": "com.example.shop",
    },
    "w3c": {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "k=v",
        "other": "x",
    },
}
COGNITO = {"cognitoIdentityId": "eu-west-1:abc", "cognitoIdentityPoolId": "eu-west-1:pool"}


def invocation(**overrides) -> Invocation:
    values = {
        "request_id": "req-1",
        "body": b"{}",
        "deadline_ms": 1_700_000_010_000,
        "invoked_function_arn": ARN,
        "client_context": json.dumps(CLIENT_CONTEXT),
        "cognito_identity": json.dumps(COGNITO),
        "tenant_id": "tenant-9",
    }
    values.update(overrides)
    return Invocation(**values)


def fixed_clock(seconds: float):
    return lambda: seconds


def test_every_awslambdaric_attribute_is_present():
    # GIVEN an invocation with every header and a config from Lambda's environment
    # WHEN the context is built
    ctx = LambdaContext(invocation(), CONFIG, fixed_clock(1_700_000_000.0))

    # THEN it has each attribute awslambdaric's context has, with the same types
    assert ctx.aws_request_id == "req-1"
    assert ctx.function_name == "orders"
    assert ctx.function_version == "7"
    assert ctx.invoked_function_arn == ARN
    assert ctx.memory_limit_in_mb == "512"  # a string, as awslambdaric reads it from the environment
    assert ctx.log_group_name == "/aws/lambda/orders"
    assert ctx.log_stream_name == "2024/01/01/[7]0123456789abcdef"
    assert ctx.tenant_id == "tenant-9"
    assert ctx.identity.cognito_identity_id == "eu-west-1:abc"
    assert ctx.identity.cognito_identity_pool_id == "eu-west-1:pool"
    assert ctx.client_context is not None
    assert ctx.client_context.custom == {"tenant": "acme", "n": 1}
    assert ctx.client_context.env == {"platform": "Android", "locale": "en_GB"}
    client = ctx.client_context.client
    assert (client.installation_id, client.app_title, client.app_version_name) == ("inst-1", "Shop", "1.2.3")
    assert (client.app_version_code, client.app_package_name) == ("123", "com.example.shop")
    assert ctx.get_remaining_time_in_millis() == 10_000


def test_absent_optional_headers():
    # GIVEN an invocation without client context, Cognito identity, tenant or ARN
    ctx = LambdaContext(
        invocation(client_context=None, cognito_identity=None, tenant_id=None, invoked_function_arn=None), CONFIG
    )

    # THEN client_context is None and identity is an empty identity (both as in awslambdaric)
    assert ctx.client_context is None
    assert ctx.identity.cognito_identity_id is None
    assert ctx.identity.cognito_identity_pool_id is None
    assert ctx.tenant_id is None
    assert ctx.invoked_function_arn is None
    assert ctx.w3c() == {}


def test_client_context_without_client_and_unknown_keys():
    ctx = LambdaContext(invocation(client_context='{"custom": {"a": 1}, "extra": true}'), CONFIG)
    assert ctx.client_context.custom == {"a": 1}
    assert ctx.client_context.env is None
    assert ctx.client_context.client is None


@pytest.mark.parametrize("raw", ["null", "[1, 2]", '"text"', "3"])
def test_client_context_that_is_not_an_object_is_ignored(raw):
    ctx = LambdaContext(invocation(client_context=raw, cognito_identity=raw), CONFIG)
    assert ctx.client_context is None
    assert ctx.identity.cognito_identity_id is None


@pytest.mark.parametrize(
    ("now_s", "expected"),
    [
        (1_700_000_000.0, 10_000),
        (1_700_000_009.9994, 1),
        (1_700_000_010.0, 0),
        (1_700_000_099.0, 0),  # past the deadline: never negative
    ],
)
def test_remaining_time_uses_the_injected_clock(now_s, expected):
    # GIVEN a deadline of 1_700_000_010_000 ms and a clock reading `now_s`
    ctx = LambdaContext(invocation(), CONFIG, fixed_clock(now_s))
    # WHEN / THEN remaining time is the difference in whole ms, never below 0
    assert ctx.get_remaining_time_in_millis() == expected


def test_remaining_time_follows_the_clock():
    now = [1_700_000_000.0]
    ctx = LambdaContext(invocation(), CONFIG, lambda: now[0])
    assert ctx.get_remaining_time_in_millis() == 10_000
    now[0] += 2.5
    assert ctx.get_remaining_time_in_millis() == 7_500


def test_remaining_time_without_deadline_is_zero():
    assert LambdaContext(invocation(deadline_ms=None), CONFIG).get_remaining_time_in_millis() == 0


def test_w3c_keeps_only_allowed_string_fields_and_hides_them_from_client_context():
    # GIVEN a client context carrying W3C trace context (and a field that is not W3C)
    ctx = LambdaContext(invocation(), CONFIG)

    # WHEN / THEN w3c() has the allowed fields only, and the client context no longer carries them
    assert ctx.w3c() == {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"}
    assert not hasattr(ctx.client_context, "w3c")
    # AND callers get a copy
    ctx.w3c()["traceparent"] = "changed"
    assert ctx.w3c()["tracestate"] == "k=v"
    assert ctx.w3c()["traceparent"].startswith("00-")


@pytest.mark.parametrize("w3c", [["traceparent"], "traceparent", {"traceparent": 1, "baggage": None}])
def test_w3c_of_the_wrong_shape_is_empty(w3c):
    ctx = LambdaContext(invocation(client_context=json.dumps({"w3c": w3c})), CONFIG)
    assert ctx.w3c() == {}


def test_log_writes_to_stdout(capsys):
    LambdaContext(invocation(), CONFIG).log("a line from context.log\n")
    assert capsys.readouterr().out == "a line from context.log\n"


@pytest.mark.parametrize(
    ("header", "name", "raw"),
    [
        ("client_context", "Client Context", "{not json"),
        ("client_context", "Client Context", ""),
        ("cognito_identity", "Cognito Identity", '{"cognitoIdentityId": '),
        ("client_context", "Client Context", "[" * 100_000),
    ],
)
def test_bad_json_header_is_a_context_unmarshal_error(header, name, raw):
    # GIVEN a client-context or Cognito header that is not JSON ("" only as a non-empty-looking raw value)
    inv = invocation(**{header: raw or " "})

    # WHEN the context is built
    # THEN LambdaContextUnmarshalError with awslambdaric's exact message
    with pytest.raises(LambdaContextUnmarshalError) as err:
        LambdaContext(inv, CONFIG)
    assert err.value.error_type == "Runtime.LambdaContextUnmarshalError"
    assert err.value.message.startswith(f"Unable to parse {name} JSON: ")
    if "[" not in raw:  # awslambdaric's simplejson has no recursion limit to compare with
        with pytest.raises(FaultException) as theirs:
            parse_json_header(raw or " ", name)
        assert err.value.message == theirs.value.msg


# --- differential: awslambdaric's LambdaContext ------------------------------------------------------------------

CASES = {
    "everything": {},
    "no client context": {"client_context": None},
    "no cognito": {"cognito_identity": None},
    "no tenant or arn": {"tenant_id": None, "invoked_function_arn": None},
    "client context without client": {"client_context": '{"custom": {"k": "v"}, "env": {"e": 1}}'},
    "partial client": {"client_context": '{"client": {"app_title": "T"}}'},
    "w3c only": {"client_context": '{"w3c": {"baggage": "k=v", "traceparent": 7}}'},
    "partial cognito": {"cognito_identity": '{"cognitoIdentityPoolId": "p"}'},
}


def _public_view(ctx) -> dict[str, object]:
    """Every public attribute of a context, nested objects flattened, in comparable terms."""
    view: dict[str, object] = {
        name: getattr(ctx, name)
        for name in (
            "aws_request_id",
            "log_group_name",
            "log_stream_name",
            "function_name",
            "memory_limit_in_mb",
            "function_version",
            "invoked_function_arn",
            "tenant_id",
        )
    }
    view["identity"] = (ctx.identity.cognito_identity_id, ctx.identity.cognito_identity_pool_id)
    cc = ctx.client_context
    if cc is None:
        view["client_context"] = None
    else:
        client = cc.client
        view["client_context"] = {
            "custom": cc.custom,
            "env": cc.env,
            "client": None
            if client is None
            else {
                name: getattr(client, name)
                for name in ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")
            },
        }
    view["w3c"] = ctx.w3c()
    view["remaining"] = ctx.get_remaining_time_in_millis()
    view["repr"] = repr(ctx)
    return view


@pytest.mark.parametrize("case", list(CASES))
def test_same_attributes_as_awslambdaric(monkeypatch, case):
    # GIVEN the same environment, headers and clock for both runtimes
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ric_context, "time", types.SimpleNamespace(time=fixed_clock(1_700_000_004.25)))
    inv = invocation(**CASES[case])

    # WHEN each builds its context
    theirs = create_lambda_context(
        inv.client_context,
        inv.cognito_identity,
        inv.deadline_ms,
        inv.request_id,
        inv.invoked_function_arn,
        inv.tenant_id,
    )
    ours = LambdaContext(inv, CONFIG, fixed_clock(1_700_000_004.25))

    # THEN every public attribute, the remaining time, w3c() and even repr() agree
    assert _public_view(ours) == _public_view(theirs)
