"""Protocol v1 (docs/protocol.md): the page's messages checked fully at the edge into typed values,
and the messages to the page typed.

`check_message` either returns a frozen dataclass the rest of the code can trust, or raises
`ProtocolError` with the code and message the client gets back. What goes to the page (over the
socket, and the HTTP API's bodies) is one of the TypedDicts below, built by its function and
encoded by `encode`; the error body is contract.errors.error_message. No Django, no I/O.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, TypeGuard

from contract.errors import ErrorMessage, error_message
from contract.jobs import Prediction

# The page (recognizer/static/recognizer/pad.js) sends at most 10,000 points a stroke and 64 strokes;
# its pad is a square of at most ~750 CSS px (app.css: 460 px beside the results, the screen's width
# under 780 px), with a brush of 18/320 of its side. The caps below are far beyond what it sends.
MAX_FRAME_BYTES = 256 * 1024
MAX_POINTS_PER_STROKE = 10_000
MAX_POINTS_PER_DRAWING = 20_000  # bounds the per-point work one drawing can ask for (rendering itself
# is bounded whatever the points: digits.inference.render thins them to MAX_SEGMENTS before the costly part)
MAX_STROKES = 64
MAX_COORD = 100_000.0  # CSS px; anything beyond is hostile
MAX_CANVAS = 4_096.0  # CSS px a side (the page's pad is at most ~750)
MAX_BRUSH = 1_000.0
MAX_BRUSH_RATIO = 0.25  # brush <= this x the canvas's longer side, + 1 px (the page's is 18/320 = 0.056)
# A submitted drawing is stored (and may feed training): at most this many points, and this many bytes
# of strokes as JSON (a full page stroke of 10,000 points, rounded to 0.1 px on a 750 px pad, is ~140 KB).
MAX_STORED_POINTS = 10_000
MAX_STORED_BYTES = 192 * 1024
# Work a socket asks for (recognizer.ratelimit; budgets in digitsite/settings/base.py): the bytes of its
# frames, charged before they are parsed (a 10,000-point stroke is ~150 KB of JSON, ~8 ms to parse and
# check), and its predictions, in units of one small drawing's prediction: a job costs ~2 ms over web
# process and worker whatever its size, plus ~0.2 us a point on each side (copied, encoded, decoded,
# rendered: the rendering itself bounded by digits.inference.render.MAX_SEGMENTS).
PREDICTION_POINTS_PER_UNIT = 5_000  # a prediction costs 1 + points / this
DRAWING_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

Point = tuple[float, float]


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, seq: int | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.seq, self.retry_after = code, message, seq, retry_after

    def as_message(self) -> ErrorMessage:
        return error_message(self.code, self.message, seq=self.seq, retry_after=self.retry_after)


# ---- server -> page


class PredictionFields(TypedDict):
    """contract.jobs.Prediction as the page reads it."""

    digit: int | None
    confidence: float | None
    probabilities: list[float] | None
    model: str
    uncertain: bool
    reason: str | None


class PredictionMessage(PredictionFields):
    """A drawing's prediction on the socket (`image`: the 28x28 the model saw, base64)."""

    type: Literal["prediction"]
    drawing: str
    seq: int
    latency_ms: float
    image: str | None
    timings: dict[str, float]


class UploadPrediction(PredictionFields):
    """The HTTP API's answer to an upload (`saliency`: its heat map, base64)."""

    type: Literal["prediction"]
    image: str
    saliency: str | None
    timings: dict[str, float]
    latency_ms: float


class HeatMapMessage(TypedDict):
    """The heat map of the prediction on screen (the page's message type and field: `saliency`)."""

    type: Literal["saliency"]
    drawing: str
    seq: int
    saliency: str


class StoredMessage(TypedDict):
    type: Literal["stored"]
    drawing: str
    id: int
    seq: int


ServerMessage = ErrorMessage | PredictionMessage | HeatMapMessage | StoredMessage


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prediction_fields(p: Prediction) -> PredictionFields:
    return {
        "digit": p.digit,
        "confidence": p.confidence,
        "probabilities": p.probabilities,
        "model": p.model,
        "uncertain": p.uncertain,
        "reason": p.reason,
    }


def prediction_message(
    drawing: str, seq: int, prediction: Prediction, *, latency_ms: float, image: bytes | None, timings: dict[str, float]
) -> PredictionMessage:
    return {
        "type": "prediction",
        "drawing": drawing,
        "seq": seq,
        **prediction_fields(prediction),
        "latency_ms": latency_ms,
        "image": b64(image) if image is not None else None,
        "timings": timings,
    }


def upload_prediction(
    prediction: Prediction, *, image: bytes, heat_map: bytes | None, timings: dict[str, float], latency_ms: float
) -> UploadPrediction:
    return {
        "type": "prediction",
        **prediction_fields(prediction),
        "image": b64(image),
        "saliency": b64(heat_map) if heat_map is not None else None,
        "timings": timings,
        "latency_ms": latency_ms,
    }


def heat_map_message(drawing: str, seq: int, heat_map: bytes) -> HeatMapMessage:
    return {"type": "saliency", "drawing": drawing, "seq": seq, "saliency": b64(heat_map)}


def stored_message(drawing: str, row_id: int, seq: int) -> StoredMessage:
    return {"type": "stored", "drawing": drawing, "id": row_id, "seq": seq}


def encode(message: ServerMessage) -> str:
    """A message to the page as the socket's text frame: compact JSON."""
    return json.dumps(message, separators=(",", ":"))


@dataclass(frozen=True)
class StrokeMsg:
    seq: int
    drawing: str
    stroke: int
    points: tuple[Point, ...]
    final: bool
    canvas: tuple[float, float]
    brush: float


@dataclass(frozen=True)
class UndoMsg:
    seq: int
    drawing: str


@dataclass(frozen=True)
class ClearMsg:
    seq: int
    drawing: str


@dataclass(frozen=True)
class SubmitMsg:
    seq: int
    drawing: str
    label: int | None


Message = StrokeMsg | UndoMsg | ClearMsg | SubmitMsg


def check_message(text: str | None, data: bytes | None, *, last_seq: int | None) -> Message:
    """Parse and validate one WebSocket frame; `last_seq` is the previous accepted seq."""
    if text is None:
        raise ProtocolError("bad_json", "binary frames are not accepted; send JSON text")
    if len(text) > MAX_FRAME_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"message over {MAX_FRAME_BYTES // 1024} KB")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "a message must be a JSON object")
    seq = obj.get("seq")
    seq = seq if _is_int(seq) else None
    kind = obj.get("type")
    checker = _CHECKERS.get(kind) if isinstance(kind, str) else None
    if checker is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}", seq)
    if seq is None:
        raise ProtocolError("bad_message", "seq must be an integer", None)
    if last_seq is not None and seq <= last_seq:
        raise ProtocolError("bad_seq", f"seq must increase (last was {last_seq})", seq)
    try:
        return checker(obj, seq)
    except ProtocolError as err:
        err.seq = seq
        raise


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _drawing(obj: dict[str, Any]) -> str:
    drawing = obj.get("drawing")
    if not isinstance(drawing, str) or not DRAWING_ID.fullmatch(drawing):
        raise ProtocolError("bad_message", "drawing must be 1-64 characters of [A-Za-z0-9_-]")
    return drawing


_NUMBER_TYPES = (int, float)  # exactly: bool (an int) is not a coordinate


def _points(value: Any) -> tuple[Point, ...]:
    """[[x, y], ...] as a tuple of float pairs. One tight loop: the page's 10,000-point stroke is
    checked in a few ms on the event loop every socket of the process shares."""
    if not isinstance(value, list):
        raise ProtocolError("bad_message", "points must be a list of [x, y] pairs")
    if len(value) > MAX_POINTS_PER_STROKE:
        raise ProtocolError("too_large", f"a stroke has at most {MAX_POINTS_PER_STROKE} points")
    points: list[Point] = []
    append, numbers, limit = points.append, _NUMBER_TYPES, MAX_COORD
    for p in value:
        if p.__class__ is not list or len(p) != 2:
            raise ProtocolError("bad_message", "points must be [x, y] pairs of finite numbers")
        x, y = p
        if x.__class__ not in numbers or y.__class__ not in numbers:
            raise ProtocolError("bad_message", "points must be [x, y] pairs of finite numbers")
        # (JSON has no NaN here: check_message refuses the constants; 1e999 is inf, caught here)
        if not (-limit <= x <= limit and -limit <= y <= limit):
            raise ProtocolError("bad_message", f"coordinates must be within ±{MAX_COORD:g}")
        append((float(x), float(y)))
    return tuple(points)


def _canvas(value: Any) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ProtocolError("bad_message", "canvas must be [width, height]")
    w, h = float(value[0]), float(value[1])
    if not (1 <= w <= MAX_CANVAS and 1 <= h <= MAX_CANVAS):
        raise ProtocolError("bad_message", f"canvas sides must be between 1 and {MAX_CANVAS:g}")
    return w, h


def _check_stroke(obj: dict[str, Any], seq: int) -> StrokeMsg:
    stroke = obj.get("stroke")
    if not _is_int(stroke) or not 0 <= stroke < MAX_STROKES:
        if _is_int(stroke) and stroke >= MAX_STROKES:
            raise ProtocolError("too_large", f"a drawing has at most {MAX_STROKES} strokes")
        raise ProtocolError("bad_message", "stroke must be an integer >= 0")
    final = obj.get("final")
    if not isinstance(final, bool):
        raise ProtocolError("bad_message", "final must be true or false")
    brush = obj.get("brush")
    if not _is_number(brush) or not 0 < brush <= MAX_BRUSH:
        raise ProtocolError("bad_message", f"brush must be a number in (0, {MAX_BRUSH:g}]")
    canvas = _canvas(obj.get("canvas"))
    if brush > MAX_BRUSH_RATIO * max(canvas) + 1:
        raise ProtocolError("bad_message", f"brush must be at most {MAX_BRUSH_RATIO:g} x the canvas's longer side + 1")
    return StrokeMsg(
        seq=seq,
        drawing=_drawing(obj),
        stroke=stroke,
        points=_points(obj.get("points")),
        final=final,
        canvas=canvas,
        brush=float(brush),
    )


def _check_undo(obj: dict[str, Any], seq: int) -> UndoMsg:
    return UndoMsg(seq=seq, drawing=_drawing(obj))


def _check_clear(obj: dict[str, Any], seq: int) -> ClearMsg:
    return ClearMsg(seq=seq, drawing=_drawing(obj))


def _check_submit(obj: dict[str, Any], seq: int) -> SubmitMsg:
    label = obj.get("label", "missing")
    if label is not None and not (_is_int(label) and 0 <= label <= 9):
        raise ProtocolError("bad_message", "label must be an integer 0-9 or null")
    return SubmitMsg(seq=seq, drawing=_drawing(obj), label=label)


_CHECKERS: dict[str, Callable[[dict[str, Any], int], Message]] = {
    "stroke": _check_stroke,
    "undo": _check_undo,
    "clear": _check_clear,
    "submit": _check_submit,
}
