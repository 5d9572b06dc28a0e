// The heat map ("where the model looked") laid over the drawing itself: the 28x28 saliency of the
// model's view, placed so that the view's ink lands on the drawing's strokes, on a canvas the size
// of the pad. Only a drawing gets it (an upload's heat map stays on the model's 84-px view).

import { current } from './pad.js';

const el = {
  heat: document.querySelector('#heat'),
  legend: document.querySelector('#heat-legend'),
};

const scratch = document.createElement('canvas');
scratch.width = 28;
scratch.height = 28;

/** The bounding box [x0, y0, x1, y1] of the 28x28 image's ink (28-px units), or null. */
function inkBox(image) {
  let peak = 0;
  for (const v of image) peak = Math.max(peak, v);
  if (!peak) return null;
  const box = [28, 28, 0, 0];
  for (let i = 0; i < 784; i++) {
    if (image[i] < peak * 0.25) continue;
    const x = i % 28;
    const y = (i - x) / 28;
    box[0] = Math.min(box[0], x); box[1] = Math.min(box[1], y);
    box[2] = Math.max(box[2], x + 1); box[3] = Math.max(box[3], y + 1);
  }
  return box;
}

/** The bounding box of the drawing's strokes with half a brush around them (drawing coordinates). */
function strokeBox(drawing) {
  const points = drawing.strokes.flatMap((stroke) => stroke.points);
  if (!points.length) return null;
  const r = drawing.brush / 2;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return [Math.min(...xs) - r, Math.min(...ys) - r, Math.max(...xs) + r, Math.max(...ys) + r];
}

export function hideHeat() {
  el.heat.hidden = true;
  el.legend.hidden = true;
}

/** Paint `saliency` (784 bytes) over the pad, aligned by `image` (the model's view); hide it when
 * either is missing or the pad holds no strokes. */
export function showHeat(image, saliency) {
  const drawing = current();
  const to = drawing.canvas && strokeBox(drawing);
  const from = image && saliency && inkBox(image);
  if (!to || !from) {
    hideHeat();
    return;
  }
  el.heat.hidden = false;
  el.legend.hidden = false;
  const rect = el.heat.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  el.heat.width = Math.max(1, Math.round(rect.width * dpr));
  el.heat.height = Math.max(1, Math.round(rect.height * dpr));

  const ctx = scratch.getContext('2d');
  const pixels = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const t = saliency[i] / 255;
    pixels.data.set([255, Math.round(200 * (1 - t)), 0, Math.round(235 * t)], i * 4);
  }
  ctx.putImageData(pixels, 0, 0);

  // One scale for both axes (the model's view keeps the drawing's aspect), fitted on the longer side.
  const [fw, fh] = [from[2] - from[0], from[3] - from[1]];
  const [tw, th] = [to[2] - to[0], to[3] - to[1]];
  const k = fw >= fh ? tw / fw : th / fh;
  const x = (to[0] + to[2]) / 2 - k * (from[0] + from[2]) / 2;
  const y = (to[1] + to[3]) / 2 - k * (from[1] + from[3]) / 2;
  const out = el.heat.getContext('2d');
  out.setTransform(el.heat.width / drawing.canvas[0], 0, 0, el.heat.height / drawing.canvas[1], 0, 0);
  out.clearRect(0, 0, drawing.canvas[0], drawing.canvas[1]);
  out.imageSmoothingEnabled = true;
  out.drawImage(scratch, x, y, 28 * k, 28 * k);
}
