"""A request body over the limit is refused as soon as its length is known: the server neither reads
it nor parses it, and other sockets of the same web process go on meanwhile."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = pytest.mark.integration

HUNDRED_MB = 100 * 2**20


def raw_post(stack, headers: str, body: bytes = b"", chunked_mb: int = 0) -> tuple[float, bytes]:
    """Send a POST's head (and some body); the seconds until the answer came, and the answer."""
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    try:
        started = time.monotonic()
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{stack.port}\r\n{headers}\r\n".encode() + body)
        for _ in range(chunked_mb):  # 1 MB chunks until the server hangs up
            try:
                sock.sendall(b"100000\r\n" + b"x" * 2**20 + b"\r\n")
            except OSError:
                break
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return time.monotonic() - started, answer
    finally:
        sock.close()


def body_of(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    return json.loads(body)


def test_a_declared_100_mb_body_is_refused_without_being_sent(stack):
    took, answer = raw_post(
        stack, f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {HUNDRED_MB}\r\n", b"--x\r\n"
    )
    assert body_of(answer)["code"] == "too_large"
    assert took < 2, f"answered after {took:.2f} s"  # the 100 MB were never sent: it could not wait for them


def test_a_chunked_body_is_cut_off_at_the_limit_while_another_socket_predicts(stack):
    client = ProtocolClient(stack.url)
    try:
        _, answer = raw_post(
            stack, "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n", chunked_mb=100
        )
        assert body_of(answer)["code"] == "too_large"
        last = client.stream(digit_strokes(6), drawing="meanwhile", batch=1000)
        assert client.prediction_for(last, timeout=5)[0]["digit"] == 6
    finally:
        client.close()
