"""Telemetry: the log pipeline (stdout, syslog, PostgreSQL), invocation context, spans and metrics.

Depends on `runtime`'s types only (`runtime.model`, the dispatch protocol); never on `handlers`.
"""
