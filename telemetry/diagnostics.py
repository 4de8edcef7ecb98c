"""The runtime's own trouble, said on the real stderr (CloudWatch on Lambda): never into the log pipeline, whose
trouble it may be, nor into a span. A closed or broken stderr is ignored: diagnosing must never raise.
Imports: stdlib.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO


def say(out: TextIO, message: str) -> None:
    try:
        out.write(f"flightrec: {message}\n")
        out.flush()
    except (OSError, ValueError):
        pass


def diagnoser(out: TextIO) -> Callable[[str], None]:
    """`say` bound to `out`."""
    return lambda message: say(out, message)
