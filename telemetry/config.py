"""`TelemetryConfig`: every telemetry setting, read once from an environment mapping at init.

Stdlib only. Each field documents its variable; the README's configuration table mirrors this file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass


class TelemetryConfigError(ValueError):
    """A telemetry variable has a value we cannot use; the message names the variable."""


_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
           "CRITICAL": logging.CRITICAL}


def _level(env: Mapping[str, str]) -> int:
    raw = env.get("AWS_LAMBDA_LOG_LEVEL", "").strip().upper()
    if not raw:
        return logging.INFO
    if raw not in _LEVELS:
        raise TelemetryConfigError(f"AWS_LAMBDA_LOG_LEVEL must be one of {sorted(_LEVELS)}, got {raw!r}")
    return _LEVELS[raw]


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    function_name: str = ""
    function_version: str = "$LATEST"
    log_level: int = logging.INFO
    log_format: str = "JSON"  # AWS_LAMBDA_LOG_FORMAT: JSON (default) or Text

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelemetryConfig:
        log_format = (env.get("AWS_LAMBDA_LOG_FORMAT") or "JSON").strip()
        if log_format.upper() not in ("JSON", "TEXT"):
            raise TelemetryConfigError(f"AWS_LAMBDA_LOG_FORMAT must be JSON or Text, got {log_format!r}")
        return cls(
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION") or "$LATEST",
            log_level=_level(env),
            log_format="JSON" if log_format.upper() == "JSON" else "Text",
        )
