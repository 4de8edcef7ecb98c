"""`flightrec emulator` (serve) and `flightrec invoke` (one-shot), registered in `runtime.cli.SUBCOMMANDS`.

Why here and not in `runtime/cli.py`: the top-level CLI only knows subcommand names; each package builds its
own parser, so the emulator's options live next to the emulator. Exit codes: 0 success, 1 function error
(or the emulator could not start), 2 usage error.

Allowed imports: stdlib, `runtime.emulator.*`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from runtime.emulator.api import Emulator
from runtime.emulator.supervisor import OutputCallback

EXIT_OK = 0
EXIT_FUNCTION_ERROR = 1
EXIT_USAGE = 2


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _add_function_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by both commands: what function to run and how Lambda would configure it."""
    parser.add_argument("--handler", default="", help="handler as module.function, e.g. handlers.echo.handler")
    parser.add_argument("--task-root", type=Path, default=None, help="LAMBDA_TASK_ROOT (default: current folder)")
    parser.add_argument("--timeout", type=float, default=3.0, help="function timeout in seconds (default: 3)")
    parser.add_argument("--memory", type=int, default=128, help="memory size in MB (default: 128)")
    parser.add_argument("--function-name", default=None, help="function name (default: the handler's module)")
    parser.add_argument("--region", default="us-east-1", help="AWS_REGION for the function (default: us-east-1)")
    parser.add_argument(
        "--env", type=_key_value, action="append", default=[], metavar="KEY=VALUE", help="extra environment variable"
    )
    parser.add_argument(
        "--command",
        default=None,
        help="runtime command line instead of ./bootstrap, e.g. 'python -m awslambdaric handlers.echo.handler'",
    )
    parser.add_argument(
        "--init-timeout", type=float, default=10.0, help="seconds the runtime may take to reach /next (default: 10)"
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=None, metavar="N",
        help="hand out N invocations at once (AWS_LAMBDA_MAX_CONCURRENCY, as Lambda Managed Instances do)",
    )
    parser.add_argument(
        "--snapstart", action="store_true",
        help="initialise for SnapStart (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start; /runtime/restore/next is served)",
    )


def configure_emulator(parser: argparse.ArgumentParser) -> None:
    """`flightrec emulator`: serve until interrupted."""
    _add_function_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to bind (default: 9000; 0 = any free port)")
    parser.add_argument("--eager", action="store_true", help="start the runtime now instead of at the first invoke")
    parser.set_defaults(run=run_emulator)


def configure_invoke(parser: argparse.ArgumentParser) -> None:
    """`flightrec invoke`: start an emulator on a free port, invoke, print, stop."""
    _add_function_options(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--event", default=None, help="event JSON text ('-' reads stdin; default: {})")
    source.add_argument("--event-file", default=None, help="file holding the event JSON ('-' reads stdin)")
    parser.add_argument("--repeat", type=int, default=1, help="number of invocations (default: 1)")
    parser.add_argument("--client-context", default=None, help="client context JSON, passed on to the function")
    parser.add_argument("--tenant-id", default=None, help="tenant id, passed on to the function")
    parser.set_defaults(run=run_invoke)


def _usage_error(command: str, message: str) -> int:
    print(f"flightrec {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _emulator_from(
    args: argparse.Namespace,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    eager: bool = False,
    on_output: OutputCallback | None = None,
    platform_sink: Callable[[str], None] | None = None,
) -> Emulator:
    command = shlex.split(args.command) if args.command else None
    return Emulator(
        handler=args.handler,
        task_root=args.task_root,
        command=command,
        function_name=args.function_name,
        timeout_s=args.timeout,
        memory_mb=args.memory,
        region=args.region,
        env=dict(args.env),
        base_env=dict(os.environ),  # a developer expects their shell's variables to reach the function
        init_timeout_s=args.init_timeout,
        max_concurrency=args.max_concurrency,
        snapstart=args.snapstart,
        host=host,
        port=port,
        eager=eager,
        on_output=on_output,
        platform_sink=platform_sink,
    )


def _check_function_options(command: str, args: argparse.Namespace) -> int | None:
    if not args.handler and not args.command:
        return _usage_error(command, "give --handler (or --command)")
    if args.timeout <= 0 or args.memory <= 0:
        return _usage_error(command, "--timeout and --memory must be positive")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        return _usage_error(command, "--max-concurrency must be at least 1")
    return None


def run_emulator(args: argparse.Namespace) -> int:
    """Serve the emulator until SIGINT or SIGTERM; then shut the runtime down as Lambda would."""
    problem = _check_function_options("emulator", args)
    if problem is not None:
        return problem
    emulator = _emulator_from(args, host=args.host, port=args.port, eager=args.eager)
    try:
        emulator.start()
    except OSError as exc:
        print(f"flightrec emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FUNCTION_ERROR
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(
        f"flightrec emulator: function {emulator.config.function_name!r} on http://{emulator.runtime_api}\n"
        f"  invoke:      curl -d '{{}}' {emulator.invoke_url}\n"
        f"  Runtime API: AWS_LAMBDA_RUNTIME_API={emulator.runtime_api}",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            continue
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _read_event(args: argparse.Namespace) -> bytes:
    if args.event_file is not None:
        return sys.stdin.buffer.read() if args.event_file == "-" else Path(args.event_file).read_bytes()
    if args.event is not None:
        return sys.stdin.buffer.read() if args.event == "-" else args.event.encode()
    return b"{}"


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_invoke(args: argparse.Namespace) -> int:
    """Invoke through the real runtime; logs and platform lines to stderr, each result body to stdout."""
    problem = _check_function_options("invoke", args)
    if problem is not None:
        return problem
    if args.repeat < 1:
        return _usage_error("invoke", "--repeat must be at least 1")
    try:
        event = _read_event(args)
        json.loads(event)
        client_context = json.loads(args.client_context) if args.client_context is not None else None
    except OSError as exc:
        return _usage_error("invoke", f"cannot read the event: {exc}")
    except ValueError as exc:
        return _usage_error("invoke", f"the event and the client context must be JSON: {exc}")
    emulator = _emulator_from(
        args, port=0, on_output=lambda _stream, line: _stderr_line(line), platform_sink=_stderr_line
    )
    failed = False
    with emulator:
        for _ in range(args.repeat):
            result = emulator.invoke(event, client_context=client_context, tenant_id=args.tenant_id)
            sys.stdout.buffer.write(result.body + b"\n")
            sys.stdout.flush()
            failed = failed or not result.ok
    return EXIT_FUNCTION_ERROR if failed else EXIT_OK
