"""Response streaming end to end: the real bootstrap under the emulator, read by an invoker as the chunks come.

Each handler lives in the test's own task root. The invoker reads the emulator's chunked answer with
`http.client` (or a raw socket, to see the trailers), as `curl -N` would.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from pathlib import Path

from runtime.emulator.platform_log import read_max_memory_mb
from tests.integration.conftest import emulator

INVOKE = "/2015-03-31/functions/function/invocations"

STREAMING = """
    import json, logging, os, time
    log = logging.getLogger("app")

    def wait_for(path):
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)

    def gated(event, context):
        yield "first\\n"
        log.info("first chunk sent")
        wait_for(event["gate"])  # the test opens the gate only once it has read the first chunk
        log.info("gate opened")
        yield b"second\\n"

    def midstream_error(event, context):
        yield b"partial "
        raise ValueError("broke half way")

    def early_error(event, context):
        raise KeyError("nothing to stream")
        yield b"never"

    def big(event, context):
        block = b"x" * 65536
        for _ in range(event["blocks"]):
            yield block

    def function_url(event, context, stream):
        stream.set_http_prelude(statusCode=201, headers={"content-type": "text/plain"}, cookies=["a=1"])
        stream.write("hello ")
        stream.write("world")
"""


def _open(emu, event: dict) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=30)
    conn.request("POST", INVOKE, json.dumps(event).encode())
    return conn.getresponse()


def _raw_invoke(emu, event: dict) -> tuple[str, bytes, dict[str, str]]:
    """The whole chunked answer read off a raw socket: head, body, trailers."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=30) as sock:
        body = json.dumps(event).encode()
        sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        rfile = sock.makefile("rb")
        head = b""
        while (line := rfile.readline()) not in (b"\r\n", b""):
            head += line
        data = b""
        while (size := int(rfile.readline().strip(), 16)) > 0:
            data += rfile.read(size)
            rfile.read(2)
        trailers: dict[str, str] = {}
        while (line := rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            trailers[name.strip()] = value.strip()
    return head.decode(), data, trailers


def _records(emu) -> list[dict]:
    return [json.loads(line) for line in emu.output_lines if line.startswith("{")]


ENV = {"LOGS_STDOUT_LIFECYCLE": "1"}


def test_chunks_reach_the_invoker_before_the_handler_finishes(task_root, tmp_path: Path):
    # GIVEN a generator that sends a chunk, then waits for a gate only this test opens
    root = task_root("app", STREAMING)
    gate = tmp_path / "gate"
    with emulator("app.gated", root, env=ENV) as emu:
        response = _open(emu, {"gate": str(gate)})
        # WHEN the invoker reads while the handler is still waiting
        # THEN the first chunk is already there, chunked, and the handler has not finished
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Content-Type") == "application/octet-stream"
        assert response.read1() == b"first\n"
        assert not gate.exists()
        gate.touch()
        assert response.read() == b"second\n"
        request_id = response.getheader("X-Amzn-RequestId")
        assert emu.wait_for_report(request_id)
        assert emu.wait_for_output('"kind": "report"') or emu.wait_for_output('"kind":"report"')
    # AND the runtime posted one streamed response for it
    (post,) = emu.posts_for(request_id)
    assert post.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert (post.status, post.body_size) == (202, len(b"first\nsecond\n"))
    # AND the records written while streaming carry the request id; the report covers the stream
    records = [r for r in _records(emu) if r.get("request_id") == request_id]
    assert [r["message"] for r in records if r["kind"] == "log"] == ["first chunk sent", "gate opened"]
    (report,) = [r for r in records if r["kind"] == "report"]
    assert report["bytes_sent"] == 13 and report["status"] == "success"
    assert 0 <= report["time_to_first_byte_ms"] <= report["duration_ms"]
    assert report["stream_duration_ms"] > 0


def test_an_error_mid_stream_reaches_the_invoker_in_the_trailers(task_root):
    root = task_root("app", STREAMING)
    with emulator("app.midstream_error", root, env=ENV) as emu:
        head, body, trailers = _raw_invoke(emu, {})
        request_id = next(line.split(":", 1)[1].strip() for line in head.splitlines()
                          if line.lower().startswith("x-amzn-requestid"))
        assert emu.wait_for_report(request_id)
    # THEN the body sent before the error arrives, followed by the error in the trailers
    assert "Transfer-Encoding: chunked" in head
    assert body == b"partial "
    assert trailers["X-Amz-Function-Error"] == "Unhandled"
    assert trailers["Lambda-Runtime-Function-Error-Type"] == "Function.ValueError"
    error = json.loads(base64.b64decode(trailers["Lambda-Runtime-Function-Error-Body"]))
    assert (error["errorType"], error["errorMessage"], error["requestId"]) == (
        "ValueError", "broke half way", request_id)
    # AND the runtime sent them as trailers of its streamed /response, not as an /error
    (post,) = emu.posts_for(request_id)
    assert (post.kind, post.header("Lambda-Runtime-Function-Error-Type")) == ("response", "Function.ValueError")
    (report,) = [r for r in _records(emu) if r["kind"] == "report"]
    assert (report["status"], report["error_type"], report["bytes_sent"]) == ("error", "ValueError", 8)


def test_an_error_before_the_first_byte_is_an_ordinary_error(task_root):
    root = task_root("app", STREAMING)
    with emulator("app.early_error", root) as emu:
        result = emu.invoke({})
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "KeyError"
    assert [p.kind for p in emu.posts_for(result.request_id)] == ["error"]
    assert emu.last_error_type_header == "Function.KeyError"


def test_a_function_url_stream_starts_with_its_http_prelude(task_root):
    root = task_root("app", STREAMING)
    with emulator("app.function_url", root) as emu:
        result = emu.invoke({})
    assert result.ok
    assert result.content_type == "application/vnd.awslambda.http-integration-response"
    prelude, _, body = result.body.partition(b"\0" * 8)
    assert json.loads(prelude) == {"statusCode": 201, "headers": {"content-type": "text/plain"}, "cookies": ["a=1"]}
    assert body == b"hello world"


def test_a_20_mb_stream_keeps_the_runtimes_memory_flat(task_root):
    # GIVEN a handler that streams 64 KiB blocks, warmed up with a small stream
    root = task_root("app", STREAMING)
    with emulator("app.big", root, env=ENV, timeout_s=60) as emu:
        small = _open(emu, {"blocks": 4})
        assert len(small.read()) == 4 * 65536
        time.sleep(0.2)
        assert emu.runtime_pid is not None
        before_mb = read_max_memory_mb(emu.runtime_pid)

        # WHEN it streams 20 MiB to an invoker that reads as it goes, keeping nothing
        response = _open(emu, {"blocks": 320})
        received = 0
        while chunk := response.read1(1 << 20):
            received += len(chunk)
        after_mb = read_max_memory_mb(emu.runtime_pid)
        request_id = response.getheader("X-Amzn-RequestId")
        assert emu.wait_for_report(request_id)
        assert emu.wait_for_output('"bytes_sent": 20971520') or emu.wait_for_output('"bytes_sent":20971520')

    # THEN everything arrived, and the runtime's peak memory grew by far less than the 20 MiB it sent
    assert received == 20 * 1024 * 1024
    assert before_mb is not None and after_mb is not None
    assert after_mb - before_mb < 8, (before_mb, after_mb)
    (report,) = [r for r in _records(emu) if r["kind"] == "report" and r["request_id"] == request_id]
    assert report["bytes_sent"] == 20 * 1024 * 1024
