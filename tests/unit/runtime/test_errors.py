"""Specification of `runtime.errors`: error-type header values, error reports and the X-Ray cause header."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import textwrap
import traceback

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.config import RuntimeConfig
from runtime.dispatch import Failure, make_dispatch
from runtime.errors import (
    ImportModuleError,
    RuntimeFault,
    UserCodeSyntaxError,
    header_error_type,
    report_from,
)
from runtime.model import Invocation

VALID_HEADER = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
RUNTIME_DIR = os.path.dirname(os.path.abspath(sys.modules["runtime.errors"].__file__)) + os.sep
CONFIG = RuntimeConfig(api_address="127.0.0.1:9001", handler="user_errors.handler")
XRAY_LIMIT = 64 * 1024


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a module into tmp_path and import it; forgotten again after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return importlib.import_module(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)


# --- header_error_type -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Runtime.ImportModuleError", "Runtime.ImportModuleError"),
        ("Function.ResponseSizeTooLarge", "Function.ResponseSizeTooLarge"),
        ("ValueError", "Function.ValueError"),
        ("My_Error2", "Function.MyError"),
        ("lowercase_error", "Function.Lowercaseerror"),
        ("A", "Function.Unhandled"),
        ("_x1", "Function.Unhandled"),
        ("123", "Function.Unhandled"),
        ("", "Function.Unhandled"),
        ("Ошибка", "Function.Unhandled"),
    ],
)
def test_header_error_type(name, expected):
    # GIVEN an exception class name (or an already valid type)
    # WHEN it becomes the Lambda-Runtime-Function-Error-Type header value
    # THEN valid names are kept, anything but letters is removed, nothing left means Unhandled
    assert header_error_type(name) == expected


def test_header_error_type_prefix_for_runtime_errors():
    assert header_error_type("some error", prefix="Runtime") == "Runtime.Someerror"
    assert header_error_type("", prefix="Runtime") == "Runtime.Unhandled"


@given(st.text())
def test_header_error_type_always_passes_the_platform_validation(name):
    # GIVEN any text at all as a class name
    # WHEN it becomes the header value
    result = header_error_type(name)
    # THEN the platform's own validation regex accepts it (it would otherwise record Function.Unknown)
    assert VALID_HEADER.fullmatch(result), result


@given(st.sampled_from(["Runtime", "Function"]), st.from_regex(r"[A-Z][a-zA-Z]+", fullmatch=True))
def test_header_error_type_keeps_every_valid_value(prefix, rest):
    assert header_error_type(f"{prefix}.{rest}") == f"{prefix}.{rest}"


# --- report_from -------------------------------------------------------------------------------------------------


RAISING_MODULE = """
CAUGHT = []


class PaymentDeclined(Exception):
    pass


def handler(event, context):
    try:
        charge(event)
    except Exception as exc:
        CAUGHT.append(exc)
        raise


def charge(event):
    raise PaymentDeclined("card ending 4242 was declined")
"""


def _raised_through_dispatch(module):
    """Run the module's handler through the runtime's dispatch and return (the Failure, the exception)."""
    dispatch = make_dispatch(module.handler, CONFIG)
    outcome = dispatch(Invocation(request_id="req-7", body=b"{}"))
    assert isinstance(outcome, Failure)
    (exc,) = module.CAUGHT
    return outcome, exc


def test_report_from_user_exception_trims_runtime_frames(user_module):
    # GIVEN a user exception that propagated through a runtime frame (dispatch's core calls the handler)
    module = user_module("user_errors", RAISING_MODULE)
    outcome, exc = _raised_through_dispatch(module)
    frames = traceback.extract_tb(exc.__traceback__)
    assert frames[0].filename.startswith(RUNTIME_DIR)  # precondition: the outermost frame is the runtime's
    user_frames = [f for f in frames if not f.filename.startswith(RUNTIME_DIR)]
    assert [f.name for f in user_frames] == ["handler", "charge"]

    # WHEN it becomes a report
    report = report_from(exc, "req-7")

    # THEN the stack holds only the user's frames, formatted as awslambdaric formats them
    assert report.stack_trace == traceback.format_list(user_frames)
    assert report.stack_trace[0].startswith(f'  File "{module.__file__}", line ')
    # AND the body's errorType is the bare class name, the header the validated Function.<Name>
    assert report.error_type == "PaymentDeclined"
    assert report.header_type == "Function.PaymentDeclined"
    assert report.error_message == "card ending 4242 was declined"
    assert report.request_id == "req-7"
    # AND dispatch produced exactly this report for the request
    assert outcome.report == report


def test_report_from_user_exception_xray_cause_shape(user_module):
    # GIVEN a user exception raised through the runtime
    module = user_module("user_errors", RAISING_MODULE)
    _, exc = _raised_through_dispatch(module)
    user_frames = traceback.extract_tb(exc.__traceback__)[1:]

    # WHEN it becomes a report
    cause = json.loads(report_from(exc, "req-7").xray_cause)

    # THEN the X-Ray cause has awslambdaric's make_xray_fault shape, over the user's frames only
    assert list(cause) == ["working_directory", "exceptions", "paths"]
    assert cause["working_directory"] == os.getcwd()
    assert cause["exceptions"] == [
        {
            "message": "card ending 4242 was declined",
            "type": "PaymentDeclined",
            "stack": [{"label": f.name, "path": f.filename, "line": f.lineno} for f in user_frames],
        }
    ]
    assert cause["paths"] == [module.__file__]


def test_report_from_runtime_fault_keeps_its_type_and_trace():
    # GIVEN a fault the runtime diagnosed, with its own trace (as a syntax error has)
    fault = UserCodeSyntaxError("Syntax error in module 'app': invalid syntax", ['  File "app.py" Line 1\n    x y\n'])

    # WHEN it becomes a report
    report = report_from(fault, "req-1")

    # THEN its type is both the body's errorType and the header, and its trace is the fault's own
    assert report.error_type == "Runtime.UserCodeSyntaxError"
    assert report.header_type == "Runtime.UserCodeSyntaxError"
    assert report.error_message == "Syntax error in module 'app': invalid syntax"
    assert report.stack_trace == ['  File "app.py" Line 1\n    x y\n']
    assert report.request_id == "req-1"
    # AND the X-Ray cause uses the type awslambdaric forces for faults
    cause = json.loads(report.xray_cause)
    assert cause["exceptions"] == [
        {"message": "Syntax error in module 'app': invalid syntax", "type": "LambdaValidationError", "stack": []}
    ]


def test_fault_without_trace_reports_an_empty_stack():
    report = report_from(ImportModuleError("Unable to import module 'x': No module named 'x'"))
    assert report.stack_trace == []
    assert report.request_id == ""
    assert json.loads(report.to_json())["errorType"] == "Runtime.ImportModuleError"


def test_every_fault_type_is_a_valid_header_value():
    # GIVEN every fault class of the runtime
    def all_subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from all_subclasses(sub)

    # THEN each error type is one the platform accepts as-is
    for cls in all_subclasses(RuntimeFault):
        assert VALID_HEADER.fullmatch(cls.error_type), cls


def test_report_from_exception_without_traceback():
    # GIVEN an exception that was never raised (no traceback at all)
    report = report_from(KeyError("k"))
    # THEN the report is still complete
    assert report.error_type == "KeyError"
    assert report.error_message == "'k'"
    assert report.stack_trace == []
    assert report.header_type == "Function.KeyError"
    assert json.loads(report.xray_cause)["exceptions"][0]["stack"] == []


# --- the X-Ray cause stays under 64 KiB --------------------------------------------------------------------------

DEEP_MODULE = """
CAUGHT = []


def handler(event, context):
    try:
        recurse(event["depth"])
    except Exception as exc:
        CAUGHT.append(exc)
        raise


def recurse(n):
    if n == 0:
        raise RecursionError("bottom reached")
    return recurse(n - 1)
"""


@pytest.fixture
def deep_stack():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 6000))
    yield
    sys.setrecursionlimit(limit)


@pytest.mark.usefixtures("deep_stack")
def test_xray_cause_of_a_5000_deep_recursion_fits_by_dropping_middle_frames(user_module):
    # GIVEN an exception raised 5,000 frames deep in user code
    module = user_module("user_deep", DEEP_MODULE)
    dispatch = make_dispatch(module.handler, CONFIG)
    outcome = dispatch(Invocation(request_id="req-deep", body=b'{"depth": 5000}'))
    assert isinstance(outcome, Failure)
    user_frames = traceback.extract_tb(module.CAUGHT[0].__traceback__)[1:]
    assert len(user_frames) == 5002  # handler + 5,001 calls of recurse

    # WHEN its X-Ray cause is built
    raw = outcome.report.xray_cause

    # THEN it fits in 64 KiB and is still a valid cause
    assert 0 < len(raw.encode()) < XRAY_LIMIT
    stack = json.loads(raw)["exceptions"][0]["stack"]
    assert 2 <= len(stack) < len(user_frames)
    # AND frames were dropped from the middle: the entry point and the raising frame are kept
    as_xray = [{"label": f.name, "path": f.filename, "line": f.lineno} for f in user_frames]
    assert stack[0] == as_xray[0]
    assert stack[0]["label"] == "handler"
    assert stack[-1] == as_xray[-1]
    assert stack[-1]["line"] == user_frames[-1].lineno
    # AND the kept frames are a prefix and a suffix of the real stack, in order
    head = next(i for i, frame in enumerate(stack) if frame != as_xray[i])
    assert stack[head:] == as_xray[len(as_xray) - (len(stack) - head) :]
    # AND the body's stack is not trimmed (only the header has a size limit): it is format_list of every user
    # frame, which (as in awslambdaric) collapses the repeated recursion lines
    assert outcome.report.stack_trace == traceback.format_list(user_frames)
    assert "Previous line repeated" in "".join(outcome.report.stack_trace)


def test_xray_cause_of_a_giant_message_fits(user_module):
    # GIVEN a user exception with a 2 MB, non-ASCII message
    module = user_module(
        "user_giant",
        """
        def handler(event, context):
            raise ValueError("é" * 2_000_000)
        """,
    )
    outcome = make_dispatch(module.handler, CONFIG)(Invocation(request_id="req-big", body=b"{}"))
    assert isinstance(outcome, Failure)

    # WHEN its X-Ray cause is built
    raw = outcome.report.xray_cause

    # THEN it fits in 64 KiB, is ASCII (an HTTP header), and keeps the type, the frame and the message's start
    assert 0 < len(raw.encode()) < XRAY_LIMIT
    assert raw.isascii()
    (exc,) = json.loads(raw)["exceptions"]
    assert exc["type"] == "ValueError"
    assert [frame["label"] for frame in exc["stack"]] == ["handler"]
    assert exc["message"]
    assert set(exc["message"]) == {"é"}
    # AND the body keeps the whole message
    assert len(outcome.report.error_message) == 2_000_000
