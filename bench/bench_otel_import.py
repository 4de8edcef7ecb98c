"""What OpenTelemetry costs at cold start: module import times, and `./bootstrap` with OTel off and on.

    .venv/bin/python bench/bench_otel_import.py [--runs 5] [--warm 20] [--bootstrap PATH] [--json]

Import costs: each line imports its modules in a fresh interpreter (after importing the "on top of" modules, so
the figure is the increment), median of `--runs` after one warm-up run that fills the bytecode cache.

Bootstrap: a fake Runtime API (this process) times, from `Popen`, the first `GET /next` (init), the first
`POST /response` (first response) and the second `GET /next` (the whole cold cycle, flush included), then
`--warm` more invocations (median time to the response, and from the response to the next `/next`: the flush
that must happen before the freeze); it then answers 500 so that the runtime exits. OTel "on" points
OTEL_EXPORTER_OTLP_ENDPOINT at a local sink that answers 200 to every export. Two handlers: one that imports
nothing, one that imports `requests` (which switches the requests instrumentation on). Medians of `--runs`
processes. Numbers depend on the machine and its load: compare lines of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEXT = "/2018-06-01/runtime/invocation/next"

_BOOTSTRAP_HAS = "logging,telemetry.config,runtime.dispatch"
IMPORTS: list[tuple[str, str, str]] = [
    # (label, modules to time, modules imported first)
    ("opentelemetry API (trace)", "opentelemetry.trace", ""),
    ("SDK trace", "opentelemetry.sdk.trace", ""),
    ("SDK metrics, on top of SDK trace", "opentelemetry.sdk.metrics", "opentelemetry.sdk.trace"),
    ("OTLP/HTTP span+metric exporters, standalone",
     "opentelemetry.exporter.otlp.proto.http.trace_exporter,opentelemetry.exporter.otlp.proto.http.metric_exporter",
     ""),
    ("OTLP/HTTP span+metric exporters, on top of the SDK",
     "opentelemetry.exporter.otlp.proto.http.trace_exporter,opentelemetry.exporter.otlp.proto.http.metric_exporter",
     "opentelemetry.sdk.trace,opentelemetry.sdk.metrics"),
    ("requests", "requests", ""),
    ("requests instrumentation, standalone (includes requests)", "opentelemetry.instrumentation.requests", ""),
    ("requests instrumentation, on top of requests and the SDK", "opentelemetry.instrumentation.requests",
     "requests,opentelemetry.sdk.trace,opentelemetry.sdk.metrics"),
    # bootstrap has imported these before telemetry.setup runs: the figures below are the increments
    ("our OTel stack at init: telemetry.middleware (SDK + ours)", "telemetry.middleware", _BOOTSTRAP_HAS),
    ("telemetry.otel (all that setup.py imports when OTel is off)", "telemetry.otel", _BOOTSTRAP_HAS),
]

HANDLERS = {
    "plain": "def handler(event, context):\n    return {'ok': True}\n",
    "uses_requests": "import requests\n\ndef handler(event, context):\n    return {'ok': True}\n",
}


def import_ms(modules: str, first: str, runs: int) -> float:
    code = (
        "import time\n"
        + "".join(f"import {m}\n" for m in first.split(",") if m)
        + "t = time.perf_counter()\n"
        + "".join(f"import {m}\n" for m in modules.split(",") if m)
        + "print((time.perf_counter() - t) * 1000)\n"
    )
    samples = []
    for i in range(runs + 1):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        if i:  # the first run fills the bytecode cache
            samples.append(float(out.stdout.strip()))
    return statistics.median(samples)


class _Api:
    """A Runtime API serving `count` invocations, recording when each call arrived (perf_counter seconds)."""

    def __init__(self, count: int) -> None:
        self.nexts: list[float] = []
        self.responses: list[float] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else 40 ms delayed-ACK stalls dominate every figure

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                api.nexts.append(time.perf_counter())
                n = len(api.nexts)
                if n > count:
                    self._reply(500, b'{"errorType":"Bench.Done"}')  # the runtime exits at once
                    return
                self._reply(200, b"{}", {
                    "Lambda-Runtime-Aws-Request-Id": f"bench-{n}",
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:012345678912:function:bench",
                    "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"
                                               ";Sampled=1",
                    "Content-Type": "application/json",
                })

            def do_POST(self) -> None:
                now = time.perf_counter()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/response"):
                    api.responses.append(now)
                self._reply(202, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()


@contextmanager
def collector() -> Iterator[str]:
    """An OTLP/HTTP sink that accepts every export (the exporter only looks at the status)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_bootstrap(bootstrap: Path, task_root: Path, handler: str, otel_endpoint: str | None,
                  warm: int) -> dict[str, float]:
    api = _Api(1 + warm)
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "LANG": "C.UTF-8",
        "AWS_LAMBDA_RUNTIME_API": api.address, "_HANDLER": f"{handler}.handler", "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[$LATEST]bench", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
    }
    if otel_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otel_endpoint
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(bootstrap)], env=env, capture_output=True, timeout=120, check=False)
    api.server.shutdown()
    api.server.server_close()
    nexts, responses = api.nexts, api.responses
    if len(responses) < 1 + warm or len(nexts) < 2 + warm:
        raise RuntimeError(f"the runtime stopped early: {proc.stderr.decode()[-2000:]}")
    ms = 1000.0
    return {
        "init": (nexts[0] - started) * ms,
        "response": (responses[0] - started) * ms,
        "cycle": (nexts[1] - started) * ms,
        # warm invocations: /next answered → response posted, and response posted → next /next (the flush)
        "warm_response": statistics.median(responses[i] - nexts[i] for i in range(1, 1 + warm)) * ms,
        "warm_flush": statistics.median(nexts[i + 1] - responses[i] for i in range(1, 1 + warm)) * ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bootstrap", type=Path, default=REPO / "bootstrap")
    parser.add_argument("--warm", type=int, default=20, help="warm invocations per process")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object too")
    args = parser.parse_args()
    results: dict[str, object] = {"python": sys.version.split()[0], "runs": args.runs}

    print(f"Import costs (ms, median of {args.runs}, fresh interpreter each; increments over the modules named)")
    imports = {}
    for label, modules, first in IMPORTS:
        imports[label] = round(import_ms(modules, first, args.runs), 1)
        print(f"  {imports[label]:8.1f}  {label}")
    results["imports_ms"] = imports

    keys = ("init", "response", "cycle", "warm_response", "warm_flush")
    print(f"\n{args.bootstrap}: ms from process start to the first /next (init), the first response and the second")
    print(f"/next (cycle); then, over {args.warm} warm invocations, /next→response and response→/next (flush).")
    print(f"Median of {args.runs} processes (min in brackets).")
    print(f"  {'handler':<14} {'OTel':<4} {'init':>15} {'1st response':>15} {'cycle':>15} {'warm resp':>13} "
          f"{'warm flush':>13}")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp, collector() as endpoint:
        root = Path(tmp)
        for name, source in HANDLERS.items():
            (root / f"{name}.py").write_text(source)
        for name in HANDLERS:
            for otel in ("off", "on"):
                url = endpoint if otel == "on" else None
                run_bootstrap(args.bootstrap, root, name, url, args.warm)  # warm-up (bytecode caches)
                samples = [run_bootstrap(args.bootstrap, root, name, url, args.warm) for _ in range(args.runs)]
                med = {k: round(statistics.median(s[k] for s in samples), 2) for k in keys}
                low = {k: round(min(s[k] for s in samples), 2) for k in keys}
                runs[f"{name}/{otel}"] = {"median": med, "min": low}
                cells = " ".join(f"{med[k]:7.1f} [{low[k]:5.1f}]" for k in keys[:3])
                warm_cells = " ".join(f"{med[k]:5.2f} [{low[k]:5.2f}]" for k in keys[3:])
                print(f"  {name:<14} {otel:<4} {cells} {warm_cells}")
    results["bootstrap_ms"] = runs
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
