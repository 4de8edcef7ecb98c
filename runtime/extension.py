"""An opt-in internal extension that registers for nothing, so that Lambda sends SIGTERM at shutdown.

Lambda signals the runtime before shutting an environment down only when at least one extension is registered
(AWS's Rust runtime offers the same trick). Registering must happen during init, before the first `/next`; the
extension then parks on `/extension/event/next` in a daemon thread, on its own connection, forever — it
subscribed to no events, so the call never returns. Imports: stdlib, `runtime.api_client`, `runtime.errors`.
"""

from __future__ import annotations

import json
import logging
import threading

from runtime.api_client import SocketTransport
from runtime.errors import RuntimeApiError

EXTENSION_NAME = "flightrec-shutdown"
_BASE = "/2020-01-01/extension"

log = logging.getLogger("flightrec.runtime")


def register_shutdown_extension(address: str) -> str:
    """Register and park the extension; returns its identifier. Raises `RuntimeApiError` if refused."""
    transport = SocketTransport(address)
    body = json.dumps({"events": []}).encode()
    response = transport.request(
        "POST", f"{_BASE}/register", (("Lambda-Extension-Name", EXTENSION_NAME), ("Content-Type", "application/json")),
        body,
    )
    identifier = response.headers.get("lambda-extension-identifier", "")
    if response.status != 200 or not identifier:
        transport.close()
        raise RuntimeApiError(
            f"registering the shutdown extension failed: HTTP {response.status} "
            f"{response.body[:200].decode('utf-8', 'replace')}"
        )

    def park() -> None:
        try:
            transport.request("GET", f"{_BASE}/event/next", (("Lambda-Extension-Identifier", identifier),))
        except RuntimeApiError:
            pass  # the environment is going away; nothing to do
        finally:
            transport.close()

    threading.Thread(target=park, name="flightrec-extension", daemon=True).start()
    return identifier
