"""Real pen digits (UJI dev writers) streamed as strokes through the running service's WebSocket, as
the page sends them: the final predictions read them as well as `evaluate` does in-process."""

from __future__ import annotations

import pytest
import torch
from django.conf import settings

from digits.data import uji
from digits.evaluation.evaluate import uji_report
from digits.inference.predictor import load_predictor

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

POINTS_PER_MESSAGE = 8  # the page sends what the pointer gave in the last 50 ms
PAUSE_S = 0.012  # keeps one socket under the service's 100 messages/s rate limit
MARGIN = 0.02  # one digit of the sample


def sample(digits: list[uji.PenDigit]) -> list[uji.PenDigit]:
    """Half of the (writer, digit) pairs, the first of each pair's two drawings: every writer, every
    digit, 10 per digit."""
    names = uji.writers(digits)
    chosen, seen = [], set()
    for d in digits:
        key = (d.writer, d.label)
        if key not in seen and (names.index(d.writer) + d.label) % 2 == 0:
            chosen.append(d)
        seen.add(key)
    return chosen


def test_uji_dev_digits_streamed_over_the_websocket_are_read_as_evaluate_reads_them(ws) -> None:
    torch.set_num_threads(1)
    digits = sample(uji.load_dev(settings.UJI_DIR))
    assert len(digits) == 100 and len(uji.writers(digits)) == 20
    predictor = load_predictor(settings.MODELS_DIR)
    measured = uji_report(predictor, digits, temperature=1.0)  # what `evaluate` measures on these
    expected = predictor.predict(uji.render(digits)).argmax(axis=1)

    read, finals = 0, []
    for i, d in enumerate(digits):
        drawing = f"uji-{i}"
        last = ws.stream(
            uji.fit_to_canvas(d.strokes),
            drawing=drawing,
            batch=POINTS_PER_MESSAGE,
            canvas=uji.CANVAS,
            brush=uji.BRUSH,
            pause=PAUSE_S,
        )
        final, seen = ws.prediction_for(last)
        assert not [m for m in seen if m["type"] == "error"], seen
        assert (final["drawing"], final["seq"], final["model"]) == (drawing, last, predictor.name)
        finals.append(final["digit"])
        read += final["digit"] == d.label

    accuracy = read / len(digits)
    differ = [(d.sample, d.label, int(e), f) for d, e, f in zip(digits, expected, finals) if e != f]
    assert accuracy >= measured["accuracy"] - MARGIN, (accuracy, measured["accuracy"], differ)
    # the same strokes, canvas and brush go through the same renderer and model: the same answers
    assert len(differ) <= 1, differ
