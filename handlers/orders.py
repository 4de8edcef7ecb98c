"""A typed handler: the runtime decodes and validates the event into `OrderRequest` and encodes `OrderTotal`.

A bad event (a missing field, a string where a number belongs) never reaches this code: the invocation fails with
`Runtime.EventValidationError` naming the field, e.g. "Expected `int`, got `str` - at `$.items[0].quantity`".
"""

from __future__ import annotations

from handlers.order_types import OrderRequest, OrderTotal


def handler(event: OrderRequest, context) -> OrderTotal:
    total = sum(item.quantity * item.unit_price_cents for item in event.items)
    if event.coupon == "HALF":
        total //= 2
    return OrderTotal(order_id=event.order_id, total_cents=total, item_count=len(event.items))
