// What the page shows: the connection status, messages, the prediction (digit, confidence, bars,
// the model's 28x28 view and its heat map), the round trip, what a screen reader hears, the
// "Right?" feedback row and the busy state while a submit is saved. On narrow screens a compact
// answer (digit, confidence, the top two bars) sits above the pad.

import { hideHeat, showHeat } from './heat.js';

const MESSAGE_MS = 4500;

/** Why the model is unsure, in plain words: the `reason` codes of an uncertain prediction
 * (digits/inference/refusal.py), for a drawing and for an uploaded image. */
const REASON_TEXT = {
  'too many pieces': ['more than one mark — is this one digit?',
    'the image has several separate marks — try cropping to the one digit'],
  'too many loops': ['more loops than a digit has — is this a scribble?',
    'more loops than a digit has — try a clearer picture of one digit'],
  'too much ink': ['mostly ink — is this a filled shape rather than a digit?',
    'the image is mostly dark marks — try cropping to the digit'],
  'low confidence': ['no one digit stands out — try drawing it larger and clearer',
    'no one digit stands out — try cropping to the digit'],
};
const REASON_UNKNOWN = ['it may not be a digit — check the guess', 'it may not be a digit — check the guess'];

/** Why an uncertain prediction `p` is unsure, in words (null when the model is sure). */
export function reasonWords(p, source) {
  if (!p || p.uncertain !== true) return null;
  const words = Object.hasOwn(REASON_TEXT, p.reason) ? REASON_TEXT[p.reason] : REASON_UNKNOWN;
  return words[source === 'upload' ? 1 : 0];
}

const STATUS_TEXT = {
  open: 'connected',
  connecting: 'connecting…',
  closed: 'offline — server unreachable',
};

const $ = (selector) => document.querySelector(selector);
const el = {
  padArea: $('#pad-area'),
  undo: $('#undo'),
  clear: $('#clear'),
  submit: $('#submit'),
  status: $('#status'),
  message: $('#message'),
  digit: $('#digit'),
  confidence: $('#confidence'),
  unsure: $('#unsure'),
  mini: $('#mini'),
  miniDigit: $('#mini-digit'),
  miniConfidence: $('#mini-confidence'),
  miniBars: [...document.querySelectorAll('#mini-bars li')],
  miniUnsure: $('#mini-unsure'),
  bars: [...document.querySelectorAll('#bars [data-digit]')],
  preview: $('#preview'),
  saliencyToggle: $('#saliency-toggle'),
  feedback: $('#feedback'),
  yes: $('#yes'),
  no: $('#no'),
  fix: $('#fix'),
  fixButtons: [...document.querySelectorAll('#fix [data-label]')],
  model: $('#model'),
  rtt: $('#rtt'),
  serverTime: $('#server-time'),
  announce: $('#announce'),
};

/** The model's 28x28 view (an upload's thumbnail falls back on it). */
export const previewCanvas = el.preview;

let shown = null;                     // {prediction, source: 'drawing'|'upload'} on screen
let showSaliency = false;
let messageTimer = 0;
let announcedDigit;                   // undefined until the first announcement
let penUpSeq = 0;                     // announce the first prediction at or after this seq

export const percent = (p, digits = 1) => `${(p * 100).toFixed(digits)}%`;
export const article = (digit) => (digit === 8 ? 'an' : 'a');
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** base64 of 784 bytes -> Uint8Array(784), or null when absent/invalid. */
function decode28(b64) {
  if (typeof b64 !== 'string' || !b64) return null;
  try {
    const raw = atob(b64);
    if (raw.length !== 784) return null;
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- status and messages

export function setStatus(state) {
  el.status.dataset.state = state;
  el.status.textContent = STATUS_TEXT[state];
}

export function showMessage(text, kind = 'info', ms = MESSAGE_MS) {
  clearTimeout(messageTimer);
  el.message.textContent = text;
  el.message.dataset.kind = kind;
  messageTimer = setTimeout(() => {
    el.message.textContent = '';
    delete el.message.dataset.kind;
  }, ms);
}

export function clearMessage() {
  clearTimeout(messageTimer);
  el.message.textContent = '';
  delete el.message.dataset.kind;
}

export function announce(text) {
  el.announce.textContent = text;
}

/** The next prediction at or after `seq` is the pen-up's (or an undo's, a clear's): announce it. */
export function markPenUp(seq) {
  penUpSeq = seq;
}

/** Speak only when the pen is up, and only for a new digit or the result of a pen-up. */
export function announceDrawing(p, penDown) {
  if (penDown) return;
  const atPenUp = penUpSeq > 0 && p.seq >= penUpSeq;
  if (!atPenUp && p.digit === announcedDigit) return;
  if (atPenUp) penUpSeq = 0;
  announcedDigit = p.digit;
  announce(Number.isInteger(p.digit)
    ? `Looks like ${article(p.digit)} ${p.digit}, ${Math.round(p.confidence * 100)}% sure`
    : 'The pad is empty');
}

// ---------------------------------------------------------------- the prediction

/** Show a prediction of the drawing (`hasStrokes`: whether it can be confirmed) or of an upload. */
export function showPrediction(p, source, hasStrokes = false) {
  shown = { prediction: p, source };
  const hasDigit = Number.isInteger(p.digit);
  el.digit.textContent = hasDigit ? String(p.digit) : '–';
  el.confidence.textContent = hasDigit && typeof p.confidence === 'number' ? percent(p.confidence) : '—';
  const probabilities = Array.isArray(p.probabilities) ? p.probabilities : null;
  showBars(probabilities, hasDigit ? p.digit : null);
  const unsure = hasDigit ? reasonWords(p, source) : null;
  el.unsure.textContent = unsure ? `The model is unsure: ${unsure}` : '';
  el.miniUnsure.textContent = unsure ? `Unsure: ${unsure}` : '';
  showMini(hasDigit ? p : null, probabilities);
  if (typeof p.model === 'string' && p.model) el.model.textContent = p.model;
  drawPreview();
  const feedback = source === 'drawing' && hasDigit && hasStrokes;
  el.feedback.hidden = !feedback;
  if (!feedback) closeFix();
}

export function showEmpty() {
  showPrediction({ digit: null, confidence: null, probabilities: null, image: null }, 'drawing');
}

/** Whether `p` is the prediction on screen (its heat map may come later). */
export const isShown = (p) => !!shown && shown.prediction === p;

/** The compact answer above the pad: the digit, its confidence and the two likeliest digits. */
function showMini(p, probabilities) {
  el.miniDigit.textContent = p ? String(p.digit) : '–';
  el.miniConfidence.textContent = p && typeof p.confidence === 'number' ? `${percent(p.confidence)} sure` : '—';
  const ranked = probabilities
    ? probabilities.map((v, digit) => [digit, Number(v) || 0]).sort((a, b) => b[1] - a[1]).slice(0, 2)
    : [];
  el.miniBars.forEach((bar, i) => {
    const [digit, v] = ranked[i] || ['', 0];
    bar.querySelector('.bar-digit').textContent = String(digit);
    bar.querySelector('.bar-value').textContent = ranked[i] ? percent(v, 0) : '';
    bar.style.setProperty('--p', String(clamp(v, 0, 1)));
    bar.classList.toggle('is-top', i === 0 && !!ranked[i]);
  });
}

function showBars(probabilities, top) {
  for (const bar of el.bars) {
    const digit = Number(bar.dataset.digit);
    const p = probabilities ? Number(probabilities[digit]) || 0 : 0;
    bar.dataset.p = probabilities ? p.toFixed(4) : '0';
    bar.style.setProperty('--p', String(clamp(p, 0, 1)));
    bar.querySelector('.bar-value').textContent = percent(p);
    bar.classList.toggle('is-top', digit === top);
    bar.setAttribute('aria-label', `${digit}: ${percent(p)}`);
  }
}

export function showTimes(rttMs, serverMs) {
  if (rttMs != null) el.rtt.textContent = `${Math.round(rttMs)} ms`;
  el.serverTime.textContent = typeof serverMs === 'number' ? `${serverMs.toFixed(1)} ms` : '—';
}

/** Paint the 28x28 model input (white ink on black, as the model sees it), plus the heat map. */
export function drawPreview() {
  const p = shown && shown.prediction;
  const image = p ? decode28(p.image) : null;
  const saliency = p ? decode28(p.saliency) : null;
  el.saliencyToggle.hidden = !saliency;  // its room is kept (app.css): nothing moves when it comes
  if (showSaliency && saliency && shown.source === 'drawing') showHeat(image, saliency);
  else hideHeat();
  const ctx = el.preview.getContext('2d');
  const pixels = ctx.createImageData(28, 28);
  const heat = showSaliency ? saliency : null;
  for (let i = 0; i < 784; i++) {
    const v = image ? image[i] : 0;
    let rgb = [v, v, v];
    if (heat) rgb = blendHeat(rgb, heat[i] / 255);
    pixels.data.set([rgb[0], rgb[1], rgb[2], 255], i * 4);
  }
  ctx.putImageData(pixels, 0, 0);
}

/** Mix a yellow-to-red heat colour over a pixel, stronger where saliency is high. */
function blendHeat([r, g, b], t) {
  const a = t * 0.85;
  const heat = [255, Math.round(230 * (1 - t)), Math.round(40 * (1 - t))];
  return [r + (heat[0] - r) * a, g + (heat[1] - g) * a, b + (heat[2] - b) * a].map(Math.round);
}

function toggleSaliency() {
  showSaliency = !showSaliency;
  el.saliencyToggle.setAttribute('aria-pressed', String(showSaliency));
  el.saliencyToggle.textContent = showSaliency ? 'Hide heat map' : 'Show heat map';
  drawPreview();
}

// ---------------------------------------------------------------- feedback ("Right?") and busy

export const fixIsOpenAround = (target) => !el.fix.hidden && el.fix.contains(target);

function openFix() {
  el.fix.hidden = false;
  el.no.setAttribute('aria-expanded', 'true');
  el.fixButtons[0].focus();
}

export function closeFix() {
  el.fix.hidden = true;
  el.no.setAttribute('aria-expanded', 'false');
}

/** Close the digit picker and give the focus back to its "No" button. */
export function leaveFix() {
  closeFix();
  el.no.focus();
}

export function setBusy(busy) {
  for (const button of [el.submit, el.undo, el.clear, el.yes, el.no, ...el.fixButtons]) button.disabled = busy;
  el.padArea.setAttribute('aria-busy', String(busy));
}

/** Wire the view's own controls; `h`: {undo(), clear(), submit(label), confirm()}. */
export function wireView(h) {
  el.undo.addEventListener('click', h.undo);
  el.clear.addEventListener('click', h.clear);
  el.submit.addEventListener('click', () => h.submit(null));
  el.yes.addEventListener('click', h.confirm);
  el.no.addEventListener('click', () => (el.fix.hidden ? openFix() : closeFix()));
  for (const button of el.fixButtons) {
    button.addEventListener('click', () => h.submit(Number(button.dataset.label)));
  }
  el.saliencyToggle.addEventListener('click', toggleSaliency);
}
