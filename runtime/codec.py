"""Events in, results out, exactly as AWS's Python runtime marshals them for plain handlers.

Plain handlers get `json.loads` of the body (or the raw bytes when the content type is not JSON, as awslambdaric
does) and their result is JSON-encoded; `bytes` results pass through as `application/unknown`.
Events of `FAST_DECODE_MIN_BYTES` or more are parsed by msgspec (about 2.6x faster than `json.loads` on a
100 KB event, measured) into exactly the objects `json.loads` returns; whatever msgspec refuses (NaN, numbers
beyond a double, lone surrogates, a BOM, UTF-16, malformed input) goes to `json.loads`, so every event still
gets the stdlib's answer or error. msgspec is imported at the first large event, never for small ones.
Imports: stdlib, msgspec (lazy), `runtime.errors`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

from runtime.errors import MarshalError, UnmarshalError

JSON = "application/json"
BINARY = "application/unknown"


def is_json(content_type: str | None) -> bool:
    """Lambda always sends `application/json` for JSON events; a missing header means JSON too."""
    return content_type is None or content_type.split(";", 1)[0].strip().lower() == JSON


FAST_DECODE_MIN_BYTES = 8 * 1024  # below this the stdlib is as fast as anything (and costs no import)
_fast_decode: Callable[[bytes], Any] | None = None
_fast_errors: tuple[type[BaseException], ...] = ()


def _load_fast_decoder() -> Callable[[bytes], Any] | None:
    global _fast_decode, _fast_errors  # noqa: PLW0603 - built once, at the first large event
    try:
        import msgspec
    except ImportError:  # a stripped-down deployment: the stdlib does it all
        _fast_errors = (Exception,)
        return None
    _fast_errors = (msgspec.DecodeError, RecursionError)
    _fast_decode = msgspec.json.Decoder().decode
    return _fast_decode


def decode_event(body: bytes, content_type: str | None) -> Any:
    if not is_json(content_type):
        return body
    if len(body) >= FAST_DECODE_MIN_BYTES:
        fast = _fast_decode or (None if _fast_errors else _load_fast_decoder())
        if fast is not None:
            try:
                return fast(body)
            except _fast_errors:
                pass  # json.loads has the last word: the same value or error as AWS's runtime
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UnmarshalError(f"Unable to unmarshal input: {exc}") from None


# The stdlib encoder cannot print a Decimal verbatim, so it is written as a quoted, token-fenced string and the
# quotes and fences are removed afterwards. The token is random per process: event data cannot forge it.
_DECIMAL_FENCE = os.urandom(8).hex()
_DECIMAL_STRING = re.compile(f'"{_DECIMAL_FENCE}([-+0-9.eE]+){_DECIMAL_FENCE}"')


_fences_written = False  # set once a Decimal was fenced: until then no response is scanned for fences


def _default(obj: object) -> object:
    # awslambdaric writes Decimals as raw JSON numbers (DynamoDB hands them out); NaN becomes NaN.
    import decimal  # here, not at the top: ~1.5 ms of cold start that only Decimal-returning functions need

    if isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return math.nan
        if obj.is_infinite():
            return float(obj)
        global _fences_written  # noqa: PLW0603 - only ever goes from False to True, so threads cannot race on it
        _fences_written = True
        return f"{_DECIMAL_FENCE}{obj}{_DECIMAL_FENCE}"
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


#: The managed runtimes on which awslambdaric writes non-ASCII characters as UTF-8; everywhere else (Python 3.11,
#: custom runtimes) it escapes them (`ensure_ascii`), which is also ~20 % cheaper for the stdlib encoder.
UTF8_EXECUTION_ENVS = frozenset(f"AWS_Lambda_python3.{minor}" for minor in range(12, 16))


def json_encoder(execution_env: str | None) -> json.JSONEncoder:
    """The result encoder awslambdaric would use under `AWS_EXECUTION_ENV=execution_env`."""
    return json.JSONEncoder(ensure_ascii=execution_env not in UTF8_EXECUTION_ENVS, allow_nan=True, default=_default)


_encoder = json_encoder(os.environ.get("AWS_EXECUTION_ENV"))  # fixed for the process's life, as Lambda's is


def encode_result(result: Any) -> tuple[bytes, str]:
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), BINARY
    try:
        text = _encoder.encode(result)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MarshalError(f"Unable to marshal response: {exc}") from None
    if _fences_written and _DECIMAL_FENCE in text:
        text = _DECIMAL_STRING.sub(r"\1", text)
    try:
        return text.encode("utf-8"), JSON
    except UnicodeEncodeError:  # UTF-8 mode and lone surrogates: escape them as the ASCII output does
        return text.encode("utf-8", "backslashreplace"), JSON
