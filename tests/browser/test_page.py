"""The page in a real browser (Debian's chromium) against the real stack: drawing with mouse and
touch, live predictions while the pen is down, undo/clear, submit and feedback stored in the
database, uploads by file picker and by drop, keyboard shortcuts, and reconnecting after the
server drops the socket."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, WebSocket, expect

from tests.browser.conftest import orm, restart_web_under, wait_until
from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.browser

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
        if not ws.url.endswith("/ws/recognize/"):
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
        for (x0, y0), (x1, y1) in zip(screen, screen[1:]):
            mouse.move(x1, y1, steps=max(1, math.ceil(math.dist((x0, y0), (x1, y1)) / STEP_PX)))
            self.page.wait_for_timeout(PAUSE_MS)
        if before_up:
            before_up()
        mouse.up()

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


@pytest.fixture
def pad(page: Page) -> Pad:
    return Pad(page).open()


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


# ---------------------------------------------------------------- drawing with the mouse


def test_each_digit_is_read_while_drawn_and_right_at_pen_up(pad: Pad) -> None:
    for digit in range(10):
        pad.draw(digit, live_check=True)
        pad.expect_digit(digit)
        expect(pad.page.locator("#feedback")).to_be_visible()
        pad.click("#clear")
        assert pad.settled("clear")["digit"] is None
        pad.expect_empty()
    assert len(pad.sockets) == 1, "the socket should have stayed up"
    assert not [m for m in pad.received if m["type"] == "error"]


def test_undo_and_clear_change_the_prediction(pad: Pad) -> None:
    pad.draw(1)
    pad.expect_digit(1)
    pad.stroke(TOP_BAR)
    with_bar = pad.settled()
    assert with_bar["digit"] != 1, f"a 1 with a bar on top still reads as 1: {with_bar['probabilities']}"
    expect(pad.page.locator("#digit")).to_have_text(str(with_bar["digit"]))

    pad.click("#undo")
    pad.expect_digit(1, "undo")

    pad.click("#clear")
    assert pad.settled("clear")["digit"] is None
    pad.expect_empty()
    expect(pad.page.locator("#confidence")).to_have_text("—")
    expect(pad.page.locator("#feedback")).to_be_hidden()
    expect(pad.page.locator("#history li")).to_have_count(1)  # the cleared drawing


def warm_pixels(page: Page) -> int:
    """Pixels of the model's view (#preview, 28x28) painted in the heat map's yellow-to-red, not grey."""
    return page.evaluate("""() => {
        const data = document.querySelector('#preview').getContext('2d').getImageData(0, 0, 28, 28).data;
        let warm = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] - data[i + 2] > 60) warm++;
        return warm;
    }""")


def test_the_heat_map_comes_once_the_drawing_rests_and_shows_on_request(pad: Pad) -> None:
    pad.draw(3)
    final = pad.expect_digit(3)
    toggle = pad.page.locator("#saliency-toggle")
    expect(toggle).to_be_visible(timeout=5000)  # the drawing rested: its heat map came
    heat = next(m for m in pad.received if m["type"] == "saliency")
    assert (heat["drawing"], heat["seq"]) == (final["drawing"], final["seq"])
    assert warm_pixels(pad.page) == 0, "the heat map was painted before the person asked for it"
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(toggle).to_have_text("Hide heat map")
    assert warm_pixels(pad.page) > 10, "the heat map is not painted over the model's view"
    toggle.click()
    expect(toggle).to_have_text("Show heat map")
    assert warm_pixels(pad.page) == 0


@pytest.mark.django_db(transaction=True)
def test_submit_stores_the_drawing_without_a_label(pad: Pad) -> None:
    pad.draw(4)
    final = pad.expect_digit(4)
    drawing_id = pad.drawing_id()
    pad.click("#submit")
    assert pad.sent_since_mark("submit")["label"] is None
    row = stored(pad.saved_id())
    assert (row.client_id, row.label, row.predicted_digit) == (drawing_id, None, 4)
    assert len(row.strokes) == 2 and row.probabilities == pytest.approx(final["probabilities"], abs=1e-6)
    box = pad.page.locator("#pad").bounding_box()
    assert (row.canvas_width, row.canvas_height) == (round(box["width"]), round(box["height"]))
    # a stored drawing starts a new, empty one
    pad.expect_empty()
    expect(pad.page.locator("#history li")).to_have_count(1)


@pytest.mark.django_db(transaction=True)
def test_yes_stores_the_predicted_digit_as_the_label(pad: Pad) -> None:
    pad.draw(8)
    pad.expect_digit(8)
    pad.click("#yes")
    assert pad.sent_since_mark("submit")["label"] == 8
    row = stored(pad.saved_id())
    assert (row.label, row.predicted_digit, row.client_id) == (8, 8, pad.drawing_id())


@pytest.mark.django_db(transaction=True)
def test_no_then_a_digit_stores_the_corrected_label(pad: Pad) -> None:
    pad.draw(1)
    pad.expect_digit(1)
    page = pad.page
    expect(page.locator("#fix")).to_be_hidden()
    page.click("#no")
    expect(page.locator("#fix")).to_be_visible()
    expect(page.locator("#no")).to_have_attribute("aria-expanded", "true")
    pad.click('#fix [data-label="7"]')
    assert pad.sent_since_mark("submit")["label"] == 7
    row = stored(pad.saved_id())
    assert (row.label, row.predicted_digit, row.client_id) == (7, 1, pad.drawing_id())
    expect(page.locator("#fix")).to_be_hidden()


# ---------------------------------------------------------------- uploads


def test_upload_by_file_input_shows_the_prediction_and_the_image(pad: Pad) -> None:
    page = pad.page
    with page.expect_response("**/api/predict") as answer:
        page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": digit_png(2)}])
    assert answer.value.status == 200, answer.value.text()
    expect(page.locator("#digit")).to_have_text("2")
    expect(page.locator("#upload-preview")).to_be_visible()
    expect(page.locator("#upload-preview")).to_have_attribute("src", re.compile(r"^blob:"))
    assert page.locator("#upload-preview").evaluate("img => img.decode().then(() => img.naturalWidth)") == 280
    expect(page.locator('#bars li[data-digit="2"]')).to_have_attribute("data-p", re.compile(r"^0\.[5-9]|^1\.0"))
    expect(page.locator("#announce")).to_contain_text("2")
    expect(page.locator("#feedback")).to_be_hidden()  # no ✓/✗ for an upload: nothing to store
    # drawing again hides the uploaded image
    pad.draw(7)
    pad.expect_digit(7)
    expect(page.locator("#upload-preview")).to_be_hidden()


def test_upload_by_dropping_a_file_on_the_pad(pad: Pad) -> None:
    page = pad.page
    transfer = page.evaluate_handle(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: 'image/png' }));
            return dt;
        }""",
        [base64.b64encode(digit_png(5)).decode(), "five.png"],
    )
    area, url = page.locator("#pad-area"), page.url
    area.dispatch_event("dragenter", {"dataTransfer": transfer})
    expect(area).to_have_class(re.compile(r"\bis-dragging\b"))
    with page.expect_response("**/api/predict") as answer:
        area.dispatch_event("drop", {"dataTransfer": transfer})
    assert answer.value.status == 200, answer.value.text()
    expect(area).not_to_have_class(re.compile(r"\bis-dragging\b"))
    expect(page.locator("#digit")).to_have_text("5")
    expect(page.locator("#upload-preview")).to_be_visible()
    expect(page.locator("#history li")).to_have_count(1)
    assert page.url == url and len(pad.sockets) == 1  # the browser did not navigate to the file


def test_a_file_that_is_not_an_image_gives_an_error_message(pad: Pad) -> None:
    page = pad.page
    with page.expect_response("**/api/predict") as answer:
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a digit\n"}])
    assert answer.value.status == 400
    message = page.locator("#message")
    expect(message).to_have_text(re.compile(r"PNG, JPEG, WebP or GIF"))
    expect(message).to_have_attribute("data-kind", "error")
    expect(page.locator("#digit")).to_have_text("–")


# ---------------------------------------------------------------- a phone


@pytest.mark.browser_context_args(viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True, is_mobile=True)
def test_touch_drawing_on_a_phone_does_not_scroll_the_page(page: Page) -> None:
    pad = Pad(page).open()
    page.evaluate("""() => {
        window.__pointerTypes = new Set();
        document.querySelector('#pad').addEventListener('pointerdown', (e) => window.__pointerTypes.add(e.pointerType));
    }""")
    box = page.locator("#pad").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 844, f"the pad does not fit a 390x844 screen: {box}"

    cdp = page.context.new_cdp_session(page)
    scrolls = []
    for stroke in digit_strokes(7):
        screen = pad.to_screen(stroke)
        pad.begin_stroke(stroke)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [_touch(*screen[0])]})
        for (x0, y0), (x1, y1) in zip(screen, screen[1:]):
            n = max(1, math.ceil(math.dist((x0, y0), (x1, y1)) / STEP_PX))
            for i in range(1, n + 1):
                point = _touch(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n)
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
            page.wait_for_timeout(PAUSE_MS)
            scrolls.append(page.evaluate("window.scrollY"))
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    pad.expect_digit(7)
    assert page.evaluate("[...window.__pointerTypes]") == ["touch"]
    scrolls.append(page.evaluate("window.scrollY"))
    assert set(scrolls) == {0}, f"the page scrolled while drawing: {sorted(set(scrolls))}"
    assert len([m for m in pad.sent if m["type"] == "stroke"]) > 2, "partial strokes expected while the finger moves"


def _touch(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y, "id": 1, "radiusX": 4, "radiusY": 4, "force": 1}


# ---------------------------------------------------------------- keyboard and screen readers


@pytest.mark.django_db(transaction=True)
def test_keyboard_shortcuts_and_the_spoken_result(pad: Pad) -> None:
    page = pad.page
    announce = page.locator("#announce")
    expect(announce).to_have_attribute("aria-live", "polite")
    pad.draw(1)
    pad.expect_digit(1)
    expect(announce).to_contain_text("1")
    pad.stroke(TOP_BAR)
    assert pad.settled()["digit"] != 1

    pad.press("Control+z")
    pad.expect_digit(1, "undo")

    pad.press("Escape")
    assert pad.settled("clear")["digit"] is None
    pad.expect_empty()
    expect(announce).to_have_text(re.compile("empty"))

    pad.draw(3)
    pad.expect_digit(3)
    expect(announce).to_have_text(re.compile(r"\b3\b.*\d+% sure"))
    pad.press("Enter")
    assert pad.sent_since_mark("submit")["label"] is None
    row = stored(pad.saved_id())
    assert (row.label, row.predicted_digit, row.client_id) == (None, 3, pad.drawing_id())


# ---------------------------------------------------------------- the server drops the socket


def test_the_page_reconnects_and_the_prediction_comes_back(pad: Pad, stack) -> None:
    page = pad.page
    pad.draw(4)
    before = pad.expect_digit(4)
    # Marks that only a new prediction from the server can overwrite.
    page.evaluate("""() => {
        document.querySelector('#digit').textContent = '?';
        for (const bar of document.querySelectorAll('#bars li')) bar.dataset.p = 'stale';
    }""")
    received = len(pad.received)

    restart_web_under(page, stack)  # daphne stopped (the page sees the socket close) and started again

    expect(page.locator("#status")).to_have_attribute("data-state", "open", timeout=30000)
    assert len(pad.sockets) >= 2, "the page should have opened a new socket"

    def resent() -> list[dict[str, Any]]:
        strokes = [m for m in pad.sent if m["type"] == "stroke" and m["seq"] > before["seq"]]
        return strokes if {m["stroke"] for m in strokes} == {0, 1} else []

    again = wait_until(page, resent, what="the page to re-send its drawing on the new socket")
    assert all(m["final"] for m in again) and len(again) == 2, again
    after = wait_until(
        page,
        lambda: next((m for m in pad.received[received:] if m["type"] == "prediction" and m["seq"] >= again[-1]["seq"]), None),
        what="a prediction on the new socket",
    )
    assert after["digit"] == 4 and after["seq"] > before["seq"]
    expect(page.locator("#digit")).to_have_text("4")
    expect(page.locator('#bars li[data-digit="4"]')).to_have_attribute("data-p", f"{after['probabilities'][4]:.4f}")
    expect(page.locator('#bars li[data-p="stale"]')).to_have_count(0)
