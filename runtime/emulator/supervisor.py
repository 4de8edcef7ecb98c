"""The runtime child process: its Lambda environment, its output, its death, and killing it.

Why: the platform, not the runtime, decides when a runtime starts (lazily at the first invoke, again after
a crash, a timeout or an init error) and how it ends (SIGKILL, or SIGTERM first when an extension is
registered). One class owns the `Popen` so that no other module has to reason about process lifetimes.

Allowed imports: stdlib, `runtime.emulator.platform_log`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from runtime.emulator.platform_log import read_max_memory_mb

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BOOTSTRAP = REPO_ROOT / "bootstrap"

OutputCallback = Callable[[str, str], None]  # (stream name "stdout"/"stderr", line without newline)


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    """What Lambda tells the runtime about the function through its environment."""

    handler: str
    task_root: Path
    function_name: str
    memory_mb: int
    region: str
    log_stream_name: str


def lambda_environment(
    settings: FunctionSettings,
    runtime_api: str,
    base_env: Mapping[str, str],
    extra_env: Mapping[str, str],
) -> dict[str, str]:
    """The child's environment: `base_env`, then Lambda's reserved variables, then the user's own.

    The user's variables come last on purpose: an emulator should let a test set e.g. `AWS_REGION` or
    `AWS_LAMBDA_LOG_FORMAT` even though Lambda itself reserves some of them.
    """
    env = dict(base_env)
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "LAMBDA_TASK_ROOT": str(settings.task_root),
            "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{settings.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": settings.log_stream_name,
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "TZ": ":UTC",
        }
    )
    if settings.handler:
        env["_HANDLER"] = settings.handler
    env.update(extra_env)
    return env


def describe_exit(returncode: int) -> str:
    """Go's `ProcessState.String()` wording, which Lambda's ExitError messages quote: `exit status 1`,
    `signal: killed`."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name[:1].lower()}{name[1:]}"


@dataclass(eq=False, slots=True)
class RuntimeProcess:
    """One generation of the runtime: a child process and its init bookkeeping."""

    generation: int
    proc: subprocess.Popen[bytes]
    killed: bool = False
    peak_memory_mb: int = 0
    pumps: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The child's process id (also its process-group id)."""
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True until the process exits or is killed by us."""
        return not self.killed and self.proc.poll() is None

    def sample_memory(self) -> int:
        """Read the peak RSS now (it is gone once the process is) and keep the largest value seen."""
        current = read_max_memory_mb(self.proc.pid)
        if current is not None:
            self.peak_memory_mb = max(self.peak_memory_mb, current)
        return self.peak_memory_mb


class Supervisor:
    """Starts, watches and ends runtime processes, one generation at a time."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        environment: Callable[[], dict[str, str]],
        cwd: Path,
        before_spawn: Callable[[int], None],
        on_exit: Callable[[RuntimeProcess, int], None],
        on_output: OutputCallback | None = None,
    ) -> None:
        self._argv = list(argv)
        self._environment = environment
        self._cwd = cwd
        self._before_spawn = before_spawn
        self._on_exit = on_exit
        self._on_output = on_output
        self._lock = threading.Lock()
        self._generation = 0
        self._current: RuntimeProcess | None = None
        self._all: list[RuntimeProcess] = []

    @property
    def current(self) -> RuntimeProcess | None:
        """The most recently started generation, alive or not."""
        with self._lock:
            return self._current

    def ensure_running(self, fresh: bool = False) -> RuntimeProcess:
        """Return the live runtime, starting a new one when there is none (or when `fresh` asks to replace it)."""
        with self._lock:
            current = self._current
            if current is not None and current.alive and not fresh:
                return current
            if current is not None and current.alive:
                self._kill(current)
            return self._spawn()

    def _spawn(self) -> RuntimeProcess:
        self._generation += 1
        self._before_spawn(self._generation)
        piped = subprocess.PIPE if self._on_output is not None else None
        proc = subprocess.Popen(
            self._argv,
            cwd=self._cwd,
            env=self._environment(),
            stdin=subprocess.DEVNULL,
            stdout=piped,
            stderr=piped,
            start_new_session=True,  # its own process group: a kill reaches wrapper scripts' children too
        )
        rp = RuntimeProcess(self._generation, proc)
        if self._on_output is not None:
            assert proc.stdout is not None
            assert proc.stderr is not None
            rp.pumps = [self._pump(proc.stdout, "stdout"), self._pump(proc.stderr, "stderr")]
        threading.Thread(target=self._watch, args=(rp,), name=f"flightrec-watch-{proc.pid}", daemon=True).start()
        self._current = rp
        self._all.append(rp)
        return rp

    def _pump(self, pipe: IO[bytes], stream: str) -> threading.Thread:
        callback = self._on_output
        assert callback is not None

        def pump() -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    callback(stream, raw.decode("utf-8", "replace").rstrip("\n"))

        thread = threading.Thread(target=pump, name=f"flightrec-{stream}", daemon=True)
        thread.start()
        return thread

    def _watch(self, rp: RuntimeProcess) -> None:
        returncode = rp.proc.wait()
        for pump in rp.pumps:  # the last lines before death come before the platform's verdict
            pump.join(timeout=1.0)
        self._on_exit(rp, returncode)

    def kill(self, rp: RuntimeProcess) -> None:
        """SIGKILL the runtime's process group (timeout, replacement, shutdown without extensions)."""
        with self._lock:
            self._kill(rp)

    @staticmethod
    def _kill(rp: RuntimeProcess) -> None:
        rp.sample_memory()
        rp.killed = True
        _signal_group(rp.proc, signal.SIGKILL)

    def terminate(self, rp: RuntimeProcess, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s` seconds if the runtime is still there."""
        _signal_group(rp.proc, signal.SIGTERM)
        try:
            rp.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill(rp)
        rp.killed = True

    def stop(self, graceful: bool, grace_s: float) -> None:
        """End the current runtime (gracefully when asked) and wait for every child and its output."""
        current = self.current
        if current is not None and current.proc.poll() is None:
            if graceful:
                self.terminate(current, grace_s)
            else:
                self.kill(current)
        with self._lock:
            generations = list(self._all)
        for rp in generations:
            if rp.proc.poll() is None:
                _signal_group(rp.proc, signal.SIGKILL)
            try:
                rp.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                continue
            for pump in rp.pumps:
                pump.join(timeout=2.0)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the child's whole process group; a process that is already gone is fine."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return
