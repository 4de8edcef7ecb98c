"""The Lambda runtime core: Runtime API client, handler loading, dispatch and the invocation loop.

Imports only the standard library (and msgspec lazily, for typed handlers); never `telemetry` or `handlers`.
"""
