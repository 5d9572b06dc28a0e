"""One way to draw strokes on both pages (recognizer/static/recognizer/strokes.js): a stroke that
does not move, a tap, is a dot as wide as the brush, as the server's renderer draws it
(digits/inference/render.py: a lone point is a disc of the brush's diameter), on the drawing page's
pad and on the triage page alike."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import orm
from tests.browser.pad import Pad, ink_blobs
from tests.browser.test_triage import PASSWORD, log_in

pytestmark = pytest.mark.browser

LINE = [(120.0, 100.0), (240.0, 100.0)]  # 280-based: a horizontal line, as thick as the brush
TOLERANCE_PX = 2.5  # of the canvas's backing store: anti-aliased edges, whole pixels


def assert_dot(dot: dict[str, int], diameter: float, what: str) -> None:
    assert abs(dot["width"] - dot["height"]) <= TOLERANCE_PX, f"{what} is not round: {dot}"
    assert abs(dot["width"] - diameter) <= TOLERANCE_PX, f"{what} is {dot['width']} px wide, not the brush's {diameter:.1f}"


def test_a_tap_on_the_pad_is_a_dot_as_wide_as_the_brush(pad: Pad) -> None:
    pad.tap((60, 200))
    pad.settled()
    sent = next(m for m in reversed(pad.sent) if m["type"] == "stroke")
    assert (sent["stroke"], sent["final"], len(sent["points"])) == (0, True, 1), "a tap should be one point"
    pad.stroke(LINE)
    pad.settled()

    page = pad.page
    scale = page.evaluate("() => document.querySelector('#pad').width") / sent["canvas"][0]
    brush = sent["brush"] * scale  # backing store px
    dot, line = ink_blobs(page, "#pad")  # left to right: exactly two marks
    assert_dot(dot, brush, "the tap")
    assert abs(line["height"] - brush) <= TOLERANCE_PX, f"the line is {line['height']} px thick, not {brush:.1f}"


def seed_taps() -> int:
    """A stored drawing of a one-point stroke, a line and a stroke of one point twice, and a staff
    reviewer (user "triage") to look at it; returns its id."""
    from django.contrib.auth.models import Permission, User
    from django.utils import timezone

    from recognizer.models import Drawing

    Drawing.objects.all().delete()
    user = User.objects.create_user("triage", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_drawing", "change_drawing"]))
    row = Drawing.objects.create(
        client_id="taps",
        content_hash="taps",
        strokes=[[[60.0, 200.0]], [[100.0, 140.0], [200.0, 140.0]], [[240.0, 200.0], [240.0, 200.0]]],
        canvas_width=280.0,
        canvas_height=280.0,
        brush=16.0,
        predicted_digit=1,
        confidence=0.5,
        model_name="cnn-v6",
        predicted_at=timezone.now(),
        label=None,
    )
    return row.pk


@pytest.mark.django_db(transaction=True)
def test_a_one_point_stroke_is_a_dot_on_the_triage_page_too(page: Page) -> None:
    pk = orm(seed_taps)
    log_in(page, "/review/%3Forder%3Doldest")
    expect(page.locator("#triage")).to_have_attribute("data-id", str(pk))
    first, line, last = ink_blobs(page, "#drawing")  # painted with the id (review.js: show)
    # the line is 100 units long and as thick as the brush (16): its length gives the scale
    scale = (line["width"] - line["height"]) / 100
    assert abs(line["height"] - 16 * scale) <= TOLERANCE_PX, f"{line} at {scale:.2f} px a unit"
    assert_dot(first, line["height"], "the one-point stroke")
    assert_dot(last, line["height"], "the stroke of one point twice")
