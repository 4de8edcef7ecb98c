"""The log pipeline alone: what a `logger.info` costs the handler's thread, how fast the shipper empties the queue
into each sink, and what the whole pipeline adds to an invocation that logs 10 or 1,000 lines.

    .venv/bin/python -m bench.bench_logging [--rounds 5] [--no-peers] [--json out.json]

It goes through `telemetry.setup.install()`, the composition the bootstrap uses, so it measures the pipeline as
deployed (sinks, lifecycle records, flush policy) rather than a hand-assembled copy of it. install() writes the
stdout sink to file descriptor 1, so fd 1 points at /dev/null while measuring and the report is printed after.

1. Caller's thread: `time.thread_time_ns()` around batches of `logger.info(...)` calls (the shipper runs on its own
   thread and is not counted), median per round, median of rounds. References on the same logger call: logging
   disabled (the level check alone), the stdlib with a NullHandler, a StreamHandler to /dev/null, and awslambdaric's
   own handler (JSON formatter writing to stdout, /dev/null here) — what a function pays per line on AWS's runtime.
2. Shipper: N records logged then flushed, per sink (stdout to /dev/null, syslog over TCP to rsyslog, PostgreSQL,
   all three). End to end = N / (first log call → flush returned); shipper capacity = N / the shipper thread's CPU.
3. Per invocation: the runtime's dispatch (`make_dispatch` with the telemetry middleware) plus the after-each
   flush, for a handler logging 0, 10 and 1,000 lines, against the same dispatch without telemetry and with logging
   disabled. Wall time and process CPU (all threads) per invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import stats
from runtime.config import RuntimeConfig
from runtime.dispatch import Next, make_dispatch
from runtime.model import Invocation
from telemetry.config import TelemetryConfig
from telemetry.context import invocation_scope
from telemetry.setup import Telemetry, install

LOGGER = logging.getLogger("bench.handler")
MESSAGE = "processing step %d of %d for %s"
SHIPPER_THREAD = "flightrec-shipper"
TARGET_RECORDS_PER_S = 100_000
TARGET_CALLER_US = 10.0


def _invocation(i: int, body: bytes = b"{}") -> Invocation:
    return Invocation(
        request_id=f"bench-{i:012d}",
        body=body,
        deadline_ms=int(time.time() * 1000) + 900_000,
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:bench-echo",
        trace_id="Root=1-6568f2a1-5e3b0c0f1a2b3c4d5e6f7a8b;Parent=53995c3f42cd8ad8;Sampled=1",
        content_type="application/json",
    )


def _reset_root() -> logging.Logger:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    return root


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[io.TextIOWrapper]:
    """Point fd 1 at /dev/null (where install()'s stdout sink writes); yield a stream on the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    real = io.TextIOWrapper(io.FileIO(saved, "w", closefd=False), encoding="utf-8", line_buffering=True)
    try:
        yield real
    finally:
        real.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def installed(cfg: TelemetryConfig) -> Iterator[Telemetry]:
    telemetry = install(cfg, started_ns=time.monotonic_ns())
    telemetry.init_done()
    try:
        yield telemetry
    finally:
        telemetry.shutdown()
        _reset_root()


def _shipper_cpu_ns() -> int:
    """CPU of the pipeline's shipper thread so far (schedstat, ns), or -1 when it cannot be found."""
    for thread in threading.enumerate():
        if thread.name == SHIPPER_THREAD and thread.native_id is not None:
            try:
                with open(f"/proc/self/task/{thread.native_id}/schedstat") as fh:
                    return int(fh.read().split()[0])
            except OSError:
                return -1
    return -1


# -- 1. the caller's thread ---------------------------------------------------------------------------------------
def _time_calls(calls: int) -> float:
    info = LOGGER.info
    started = time.thread_time_ns()
    for _ in range(calls):
        info(MESSAGE, 3, 10, "order-42")
    return (time.thread_time_ns() - started) / calls / 1000


def _caller_setups(base: TelemetryConfig) -> dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]:
    """Each setup configures the root logger as that runtime would and yields a function to call after a batch."""

    @contextlib.contextmanager
    def disabled() -> Iterator[Callable[[], None]]:
        _reset_root().setLevel(logging.WARNING)
        logging.getLogger().addHandler(logging.NullHandler())
        yield lambda: None
        _reset_root()

    @contextlib.contextmanager
    def null_handler() -> Iterator[Callable[[], None]]:
        _reset_root().addHandler(logging.NullHandler())
        yield lambda: None
        _reset_root()

    @contextlib.contextmanager
    def stream_handler() -> Iterator[Callable[[], None]]:
        with open(os.devnull, "w") as devnull:
            handler = logging.StreamHandler(devnull)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
            _reset_root().addHandler(handler)
            yield lambda: None
        _reset_root()

    @contextlib.contextmanager
    def awslambdaric() -> Iterator[Callable[[], None]]:
        os.environ["AWS_LAMBDA_LOG_FORMAT"] = "JSON"  # read when awslambdaric.bootstrap is imported
        from awslambdaric.bootstrap import (  # type: ignore[import-untyped]
            LambdaLoggerFilter,
            LambdaLoggerHandlerWithFrameType,
            StandardLogSink,
            Unbuffered,
        )
        from awslambdaric.lambda_runtime_log_utils import JsonFormatter  # type: ignore[import-untyped]

        handler = LambdaLoggerHandlerWithFrameType(StandardLogSink())
        handler.setFormatter(JsonFormatter())
        handler.addFilter(LambdaLoggerFilter())
        _reset_root().addHandler(handler)
        saved = sys.stdout
        with open(os.devnull, "w") as devnull:
            sys.stdout = Unbuffered(devnull)  # as awslambdaric wraps it: a flush per line
            try:
                yield lambda: None
            finally:
                sys.stdout = saved
        _reset_root()

    @contextlib.contextmanager
    def ours() -> Iterator[Callable[[], None]]:
        with installed(base) as telemetry, invocation_scope(_invocation(1), cold_start=False):

            def flush() -> None:
                telemetry.pipeline.flush(5.0)

            yield flush

    return {
        "logging disabled (level check only)": disabled,
        "stdlib, NullHandler": null_handler,
        "stdlib, StreamHandler to /dev/null": stream_handler,
        "awslambdaric handler (JSON to /dev/null)": awslambdaric,
        "ours: LogPipeline enqueue": ours,
    }


def caller_cost(base: TelemetryConfig, rounds: int, batches: int, calls: int) -> dict[str, dict[str, float]]:
    """CPU µs per `logger.info` on the caller's thread, per setup: median of per-round medians of batches."""
    out: dict[str, dict[str, float]] = {}
    setups = _caller_setups(base)
    per_round: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(rounds):
        for name, setup in setups.items():  # interleaved: every setup once per round
            with setup() as after_batch:
                _time_calls(calls)  # warm-up
                after_batch()
                samples = []
                for _ in range(batches):
                    samples.append(_time_calls(calls))
                    after_batch()  # the flush is the shipper's work, outside the timed batch
                per_round[name].append(statistics.median(samples))
    for name, values in per_round.items():
        out[name] = {"cpu_us": statistics.median(values), "spread": stats.spread(values)}
    return out


# -- 2. the shipper ------------------------------------------------------------------------------------------------
def shipper_throughput(cfg: TelemetryConfig, records: int, rounds: int) -> dict[str, float]:
    """Records per second from the first log call to the flush's return, and per second of shipper CPU."""
    walls, capacities, callers = [], [], []
    with installed(cfg) as telemetry:
        for r in range(rounds + 1):  # round 0 warms up: connections, migration, the renderer's imports
            n = records if r else 200
            with invocation_scope(_invocation(r), cold_start=False):
                shipper_before = _shipper_cpu_ns()
                started = time.perf_counter_ns()
                caller_started = time.thread_time_ns()
                info = LOGGER.info
                for i in range(n):
                    info(MESSAGE, i, n, "order-42")
                caller_ns = time.thread_time_ns() - caller_started
                result = telemetry.pipeline.flush(60.0, force=True)
                wall_ns = time.perf_counter_ns() - started
                shipper_ns = _shipper_cpu_ns() - shipper_before
            if not result.complete:
                raise RuntimeError(f"the flush did not complete: {result}")
            if r:
                walls.append(n / wall_ns * 1e9)
                capacities.append(n / shipper_ns * 1e9 if shipper_before >= 0 and shipper_ns > 0 else float("nan"))
                callers.append(caller_ns / n / 1000)
    return {
        "end_to_end_records_per_s": statistics.median(walls),
        "shipper_records_per_cpu_s": stats.median(capacities),
        "caller_us_per_record": statistics.median(callers),
        "spread": stats.spread(walls),
    }


# -- 3. per invocation ---------------------------------------------------------------------------------------------
def _handler(lines: int) -> Callable[[Any, Any], Any]:
    def handler(event: Any, context: Any) -> Any:
        del context
        for i in range(lines):
            LOGGER.info(MESSAGE, i, lines, "order-42")
        return event

    return handler


def _time_invocations(dispatch: Next, after_each: Callable[[Invocation, Any], None], n: int) -> tuple[float, float]:
    invocations = [_invocation(i) for i in range(n)]
    wall0, cpu0 = time.perf_counter_ns(), time.process_time_ns()
    for invocation in invocations:
        after_each(invocation, dispatch(invocation))
    return (time.perf_counter_ns() - wall0) / n / 1000, (time.process_time_ns() - cpu0) / n / 1000


def invocation_cost(
    configs: dict[str, TelemetryConfig], lines: tuple[int, ...], rounds: int, invocations: int
) -> dict[str, dict[str, dict[str, float]]]:
    """µs of wall time and CPU per invocation, per configuration and lines logged (median of rounds)."""
    runtime_cfg = RuntimeConfig(api_address="127.0.0.1:9001", handler="bench.handler", function_name="bench-echo",
                                memory_limit_in_mb="1024")
    samples: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for r in range(rounds + 1):  # round 0 warms up
        for n_lines in lines:
            n = max(20, invocations // max(1, n_lines // 10))  # fewer invocations when each logs 1,000 lines
            for name, cfg in {"telemetry not installed, logging disabled": None, **configs}.items():
                if cfg is None:
                    _reset_root().setLevel(logging.WARNING)
                    result = _time_invocations(make_dispatch(_handler(n_lines), runtime_cfg), lambda i, o: None, n)
                    _reset_root()
                else:
                    with installed(cfg) as telemetry:
                        dispatch = make_dispatch(_handler(n_lines), runtime_cfg, telemetry.middlewares)
                        _time_invocations(dispatch, telemetry.after_each, 5)  # connections, renderer
                        result = _time_invocations(dispatch, telemetry.after_each, n)
                if r:
                    samples.setdefault(name, {}).setdefault(n_lines, []).append(result)
    return {
        name: {str(k): {"wall_us": statistics.median(w for w, _ in v), "cpu_us": statistics.median(c for _, c in v)}
               for k, v in per_lines.items()}
        for name, per_lines in samples.items()
    }


# -- main ----------------------------------------------------------------------------------------------------------
def configs(peers: Any, spill_dir: str) -> dict[str, TelemetryConfig]:
    base = TelemetryConfig(function_name="bench-echo", log_stream_name="2024/01/01/[$LATEST]bench",
                           capture_print=False, spill_dir=spill_dir)
    out = {"stdout": base}
    if peers is not None:
        out["syslog tcp"] = base._replace(stdout_enabled=False, syslog_url=peers.rsyslog.tcp_url)
        out["postgres"] = base._replace(stdout_enabled=False, database_url=peers.dsn, auto_migrate=True)
        out["stdout + syslog + postgres"] = base._replace(syslog_url=peers.rsyslog.tcp_url,
                                                                database_url=peers.dsn, auto_migrate=True)
    return out


@dataclasses.dataclass
class _Peers:
    rsyslog: Any
    dsn: str


@contextlib.contextmanager
def maybe_peers(enabled: bool) -> Iterator[_Peers | None]:
    if not enabled:
        yield None
        return
    try:
        from tests.peers import PeerUnavailable, PostgresServer, RsyslogServer
    except ImportError as exc:
        print(f"bench_logging: no peers ({exc}); stdout only", file=sys.stderr)
        yield None
        return
    try:
        with PostgresServer() as pg, RsyslogServer() as rs:
            yield _Peers(rs, pg.create_database("flightrec_bench_logging"))
    except PeerUnavailable as exc:
        print(f"bench_logging: no peers ({exc}); stdout only", file=sys.stderr)
        yield None


def report(results: dict[str, Any]) -> str:
    lines = [f"Caller's thread: CPU per logger.info call (median of {results['settings']['rounds']} rounds; "
             "includes ~0.05 µs of loop)"]
    rows = [[name, stats.fmt(v["cpu_us"], 2), stats.fmt(v["spread"] * 100)] for name, v in results["caller"].items()]
    lines.append(stats.table(["setup", "CPU µs/record", "spread %"], rows))
    lines.append("")
    lines.append(f"Shipper: {results['settings']['records']:,} records logged, then flushed (medians)")
    rows = [[name, stats.fmt(v["end_to_end_records_per_s"]), stats.fmt(v["shipper_records_per_cpu_s"]),
             stats.fmt(v["caller_us_per_record"], 2), stats.fmt(v["spread"] * 100)]
            for name, v in results["shipper"].items()]
    lines.append(stats.table(["sinks", "records/s end to end", "records per shipper CPU-s", "caller µs/record",
                              "spread %"], rows))
    lines.append("")
    lines.append("Per invocation: runtime dispatch + telemetry middleware + after-each flush (µs, medians)")
    baseline = "telemetry not installed, logging disabled"
    base = results["invocation"].get(baseline, {})
    rows = []
    for name, per_lines in results["invocation"].items():
        for n_lines, v in per_lines.items():
            b = base.get(n_lines, {})
            added = ["(baseline)", ""] if name == baseline else [
                stats.fmt(v["wall_us"] - b.get("wall_us", float("nan")), 1),
                stats.fmt(v["cpu_us"] - b.get("cpu_us", float("nan")), 1)]
            rows.append([name, n_lines, stats.fmt(v["wall_us"], 1), stats.fmt(v["cpu_us"], 1), *added])
    lines.append(stats.table(["configuration", "lines", "wall", "CPU", "wall added", "CPU added"], rows, 2))
    lines.append("")
    lines += [f"target: {t['text']}: {t['shown']} ({t['status']})" for t in results["targets"]]
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    ours = results["caller"].get("ours: LogPipeline enqueue")
    if ours:
        out.append({"text": f"pipeline: <= {TARGET_CALLER_US:g} µs CPU on the handler's thread per log record",
                    "shown": f"{ours['cpu_us']:.2f} µs",
                    "status": "met" if ours["cpu_us"] <= TARGET_CALLER_US else "NOT met"})
    pg = results["shipper"].get("postgres")
    if pg:
        rate = pg["end_to_end_records_per_s"]
        out.append({"text": f"pipeline: >= {TARGET_RECORDS_PER_S:,} records/s into PostgreSQL (end to end)",
                    "shown": f"{rate:,.0f}/s", "status": "met" if rate >= TARGET_RECORDS_PER_S else "NOT met"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_logging", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per round and setup (caller cost)")
    parser.add_argument("--calls", type=int, default=1000, help="log calls per batch (below the shipper's wake-up)")
    parser.add_argument("--records", type=int, default=10_000, help="records per shipper measurement")
    parser.add_argument("--invocations", type=int, default=300, help="invocations per per-invocation measurement")
    parser.add_argument("--no-peers", action="store_true", help="stdout sink only (no PostgreSQL, no rsyslog)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="flightrec-bench-logging-") as spill, \
            maybe_peers(not args.no_peers) as peers, stdout_to_devnull() as out:
        cfgs = configs(peers, spill)
        print("bench_logging: caller's thread ...", file=sys.stderr, flush=True)
        results["caller"] = caller_cost(cfgs["stdout"], args.rounds, args.batches, args.calls)
        print("bench_logging: shipper ...", file=sys.stderr, flush=True)
        results["shipper"] = {name: shipper_throughput(cfg, args.records, args.rounds) for name, cfg in cfgs.items()}
        print("bench_logging: per invocation ...", file=sys.stderr, flush=True)
        per_invocation = {"telemetry off (stdout)": cfgs["stdout"]}
        if "stdout + syslog + postgres" in cfgs:
            per_invocation["stdout + syslog + postgres, lifecycle records"] = cfgs["stdout + syslog + postgres"]
        results["invocation"] = invocation_cost(per_invocation, (0, 10, 1000), args.rounds, args.invocations)
        results["targets"] = targets(results)
        text = report(results)
        results["report"] = text
        print(text, file=out)
    if args.json:
        args.json.write_text(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
