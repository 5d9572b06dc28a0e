// The drawing pad: the current drawing, pointer input, painting, and streaming its strokes over the
// socket while the pen moves (a throttled partial message, then a final one at pen-up).

import { config } from './config.js';
import { send } from './socket.js';
import { paintStroke, paintStrokes } from './strokes.js';

const SEND_INTERVAL_MS = 50;          // at most ~20 partial stroke messages per second
const BRUSH_RATIO = 18 / 320;         // brush width relative to the canvas side
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

const pad = document.querySelector('#pad');
const padCtx = pad.getContext('2d');

let drawing = newDrawing();
let active = null;                    // {pointerId, stroke} while the pen is down
let flushTimer = 0;
let lastFlushAt = -Infinity;
let hooks = null;                     // {onPenDown(), onPenUp(), refuse(text)}: set by wirePad

const round1 = (v) => Math.round(v * 10) / 10;
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function randomId(length = 16) {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => ID_ALPHABET[b & 63]).join('');
}

/**
 * A new, empty drawing; `canvas` (its coordinate space) and `brush` are fixed at its first stroke.
 * `submitting` ({seq, label, timer} while a submit waits for its answer) and `prediction` (the
 * latest shown) are the page's (main.js) to set.
 */
function newDrawing() {
  return { id: randomId(), strokes: [], canvas: null, brush: 0, submitting: null, prediction: null };
}

/** The drawing on the pad. */
export const current = () => drawing;

/** Whether the pen is down on the pad. */
export const penIsDown = () => active !== null;

/** Strokes as lists of points. */
export const strokePoints = (d = drawing) => d.strokes.map((stroke) => stroke.points);

// ---------------------------------------------------------------- sizing and painting

/** Match the backing store to CSS size x devicePixelRatio, then repaint. */
function resizePad() {
  const rect = pad.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(rect.width * dpr));
  const height = Math.max(1, Math.round(rect.height * dpr));
  if (pad.width !== width || pad.height !== height) {
    pad.width = width;
    pad.height = height;
  }
  redrawPad();
}

/** The coordinate space of a drawing started now: the pad's CSS size in whole pixels (at least 1),
 * scaled down to the protocol's largest canvas should the pad be larger. */
function canvasSpace() {
  const rect = pad.getBoundingClientRect();
  const size = [Math.max(1, Math.round(rect.width)), Math.max(1, Math.round(rect.height))];
  const over = Math.max(...size) / config.maxCanvas;
  return over > 1 ? size.map((side) => Math.max(1, Math.floor(side / over))) : size;
}

/** A context whose coordinates are the drawing's, mapped onto the backing store of `target`. */
export function prepareContext(ctx, target, space) {
  ctx.setTransform(target.width / space[0], 0, 0, target.height / space[1], 0, 0);
}

function redrawPad() {
  padCtx.setTransform(1, 0, 0, 1, 0, 0);
  padCtx.clearRect(0, 0, pad.width, pad.height);
  if (!drawing.canvas) return;
  prepareContext(padCtx, pad, drawing.canvas);
  paintStrokes(padCtx, strokePoints(), drawing.brush, cssVar('--pad-ink') || '#000');
}

/** Paint just the newest segment of a stroke (cheap incremental drawing while the pen moves). */
function paintTail(stroke) {
  const n = stroke.points.length;
  prepareContext(padCtx, pad, drawing.canvas);
  paintStroke(padCtx, stroke.points.slice(Math.max(0, n - 2)), drawing.brush, cssVar('--pad-ink') || '#000');
}

/** Pointer position in the drawing's coordinate space (CSS px of the pad when it was started). */
function pointFrom(event) {
  const rect = pad.getBoundingClientRect();
  const [w, h] = drawing.canvas;
  const x = clamp(((event.clientX - rect.left) * w) / rect.width, 0, w);
  const y = clamp(((event.clientY - rect.top) * h) / rect.height, 0, h);
  return [round1(x), round1(y)];
}

// ---------------------------------------------------------------- pointer input

function onPointerDown(event) {
  if (!event.isPrimary || active || drawing.submitting) return;
  if (event.pointerType === 'mouse' && event.button !== 0) return;
  if (drawing.strokes.length >= config.maxStrokes) {
    hooks.refuse('That is as many strokes as one drawing can have — submit or clear it.');
    return;
  }
  event.preventDefault();
  // Take focus off buttons so that Enter afterwards submits rather than pressing the last button.
  if (document.activeElement instanceof HTMLElement && document.activeElement !== pad) document.activeElement.blur();
  pad.setPointerCapture(event.pointerId);
  if (!drawing.canvas) {
    drawing.canvas = canvasSpace();
    drawing.brush = Math.min(round1(drawing.canvas[0] * BRUSH_RATIO), config.maxBrush);
  }
  hooks.onPenDown();
  const stroke = { points: [], sent: 0, done: false, finalSent: false };
  drawing.strokes.push(stroke);
  active = { pointerId: event.pointerId, stroke };
  addPoint(stroke, pointFrom(event));
  scheduleFlush();
}

function onPointerMove(event) {
  if (!active || event.pointerId !== active.pointerId) return;
  const coalesced = typeof event.getCoalescedEvents === 'function' ? event.getCoalescedEvents() : [];
  for (const e of coalesced.length ? coalesced : [event]) addPoint(active.stroke, pointFrom(e));
  scheduleFlush();
}

function onPointerEnd(event) {
  if (!active || event.pointerId !== active.pointerId) return;
  active.stroke.done = true;
  active = null;
  flushStroke();
  hooks.onPenUp();
}

function addPoint(stroke, point) {
  const last = stroke.points[stroke.points.length - 1];
  if (stroke.points.length >= config.maxStrokePoints) return;
  if (last && last[0] === point[0] && last[1] === point[1]) return;
  stroke.points.push(point);
  paintTail(stroke);
}

// ---------------------------------------------------------------- streaming strokes

/** Throttle: flush now if the last message is old enough, else once the interval has passed. */
function scheduleFlush() {
  if (flushTimer) return;
  const wait = Math.max(0, lastFlushAt + SEND_INTERVAL_MS - performance.now());
  flushTimer = setTimeout(flushStroke, wait);
}

/**
 * Send the last stroke's new points. While the pen is down the newest point is held back,
 * so the final message at pen-up always carries at least one point.
 */
export function flushStroke() {
  clearTimeout(flushTimer);
  flushTimer = 0;
  const index = drawing.strokes.length - 1;
  const stroke = drawing.strokes[index];
  if (!stroke || stroke.finalSent) return;
  const end = stroke.done ? stroke.points.length : stroke.points.length - 1;
  if (end <= stroke.sent && !stroke.done) return;
  if (sendStroke(index, stroke, end)) lastFlushAt = performance.now();
}

function sendStroke(index, stroke, end, from = stroke.sent) {
  const seq = send({
    type: 'stroke',
    drawing: drawing.id,
    stroke: index,
    points: stroke.points.slice(from, end),
    final: stroke.done,
    canvas: drawing.canvas,
    brush: drawing.brush,
  });
  if (!seq) return 0;  // offline: the whole drawing is re-sent on reconnect
  stroke.sent = end;
  stroke.finalSent = stroke.done;
  return seq;
}

/** Send every stroke of the current drawing from scratch (after a reconnect or a refused message). */
export function resendDrawing() {
  drawing.strokes.forEach((stroke, index) => {
    const end = stroke.done ? stroke.points.length : stroke.points.length - 1;
    if (end > 0 || stroke.done) sendStroke(index, stroke, end, 0);
    else stroke.sent = 0;
  });
}

// ---------------------------------------------------------------- changing the drawing

/** Take the last stroke off the pad (the caller tells the server). */
export function popStroke() {
  drawing.strokes.pop();
  redrawPad();
}

/** Empty the pad, keeping the drawing (the caller tells the server). */
export function clearStrokes() {
  drawing.strokes = [];
  redrawPad();
}

/** An empty pad with a new drawing id. */
export function startNewDrawing() {
  drawing = newDrawing();
  redrawPad();
}

/** Listen to the pen and keep the pad's backing store sized to it; `h`: {onPenDown, onPenUp, refuse}. */
export function wirePad(h) {
  hooks = h;
  pad.addEventListener('pointerdown', onPointerDown);
  pad.addEventListener('pointermove', onPointerMove);
  pad.addEventListener('pointerup', onPointerEnd);
  pad.addEventListener('pointercancel', onPointerEnd);
  pad.addEventListener('lostpointercapture', onPointerEnd);
  pad.addEventListener('contextmenu', (e) => e.preventDefault());
  new ResizeObserver(resizePad).observe(pad);
  window.addEventListener('resize', resizePad);  // zoom changes devicePixelRatio
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', redrawPad);
  resizePad();
}
