"""Per-address limits on the real stack: an address that floods uploads, health checks or sockets
is throttled (429 / a refused socket), others go on being served, and X-Forwarded-For from a client
(no trusted proxy in front) changes nothing; a person's upload too many is refused alone, with the
Retry-After of the window that refused it, and cross-site posts are refused without counting. Clients
of different addresses connect from 127.0.0.1 and 127.0.0.2-9 (all loopback). An address that asks
on after its 429 is refused at accept until its Retry-After (edge.penalties), so each test
floods from an address of its own."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
import uuid
from contextlib import ExitStack

import pytest
from PIL import Image, ImageDraw
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from recognizer.consumers import CLOSE_LIMITED
from scripts.stack import Stack
from tests.conftest import stack_of_its_own

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OTHER = "127.0.0.1"
FLOODER = "127.0.0.2"  # uploads
HEALTH_FLOODER = "127.0.0.3"
SOCKETS_FLOODER = "127.0.0.4"
PROXY = "127.0.0.5"  # in TRUSTED_PROXIES
EARLY = "127.0.0.6"  # comes back before its Retry-After
OPENER = "127.0.0.7"  # opens sockets too often
SUBMITTER = "127.0.0.8"  # stores drawings too often
BIG = "127.0.0.9"  # sends huge strokes
PERSON = "127.0.0.8"  # one upload too many
CROSS = "127.0.0.9"  # a browser made to post here by another site


def seven() -> bytes:
    img = Image.new("L", (112, 112), 255)
    ImageDraw.Draw(img).line([(20, 20), (90, 20), (45, 100)], fill=0, width=9)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def raw(service: Stack, source: str, data: bytes) -> bytes:
    """Send `data` as it is; everything the server answers before it closes."""
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=30, source_address=(source, 0))
    with sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def request(
    service: Stack, source: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def upload(service: Stack, source: str, spoof: str | None = None, origin: str | None = None) -> tuple[int, dict[str, str], bytes]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + seven()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if spoof:
        headers["X-Forwarded-For"] = spoof
    if origin:
        headers["Origin"] = origin
    return request(service, source, "POST", "/api/predict", body, headers)


def open_socket(service: Stack, source: str, sockets: ExitStack) -> ClientConnection:
    sock = socket.create_connection(("127.0.0.1", service.port), source_address=(source, 0))
    return sockets.enter_context(
        connect(
            f"ws://127.0.0.1:{service.port}/ws/recognize/", sock=sock, origin=f"http://127.0.0.1:{service.port}", open_timeout=10
        )
    )


@pytest.fixture(scope="module")
def limited(stack, tmp_path_factory):
    env = {
        **stack.env,
        "THROTTLE_UPLOADS": "3/5 seconds;5/minute",
        "THROTTLE_HEALTH": "5/minute",
        "THROTTLE_SOCKET_OPENS": "12/minute",
        "WS_SOCKETS_PER_ADDRESS": "3",
        "TRUSTED_PROXIES": PROXY,
        "PENALTY_AFTER_REFUSALS": "2",
        "THROTTLE_SUBMITS": "2/minute",
        "WS_ADDRESS_BYTES_PER_SECOND": "20000",
        "WS_ADDRESS_BYTES_BURST": "400000",
    }
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
    statuses = [request(limited, HEALTH_FLOODER, "GET", "/livez")[0] for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429], statuses
    assert request(limited, OTHER, "GET", "/livez")[0] == 200


def test_an_address_gets_at_most_its_share_of_sockets(limited):
    with ExitStack() as sockets:
        for _ in range(3):
            open_socket(limited, SOCKETS_FLOODER, sockets)
        extra = open_socket(limited, SOCKETS_FLOODER, sockets)
        assert json.loads(extra.recv(timeout=10))["code"] == "too_many_sockets"
        with pytest.raises(ConnectionClosed) as closed:
            extra.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_LIMITED
        other = open_socket(limited, OTHER, sockets)  # another address is let in
        other.send(json.dumps({"type": "clear", "seq": 1, "drawing": "d"}))
        assert json.loads(other.recv(timeout=10))["type"] == "prediction"


def test_an_address_back_before_its_retry_after_is_refused_before_its_request_is_read(limited):
    assert b" 400 " in raw(limited, EARLY, b"NOT HTTP AT ALL\r\n\r\n").split(b"\r\n")[0]  # parsed: a bad request
    statuses = [request(limited, EARLY, "GET", "/livez")[0] for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3, statuses  # asked on after its 429: more than PENALTY_AFTER_REFUSALS
    # Back at once: answered 429 by the web server without reading the request (the same bytes that
    # were a bad request above), after a hold.
    started = time.monotonic()
    answer = raw(limited, EARLY, b"NOT HTTP AT ALL\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 "), answer
    assert int(dict(h.split(b": ", 1) for h in head.split(b"\r\n")[1:])[b"Retry-After"]) >= 1
    assert json.loads(body)["code"] == "rate_limited"
    assert time.monotonic() - started >= 0.5  # held (PENALTY_HOLD_S, 1 s by default)
    # every kind of request from it, a socket too, until its Retry-After; other addresses are served
    assert upload(limited, EARLY)[0] == 429
    with pytest.raises(InvalidStatus) as refused, ExitStack() as sockets:
        open_socket(limited, EARLY, sockets)
    assert refused.value.response.status_code == 429
    assert request(limited, OTHER, "GET", "/livez")[0] == 200


def test_a_trusted_proxy_is_never_refused_at_accept(limited):
    # the proxy's own health checks (no X-Forwarded-For) count under its address and get 429 ...
    statuses = [request(limited, PROXY, "GET", "/livez")[0] for _ in range(6)]
    assert statuses == [200] * 5 + [429], statuses
    # ... but the proxy stands for many clients: what it forwards for another client is served
    status, _, _ = request(limited, PROXY, "GET", "/livez", headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 200


def test_an_address_opening_sockets_too_often_is_refused_then_refused_at_accept(limited):
    for _ in range(12):  # THROTTLE_SOCKET_OPENS: 12 a minute
        with ExitStack() as sockets:
            ws = open_socket(limited, OPENER, sockets)
            ws.send(json.dumps({"type": "clear", "seq": 1, "drawing": "d"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "prediction"
    with ExitStack() as sockets:
        refused = open_socket(limited, OPENER, sockets)
        error = json.loads(refused.recv(timeout=10))
        assert error["code"] == "rate_limited" and "retry in" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            refused.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_LIMITED
    with pytest.raises(InvalidStatus) as at_accept, ExitStack() as sockets:
        open_socket(limited, OPENER, sockets)
    assert at_accept.value.response.status_code == 429
    with ExitStack() as sockets:  # others are let in
        open_socket(limited, OTHER, sockets)


def test_a_persons_upload_too_many_is_refused_alone_with_the_refusing_windows_retry_after(limited):
    assert [upload(limited, PERSON)[0] for _ in range(3)] == [200, 200, 200]
    status, headers, body = upload(limited, PERSON)
    assert status == 429 and json.loads(body)["code"] == "rate_limited"
    retry_after = int(headers["retry-after"])
    assert 1 <= retry_after <= 5  # the 5-second window refused it, not the minute's (60)
    # nothing else of the site is refused for it: the page, the admin, health, a drawing socket
    assert request(limited, PERSON, "GET", "/")[0] == 200
    assert request(limited, PERSON, "GET", "/admin/login/")[0] == 200
    assert request(limited, PERSON, "GET", "/livez")[0] == 200
    with ExitStack() as sockets:
        ws = open_socket(limited, PERSON, sockets)
        ws.send(json.dumps({"type": "clear", "seq": 1, "drawing": "d"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "prediction"
    time.sleep(retry_after)  # and the Retry-After it was told is true
    assert upload(limited, PERSON)[0] == 200


def test_cross_site_upload_posts_are_refused_and_count_no_limit(limited):
    for _ in range(5):  # more than the 3 uploads its address may make
        status, _, body = upload(limited, CROSS, origin="http://evil.example")
        assert status == 403 and json.loads(body)["code"] == "cross_site"
    site = f"http://127.0.0.1:{limited.port}"
    assert [upload(limited, CROSS, origin=site)[0] for _ in range(3)] == [200, 200, 200]  # none was counted


def answer_to(ws: ClientConnection, seq: int) -> dict:
    """The first prediction, stored or error message for `seq` (other messages skipped)."""
    while True:
        msg = json.loads(ws.recv(timeout=15))
        if msg["type"] in ("prediction", "stored", "error") and msg.get("seq") == seq:
            return msg


def draw_and_submit(ws: ClientConnection, seq: int, drawing: str) -> dict:
    ws.send(
        json.dumps(
            {
                "type": "stroke",
                "seq": seq,
                "drawing": drawing,
                "stroke": 0,
                "points": [[60, 60], [200, 220]],
                "final": True,
                "canvas": [280, 280],
                "brush": 15.8,
            }
        )
    )
    ws.send(json.dumps({"type": "submit", "seq": seq + 1, "drawing": drawing, "label": 1}))
    return answer_to(ws, seq + 1)


def test_stored_drawings_per_address_are_limited_per_window(limited):
    with ExitStack() as sockets:
        ws = open_socket(limited, SUBMITTER, sockets)
        answers = [draw_and_submit(ws, 1 + 2 * i, f"s{i}") for i in range(3)]  # THROTTLE_SUBMITS: 2 a minute
        assert [a["type"] for a in answers] == ["stored", "stored", "error"], answers
        assert answers[2]["code"] == "rate_limited" and 1 <= answers[2]["retry_after"] <= 60, answers
        again = open_socket(limited, SUBMITTER, sockets)  # counted per address, not per socket
        assert draw_and_submit(again, 1, "s3")["code"] == "rate_limited"
        other = open_socket(limited, OTHER, sockets)  # another address stores
        assert draw_and_submit(other, 1, "o1")["type"] == "stored"


def test_an_addresss_huge_strokes_are_limited_by_their_bytes_and_others_are_not(limited):
    """WS_ADDRESS_BYTES_BURST 400 KB here: two 10,000-point strokes (~150 KB each) from BIG's sockets fit,
    a third does not, from either socket; a page's live update still goes through, and another address's
    huge stroke too."""
    points = [[round(i % 280 + 0.5, 1), round(i * 7 % 280 + 0.5, 1)] for i in range(10_000)]

    def huge(ws: ClientConnection, seq: int) -> dict:
        ws.send(
            json.dumps(
                {
                    "type": "stroke",
                    "seq": seq,
                    "drawing": f"big{seq}",
                    "stroke": 0,
                    "points": points,
                    "final": True,
                    "canvas": [280, 280],
                    "brush": 15.8,
                }
            )
        )
        return json.loads(ws.recv(timeout=15))

    with ExitStack() as sockets:
        one, two = open_socket(limited, BIG, sockets), open_socket(limited, BIG, sockets)
        assert huge(one, 1)["type"] == "prediction"
        assert huge(one, 2)["type"] == "prediction"
        refused = huge(two, 1)  # its own socket's budget is untouched: the address's is spent
        assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
        two.send(
            json.dumps(
                {
                    "type": "stroke",
                    "seq": 2,
                    "drawing": "small",
                    "stroke": 0,
                    "points": [[60, 60], [90, 200]],
                    "final": True,
                    "canvas": [280, 280],
                    "brush": 15.8,
                }
            )
        )
        assert answer_to(two, 2)["type"] == "prediction"
        assert huge(open_socket(limited, OTHER, sockets), 1)["type"] == "prediction"
