"""Specification of `runtime.typed`: plain handlers stay plain; annotated ones get a validating codec."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from runtime.config import RuntimeConfig
from runtime.dispatch import Failure, Success, make_dispatch
from runtime.errors import EventValidationError, MarshalError, UnmarshalError
from runtime.model import Invocation
from runtime.typed import PLAIN, codec_for

CONFIG = RuntimeConfig(api_address="127.0.0.1:9001", handler="x.handler")

TYPES = """
from __future__ import annotations

import dataclasses
import decimal
from typing import Any, TypedDict

import msgspec


@dataclasses.dataclass
class Item:
    sku: str
    quantity: int


@dataclasses.dataclass
class Order:
    order_id: str
    items: list[Item]
    note: str | None = None


@dataclasses.dataclass
class Total:
    order_id: str
    cents: int
    price: decimal.Decimal | None = None


class Greeting(TypedDict):
    name: str
    times: int


class Point(msgspec.Struct):
    x: int
    y: int
"""


@pytest.fixture
def module(tmp_path, monkeypatch):
    """Write `typed_fixture_<n>` modules (sharing the TYPES above) into tmp_path and import them."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str):
        name = f"typed_fixture_{len(names)}"
        (tmp_path / f"{name}.py").write_text(TYPES + textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return importlib.import_module(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)


# --- plain handlers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "def handler(event, context):",
        "def handler(event: dict, context) -> dict:",
        "def handler(event: Any, context: Any) -> Any:",
        "def handler(event: dict[str, Any], context) -> list[int]:",
        "def handler(event: str | None, context) -> bytes:",
        "def handler(event: NotImportedAnywhere, context) -> AlsoMissing:  # noqa: F821",
        "def handler(*args, **kwargs):",
        "def handler():",
    ],
)
def test_plain_handlers_get_the_plain_codec(module, signature):
    # GIVEN a handler without declared (dataclass / TypedDict / Struct) types, or with unresolvable annotations
    mod = module(f"\n\n{signature}\n    return None\n")

    # WHEN its codec is decided
    # THEN it is the plain one: json.loads in, JSON out, exactly as for awslambdaric
    assert codec_for(mod.handler) is PLAIN


def test_plain_codec_for_builtins_and_callables():
    assert codec_for(print) is PLAIN
    assert codec_for(lambda event, context: event) is PLAIN


def test_types_are_decided_once(module):
    mod = module(
        """

        def handler(event: Order, context) -> Total:
            return Total(event.order_id, 0)
        """
    )
    codec = codec_for(mod.handler)
    assert codec.event_type is mod.Order
    assert codec.result_type is mod.Total


# --- typed events ------------------------------------------------------------------------------------------------

ORDER_HANDLER = """

def handler(event: Order, context):
    return {"type": type(event).__name__, "items": [type(i).__name__ for i in event.items]}
"""


def test_dataclass_event_is_decoded_into_the_type(module):
    # GIVEN a handler whose event is annotated with a dataclass
    mod = module(ORDER_HANDLER)
    codec = codec_for(mod.handler)

    # WHEN a matching event is decoded
    event = codec.decode(b'{"order_id": "o-1", "items": [{"sku": "A", "quantity": 2}]}', "application/json")

    # THEN the handler gets instances, nested ones included
    assert event == mod.Order(order_id="o-1", items=[mod.Item(sku="A", quantity=2)], note=None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"order_id": "o-1", "items": [{"sku": "A", "quantity": "2"}]}',
            "Event is not a valid Order: Expected `int`, got `str` - at `$.items[0].quantity`",
        ),
        (b'{"items": []}', "Event is not a valid Order: Object missing required field `order_id`"),
        (b'{"order_id": 5, "items": []}', "Event is not a valid Order: Expected `str`, got `int` - at `$.order_id`"),
        (b"[1, 2]", "Event is not a valid Order: Expected `object`, got `array`"),
    ],
)
def test_invalid_dataclass_event_names_the_field(module, body, message):
    # GIVEN a typed handler and an event that does not match its type
    codec = codec_for(module(ORDER_HANDLER).handler)

    # WHEN it is decoded
    # THEN EventValidationError names the field path and the reason
    with pytest.raises(EventValidationError) as err:
        codec.decode(body, "application/json")
    assert err.value.message == message
    assert err.value.error_type == "Runtime.EventValidationError"


def test_typed_event_malformed_json_is_an_unmarshal_error(module):
    codec = codec_for(module(ORDER_HANDLER).handler)
    with pytest.raises(UnmarshalError, match=r"^Unable to unmarshal input: "):
        codec.decode(b'{"order_id": ', "application/json")


def test_typed_event_must_be_json(module):
    codec = codec_for(module(ORDER_HANDLER).handler)
    with pytest.raises(
        UnmarshalError, match=r"^Unable to unmarshal input: a Order event must be JSON, got text/plain$"
    ):
        codec.decode(b"o-1", "text/plain")


def test_typeddict_event(module):
    # GIVEN a handler whose event is a TypedDict
    codec = codec_for(module("\n\ndef handler(event: Greeting, context):\n    return event\n").handler)

    # WHEN / THEN a valid event is a plain dict, an invalid one names the field
    assert codec.decode(b'{"name": "Zoe", "times": 2}', None) == {"name": "Zoe", "times": 2}
    with pytest.raises(
        EventValidationError, match=r"^Event is not a valid Greeting: Expected `int`, got `str` - at `\$.times`$"
    ):
        codec.decode(b'{"name": "Zoe", "times": "2"}', None)
    with pytest.raises(EventValidationError, match="missing required field `times`"):
        codec.decode(b'{"name": "Zoe"}', None)


def test_msgspec_struct_event(module):
    mod = module("\n\ndef handler(event: Point, context):\n    return event.x + event.y\n")
    codec = codec_for(mod.handler)
    assert codec.decode(b'{"x": 1, "y": 2}', "application/json") == mod.Point(1, 2)
    with pytest.raises(
        EventValidationError, match=r"^Event is not a valid Point: Expected `int`, got `float` - at `\$.y`$"
    ):
        codec.decode(b'{"x": 1, "y": 2.5}', "application/json")


def test_optional_and_list_of_declared_types(module):
    # GIVEN events annotated as `Item | None` and `list[Item]`
    mod = module(
        """

        def maybe(event: Item | None, context):
            return event

        def many(event: list[Item], context):
            return event
        """
    )

    # WHEN / THEN both are validated and decoded, errors still naming the path
    assert codec_for(mod.maybe).decode(b"null", None) is None
    assert codec_for(mod.many).decode(b'[{"sku": "A", "quantity": 1}]', None) == [mod.Item("A", 1)]
    with pytest.raises(EventValidationError, match=r"at `\$\[1\].sku`"):
        codec_for(mod.many).decode(b'[{"sku": "A", "quantity": 1}, {"sku": 2, "quantity": 1}]', None)


# --- typed results -----------------------------------------------------------------------------------------------

TOTAL_HANDLER = """

def handler(event, context) -> Total:
    return event
"""


def test_declared_result_is_encoded(module):
    # GIVEN a handler declaring a dataclass result
    mod = module(TOTAL_HANDLER)
    codec = codec_for(mod.handler)

    # WHEN its result is encoded
    body, content_type = codec.encode(mod.Total(order_id="o-1", cents=250))

    # THEN it is that dataclass as JSON
    assert content_type == "application/json"
    assert json.loads(body) == {"order_id": "o-1", "cents": 250, "price": None}


def test_declared_result_decimal_is_a_number(module):
    import decimal

    mod = module(TOTAL_HANDLER)
    body, _ = codec_for(mod.handler).encode(mod.Total("o-1", 1, decimal.Decimal("1.10")))
    assert b'"price":1.10' in body


@pytest.mark.parametrize("wrong", [{"order_id": "o-1", "cents": 250}, None, "o-1"])
def test_wrong_result_type_is_a_marshal_error(module, wrong):
    # GIVEN a handler declaring a dataclass result
    codec = codec_for(module(TOTAL_HANDLER).handler)

    # WHEN it returns something else
    # THEN MarshalError names what it declared and what it returned
    with pytest.raises(MarshalError) as err:
        codec.encode(wrong)
    assert err.value.message == (
        f"Unable to marshal response: the handler declares Total but returned {type(wrong).__name__}"
    )


def test_typeddict_result_is_validated(module):
    codec = codec_for(module("\n\ndef handler(event, context) -> Greeting:\n    return event\n").handler)
    assert json.loads(codec.encode({"name": "a", "times": 1})[0]) == {"name": "a", "times": 1}
    with pytest.raises(MarshalError, match=r"^Unable to marshal response: Expected `int`, got `str` - at `\$.times`$"):
        codec.encode({"name": "a", "times": "1"})


def test_list_result_is_validated(module):
    mod = module("\n\ndef handler(event, context) -> list[Total]:\n    return event\n")
    codec = codec_for(mod.handler)
    assert json.loads(codec.encode([mod.Total("o", 1)])[0]) == [{"order_id": "o", "cents": 1, "price": None}]
    with pytest.raises(MarshalError, match=r"^Unable to marshal response: "):
        codec.encode([mod.Total("o", 1), 42])


def test_bytes_result_of_a_typed_handler_passes_through(module):
    codec = codec_for(module(TOTAL_HANDLER).handler)
    assert codec.encode(b"\x00raw") == (b"\x00raw", "application/unknown")


def test_typed_event_with_untyped_result_encodes_plainly(module):
    codec = codec_for(module(ORDER_HANDLER).handler)
    assert codec.result_type is None
    assert codec.encode({"a": [1]}) == (b'{"a": [1]}', "application/json")
    with pytest.raises(MarshalError, match="Object of type set is not JSON serializable"):
        codec.encode({1, 2})


# --- the example typed handler, end to end -----------------------------------------------------------------------


@pytest.fixture
def orders_dispatch():
    from handlers import orders

    return make_dispatch(orders.handler, CONFIG)


def test_orders_handler_end_to_end(orders_dispatch):
    # GIVEN the example `handlers.orders.handler` and a valid order
    event = {
        "order_id": "o-7",
        "customer": "c-1",
        "items": [
            {"sku": "A", "quantity": 2, "unit_price_cents": 150},
            {"sku": "B", "quantity": 1, "unit_price_cents": 99},
        ],
        "coupon": "HALF",
    }

    # WHEN it is dispatched
    outcome = orders_dispatch(
        Invocation(request_id="r-1", body=json.dumps(event).encode(), content_type="application/json")
    )

    # THEN the result is the encoded OrderTotal
    assert isinstance(outcome, Success)
    assert outcome.content_type == "application/json"
    assert json.loads(outcome.body) == {"order_id": "o-7", "total_cents": 199, "item_count": 2}


def test_orders_handler_rejects_a_bad_event_naming_the_field(orders_dispatch):
    # GIVEN an order whose quantity is a string
    body = b'{"order_id": "o-7", "customer": "c", "items": [{"sku": "A", "quantity": "2", "unit_price_cents": 1}]}'

    # WHEN it is dispatched
    outcome = orders_dispatch(Invocation(request_id="r-2", body=body))

    # THEN the invocation fails with EventValidationError naming `$.items[0].quantity`, never reaching the handler
    assert isinstance(outcome, Failure)
    assert outcome.report.error_type == "Runtime.EventValidationError"
    assert outcome.report.header_type == "Runtime.EventValidationError"
    assert outcome.report.error_message == (
        "Event is not a valid OrderRequest: Expected `int`, got `str` - at `$.items[0].quantity`"
    )
    assert outcome.report.request_id == "r-2"
