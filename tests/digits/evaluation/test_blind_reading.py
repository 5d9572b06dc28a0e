import json

import numpy as np
import pytest
from PIL import Image

from digits.evaluation.blind_reading import contact_sheet, parse_readings, score, score_dir, sheet_items


def test_sheet_items_hold_every_error_and_a_fixed_sample_of_the_rest():
    errors, correct = np.array([3, 17, 40]), np.arange(100, 200)
    items = sheet_items(errors, correct, 5, seed=1)
    assert len(items) == 8 and len(set(items.tolist())) == 8
    assert set(errors.tolist()) <= set(items.tolist())
    assert set(items.tolist()) - set(errors.tolist()) <= set(correct.tolist())
    assert items.tolist() == sheet_items(errors, correct, 5, seed=1).tolist()
    assert items.tolist() != sheet_items(errors, correct, 5, seed=2).tolist()


def test_contact_sheet_puts_image_k_in_cell_k(tmp_path):
    images = np.zeros((12, 28, 28), dtype=np.uint8)
    images[11, 10:18, 10:18] = 255  # only the last image has ink
    contact_sheet(images, tmp_path / "s.png", columns=10, scale=2)
    sheet = np.asarray(Image.open(tmp_path / "s.png"))
    cell_w, cell_h = 28 * 2 + 6, 28 * 2 + 16
    assert sheet.shape == (2 * cell_h, 10 * cell_w)
    tile = sheet[cell_h + 14 : cell_h + 14 + 56, cell_w : cell_w + 56]  # row 1, column 1: image 11
    assert tile[28, 28] < 50 and tile[2, 2] > 200
    first = sheet[14 : 14 + 56, 0:56]  # image 0 has no ink
    assert first.min() > 200


def test_parse_readings_takes_digits_and_question_marks_and_skips_comments():
    assert parse_readings("# reader A\n1 2 ?\n7  # last\n", 4) == ["1", "2", "?", "7"]
    with pytest.raises(ValueError, match="expected 4"):
        parse_readings("1 2 3", 4)
    with pytest.raises(ValueError, match="digit"):
        parse_readings("1 2 12 x", 4)


def test_score_counts_errors_read_right_and_the_readers_own_mistakes():
    labels = np.array([1, 2, 3, 4, 5])
    is_error = np.array([True, True, False, False, False])
    result = score(["1", "?", "3", "9", "5"], labels, is_error)
    assert result == {"model_errors": 2, "model_errors_read_right": 1, "model_right": 3, "model_right_read_right": 2, "unsure": 1}


def test_score_dir_bounds_a_person_like_reader(tmp_path):
    meta = {
        "set": "s",
        "models": ["m"],
        "set_size": 100,
        "items": [5, 6, 7],
        "labels": [8, 4, 1],
        "model_error": [True, True, False],
    }
    (tmp_path / "items.json").write_text(json.dumps(meta))
    (tmp_path / "readings.txt").write_text("9 4 1\n")
    result = score_dir(tmp_path)
    assert result["model_errors_read_right"] == 1
    assert result["person_like_ceiling"] == pytest.approx(0.99)  # one unreadable image of 100
    assert json.loads((tmp_path / "result.json").read_text()) == result
