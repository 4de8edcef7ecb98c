"""What the benchmark reads about a process from /proc (Linux only; psutil is not a dependency).

CPU comes from two places on purpose: `/proc/<pid>/stat` utime+stime (all threads, exited ones included, but in
clock ticks: 10 ms each, so a 2,000-invocation window is only good to a few µs per invocation) and the per-thread
`schedstat` run time (nanoseconds, live threads only), which also tells the main thread from background threads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_NS_PER_TICK = 1_000_000_000 // CLOCK_TICKS_PER_S


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU used by a process so far; fields are nanoseconds."""

    user_ns: int  # utime from /proc/<pid>/stat (tick resolution)
    system_ns: int  # stime from /proc/<pid>/stat (tick resolution)
    main_thread_ns: int  # schedstat run time of the main thread (ns resolution), -1 when unavailable
    other_threads_ns: int  # schedstat run time of the other live threads, -1 when unavailable

    @property
    def total_ns(self) -> int:
        return self.user_ns + self.system_ns

    @property
    def sched_total_ns(self) -> int:
        if self.main_thread_ns < 0:
            return -1
        return self.main_thread_ns + self.other_threads_ns


def _stat_ticks(path: str) -> tuple[int, int]:
    """utime and stime (fields 14 and 15 of proc(5)); the command name may hold spaces, so split after ')'."""
    with open(path, "rb") as fh:
        data = fh.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]), int(fields[12])


def _schedstat_ns(path: str) -> int:
    with open(path, "rb") as fh:
        return int(fh.read().split(None, 1)[0])


def process_cpu_ns(pid: int) -> int:
    """utime+stime of `pid` in ns (tick resolution), 0 when it is gone."""
    try:
        utime, stime = _stat_ticks(f"/proc/{pid}/stat")
    except (OSError, ValueError):
        return 0
    return (utime + stime) * _NS_PER_TICK


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (e.g. PostgreSQL's backends under the postmaster)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if int(data[data.rindex(b")") + 2 :].split()[1]) == pid:
            out.append(int(entry))
    return out


def cpu(pid: int) -> CpuSample:
    """A CPU sample of `pid` (raises OSError when the process is gone)."""
    utime, stime = _stat_ticks(f"/proc/{pid}/stat")
    main_ns = other_ns = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                ns = _schedstat_ns(f"/proc/{pid}/task/{tid}/schedstat")
            except (OSError, ValueError):
                continue  # the thread ended meanwhile
            if tid == str(pid):
                main_ns = ns
            else:
                other_ns += ns
    except OSError:
        main_ns = other_ns = -1
    return CpuSample(utime * _NS_PER_TICK, stime * _NS_PER_TICK, main_ns, other_ns)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and the RSS split (anon, file, shmem) in KiB, from /proc/<pid>/status."""
    wanted = (b"VmRSS", b"VmHWM", b"RssAnon", b"RssFile", b"RssShmem")
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            name, _, value = line.partition(b":")
            if name in wanted:
                out[name.decode()] = int(value.split()[0])
    return out


def speed_probe_ns(iterations: int = 200_000) -> float:
    """CPU ns per iteration of a fixed Python loop: how fast this machine runs Python right now.

    Recorded before every run because a shared virtual machine's speed drifts (the host's other tenants), and a
    figure measured while the probe was slow is a slow-machine figure, not a slow-runtime figure.
    """
    started = time.thread_time_ns()
    x = 0
    for i in range(iterations):
        x ^= i
    return (time.thread_time_ns() - started) / iterations


def loadavg() -> tuple[float, float, float]:
    with open("/proc/loadavg") as fh:
        one, five, fifteen = fh.read().split()[:3]
    return float(one), float(five), float(fifteen)


def system_busy_ns() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine from /proc/stat, to tell how much else ran during a window."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) * _NS_PER_TICK, total * _NS_PER_TICK


def context_switches(pid: int) -> int:
    """Voluntary plus involuntary context switches of all live threads of `pid` (each /next wait is one)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status", "rb") as fh:
                for line in fh:
                    if line.startswith((b"voluntary_ctxt_switches", b"nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What is read at each end of a measured window."""

    cpu: CpuSample
    context_switches: int
    machine_busy_ns: int
    machine_total_ns: int


def snapshot(pid: int) -> Snapshot:
    busy, total = system_busy_ns()
    return Snapshot(cpu(pid), context_switches(pid), busy, total)
