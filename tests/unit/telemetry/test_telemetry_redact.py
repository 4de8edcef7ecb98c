"""Specification of `telemetry.redact`: secrets never reach a sink, and event summaries have a bounded size."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from telemetry.config import DEFAULT_REDACT_KEYS
from telemetry.redact import PARSE_LIMIT_BYTES, REDACTED, Redactor, summarise_event

REDACTOR = Redactor(DEFAULT_REDACT_KEYS)


def test_secret_keys_are_redacted_at_any_depth_including_dicts_in_lists():
    # GIVEN an event with secrets at the top, nested in objects, and inside objects in lists
    event = {
        "user": "bob",
        "password": "hunter2",
        "db": {"host": "db1", "db_password": "pw-1", "options": {"session_token": "tok-1"}},
        "headers": [{"name": "x"}, {"Authorization": "Bearer abc"}, [{"API_KEY": "k-1"}]],
        "count": 3,
    }

    # WHEN it is redacted
    redacted = REDACTOR.value(event)

    # THEN every secret value is replaced and everything else is kept as it was
    assert redacted == {
        "user": "bob",
        "password": REDACTED,
        "db": {"host": "db1", "db_password": REDACTED, "options": {"session_token": REDACTED}},
        "headers": [{"name": "x"}, {"Authorization": REDACTED}, [{"API_KEY": REDACTED}]],
        "count": 3,
    }
    # AND the input is not modified
    assert event["password"] == "hunter2"


def test_a_secret_key_hides_its_whole_value_even_a_container():
    # GIVEN a secret key holding an object
    redacted = REDACTOR.value({"credentials": {"user": "bob", "pin": "1234"}})

    # THEN the whole object is hidden
    assert redacted == {"credentials": REDACTED}


def test_key_matching_is_case_insensitive_both_ways():
    # GIVEN a redactor configured with mixed-case words
    redactor = Redactor(["PassWord", "Card"])

    # WHEN keys spelled in any case contain one of them
    redacted = redactor.value({"USER_PASSWORD": "a", "creditcard": "b", "Cardholder": "c", "name": "d"})

    # THEN they are redacted, and other keys are not
    assert redacted == {"USER_PASSWORD": REDACTED, "creditcard": REDACTED, "Cardholder": REDACTED, "name": "d"}


def test_nesting_beyond_the_depth_limit_is_cut_rather_than_walked():
    # GIVEN an absurdly deep event
    event: object = {"password": "deep-secret"}
    for _ in range(100):
        event = {"a": [event]}

    # WHEN it is redacted
    text = json.dumps(REDACTOR.value(event))

    # THEN the walk stops and the secret is not shown
    assert "[TOO DEEP]" in text
    assert "deep-secret" not in text


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("login failed: password=hunter2 for bob", "hunter2", "login failed: password="),
        ("PASSWORD = hunter2", "hunter2", "PASSWORD = "),
        ("Authorization: Bearer eyJhbGciOi.abc-def", "eyJhbGciOi", "Authorization: "),
        ("authorization: basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "authorization: "),
        ('payload {"token": "tok-123", "n": 1}', "tok-123", '"n": 1'),
        ("payload {'api_key': 'k 1 2'}", "k 1 2", "payload {"),
        ("GET /x?api_key=k-42&page=2", "k-42", "&page=2"),
        ("cannot connect to postgresql://writer:s3cr3t@db.internal:5432/logs", "s3cr3t", "@db.internal:5432/logs"),
        ("redis://:only-pw@cache:6379", "only-pw", "@cache:6379"),
    ],
)
def test_secrets_in_free_text_are_redacted(text, secret, kept):
    # GIVEN free text (an exception message, a URL) with a secret in it
    # WHEN it is redacted
    redacted = REDACTOR.text(text)

    # THEN the secret is gone, a marker is in its place, and the surrounding text is kept
    assert secret not in redacted
    assert REDACTED in redacted
    assert kept in redacted


def test_text_without_secrets_is_unchanged():
    text = "order o-1 placed by bob (3 items, total=12.50)"
    assert REDACTOR.text(text) == text


def test_a_redactor_with_no_words_still_hides_url_passwords():
    # GIVEN a redactor configured with no key words
    redactor = Redactor([])

    # THEN `key=value` is left alone, but a URL's password is still hidden
    assert redactor.text("password=x") == "password=x"
    assert redactor.text("amqp://u:pw@mq") == f"amqp://u:{REDACTED}@mq"
    assert redactor.value({"password": "x"}) == {"password": "x"}


# -- the property: a secret value never appears in a summary ------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=4,
)
_affix = st.text(alphabet=string.ascii_letters + string.digits + "_-", max_size=5)
_secret_keys = st.builds(
    lambda prefix, word, suffix, case: case(prefix + word + suffix),
    _affix, st.sampled_from(DEFAULT_REDACT_KEYS), _affix, st.sampled_from([str, str.upper, str.title, str.swapcase]),
)


_SLOT = object()  # where the secret string goes, so the same document can be built with and without it


def _fill(value: object, secret: str) -> object:
    if value is _SLOT:
        return secret
    if isinstance(value, dict):
        return {k: _fill(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, secret) for v in value]
    return value


def _embed(pair: dict[str, object]) -> st.SearchStrategy[object]:
    """The secret pair somewhere in a JSON document: at the top, or in objects inside objects and lists."""
    return st.recursive(
        st.just(pair),
        lambda inner: st.one_of(
            st.builds(lambda others, item, at: [*others[:at], item, *others[at:]],
                      st.lists(_json_values, max_size=2), inner, st.integers(0, 2)),
            st.builds(lambda others, key, item: {**others, key: item},
                      st.dictionaries(st.text(max_size=6), _json_values, max_size=2), st.text(max_size=6), inner),
        ),
        max_leaves=4,
    )


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, object]:
    """A JSON object with one secret key somewhere in it, whose value is `_SLOT`."""
    found = draw(_embed({draw(_secret_keys): _SLOT}))
    document = found if isinstance(found, dict) else {"data": found}
    return {**draw(st.dictionaries(st.text(max_size=6), _json_values, max_size=2)), **document}


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(), st.text(min_size=1, max_size=40), st.integers(min_value=16, max_value=4096))
def test_property_a_secret_value_never_appears_in_the_summary(document, secret, max_bytes):
    # GIVEN any JSON object with a secret key (somewhere) holding any string
    body = json.dumps(_fill(document, secret)).encode()
    # (that string must not also occur legitimately: in the rest of the document or in the summary's vocabulary)
    without = json.dumps(_fill(document, ""))
    vocabulary = f"{without} {json.dumps(_fill(document, ''), ensure_ascii=False)} {len(body)} {REDACTED} {{}}[]:,"
    vocabulary += " event_bytes event_truncated event_preview true"
    assume(secret not in vocabulary and json.dumps(secret)[1:-1] not in vocabulary)

    # WHEN the start record's event summary is built, under any size cap
    summary = summarise_event(body, "application/json", REDACTOR, max_bytes)

    # THEN the secret appears nowhere in it, neither raw nor JSON-escaped
    assert secret not in json.dumps(summary, ensure_ascii=False)
    assert json.dumps(secret)[1:-1] not in json.dumps(summary)


# -- summaries -----------------------------------------------------------------------------------------------------

def test_a_small_event_is_shown_redacted():
    # GIVEN a small JSON event with a password
    body = b'{"user": "bob", "password": "hunter2"}'

    # WHEN it is summarised
    summary = summarise_event(body, "application/json", REDACTOR, 2048)

    # THEN the summary has the size and the redacted event
    assert summary == {"event_bytes": len(body), "event": {"user": "bob", "password": REDACTED}}


@pytest.mark.parametrize("max_bytes", [16, 100, 1000])
def test_an_event_over_the_cap_becomes_a_truncated_preview_within_the_cap(max_bytes):
    # GIVEN an event larger than the cap, with multi-byte characters and a secret
    body = json.dumps({"password": "hunter2", "notes": "€ü漢" * 2000}, ensure_ascii=False).encode()

    # WHEN it is summarised
    summary = summarise_event(body, "application/json; charset=utf-8", REDACTOR, max_bytes)

    # THEN it is flagged truncated, and the preview is valid text of at most `max_bytes` UTF-8 bytes
    assert summary["event_bytes"] == len(body)
    assert summary["event_truncated"] is True
    assert "event" not in summary
    assert len(summary["event_preview"].encode("utf-8")) <= max_bytes
    assert len(summary["event_preview"].encode("utf-8")) >= max_bytes - 3  # cut at most one character short
    assert "hunter2" not in json.dumps(summary)
    # AND the preview is the start of the redacted event
    full = json.dumps(REDACTOR.value(json.loads(body)), ensure_ascii=False)
    assert full.startswith(summary["event_preview"])


def test_a_huge_event_is_summarised_by_size_only():
    # GIVEN an event larger than the parse limit
    body = json.dumps({"password": "hunter2", "blob": "x" * PARSE_LIMIT_BYTES}).encode()
    assert len(body) > PARSE_LIMIT_BYTES

    # WHEN it is summarised
    summary = summarise_event(body, "application/json", REDACTOR, 2048)

    # THEN only its size is recorded (it is not parsed at all)
    assert summary == {"event_bytes": len(body), "event_truncated": True}


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "application/xml; charset=utf-8"])
def test_a_non_json_event_is_described_not_shown(content_type):
    # GIVEN a non-JSON event that contains a secret
    body = b"password=hunter2"

    # WHEN it is summarised
    summary = summarise_event(body, content_type, REDACTOR, 2048)

    # THEN the summary has its size and content type only
    assert summary == {"event_bytes": len(body), "event_content_type": content_type}


def test_a_missing_content_type_is_treated_as_json():
    assert summarise_event(b'{"a": 1}', None, REDACTOR, 2048) == {"event_bytes": 8, "event": {"a": 1}}


@pytest.mark.parametrize("body", [b'{"password": "hunter2"', b"not json at all", b"\xff\xfe", b"[" * 100_000])
def test_an_invalid_json_event_is_flagged_unparsable_and_not_shown(body):
    # GIVEN a body declared JSON that is not (or nests too deep to parse)
    # WHEN it is summarised
    summary = summarise_event(body, "application/json", REDACTOR, 2048)

    # THEN the summary says so, with the size only
    assert summary == {"event_bytes": len(body), "event_unparsable": True}


# -- the shortcut for large events without secrets: the same summary, computed with less work -------------------
def _reference_summary(body: bytes, max_bytes: int) -> dict[str, object]:
    """The summary as defined: the whole document redacted, re-encoded, shown whole or cut at `max_bytes`."""
    redacted = REDACTOR.value(json.loads(body))
    encoded = json.dumps(redacted, ensure_ascii=False, default=str).encode()
    if len(encoded) <= max_bytes:
        return {"event_bytes": len(body), "event": redacted}
    preview = encoded[:max_bytes].decode("utf-8", "ignore")
    return {"event_bytes": len(body), "event_truncated": True, "event_preview": preview}


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json_values, _documents()), st.integers(min_value=16, max_value=600),
       st.sampled_from([0, 300, 9000]))  # fmt: skip
def test_property_any_event_gets_the_summary_its_definition_gives(document, max_bytes, padding):
    # GIVEN any JSON document, with or without secret keys, ASCII or not, small or (padded) large
    body = json.dumps({"doc": _fill(document, "s3cr3t"), "pad": "p" * padding}).encode()
    # WHEN it is summarised (large, secret-free, ASCII events take the shortcut)
    # THEN the summary is exactly the one the definition gives
    assert summarise_event(body, "application/json", REDACTOR, max_bytes) == _reference_summary(body, max_bytes)


def test_a_large_event_with_a_secret_deep_inside_is_still_redacted():
    # GIVEN a large ASCII event whose only secret sits deep in a list, near its end
    body = json.dumps({"records": [{"n": i} for i in range(2000)] + [{"meta": {"ApiKey": "k-123"}}]}).encode()
    # WHEN it is summarised with a cap large enough to show the whole event
    summary = summarise_event(body, "application/json", REDACTOR, len(body) * 2)
    # THEN the secret is redacted (the shortcut is not taken)
    assert summary["event"]["records"][-1] == {"meta": {"ApiKey": REDACTED}}


def test_is_secret_remembers_a_bounded_number_of_keys():
    redactor = Redactor(DEFAULT_REDACT_KEYS)
    # GIVEN more distinct keys than the memo holds (an attacker's event with ever-new keys)
    verdicts = [redactor.is_secret(f"key-{n}") for n in range(10_000)] + [redactor.is_secret("X-Session-Id")]
    # THEN the answers are right and the memo stopped growing at its bound
    assert verdicts == [False] * 10_000 + [True]
    assert len(redactor._verdicts) <= 4096
