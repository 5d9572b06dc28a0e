"""The page's URLs and limits come from the server: the template renders them into data- attributes
of <html> (recognizer/templatetags/page.py, from recognizer.protocol, the upload settings and the URL
configurations), and the page's JavaScript obeys whatever those say and repeats none of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import wait_until
from tests.browser.pad import Pad, digit_png

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "recognizer" / "static" / "recognizer"


def page_data(page: Page) -> dict[str, str]:
    return page.evaluate("() => ({...document.documentElement.dataset})")


def test_the_rendered_attributes_are_the_servers_constants(pad: Pad) -> None:
    from django.conf import settings
    from django.urls import reverse

    from recognizer import protocol
    from recognizer.routing import websocket_urlpatterns

    data = page_data(pad.page)
    assert data.keys() == {
        "socketPath",
        "predictUrl",
        "maxStrokes",
        "maxStrokePoints",
        "maxCanvas",
        "maxBrush",
        "uploadMaxBytes",
    }
    assert data["socketPath"] == "/" + str(websocket_urlpatterns[0].pattern)
    assert pad.sockets[0].url.endswith(data["socketPath"])
    assert data["predictUrl"] == reverse("api-predict")
    assert int(data["maxStrokes"]) == protocol.MAX_STROKES
    assert int(data["maxStrokePoints"]) == protocol.MAX_POINTS_PER_STROKE
    assert float(data["maxCanvas"]) == protocol.MAX_CANVAS
    assert float(data["maxBrush"]) == protocol.MAX_BRUSH
    assert int(data["uploadMaxBytes"]) == settings.UPLOAD_MAX_BYTES


def test_the_scripts_repeat_no_url_or_limit() -> None:
    from django.conf import settings

    from recognizer import protocol

    numbers = {protocol.MAX_STROKES, protocol.MAX_POINTS_PER_STROKE, int(protocol.MAX_CANVAS), settings.UPLOAD_MAX_BYTES}
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        for url in ("/ws/", "/api/"):
            assert url not in text, f"{script.name} names {url}"
        for number in numbers:
            assert not re.search(rf"\b{number}\b|\b{number:_}\b", text), f"{script.name} repeats {number}"


# Run before the page's scripts: once the document is parsed (readyState "interactive"), before
# its modules run, set the data- attributes of <html> in `changes`.
_SET_ATTRIBUTES = """document.addEventListener('readystatechange', () => {
    if (document.readyState !== 'interactive') return;
    for (const [name, value] of Object.entries(changes)) {
        if (!document.documentElement.hasAttribute(name)) throw new Error(`the page has no ${name}`);
        document.documentElement.setAttribute(name, value);
    }
});"""


def serve_page_with(page: Page, **attributes: Any) -> None:
    """Give the page these data- attributes (name_with_underscores=value) instead of the rendered
    ones. (Serving a rewritten page through page.route would do, but Chromium then blocks its
    socket to 127.0.0.1: a fulfilled document is not on the local network.)"""
    changes = {f"data-{name.replace('_', '-')}": str(value) for name, value in attributes.items()}
    page.add_init_script(script=f"const changes = {json.dumps(changes)};\n{_SET_ATTRIBUTES}")


def test_the_page_obeys_its_attributes(page: Page) -> None:
    png = digit_png(2)
    serve_page_with(
        page,
        socket_path="/ws/recognize/?from=attribute",
        predict_url="/api/predict?from=attribute",
        max_strokes=2,
        max_stroke_points=5,
        upload_max_bytes=len(png) - 1,
    )
    pad = Pad(page).open()
    assert pad.sockets[-1].url.endswith("/ws/recognize/?from=attribute")

    # at most 5 points a stroke, 2 strokes a drawing
    for stroke, y in enumerate((60, 140)):
        pad.stroke([(40, y), (240, y)])  # far more than 5 points: the page keeps the first 5
        wait_until(page, lambda: [m for m in pad.sent if m["type"] == "stroke" and m["final"] and m["stroke"] == stroke])
    strokes = [m for m in pad.sent if m["type"] == "stroke"]
    assert {m["stroke"] for m in strokes} == {0, 1}
    assert sum(len(m["points"]) for m in strokes if m["stroke"] == 0) == 5
    before = len(pad.sent)
    pad.stroke([(40, 220), (240, 220)])
    expect(page.locator("#message")).to_contain_text("as many strokes as one drawing can have")
    page.wait_for_timeout(200)
    assert not [m for m in pad.sent[before:] if m["type"] == "stroke"], "a third stroke was sent"

    # an image over the upload limit is refused without being sent; a smaller file goes to predict-url
    posted: list[str] = []
    page.on("request", lambda request: posted.append(request.url) if "/api/predict" in request.url else None)
    page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": png}])
    expect(page.locator("#message")).to_have_text(re.compile(r"^images up to \d"))
    expect(page.locator("#message")).to_have_attribute("data-kind", "error")
    with page.expect_response("**/api/predict?from=attribute") as answer:
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a digit\n"}])
    assert answer.value.status == 400
    wait_until(page, lambda: posted, what="the upload")
    assert len(posted) == 1 and posted[0].endswith("/api/predict?from=attribute"), posted
