"""`Emulator`: the local Lambda emulator as one object, for tests and for the `flightrec` commands.

Why a facade: a test wants one `with Emulator(...) as emu: emu.invoke(...)` and a few attributes to assert
on (platform lines, runtime output, posted headers, faults), not the wiring of server, backend, supervisor
and registries. This module does that wiring and owns start/stop order; it holds no Lambda rules itself.

Allowed imports: stdlib, `runtime.emulator.*` (except `cli`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from runtime.emulator import client, wire
from runtime.emulator.backend import Backend, FunctionConfig, PostRecord
from runtime.emulator.client import InvokeResult
from runtime.emulator.extensions import SHUTDOWN, ExtensionRegistry
from runtime.emulator.faults import FaultInjector
from runtime.emulator.platform_log import PlatformLog
from runtime.emulator.server import EmulatorHTTPServer
from runtime.emulator.supervisor import (
    DEFAULT_BOOTSTRAP,
    FunctionSettings,
    OutputCallback,
    Supervisor,
    lambda_environment,
)


def clean_environment() -> dict[str, str]:
    """A Lambda-like starting environment: a short PATH (with this Python's folder first) and a UTF-8 locale.

    Tests get reproducible children this way; `flightrec` passes the user's environment instead.
    """
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin", "/opt/bin"]),
        "LANG": "C.UTF-8",
    }


def _print_line(line: str) -> None:
    print(line, flush=True)


class Emulator:
    """A Lambda emulator for one function: Runtime API + invoke endpoint on one port, plus the runtime child.

    Pass `spawn=False` to start no child and let an external runtime (a test's thread, a debugger) poll.
    `max_concurrency` (default: `AWS_LAMBDA_MAX_CONCURRENCY` from `env`, else 1) hands out that many invocations
    at once, as Lambda Managed Instances do. `snapstart=True` starts the runtime with
    `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start` and serves `/runtime/restore/next`; with `hold_restore=True` that
    call waits (the "snapshot") until `release_restore()`.
    """

    def __init__(
        self,
        *,
        handler: str = "",
        task_root: str | Path | None = None,
        command: Sequence[str] | None = None,
        function_name: str | None = None,
        timeout_s: float = 3.0,
        memory_mb: int = 128,
        region: str = "us-east-1",
        env: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        eager: bool = False,
        spawn: bool = True,
        capture_output: bool = False,
        on_output: OutputCallback | None = None,
        platform_sink: Callable[[str], None] | None = None,
        init_timeout_s: float = 10.0,
        shutdown_grace_s: float = 0.5,
        max_concurrency: int | None = None,
        snapstart: bool = False,
        hold_restore: bool = False,
    ) -> None:
        self.handler = handler
        self.task_root = Path(task_root) if task_root is not None else Path.cwd()
        self.command = list(command) if command is not None else [sys.executable, str(DEFAULT_BOOTSTRAP)]
        self.timeout_s = timeout_s
        self.init_timeout_s = init_timeout_s
        self.shutdown_grace_s = shutdown_grace_s
        self._env = dict(env or {})
        if max_concurrency is None:
            raw = self._env.get("AWS_LAMBDA_MAX_CONCURRENCY", "").strip()
            max_concurrency = int(raw) if raw.isdigit() and int(raw) > 0 else 1
        else:
            self._env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(max_concurrency)
        if snapstart:
            self._env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        self.config = FunctionConfig(
            function_name=function_name or wire.default_function_name(handler),
            handler=handler,
            region=region,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            init_timeout_s=init_timeout_s,
            max_concurrency=max_concurrency,
            snapstart=snapstart,
        )
        self._base_env = dict(base_env) if base_env is not None else clean_environment()
        self._bind = (host, port)
        self._eager = eager
        self._spawn = spawn
        self._capture = capture_output
        self._user_output = on_output
        self._output_cond = threading.Condition()
        self.output: list[tuple[str, str]] = []
        self.inject = FaultInjector()
        self.extensions = ExtensionRegistry()
        self._platform = PlatformLog(platform_sink or _print_line)
        self._backend = Backend(self.config, self._platform, self.inject, self.extensions)
        if hold_restore:
            self._backend.restore_gate.clear()
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._supervisor: Supervisor | None = None
        self._stopped = False

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind the server, start serving, and (with `eager`) start the runtime now instead of at the first invoke."""
        self._server = EmulatorHTTPServer(self._bind, self._backend)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="flightrec-emulator", daemon=True
        )
        self._thread.start()
        if self._spawn:
            on_output = self._on_output if (self._capture or self._user_output is not None) else None
            self._supervisor = Supervisor(
                self.command,
                environment=self._child_environment,
                cwd=self.task_root,
                before_spawn=self._backend.on_spawn,
                on_exit=self._backend.on_runtime_exit,
                on_output=on_output,
            )
            self._backend.supervisor = self._supervisor
            if self._eager:
                self._supervisor.ensure_running()
        return self

    def stop(self) -> None:
        """Shut down as Lambda does: SHUTDOWN event + SIGTERM + grace when an extension registered, else SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        graceful = self.extensions.any_registered
        if graceful:
            deadline_ms = int((time.time() + 2.0) * 1000)
            self.extensions.publish(SHUTDOWN, {"shutdownReason": "spindown", "deadlineMs": deadline_ms})
        if self._supervisor is not None:
            self._supervisor.stop(graceful, self.shutdown_grace_s)
        self.extensions.close()
        self._backend.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _child_environment(self) -> dict[str, str]:
        settings = FunctionSettings(
            handler=self.handler,
            task_root=self.task_root,
            function_name=self.config.function_name,
            memory_mb=self.config.memory_mb,
            region=self.config.region,
            log_stream_name=wire.log_stream_name(),
        )
        return lambda_environment(settings, self.runtime_api, self._base_env, self._env)

    def _on_output(self, stream: str, line: str) -> None:
        if self._capture:
            with self._output_cond:
                self.output.append((stream, line))
                self._output_cond.notify_all()
        if self._user_output is not None:
            self._user_output(stream, line)

    # --- invoking ---------------------------------------------------------------------------------------
    def invoke(
        self,
        event: bytes | str | object = b"{}",
        *,
        client_context: str | dict[str, Any] | None = None,
        tenant_id: str | None = None,
        cognito_identity: str | None = None,
        timeout_s: float | None = None,
        wait_for_report: bool | None = None,
    ) -> InvokeResult:
        """Invoke the function through the real invoke endpoint and return its answer.

        The answer comes as soon as the runtime posts it; the REPORT line only when the runtime is back at
        `/next`. `wait_for_report` (default: when this emulator started the runtime, which always polls again)
        returns only after the REPORT, so `platform_lines` and `output_lines` are complete for this invocation.
        """
        result = client.invoke(
            self._connect_host,
            self.port,
            client.encode_event(event),
            client_context=client.encode_client_context(client_context),
            tenant_id=tenant_id,
            cognito_identity=cognito_identity,
            timeout_s=timeout_s if timeout_s is not None else self.init_timeout_s + self.timeout_s + 30.0,
            function_name=self.config.function_name,
        )
        if (self._spawn if wait_for_report is None else wait_for_report) and result.request_id:
            self.wait_for_report(result.request_id)
        if result.function_error is None and result.request_id:
            outcome = self._backend.outcome_of(result.request_id)  # a streamed error only shows in trailers
            if outcome is not None and outcome.function_error:
                return InvokeResult(
                    result.status,
                    result.body,
                    result.content_type,
                    outcome.function_error,
                    result.request_id,
                    result.headers,
                )
        return result

    def release_restore(self) -> None:
        """SnapStart: end the "snapshot" a `hold_restore=True` emulator holds; `/restore/next` answers now."""
        self._backend.restore_gate.set()

    def wait_for_call(self, method: str, path: str, timeout_s: float = 5.0) -> bool:
        """Wait until the runtime made this Runtime API call (e.g. `GET /2018-06-01/runtime/restore/next`)."""
        deadline = time.monotonic() + timeout_s
        while (method, path) not in self._backend.api_calls:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # --- what tests look at -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (useful with `port=0`)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """The bound host."""
        return self._bind[0]

    @property
    def _connect_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host

    @property
    def runtime_api(self) -> str:
        """The `AWS_LAMBDA_RUNTIME_API` value a runtime needs to reach this emulator."""
        return f"{self._connect_host}:{self.port}"

    @property
    def invoke_url(self) -> str:
        """The RIE-compatible invoke URL (`curl -d '{}' <url>`)."""
        return f"http://{self.runtime_api}/2015-03-31/functions/function/invocations"

    @property
    def runtime_pid(self) -> int | None:
        """The pid of the current runtime child, if it is alive."""
        current = self._supervisor.current if self._supervisor is not None else None
        return current.pid if current is not None and current.alive else None

    @property
    def generation(self) -> int:
        """How many runtime processes were started so far (a restart makes it grow)."""
        current = self._supervisor.current if self._supervisor is not None else None
        return current.generation if current is not None else 0

    @property
    def platform_lines(self) -> list[str]:
        """START, END, REPORT and other platform lines, in order."""
        return list(self._platform.lines)

    def wait_for_report(self, request_id: str, timeout_s: float | None = None) -> str | None:
        """The REPORT line of `request_id`, waiting for it (at most the function timeout plus a margin)."""
        limit = self.timeout_s + 5.0 if timeout_s is None else timeout_s
        return self._platform.wait_for_prefix(f"REPORT RequestId: {request_id}\t", limit)

    @property
    def output_lines(self) -> list[str]:
        """The runtime's stdout and stderr lines (with `capture_output=True`), in arrival order."""
        with self._output_cond:
            return [line for _, line in self.output]

    def wait_for_output(self, text: str, timeout_s: float = 2.0) -> bool:
        """Wait until a captured output line contains `text` (output arrives on its own threads)."""
        with self._output_cond:
            return self._output_cond.wait_for(lambda: any(text in line for _, line in self.output), timeout_s)

    @property
    def posts(self) -> list[PostRecord]:
        """Every `/response`, `/error` and `/init/error` the runtime posted, with raw headers and our status."""
        return list(self._backend.posts)

    def posts_for(self, request_id: str) -> list[PostRecord]:
        """The posts for one request id, in order."""
        return [post for post in self._backend.posts if post.request_id == request_id]

    @property
    def last_error_type_header(self) -> str | None:
        """The raw `Lambda-Runtime-Function-Error-Type` of the latest `/error` or `/init/error`."""
        return self._backend.last_error_type_header

    @property
    def api_calls(self) -> list[tuple[str, str]]:
        """(method, path) of every Runtime and Extensions API call, in arrival order."""
        return list(self._backend.api_calls)
