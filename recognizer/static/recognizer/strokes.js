// Painting strokes on a 2D canvas: the one implementation of the drawing page (its pad and history
// thumbnails) and the triage page (review/static/review/review.js).
//
// A stroke is a list of [x, y] points drawn with a round brush of diameter `brush`, in the
// coordinates of the context's current transform: round caps and joins, and a stroke that does not
// move (a tap: one point, or the same point repeated) is a dot of the brush's diameter, as the
// server's renderer draws it (digits/inference/render.py: a lone point is a disc).

/** Whether every point of a non-empty stroke is the first one (a tap). */
function isDot(points) {
  const [x0, y0] = points[0];
  return points.every(([x, y]) => x === x0 && y === y0);
}

/** Paint one stroke in `color` with a round brush of diameter `brush`. */
export function paintStroke(ctx, points, brush, color) {
  if (!points.length) return;
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.beginPath();
  if (isDot(points)) {
    ctx.arc(points[0][0], points[0][1], brush / 2, 0, Math.PI * 2);
    ctx.fill();
    return;
  }
  ctx.lineWidth = brush;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.moveTo(points[0][0], points[0][1]);
  for (let i = 1; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
  ctx.stroke();
}

/** Paint every stroke (lists of points) of a drawing. */
export function paintStrokes(ctx, strokes, brush, color) {
  for (const points of strokes) paintStroke(ctx, points, brush, color);
}

/** The transform [scale, dx, dy] that fits a drawing's ink (its points +- `margin`) into a
 * `width` x `height` canvas, centred, magnified at most `maxScale` times; null without points. */
export function fitInk(strokes, margin, width, height, maxScale) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const points of strokes) {
    for (const [x, y] of points) {
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }
  }
  if (x0 > x1) return null;
  x0 -= margin; y0 -= margin;
  const w = x1 + margin - x0, h = y1 + margin - y0;
  const scale = Math.min(width / w, height / h, maxScale);
  return [scale, (width - w * scale) / 2 - x0 * scale, (height - h * scale) / 2 - y0 * scale];
}
