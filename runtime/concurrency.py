"""Lambda Managed Instances: serve `AWS_LAMBDA_MAX_CONCURRENCY` invocations at once in one process, on threads.

Why threads: handlers are ordinary synchronous functions that block (database drivers, `requests`, boto3), so an
event loop would have to hand each of them to a thread anyway; a thread per worker running the plain loop adds
no per-invocation cost at all and keeps one code path for one and for N invocations. The GIL costs nothing while
a handler waits on I/O, which is what concurrent invocations of one function mostly do (measured: see the
README's design notes). awslambdaric forks processes instead, which multiplies memory and makes a shared log
pipeline impossible.

Each worker has its own Runtime API connection (its own `RuntimeApiClient`) and runs `loop.run` with
`environ=None`: the process-wide `_X_AMZN_TRACE_ID` cannot belong to N invocations, so it is left alone and the
trace id travels on the context (`context.xray_trace_id`) and in the log context. Everything per invocation
lives in the worker's frames and in contextvars, which every thread has of its own.
Imports: stdlib, `runtime.loop`, `runtime.api_client`, `runtime.dispatch`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from runtime import loop
from runtime.api_client import RuntimeApiClient
from runtime.dispatch import Next


def run_concurrently(clients: Sequence[RuntimeApiClient], dispatch: Next, after_each: loop.AfterEach) -> int:
    """Run one loop per client, each on its own thread, until the first one ends.

    Returns the exit code of a loop whose handler exited the process (`sys.exit`); re-raises the
    `RuntimeApiError` (or any other exception) of a loop that failed. Either way the process ends, and with it
    the other workers: the platform replaces an environment whose runtime exited.
    """
    ended: queue.SimpleQueue[tuple[int, BaseException | None]] = queue.SimpleQueue()

    def work(client: RuntimeApiClient) -> None:
        try:
            ended.put((loop.run(client, dispatch, after_each, environ=None), None))
        except BaseException as exc:  # reported to the main thread, which decides the process's fate
            ended.put((1, exc))

    for number, client in enumerate(clients):
        threading.Thread(target=work, args=(client,), name=f"flightrec-worker-{number}", daemon=True).start()
    code, error = ended.get()  # interruptible by signals: SIGTERM still reaches the main thread's handler
    if error is not None:
        raise error
    return code
