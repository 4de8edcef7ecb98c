"""`runtime.concurrency.run_concurrently`: N loops on N threads, each on its own connection, the environment
untouched, and the first loop to end decides the process's fate."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from runtime.api_client import RuntimeApiClient
from runtime.concurrency import run_concurrently
from runtime.config import RuntimeConfig
from runtime.dispatch import make_dispatch
from runtime.errors import RuntimeApiError
from tests.fakes.sinks import wait_until
from tests.fakes.transport import ACCEPTED, FakeTransport, next_response

CONFIG = RuntimeConfig(api_address="127.0.0.1:9001", handler="x.handler")
N = 3


def test_each_worker_serves_on_its_own_connection_and_trace_ids_stay_out_of_the_environment(monkeypatch):
    # GIVEN N scripted connections with one invocation each, and a handler that needs all N in flight at once
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    barrier = threading.Barrier(N, timeout=5)
    seen: dict[str, tuple[str, str | None, str | None]] = {}

    def handler(event, context):
        barrier.wait()
        seen[context.aws_request_id] = (threading.current_thread().name, context.xray_trace_id,
                                        os.environ.get("_X_AMZN_TRACE_ID"))
        return {}

    transports = [FakeTransport([next_response(f"req-{i}", lambda_runtime_trace_id=f"Root=1-{i}"), ACCEPTED])
                  for i in range(N)]
    clients = [RuntimeApiClient(t) for t in transports]

    # WHEN they run (each script then ends: its connection is "lost")
    with pytest.raises(RuntimeApiError, match="script exhausted"):
        run_concurrently(clients, make_dispatch(handler, CONFIG), lambda inv, outcome: None)
    assert wait_until(lambda: len(seen) == N)  # the first lost connection ended the run; the others finish theirs

    # THEN every invocation ran on its own worker thread with its own trace id on the context, none in os.environ
    assert sorted(seen) == [f"req-{i}" for i in range(N)]
    assert len({thread for thread, _, _ in seen.values()}) == N
    assert all(xray == f"Root=1-{rid[-1]}" and env is None for rid, (_, xray, env) in seen.items())
    assert "_X_AMZN_TRACE_ID" not in os.environ


def test_a_handler_exit_ends_the_process_with_its_code():
    def handler(event, context):
        sys.exit(7)

    transport = FakeTransport([next_response("req-1"), ACCEPTED])
    code = run_concurrently([RuntimeApiClient(transport)], make_dispatch(handler, CONFIG), lambda i, o: None)
    assert code == 7
    assert transport.sent[1].headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.ExitError"
