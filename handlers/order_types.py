"""Request and response types of the typed example, importable by callers (the seed's Handler1Req idea)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LineItem:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class OrderRequest:
    order_id: str
    customer: str
    items: list[LineItem] = field(default_factory=list)
    coupon: str | None = None


@dataclass(frozen=True)
class OrderTotal:
    order_id: str
    total_cents: int
    item_count: int
