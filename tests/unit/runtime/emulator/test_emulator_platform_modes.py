"""The emulator's Managed Instances concurrency and SnapStart restore endpoints, with a raw runtime in the test."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.emulator import Emulator
from runtime.emulator.state import FifoTurn

NEXT = "/2018-06-01/runtime/invocation/next"
RESTORE_NEXT = "/2018-06-01/runtime/restore/next"
RESTORE_ERROR = "/2018-06-01/runtime/restore/error"


def _call(emu: Emulator, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def test_fifo_turn_admits_up_to_its_slots_in_arrival_order() -> None:
    turn = FifoTurn(2)
    inside: list[int] = []
    release = threading.Event()
    peak = [0]
    lock = threading.Lock()

    def enter(i: int) -> None:
        with turn:
            with lock:
                inside.append(i)
                peak[0] = max(peak[0], len(inside))
            release.wait(5)
            with lock:
                inside.remove(i)

    threads = [threading.Thread(target=enter, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    assert not turn.wait_idle(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert turn.wait_idle(1) and peak[0] == 2


def test_with_max_concurrency_n_invocations_are_handed_out_at_once(pool: ThreadPoolExecutor) -> None:
    # GIVEN an emulator for a function with AWS_LAMBDA_MAX_CONCURRENCY=3 and three invokes waiting
    with Emulator(spawn=False, timeout_s=5, platform_sink=lambda _: None,
                  env={"AWS_LAMBDA_MAX_CONCURRENCY": "3"}) as emu:
        assert emu.config.max_concurrency == 3
        pending = [pool.submit(emu.invoke, json.dumps({"i": i}).encode()) for i in range(3)]
        # WHEN three workers poll /next at once, none of them answering yet
        polls = [pool.submit(_call, emu, "GET", NEXT) for _ in range(3)]
        taken = [poll.result(timeout=5) for poll in polls]
        # THEN each got a different invocation
        ids = [headers["Lambda-Runtime-Aws-Request-Id"] for _, headers, _ in taken]
        assert len(set(ids)) == 3
        assert sorted(json.loads(body)["i"] for _, _, body in taken) == [0, 1, 2]
        # AND each answer reaches its own invoker
        for request_id in ids:
            status, _, _ = _call(emu, "POST", f"/2018-06-01/runtime/invocation/{request_id}/response",
                                 json.dumps({"id": request_id}).encode())
            assert status == 202
        results = [p.result(timeout=5) for p in pending]
        assert all(r.json() == {"id": r.request_id} for r in results)


def test_without_concurrency_a_second_poll_waits_for_the_first_answer(pool: ThreadPoolExecutor) -> None:
    with Emulator(spawn=False, timeout_s=5, platform_sink=lambda _: None) as emu:
        first = pool.submit(emu.invoke, b"{}")
        _, headers, _ = _call(emu, "GET", NEXT)  # the first invocation (the second is submitted only now: order)
        pool.submit(emu.invoke, b"{}")
        time.sleep(0.2)  # let the second invocation be queued, so the check below is not vacuous
        second_poll = pool.submit(_call, emu, "GET", NEXT)
        with pytest.raises(TimeoutError):
            second_poll.result(timeout=0.3)  # the second invocation is not handed out while the first runs
        rid = headers["Lambda-Runtime-Aws-Request-Id"]
        assert _call(emu, "POST", f"/2018-06-01/runtime/invocation/{rid}/response", b"1")[0] == 202
        assert first.result(timeout=5).body == b"1"
        assert second_poll.result(timeout=5)[0] == 200


def test_restore_next_is_not_served_without_snapstart() -> None:
    with Emulator(spawn=False, platform_sink=lambda _: None) as emu:
        assert _call(emu, "GET", RESTORE_NEXT)[0] == 404


def test_restore_next_answers_when_the_held_snapshot_is_released(pool: ThreadPoolExecutor) -> None:
    with Emulator(spawn=False, platform_sink=lambda _: None, snapstart=True, hold_restore=True) as emu:
        waiting = pool.submit(_call, emu, "GET", RESTORE_NEXT)
        assert emu.wait_for_call("GET", RESTORE_NEXT)
        with pytest.raises(TimeoutError):
            waiting.result(timeout=0.3)
        emu.release_restore()
        assert waiting.result(timeout=5)[0] == 200


def test_snapstart_sets_the_initialization_type_for_the_runtime() -> None:
    emu = Emulator(platform_sink=lambda _: None, snapstart=True, max_concurrency=2)
    with emu:
        env = emu._child_environment()
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "snap-start"
    assert env["AWS_LAMBDA_MAX_CONCURRENCY"] == "2"


def test_a_restore_error_answers_the_invoke_like_an_init_error(pool: ThreadPoolExecutor) -> None:
    with Emulator(spawn=False, platform_sink=lambda _: None, snapstart=True) as emu:
        pending = pool.submit(emu.invoke, b"{}")
        assert _call(emu, "GET", RESTORE_NEXT)[0] == 200
        body = json.dumps({"errorMessage": "after restore", "errorType": "RuntimeError"}).encode()
        status, _, _ = _call(emu, "POST", RESTORE_ERROR, body,
                             {"Lambda-Runtime-Function-Error-Type": "Runtime.AfterRestoreError"})
        assert status == 202
        result = pending.result(timeout=5)
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "RuntimeError"
    (post,) = emu.posts
    assert (post.kind, post.header("Lambda-Runtime-Function-Error-Type")) == (
        "restore_error", "Runtime.AfterRestoreError")
