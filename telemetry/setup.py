"""`install(cfg)`: wire the pipeline, the invocation middleware and the flush, and hand them to `bootstrap`.

Imports: `telemetry.*`, `runtime.model`, `runtime.dispatch` (types only).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from runtime.dispatch import Failure, Middleware, Next, Outcome
from runtime.model import ErrorReport, Invocation
from telemetry.config import TelemetryConfig

log = logging.getLogger("flightrec.telemetry")


@dataclass(frozen=True, slots=True)
class Telemetry:
    middlewares: tuple[Middleware, ...]
    after_each: Callable[[Invocation, Outcome], None]
    init_done: Callable[[], None]
    init_failed: Callable[[ErrorReport], None]
    fatal: Callable[[str], None]
    shutdown: Callable[[], None]


def _error_line(report: ErrorReport) -> str:
    return json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "ERROR",
                       **report.to_dict()}, ensure_ascii=False)


def install(cfg: TelemetryConfig, started_ns: int = 0) -> Telemetry:
    del started_ns
    handler = logging.StreamHandler(sys.stdout)
    logging.basicConfig(level=cfg.log_level, handlers=[handler])

    def errors_logged(inner: Next) -> Next:
        def dispatch(invocation: Invocation) -> Outcome:
            outcome = inner(invocation)
            if isinstance(outcome, Failure):
                print(_error_line(outcome.report), flush=True)
            return outcome

        return dispatch

    def init_failed(report: ErrorReport) -> None:
        print(_error_line(report), flush=True)

    def after_each(invocation: Invocation, outcome: Outcome) -> None:
        sys.stdout.flush()

    return Telemetry(
        middlewares=(errors_logged,),
        after_each=after_each,
        init_done=lambda: None,
        init_failed=init_failed,
        fatal=log.critical,
        shutdown=logging.shutdown,
    )
