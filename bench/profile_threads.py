"""Run a runtime under cProfile in every thread, timing CPU rather than wall time.

    python -m bench.profile_threads OUT_PREFIX (SCRIPT | -m MODULE) [ARGS...]

Why not `python -m cProfile`: it profiles the main thread only, with wall time, so a runtime that waits for its
log shipper shows up as "99% in lock.acquire" and the shipper's own work (rendering, PostgreSQL, syslog) is not
seen at all. Here each thread gets its own profiler on `time.thread_time_ns` (CPU of that thread), started by a
`threading.setprofile` hook for threads created later, and every profile is written when the program ends (the
benchmark hangs up on the runtime, which then exits): `OUT_PREFIX-<thread name>.pstats`.
"""

from __future__ import annotations

import atexit
import cProfile
import re
import runpy
import sys
import threading
import time
from types import FrameType
from typing import Any

_profiles: list[tuple[str, cProfile.Profile]] = []


def _new_profiler() -> cProfile.Profile:
    return cProfile.Profile(time.thread_time_ns, 1e-9)


def _start_in_thread(frame: FrameType, event: str, arg: Any) -> None:
    """The first profile event of a new thread: replace this hook by a profiler of that thread's own."""
    del frame, event, arg
    sys.setprofile(None)
    profiler = _new_profiler()
    _profiles.append((threading.current_thread().name, profiler))
    profiler.enable()


def _dump(prefix: str) -> None:
    seen: dict[str, int] = {}
    for name, profiler in _profiles:
        profiler.disable()  # only stops the calling thread's; the others are snapshotted as they are
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        seen[safe] = seen.get(safe, 0) + 1
        suffix = f"-{seen[safe]}" if seen[safe] > 1 else ""
        profiler.dump_stats(f"{prefix}-{safe}{suffix}.pstats")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    prefix, target = argv[0], argv[1:]
    atexit.register(_dump, prefix)
    threading.setprofile(_start_in_thread)
    main_profiler = _new_profiler()
    _profiles.append(("main", main_profiler))
    code = 0
    main_profiler.enable()
    try:
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(target)
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        main_profiler.disable()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
