"""Helpers for running the real `./bootstrap` (or awslambdaric) under the project's emulator."""

from __future__ import annotations

import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runtime.emulator import Emulator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def task_root(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write `<name>.py` with the given source into a fresh task root and return the folder."""
    root = tmp_path / "task"
    root.mkdir()

    def write(name: str, source: str) -> Path:
        path = root / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return root

    return write


@contextmanager
def emulator(handler: str, task_root: Path = REPO, **kwargs: object) -> Iterator[Emulator]:
    """An emulator running the real bootstrap, capturing its output and platform lines."""
    platform: list[str] = []
    kwargs.setdefault("timeout_s", 5.0)
    env = dict(kwargs.pop("env", None) or {})  # type: ignore[call-overload]
    env.setdefault("LOGS_SPILL_DIR", tempfile.mkdtemp(prefix="flightrec-spill-"))  # no test adopts another's spill
    kwargs["env"] = env
    with Emulator(handler=handler, task_root=task_root, capture_output=True, platform_sink=platform.append,
                  **kwargs) as emu:  # type: ignore[arg-type]
        emu.test_platform_lines = platform  # type: ignore[attr-defined]
        yield emu
