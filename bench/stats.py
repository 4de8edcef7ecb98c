"""From raw samples to figures: per-run summaries, medians over rounds, ratios from the same round, the table.

Why medians of per-round figures (and medians of per-round ratios): the machine has two cores and other work may
run at any moment. A disturbance hits one round of one contestant; the median over rounds drops it, and a ratio
taken within one round compares contestants that ran seconds apart under the same conditions.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from bench.server import RunRecord

Summary = dict[str, Any]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); `sorted_values` must be sorted."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _dist_us(values_ns: Iterable[int]) -> dict[str, float]:
    ordered = sorted(v / 1000 for v in values_ns)
    if not ordered:
        return {}
    return {
        "p50": percentile(ordered, 0.50),
        "p90": percentile(ordered, 0.90),
        "p99": percentile(ordered, 0.99),
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "max": ordered[-1],
    }


def summarise(record: RunRecord, cores: int | None = None) -> Summary:
    """The figures of one run (times in µs unless the name says otherwise)."""
    n = record.invocations
    start, end = record.start, record.end
    assert start is not None
    assert end is not None
    window_ns = record.window_end_ns - record.window_start_ns
    cpu_ns = end.cpu.total_ns - start.cpu.total_ns
    sched_ns = end.cpu.sched_total_ns - start.cpu.sched_total_ns
    machine_busy = end.machine_busy_ns - start.machine_busy_ns
    others_busy = machine_busy - (sched_ns if sched_ns >= 0 else cpu_ns) - record.server_cpu_ns
    return {
        "invocations": n,
        "warmup": record.warmup,
        "latency_us": _dist_us(record.latencies_ns),
        "cycle_us": _dist_us(record.cycles_ns),
        "invocations_per_s": n / window_ns * 1e9 if window_ns else math.nan,
        "cpu_us_per_invocation": cpu_ns / n / 1000,  # /proc/<pid>/stat utime+stime, tick resolution
        "cpu_user_us_per_invocation": (end.cpu.user_ns - start.cpu.user_ns) / n / 1000,
        "cpu_system_us_per_invocation": (end.cpu.system_ns - start.cpu.system_ns) / n / 1000,
        "cpu_sched_us_per_invocation": sched_ns / n / 1000 if sched_ns >= 0 else math.nan,
        "cpu_main_thread_us_per_invocation": (end.cpu.main_thread_ns - start.cpu.main_thread_ns) / n / 1000,
        "cpu_other_threads_us_per_invocation": (end.cpu.other_threads_ns - start.cpu.other_threads_ns) / n / 1000,
        "context_switches_per_invocation": (end.context_switches - start.context_switches) / n,
        "server_cpu_us_per_invocation": record.server_cpu_ns / n / 1000,
        # CPU used by everything else on the machine during the window, in cores (the noise indicator)
        "other_load_cores": others_busy / window_ns if window_ns else math.nan,
        "machine_cores": cores or os.cpu_count() or 1,
        "init_ms": (record.first_next_ns - record.spawned_ns) / 1e6,
        "first_response_ms": (record.first_response_ns - record.spawned_ns) / 1e6,
        "rss_init_mb": record.rss_init_kib.get("VmRSS", 0) / 1024,
        "rss_first_mb": record.rss_first_kib.get("VmRSS", 0) / 1024 if record.rss_first_kib else math.nan,
        "rss_end_mb": record.rss_end_kib.get("VmRSS", 0) / 1024,
        "rss_peak_mb": record.rss_end_kib.get("VmHWM", 0) / 1024,
        "rss_init_kib": record.rss_init_kib,
        "rss_end_kib": record.rss_end_kib,
        "errors": record.errors,
        "connections": record.connections,
        "continues": record.continues,
        "chunked_bodies": record.chunked_bodies,
        "window_s": window_ns / 1e9,
    }


# -- figures and how they are looked up in a summary -------------------------------------------------------------
FIGURES: dict[str, tuple[str, ...]] = {
    "p50": ("latency_us", "p50"),
    "p90": ("latency_us", "p90"),
    "p99": ("latency_us", "p99"),
    "cycle": ("cycle_us", "p50"),
    "cycle_mean": ("cycle_us", "mean"),
    "inv_s": ("invocations_per_s",),
    "cpu": ("cpu_us_per_invocation",),
    "cpu_sched": ("cpu_sched_us_per_invocation",),
    "cpu_main": ("cpu_main_thread_us_per_invocation",),
    "cpu_other": ("cpu_other_threads_us_per_invocation",),
    "cswitch": ("context_switches_per_invocation",),
    "server_cpu": ("server_cpu_us_per_invocation",),
    "other_load": ("other_load_cores",),
    "init": ("init_ms",),
    "first": ("first_response_ms",),
    "rss_init": ("rss_init_mb",),
    "rss_first": ("rss_first_mb",),
    "rss_end": ("rss_end_mb",),
}


def figure(summary: Summary, name: str) -> float:
    value: Any = summary
    for key in FIGURES[name]:
        value = value.get(key, math.nan) if isinstance(value, dict) else math.nan
    return float(value)


def median(values: Iterable[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def spread(values: Sequence[float]) -> float:
    """(max - min) / median, as a fraction: how much the rounds disagree."""
    clean = [v for v in values if not math.isnan(v)]
    if len(clean) < 2:
        return math.nan
    mid = statistics.median(clean)
    return (max(clean) - min(clean)) / mid if mid else math.nan


def aggregate(runs: list[Summary], baseline_runs: dict[int, Summary] | None) -> Summary:
    """Medians over rounds of every figure, spreads, and medians of the per-round ratios to the baseline."""
    out: Summary = {"rounds": len(runs)}
    out["median"] = {name: median(figure(r, name) for r in runs) for name in FIGURES}
    out["spread"] = {name: spread([figure(r, name) for r in runs]) for name in ("p50", "cycle", "cpu", "init")}
    if baseline_runs:
        ratios: dict[str, float] = {}
        for name in FIGURES:
            per_round = []
            for r in runs:
                base = baseline_runs.get(r["round"])
                if base is None:
                    continue
                b = figure(base, name)
                if b and not math.isnan(b):
                    per_round.append(figure(r, name) / b)
            ratios[name] = median(per_round)
        out["ratio"] = ratios
    return out


# -- text output -------------------------------------------------------------------------------------------------
def fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align_left: int = 1) -> str:
    """A plain text table: the first `align_left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < align_left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                          strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
