"""Specification of `telemetry.context`: the per-invocation log context lives in one ContextVar, set and reset."""

from __future__ import annotations

import contextvars
import threading

import pytest

from runtime.model import Invocation
from telemetry.context import LogContext, current, invocation_scope


def _invocation(request_id: str, **fields: object) -> Invocation:
    return Invocation(request_id=request_id, body=b"{}", **fields)  # type: ignore[arg-type]


def test_the_scope_sets_the_context_from_the_invocation_and_resets_it():
    # GIVEN no invocation running, and an invocation with a tenant and an X-Ray header
    assert current() is None
    inv = _invocation("req-1", tenant_id="tenant-a", trace_id="Root=1-abc;Parent=def;Sampled=1")

    # WHEN its scope is entered
    with invocation_scope(inv, cold_start=True) as ctx:
        inside = current()

    # THEN inside, the context carries the invocation's ids
    assert inside is ctx
    assert inside == LogContext(
        request_id="req-1", cold_start=True, tenant_id="tenant-a", xray_trace_id="Root=1-abc;Parent=def;Sampled=1"
    )
    # AND once the scope is left, nothing is left behind
    assert current() is None


def test_the_scope_is_reset_when_the_handler_raises():
    # GIVEN an invocation whose body raises inside its scope
    seen: list[str] = []

    def invoke() -> None:
        with invocation_scope(_invocation("req-err"), cold_start=False):
            seen.append(current().request_id)
            raise RuntimeError("boom")

    # WHEN the scope is left by the exception
    with pytest.raises(RuntimeError, match="boom"):
        invoke()
    assert seen == ["req-err"]

    # THEN the context is reset anyway (nothing leaks into the next invocation)
    assert current() is None


def test_nested_scopes_restore_the_outer_context():
    # GIVEN an outer invocation scope
    with invocation_scope(_invocation("outer"), cold_start=True):
        # WHEN an inner scope is entered and left
        with invocation_scope(_invocation("inner"), cold_start=False):
            inner = current()
        after_inner = current()

    # THEN the inner scope saw its own context and the outer one was restored after it
    assert inner.request_id == "inner"
    assert inner.cold_start is False
    assert after_inner.request_id == "outer"
    assert after_inner.cold_start is True
    assert current() is None


def test_concurrent_threads_each_see_their_own_context():
    # GIVEN several threads, each running its own invocation, all inside their scopes at the same time
    n = 6
    all_inside = threading.Barrier(n)
    seen: dict[str, str | None] = {}
    after: dict[str, LogContext | None] = {}
    errors: list[BaseException] = []

    def invocation(request_id: str) -> None:
        try:
            with invocation_scope(_invocation(request_id), cold_start=False):
                all_inside.wait(timeout=5)  # every thread has set its context before anyone reads
                ctx = current()
                seen[request_id] = ctx.request_id if ctx else None
                all_inside.wait(timeout=5)  # and nobody resets before everybody has read
            after[request_id] = current()
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=invocation, args=(f"req-{i}",)) for i in range(n)]

    # WHEN they run
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    # THEN each thread saw its own request id, and none of them changed the main thread's context
    assert errors == []
    assert seen == {f"req-{i}": f"req-{i}" for i in range(n)}
    assert after == {f"req-{i}": None for i in range(n)}
    assert current() is None


def test_a_new_thread_does_not_inherit_the_invocation_context():
    # GIVEN a running invocation
    seen: list[LogContext | None] = []
    with invocation_scope(_invocation("req-main"), cold_start=True):
        # WHEN a plain thread is started inside it
        thread = threading.Thread(target=lambda: seen.append(current()))
        thread.start()
        thread.join(timeout=5)
        # AND a copied context is run explicitly
        copied = contextvars.copy_context().run(current)

    # THEN the plain thread starts with no context (contextvars semantics), while a copy carries it
    assert seen == [None]
    assert copied is not None
    assert copied.request_id == "req-main"
