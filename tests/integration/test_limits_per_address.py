"""Per-address limits on the real stack: an address that floods uploads, health checks or sockets
is throttled (429 / a refused socket), others go on being served, and X-Forwarded-For from a client
(no trusted proxy in front) changes nothing. Clients of different addresses connect from 127.0.0.1
and 127.0.0.2 (both loopback)."""
from __future__ import annotations

import http.client
import io
import json
import socket
import uuid
from contextlib import ExitStack

import pytest
from PIL import Image, ImageDraw
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from recognizer.consumers import CLOSE_LIMITED
from scripts.stack import Stack
from tests.conftest import stack_of_its_own

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FLOODER, OTHER = "127.0.0.2", "127.0.0.1"


def seven() -> bytes:
    img = Image.new("L", (112, 112), 255)
    ImageDraw.Draw(img).line([(20, 20), (90, 20), (45, 100)], fill=0, width=9)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def request(service: Stack, source: str, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def upload(service: Stack, source: str, spoof: str | None = None) -> tuple[int, dict[str, str], bytes]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + seven() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if spoof:
        headers["X-Forwarded-For"] = spoof
    return request(service, source, "POST", "/api/predict", body, headers)


def open_socket(service: Stack, source: str, sockets: ExitStack) -> ClientConnection:
    sock = socket.create_connection(("127.0.0.1", service.port), source_address=(source, 0))
    return sockets.enter_context(connect(f"ws://127.0.0.1:{service.port}/ws/recognize/", sock=sock,
                                         origin=f"http://127.0.0.1:{service.port}", open_timeout=10))


@pytest.fixture(scope="module")
def limited(stack, tmp_path_factory):
    env = {**stack.env, "THROTTLE_UPLOADS": "3/minute", "THROTTLE_HEALTH": "5/minute",
           "THROTTLE_SOCKET_OPENS": "100/minute", "WS_SOCKETS_PER_ADDRESS": "3"}
    with stack_of_its_own("limits", env, tmp_path_factory.mktemp("limits")) as service:
        yield service


def test_an_address_flooding_uploads_is_throttled_and_a_spoofed_forwarded_for_does_not_help(limited):
    statuses = [upload(limited, FLOODER, spoof=f"198.51.100.{i}")[0] for i in range(6)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429, 429], statuses
    status, headers, body = upload(limited, FLOODER)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert json.loads(body)["code"] == "rate_limited"
    status, _, body = upload(limited, OTHER)  # another address is served
    assert status == 200 and json.loads(body)["digit"] == 7


def test_an_address_flooding_health_checks_is_throttled(limited):
    statuses = [request(limited, FLOODER, "GET", "/livez")[0] for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429], statuses
    assert request(limited, OTHER, "GET", "/livez")[0] == 200


def test_an_address_gets_at_most_its_share_of_sockets(limited):
    with ExitStack() as sockets:
        for _ in range(3):
            open_socket(limited, FLOODER, sockets)
        extra = open_socket(limited, FLOODER, sockets)
        assert json.loads(extra.recv(timeout=10))["code"] == "too_many_sockets"
        with pytest.raises(ConnectionClosed) as closed:
            extra.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_LIMITED
        other = open_socket(limited, OTHER, sockets)  # another address is let in
        other.send(json.dumps({"type": "clear", "seq": 1, "drawing": "d"}))
        assert json.loads(other.recv(timeout=10))["type"] == "prediction"
