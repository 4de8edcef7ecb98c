"""The two events every contestant gets: the console's hello-world test event and an SQS-like batch of ~100 KB.

Both are fixed (no randomness), so every round and every contestant decodes exactly the same bytes. The large one
is made of many small objects, as real batch events are, so decoding and encoding cost what they cost in practice.
"""

from __future__ import annotations

import json
from typing import Any

LARGE_TARGET_BYTES = 100 * 1024


def small() -> dict[str, Any]:
    """Lambda console's default test event."""
    return {"key1": "value1", "key2": "value2", "key3": "value3"}


def _record(i: int) -> dict[str, Any]:
    return {
        "messageId": f"{i:08x}-7c3a-4b1e-9f2d-{i * 7919:012x}",
        "receiptHandle": f"AQEB{i:06d}" + "Zm9vYmFyYmF6" * 6,
        "body": json.dumps({"order": i, "customer": f"c-{i % 97:03d}", "items": [i % 5, i % 7, i % 11],
                            "note": "deliver to the back door"}),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(1_700_000_000_000 + i),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(1_700_000_000_500 + i),
        },
        "messageAttributes": {},
        "md5OfBody": f"{(i * 2654435761) & 0xFFFFFFFF:08x}" * 4,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders",
        "awsRegion": "eu-west-1",
    }


def large(target_bytes: int = LARGE_TARGET_BYTES) -> dict[str, Any]:
    """An SQS batch of as many records as fit in `target_bytes` of compact JSON."""
    records: list[dict[str, Any]] = []
    size = len(encode({"Records": []}))
    while True:
        record = _record(len(records))
        extra = len(encode(record)) + (1 if records else 0)
        if size + extra > target_bytes:
            return {"Records": records}
        records.append(record)
        size += extra


def encode(event: Any) -> bytes:
    """Compact JSON, as Lambda's frontend passes events on."""
    return json.dumps(event, separators=(",", ":")).encode()


EVENTS = {"small": small, "large": large}
