"""Specification of `runtime.usercode.UserCodeGate`: user code holds it; background threads only ever try it."""

from __future__ import annotations

import threading
import time

from runtime.usercode import USER_CODE, UserCodeGate


def test_quiet_holds_the_gate_when_no_user_code_runs():
    gate = UserCodeGate()
    # WHEN a background thread asks while nothing holds the gate
    with gate.quiet() as quiet:
        # THEN it holds it, so user code starting now waits until the background imports are done
        assert quiet is True
        assert gate.user_code_running
    assert not gate.user_code_running


def test_quiet_never_waits_for_user_code():
    gate = UserCodeGate()
    answers: list[bool] = []
    with gate:  # user code runs (on this thread)
        # WHEN a background thread asks
        worker = threading.Thread(target=lambda: answers.append(_ask(gate)))
        started = time.monotonic()
        worker.start()
        worker.join(5)
        # THEN it is told "not quiet" at once instead of waiting (the loop may be waiting on that thread)
        assert answers == [False]
        assert time.monotonic() - started < 5
    # AND once user code is done, it gets the gate
    assert _ask(gate) is True


def test_user_code_waits_while_a_background_thread_imports():
    gate = UserCodeGate()
    entered = threading.Event()
    order: list[str] = []

    def background() -> None:
        with gate.quiet() as quiet:
            assert quiet
            entered.set()
            time.sleep(0.1)
            order.append("imports done")

    worker = threading.Thread(target=background)
    worker.start()
    assert entered.wait(5)
    # WHEN user code starts while the background thread holds the gate
    with gate:
        order.append("user code")
    worker.join(5)
    # THEN it started after the imports, never during them
    assert order == ["imports done", "user code"]


def test_the_process_has_one_gate():
    assert isinstance(USER_CODE, UserCodeGate)


def _ask(gate: UserCodeGate) -> bool:
    with gate.quiet() as quiet:
        return quiet
