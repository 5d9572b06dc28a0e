"""Recognition quality through the real WebSocket: the tests' own hand-made digits drawn at unusual
sizes, places and brush widths are read right; a scribble, a filled blob and letters come back
flagged "uncertain"; an empty drawing gives digit null.

The letters drawn here (A, X, W) and these scribble/blob paths were not used to train or tune the
model or the refusal thresholds (those used digits.inference.refusal.TUNING_LETTERS and random shapes).
"""

from __future__ import annotations

import itertools
import math

import pytest

from tests.support.digit_paths import digit_strokes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CANVAS = (280, 280)
PAGE_BRUSH = round(CANVAS[0] * 18 / 320, 1)  # what the page uses (pad.js BRUSH_RATIO)

# name -> (scale, offset, brush, canvas). The paths span x 70..210, y 40..240 on a 280x280 canvas.
CONDITIONS = {
    "tiny-top-left": (0.25, (-12.0, -5.0), PAGE_BRUSH, CANVAS),
    "tiny-bottom-right": (0.25, (215.0, 210.0), 6.0, CANVAS),
    "small-top-right": (0.45, (170.0, -10.0), PAGE_BRUSH, CANVAS),
    "small-bottom-left": (0.45, (-25.0, 165.0), PAGE_BRUSH, CANVAS),
    "huge-filling-the-canvas": (1.35, (-85.0, -49.0), 24.0, CANVAS),
    "thin-3px": (1.0, (0.0, 0.0), 3.0, CANVAS),
    "thick-40px": (1.0, (0.0, 0.0), 40.0, CANVAS),
    "wide-canvas-off-centre": (0.8, (420.0, 20.0), 22.0, (640, 300)),
}


def _line(a, b, n=10):
    return [(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n) for i in range(n + 1)]


def _poly(*pts, n=10):
    out = []
    for a, b in itertools.pairwise(pts):
        out += _line(a, b, n)[1 if out else 0 :]
    return out


LETTERS = {
    "A": [_poly((70, 240), (140, 40), (210, 240)), _line((100, 160), (180, 160))],
    "X": [_line((75, 45), (205, 235)), _line((205, 45), (75, 235))],
    "W": [_poly((60, 50), (100, 235), (140, 110), (180, 235), (220, 50))],
}


def _scribble():
    """A tangled scrawl: a looping curve that crosses itself many times."""
    return [
        [
            (140 + 70 * math.cos(t / 10) + 35 * math.cos(t / 2.3), 140 + 70 * math.sin(t / 7) + 35 * math.sin(t / 3.1))
            for t in range(0, 200)
        ]
    ]


def _blob():
    """A filled patch: dense zig-zag hatching, as someone colouring in a shape."""
    pts = []
    for i, y in enumerate(range(70, 215, 9)):
        xs = (75, 205) if i % 2 == 0 else (205, 75)
        pts += [(xs[0], y), (xs[1], y)]
    return [pts]


def _predict(ws, strokes, drawing, brush=PAGE_BRUSH, canvas=CANVAS):
    last = ws.stream(strokes, drawing=drawing, batch=8, brush=brush, canvas=canvas)
    final, _ = ws.prediction_for(last)
    assert final["seq"] == last
    return final


@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_digits_at_unusual_sizes_places_and_brushes_are_read_right(ws, condition):
    scale, offset, brush, canvas = CONDITIONS[condition]
    wrong = []
    for digit in range(10):
        pred = _predict(ws, digit_strokes(digit, scale, offset), f"{condition}-{digit}", brush, canvas)
        if pred["digit"] != digit or pred.get("uncertain"):
            wrong.append((digit, pred["digit"], pred["confidence"], pred.get("reason")))
    assert not wrong, f"{condition}: (drawn, read, confidence, reason) {wrong}"


@pytest.mark.parametrize("name", ["scribble", "blob", "A", "X", "W"])
def test_non_digits_are_flagged_uncertain(ws, name):
    if name == "scribble":
        strokes, brush = _scribble(), PAGE_BRUSH
    elif name == "blob":
        strokes, brush = _blob(), 22.0
    else:
        strokes, brush = LETTERS[name], PAGE_BRUSH
    pred = _predict(ws, strokes, f"not-a-digit-{name}", brush)
    assert pred.get("uncertain") is True and pred.get("reason"), (
        f"{name}: read {pred['digit']} ({pred['confidence']}), uncertain={pred.get('uncertain')} {pred.get('reason')}"
    )
    assert pred["digit"] is not None and pred["probabilities"] is not None


def test_an_empty_drawing_gives_null(ws):
    pred = _predict(ws, digit_strokes(5), "empty-after-clear")
    assert pred["digit"] == 5
    seq = ws.send(type="clear", drawing="empty-after-clear")
    cleared, _ = ws.prediction_for(seq)
    assert cleared["seq"] == seq and cleared["digit"] is None and cleared["probabilities"] is None
    assert not cleared.get("uncertain")
