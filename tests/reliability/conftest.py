"""The reliability suites reuse the integration fixtures (`task_root`) and the session peers of tests/conftest.py.

Slow suites write their numbers to `tests/reliability/results/<name>.json`; this file also prints every summary
written during the session at the end of the run, so the counts show without `-s` (e.g. under `./dev slow`).
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import task_root
from tests.reliability.helpers import RESULTS, WRITTEN

__all__ = ["pytest_terminal_summary", "task_root"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    slow = [(name, summary) for name, summary in WRITTEN if name != "fault_matrix"]
    if not slow:
        return
    terminalreporter.section("reliability summaries")
    for name, summary in slow:
        terminalreporter.write_line(f"{name} ({RESULTS / (name + '.json')}):")
        for key, value in sorted(summary.items()):
            terminalreporter.write_line(f"  {key}: {json.dumps(value)}")
