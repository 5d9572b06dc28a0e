"""Protocol v1 message checking and the drawing state, without a server."""

import itertools
import json

import pytest

from recognizer.drawing import DrawingState
from recognizer.protocol import ClearMsg, ProtocolError, StrokeMsg, SubmitMsg, UndoMsg, check_message
from recognizer.ratelimit import TokenBucket


def stroke(**over):
    msg = {
        "type": "stroke",
        "seq": 1,
        "drawing": "d1",
        "stroke": 0,
        "points": [[1, 2], [3.5, 4]],
        "final": False,
        "canvas": [280, 280],
        "brush": 16,
    }
    msg.update(over)
    return json.dumps(msg)


def code_of(text, data=None, last_seq=None):
    with pytest.raises(ProtocolError) as err:
        check_message(text, data, last_seq=last_seq)
    return err.value.code


def test_valid_messages_become_typed_values():
    msg = check_message(stroke(), None, last_seq=None)
    assert msg == StrokeMsg(1, "d1", 0, ((1.0, 2.0), (3.5, 4.0)), False, (280.0, 280.0), 16.0)
    assert check_message('{"type":"undo","seq":2,"drawing":"d1"}', None, last_seq=1) == UndoMsg(2, "d1")
    assert check_message('{"type":"clear","seq":3,"drawing":"d1"}', None, last_seq=1) == ClearMsg(3, "d1")
    assert check_message('{"type":"submit","seq":4,"drawing":"d1","label":7}', None, last_seq=3) == SubmitMsg(4, "d1", 7)
    assert check_message('{"type":"submit","seq":5,"drawing":"d1","label":null}', None, last_seq=3).label is None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('"a string"', "bad_json"),
        ('{"seq": 1}', "unknown_type"),
        ('{"type": "erase", "seq": 1, "drawing": "d"}', "unknown_type"),
        ('{"type": "undo", "drawing": "d"}', "bad_message"),
        ('{"type": "undo", "seq": "1", "drawing": "d"}', "bad_message"),
        ('{"type": "undo", "seq": true, "drawing": "d"}', "bad_message"),
        ('{"type": "undo", "seq": 1}', "bad_message"),
        ('{"type": "undo", "seq": 1, "drawing": "bad id!"}', "bad_message"),
        ('{"type": "undo", "seq": 1, "drawing": "' + "x" * 65 + '"}', "bad_message"),
        ('{"type": "submit", "seq": 1, "drawing": "d", "label": 10}', "bad_message"),
        ('{"type": "submit", "seq": 1, "drawing": "d", "label": "3"}', "bad_message"),
        ('{"type": "submit", "seq": 1, "drawing": "d"}', "bad_message"),
        (stroke(points=[[1, "2"]]), "bad_message"),
        (stroke(points=[[1, 2, 3]]), "bad_message"),
        (stroke(points="nope"), "bad_message"),
        (stroke(points=[[1e308 * 10, 2]]).replace("Infinity", "1e999"), "bad_message"),
        (stroke(points=[[1e12, 2]]), "bad_message"),
        (
            '{"type":"stroke","seq":1,"drawing":"d","stroke":0,"points":[[NaN,1]],"final":false,"canvas":[9,9],"brush":3}',
            "bad_json",
        ),
        (
            '{"type":"stroke","seq":1,"drawing":"d","stroke":0,"points":[[Infinity,1]],"final":false,"canvas":[9,9],"brush":3}',
            "bad_json",
        ),
        (stroke(stroke=-1), "bad_message"),
        (stroke(stroke=64), "too_large"),
        (stroke(final="yes"), "bad_message"),
        (stroke(canvas=[0, 100]), "bad_message"),
        (stroke(canvas=[100]), "bad_message"),
        (stroke(brush=0), "bad_message"),
        (stroke(brush=None), "bad_message"),
        (stroke(points=[[1, 2]] * 10_001), "too_large"),
        (stroke(drawing="d" * 10) + " " * (256 * 1024), "too_large"),
    ],
)
def test_malformed_messages_are_refused_with_a_code(frame, code):
    assert code_of(frame) == code


def test_binary_frames_and_non_increasing_seq_are_refused():
    assert code_of(None, b"\x00\x01") == "bad_json"
    assert code_of(stroke(seq=5), last_seq=5) == "bad_seq"
    assert code_of(stroke(seq=4), last_seq=5) == "bad_seq"


def test_error_message_carries_the_seq_when_readable():
    with pytest.raises(ProtocolError) as err:
        check_message(stroke(seq=9, brush=-1), None, last_seq=None)
    assert err.value.as_message() == {"type": "error", "code": "bad_message", "message": err.value.message, "seq": 9}


def msg(seq, k, points, final, drawing="d1"):
    return StrokeMsg(seq, drawing, k, tuple(points), final, (280.0, 280.0), 16.0)


def test_drawing_state_appends_partial_strokes_and_follows_undo_and_clear():
    state = DrawingState()
    state.apply(msg(1, 0, [(0, 0), (1, 1)], False))
    state.apply(msg(2, 0, [(2, 2)], True))
    state.apply(msg(3, 1, [(5, 5)], True))
    assert state.strokes == [[(0, 0), (1, 1), (2, 2)], [(5, 5)]] and state.seq == 3
    state.apply(UndoMsg(4, "d1"))
    assert state.strokes == [[(0, 0), (1, 1), (2, 2)]]
    state.apply(ClearMsg(5, "d1"))
    assert state.strokes == [] and state.seq == 5


def test_drawing_state_refuses_strokes_that_do_not_follow_and_changes_nothing():
    state = DrawingState()
    state.apply(msg(1, 0, [(0, 0)], True))
    for bad in (msg(2, 0, [(1, 1)], False), msg(2, 2, [(1, 1)], False)):  # closed stroke, gap
        with pytest.raises(ProtocolError) as err:
            state.apply(bad)
        assert err.value.code == "bad_stroke"
    assert state.strokes == [[(0, 0)]] and state.seq == 1


def test_drawing_state_limits_points_across_partial_messages():
    state = DrawingState()
    state.apply(msg(1, 0, [(0, 0)] * 9_000, False))
    with pytest.raises(ProtocolError) as err:
        state.apply(msg(2, 0, [(0, 0)] * 1_001, False))
    assert err.value.code == "too_large" and len(state.strokes[0]) == 9_000


def test_a_new_drawing_id_starts_a_new_drawing():
    state = DrawingState()
    state.apply(msg(1, 0, [(0, 0)], True))
    state.apply(msg(2, 0, [(9, 9)], True, drawing="d2"))
    assert state.drawing == "d2" and state.strokes == [[(9, 9)]]


def test_token_bucket_allows_bursts_then_limits():
    bucket = TokenBucket(rate=1, burst=5)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2


def test_drawing_state_limits_points_per_drawing():
    state = DrawingState()
    for k in range(2):
        state.apply(msg(k + 1, k, [(0, 0)] * 9_999, True))
    with pytest.raises(ProtocolError) as err:
        state.apply(msg(3, 2, [(0, 0)] * 3, True))
    assert err.value.code == "too_large" and len(state.strokes) == 2


# ---- limits from the page's own: canvas, brush; work budgets; the drawing's version


def test_the_pages_largest_canvas_and_brush_pass_and_beyond_is_refused():
    # app.css: the pad is at most ~750 CSS px; pad.js: brush = round1(side * 18 / 320)
    for side in (120, 280, 460, 750, 4096):
        check_message(stroke(canvas=[side, side], brush=round(side * 18 / 320, 1)), None, last_seq=None)
    assert code_of(stroke(canvas=[4097, 300])) == "bad_message"
    assert code_of(stroke(canvas=[10_000, 10_000], brush=1_000)) == "bad_message"
    assert code_of(stroke(canvas=[280, 280], brush=0.25 * 280 + 2)) == "bad_message"  # brush tied to the canvas
    check_message(stroke(canvas=[1, 1], brush=1), None, last_seq=None)  # tiny pads keep a usable brush


@pytest.mark.parametrize(
    "points",
    [[[True, 1]], [[1, False]], [["1", 2]], [[1, None]], [[2, -1e6]], [[10**400, 1]], [(1, 2)], [[1]], [{"x": 1, "y": 2}]],
)
def test_points_must_be_pairs_of_numbers_within_bounds(points):
    text = stroke(points=points) if points != [(1, 2)] else stroke().replace("[[1, 2], [3.5, 4]]", '[[1, 2], "12"]')
    assert code_of(text) == "bad_message"
    assert code_of(stroke(points=[[1, 2]]).replace("[[1, 2]]", "[[1e999, 2]]")) == "bad_message"  # inf


def test_points_keep_their_values_as_floats():
    msg = check_message(stroke(points=[[0, 100000], [-100000, 12.25]]), None, last_seq=None)
    assert isinstance(msg, StrokeMsg) and msg.points == ((0.0, 100000.0), (-100000.0, 12.25))
    assert all(type(v) is float for p in msg.points for v in p)


def test_a_refusal_can_say_when_to_come_back():
    err = ProtocolError("rate_limited", "too many drawings stored", 4, retry_after=30)
    assert err.as_message() == {
        "type": "error",
        "code": "rate_limited",
        "message": "too many drawings stored",
        "seq": 4,
        "retry_after": 30,
    }


def test_the_drawings_version_changes_with_the_drawing_only():
    state = DrawingState()
    versions = [state.version]
    for m in (
        msg(1, 0, [(0, 0)], True),
        UndoMsg(2, "d1"),
        UndoMsg(3, "d1"),
        ClearMsg(4, "d1"),
        msg(5, 0, [(1, 1)], False),
        ClearMsg(6, "d1"),
        ClearMsg(7, "d1"),
        UndoMsg(8, "d2"),
    ):
        state.apply(m)
        versions.append(state.version)
    # stroke, undo: changes; undo and clear of an empty drawing: none; a pen-down stroke cleared: a change;
    # another drawing id: a change
    assert [b > a for a, b in itertools.pairwise(versions)] == [True, True, False, False, True, True, False, True]


# ---- server -> page


def test_one_builder_makes_every_error_body() -> None:
    from contract.errors import error_message
    from recognizer.protocol import encode

    assert error_message("no_image", "send it") == {"type": "error", "code": "no_image", "message": "send it"}
    assert error_message("bad_seq", "seq must increase", seq=None) == {
        "type": "error",
        "code": "bad_seq",
        "message": "seq must increase",
        "seq": None,
    }
    limited = ProtocolError("rate_limited", "slow down", 4, retry_after=3).as_message()
    assert limited == error_message("rate_limited", "slow down", seq=4, retry_after=3)
    assert encode(limited) == '{"type":"error","code":"rate_limited","message":"slow down","seq":4,"retry_after":3}'


def test_the_messages_to_the_page_keep_their_fields() -> None:
    from contract.jobs import Prediction
    from recognizer.protocol import heat_map_message, prediction_message, stored_message, upload_prediction

    p = Prediction(3, 0.9, [0.1] * 10, "cnn", False, None)
    live = prediction_message("d", 5, p, latency_ms=1.5, image=b"\x00", timings={"push": 0.1})
    assert list(live) == [
        "type",
        "drawing",
        "seq",
        "digit",
        "confidence",
        "probabilities",
        "model",
        "uncertain",
        "reason",
        "latency_ms",
        "image",
        "timings",
    ]
    assert live["image"] == "AA==" and live["digit"] == 3
    upload = upload_prediction(p, image=b"\x00", heat_map=None, timings={}, latency_ms=2.0)
    assert upload["type"] == "prediction" and upload["saliency"] is None and upload["image"] == "AA=="
    assert heat_map_message("d", 5, b"\xff") == {"type": "saliency", "drawing": "d", "seq": 5, "saliency": "/w=="}
    assert stored_message("d", 7, 9) == {"type": "stored", "drawing": "d", "id": 7, "seq": 9}
