"""`RuntimeConfig`: everything the runtime core needs from the environment, read once at init.

Takes a mapping (never `os.environ` itself) so tests pass plain dicts. Stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

_TRUE = ("1", "true", "yes", "on")


class ConfigError(Exception):
    """The environment cannot describe a runnable function (e.g. no Runtime API address)."""


class RuntimeConfig(NamedTuple):
    api_address: str
    handler: str
    task_root: str = "/var/task"
    function_name: str = ""
    function_version: str = "$LATEST"
    memory_limit_in_mb: str | None = None
    log_group_name: str | None = None
    log_stream_name: str | None = None
    region: str | None = None
    initialization_type: str = "on-demand"
    max_concurrency: int = 1
    shutdown_extension: bool = False  # FLIGHTREC_SHUTDOWN_EXTENSION=1: register so that SIGTERM arrives at shutdown

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeConfig:
        address = env.get("AWS_LAMBDA_RUNTIME_API", "").strip()
        if not address:
            raise ConfigError("AWS_LAMBDA_RUNTIME_API is not set: this program must be started by Lambda "
                              "(or by `flightrec emulator`)")
        raw_concurrency = env.get("AWS_LAMBDA_MAX_CONCURRENCY", "").strip() or "1"
        try:
            concurrency = int(raw_concurrency)
        except ValueError:
            concurrency = 0
        if concurrency < 1:
            raise ConfigError(f"AWS_LAMBDA_MAX_CONCURRENCY must be a positive integer, got {raw_concurrency!r}")
        return cls(
            api_address=address,
            handler=env.get("_HANDLER", "").strip(),
            task_root=os.path.abspath(env.get("LAMBDA_TASK_ROOT") or "/var/task"),
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION") or "$LATEST",
            memory_limit_in_mb=env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            log_group_name=env.get("AWS_LAMBDA_LOG_GROUP_NAME"),
            log_stream_name=env.get("AWS_LAMBDA_LOG_STREAM_NAME"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            initialization_type=env.get("AWS_LAMBDA_INITIALIZATION_TYPE") or "on-demand",
            max_concurrency=concurrency,
            shutdown_extension=env.get("FLIGHTREC_SHUTDOWN_EXTENSION", "").strip().lower() in _TRUE,
        )
