"""The admin's list of drawings in a real browser at 1280 px: every column fits (none cut off past
the reviewer's label), and "uncertain" is marked only on the rows that are."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import orm

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"


def seed() -> tuple[int, int]:
    """A superuser and two predicted drawings, one the model was unsure of: their ids."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from recognizer.models import Drawing

    User.objects.filter(username="layout").delete()
    User.objects.create_superuser("layout", password=PASSWORD)
    made = [
        Drawing.objects.create(
            client_id=f"layout-{name}",
            content_hash=f"layout-{name}",
            strokes=[[[10.0, 10.0], [60.0, 90.0]]],
            canvas_width=280.0,
            canvas_height=280.0,
            brush=16.0,
            predicted_digit=7,
            confidence=0.42 if unsure else 0.99,
            uncertain=unsure,
            reason="scribble" if unsure else "",
            model_name="cnn-v6",
            predicted_at=timezone.now(),
            label=1,
        )
        for name, unsure in (("unsure", True), ("sure", False))
    ]
    return made[0].pk, made[1].pk


def test_the_list_fits_1280_px_and_marks_only_uncertain_rows(page: Page) -> None:
    unsure, sure = orm(seed)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/admin/login/?next=/admin/recognizer/drawing/")
    page.fill("#id_username", "layout")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    expect(page.locator("#result_list")).to_be_visible()
    fits = page.evaluate(
        """() => {
            const results = document.querySelector('.results');
            const table = document.querySelector('#result_list');
            return {scroll: results.scrollWidth, client: results.clientWidth,
                    right: table.getBoundingClientRect().right, width: document.documentElement.clientWidth,
                    page: document.documentElement.scrollWidth};
        }"""
    )
    assert fits["scroll"] <= fits["client"] and fits["right"] <= fits["width"], fits
    assert fits["page"] <= fits["width"], fits  # no sideways scrolling of the page either
    last = page.locator("#result_list thead th").last
    expect(last).to_be_in_viewport()
    row = lambda pk: page.locator(f'#result_list tr:has(input[name="_selected_action"][value="{pk}"])')  # noqa: E731
    expect(row(unsure).locator("td.field-uncertain_flag")).to_contain_text("uncertain")
    expect(row(sure).locator("td.field-uncertain_flag")).to_have_text("")
    assert row(sure).locator("td.field-uncertain_flag img").count() == 0


def test_the_models_page_fits_1280_px(page: Page) -> None:
    orm(seed)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/admin/login/?next=/review/models/")
    page.fill("#id_username", "layout")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    expect(page.locator("#models")).to_be_visible()
    scroll, width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert scroll <= width, (scroll, width)
