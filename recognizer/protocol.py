"""Protocol v1 client messages (docs/protocol.md): checked fully at the edge into typed values.

`check_message` either returns a frozen dataclass the rest of the code can trust, or raises
`ProtocolError` with the code and message the client gets back. No Django, no I/O.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

MAX_FRAME_BYTES = 256 * 1024
MAX_POINTS_PER_STROKE = 10_000
MAX_POINTS_PER_DRAWING = 20_000  # bounds the rendering work one drawing can ask for
MAX_STROKES = 64
MAX_COORD = 100_000.0  # CSS px; anything beyond is hostile
MAX_CANVAS = 10_000.0
MAX_BRUSH = 1_000.0
DRAWING_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

Point = tuple[float, float]


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.seq = code, message, seq

    def as_message(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message, "seq": self.seq}


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


def _points(value: Any) -> tuple[Point, ...]:
    if not isinstance(value, list):
        raise ProtocolError("bad_message", "points must be a list of [x, y] pairs")
    if len(value) > MAX_POINTS_PER_STROKE:
        raise ProtocolError("too_large", f"a stroke has at most {MAX_POINTS_PER_STROKE} points")
    points = []
    for p in value:
        if not (isinstance(p, list) and len(p) == 2 and _is_number(p[0]) and _is_number(p[1])):
            raise ProtocolError("bad_message", "points must be [x, y] pairs of finite numbers")
        x, y = float(p[0]), float(p[1])
        if abs(x) > MAX_COORD or abs(y) > MAX_COORD:
            raise ProtocolError("bad_message", f"coordinates must be within ±{MAX_COORD:g}")
        points.append((x, y))
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
    return StrokeMsg(
        seq=seq,
        drawing=_drawing(obj),
        stroke=stroke,
        points=_points(obj.get("points")),
        final=final,
        canvas=_canvas(obj.get("canvas")),
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
    "stroke": _check_stroke, "undo": _check_undo, "clear": _check_clear, "submit": _check_submit,
}
