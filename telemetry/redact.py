"""Secrets never reach a sink: event summaries and exception messages are redacted before rendering.

A key is secret when its lower-cased name contains one of the configured words (`password` also catches
`db_password`); its value becomes `"[REDACTED]"`. Summaries are size-capped so a 6 MB event costs a bounded
amount of work and log space. Imports: stdlib.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

REDACTED = "[REDACTED]"
PARSE_LIMIT_BYTES = 256 * 1024  # events larger than this are summarised by size only: parsing them costs too much
_MAX_DEPTH = 32
# scheme://user:PASSWORD@host — greedy up to the last "@" of the token, so passwords holding "/" or "@" are covered
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/\s@]*:)\S+@")


class Redactor:
    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(k.lower() for k in keys if k)
        words = "|".join(re.escape(k) for k in self.keys) or r"(?!x)x"
        # `key=value`, `key: value` and `"key": "value"` inside free text (exception messages, URLs).
        self._in_text = re.compile(
            rf"""(?i)(["']?[\w.-]*(?:{words})[\w.-]*["']?\s*[:=]\s*)((?:Bearer|Basic|Digest|Token)\s+[^\s,;&]+|"[^"]*"|'[^']*'|[^\s,;&}}\]]+)"""
        )

    def is_secret(self, key: str) -> bool:
        lowered = key.lower()
        return any(word in lowered for word in self.keys)

    def value(self, value: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            return "[TOO DEEP]"
        if isinstance(value, dict):
            return {
                k: REDACTED if isinstance(k, str) and self.is_secret(k) else self.value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v, depth + 1) for v in value]
        return value

    def text(self, text: str) -> str:
        text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
        return self._in_text.sub(lambda m: m.group(1) + REDACTED, text) if self.keys else text


def summarise_event(body: bytes, content_type: str | None, redactor: Redactor, max_bytes: int) -> dict[str, Any]:
    """The `event` fields of a start record: the redacted event when it fits `max_bytes`, else a redacted preview."""
    summary: dict[str, Any] = {"event_bytes": len(body)}
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() != "application/json":
        summary["event_content_type"] = content_type
        return summary
    if len(body) > PARSE_LIMIT_BYTES:
        summary["event_truncated"] = True
        return summary
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        summary["event_unparsable"] = True
        return summary
    redacted = redactor.value(event)
    text = json.dumps(redacted, ensure_ascii=False, default=str)
    try:
        encoded = text.encode()
    except UnicodeEncodeError:  # a lone surrogate (`"\ud800"` is valid JSON, not UTF-8): shown as U+FFFD
        text = without_lone_surrogates(text)
        redacted, encoded = json.loads(text), text.encode()
    if len(encoded) <= max_bytes:
        summary["event"] = redacted
    else:
        summary["event_truncated"] = True
        summary["event_preview"] = encoded[:max_bytes].decode("utf-8", "ignore")
    return summary


def without_lone_surrogates(text: str) -> str:
    """`text` with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
