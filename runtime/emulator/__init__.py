"""A local AWS Lambda emulator: Runtime API, Extensions API (minimal) and an RIE-compatible invoke endpoint.

`Emulator` serves one function: it starts the runtime as a child process with Lambda's environment, hands it
invocations through the Runtime API, enforces the timeout, replaces a crashed runtime, and prints Lambda's
platform lines. `flightrec emulator` and `flightrec invoke` are built on it.

Allowed imports: stdlib and `runtime.emulator.*` only; never `telemetry` or `handlers`.
"""

from __future__ import annotations

from runtime.emulator.api import Emulator
from runtime.emulator.backend import PostRecord
from runtime.emulator.client import InvokeResult
from runtime.emulator.faults import FaultInjector

__all__ = ["Emulator", "FaultInjector", "InvokeResult", "PostRecord"]
