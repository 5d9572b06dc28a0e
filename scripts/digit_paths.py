"""Hand-made stroke paths of the ten digits, as a person would draw them on a 280x280 canvas.

Used by the integration and browser tests ("the tests' own paths", through tests/support/digit_paths.py) and by the
screenshot scripts, independent of MNIST.
`digit_strokes(d, scale, offset)` places a digit anywhere at any size.
"""

from __future__ import annotations

import math

Point = tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> list[Point]:
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    return [
        (
            cx + rx * math.cos(math.radians(start + (end - start) * i / n)),
            cy + ry * math.sin(math.radians(start + (end - start) * i / n)),
        )
        for i in range(n + 1)
    ]


def _bezier(a: Point, c: Point, b: Point, n: int = 16) -> list[Point]:
    """Quadratic Bezier from a to b with control point c."""
    t = [i / n for i in range(n + 1)]
    return [
        ((1 - u) ** 2 * a[0] + 2 * u * (1 - u) * c[0] + u * u * b[0], (1 - u) ** 2 * a[1] + 2 * u * (1 - u) * c[1] + u * u * b[1])
        for u in t
    ]


def _line(a: Point, b: Point, n: int = 12) -> list[Point]:
    return [(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n) for i in range(n + 1)]


# Each digit: a list of strokes on a 280x280 canvas, digit roughly within x 70..210, y 40..240.
PATHS: dict[int, list[list[Point]]] = {
    0: [_arc(140, 140, 58, 95, -90, 275, 40)],
    1: [_line((120, 70), (152, 42), 4) + _line((152, 42), (150, 240), 16)],
    2: [_arc(140, 100, 58, 55, 200, 380, 20) + _line((197, 110), (80, 240), 14) + _line((80, 240), (210, 238), 10)],
    3: [_arc(135, 92, 55, 48, 210, 450, 22) + _arc(135, 188, 62, 52, 270, 510, 24)],
    4: [_line((150, 42), (78, 170), 12) + _line((78, 170), (215, 170), 12), _line((172, 95), (170, 242), 12)],
    5: [_line((200, 45), (100, 45), 8) + _line((100, 45), (92, 128), 8) + _arc(135, 170, 65, 62, 230, 480, 24)],
    6: [_bezier((185, 45), (88, 85), (85, 185)) + _arc(140, 185, 55, 52, 180, -175, 32)],
    7: [_line((75, 50), (210, 50), 10) + _line((210, 50), (125, 242), 16)],
    8: [_arc(140, 88, 45, 45, 90, -270, 30) + _arc(140, 185, 55, 55, -90, 270, 34)],
    9: [_arc(140, 98, 52, 52, 0, 360, 30) + _line((192, 98), (182, 242), 14)],
}


def digit_strokes(digit: int, scale: float = 1.0, offset: Point = (0.0, 0.0)) -> list[list[Point]]:
    """The digit's strokes scaled about the canvas origin, then shifted by `offset`."""
    return [[(x * scale + offset[0], y * scale + offset[1]) for x, y in s] for s in PATHS[digit]]
