"""Who runs: each contestant is one runtime process, started fresh for every measured run, with the same
Lambda environment (`lambda_environment`) except for the variables that define the contestant itself.

The environment is built from scratch rather than inherited: variables such as PYTHONDONTWRITEBYTECODE or
PYTHONUNBUFFERED in the caller's shell would change one runtime's cost (no bytecode cache: every start compiles)
and not another's.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_NAME = "bench-echo"
ECHO = "bench.handlers.echo"
ECHO_LOG10 = "bench.handlers.echo_log10"


@dataclass(frozen=True)
class Contestant:
    key: str
    label: str
    handler: str
    kind: str  # "ours" | "awslambdaric" | "floor" | "raw" (the floor without JSON or handler: the ceiling client)
    baseline: str | None = None  # the contestant whose figures from the same round this one is compared with
    everything_on: bool = False  # needs the peers (PostgreSQL, rsyslog, OTLP)
    log_lines: int = 0  # lines the handler logs per invocation (checked in the sanity pass)
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self, python: str = sys.executable) -> list[str]:
        if self.kind == "ours":
            return [python, str(ROOT / "bootstrap")]
        if self.kind == "awslambdaric":
            return [python, "-m", "awslambdaric", self.handler]
        if self.kind == "raw":
            return [python, "-m", "bench.floor", "--raw"]
        return [python, "-m", "bench.floor"]


CONTESTANTS: tuple[Contestant, ...] = (
    # Not a runtime: the leanest client there is, run in every round so the server's ceiling is measured under the
    # same conditions as the contestants (its cycle is what the server and the kernel's loopback TCP cost).
    Contestant("raw", "ceiling: raw-socket client, no JSON, no handler (bench/floor.py --raw)", ECHO, "raw"),
    Contestant("floor", "floor: minimal Python loop (bench/floor.py)", ECHO, "floor", baseline="ric"),
    Contestant("ric", "awslambdaric", ECHO, "awslambdaric"),
    Contestant("off", "ours, telemetry off", ECHO, "ours", baseline="ric"),
    Contestant("ric-log10", "awslambdaric, 10 log lines", ECHO_LOG10, "awslambdaric", baseline="ric", log_lines=10),
    Contestant("off-log10", "ours, telemetry off, 10 log lines", ECHO_LOG10, "ours", baseline="ric-log10",
               log_lines=10),
    Contestant("on", "ours, everything on, 10 log lines", ECHO_LOG10, "ours", baseline="ric-log10",
               everything_on=True, log_lines=10),
)
BY_KEY = {c.key: c for c in CONTESTANTS}


def lambda_environment(runtime_api: str, handler: str, extra: dict[str, str]) -> dict[str, str]:
    """What Lambda gives every runtime (as our emulator does), plus JSON logs at INFO for all contestants alike.

    AWS_LAMBDA_LOG_LEVEL=INFO matters: without it awslambdaric leaves the root logger at WARNING and would drop
    the handler's INFO lines, which our runtime writes.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback home directory
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env
