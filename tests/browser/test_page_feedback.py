"""What the page stores: Submit, "✓ Yes" and "✗ No" then a digit each store the drawing over the
socket with the right label (or none), and the page starts a new drawing."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.pad import Pad, stored

pytestmark = pytest.mark.browser


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
