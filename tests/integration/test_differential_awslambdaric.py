"""Drop-in proof: AWS's own `awslambdaric` and our bootstrap, under the same emulator, with the same handlers and
events, give the same answers — responses, content types and error bodies (request ids aside)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.integration.conftest import REPO, emulator

DIFF_HANDLERS = '''
import decimal

class Declined(Exception):
    pass

def values(event, context):
    return {"text": "héllo ✓", "n": 1, "f": 2.5, "none": None, "list": [1, "a", True], "dec": decimal.Decimal("1.10"),
            "event": event}

def as_bytes(event, context):
    return b"\\x00raw bytes"

def unserialisable(event, context):
    return {"s": {1, 2}}

def declined(event, context):
    raise Declined("card declined")

def nested_raise(event, context):
    def inner():
        raise KeyError("missing")
    inner()

def context_shape(event, context):
    return {"has": sorted(k for k in ("aws_request_id", "function_name", "function_version", "invoked_function_arn",
            "memory_limit_in_mb", "log_group_name", "log_stream_name", "identity", "client_context", "tenant_id")
            if hasattr(context, k)), "memory": context.memory_limit_in_mb, "tenant": context.tenant_id,
            "custom": context.client_context.custom if context.client_context else None}
'''

CASES = [
    ("handlers.echo.handler", b'{"a": [1, 2, {"b": null}], "u": "\\u00e9"}', {}),
    ("handlers.echo.handler", b'"just a string"', {}),
    ("handlers.echo.handler", b"{not json", {}),
    ("handlers.hello.handler", b'{"name": "Ada"}', {}),
    ("handlers.raises.handler", b'{"kind": "value", "value": 3}', {}),
    ("handlers.raises.handler", b"{}", {}),
    ("diff.values", b'{"x": 1}', {}),
    ("diff.as_bytes", b"{}", {}),
    ("diff.unserialisable", b"{}", {}),
    ("diff.declined", b"{}", {}),
    ("diff.nested_raise", b"{}", {}),
    ("diff.context_shape", b"{}", {"tenant_id": "t-1", "client_context": {"custom": {"k": "v"}}}),
]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("diff-task")
    (root / "diff.py").write_text(DIFF_HANDLERS)
    return root


def _run(command, handler, task, event, kwargs):
    root = REPO if handler.startswith("handlers.") else task
    with emulator(handler, root, command=command, function_name="diff") as emu:
        return emu.invoke(event, **kwargs)


def _comparable(result):
    """What must be equal: error flag, content type, and the body with this invocation's request id blanked."""
    if result.content_type != "application/json" and not result.function_error:
        return result.function_error, result.content_type, result.body
    body = json.loads(result.body.replace(result.request_id.encode(), b"<request id>"))
    if isinstance(body, dict) and body.get("errorType") == "Runtime.UnmarshalError":
        # awslambdaric parses with simplejson, we with the stdlib: the same error, worded by another parser
        body["errorMessage"] = body["errorMessage"].split(":", 1)[0]
    return result.function_error, result.content_type, body


@pytest.mark.parametrize(("handler", "event", "kwargs"), CASES, ids=[f"{h}-{i}" for i, (h, _, _) in enumerate(CASES)])
def test_same_answer_as_awslambdaric(task, handler, event, kwargs):
    ours = _run(None, handler, task, event, kwargs)
    theirs = _run([sys.executable, "-m", "awslambdaric", handler], handler, task, event, kwargs)
    assert _comparable(ours) == _comparable(theirs)


@pytest.mark.parametrize("handler", ["missing_module.handler", "diff.not_there", "nodot"])
def test_same_init_errors_as_awslambdaric(task, handler):
    ours = _run(None, handler, task, b"{}", {})
    theirs = _run([sys.executable, "-m", "awslambdaric", handler], handler, task, b"{}", {})
    assert ours.function_error == theirs.function_error == "Unhandled"
    assert ours.json()["errorType"] == theirs.json()["errorType"]
    assert ours.json()["errorMessage"] == theirs.json()["errorMessage"]
