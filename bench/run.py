"""The benchmark's one command: every contestant, interleaved round by round, under one lean Runtime API server.

    ./dev bench [--rounds 3] [--invocations 2000] [--events small,large] [--contestants floor,ric,off,...]
    .venv/bin/python -m bench.run --quick          # a short run while developing

What it does, in order:
  1. a sanity pass: every contestant answers correctly (the response is the event), logs what it should (stdout
     captured; for "everything on" the rows in PostgreSQL, the syslog messages and the OTLP spans counted);
  2. the rounds: for each round, for each event, each contestant in turn (ABCD ABCD …), each run a fresh process
     with `--warmup` unmeasured invocations then `--invocations` measured ones. The first contestant, "raw", is
     the leanest client there is (`bench/floor.py --raw`: no JSON, no handler): its figures are the server's
     ceiling, measured in the same rounds as everyone else;
  3. the RSS pass: one process per contestant serving `--rss-invocations` (20,000) small events;
  4. the log pipeline micro-benchmark (`bench.bench_logging`, in its own process) unless `--no-logging`;
  5. optionally CPU profiles of every thread of a contestant (`--profile on`): cProfile per thread
     (`bench.profile_threads`, exact call counts, inflates small calls) or `--profiler py-spy` (sampling from
     outside the process at 1 kHz, no instrumentation: the honest picture of where CPU time goes).
Raw samples and every figure go to `bench/results/<timestamp>.json`; the tables are printed at the end.

Why a fresh process per run: init, time to first response and RSS after init are per-process figures, and a
process that served a previous run would carry its caches into the next.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench import events as event_defs
from bench import procfs, stats
from bench.contestants import BY_KEY, CONTESTANTS, ROOT, Contestant, lambda_environment
from bench.peers import Peers
from bench.server import BenchServer, RunRecord, ServerError

RESULTS_DIR = ROOT / "bench" / "results"
LOG_MARKER = b"processing step"  # in every line bench.handlers.echo_log10 logs

#: (contestant, figure, limit as a ratio to its baseline or an absolute value, unit, what the target says)
TARGETS: tuple[tuple[str, str, float, str, str], ...] = (
    ("off", "p50", 0.8, "ratio", "telemetry off: p50 latency ≤ 0.8x awslambdaric"),
    # CPU from schedstat (ns, every thread): /proc/<pid>/stat counts 10 ms ticks, ±5-10 % over one measured window
    ("off", "cpu_sched", 0.8, "ratio", "telemetry off: CPU per invocation ≤ 0.8x awslambdaric"),
    ("off", "init", 1.0, "ratio", "telemetry off: init ≤ 1.0x awslambdaric"),
    ("off", "rss_init", 20.0, "MB", "telemetry off: RSS after init ≤ 20 MB (DECISIONS)"),
    ("on", "p50", 1.5, "ratio", "everything on: caller-visible latency (p50) ≤ 1.5x awslambdaric"),
    ("on", "cycle", 8.0, "ratio", "everything on: whole cycle ≤ 8x awslambdaric (DECISIONS; stretch 5x)"),
    ("on", "first", 3.0, "ratio", "everything on: time to first response ≤ 3x awslambdaric"),
    ("on", "rss_init", 64.0, "MB", "everything on: RSS after init ≤ 64 MB (DECISIONS; issue: 40 MB)"),
)


class RunFailed(RuntimeError):
    """One contestant's run did not complete; the message has its stderr tail."""


@dataclass(frozen=True)
class Event:
    name: str
    data: Any
    body: bytes


def say(message: str = "") -> None:
    print(message, flush=True)


def _tail(path: Path, start: int, limit: int = 3000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


class Runner:
    """Starts contestants' processes against the server, one at a time, and always cleans up after them."""

    def __init__(self, server: BenchServer, workdir: Path, timeout_s: float) -> None:
        self.server = server
        self.workdir = workdir
        self.timeout_s = timeout_s
        self.peers: Peers | None = None
        self.last_speed_ns = math.nan  # the speed probe taken just before the latest run
        self.last_peers_cpu: dict[str, float] = {}  # µs per invocation of each peer in the latest run (everything on)

    def stderr_path(self, contestant: Contestant, profiled: bool = False) -> Path:
        return self.workdir / f"{contestant.key}{'-profiled' if profiled else ''}.stderr"

    def run(
        self,
        contestant: Contestant,
        event: Event,
        *,
        warmup: int,
        invocations: int,
        stdout: IO[bytes] | None = None,
        argv: list[str] | None = None,
        graceful: bool = False,
        seconds_per_invocation: float = 0.01,
    ) -> RunRecord:
        """One process, `warmup + invocations` events; `graceful` refuses the last `/next` and lets the process exit
        by itself (atexit hooks run) instead of killing it."""
        extra = dict(contestant.extra_env)
        if contestant.everything_on:
            if self.peers is None:
                raise RunFailed(f"{contestant.key}: the peers (PostgreSQL, rsyslog, OTLP) are not running")
            extra.update(self.peers.env)
            self.peers.reset()
        env = lambda_environment(self.server.address, contestant.handler, extra)
        err_path = self.stderr_path(contestant, profiled=graceful)
        err_start = err_path.stat().st_size if err_path.exists() else 0
        self.last_speed_ns = procfs.speed_probe_ns()
        self.last_peers_cpu = {}
        peers_before = self.peers.cpu_ns() if contestant.everything_on and self.peers else {}
        with err_path.open("ab") as err:
            spawned_ns = time.perf_counter_ns()
            proc = subprocess.Popen(
                argv or contestant.argv(), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.DEVNULL, stderr=err,
            )
        try:
            record = self.server.run(
                proc.pid, event.body, warmup=warmup, invocations=invocations, spawned_ns=spawned_ns,
                alive=lambda: proc.poll() is None,
                timeout_s=self.timeout_s + (warmup + invocations) * seconds_per_invocation,
            )
            if peers_before and self.peers is not None:  # before the kill: the runtime's backend is still there
                after = self.peers.cpu_ns()
                self.last_peers_cpu = {k: (after[k] - v) / (warmup + invocations) / 1000
                                       for k, v in peers_before.items()}
            return record
        except ServerError as exc:
            raise RunFailed(f"{contestant.key} ({event.name}): {exc}\n{_tail(err_path, err_start)}") from None
        finally:
            if graceful:
                self.server.refuse_next()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.kill()
            proc.wait()
            self.server.drop_connections()


def result_of(record: RunRecord, runner: Runner, **labels: Any) -> stats.Summary:
    summary = stats.summarise(record)
    summary["speed_probe_ns"] = runner.last_speed_ns
    # whole run, init included (tick resolution), per invocation
    summary["peers_cpu_us_per_invocation"] = runner.last_peers_cpu
    summary.update(labels)
    summary["loadavg"] = procfs.loadavg()
    summary["raw"] = {"latencies_ns": record.latencies_ns, "cycles_ns": record.cycles_ns}
    summary["request_heads"] = record.sample_heads
    return summary


def progress(summary: stats.Summary, prefix: str) -> None:
    say(f"{prefix}  p50 {stats.fmt(stats.figure(summary, 'p50'))} µs  cycle {stats.fmt(stats.figure(summary, 'cycle'))}"
        f" µs  cpu {stats.fmt(stats.figure(summary, 'cpu'))} µs/inv  init {stats.fmt(summary['init_ms'], 1)} ms"
        f"  rss {stats.fmt(summary['rss_init_mb'], 1)}→{stats.fmt(summary['rss_end_mb'], 1)} MB"
        f"  other load {stats.fmt(summary['other_load_cores'], 2)} cores")


# -- the passes --------------------------------------------------------------------------------------------------
def _wait_for(predicate: Any, timeout_s: float) -> None:
    give_up = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < give_up:
        time.sleep(0.1)


def sanity_pass(runner: Runner, contestants: list[Contestant], events: list[Event], n: int) -> list[dict[str, Any]]:
    """Every contestant answers each event with the event itself and logs what it must; says what is not wired."""
    say(f"== sanity: {n} invocations per contestant and event, stdout captured ==")
    checks: list[dict[str, Any]] = []
    for contestant in contestants:
        for event in events:
            out_path = runner.workdir / f"sanity-{contestant.key}-{event.name}.stdout"
            spans_before = runner.peers.otlp.counts()["spans"] if runner.peers and contestant.everything_on else 0
            with out_path.open("wb") as out:
                record = runner.run(contestant, event, warmup=0, invocations=n, stdout=out)
            check: dict[str, Any] = {"contestant": contestant.key, "event": event.name, "problems": []}
            problems: list[str] = check["problems"]
            if record.errors:
                problems.append(f"{record.errors} /error answers: {record.last_error[:300]!r}")
            elif json.loads(record.last_body) != event.data:
                problems.append("the response is not the event")
            check["stdout_log_lines"] = out_path.read_bytes().count(LOG_MARKER)
            if check["stdout_log_lines"] < contestant.log_lines * n:
                problems.append(f"{check['stdout_log_lines']} log lines on stdout, expected {contestant.log_lines * n}")
            notes = [f"{check['stdout_log_lines']:,} log lines on stdout"]
            if contestant.everything_on and runner.peers is not None:
                peers = runner.peers
                want = contestant.log_lines * n
                _wait_for(lambda: peers.syslog_messages() >= want, 10)  # noqa: B023 - called right here
                check["postgres_rows"] = peers.stored_rows()
                check["syslog_messages"] = peers.syslog_messages()
                check["otlp_spans"] = peers.otlp.counts()["spans"] - spans_before
                for name in ("postgres_rows", "syslog_messages"):
                    if check[name] < want:
                        problems.append(f"{check[name]} {name.replace('_', ' ')}, expected at least {want}")
                notes += [f"{check['postgres_rows']:,} rows in PostgreSQL",
                          f"{check['syslog_messages']:,} syslog messages", f"{check['otlp_spans']:,} OTLP spans"]
            check["heads"] = record.sample_heads
            checks.append(check)
            status = "ok" if not problems else "PROBLEM: " + "; ".join(problems)
            say(f"sanity {contestant.key:9} {event.name:5} {status} ({', '.join(notes)}; "
                f"{record.connections} connection(s), {record.continues} 100-continue, "
                f"{record.chunked_bodies} chunked bodies)")
    return checks


def rounds_pass(
    runner: Runner, contestants: list[Contestant], events: list[Event], *, rounds: int, warmup: int, invocations: int
) -> list[stats.Summary]:
    say(f"== rounds: {rounds} x (events {', '.join(e.name for e in events)}) x "
        f"({' '.join(c.key for c in contestants)}), {warmup} warm-up + {invocations:,} measured invocations ==")
    runs: list[stats.Summary] = []
    for r in range(rounds):
        for event in events:
            for contestant in contestants:
                try:
                    record = runner.run(contestant, event, warmup=warmup, invocations=invocations)
                except RunFailed as exc:
                    say(f"round {r + 1} {event.name:5} {contestant.key:9} FAILED: {exc}")
                    runs.append({"contestant": contestant.key, "event": event.name, "round": r, "failed": str(exc)})
                    continue
                summary = result_of(record, runner, contestant=contestant.key, event=event.name,
                                    round=r)
                progress(summary, f"round {r + 1} {event.name:5} {contestant.key:9}")
                runs.append(summary)
    return runs


def rss_pass(runner: Runner, contestants: list[Contestant], event: Event, invocations: int) -> list[stats.Summary]:
    say(f"== RSS pass: one process per contestant, {invocations:,} {event.name} invocations ==")
    runs: list[stats.Summary] = []
    for contestant in contestants:
        try:
            record = runner.run(contestant, event, warmup=0, invocations=invocations)
        except RunFailed as exc:
            say(f"rss {contestant.key:9} FAILED: {exc}")
            continue
        summary = result_of(record, runner, contestant=contestant.key, event=event.name, round=0)
        progress(summary, f"rss {contestant.key:9}")
        runs.append(summary)
    return runs


# -- profiles ----------------------------------------------------------------------------------------------------
def _group_of(filename: str) -> str:
    """Where a profiled function lives: our file, a third-party package, a stdlib module, or a C function."""
    if filename == "~":
        return "C functions"
    path = Path(filename)
    with contextlib.suppress(ValueError):
        rel = path.relative_to(ROOT)
        if rel.parts[0] != ".venv":
            return str(rel)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1] if len(parts) > parts.index("site-packages") + 1 else filename
    for i, part in enumerate(parts):
        if part.startswith("python3") and i + 1 < len(parts):
            return "stdlib " + "/".join(parts[i + 1 : i + 2]).removesuffix(".py")
    return filename


def _short(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    group = _group_of(filename)
    where = group if group.endswith(".py") else f"{group}/{Path(filename).name}"
    return f"{where}:{line}({name})"


def profile_summary(path: Path, top: int = 25) -> dict[str, Any]:
    """Own time per function and per file/package, as fractions of the profiled thread's total."""
    entries = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values()) or 1.0
    groups: dict[str, float] = {}
    for func, (_cc, _nc, tt, _ct, _callers) in entries.items():
        groups[_group_of(func[0])] = groups.get(_group_of(func[0]), 0.0) + tt
    functions = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {
        "total_s": total,
        "groups": sorted(((g, t / total) for g, t in groups.items()), key=lambda x: x[1], reverse=True)[:top],
        "functions": [[_short(f), v[1], v[2] / total, v[3] / total] for f, v in functions],
    }


def profile_pass(runner: Runner, contestant: Contestant, event: Event, invocations: int) -> dict[str, Any]:
    """Run once under `bench.profile_threads` (cProfile per thread, CPU time); summarise each thread's profile."""
    prefix = runner.workdir / f"profile-{contestant.key}-{event.name}"
    argv = [sys.executable, "-m", "bench.profile_threads", str(prefix), *contestant.argv()[1:]]
    runner.run(contestant, event, warmup=0, invocations=invocations, argv=argv, graceful=True,
               seconds_per_invocation=0.2)  # profiled, "everything on" with a large event takes ~50 ms each
    files = sorted(prefix.parent.glob(f"{prefix.name}-*.pstats"))
    if not files:
        raise RunFailed(f"{contestant.key}: no profile written (the process did not exit cleanly)")
    threads = {}
    for path in files:
        summary = profile_summary(path)
        summary["pstats_file"] = str(path)
        threads[path.stem.removeprefix(prefix.name + "-")] = summary
    return {"invocations": invocations, "threads": threads}


PY_SPY_RATE_HZ = 1000


def _spy_group(frame: str) -> str:
    """`func (path/to/file.py:12)` -> the file's group, as for cProfile entries."""
    where = frame.rsplit(" (", 1)[-1].rstrip(")")
    filename = where.rsplit(":", 1)[0]
    return _group_of(filename) if "/" in filename else filename


def pyspy_summary(path: Path, top: int = 25) -> dict[str, dict[str, Any]]:
    """Per thread, from py-spy's collapsed stacks: samples, and own-time shares per file/package and per function."""
    per_thread: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        thread, _, name = frames[0].partition(": ")  # "thread (tid): name", the name only when py-spy could read it
        leaf = frames[-1] if len(frames) > 1 else "(no Python frame)"
        entry = per_thread.setdefault(thread, {"samples": 0, "groups": {}, "functions": {}, "name": ""})
        entry["name"] = entry["name"] or name
        count = int(count_text)
        entry["samples"] += count
        entry["groups"][_spy_group(leaf)] = entry["groups"].get(_spy_group(leaf), 0) + count
        entry["functions"][leaf] = entry["functions"].get(leaf, 0) + count
    out: dict[str, dict[str, Any]] = {}
    for thread, entry in per_thread.items():
        total = entry["samples"] or 1
        out[f"{thread}: {entry['name']}" if entry["name"] else thread] = {
            "samples": entry["samples"],
            "cpu_s": entry["samples"] / PY_SPY_RATE_HZ,
            "groups": sorted(((g, n / total) for g, n in entry["groups"].items()), key=lambda x: -x[1])[:top],
            "functions": sorted(((f, n / total) for f, n in entry["functions"].items()), key=lambda x: -x[1])[:top],
        }
    return out


def pyspy_pass(runner: Runner, contestant: Contestant, event: Event, invocations: int) -> dict[str, Any]:
    """Run once under `py-spy record --gil` (samples of the thread holding the GIL, i.e. running Python; a thread
    blocked in a socket call or a C extension that released the GIL is not counted) and summarise per thread."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise RunFailed("py-spy is not installed (it is in the dev extra: ./dev setup)")
    out = runner.workdir / f"pyspy-{contestant.key}-{event.name}.txt"
    argv = [py_spy, "record", "--format", "raw", "--threads", "--gil", "--rate", str(PY_SPY_RATE_HZ), "--nonblocking",
            "--output", str(out), "--", sys.executable, *contestant.argv()[1:]]
    runner.run(contestant, event, warmup=0, invocations=invocations, argv=argv, graceful=True,
               seconds_per_invocation=0.05)
    if not out.exists():
        raise RunFailed(f"{contestant.key}: py-spy wrote no profile")
    return {"invocations": invocations, "profiler": "py-spy", "raw_file": str(out), "threads": pyspy_summary(out)}


def print_pyspy(key: str, event: str, profile: dict[str, Any]) -> None:
    invocations = profile["invocations"]
    for thread, summary in profile["threads"].items():
        per_inv = summary["cpu_s"] / invocations * 1e6
        if per_inv < 1:
            continue
        say(f"\n== py-spy profile of {key}, {event} event, {thread}: {summary['samples']:,} samples at "
            f"{PY_SPY_RATE_HZ} Hz over {invocations:,} invocations incl. init: "
            f"~{per_inv:,.0f} µs CPU per invocation ==")
        say(stats.table(["where (own time)", "share"], [[g, f"{s:.1%}"] for g, s in summary["groups"][:12]]))
        say("")
        say(stats.table(["function (own time)", "share"], [[f, f"{s:.1%}"] for f, s in summary["functions"][:15]]))


def print_profile(key: str, event: str, profile: dict[str, Any]) -> None:
    if profile.get("profiler") == "py-spy":
        print_pyspy(key, event, profile)
        return
    invocations = profile["invocations"]
    for thread, summary in profile["threads"].items():
        per_inv = summary["total_s"] / invocations * 1e6
        if per_inv < 1:
            continue  # threads that did (almost) nothing
        say(f"\n== profile of {key}, {event} event, thread {thread!r}: CPU time (cProfile on thread_time), "
            f"{invocations:,} invocations incl. init: {per_inv:,.0f} µs CPU per invocation under the profiler "
            "(which inflates many small calls) ==")
        say(stats.table(["where (own CPU time)", "share"], [[g, f"{s:.1%}"] for g, s in summary["groups"][:12]]))
        say("")
        say(stats.table(["function", "calls", "own", "cumulative"],
                        [[f, f"{n:,}", f"{own:.1%}", f"{cum:.1%}"] for f, n, own, cum in summary["functions"][:20]]))


# -- the report --------------------------------------------------------------------------------------------------
def aggregate_all(runs: list[stats.Summary], contestants: list[Contestant], events: list[Event]) -> dict[str, Any]:
    ok = [r for r in runs if "failed" not in r]
    out: dict[str, Any] = {}
    for event in events:
        per: dict[str, Any] = {}
        for contestant in contestants:
            mine = [r for r in ok if r["contestant"] == contestant.key and r["event"] == event.name]
            if not mine:
                continue
            base = None
            if contestant.baseline:
                base = {r["round"]: r for r in ok
                        if r["contestant"] == contestant.baseline and r["event"] == event.name}
            per[contestant.key] = stats.aggregate(mine, base)
        out[event.name] = per
    return out


def report(results: dict[str, Any], contestants: list[Contestant], events: list[Event]) -> str:
    lines: list[str] = []
    settings = results["settings"]
    rss_by_key = {r["contestant"]: r for r in results.get("rss_pass", [])}
    ceiling = {name: agg["raw"]["median"] for name, agg in results["aggregate"].items() if "raw" in agg}
    if ceiling:
        lines.append("Runtime API server ceiling: the 'raw' client (bench/floor.py --raw: no JSON, no handler) in the "
                     "same rounds; the server's CPU per invocation is part of every contestant's cycle, as RAPID's is "
                     "on Lambda")
        rows = []
        for name, m in ceiling.items():
            rows.append([name, stats.fmt(m["inv_s"]), stats.fmt(m["cycle"], 1), stats.fmt(m["p50"], 1),
                         stats.fmt(m["server_cpu"], 1), stats.fmt(m["cpu"], 1)])
        lines.append(stats.table(["event", "inv/s", "cycle p50 µs", "latency p50 µs", "server CPU µs/inv",
                                  "client CPU µs/inv"], rows))
    for event in events:
        agg = results["aggregate"].get(event.name, {})
        lines.append("")
        lines.append(f"{event.name} event ({len(event.body):,} bytes): medians over {settings['rounds']} rounds x "
                     f"{settings['invocations']:,} invocations (after {settings['warmup']} warm-up); latency = /next "
                     "answer sent → /response received; cycle = /next → /next")
        rows = []
        for c in contestants:
            if c.key not in agg:
                continue
            m, sp = agg[c.key]["median"], agg[c.key]["spread"]
            rss20 = rss_by_key.get(c.key, {}).get("rss_end_mb", math.nan) if event.name == "small" else math.nan
            rows.append([c.key, stats.fmt(m["p50"], 1), stats.fmt(m["p90"], 1), stats.fmt(m["p99"], 1),
                         stats.fmt(m["cycle"], 1), stats.fmt(m["inv_s"]), stats.fmt(m["cpu"], 1),
                         stats.fmt(m["cpu_sched"], 1), stats.fmt(m["init"], 1), stats.fmt(m["first"], 1),
                         stats.fmt(m["rss_init"], 1), stats.fmt(m["rss_first"], 1), stats.fmt(rss20, 1),
                         f"{stats.fmt(sp['p50'] * 100)}/{stats.fmt(sp['cycle'] * 100)}"])
        lines.append(stats.table(
            ["contestant", "p50 µs", "p90 µs", "p99 µs", "cycle µs", "inv/s", "CPU µs/inv", "(sched)", "init ms",
             "1st resp ms", "RSS init MB", "after 1st", "RSS 20k MB", "spread % p50/cycle"], rows))
    lines.append("")
    lines.append("Ratios to the baseline contestant (median of the per-round ratios; baseline = awslambdaric with "
                 "the same handler)")
    rows = []
    for event in events:
        agg = results["aggregate"].get(event.name, {})
        for c in contestants:
            ratio = agg.get(c.key, {}).get("ratio")
            if not ratio:
                continue
            rows.append([event.name, c.key, c.baseline or "", *(stats.fmt_ratio(ratio[k]) for k in
                         ("p50", "p99", "cycle", "inv_s", "cpu_sched", "init", "first", "rss_init"))])
    lines.append(stats.table(["event", "contestant", "vs", "p50", "p99", "cycle", "inv/s", "CPU (sched)", "init",
                              "1st resp", "RSS init"], rows, align_left=3))
    lines.append("")
    lines.append("Where the CPU goes (medians; µs per invocation): the runtime's main thread vs its other threads "
                 "(schedstat), user vs kernel (stat), context switches, the server's own CPU, the peers' CPU "
                 "(everything on; whole run incl. init), and the load of everything else on the machine during the "
                 "window (peers included)")
    rows = []
    for event in events:
        for run_key, agg in results["aggregate"].get(event.name, {}).items():
            runs = [r for r in results["runs"] if r.get("contestant") == run_key and r.get("event") == event.name
                    and "failed" not in r]
            user = stats.median(r["cpu_user_us_per_invocation"] for r in runs)
            system = stats.median(r["cpu_system_us_per_invocation"] for r in runs)
            m = agg["median"]
            peers = {k: stats.median(r["peers_cpu_us_per_invocation"].get(k, math.nan) for r in runs)
                     for k in ("postgres", "rsyslog", "otlp")}
            peers_text = "/".join(stats.fmt(v) for v in peers.values()) if any(
                not math.isnan(v) for v in peers.values()) else "-"
            rows.append([event.name, run_key, stats.fmt(m["cpu_main"], 1), stats.fmt(m["cpu_other"], 1),
                         stats.fmt(user, 1), stats.fmt(system, 1), stats.fmt(m["cswitch"], 1),
                         stats.fmt(m["server_cpu"], 1), peers_text, stats.fmt(m["other_load"], 2)])
    lines.append(stats.table(["event", "contestant", "main thread", "other threads", "user", "kernel", "ctx sw/inv",
                              "server", "postgres/rsyslog/otlp", "other load (cores)"], rows, align_left=2))
    lines.append("")
    lines += targets_report(results)
    lines.append("")
    lines += noise_report(results)
    return "\n".join(lines)


def targets_report(results: dict[str, Any]) -> list[str]:
    rows = []
    for event, agg in results["aggregate"].items():
        for key, name, limit, unit, text in TARGETS:
            if key not in agg:
                continue
            value = agg[key].get("ratio", {}).get(name, math.nan) if unit == "ratio" else agg[key]["median"][name]
            shown = stats.fmt_ratio(value) if unit == "ratio" else f"{stats.fmt(value, 1)} MB"
            status = "-" if math.isnan(value) else ("met" if value <= limit else "NOT met")
            rows.append([event, text, shown, status])
    pipeline = results.get("logging", {}).get("targets", [])
    rows += [["-", t["text"], t["shown"], t["status"]] for t in pipeline]
    return ["Targets (issue 7, revised by DECISIONS.md)", stats.table(["event", "target", "measured", ""], rows, 2)]


def noise_report(results: dict[str, Any]) -> list[str]:
    spreads = []
    for event, agg in results["aggregate"].items():
        for key, data in agg.items():
            spreads.append((data["spread"]["p50"], data["spread"]["cycle"], f"{key}/{event}"))
    ok = [r for r in results["runs"] if "failed" not in r]
    other = sorted(r["other_load_cores"] for r in ok)
    failed = [r for r in results["runs"] if "failed" in r]
    lines = ["Noise"]
    finite = [s for s in spreads if not math.isnan(s[0])]
    if finite:
        worst = max(finite, key=lambda s: max(s[0], s[1]))
        lines.append(
            "  spread between rounds ((max - min) / median): p50 latency median "
            f"{stats.median(s[0] for s in finite):.0%}, cycle median {stats.median(s[1] for s in finite):.0%}; "
            f"worst {worst[2]} (p50 {worst[0]:.0%}, cycle {worst[1]:.0%})")
    if other:
        lines.append(f"  CPU used by other processes during the measured windows: median "
                     f"{stats.percentile(other, 0.5):.2f}, max {other[-1]:.2f} of {ok[0]['machine_cores']} cores "
                     "(for 'on' this includes PostgreSQL, rsyslog and the OTLP receiver)")
    speeds = sorted(r["speed_probe_ns"] for r in ok)
    if speeds:
        lines.append(f"  machine speed (CPU ns per iteration of a fixed Python loop, probed before each run): median "
                     f"{stats.percentile(speeds, 0.5):.0f}, fastest {speeds[0]:.0f}, slowest {speeds[-1]:.0f}")
    lines.append(f"  load average at start {results['meta']['loadavg_start']}, at end {results['meta']['loadavg_end']}")
    if failed:
        lines.append(f"  {len(failed)} run(s) failed: see 'runs' in the JSON")
    return lines


# -- main --------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every contestant (default 3)")
    parser.add_argument("--invocations", type=int, default=2000, help="measured invocations per run (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured invocations before them (default 100)")
    parser.add_argument("--rss-invocations", type=int, default=20_000,
                        help="invocations of the RSS pass (default 20000; 0 skips it)")
    parser.add_argument("--sanity-invocations", type=int, default=50, help="per contestant and event (0 skips)")
    parser.add_argument("--events", default="small,large", help="comma-separated: small, large")
    parser.add_argument("--contestants", default=",".join(c.key for c in CONTESTANTS),
                        help="comma-separated, run in this order: " + ", ".join(
                            f"{c.key} ({c.label})" for c in CONTESTANTS))
    parser.add_argument("--no-logging", action="store_true", help="skip the log pipeline micro-benchmark")
    parser.add_argument("--profile", default="", help="comma-separated contestants to run once under --profiler")
    parser.add_argument("--profile-invocations", type=int, default=2000)
    parser.add_argument("--profiler", choices=["cprofile", "py-spy"], default="cprofile",
                        help="how --profile profiles: cProfile per thread (default) or py-spy sampling")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take beyond 10 ms/invocation")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of the JSON results")
    parser.add_argument("--quick", action="store_true",
                        help="a short run while developing: 1 round x 300 invocations, no RSS pass")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.invocations, args.warmup = 1, 300, 20
        args.rss_invocations, args.sanity_invocations = 0, 20
    unknown = [k for k in args.contestants.split(",") if k not in BY_KEY]
    unknown += [k for k in args.profile.split(",") if k and k not in BY_KEY]
    if unknown:
        parser.error(f"unknown contestant(s) {', '.join(unknown)}; choose from {', '.join(BY_KEY)}")
    bad_events = [e for e in args.events.split(",") if e not in event_defs.EVENTS]
    if bad_events:
        parser.error(f"unknown event(s) {', '.join(bad_events)}; choose from {', '.join(event_defs.EVENTS)}")
    return args


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def meta() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ric = version("awslambdaric")
    except PackageNotFoundError:
        ric = "not installed"
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "python": sys.version,
        "executable": sys.executable,
        "awslambdaric": ric,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": procfs.loadavg(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_modified": _git("status", "--porcelain", "--", "bootstrap", "runtime", "telemetry").splitlines(),
        "otel_module_present": (ROOT / "telemetry" / "otel.py").exists(),
    }


@contextlib.contextmanager
def maybe_peers(runner: Runner, contestants: list[Contestant], workdir: Path) -> Iterator[list[Contestant]]:
    """Start the peers if a contestant needs them; yields the contestants that can run."""
    runnable = contestants
    with contextlib.ExitStack() as stack:
        if any(c.everything_on for c in contestants):
            try:
                from bench import peers as peers_module
                from tests.peers import PeerUnavailable

                try:
                    runner.peers = stack.enter_context(peers_module.started(ROOT, workdir / "spill"))
                except PeerUnavailable as exc:
                    say(f"'everything on' skipped: {exc}")
            except ImportError as exc:  # psycopg or opentelemetry-proto missing
                say(f"'everything on' skipped: the test peers cannot be imported ({exc}); run ./dev setup")
            if runner.peers is None:
                runnable = [c for c in contestants if not c.everything_on]
            else:
                say(f"peers: PostgreSQL {runner.peers.postgres.dsn}, rsyslog {runner.peers.rsyslog.tcp_url}, "
                    f"OTLP {runner.peers.otlp.endpoint}")
        try:
            yield runnable
        finally:
            runner.peers = None


def run_logging_bench(out_dir: Path, stamp: str) -> dict[str, Any]:
    """`python -m bench.bench_logging` in its own process (its own GIL, its own peers); returns its JSON."""
    path = out_dir / f"{stamp}-logging.json"
    say("\n== log pipeline micro-benchmark (python -m bench.bench_logging) ==")
    done = subprocess.run([sys.executable, "-m", "bench.bench_logging", "--json", str(path)], cwd=ROOT, check=False)
    if done.returncode != 0 or not path.exists():
        say(f"bench_logging failed (exit status {done.returncode})")
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run_passes(
    args: argparse.Namespace, runner: Runner, contestants: list[Contestant], events: list[Event]
) -> dict[str, Any]:
    """Everything that needs the server: sanity, rounds, RSS pass, profiles; returns their results."""
    results: dict[str, Any] = {}
    with maybe_peers(runner, contestants, runner.workdir) as runnable:
        results["contestants"] = [c.key for c in runnable]
        if runner.peers is not None:
            results["everything_on_env"] = runner.peers.env
        if args.sanity_invocations:
            results["sanity"] = sanity_pass(runner, runnable, events, args.sanity_invocations)
            spans = sum(c.get("otlp_spans", 0) for c in results["sanity"])
            results["otel_wired"] = spans > 0
            if runner.peers is not None and spans:
                say(f"OTLP: {spans:,} spans received in the sanity pass: OpenTelemetry is wired into bootstrap.")
            elif runner.peers is not None:
                say("NOTE: the OTLP receiver got no spans: OpenTelemetry is not wired into bootstrap yet, so "
                    "'everything on' runs without it (OTEL_* are set and will be used once it is).")
        results["runs"] = rounds_pass(runner, runnable, events, rounds=args.rounds, warmup=args.warmup,
                                      invocations=args.invocations)
        if args.rss_invocations:
            small = next((e for e in events if e.name == "small"), events[0])
            results["rss_pass"] = rss_pass(runner, runnable, small, args.rss_invocations)
        results["profiles"] = {}
        for key in filter(None, args.profile.split(",")):
            for event in events:
                try:
                    profile = pyspy_pass if args.profiler == "py-spy" else profile_pass
                    results["profiles"][f"{key}/{event.name}"] = profile(
                        runner, BY_KEY[key], event, args.profile_invocations)
                except RunFailed as exc:
                    say(f"profile {key}: FAILED: {exc}")
    for stderr_file in sorted(runner.workdir.glob("*.stderr")):
        # a profiled run ends with the runtime's own complaint about the refused /next: expected, not shown
        if stderr_file.stat().st_size and not stderr_file.stem.endswith("-profiled"):
            results.setdefault("stderr", {})[stderr_file.stem] = _tail(stderr_file, 0, 4000)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    contestants = [BY_KEY[k] for k in args.contestants.split(",")]
    events = [Event(n, event_defs.EVENTS[n](), event_defs.encode(event_defs.EVENTS[n]())) for n in
              args.events.split(",")]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": meta(), "settings": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    results["events"] = {e.name: len(e.body) for e in events}
    server = BenchServer()
    try:
        with tempfile.TemporaryDirectory(prefix="flightrec-bench-") as tmp:
            runner = Runner(server, Path(tmp), args.timeout)
            say(f"Runtime API server on {server.address}; work files in {tmp}")
            results.update(run_passes(args, runner, contestants, events))
    finally:
        server.close()
    runnable = [BY_KEY[k] for k in results["contestants"]]
    results["aggregate"] = aggregate_all(results["runs"], runnable, events)
    if not args.no_logging:
        results["logging"] = run_logging_bench(args.out, stamp)
    results["meta"]["loadavg_end"] = procfs.loadavg()
    results["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = report(results, runnable, events)
    results["report"] = text
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(results, default=str))
    for name, profile in results["profiles"].items():
        key, event = name.split("/")
        print_profile(key, event, profile)
    for name, tail in results.get("stderr", {}).items():
        say(f"\nstderr of {name} (tail):\n{tail.rstrip()}")
    say("\n" + text)
    say(f"\nraw data: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
