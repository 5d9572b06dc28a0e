"""The drawing a connection is working on: strokes applied from checked protocol messages.

Pure Python, no Django: the session owns one `DrawingState` and snapshots it for the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recognizer.protocol import MAX_POINTS_PER_DRAWING, MAX_POINTS_PER_STROKE, ClearMsg, Point, ProtocolError, StrokeMsg, UndoMsg


@dataclass
class DrawingState:
    drawing: str = ""
    strokes: list[list[Point]] = field(default_factory=list)
    open_stroke: bool = False  # the last stroke still takes points (pen is down)
    canvas: tuple[float, float] = (280.0, 280.0)
    brush: float = 16.0
    seq: int | None = None  # newest client message reflected in this state
    version: int = 0  # counts the changes: equal versions (of one drawing) are the same drawing

    def apply(self, msg: StrokeMsg | UndoMsg | ClearMsg) -> None:
        """Apply one message; raises ProtocolError (and changes nothing) when it does not fit."""
        if msg.drawing != self.drawing:
            self._restart(msg.drawing)
        if isinstance(msg, StrokeMsg):
            self._add_points(msg)
            self.version += 1
        else:  # undo, clear: an empty drawing (pen up) stays as it is
            if self.strokes or self.open_stroke:
                self.version += 1
            if isinstance(msg, UndoMsg):
                if self.strokes:
                    self.strokes.pop()
            else:
                self.strokes.clear()
            self.open_stroke = False
        self.seq = msg.seq

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.strokes)

    def _restart(self, drawing: str) -> None:
        self.drawing, self.strokes, self.open_stroke = drawing, [], False
        self.version += 1

    def _add_points(self, msg: StrokeMsg) -> None:
        n = len(self.strokes)
        if msg.stroke == n:  # a new stroke
            new = True
        elif msg.stroke == n - 1 and self.open_stroke:  # more points for the pen-down stroke
            new = False
        else:
            raise ProtocolError("bad_stroke", f"stroke {msg.stroke} does not follow: the drawing has {n} strokes")
        current = [] if new else self.strokes[-1]
        if len(current) + len(msg.points) > MAX_POINTS_PER_STROKE:
            raise ProtocolError("too_large", f"a stroke has at most {MAX_POINTS_PER_STROKE} points")
        if self.points + len(msg.points) > MAX_POINTS_PER_DRAWING:
            raise ProtocolError("too_large", f"a drawing has at most {MAX_POINTS_PER_DRAWING} points")
        if new:
            self.strokes.append(current)
        current.extend(msg.points)
        self.open_stroke = not msg.final
        self.canvas, self.brush = msg.canvas, msg.brush
