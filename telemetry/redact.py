"""Secrets never reach a sink: event summaries and exception messages are redacted before rendering.

A key is secret when its lower-cased name contains one of the configured words (`password` also catches
`db_password`); its value becomes `"[REDACTED]"`. Summaries are size-capped so a 6 MB event costs a bounded
amount of work and log space. A large event without a secret key costs little: it is not copied, and only as
much of it is re-encoded as the preview shows. Imports: stdlib, `runtime.codec` (to parse it as the handler's
event was parsed: msgspec for large events), `runtime.errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from runtime.codec import decode_event
from runtime.errors import UnmarshalError

REDACTED = "[REDACTED]"
PARSE_LIMIT_BYTES = 256 * 1024  # events larger than this are summarised by size only: parsing them costs too much
_MAX_DEPTH = 32
# scheme://user:PASSWORD@host — greedy up to the last "@" of the token, so passwords holding "/" or "@" are covered
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/\s@]*:)\S+@")
_KEY_CACHE_MAX = 4096  # distinct keys remembered by `is_secret`: events with ever-new keys cannot grow it further


class Redactor:
    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(k.lower() for k in keys if k)
        self._verdicts: dict[str, bool] = {}
        words = "|".join(re.escape(k) for k in self.keys) or r"(?!x)x"
        # `key=value`, `key: value` and `"key": "value"` inside free text (exception messages, URLs).
        self._in_text = re.compile(
            rf"""(?i)(["']?[\w.-]*(?:{words})[\w.-]*["']?\s*[:=]\s*)((?:Bearer|Basic|Digest|Token)\s+[^\s,;&]+|"[^"]*"|'[^']*'|[^\s,;&}}\]]+)"""
        )

    def is_secret(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            lowered = key.lower()
            verdict = any(word in lowered for word in self.keys)
            if len(self._verdicts) < _KEY_CACHE_MAX:
                self._verdicts[key] = verdict  # one dict write; threads racing on it store the same answer
        return verdict

    def changes(self, value: Any, depth: int = 0) -> bool:
        """Whether `value(value)` would differ from `value`: a secret key or a too-deep part somewhere. Reads the
        keys only; a document without either needs no redacted copy."""
        if depth > _MAX_DEPTH:
            return True
        if isinstance(value, dict):
            is_secret = self.is_secret
            for k, v in value.items():  # plain loops: any() over generators doubled the cost of a 100 KB walk
                if isinstance(k, str) and is_secret(k):
                    return True
                if isinstance(v, dict | list) and self.changes(v, depth + 1):
                    return True
        elif isinstance(value, list):
            for v in value:
                if isinstance(v, dict | list) and self.changes(v, depth + 1):
                    return True
        return False

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
        event = decode_event(body, None)
    except UnmarshalError:
        summary["event_unparsable"] = True
        return summary
    if len(body) > max_bytes and body.isascii() and b"\\u" not in body and not redactor.changes(event):
        return _preview_of(event, summary, max_bytes)  # nothing to redact: encode only what the preview shows
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


_LAZY_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def _preview_of(event: Any, summary: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """`summary` with the event, or with its first `max_bytes` of JSON text when it does not fit: encoded piece by
    piece (the stdlib's incremental encoder), stopping once past the cap. Only for ASCII bodies without `\\u`
    escapes: every decoded string is ASCII then (characters and UTF-8 bytes are the same count, and no lone
    surrogate can be in it)."""
    pieces: list[str] = []
    size = 0
    for piece in _LAZY_ENCODER.iterencode(event):
        pieces.append(piece)
        size += len(piece)
        if size > max_bytes:
            summary["event_truncated"] = True
            summary["event_preview"] = "".join(pieces)[:max_bytes]
            return summary
    summary["event"] = event
    return summary


def without_lone_surrogates(text: str) -> str:
    """`text` with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
