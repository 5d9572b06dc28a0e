"""The triage page in a real browser against the real stack: a staff reviewer logs in through the
admin's form and labels 50 stored drawings by keyboard alone (digits, Enter to confirm the guess);
X excludes and ←/→ move back to change an answer. Every answer must be stored in the database."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import orm, wait_until
from tests.support.digit_paths import digit_strokes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"
COUNT = 50


def seed(count: int) -> tuple[list[int], int]:
    """`count` predicted drawings (model guess i % 10) and a staff reviewer (who may view and change
    drawings); returns (ids, user id).
    Rows left by other browser tests are removed so that the queue holds exactly these."""
    from django.contrib.auth.models import Permission, User
    from django.utils import timezone

    from recognizer.models import Drawing

    Drawing.objects.all().delete()
    user = User.objects.create_user("triage", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_drawing", "change_drawing"]))
    rows = Drawing.objects.bulk_create(
        Drawing(
            client_id=f"t{i}",
            content_hash=f"t{i}",
            strokes=digit_strokes(i % 10),
            canvas_width=280.0,
            canvas_height=280.0,
            brush=16.0,
            predicted_digit=i % 10,
            confidence=0.5 + i / 200,
            model_name="cnn-v6",
            predicted_at=timezone.now(),
            label=None,
        )
        for i in range(count)
    )
    return [r.pk for r in rows], user.pk


def log_in(page: Page, next_url: str) -> None:
    page.goto(f"/admin/login/?next={next_url}")
    page.fill("#id_username", "triage")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    expect(page.locator("#triage")).to_have_attribute("data-state", re.compile("drawing|done"))


def shown_id(page: Page) -> int:
    triage = page.locator("#triage")
    expect(triage).to_have_attribute("data-id", re.compile(r"^\d+$"))
    return int(triage.get_attribute("data-id"))


def stored_reviews(ids: list[int]) -> dict[int, tuple[int | None, bool, int | None, bool]]:
    from recognizer.models import Drawing

    rows = Drawing.objects.filter(pk__in=ids).values_list("pk", "review_label", "excluded", "reviewed_by", "reviewed_at")
    return {pk: (label, excluded, by, at is not None) for pk, label, excluded, by, at in rows}


@pytest.mark.timeout(240)
def test_fifty_drawings_are_labelled_by_keyboard_alone(page: Page) -> None:
    started = time.perf_counter()
    ids, user = orm(lambda: seed(COUNT))
    guess = {pk: i % 10 for i, pk in enumerate(ids)}
    # every fifth drawing: the guess is right, Enter confirms it; the others typed, a third of them
    # differently from the guess (the model was wrong)
    plan = {
        pk: ("Enter", g) if i % 5 == 0 else ((str(d := (g + 3) % 10)), d) if i % 3 == 0 else (str(g), g)
        for i, (pk, g) in enumerate(guess.items())
    }

    log_in(page, "/review/%3Forder%3Doldest")
    progress = page.locator("#progress")
    expect(progress).to_have_text(re.compile(rf"^1 of {COUNT}\b"))
    seen = []
    for n in range(COUNT):
        pk = shown_id(page)
        seen.append(pk)
        page.keyboard.press(plan[pk][0])
        if n + 1 < COUNT:  # it moves on by itself
            expect(page.locator("#triage")).not_to_have_attribute("data-id", str(pk))
    expect(page.locator("#triage")).to_have_attribute("data-state", "done")
    expect(progress).to_have_text(f"{COUNT} of {COUNT} reviewed — done")
    assert sorted(seen) == sorted(ids)  # each drawing shown once, none skipped

    expected = {pk: (digit, False, user, True) for pk, (_, digit) in plan.items()}
    wait_until(
        page,
        lambda: orm(lambda: stored_reviews(ids)) == expected,
        timeout=15,
        what=lambda: f"labels stored: {orm(lambda: stored_reviews(ids))} != {expected}",
    )
    print(  # noqa: T201 - the timing, shown by pytest -s
        f"\n{COUNT} drawings labelled by keyboard and stored in {time.perf_counter() - started:.1f} s (test time, login included)"
    )


def test_x_excludes_and_the_arrows_go_back_to_change_an_answer(page: Page) -> None:
    ids, user = orm(lambda: seed(3))
    log_in(page, "/review/%3Forder%3Doldest")
    triage, now = page.locator("#triage"), page.locator("#now")
    assert shown_id(page) == ids[0]

    page.keyboard.press("x")
    assert shown_id(page) == ids[1]
    page.keyboard.press("ArrowLeft")
    assert shown_id(page) == ids[0]
    expect(now).to_have_text("excluded from training")
    wait_until(
        page, lambda: orm(lambda: stored_reviews([ids[0]]))[ids[0]] == (None, True, user, True), what="the exclusion stored"
    )

    page.keyboard.press("4")  # a changed mind: labelled 4, back in the training data
    assert shown_id(page) == ids[1]
    page.keyboard.press("ArrowRight")  # skip: left unreviewed
    assert shown_id(page) == ids[2]
    expect(page.locator("#progress")).to_have_text(re.compile(r"^3 of 3 · 1 reviewed"))
    page.keyboard.press("Enter")  # confirm the guess (2)
    expect(triage).to_have_attribute("data-state", "done")

    wait_until(
        page,
        lambda: (
            orm(lambda: stored_reviews(ids))
            == {
                ids[0]: (4, False, user, True),
                ids[1]: (None, False, None, False),
                ids[2]: (2, False, user, True),
            }
        ),
        what="the answers stored",
    )


def test_an_answer_that_cannot_be_saved_says_so(page: Page) -> None:
    from recognizer.models import Drawing

    ids, _ = orm(lambda: seed(2))
    log_in(page, "/review/%3Forder%3Doldest")
    assert shown_id(page) == ids[0]
    orm(lambda: Drawing.objects.filter(pk=ids[0]).delete())  # gone while on screen: the save gets a 404
    page.keyboard.press("5")
    expect(page.locator("#message")).to_contain_text(f"Drawing #{ids[0]} was not saved")
    expect(page.locator("#progress")).to_have_text(re.compile(r"· 0 reviewed$"))
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#now")).to_have_text("not saved")
