"""The runtime's own threads never import a module for the first time while user code may be importing.

Why: on CPython 3.11 a module's lock is taken before its parent package is imported, so a background thread
importing `pkg.sub` while user code imports `pkg` can fail the user's import with `_DeadlockError` (seen in CI:
the shipper built its renderer, importing `msgspec.json`, while a handler imported `msgspec`). Renderer,
PostgreSQL driver and OTLP exporters are imported lazily, off the path to the first response, so the rule is
enforced by `runtime.usercode.USER_CODE`: the loop holds it while user code runs, background threads take it
for their first imports.

The spy below is a `sys.meta_path` finder, consulted only for modules not imported yet: every entry it records
from a thread other than the main one while user code runs is a background first import racing user code.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import emulator

SPY = """
    import logging, sys, threading, time

    USER_CODE = threading.Event()
    USER_THREAD = threading.main_thread()  # the thread running user code (a worker in concurrent mode)
    RACED = []  # (thread, module): first imports on the runtime's own threads while user code ran

    class Spy:
        def find_spec(self, name, path=None, target=None):
            if USER_CODE.is_set() and threading.current_thread() is not USER_THREAD:
                RACED.append((threading.current_thread().name, name))
            return None

    sys.meta_path.insert(0, Spy())
    log = logging.getLogger("spy")

    USER_CODE.set()  # importing this module is user code too
    log.info("imported")
    time.sleep(0.3)  # several flush intervals: a background cycle that would import gets its chance here
    USER_CODE.clear()

    def handler(event, context):
        global USER_THREAD
        USER_THREAD = threading.current_thread()
        USER_CODE.set()
        try:
            for i in range(3):
                log.info("working %d", i)
                time.sleep(event["sleep"] / 3)
        finally:
            USER_CODE.clear()
        return sorted(set(map(tuple, RACED)))
"""


@pytest.mark.parametrize("sinks", ["stdout", "postgres+otlp", "postgres+otlp, concurrent"])
def test_no_background_thread_imports_while_user_code_runs(task_root, sinks, request):
    # GIVEN a handler that spies on first imports, a short flush interval, and (second case) every lazy import
    # the runtime has: the renderer, psycopg on the first connection, the OTLP exporters
    root = task_root("spy", SPY)
    env = {"TELEMETRY_FLUSH_INTERVAL_MS": "20"}
    if sinks.startswith("postgres+otlp"):
        pg_db = request.getfixturevalue("pg_db")
        receiver = request.getfixturevalue("otlp_receiver")
        env |= {"LOGS_DATABASE_URL": pg_db, "LOGS_AUTO_MIGRATE": "1",
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}  # fmt: skip
    if sinks.endswith("concurrent"):  # workers run user code all the time: the imports happen before they start
        env["AWS_LAMBDA_MAX_CONCURRENCY"] = "2"
    with emulator("spy.handler", root, env=env, timeout_s=10.0) as emu:
        # WHEN the first invocation runs long enough for the flush interval and the exporters' warm-up to pass,
        # and a second one follows
        first = emu.invoke({"sleep": 0.6})
        second = emu.invoke({"sleep": 0.1})
    # THEN no background thread imported anything while the handler's module was imported or the handler ran
    assert first.ok and second.ok, (first.body, second.body)
    assert first.json() == [], first.json()
    assert second.json() == [], second.json()
    # AND the records still arrived (imports were deferred, not skipped)
    logged = [line for stream, line in emu.output if stream == "stdout" and '"logger":"spy"' in line]
    assert len(logged) == 1 + 3 + 3, logged
