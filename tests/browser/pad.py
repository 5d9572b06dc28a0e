"""The drawing page driven by the browser tests: `Pad` records the page's WebSocket traffic and draws
on `#pad` with the mouse along the tests' digit paths (tests/support/digit_paths.py); `stored` reads
a submitted drawing back, `digit_png` makes an image to upload, `ink_blobs` measures what a canvas
shows. The `pad` fixture (conftest.py) is a `Pad` on the opened page."""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image, ImageDraw
from playwright.sync_api import Page, WebSocket, expect

from tests.browser.conftest import orm, wait_until
from tests.support.digit_paths import digit_strokes

SIDE = 280  # the digit paths are drawn on a 280x280 canvas
STEP_PX = 6  # longest mouse/touch move between two events, in CSS px
PAUSE_MS = 8  # pause after each path point, so the page's 50 ms throttle sends partial strokes
DIGIT = re.compile(r"^\d$")
SAVED = re.compile(r"Saved #(\d+)")
TOP_BAR = [(75, 45), (110, 43), (140, 42), (150, 42)]  # turns a 1 into a 7


class Pad:
    """The page with its WebSocket traffic recorded, and drawing helpers on `#pad`."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.sockets: list[WebSocket] = []
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.mark = 0  # len(self.sent) when the latest action began
        self.stroke_end: tuple[float, float] | None = None  # 280-based last point of the latest stroke
        page.on("websocket", self._on_socket)

    def _on_socket(self, ws: WebSocket) -> None:
        if "/ws/recognize/" not in ws.url:
            return
        self.sockets.append(ws)
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def open(self) -> Pad:
        self.page.goto("/")
        expect(self.page.locator("#status")).to_have_attribute("data-state", "open")
        expect(self.page.locator("#digit")).to_have_text("–")
        return self

    # ---- geometry
    def to_screen(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        """280-based path points -> viewport CSS px on the pad as it is laid out now."""
        box = self.page.locator("#pad").bounding_box()
        assert box and box["width"] > 100, f"the pad is not laid out: {box}"
        return [(box["x"] + x * box["width"] / SIDE, box["y"] + y * box["height"] / SIDE) for x, y in points]

    # ---- drawing
    def stroke(self, points: Sequence[tuple[float, float]], before_up: Callable[[], None] | None = None) -> None:
        """Drag the mouse along 280-based points in small steps with small pauses."""
        mouse, screen = self.page.mouse, self.to_screen(points)
        self.begin_stroke(points)
        mouse.move(*screen[0])
        mouse.down()
        for (x0, y0), (x1, y1) in itertools.pairwise(screen):
            mouse.move(x1, y1, steps=max(1, math.ceil(math.dist((x0, y0), (x1, y1)) / STEP_PX)))
            self.page.wait_for_timeout(PAUSE_MS)
        if before_up:
            before_up()
        mouse.up()

    def tap(self, point: tuple[float, float]) -> None:
        """Press and release the mouse at one 280-based point without moving it: a one-point stroke."""
        self.begin_stroke([point])
        self.page.mouse.move(*self.to_screen([point])[0])
        self.page.mouse.down()
        self.page.mouse.up()

    def begin_stroke(self, points: Sequence[tuple[float, float]]) -> None:
        """Note that a stroke along these 280-based points starts now (for `settled`)."""
        self.mark, self.stroke_end = len(self.sent), points[-1]

    def draw(self, digit: int, live_check: bool = False) -> None:
        """Draw the digit along the tests' paths; with `live_check`, before the last mouse-up wait for a
        prediction of the unfinished last stroke and check that `#digit` shows it."""
        strokes = digit_strokes(digit)
        first_sent = len(self.sent)
        for index, points in enumerate(strokes):
            last = index == len(strokes) - 1
            self.stroke(points, (lambda: self.expect_live_prediction(first_sent, index)) if live_check and last else None)

    def expect_live_prediction(self, first_sent: int, stroke: int) -> dict[str, Any]:
        def partial_predicted() -> dict[str, Any] | None:
            partial = [
                m["seq"] for m in self.sent[first_sent:] if m["type"] == "stroke" and m["stroke"] == stroke and not m["final"]
            ]
            if not partial:
                return None
            return next(
                (m for m in self.received if m["type"] == "prediction" and m["seq"] >= partial[0] and m["digit"] is not None),
                None,
            )

        prediction = wait_until(self.page, partial_predicted, what="a prediction while the pen is down")
        assert not any(m["type"] == "stroke" and m["stroke"] == stroke and m["final"] for m in self.sent[first_sent:]), (
            "the stroke was finished before the prediction came"
        )
        expect(self.page.locator("#digit")).to_have_text(DIGIT)
        return prediction

    def settled(self, kind: str = "stroke", timeout: float = 15.0) -> dict[str, Any]:
        """The prediction for the newest `kind` message (a final stroke, undo or clear) sent since the
        last action began. Frames are reported a little after the page sends them: wait for it first."""

        def sent() -> dict[str, Any] | None:
            return next(
                (
                    m
                    for m in reversed(self.sent[self.mark :])
                    if m["type"] == kind and (kind != "stroke" or self.ends_latest_stroke(m))
                ),
                None,
            )

        last = wait_until(self.page, sent, timeout, lambda: f"the page to send a {kind} message; {self.traffic()}")["seq"]
        return wait_until(
            self.page,
            lambda: next((m for m in reversed(self.received) if m["type"] == "prediction" and m["seq"] >= last), None),
            timeout,
            lambda: f"the prediction for seq {last}; {self.traffic()}",
        )

    def ends_latest_stroke(self, message: dict[str, Any]) -> bool:
        """Whether `message` is the pen-up of the latest stroke: final, and ending where it ended (a
        previous stroke's pen-up may be reported after the latest stroke began)."""
        if not (message["final"] and message["points"] and self.stroke_end):
            return False
        (x, y), (w, h) = message["points"][-1], message["canvas"]
        return math.dist((x, y), (self.stroke_end[0] * w / SIDE, self.stroke_end[1] * h / SIDE)) < 2.5

    def traffic(self, n: int = 6) -> str:
        """The last frames each way, for failure messages."""

        def short(m: dict[str, Any]) -> str:
            return json.dumps(
                {
                    k: (len(v) if k == "points" else v)
                    for k, v in m.items()
                    if k not in ("image", "saliency", "probabilities", "timings", "canvas")
                }
            )

        return (
            f"{len(self.sockets)} socket(s); sent: "
            + " ".join(short(m) for m in self.sent[-n:])
            + " | received: "
            + " ".join(short(m) for m in self.received[-n:])
        )

    def click(self, selector: str) -> None:
        self.mark = len(self.sent)
        self.page.click(selector)

    def press(self, key: str) -> None:
        self.mark = len(self.sent)
        self.page.keyboard.press(key)

    def sent_since_mark(self, kind: str) -> dict[str, Any]:
        return wait_until(
            self.page,
            lambda: next((m for m in self.sent[self.mark :] if m["type"] == kind), None),
            what=f"the page to send a {kind} message",
        )

    def expect_digit(self, digit: int, kind: str = "stroke") -> dict[str, Any]:
        final = self.settled(kind)
        assert final["digit"] == digit, (
            f"drew {digit}, the server read {final['digit']}: {final['probabilities']}; {self.traffic()}"
        )
        expect(self.page.locator("#digit")).to_have_text(str(digit))
        expect(self.page.locator(f'#bars li[data-digit="{digit}"]')).to_have_attribute(
            "data-p", f"{final['probabilities'][digit]:.4f}"
        )
        return final

    def expect_empty(self) -> None:
        expect(self.page.locator("#digit")).to_have_text("–")
        for bar in self.page.locator("#bars li[data-digit]").all():
            expect(bar).to_have_attribute("data-p", "0")

    def drawing_id(self) -> str:
        return next(m["drawing"] for m in reversed(self.sent) if m["type"] == "stroke")

    def saved_id(self) -> int:
        message = self.page.locator("#message")
        expect(message).to_have_text(SAVED, timeout=15000)
        return int(SAVED.search(message.inner_text()).group(1))


def stored(pk: int, timeout: float = 15.0):
    """The stored row once a worker has filled in its prediction (drawings are stored first)."""
    from recognizer.models import Drawing

    deadline = time.monotonic() + timeout
    while (row := orm(lambda: Drawing.objects.get(pk=pk))).predicted_at is None:
        assert time.monotonic() < deadline, f"drawing {pk} was stored but never predicted"
        time.sleep(0.1)
    return row


def digit_png(digit: int, side: int = 280, width: int = 18) -> bytes:
    """A PNG of the digit's paths: dark ink on white, as someone would photograph or scan it."""
    image = Image.new("RGB", (side, side), "white")
    ink = ImageDraw.Draw(image)
    for stroke in digit_strokes(digit, scale=side / SIDE):
        ink.line(stroke, fill="black", width=width, joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            ink.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# Connected areas (4-neighbours) of ink on a canvas: pixels that differ from the corner pixel (the
# background) by more than half the largest difference, so anti-aliased edges count at half coverage.
_INK_BLOBS = """(selector) => {
    const canvas = document.querySelector(selector);
    const w = canvas.width, h = canvas.height;
    const data = canvas.getContext('2d').getImageData(0, 0, w, h).data;
    const diff = new Float32Array(w * h);
    let most = 0;
    for (let i = 0; i < w * h; i++) {
        for (let c = 0; c < 4; c++) diff[i] += Math.abs(data[i * 4 + c] - data[c]);
        most = Math.max(most, diff[i]);
    }
    const seen = new Uint8Array(w * h), blobs = [];
    for (let start = 0; start < w * h; start++) {
        if (seen[start] || diff[start] <= most / 2) continue;
        const blob = {x0: w, y0: h, x1: -1, y1: -1, pixels: 0}, stack = [start];
        seen[start] = 1;
        while (stack.length) {
            const i = stack.pop(), x = i % w, y = (i - x) / w;
            blob.pixels++;
            blob.x0 = Math.min(blob.x0, x); blob.x1 = Math.max(blob.x1, x);
            blob.y0 = Math.min(blob.y0, y); blob.y1 = Math.max(blob.y1, y);
            for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1]) {
                if (j >= 0 && !seen[j] && diff[j] > most / 2) { seen[j] = 1; stack.push(j); }
            }
        }
        blobs.push({...blob, width: blob.x1 - blob.x0 + 1, height: blob.y1 - blob.y0 + 1});
    }
    return blobs.sort((a, b) => a.x0 - b.x0);
}"""


def ink_blobs(page: Page, selector: str) -> list[dict[str, int]]:
    """The separate marks of ink on the canvas `selector`, left to right: {x0, y0, x1, y1, width,
    height, pixels} in the canvas's own (backing store) pixels."""
    return page.evaluate(_INK_BLOBS, selector)
