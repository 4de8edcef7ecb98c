"""`install_otel(cfg, started_ns)`: the one entry point to OpenTelemetry spans and metrics.

Importing this module costs nothing: with no exporter and no OTLP endpoint configured, `install_otel` returns
None and not one `opentelemetry` module is imported (DECISIONS: no silent default collector, and a function
that exports nothing should not pay the SDK's imports at cold start). When something is configured it imports
the SDK (`telemetry.middleware`, `.tracing`, `.metrics`); exporter packages load later, at the first export.

A broken OpenTelemetry setup never fails the function: it is reported on stderr and `None` is returned.
Imports: stdlib, `telemetry.config`, `telemetry.diagnostics` (`telemetry.middleware` lazily).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from telemetry.config import TelemetryConfig
from telemetry.diagnostics import say

if TYPE_CHECKING:
    from telemetry.middleware import Otel


def install_otel(cfg: TelemetryConfig, started_ns: int = 0, *, diagnostics: TextIO | None = None) -> Otel | None:
    """Tracer and meter providers, the export thread, the global providers and propagator, and the requests
    instrumentation (switched on when `requests` is imported); None when nothing is configured.

    `started_ns` is `time.monotonic_ns()` at process start: it dates the init span and the init duration.
    """
    if not cfg.otel_enabled:
        return None
    out = diagnostics or sys.__stderr__ or sys.stderr
    try:
        from telemetry.middleware import Otel

        otel = Otel.create(cfg, started_ns, diagnostics=out)
        otel.install_globals()
    except Exception as exc:
        say(out, f"OpenTelemetry is off, its setup failed: {type(exc).__name__}: {exc}")
        return None
    return otel
