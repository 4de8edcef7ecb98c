"""Specification of `runtime.http1.ResponseReader`: one HTTP/1.1 answer off a socket, in any framing, bounded by an
optional deadline. (The Runtime API client's tests cover the same reader through the client.)"""

from __future__ import annotations

import socket
import time

import pytest

from runtime.http1 import ResponseReader


def _reader(answer: bytes) -> ResponseReader:
    """A reader on one end of a socket pair whose other end has sent `answer` and closed."""
    ours, theirs = socket.socketpair()
    theirs.sendall(answer)
    theirs.close()
    return ResponseReader(ours)


def test_interim_answers_are_skipped_and_the_final_one_is_read():
    reader = _reader(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A:  b \r\n\r\nok")
    head, body = reader.answer()
    assert (head.status, head.reason, head.headers, head.keep_alive, body) == (200, "OK", {
        "content-length": "2", "x-a": "b"}, True, b"ok")  # fmt: skip


def test_chunked_and_close_delimited_bodies():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\nT: 1\r\n\r\n"
    head, body = _reader(chunked).answer()
    assert body == b"abcde" and head.keep_alive
    head, body = _reader(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").answer()
    assert body == b"until the end"
    assert head.keep_alive is False  # read to the close: the connection cannot carry another answer


@pytest.mark.parametrize(("version", "connection", "keep_alive"), [
    ("HTTP/1.1", "", True), ("HTTP/1.1", "close", False), ("HTTP/1.0", "", False), ("HTTP/1.0", "keep-alive", True),
])  # fmt: skip
def test_keep_alive_follows_the_version_and_the_connection_header(version, connection, keep_alive):
    extra = f"Connection: {connection}\r\n" if connection else ""
    head, _ = _reader(f"{version} 204 No Content\r\n{extra}\r\n".encode()).answer()
    assert head.keep_alive is keep_alive


def test_bytes_past_the_answer_are_left_over():
    reader = _reader(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 ...")
    assert reader.answer()[1] == b"x"
    assert reader.leftover  # the OTLP transport drops such a connection; the API client reads the next answer


@pytest.mark.parametrize(("answer", "error"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", ConnectionError),  # cut short
    (b"", ConnectionError),  # closed before a word
    (b"NOPE 200\r\n\r\n", ValueError),  # not a status line
    (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", ValueError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", ValueError),  # a latin-1 digit that int() would take
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ValueError),
])  # fmt: skip
def test_a_broken_or_malformed_answer_raises_what_each_client_expects(answer, error):
    with pytest.raises(error):
        _reader(answer).answer()


def test_the_deadline_bounds_every_read():
    # GIVEN a peer that sends half a head and then nothing (but keeps the connection open)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 200 OK\r\n")
        reader = ResponseReader(ours, deadline=time.monotonic() + 0.2)
        started = time.monotonic()
        # WHEN / THEN the read gives up at the deadline instead of waiting for the rest
        with pytest.raises(TimeoutError):
            reader.answer()
        assert time.monotonic() - started < 5
