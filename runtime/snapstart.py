"""SnapStart runtime hooks: code to run before Lambda snapshots the initialised environment and after it restores
a copy of it.

Users register hooks from their module (at import, i.e. during init)::

    from runtime.snapstart import register_before_snapshot, register_after_restore

    @register_before_snapshot
    def close_pool() -> None: ...

    register_after_restore(reconnect, "arg", retries=3)

The functions mirror AWS's `snapshot_restore_py` package (same signature, usable as decorators), and hooks
registered through that package run too, so code written for AWS's Python runtime works unchanged. Importing
this module imports nothing but the standard library's `sys`.

The hand-over (`checkpoint`), when `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`: the user's before-snapshot hooks
(last registered first, as awslambdaric runs them), then the runtime's own (telemetry flushes and closes every
sink connection: a socket or database session in a snapshot would be shared by every restored copy), then
`GET /runtime/restore/next`, which returns once this copy is restored, then the runtime's after-restore step,
then the user's after-restore hooks (in registration order). A failing before-snapshot hook is an init error
with `Runtime.BeforeSnapshotError` and exit status 64; a failing after-restore hook goes to
`/runtime/restore/error` with `Runtime.AfterRestoreError` and exit status 65, as with awslambdaric.
Imports: stdlib; `runtime.errors` and `runtime.model` when a hook fails.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from runtime.api_client import RuntimeApiClient
    from runtime.model import ErrorReport

F = TypeVar("F", bound=Callable[..., Any])
Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

SNAP_START = "snap-start"
BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
AFTER_RESTORE_ERROR = "Runtime.AfterRestoreError"
EXIT_BEFORE_SNAPSHOT = 64
EXIT_AFTER_RESTORE = 65

_before_snapshot: list[Hook] = []
_after_restore: list[Hook] = []


def register_before_snapshot(func: F, *args: Any, **kwargs: Any) -> F:
    """Run `func(*args, **kwargs)` before the snapshot is taken; returns `func`, so it works as a decorator."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func: F, *args: Any, **kwargs: Any) -> F:
    """Run `func(*args, **kwargs)` after this environment is restored from the snapshot; returns `func`."""
    _after_restore.append((func, args, kwargs))
    return func


def _aws_registry(getter: str) -> list[Hook]:
    """Hooks registered through AWS's `snapshot_restore_py`, if the user's code imported it (never imported here:
    a function that does not use it must not pay for it)."""
    module = sys.modules.get("snapshot_restore_py")
    registry = getattr(module, getter, None) if module is not None else None
    return registry() if callable(registry) else []


def run_before_snapshot() -> None:
    """Every before-snapshot hook once, the most recently registered first (ours, then `snapshot_restore_py`'s)."""
    for registry in (_before_snapshot, _aws_registry("get_before_snapshot")):
        while registry:
            func, args, kwargs = registry.pop()
            func(*args, **kwargs)


def run_after_restore() -> None:
    """Every after-restore hook, in registration order (ours, then `snapshot_restore_py`'s)."""
    for registry in (_after_restore, _aws_registry("get_after_restore")):
        for func, args, kwargs in registry:
            func(*args, **kwargs)


def _report(exc: BaseException, header_type: str) -> ErrorReport:
    from runtime.errors import report_from

    return report_from(exc)._replace(header_type=header_type)


def _nothing() -> None:
    return None


def _ignore(report: ErrorReport) -> None:
    del report


def checkpoint(
    client: RuntimeApiClient,
    before_snapshot: Callable[[], None] = _nothing,
    after_restore: Callable[[], None] = _nothing,
    on_error: Callable[[ErrorReport], None] = _ignore,
) -> int | None:
    """The SnapStart hand-over (see the module docstring); None to go on to the invocation loop, or the exit
    status after a failing hook (its error was passed to `on_error`, to be recorded, and posted)."""
    try:
        run_before_snapshot()
    except (Exception, SystemExit) as exc:
        report = _report(exc, BEFORE_SNAPSHOT_ERROR)
        on_error(report)
        client.post_init_error(report)
        return EXIT_BEFORE_SNAPSHOT
    before_snapshot()
    client.restore_next()  # a broken Runtime API raises RuntimeApiError: the process exits, as anywhere else
    after_restore()
    try:
        run_after_restore()
    except (Exception, SystemExit) as exc:
        report = _report(exc, AFTER_RESTORE_ERROR)
        on_error(report)
        client.post_restore_error(report)
        return EXIT_AFTER_RESTORE
    return None
