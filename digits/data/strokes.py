"""Digit images -> the polylines a person might have drawn (skeleton tracing), and densification.

Pipeline: threshold, skeletonize, build the skeleton graph (nodes = end points and clusters of
junction pixels, edges = pixel paths between them), prune short spurs, pair the edges at each
junction by straightest continuation, chain them into strokes (closed loops included), orient and
order them like handwriting (top first), simplify with Ramer-Douglas-Peucker and map to the canvas.
Coordinates use pixel centres: pixel (row, col) is at x = col + 0.5, y = row + 0.5 before scaling.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

Pixel = tuple[int, int]  # (row, col)
Path = list[Pixel]
Polyline = Sequence[Sequence[float]] | np.ndarray  # points as JSON gives them, or an (n, 2) array

_ORTH = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAG = ((-1, -1), (-1, 1), (1, -1), (1, 1))
SKELETON_THRESHOLDS = (0.4, 0.55, 0.7)  # ink levels (fraction of the peak) tried for the skeleton
MIN_LOOP_AREA = 2  # pixels; a smaller hole is a pale spot inside a thick stroke, not a loop


def _as_unit(image: np.ndarray) -> np.ndarray:
    """Image as float in [0, 1] (uint8 or 0..255 floats are divided by 255)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    return img / 255.0 if image.dtype == np.uint8 or img.max(initial=0) > 1.0 else img


def _loops(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """``ink`` with holes under MIN_LOOP_AREA filled, and its number of remaining holes (enclosed
    4-connected background regions: the loops of a 0, 6, 8 or 9)."""
    background, n = ndimage.label(~ink)
    areas = np.bincount(background.ravel(), minlength=n + 1)
    edge = set(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]).tolist())
    holes = [k for k in range(1, n + 1) if k not in edge]
    small = [k for k in holes if areas[k] < MIN_LOOP_AREA]
    return (ink | np.isin(background, small) if small else ink), len(holes) - len(small)


def _parts(ink: np.ndarray) -> int:
    return ndimage.label(ink, structure=np.ones((3, 3)))[1]


def _skeleton(image: np.ndarray, thresholds: Sequence[float] = SKELETON_THRESHOLDS) -> np.ndarray:
    """The one-pixel skeleton of the ink (pixels above ``thresholds[0]`` of the peak).

    A loop whose hole is blurred shut by grey ink at that level (a tight 9, 8, 6 or 2) would be
    traced as a plain line, so higher levels are tried as well: the lowest level that shows the
    most loops is used, provided the ink does not fall apart into more pieces there.
    """
    img = _as_unit(image)
    peak = max(float(img.max(initial=0)), 1e-9)
    best, most = _loops(img > thresholds[0] * peak)
    pieces = _parts(best)
    for level in thresholds[1:]:
        ink, loops = _loops(img > level * peak)
        if _parts(ink) > pieces:
            break
        if loops > most:
            best, most = ink, loops
    return skeletonize(best)


def _adjacency(skel: np.ndarray) -> dict[Pixel, list[Pixel]]:
    """8-connected neighbours, a diagonal link only where no orthogonal pixel already bridges it."""
    pix = set(zip(*(a.tolist() for a in np.nonzero(skel))))
    adj: dict[Pixel, list[Pixel]] = {}
    for r, c in pix:
        nb = [(r + dr, c + dc) for dr, dc in _ORTH if (r + dr, c + dc) in pix]
        nb += [
            (r + dr, c + dc) for dr, dc in _DIAG if (r + dr, c + dc) in pix and (r + dr, c) not in pix and (r, c + dc) not in pix
        ]
        adj[(r, c)] = nb
    return adj


def _clusters(adj: dict[Pixel, list[Pixel]]) -> dict[Pixel, int]:
    """Node id of every non-path pixel (degree != 2); touching junction pixels share one id."""
    node_of: dict[Pixel, int] = {}
    for p in sorted(adj):
        if len(adj[p]) == 2 or p in node_of:
            continue
        node_id, stack = len(set(node_of.values())), [p]
        node_of[p] = node_id
        while stack:  # flood the junction cluster
            q = stack.pop()
            for n in adj[q]:
                if len(adj[q]) > 2 and len(adj[n]) > 2 and n not in node_of:
                    node_of[n] = node_id
                    stack.append(n)
    return node_of


def _trace(adj: dict[Pixel, list[Pixel]], node_of: dict[Pixel, int]) -> list[tuple[int, int, Path]]:
    """Edges (node_a, node_b, pixel path) of the skeleton graph; node-free cycles get node -1."""
    edges: list[tuple[int, int, Path]] = []
    seen: set[tuple[Pixel, Pixel]] = set()
    prev: Pixel | None
    for start in sorted(node_of):
        for first in adj[start]:
            if (start, first) in seen or (first in node_of and node_of[first] == node_of[start]):
                continue
            path, prev, cur = [start, first], start, first
            while cur not in node_of:
                prev, cur = cur, next(n for n in adj[cur] if n != prev)
                path.append(cur)
            seen.update({(start, first), (cur, prev)})
            edges.append((node_of[start], node_of[cur], path))
    visited = {p for _, _, path in edges for p in path} | set(node_of)
    for start in sorted(set(adj) - visited):  # cycles without any node (a clean 0)
        if start in visited:
            continue
        path, prev, cur = [start], None, start
        while True:
            nxt = next(n for n in adj[cur] if n != prev)
            if nxt == start:
                break
            path.append(nxt)
            prev, cur = cur, nxt
        visited.update(path)
        edges.append((-1, -1, [*path, start]))
    return edges


def _prune_spurs(edges: list[tuple[int, int, Path]], min_len: int) -> list[tuple[int, int, Path]]:
    """Drop short branches that run from a junction (degree >= 3) to a free end."""
    degree: dict[int, int] = {}
    for a, b, _ in edges:
        degree[a] = degree.get(a, 0) + 1
        degree[b] = degree.get(b, 0) + 1
    keep = []
    for a, b, path in edges:
        free_a, free_b = degree[a] == 1, degree[b] == 1
        spur = (free_a != free_b) and degree[b if free_a else a] >= 3 and len(path) - 1 < min_len
        if not spur:
            keep.append((a, b, path))
    return keep


def _direction(path: Path, reach: int = 4) -> np.ndarray:
    """Unit vector leaving the path's first pixel."""
    v = np.subtract(path[min(reach, len(path) - 1)], path[0]).astype(float)
    n = np.hypot(*v)
    return v / n if n > 0 else v


def _pairings(edges: list[tuple[int, int, Path]]) -> dict[tuple[int, int], tuple[int, int]]:
    """At each node pair edge ends (edge, end) that continue most straight (greedy)."""
    ends: dict[int, list[tuple[int, int]]] = {}
    for i, (a, b, _) in enumerate(edges):
        if a >= 0:
            ends.setdefault(a, []).append((i, 0))
            ends.setdefault(b, []).append((i, 1))
    partner: dict[tuple[int, int], tuple[int, int]] = {}
    for node_ends in ends.values():
        dirs = {e: _direction(edges[e[0]][2] if e[1] == 0 else edges[e[0]][2][::-1]) for e in node_ends}
        pairs = sorted((float(dirs[e] @ dirs[f]), e, f) for i, e in enumerate(node_ends) for f in node_ends[i + 1 :])
        for cos, e, f in pairs:
            if e in partner or f in partner or (cos > -0.3 and len(node_ends) > 2):
                continue
            partner[e], partner[f] = f, e
    return partner


def _chain(edges: list[tuple[int, int, Path]]) -> list[Path]:
    """Join paired edges into strokes; returns pixel paths (closed ones end at their start)."""
    partner = _pairings(edges)
    used = [False] * len(edges)
    strokes: list[Path] = []

    def follow(i: int, end: int) -> Path:
        out: Path = []
        while not used[i]:
            used[i] = True
            path = edges[i][2] if end == 0 else edges[i][2][::-1]
            out += path if not out or out[-1] != path[0] else path[1:]
            nxt = partner.get((i, 1 - end))
            if nxt is None:
                break
            i, end = nxt
        return out

    starts = [(i, e) for i in range(len(edges)) for e in (0, 1) if (i, e) not in partner]
    for i, e in starts:  # open chains first, from their free ends
        if not used[i]:
            strokes.append(follow(i, e))
    for i in range(len(edges)):  # what is left are closed chains
        if not used[i]:
            strokes.append(follow(i, 0))
    return strokes


def _orient(path: Path) -> Path:
    """Start open strokes at the upper end, closed ones at their top pixel going anticlockwise."""
    if len(path) > 2 and path[0] == path[-1]:
        ring = path[:-1]
        top = min(range(len(ring)), key=lambda i: ring[i])
        ring = ring[top:] + ring[:top]
        # Anticlockwise on screen (y down): the shoelace sum is negative.
        area = sum(r0 * c1 - r1 * c0 for (r0, c0), (r1, c1) in zip(ring, ring[1:] + ring[:1]))
        if area < 0:
            ring = ring[:1] + ring[1:][::-1]
        return ring + ring[:1]
    return path if path[0] <= path[-1] else path[::-1]


def rdp(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of an (n, 2) polyline."""
    if len(points) < 3:
        return points
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        a, b, mid = points[i], points[j], points[i + 1 : j]
        ab = b - a
        norm = np.hypot(*ab)
        dist = np.hypot(*(mid - a).T) if norm == 0 else np.abs(ab[0] * (mid[:, 1] - a[1]) - ab[1] * (mid[:, 0] - a[0])) / norm
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return points[keep]


def skeleton_strokes(
    image: np.ndarray,
    *,
    scale: float = 10.0,
    offset: tuple[float, float] = (0.0, 0.0),
    tolerance: float = 0.5,
) -> list[list[tuple[float, float]]]:
    """Polylines (canvas coordinates ``(col + 0.5) * scale + offset``) tracing a digit's skeleton."""
    skel = _skeleton(image)
    adj = _adjacency(skel)
    if not adj:
        return []
    node_of = _clusters(adj)
    edges = _trace(adj, node_of)
    size = max(np.ptp(np.nonzero(skel), axis=1)) + 1
    for _ in range(2):
        edges = _prune_spurs(edges, min_len=max(2, round(0.15 * size)))
    paths = [_orient(p) for p in _chain(edges)]
    paths += [[p] for p in node_of if not adj[p]]  # isolated pixels: dots
    paths.sort(key=lambda p: (p[0][0], p[0][1]))
    strokes = []
    for path in paths:
        xy = np.array([(c + 0.5, r + 0.5) for r, c in path], dtype=float)
        xy = rdp(xy, tolerance) * scale + np.asarray(offset, dtype=float)
        strokes.append([(float(x), float(y)) for x, y in xy])
    return strokes


def stroke_width(image: np.ndarray) -> float:
    """Mean stroke width of a digit in source pixels: ink mass / skeleton length (>= 1)."""
    img = _as_unit(image)
    length = int(_skeleton(img).sum())
    return max(1.0, float(img.sum()) / length) if length else 1.0


def densify(stroke: Polyline, step: float) -> list[tuple[float, float]]:
    """Insert points so that consecutive points are at most ``step`` apart (like mouse sampling)."""
    if step <= 0:
        raise ValueError("step must be positive")
    pts = np.asarray(stroke, dtype=float).reshape(-1, 2)
    if len(pts) < 2:
        return [(float(x), float(y)) for x, y in pts]
    out = [pts[:1]]
    for a, b in itertools.pairwise(pts):
        n = max(1, int(np.ceil(np.hypot(*(b - a)) / step)))
        t = np.arange(1, n + 1)[:, None] / n
        out.append(a + t * (b - a))
    return [(float(x), float(y)) for x, y in np.concatenate(out)]
