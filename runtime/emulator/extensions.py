"""A minimal Extensions API registry: register, then long-poll for INVOKE and SHUTDOWN events.

Why: Lambda sends SIGTERM to the runtime at shutdown only when an extension is registered, and our runtime
offers an internal no-op extension for exactly that reason. The emulator needs just enough of the API to
let that registration happen and to deliver the SHUTDOWN event; logs and telemetry subscriptions are out of scope.

Allowed imports: stdlib.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

INVOKE = "INVOKE"
SHUTDOWN = "SHUTDOWN"


class UnknownExtensionError(KeyError):
    """The identifier was never registered, or belonged to a runtime that has since been replaced."""


@dataclass(slots=True)
class Extension:
    """One registered extension and its undelivered events."""

    identifier: str
    name: str
    events: frozenset[str]
    pending: deque[bytes] = field(default_factory=deque)


class ExtensionRegistry:
    """Registered extensions of the current runtime process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._extensions: dict[str, Extension] = {}
        self._closed = False

    def register(self, name: str, events: list[str]) -> str:
        """Register `name` for `events` and return its identifier."""
        with self._cond:
            identifier = str(uuid.uuid4())
            self._extensions[identifier] = Extension(identifier, name, frozenset(events))
            return identifier

    @property
    def any_registered(self) -> bool:
        """True when the runtime should get SIGTERM (not SIGKILL) at shutdown."""
        with self._cond:
            return bool(self._extensions)

    @property
    def names(self) -> list[str]:
        """Names of the registered extensions, in registration order."""
        with self._cond:
            return [ext.name for ext in self._extensions.values()]

    def publish(self, event_type: str, event: dict[str, Any]) -> None:
        """Queue `event` for every extension subscribed to `event_type`."""
        payload = json.dumps({"eventType": event_type, **event}).encode()
        with self._cond:
            for ext in self._extensions.values():
                if event_type in ext.events:
                    ext.pending.append(payload)
            self._cond.notify_all()

    def next_event(self, identifier: str) -> bytes | None:
        """Block until an event is queued for `identifier`; None when the registry closes or is reset."""
        with self._cond:
            if identifier not in self._extensions:
                raise UnknownExtensionError(identifier)
            while True:
                ext = self._extensions.get(identifier)
                if ext is None or (self._closed and not ext.pending):
                    return None
                if ext.pending:
                    return ext.pending.popleft()
                self._cond.wait()

    def reset(self) -> None:
        """Forget all registrations: their runtime process is gone; its long-polls give up."""
        with self._cond:
            self._extensions.clear()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop: deliver what is queued, then release every waiter."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
