"""`runtime.snapstart`: the hook registries (ours and AWS's `snapshot_restore_py`) and the hand-over around
`/runtime/restore/next`, driven by FakeTransport scripts."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import snapshot_restore_py

from runtime import snapstart
from runtime.api_client import Response, RuntimeApiClient
from runtime.errors import RuntimeApiError
from tests.fakes.transport import ACCEPTED, FakeTransport

RESTORE_NEXT = "/2018-06-01/runtime/restore/next"
OK = Response(200, {}, b"")


@pytest.fixture(autouse=True)
def empty_registries() -> Iterator[None]:
    registries = (snapstart._before_snapshot, snapstart._after_restore, snapshot_restore_py.get_before_snapshot(),
                  snapshot_restore_py.get_after_restore())
    saved = [list(r) for r in registries]
    for registry in registries:
        registry.clear()
    yield
    for registry, items in zip(registries, saved, strict=True):
        registry[:] = items


def test_the_hand_over_runs_every_step_in_order():
    # GIVEN hooks registered through both APIs, with arguments and as decorators
    calls: list[str] = []

    @snapstart.register_before_snapshot
    def first() -> None:
        calls.append("user before 1")

    snapstart.register_before_snapshot(calls.append, "user before 2")
    snapshot_restore_py.register_before_snapshot(calls.append, "aws before")
    snapstart.register_after_restore(calls.append, "user after 1")
    def note(what: str) -> None:
        calls.append(what)

    snapstart.register_after_restore(note, what="user after 2")  # keyword arguments are passed on
    snapshot_restore_py.register_after_restore(calls.append, "aws after")
    transport = FakeTransport([OK])

    # WHEN the runtime hands over, with its own steps around restore/next
    code = snapstart.checkpoint(
        RuntimeApiClient(transport),
        before_snapshot=lambda: calls.append("runtime before"),
        after_restore=lambda: calls.append(f"runtime after ({len(transport.sent)} call)"),
    )

    # THEN: user before-hooks newest first (ours, then AWS's), the runtime's, restore/next, the runtime's, user after
    assert code is None
    assert calls == ["user before 2", "user before 1", "aws before", "runtime before", "runtime after (1 call)",
                     "user after 1", "user after 2", "aws after"]
    assert [(s.method, s.path) for s in transport.sent] == [("GET", RESTORE_NEXT)]
    assert first is not None  # the decorator returns the function


def test_a_failing_before_snapshot_hook_is_an_init_error_with_status_64():
    def broken() -> None:
        raise OSError("pool would not close")

    snapstart.register_before_snapshot(broken)
    recorded = []
    transport = FakeTransport([ACCEPTED])
    code = snapstart.checkpoint(RuntimeApiClient(transport), on_error=recorded.append)
    assert code == snapstart.EXIT_BEFORE_SNAPSHOT == 64
    (post,) = transport.sent  # no restore/next: a broken environment is not snapshotted
    assert post.path == "/2018-06-01/runtime/init/error"
    assert post.headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.BeforeSnapshotError"
    body = json.loads(post.body)
    assert (body["errorType"], body["errorMessage"]) == ("OSError", "pool would not close")
    assert any("raise OSError" in frame for frame in body["stackTrace"])
    assert recorded[0].header_type == "Runtime.BeforeSnapshotError"


def test_a_failing_after_restore_hook_goes_to_restore_error_with_status_65():
    snapstart.register_after_restore(lambda: 1 / 0)
    transport = FakeTransport([OK, ACCEPTED])
    code = snapstart.checkpoint(RuntimeApiClient(transport))
    assert code == snapstart.EXIT_AFTER_RESTORE == 65
    restore, error = transport.sent
    assert (restore.path, error.path) == (RESTORE_NEXT, "/2018-06-01/runtime/restore/error")
    assert error.headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.AfterRestoreError"
    assert json.loads(error.body)["errorType"] == "ZeroDivisionError"


def test_a_refused_restore_next_ends_the_process_like_any_broken_api():
    transport = FakeTransport([Response(500, {}, b"Container error")])
    with pytest.raises(RuntimeApiError, match="restore/next"):
        snapstart.checkpoint(RuntimeApiClient(transport))


def test_before_snapshot_hooks_run_once():
    calls: list[str] = []
    snapstart.register_before_snapshot(calls.append, "once")
    snapstart.run_before_snapshot()
    snapstart.run_before_snapshot()
    assert calls == ["once"]
