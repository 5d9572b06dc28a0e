"""Protocol v1 end to end on the real stack: daphne, Celery workers on Redis, PyTorch."""

import base64
import io
import json
import time

import pytest
import requests
from PIL import Image

from recognizer.models import Drawing
from tests.support.digit_paths import digit_strokes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_streamed_digits_are_read_right_while_drawing_and_at_pen_up(ws):
    for digit in range(10):
        last = ws.stream(digit_strokes(digit), drawing=f"digit{digit}", batch=6)
        final, seen = ws.prediction_for(last)
        assert final["seq"] == last and final["drawing"] == f"digit{digit}"
        assert final["digit"] == digit, f"drew {digit}, got {final['digit']} {final['probabilities']}"
        assert sum(final["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert final["confidence"] == max(final["probabilities"])
        assert len(final["image"]) == 1048  # base64 of 784 bytes
        predictions = [m for m in seen if m["type"] == "prediction"]
        assert len(predictions) > 1, "predictions should also arrive while the stroke is drawn"
        seqs = [m["seq"] for m in predictions]
        assert seqs == sorted(set(seqs)), "an older result followed a newer one"


def test_submit_stores_the_drawing_and_the_admin_lists_it(ws, stack, django_user_model):
    last = ws.stream(digit_strokes(3), drawing="keep-me", brush=18)
    ws.prediction_for(last)
    seq = ws.send(type="submit", drawing="keep-me", label=3)
    msgs = ws.until(lambda m: m["type"] in ("stored", "error"))
    stored = msgs[-1]
    assert stored["type"] == "stored" and stored["drawing"] == "keep-me" and stored["seq"] == seq

    row = predicted_row(stored["id"])  # stored at once, predicted by a worker right after
    assert (row.client_id, row.label, row.predicted_digit, row.brush) == ("keep-me", 3, 3, 18)
    assert len(row.strokes) == 1 and len(row.strokes[0]) == len(digit_strokes(3)[0])
    assert (row.canvas_width, row.canvas_height) == (280, 280)
    assert len(bytes(row.image28)) == 784 and max(bytes(row.image28)) > 200
    assert Image.open(io.BytesIO(bytes(row.png))).format == "PNG"
    assert len(row.probabilities) == 10 and row.model_name and row.latency_ms > 0

    django_user_model.objects.create_superuser("admin", "a@example.com", "a-long-test-password")
    session = requests.Session()
    login = f"{stack.url}/admin/login/"
    session.get(login)
    session.post(
        login,
        data={
            "username": "admin",
            "password": "a-long-test-password",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
    )
    listing = session.get(f"{stack.url}/admin/recognizer/drawing/?label__exact=3")
    assert listing.status_code == 200 and f"/admin/recognizer/drawing/{row.pk}/change/" in listing.text
    assert "data:image/png;base64," in listing.text
    detail = session.get(f"{stack.url}/admin/recognizer/drawing/{row.pk}/change/")
    assert detail.status_code == 200 and "28×28 image the model saw" in detail.text


def predicted_row(pk: int, timeout: float = 15.0) -> Drawing:
    deadline = time.monotonic() + timeout
    while (row := Drawing.objects.get(pk=pk)).predicted_at is None:
        assert time.monotonic() < deadline, f"drawing {pk} was stored but never predicted"
        time.sleep(0.1)
    return row


def test_a_heat_map_follows_the_prediction_at_pen_up(ws):
    last = ws.stream(digit_strokes(5), drawing="heat")
    final, _ = ws.prediction_for(last)
    heat = ws.until(lambda m: m["type"] == "saliency")[-1]
    assert (heat["drawing"], heat["seq"]) == ("heat", final["seq"])
    pixels = base64.b64decode(heat["saliency"])
    assert len(pixels) == 784 and max(pixels) == 255
    image = base64.b64decode(final["image"])
    on_ink = [h for h, v in zip(pixels, image) if v > 128]
    off_ink = [h for h, v in zip(pixels, image) if v == 0]
    assert sum(on_ink) / len(on_ink) > 3 * sum(off_ink) / len(off_ink)


def test_submit_without_strokes_is_refused(ws):
    ws.send(type="clear", drawing="nothing")
    ws.send(type="submit", drawing="nothing", label=None)
    err = ws.until(lambda m: m["type"] == "error")[-1]
    assert err["code"] == "empty_drawing"


def test_undo_and_clear_change_the_prediction_and_empty_gives_null(ws):
    ws.prediction_for(ws.stream(digit_strokes(1), drawing="u"))
    # a 1 plus a top bar reads as 7; undo must bring back the 1
    seq = ws.send(
        type="stroke", drawing="u", stroke=1, points=[[75, 45], [140, 42], [150, 42]], final=True, canvas=[280, 280], brush=16
    )
    ws.prediction_for(seq)
    seq = ws.send(type="undo", drawing="u")
    after_undo, _ = ws.prediction_for(seq)
    assert after_undo["seq"] == seq and after_undo["digit"] == 1
    seq = ws.send(type="clear", drawing="u")
    cleared, _ = ws.prediction_for(seq)
    assert cleared["seq"] == seq
    assert cleared["digit"] is None and cleared["probabilities"] is None and cleared["image"] is None


def test_a_burst_ends_with_a_prediction_for_its_last_message_in_order(ws):
    strokes = digit_strokes(7)
    last = ws.stream(strokes, drawing="burst", batch=1)  # ~24 messages back to back
    final, seen = ws.prediction_for(last)
    seqs = [m["seq"] for m in seen if m["type"] == "prediction"]
    assert final["seq"] == last and final["digit"] == 7
    assert seqs == sorted(set(seqs))
    assert not [m for m in seen if m["type"] == "error"]


def test_socket_idle_for_15_seconds_still_works(ws):
    """channels_redis + redis-py 8 drop idle receivers after 5 s unless socket_timeout is None."""
    ws.prediction_for(ws.stream(digit_strokes(4), drawing="before-idle"))
    time.sleep(15.5)
    final, _ = ws.prediction_for(ws.stream(digit_strokes(4), drawing="after-idle"), timeout=10)
    assert final["digit"] == 4


def raw_stroke(seq: int, points: str, *, stroke: int = 0) -> str:
    """A stroke frame with `points` as raw JSON text (NaN and 1e999 are not what json.dumps writes)."""
    return (
        f'{{"type": "stroke", "seq": {seq}, "drawing": "m", "stroke": {stroke}, "points": {points}, '
        '"final": true, "canvas": [280, 280], "brush": 16}'
    )


BAD_FRAMES = [
    ("not json at all", "bad_json"),
    ("[1,2,3]", "bad_json"),
    ('{"type": "fly", "seq": 1000}', "unknown_type"),
    ('{"type": "stroke", "seq": 1001}', "bad_message"),
    (raw_stroke(1002, '[[1, "x"]]'), "bad_message"),
    (raw_stroke(1003, "[[NaN, 1]]"), "bad_json"),
    (raw_stroke(1004, "[[1e999, 1]]"), "bad_message"),
    (raw_stroke(1005, "[[1e15, 1]]"), "bad_message"),
    (
        json.dumps(
            {
                "type": "stroke",
                "seq": 1006,
                "drawing": "m",
                "stroke": 0,
                "points": [[1, 1]] * 10001,
                "final": True,
                "canvas": [280, 280],
                "brush": 16,
            }
        ),
        "too_large",
    ),
    (json.dumps({"type": "undo", "seq": 1007, "drawing": "m", "pad": "x" * 300_000}), "too_large"),
    # past daphne's default 1 MiB:
    (json.dumps({"type": "undo", "seq": 1010, "drawing": "m", "pad": "x" * 1_500_000}), "too_large"),
    ('{"type": "undo", "seq": 5, "drawing": "m"}', "bad_seq"),
    ('{"type": "submit", "seq": 1008, "drawing": "m", "label": 12}', "bad_message"),
    (raw_stroke(1009, "[[1, 1]]", stroke=3), "bad_stroke"),
]


def test_every_malformed_message_gets_an_error_and_the_socket_stays_usable(ws):
    ws.seq = 10
    ws.send(type="clear", drawing="m")  # seq 11 accepted, so seq 5 is stale later
    ws.prediction_for(ws.seq)
    for frame, code in BAD_FRAMES:
        ws.send_raw(frame)
        reply = ws.until(lambda m: m["type"] == "error")[-1]
        assert reply["code"] == code, f"{frame[:80]} -> {reply}"
        assert isinstance(reply["message"], str) and reply["message"]
    ws.send_raw(b"\x00binary")
    assert ws.until(lambda m: m["type"] == "error")[-1]["code"] == "bad_json"
    ws.seq = 2000
    final, _ = ws.prediction_for(ws.stream(digit_strokes(0), drawing="m"))
    assert final["digit"] == 0


def test_a_flood_is_rate_limited_without_closing_the_socket(ws):
    for _ in range(400):
        ws.send(type="clear", drawing="flood")
    codes = {m.get("code") for m in ws.until(lambda m: m.get("code") == "rate_limited", timeout=20)}
    assert "rate_limited" in codes
    time.sleep(2.5)  # the bucket refills
    final, _ = ws.prediction_for(ws.stream(digit_strokes(2), drawing="after-flood"), timeout=20)
    assert final["digit"] == 2


def test_closed_sockets_leave_no_redis_subscription_behind(stack):
    """One reply subscription per web process, none per socket (channels_redis issue 276 leaked one
    per closed socket)."""
    import redis

    from tests.conftest import TEST_REDIS_URL
    from tests.support.wsclient import ProtocolClient

    client = redis.Redis.from_url(TEST_REDIS_URL)
    pattern = f"{stack.env['REDIS_PREFIX']}asgi*"
    for n in range(20):
        ws = ProtocolClient(stack.url)
        ws.prediction_for(ws.stream(digit_strokes(1), drawing=f"short{n}", batch=1000))
        ws.close()
    time.sleep(0.5)
    channels = client.pubsub_channels(pattern)
    assert len(channels) == 1, channels  # the one web process's reply channel
