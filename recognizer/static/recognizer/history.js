// The last ten drawings and images, with small thumbnails, under "Recent digits".

import { cssVar, prepareContext, strokePoints } from './pad.js';
import { paintStrokes } from './strokes.js';

const HISTORY_MAX = 10;
const THUMB = 112;  // px a side

const list = document.querySelector('#history');
const empty = document.querySelector('#history-empty');
const entries = [];

/** Add an entry {thumb (a data: URL), digit (or null), note} at the top. */
export function addHistory(entry) {
  entries.unshift(entry);
  entries.length = Math.min(entries.length, HISTORY_MAX);
  list.replaceChildren(...entries.map(historyItem));
  empty.hidden = entries.length > 0;
}

/** Add the drawing as it leaves the pad: stored with `label` (0-9 or null) or cleared. */
export function addDrawing(drawing, label) {
  const p = drawing.prediction;
  const digit = Number.isInteger(label) ? label : p && Number.isInteger(p.digit) ? p.digit : null;
  const note = Number.isInteger(label)
    ? (p && p.digit === label ? 'confirmed' : 'corrected')
    : drawing.submitting ? 'saved' : 'cleared';
  addHistory({ thumb: drawingThumbnail(drawing), digit, note });
}

function historyItem({ thumb, digit, note }) {
  const li = document.createElement('li');
  const img = document.createElement('img');
  img.src = thumb;
  img.alt = Number.isInteger(digit) ? `Digit ${digit} (${note})` : `Unrecognised (${note})`;
  img.width = 56;
  img.height = 56;
  const digitEl = document.createElement('span');
  digitEl.className = 'h-digit';
  digitEl.textContent = Number.isInteger(digit) ? String(digit) : '–';
  digitEl.setAttribute('aria-hidden', 'true');
  const noteEl = document.createElement('span');
  noteEl.textContent = note;
  noteEl.setAttribute('aria-hidden', 'true');
  li.append(img, digitEl, noteEl);
  return li;
}

function thumbCanvas() {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = THUMB;
  return [canvas, canvas.getContext('2d')];
}

/** Small PNG of a drawing's strokes. */
function drawingThumbnail(drawing) {
  const [canvas, ctx] = thumbCanvas();
  ctx.fillStyle = cssVar('--pad-bg') || '#fff';
  ctx.fillRect(0, 0, THUMB, THUMB);
  if (drawing.canvas) {
    prepareContext(ctx, canvas, drawing.canvas);
    paintStrokes(ctx, strokePoints(drawing), drawing.brush, cssVar('--pad-ink') || '#000');
  }
  return canvas.toDataURL('image/png');
}

/** Small PNG of an uploaded image (`img`), or of `fallback` (a canvas) when it cannot be decoded. */
export async function imageThumbnail(img, fallback) {
  const [canvas, ctx] = thumbCanvas();
  try {
    await img.decode();
    const scale = Math.min(THUMB / img.naturalWidth, THUMB / img.naturalHeight);
    const w = img.naturalWidth * scale;
    const h = img.naturalHeight * scale;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, THUMB, THUMB);
    ctx.drawImage(img, (THUMB - w) / 2, (THUMB - h) / 2, w, h);
  } catch {
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(fallback, 0, 0, THUMB, THUMB);
  }
  return canvas.toDataURL('image/png');
}
