"""The closed vocabulary of runtime faults, and the one place exceptions become `ErrorReport`s.

Each fault class carries the `Runtime.X` error type that AWS's Python runtime uses for the same failure, so
existing alarms and dashboards keep matching. Imports: stdlib and `runtime.model`.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from types import TracebackType
from typing import ClassVar

from runtime.model import ErrorReport

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_NON_LETTERS = re.compile(r"[^A-Za-z]")
_VALID_HEADER_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
XRAY_CAUSE_MAX_BYTES = 64 * 1024 - 1


class RuntimeFault(Exception):
    """A failure the runtime itself diagnoses; `error_type` is both the body's errorType and the header."""

    error_type: ClassVar[str] = "Runtime.Unknown"

    def __init__(self, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stack_trace = stack_trace or []


class MalformedHandlerName(RuntimeFault):
    error_type = "Runtime.MalformedHandlerName"


class BuiltInModuleConflict(RuntimeFault):
    error_type = "Runtime.BuiltInModuleConflict"


class ImportModuleError(RuntimeFault):
    error_type = "Runtime.ImportModuleError"


class UserCodeSyntaxError(RuntimeFault):
    error_type = "Runtime.UserCodeSyntaxError"


class HandlerNotFound(RuntimeFault):
    error_type = "Runtime.HandlerNotFound"


class ModuleShadowed(RuntimeFault):
    """A user module named like one of the runtime's own packages would never be importable."""

    error_type = "Runtime.ModuleNameConflict"


class InvalidConfiguration(RuntimeFault):
    """An environment variable of the runtime has a value it cannot use; the message names the variable."""

    error_type = "Runtime.InvalidConfiguration"


class UnmarshalError(RuntimeFault):
    error_type = "Runtime.UnmarshalError"


class MarshalError(RuntimeFault):
    error_type = "Runtime.MarshalError"


class EventValidationError(RuntimeFault):
    """A typed handler's event did not match its declared type; the message names the field and why."""

    error_type = "Runtime.EventValidationError"


class LambdaContextUnmarshalError(RuntimeFault):
    error_type = "Runtime.LambdaContextUnmarshalError"


class ResponseSizeTooLarge(RuntimeFault):
    error_type = "Function.ResponseSizeTooLarge"


class ExitError(RuntimeFault):
    """The handler asked the process to exit (`sys.exit`); reported the way the platform reports exits."""

    error_type = "Runtime.ExitError"


class RuntimeApiError(Exception):
    """The Runtime API failed or is gone. Never caught by the loop: the process exits and is replaced."""


def header_error_type(name: str, prefix: str = "Function") -> str:
    """A value the platform accepts for the error-type header (anything else it records as `*.Unknown`)."""
    if _VALID_HEADER_TYPE.fullmatch(name):
        return name
    letters = _NON_LETTERS.sub("", name)
    candidate = f"{prefix}.{letters[:1].upper()}{letters[1:]}"
    # Nothing left, or a single letter (the platform's regex wants two or more): Unhandled.
    return candidate if _VALID_HEADER_TYPE.fullmatch(candidate) else f"{prefix}.Unhandled"


def _user_frames(tb: TracebackType | None) -> list[traceback.FrameSummary]:
    """Drop the leading frames that belong to the runtime, as awslambdaric drops its bootstrap.py frames."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if not frame.filename.startswith(_RUNTIME_DIR) and not frame.filename.endswith("/bootstrap"):
            return frames[i:]
    return []


def _xray_cause(error_type: str, message: str, frames: list[traceback.FrameSummary]) -> str:
    """The X-Ray cause header, kept under 64 KiB by dropping frames from the middle of the stack."""
    stack = [{"label": f.name, "path": f.filename, "line": f.lineno} for f in frames]
    while True:
        cause = {
            "working_directory": os.getcwd(),
            "exceptions": [{"message": message, "type": error_type, "stack": stack}],
            "paths": list(dict.fromkeys(f["path"] for f in stack)),
        }
        encoded = json.dumps(cause, ensure_ascii=True)
        if len(encoded) <= XRAY_CAUSE_MAX_BYTES:
            return encoded
        if len(stack) > 2:
            keep = max(len(stack) // 2, 2)
            stack = stack[: keep // 2] + stack[len(stack) - (keep - keep // 2) :]
        elif message:
            message = message[: len(message) // 2]
        else:
            return ""


def report_from(exc: BaseException, request_id: str = "") -> ErrorReport:
    """Turn any exception into the error awslambdaric would post for it.

    Faults keep their own type in both body and header; user exceptions send the bare class name in the body
    and `Function.<Name>` in the header.
    """
    if isinstance(exc, RuntimeFault):
        return ErrorReport(
            error_type=exc.error_type,
            error_message=exc.message,
            stack_trace=list(exc.stack_trace),
            request_id=request_id,
            header_type=exc.error_type,
            xray_cause=_xray_cause("LambdaValidationError", exc.message, []),
        )
    frames = _user_frames(exc.__traceback__)
    name = type(exc).__name__
    message = str(exc)
    return ErrorReport(
        error_type=name,
        error_message=message,
        stack_trace=traceback.format_list(frames),
        request_id=request_id,
        header_type=header_error_type(name),
        xray_cause=_xray_cause(name, message, frames),
    )
