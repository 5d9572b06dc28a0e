"""How the answer shows: an uncertain prediction's reason in plain words, the compact answer that
stays in sight on a phone, hints only where they apply, messages that end with the next action, no
layout shift while drawing, and the heat map laid over the drawing."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pad import PAUSE_MS, STEP_PX, Pad, digit_png
from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.browser

PHONE = {"device_scale_factor": 2, "has_touch": True, "is_mobile": True}

# Keeps the page's sockets reachable, to hand it a message as if from the server.
KEEP_SOCKETS = """(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
        constructor(...args) { super(...args); window.__sockets.push(this); }
    };
})();"""


def open_pad(page: Page) -> Pad:
    page.add_init_script(KEEP_SOCKETS)
    return Pad(page).open()


def receive(page: Page, message: dict[str, Any]) -> None:
    """Hand the page's open socket a message as if the server had sent it."""
    page.evaluate(
        """(data) => {
            const ws = window.__sockets.filter((s) => s.readyState === 1).pop();
            ws.dispatchEvent(new MessageEvent('message', { data }));
        }""",
        json.dumps(message),
    )


def touch_draw(pad: Pad, digit: int) -> None:
    """Draw the digit with a finger (CDP touch events), as on a phone."""
    page = pad.page
    cdp = page.context.new_cdp_session(page)
    for stroke in digit_strokes(digit):
        screen = pad.to_screen(stroke)
        pad.begin_stroke(stroke)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [_touch(*screen[0])]})
        for (x0, y0), (x1, y1) in itertools.pairwise(screen):
            n = max(1, math.ceil(math.dist((x0, y0), (x1, y1)) / STEP_PX))
            for i in range(1, n + 1):
                point = _touch(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n)
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
            page.wait_for_timeout(PAUSE_MS)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def _touch(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y, "id": 1, "radiusX": 4, "radiusY": 4, "force": 1}


def in_viewport(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box and box["width"] > 0 and box["height"] > 0, f"{selector} is not laid out: {box}"
    assert box["x"] >= 0 and box["y"] >= 0, f"{selector} starts outside the screen: {box}"
    assert box["x"] + box["width"] <= size["width"] and box["y"] + box["height"] <= size["height"], (
        f"{selector} is below or beside a {size['width']}x{size['height']} screen: {box}"
    )


# ---------------------------------------------------------------- 1. the model is unsure


def test_an_uncertain_drawing_shows_the_reason_and_keeps_the_guess(page: Page) -> None:
    pad = open_pad(page)
    pad.draw(4)
    final = pad.expect_digit(4)
    unsure = page.locator("#unsure")
    expect(unsure).to_be_hidden()
    expect(unsure).to_have_text("")
    for reason, words in [
        ("too many pieces", "more than one mark — is this one digit?"),
        ("too many loops", "more loops than a digit has"),
        ("too much ink", "mostly ink"),
        ("low confidence", "no one digit stands out"),
        ("a code the page does not know", "it may not be a digit"),
    ]:
        receive(page, {**final, "seq": final["seq"], "uncertain": True, "reason": reason})
        expect(unsure).to_be_visible()
        expect(unsure).to_contain_text("The model is unsure")
        expect(unsure).to_contain_text(words)
        expect(page.locator("#digit")).to_have_text("4")  # the best guess stays
        expect(page.locator("#confidence")).not_to_have_text("—")
        expect(page.locator("#feedback")).to_be_visible()
    receive(page, {**final, "uncertain": False, "reason": None})
    expect(unsure).to_have_text("")
    expect(unsure).to_be_hidden()


def test_an_uncertain_upload_shows_the_reason(pad: Pad) -> None:
    page = pad.page
    answer = {
        "type": "prediction",
        "digit": 1,
        "confidence": 0.41,
        "probabilities": [0.05, 0.41, 0.3, 0.04, 0.04, 0.04, 0.04, 0.04, 0.02, 0.02],
        "model": "cnn",
        "uncertain": True,
        "reason": "too many pieces",
        "image": None,
        "latency_ms": 3.0,
    }
    page.route("**/api/predict*", lambda route: route.fulfill(json=answer))
    page.set_input_files("#file", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": digit_png(1)}])
    expect(page.locator("#digit")).to_have_text("1")
    expect(page.locator("#unsure")).to_contain_text("several separate marks — try cropping to the one digit")


# ---------------------------------------------------------------- 2. the answer in sight on a phone


def _answer_in_sight(page: Page) -> None:
    pad = open_pad(page)
    touch_draw(pad, 7)
    final = pad.expect_digit(7)
    expect(page.locator("#mini")).to_be_visible()
    expect(page.locator("#mini-digit")).to_have_text("7")
    expect(page.locator("#mini-confidence")).to_contain_text("% sure")
    expect(page.locator("#mini-bars li").first).to_contain_text("7")
    assert page.evaluate("window.scrollY") == 0
    for selector in ("#mini-digit", "#mini-confidence", "#mini-bars li:nth-child(1)", "#mini-bars li:nth-child(2)", "#pad"):
        in_viewport(page, selector)
    # an unsure answer says so beside the pad too, without moving it
    pad_box = page.locator("#pad").bounding_box()
    receive(page, {**final, "uncertain": True, "reason": "too many pieces"})
    expect(page.locator("#mini-unsure")).to_have_text("Unsure: more than one mark — is this one digit?")
    expect(page.locator("#mini-digit")).to_have_text("7")
    in_viewport(page, "#mini-unsure")
    assert page.locator("#pad").bounding_box() == pad_box


@pytest.mark.browser_context_args(viewport={"width": 360, "height": 640}, **PHONE)
def test_the_answer_is_in_sight_while_drawing_at_360x640(page: Page) -> None:
    _answer_in_sight(page)


@pytest.mark.browser_context_args(viewport={"width": 390, "height": 664}, **PHONE)
def test_the_answer_is_in_sight_while_drawing_at_390x664(page: Page) -> None:
    _answer_in_sight(page)


@pytest.mark.browser_context_args(viewport={"width": 1280, "height": 800})
def test_the_desktop_layout_keeps_pad_and_results_side_by_side(pad: Pad) -> None:
    page = pad.page
    pad.draw(2)
    pad.expect_digit(2)
    expect(page.locator("#mini")).to_be_hidden()
    for selector in ("#digit", "#confidence", "#pad", '#bars li[data-digit="9"]'):
        in_viewport(page, selector)
    pad_box = page.locator(".pad-panel").bounding_box()
    results = page.locator(".results").bounding_box()
    assert results["x"] > pad_box["x"] + pad_box["width"] and abs(results["y"] - pad_box["y"]) < 2, (pad_box, results)


# ---------------------------------------------------------------- 3. hints only where they apply


@pytest.mark.browser_context_args(viewport={"width": 390, "height": 664}, **PHONE)
def test_a_phone_shows_no_keyboard_or_drop_hints(pad: Pad) -> None:
    page = pad.page
    assert page.evaluate("matchMedia('(hover: none) and (pointer: coarse)').matches")
    expect(page.locator(".keys")).to_be_hidden()
    expect(page.locator(".drop-paste")).to_be_hidden()
    expect(page.locator(".upload-hint")).to_be_visible()  # the formats still show
    expect(page.locator("label.file-label")).to_be_visible()


def test_a_desktop_shows_the_keyboard_and_drop_hints(pad: Pad) -> None:
    page = pad.page
    expect(page.locator(".keys")).to_be_visible()
    expect(page.locator(".keys")).to_contain_text("Esc")
    expect(page.locator(".drop-paste")).to_be_visible()
    expect(page.locator(".upload-hint")).to_contain_text("drop a photo on the pad, or paste one")


# ---------------------------------------------------------------- 4. messages end with the next action


@pytest.mark.django_db(transaction=True)
def test_saved_and_errors_are_cleared_by_the_next_action(pad: Pad) -> None:
    page = pad.page
    message = page.locator("#message")
    pad.click("#submit")  # nothing drawn
    expect(message).to_have_text("Draw a digit first.")
    pad.stroke([(140, 40), (140, 240)])
    expect(message).to_have_text("")
    expect(message).not_to_have_attribute("data-kind", "error")
    pad.settled()
    pad.click("#submit")
    pad.saved_id()
    pad.click("#clear")  # the pad is already empty: Clear still ends the message
    expect(message).to_have_text("")
    pad.draw(5)
    pad.settled()
    pad.click("#submit")
    pad.saved_id()
    pad.stroke([(140, 40), (140, 240)])  # the next drawing's first stroke
    expect(message).to_have_text("")


# ---------------------------------------------------------------- 5. no layout shift while drawing

WATCH_SHIFTS = """() => {
    window.__shifts = [];
    new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
            window.__shifts.push({ value: e.value, recent: e.hadRecentInput,
                at: Math.round(e.startTime),
                sources: (e.sources || []).map((s) => ({
                    node: s.node ? (s.node.id || s.node.className || s.node.nodeName) : null,
                    from: [s.previousRect.x, s.previousRect.y, s.previousRect.width, s.previousRect.height],
                    to: [s.currentRect.x, s.currentRect.y, s.currentRect.width, s.currentRect.height],
                })) });
        }
    }).observe({ type: 'layout-shift' });
}"""


def _no_shift(pad: Pad, draw) -> None:
    page = pad.page
    page.evaluate(WATCH_SHIFTS)
    draw()
    pad.expect_digit(3)
    expect(page.locator("#feedback")).to_be_visible()
    expect(page.locator("#saliency-toggle")).to_be_visible(timeout=5000)  # the heat map came too
    page.wait_for_timeout(400)
    shifts = page.evaluate("window.__shifts")
    assert sum(s["value"] for s in shifts) == 0, f"the layout shifted while drawing: {shifts}"


def test_no_layout_shift_while_drawing_on_a_desktop(pad: Pad) -> None:
    _no_shift(pad, lambda: pad.draw(3))


@pytest.mark.browser_context_args(viewport={"width": 390, "height": 664}, **PHONE)
def test_no_layout_shift_while_drawing_on_a_phone(page: Page) -> None:
    pad = Pad(page).open()
    _no_shift(pad, lambda: touch_draw(pad, 3))


# ---------------------------------------------------------------- 6. the heat map over the drawing

WARM = """(selector) => {
    const c = document.querySelector(selector);
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const warm = [];
    for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 40 && data[i] - data[i + 2] > 60) warm.push([(i / 4) % c.width, Math.floor(i / 4 / c.width)]);
    }
    return warm;
}"""


def test_the_heat_map_is_laid_over_the_drawing(pad: Pad) -> None:
    page = pad.page
    pad.draw(3)
    pad.expect_digit(3)
    toggle = page.locator("#saliency-toggle")
    expect(toggle).to_be_visible(timeout=5000)
    heat = page.locator("#heat")
    expect(heat).to_be_hidden()
    toggle.click()
    expect(heat).to_be_visible()
    expect(page.locator("#heat-legend")).to_be_visible()
    expect(page.locator("#heat-legend")).to_have_text("where the model looked")
    pad_box, heat_box = page.locator("#pad").bounding_box(), heat.bounding_box()
    for key in ("x", "y", "width", "height"):
        assert abs(pad_box[key] - heat_box[key]) < 1, (pad_box, heat_box)
    warm = page.evaluate(WARM, "#heat")
    assert len(warm) > 200, f"the heat map over the pad is nearly empty: {len(warm)} warm pixels"
    # it lies on the drawing: most of it within the strokes' bounds
    ink = page.evaluate("""() => {
        const c = document.querySelector('#pad');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const box = [c.width, c.height, 0, 0];
        for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] < 128) continue;
            const x = (i / 4) % c.width, y = Math.floor(i / 4 / c.width);
            box[0] = Math.min(box[0], x); box[1] = Math.min(box[1], y);
            box[2] = Math.max(box[2], x); box[3] = Math.max(box[3], y);
        }
        return box;
    }""")
    inside = sum(1 for x, y in warm if ink[0] - 10 <= x <= ink[2] + 10 and ink[1] - 10 <= y <= ink[3] + 10)
    assert inside / len(warm) > 0.8, f"the heat map is not on the drawing: {inside}/{len(warm)} inside {ink}"
    # a new stroke takes it away until the next heat map; hiding it hides the overlay
    pad.stroke([(40, 260), (60, 262)])
    expect(heat).to_be_hidden()
    expect(toggle).to_be_visible(timeout=5000)
    expect(heat).to_be_visible()
    toggle.click()
    expect(heat).to_be_hidden()
    expect(page.locator("#heat-legend")).to_be_hidden()
