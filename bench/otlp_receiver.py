"""`tests.peers.OtlpReceiver` in a process of its own, for the benchmark's "everything on" runs.

Why a process: the receiver is an `http.server` in a thread, and in the benchmark's process it would compete for
the GIL with the Runtime API server whose timestamps are the measurement. Here it only costs CPU, as a collector
on the same host would. It keeps counts instead of messages (20,000 invocations of spans would otherwise pile up).

Protocol on stdin/stdout: it prints its endpoint once ready; each `count` line is answered with one JSON line of
counts; end of input stops it.

    python -m bench.otlp_receiver
"""

from __future__ import annotations

import json
import select
import sys
from typing import Any

from tests.peers import OtlpReceiver


def _tally(requests: list[Any], counts: dict[str, int]) -> None:
    for request in requests:
        path = request.path.split("?", 1)[0]
        counts["requests"] += 1
        if path == "/v1/traces":
            counts["spans"] += sum(len(ss.spans) for rs in request.message.resource_spans for ss in rs.scope_spans)
        elif path == "/v1/metrics":
            counts["metric_exports"] += 1
        elif path == "/v1/logs":
            counts["logs"] += sum(len(sl.log_records) for rl in request.message.resource_logs
                                  for sl in rl.scope_logs)


def main() -> int:
    counts = {"requests": 0, "spans": 0, "metric_exports": 0, "logs": 0}
    with OtlpReceiver() as receiver:
        print(receiver.endpoint, flush=True)
        while True:
            readable, _, _ = select.select([sys.stdin], [], [], 0.5)
            taken = receiver.requests[:]  # list slicing and deletion are atomic under the GIL
            del receiver.requests[: len(taken)]
            _tally(taken, counts)
            if readable:
                line = sys.stdin.readline()
                if not line:
                    return 0
                print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    sys.exit(main())
