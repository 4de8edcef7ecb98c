"""Specification of `runtime.codec`: events in and results out, as awslambdaric marshals them for plain handlers."""

from __future__ import annotations

import decimal
import json
import math
import subprocess
import sys

import pytest
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import codec
from runtime.codec import BINARY, FAST_DECODE_MIN_BYTES, JSON, decode_event, encode_result, is_json
from runtime.errors import MarshalError, UnmarshalError

# --- decode ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/json", None, "application/json; charset=utf-8", "APPLICATION/JSON"]
)
def test_json_event_is_decoded(content_type):
    # GIVEN a JSON body (Lambda sends application/json; a missing header means JSON too)
    body = '{"name": "Zoë", "n": [1, 2.5, null, true]}'.encode()

    # WHEN it is decoded
    # THEN the handler gets Python values
    assert decode_event(body, content_type) == {"name": "Zoë", "n": [1, 2.5, None, True]}


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain", "application/jsonx", ""])
def test_non_json_content_type_passes_raw_bytes(content_type):
    # GIVEN a body that is not declared JSON
    body = b"\x00\xff not json"

    # WHEN / THEN the handler gets the bytes unchanged, as awslambdaric passes them
    assert decode_event(body, content_type) == body


def test_is_json():
    assert is_json(None)
    assert is_json(" application/json ;charset=utf-8")
    assert not is_json("text/json")


def test_malformed_json_is_an_unmarshal_error():
    # GIVEN a JSON body that does not parse
    # WHEN / THEN UnmarshalError with awslambdaric's message prefix and the parser's reason
    with pytest.raises(UnmarshalError) as err:
        decode_event(b'{"a": ', JSON)
    assert err.value.message == "Unable to unmarshal input: Expecting value: line 1 column 7 (char 6)"
    assert err.value.error_type == "Runtime.UnmarshalError"


def test_invalid_utf8_is_an_unmarshal_error():
    with pytest.raises(UnmarshalError, match=r"^Unable to unmarshal input: 'utf-8' codec can't decode byte 0xff"):
        decode_event(b'{"a": "\xff\xfe"}', JSON)


def test_very_deep_nesting_is_an_unmarshal_error():
    # GIVEN 100,000 nested arrays (small payload, deep enough to overflow the decoder's recursion)
    body = b"[" * 100_000 + b"]" * 100_000

    # WHEN / THEN an UnmarshalError for this request, not a crash of the runtime
    with pytest.raises(UnmarshalError, match=r"^Unable to unmarshal input: .*recursion"):
        decode_event(body, JSON)


@pytest.mark.parametrize("body", [b"", b"   "])
def test_empty_json_body_is_an_unmarshal_error(body):
    with pytest.raises(UnmarshalError, match=r"^Unable to unmarshal input: Expecting value"):
        decode_event(body, JSON)


# --- encode ------------------------------------------------------------------------------------------------------


def test_dict_result_is_json():
    # GIVEN a handler result of plain JSON values
    # WHEN it is encoded (outside the python3.12+ managed runtimes, as in this test run)
    body, content_type = encode_result({"message": "Hello, Zoë!", "n": [1, 2.5, None, True]})

    # THEN it is JSON with awslambdaric's separators and non-ASCII escaped, typed application/json
    assert content_type == "application/json"
    assert body == b'{"message": "Hello, Zo\\u00eb!", "n": [1, 2.5, null, true]}'


@pytest.mark.parametrize("execution_env", [None, "AWS_Lambda_python3.11", "AWS_Lambda_provided.al2023",
                                           "AWS_Lambda_python3.12", "AWS_Lambda_python3.13"])  # fmt: skip
def test_non_ascii_is_escaped_exactly_where_awslambdaric_escapes_it(execution_env, monkeypatch):
    # GIVEN the execution environment Lambda names, and a result with non-ASCII text and a lone surrogate
    if execution_env is None:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    else:
        monkeypatch.setenv("AWS_EXECUTION_ENV", execution_env)
    result = {"name": "Zoë 東京 🚀", "list": ["ü", 1.5, None]}
    # WHEN both runtimes' encoders for that environment encode it
    ours = codec.json_encoder(execution_env).encode(result)
    theirs = LambdaMarshaller().marshal_response(result)[0]
    # THEN the bytes are the same: escaped (Python 3.11, custom runtimes) or UTF-8 (python3.12+ runtimes)
    assert ours == theirs
    assert ours.isascii() == (execution_env not in codec.UTF8_EXECUTION_ENVS)


@pytest.mark.parametrize(("result", "expected"), [(None, b"null"), ("text", b'"text"'), (3, b"3"), ([], b"[]")])
def test_scalar_results(result, expected):
    assert encode_result(result) == (expected, JSON)


@pytest.mark.parametrize("result", [b"\x00\x01binary", bytearray(b"ba"), memoryview(b"mv")])
def test_bytes_result_passes_as_application_unknown(result):
    # GIVEN a handler returning bytes
    # WHEN / THEN they are sent unchanged as application/unknown, as awslambdaric does
    assert encode_result(result) == (bytes(result), BINARY)
    assert BINARY == "application/unknown"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (decimal.Decimal("1.10"), b"1.10"),
        (decimal.Decimal("-0.000001"), b"-0.000001"),
        (decimal.Decimal("1E+3"), b"1E+3"),
        (decimal.Decimal("12345678901234567890.123456789"), b"12345678901234567890.123456789"),
        (decimal.Decimal("NaN"), b"NaN"),
        (decimal.Decimal("Infinity"), b"Infinity"),
        (decimal.Decimal("-Infinity"), b"-Infinity"),
    ],
)
def test_decimal_is_written_as_a_raw_number(value, expected):
    # GIVEN a Decimal (DynamoDB hands them out), alone and nested
    # WHEN it is encoded
    # THEN it is written verbatim as a JSON number, exactly as awslambdaric writes it
    assert encode_result(value) == (expected, JSON)
    assert encode_result({"price": [value]}) == (b'{"price": [' + expected + b"]}", JSON)
    assert encode_result({"price": [value]})[0] == LambdaMarshaller().marshal_response({"price": [value]})[0].encode()


def test_decimal_looking_strings_stay_strings():
    # GIVEN strings that look like numbers next to a Decimal
    result = {"s": "1.10", "d": decimal.Decimal("1.10"), "q": '"1.10"'}
    # WHEN / THEN only the Decimal becomes a number
    assert json.loads(encode_result(result)[0], parse_float=decimal.Decimal) == {
        "s": "1.10",
        "d": decimal.Decimal("1.10"),
        "q": '"1.10"',
    }


@pytest.mark.parametrize(
    ("value", "expected"), [(math.nan, b"NaN"), (math.inf, b"Infinity"), (-math.inf, b"-Infinity")]
)
def test_non_finite_floats_are_allowed(value, expected):
    # awslambdaric encodes with allow_nan=True
    assert encode_result(value) == (expected, JSON)


@pytest.mark.parametrize(("result", "kind"), [({1, 2}, "set"), ({"when": object()}, "object"), ([1j], "complex")])
def test_unserialisable_result_is_a_marshal_error(result, kind):
    # GIVEN a result JSON cannot represent
    # WHEN / THEN MarshalError with awslambdaric's exact message
    with pytest.raises(MarshalError) as err:
        encode_result(result)
    assert err.value.message == f"Unable to marshal response: Object of type {kind} is not JSON serializable"
    assert err.value.error_type == "Runtime.MarshalError"


def test_set_marshal_error_matches_awslambdaric():
    with pytest.raises(MarshalError) as ours:
        encode_result({1, 2})
    with pytest.raises(Exception) as theirs:  # noqa: PT011 - awslambdaric's FaultException, compared below
        LambdaMarshaller().marshal_response({1, 2})
    assert ours.value.message == theirs.value.msg


def test_self_referencing_result_is_a_marshal_error():
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(MarshalError, match=r"^Unable to marshal response: Circular reference detected"):
        encode_result(loop)


def test_lone_surrogates_are_escaped_not_a_crash():
    # GIVEN a string that is not valid Unicode (a lone surrogate, e.g. from a bad decode upstream)
    body, content_type = encode_result({"s": "a\ud800b"})
    # THEN the body is still UTF-8 JSON that reads back to the same string, as awslambdaric's ASCII output does
    body.decode("utf-8")
    assert json.loads(body) == {"s": "a\ud800b"}
    assert content_type == JSON


# --- differential: awslambdaric's marshaller ---------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@settings(deadline=None)
@given(json_values)
def test_encoding_reads_back_like_awslambdaric(value):
    # GIVEN any JSON-able handler result (Decimals included)
    # WHEN both runtimes encode it
    ours, our_type = encode_result(value)
    theirs, their_type = LambdaMarshaller().marshal_response(value)

    # THEN both bodies read back to the same value, with the same content type
    assert our_type == their_type == "application/json"
    assert json.loads(ours, parse_float=decimal.Decimal) == json.loads(theirs, parse_float=decimal.Decimal)


@settings(deadline=None)
@given(json_values)
def test_decode_of_encode_round_trips(value):
    # GIVEN any JSON-able value without Decimals
    plain = json.loads(json.dumps(value, default=float))
    # WHEN it is encoded as a result and decoded as an event
    # THEN it comes back equal
    assert decode_event(encode_result(plain)[0], JSON) == plain


# --- large events: the msgspec path gives exactly what json.loads gives -------------------------------------------
def _large(value_json: bytes) -> bytes:
    """`value_json` inside an event big enough for the fast path."""
    return b'{"pad": "' + b"x" * FAST_DECODE_MIN_BYTES + b'", "value": ' + value_json + b"}"


def _stdlib(body: bytes) -> tuple[str, str]:
    """json.loads' answer, as comparable text: repr tells 1 from 1.0 and True, keeps NaN and -0.0."""
    try:
        return "value", repr(json.loads(body))
    except (ValueError, RecursionError) as exc:
        return "error", f"Unable to unmarshal input: {exc}"


def _ours(body: bytes) -> tuple[str, str]:
    try:
        return "value", repr(decode_event(body, JSON))
    except UnmarshalError as exc:
        return "error", str(exc)


@settings(deadline=None)
@given(json_values)
def test_a_large_event_decodes_to_exactly_what_json_loads_returns(value):
    # GIVEN any JSON value inside an event above the fast-path threshold
    body = _large(json.dumps(value, default=str).encode())
    # WHEN it is decoded
    # THEN the objects are those json.loads builds (same types, same values)
    assert _ours(body) == _stdlib(body)
    assert codec._fast_decode is not None  # and the fast path was the one taken


@pytest.mark.parametrize("value_json", [
    b"NaN", b"-Infinity", b"1e400", b"-1.8e308", b'"\\ud800"', b'"\\udc00x"', b"123456789012345678901234567890",
    b"-0.0", b"[" * 3000 + b"]" * 3000, b"[1,]", b'"\xff"', b"tru",
])  # fmt: skip
def test_what_msgspec_refuses_gets_json_loads_answer_or_error(value_json):
    # GIVEN a large event that msgspec cannot (or must not) decode: non-finite numbers, lone surrogates, deep
    # nesting, malformed JSON, invalid UTF-8
    body = _large(value_json)
    # WHEN it is decoded, THEN the value or the error is the stdlib's, as with AWS's runtime
    assert _ours(body) == _stdlib(body)


@pytest.mark.parametrize("body", [b"\xef\xbb\xbf" + _large(b"1"), _large(b'"\xc3\xa9"').decode().encode("utf-16")])
def test_a_large_event_with_a_bom_or_in_utf16_decodes_as_json_loads_does(body):
    assert _ours(body) == _stdlib(body)


def test_small_events_never_import_msgspec():
    # GIVEN a fresh interpreter decoding only events below the threshold
    code = ("import sys; from runtime.codec import decode_event, FAST_DECODE_MIN_BYTES as n;"
            "decode_event(b'{\"a\": \"' + b'x' * (n - 20) + b'\"}', None); print('msgspec' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # THEN msgspec was not imported (its import would be cold-start time for nothing)
    assert out.strip() == "False"
