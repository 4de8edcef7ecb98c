"""Typed handlers: when the event parameter or the return value is annotated with a declared type, the event is
decoded and validated into that type and the result encoded from it.

Declared types are dataclasses, `TypedDict`s and `msgspec.Struct`s (and `list[...]`/`X | None` of them). msgspec
does the work: it decodes JSON straight into these types in one pass and names the bad field in its errors
(`Expected `int`, got `str` - at `$.age``). It is imported only when a typed handler is loaded, so plain
functions never pay for it. Everything is decided once, at init. Imports: stdlib, msgspec (lazy),
`runtime.codec`, `runtime.errors`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, NamedTuple

from runtime.codec import decode_event, encode_result, is_json
from runtime.errors import EventValidationError, MarshalError, UnmarshalError

Decode = Callable[[bytes, str | None], Any]
Encode = Callable[[Any], tuple[bytes, str]]


class Codec(NamedTuple):
    """How one handler's events are decoded and its results encoded; `event_type`/`result_type` for docs/tests."""

    decode: Decode
    encode: Encode
    event_type: Any = None
    result_type: Any = None


PLAIN = Codec(decode=decode_event, encode=encode_result)


def is_declared_type(tp: Any) -> bool:
    """True for the types the runtime validates: dataclasses, TypedDicts, msgspec Structs, and containers of them."""
    if isinstance(tp, type):
        if hasattr(tp, "__dataclass_fields__") or typing.is_typeddict(tp):  # dataclasses.is_dataclass, unimported
            return True
        if any(base.__module__.startswith("msgspec") and base.__name__ == "Struct" for base in tp.__mro__):
            return True
    return any(is_declared_type(arg) for arg in typing.get_args(tp))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _annotations(handler: Callable[..., Any]) -> tuple[Any, Any]:
    """The event parameter's and the return value's annotations, or `None` where there is none we can resolve.

    Handlers whose annotations cannot be resolved (forward references to names that are not importable) are
    treated as plain, so that existing functions keep working unchanged.
    """
    try:
        hints = typing.get_type_hints(handler)
        first = _first_parameter(handler)
    except (NameError, TypeError, ValueError, AttributeError):
        return None, None
    return hints.get(first) if first else None, hints.get("return")


def _first_parameter(handler: Callable[..., Any]) -> str | None:
    """The name of the parameter the event is passed to. A plain function's code object says it; only other
    callables (partials, methods, objects with `__call__`) pay for `inspect` (milliseconds of cold start)."""
    if isinstance(handler, types.FunctionType) and handler.__code__.co_argcount:
        return handler.__code__.co_varnames[0]  # positional parameters come first in co_varnames
    import inspect

    params = list(inspect.signature(handler).parameters.values())
    return params[0].name if params else None


def _event_decoder(tp: Any) -> Decode:
    import msgspec

    decoder = msgspec.json.Decoder(tp)
    name = _type_name(tp)

    def decode(body: bytes, content_type: str | None) -> Any:
        if not is_json(content_type):
            raise UnmarshalError(f"Unable to unmarshal input: a {name} event must be JSON, got {content_type}")
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise EventValidationError(f"Event is not a valid {name}: {exc}") from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise UnmarshalError(f"Unable to unmarshal input: {exc}") from None

    return decode


def _result_encoder(tp: Any) -> Encode:
    import msgspec

    encoder = msgspec.json.Encoder(decimal_format="number")
    name = _type_name(tp)
    checkable = isinstance(tp, type) and not typing.is_typeddict(tp)

    def encode(result: Any) -> tuple[bytes, str]:
        if isinstance(result, bytes | bytearray | memoryview):
            return encode_result(result)
        try:
            if checkable and not isinstance(result, tp):
                raise MarshalError(
                    f"Unable to marshal response: the handler declares {name} but returned "
                    f"{type(result).__name__}"
                )
            if not checkable:
                msgspec.convert(result, tp, strict=True)  # validates TypedDicts and containers
            return encoder.encode(result), "application/json"
        except (msgspec.ValidationError, TypeError, msgspec.EncodeError) as exc:
            raise MarshalError(f"Unable to marshal response: {exc}") from None

    return encode


def codec_for(handler: Callable[..., Any]) -> Codec:
    """Decide once, at init, whether `handler` is plain or typed and build its codec."""
    if isinstance(handler, types.FunctionType) and not handler.__annotations__:
        return PLAIN  # the common case, decided without `inspect` (whose import costs milliseconds of cold start)
    event_tp, result_tp = _annotations(handler)
    typed_event = event_tp is not None and is_declared_type(event_tp)
    typed_result = result_tp is not None and is_declared_type(result_tp)
    if not typed_event and not typed_result:
        return PLAIN
    return Codec(
        decode=_event_decoder(event_tp) if typed_event else decode_event,
        encode=_result_encoder(result_tp) if typed_result else encode_result,
        event_type=event_tp if typed_event else None,
        result_type=result_tp if typed_result else None,
    )
