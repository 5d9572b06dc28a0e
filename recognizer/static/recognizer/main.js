// Handwritten digit recogniser page: drawing pad, live predictions over WebSocket protocol v1
// (docs/protocol.md), image uploads, feedback labels and a short history. This module connects the
// others: the server's messages, the actions (undo, clear, submit) and the keyboard.

import { hideHeat } from './heat.js';
import * as history from './history.js';
import * as pad from './pad.js';
import { lastSeq, resetResendDelay, scheduleResend, send, sentMessage, startSocket } from './socket.js';
import { hideUpload, wireUploads } from './upload.js';
import * as view from './view.js';

const SUBMIT_TIMEOUT_MS = 15000;
const RESEND_CODES = ['rate_limited', 'bad_stroke', 'unavailable'];

const ERROR_TEXT = {
  rate_limited: 'Too many messages — slowing down and retrying.',
  unavailable: 'The recogniser is not answering right now; retrying shortly.',
  store_failed: 'The drawing could not be saved — please submit again.',
  empty_drawing: 'Draw a digit first.',
};

let shownSeq = -1;                    // highest prediction seq shown

// ---------------------------------------------------------------- server messages

function onMessage(message) {
  if (message.type === 'prediction') onPrediction(message);
  else if (message.type === 'stored') onStored(message);
  else if (message.type === 'saliency') onSaliency(message);
  else if (message.type === 'error') onServerError(message);
}

function onPrediction(p) {
  const drawing = pad.current();
  if (p.drawing !== drawing.id || typeof p.seq !== 'number' || p.seq < shownSeq) return;
  shownSeq = p.seq;
  resetResendDelay();
  const sent = sentMessage(p.seq);
  view.showTimes(sent ? performance.now() - sent.t : null, p.latency_ms);
  drawing.prediction = p;
  view.showPrediction(p, 'drawing', drawing.strokes.length > 0);
  view.announceDrawing(p, pad.penIsDown());
}

/** The heat map follows its prediction in a message of its own (it costs a backward pass). */
function onSaliency(message) {
  const drawing = pad.current();
  const p = drawing.prediction;
  if (!p || message.drawing !== drawing.id || message.seq !== p.seq) return;
  p.saliency = message.saliency;
  if (view.isShown(p)) view.drawPreview();
}

function onStored(message) {
  const drawing = pad.current();
  if (message.drawing !== drawing.id || !drawing.submitting) return;
  view.showMessage(`Saved #${message.id}, thank you`, 'ok');
  history.addDrawing(drawing, drawing.submitting.label);
  endSubmitting();
  pad.startNewDrawing();
  view.closeFix();
  view.showEmpty();
}

/** What the person reads when a submit is refused (docs/protocol.md: the error codes). */
function submitRefusal(error) {
  if (error.code === 'store_failed' || error.code === 'empty_drawing') return ERROR_TEXT[error.code];
  if (error.code === 'rate_limited' && Number.isFinite(error.retry_after)) {
    return `Not saved: too many drawings sent from this network just now — submit again in ${Math.ceil(error.retry_after)} s.`;
  }
  if (error.code === 'too_large') return `Not saved: ${error.message || 'the drawing is too large to keep'}.`;
  return `Not saved: ${error.message || error.code} — please submit again.`;
}

function onServerError(error) {
  const drawing = pad.current();
  const sent = sentMessage(error.seq);
  // A refused submit (or any refusal while one is pending: rate_limited carries seq null).
  if (drawing.submitting && (!sent || sent.type === 'submit')) {
    endSubmitting(submitRefusal(error));
    return;
  }
  view.showMessage(ERROR_TEXT[error.code] || error.message || 'Something went wrong.', 'error');
  if (sent && sent.drawing !== drawing.id) return;
  // The server's copy of the drawing may now lag behind ours: re-send it, backing off.
  if (RESEND_CODES.includes(error.code) && drawing.strokes.length) scheduleResend(resync);
}

/** Reset the server's copy of the drawing and send it all again. */
function resync() {
  send({ type: 'clear', drawing: pad.current().id });
  pad.resendDrawing();
}

function onSocketClosed() {
  if (pad.current().submitting) endSubmitting('The connection dropped before the drawing was saved — submit again.');
}

// ---------------------------------------------------------------- actions

function undo() {
  const drawing = pad.current();
  if (pad.penIsDown() || drawing.submitting || !drawing.strokes.length) return;
  view.clearMessage();
  pad.popStroke();
  send({ type: 'undo', drawing: drawing.id });
  view.markPenUp(lastSeq());
  if (!drawing.strokes.length) view.showEmpty();
}

function clearPad() {
  const drawing = pad.current();
  if (pad.penIsDown() || drawing.submitting) return;
  view.clearMessage();  // "Saved #N" and a previous action's error end with the next action
  if (!drawing.strokes.length) return;
  history.addDrawing(drawing, null);
  pad.clearStrokes();
  send({ type: 'clear', drawing: drawing.id });
  view.markPenUp(lastSeq());
  view.showEmpty();
}

/** Store the drawing with an optional label (0-9); the `stored` reply starts a new drawing. */
function submit(label = null) {
  const drawing = pad.current();
  if (pad.penIsDown() || drawing.submitting) return;
  if (!drawing.strokes.length) {
    view.showMessage('Draw a digit first.', 'error');
    return;
  }
  pad.flushStroke();
  const seq = send({ type: 'submit', drawing: drawing.id, label });
  if (!seq) {
    view.showMessage('Offline — the drawing can be submitted once the connection is back.', 'error');
    return;
  }
  const timer = setTimeout(() => endSubmitting('No reply from the server — please submit again.'), SUBMIT_TIMEOUT_MS);
  drawing.submitting = { seq, label, timer };
  view.setBusy(true);
  view.showMessage('Saving…', 'info', SUBMIT_TIMEOUT_MS);
}

/** "✓ Yes": store the drawing labelled with the model's guess. */
function confirm() {
  const p = pad.current().prediction;
  if (p && Number.isInteger(p.digit)) submit(p.digit);
}

function endSubmitting(errorText) {
  const drawing = pad.current();
  if (!drawing.submitting) return;
  clearTimeout(drawing.submitting.timer);
  drawing.submitting = null;
  view.setBusy(false);
  if (errorText) view.showMessage(errorText, 'error');
}

// ---------------------------------------------------------------- keyboard and wiring

function isTyping(target) {
  return target instanceof Element && !!target.closest('input, textarea, select, [contenteditable="true"]');
}

function isInteractive(target) {
  return target instanceof Element && !!target.closest('button, a, input, textarea, select, label, [contenteditable="true"]');
}

function onKeyDown(event) {
  if (event.defaultPrevented || event.isComposing) return;
  const key = event.key;
  if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && key.toLowerCase() === 'z') {
    if (isTyping(event.target)) return;
    event.preventDefault();
    undo();
  } else if (key === 'Escape') {
    if (view.fixIsOpenAround(event.target)) view.leaveFix();
    else clearPad();
  } else if (key === 'Enter' && !event.repeat && !event.ctrlKey && !event.metaKey && !event.altKey) {
    if (isInteractive(event.target)) return;  // Enter on a button presses that button
    event.preventDefault();
    submit(null);
  }
}

pad.wirePad({
  onPenDown() {
    view.clearMessage();  // the next stroke ends "Saved #N" and a previous action's error
    hideUpload();
    hideHeat();
    view.closeFix();
  },
  onPenUp() {
    view.markPenUp(lastSeq());
  },
  refuse(text) {
    view.showMessage(text, 'error');
  },
});
view.wireView({ undo, clear: clearPad, submit, confirm });
wireUploads();
document.addEventListener('keydown', onKeyDown);
view.showEmpty();
startSocket({
  onStatus: view.setStatus,
  onOpen: pad.resendDrawing,
  onClose: onSocketClosed,
  onMessage,
});
