"""Hostile HTTP input: uploads that are not what they claim, and bodies of 100 MB (sent as fast as the server
takes them, while another socket's round trips are timed)."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import math
import random
import select
import socket
import struct
import time
import uuid
import zlib
from dataclasses import dataclass


def png(width: int, height: int, ink: bool = True) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (width, height), 255)
    if ink:
        ImageDraw.Draw(img).line(
            [(width * 0.2, height * 0.2), (width * 0.8, height * 0.2), (width * 0.4, height * 0.9)],
            fill=0,
            width=max(1, min(width, height) // 10),
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(side: int = 30_000) -> bytes:
    """A 1-bit side x side PNG of zeros (about 110 KB for 30,000: 900 million pixels when decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte, then the packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def _tiff() -> bytes:
    """A TIFF with ink: a format the page does not offer (PNG, JPEG, WebP, GIF are read)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png(112, 112))).save(buf, format="TIFF")
    return buf.getvalue()


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="112" height="112"><path d="M20 20 H90 L45 100" '
    b'stroke="black" stroke-width="9" fill="none"/></svg>'
)


def hostile_uploads() -> list[tuple[str, str, dict[str, str], bytes]]:
    """(name, method, headers, body) of each hostile request to /api/predict."""

    def multipart(
        data: bytes, filename: str = "d.png", ctype: str = "image/png", name: str = "image"
    ) -> tuple[dict[str, str], bytes]:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body

    good = png(112, 112)
    cases = [
        ("not an image", *multipart(random.Random(1).randbytes(5000))),
        ("truncated PNG", *multipart(good[: len(good) // 2])),
        ("decompression bomb PNG 30000x30000 1-bit", *multipart(bomb_png())),
        ("4097x1 PNG with ink", *multipart(png(4097, 1))),
        ("1x4097 PNG with ink", *multipart(png(1, 4097))),
        ("zero-byte file", *multipart(b"")),
        ("PNG as text/plain body, no multipart", {"Content-Type": "text/plain"}, good),
        ("multipart without the image field", *multipart(good, name="file")),
        ("TIFF", *multipart(_tiff(), "d.tif", "image/tiff")),
        ("SVG", *multipart(SVG, "d.svg", "image/svg+xml")),
        ("6 MB file", *multipart(good + bytes(6 * 2**20), "big.png")),
    ]
    return [(name, "POST", headers, body) for name, headers, body in cases] + [("GET /api/predict", "GET", {}, b"")]


def http_exchange(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes, timeout: float
) -> tuple[int, str, bool]:
    """(status, body, whether it is a JSON error) of one request; status 0 when nothing came back."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        try:
            is_error = json.loads(text).get("type") == "error"
        except (ValueError, AttributeError):
            is_error = False
        return resp.status, text, is_error
    except OSError as exc:
        return 0, repr(exc), False
    finally:
        conn.close()


@dataclass(frozen=True)
class BigBody:
    name: str
    status: int  # 0: no answer
    answer_s: float  # from the headers sent to the status line
    mb_sent: float  # body sent when the answer came (or when sending stopped)
    closed: bool  # the server closed the connection within 3 s of answering
    json_error: bool
    probe_max_ms: float  # the slowest round trip of another socket meanwhile (nan: none measured)


BODY_KINDS = ("multipart, Content-Length", "octet-stream, Content-Length", "multipart, chunked")


class _Probe:
    """Another page's socket, asking for a prediction every 50 ms while a big body is sent: whether
    the body holds up the web process's event loop."""

    def __init__(self, url: str) -> None:
        import threading

        self.url, self.stop = url, threading.Event()
        self.round_trips: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from websockets.sync.client import connect

        with connect(self.url.replace("http://", "ws://") + "/ws/recognize/", origin=self.url, open_timeout=10) as ws:
            seq = 0
            while not self.stop.is_set():
                seq += 1
                sent = time.perf_counter()
                ws.send(json.dumps({"type": "clear", "seq": seq, "drawing": "probe"}))
                while (msg := json.loads(ws.recv(timeout=60)))["type"] != "prediction" or msg["seq"] != seq:
                    pass
                self.round_trips.append((time.perf_counter() - sent) * 1000)
                time.sleep(0.05)

    def max_ms(self) -> float:
        self.stop.set()
        self.thread.join(70)
        return max(self.round_trips, default=math.nan)


def big_body(port: int, *, kind: str, total: int = 100 * 2**20, timeout: float = 60.0) -> BigBody:
    """POST `total` bytes to /api/predict as fast as the server takes them, watching for an early
    answer. `kind` (BODY_KINDS): a well-formed multipart form whose `image` is `total` bytes long, or
    a bare body; its size declared by Content-Length, or chunked (counted only while it is read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    multipart, chunked = kind.startswith("multipart"), kind.endswith("chunked")
    head = [
        "POST /api/predict HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: " + ("multipart/form-data; boundary=bb" if multipart else "application/octet-stream"),
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}",
    ]
    opening = b'--bb\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n' if multipart else b""
    closing = b"\r\n--bb--\r\n" if multipart else b""
    block = b"\0" * 2**16
    piece = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
    probe = _Probe(f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    sent, answer, closed = len(opening) + len(closing), b"", False  # the form's framing counts in `total`
    answered_at: float | None = None
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.sendall(f"{len(opening):x}\r\n".encode() + opening + b"\r\n" if chunked and opening else opening)
        sock.setblocking(False)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 0.5)
            if readable:
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                answer += data
                answered_at = answered_at or time.perf_counter()
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
            elif writable:
                try:
                    sent += _send_piece(sock, piece, block, chunked, total - sent)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if sent >= total:
                    end = (f"{len(closing):x}\r\n".encode() + closing + b"\r\n" if closing else b"") + b"0\r\n\r\n"
                    with contextlib.suppress(OSError):
                        sock.sendall(end if chunked else closing)
        if answer and not closed:  # answered: is the connection closed after it?
            sock.setblocking(True)
            sock.settimeout(3.0)
            with contextlib.suppress(OSError):
                while data := sock.recv(65536):
                    answer += data
                closed = True
    finally:
        sock.close()
    probe_max = probe.max_ms()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    body = answer.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in answer else b""
    try:
        json_error = json.loads(body).get("type") == "error"
    except (ValueError, AttributeError):
        json_error = False
    return BigBody(kind, status, ((answered_at or time.perf_counter()) - started), sent / 2**20, closed, json_error, probe_max)


def _send_piece(sock: socket.socket, piece: bytes, block: bytes, chunked: bool, left: int) -> int:
    """Send (part of) the next piece of body; returns body bytes sent (chunk framing not counted)."""
    if not chunked:
        return sock.send(block[:left])
    sock.setblocking(True)  # a chunk goes whole, or its framing breaks
    try:
        sock.sendall(piece)
    finally:
        sock.setblocking(False)
    return len(block)


def _complete(answer: bytes) -> bool:
    head, body = answer.split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False
