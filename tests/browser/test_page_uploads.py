"""Recognising an image on the page: by the file picker, by dropping it on the pad, and the error
a file that is not an image gets."""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import expect

from tests.browser.pad import Pad, digit_png

pytestmark = pytest.mark.browser


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
