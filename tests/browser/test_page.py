"""The page in a real browser (Debian's chromium) against the real stack: drawing with mouse and
touch, live predictions while the pen is down, undo/clear, the heat map, keyboard shortcuts and what
a screen reader hears, and reconnecting after the server drops the socket. Storing drawings is in
test_page_feedback.py, uploads in test_page_uploads.py, the page's settings in test_page_settings.py."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import restart_web_under, wait_until
from tests.browser.pad import PAUSE_MS, STEP_PX, TOP_BAR, Pad, stored
from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.browser


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
        for (x0, y0), (x1, y1) in itertools.pairwise(screen):
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
