// Handwritten digit recogniser page: drawing pad, live predictions over WebSocket protocol v1
// (docs/protocol.md), image uploads to /api/predict, feedback labels and a short history.
'use strict';

(() => {
  // ---------------------------------------------------------------- settings

  const WS_PATH = '/ws/recognize/';
  const PREDICT_URL = '/api/predict';
  const SEND_INTERVAL_MS = 50;          // at most ~20 partial stroke messages per second
  const BRUSH_RATIO = 18 / 320;         // brush width relative to the canvas side
  const MAX_STROKES = 64;               // protocol limits
  const MAX_POINTS = 10000;
  const HISTORY_MAX = 10;
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const SUBMIT_TIMEOUT_MS = 15000;
  const MESSAGE_MS = 4500;
  const SENT_LOG_MAX = 512;
  const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

  const STATUS_TEXT = {
    open: 'connected',
    connecting: 'connecting…',
    closed: 'offline — server unreachable',
  };

  const ERROR_TEXT = {
    rate_limited: 'Too many messages — slowing down and retrying.',
    unavailable: 'The recogniser is not answering right now; retrying shortly.',
    store_failed: 'The drawing could not be saved — please submit again.',
    empty_drawing: 'Draw a digit first.',
  };

  // ---------------------------------------------------------------- elements

  const $ = (selector) => document.querySelector(selector);
  const el = {
    pad: $('#pad'),
    padArea: $('#pad-area'),
    undo: $('#undo'),
    clear: $('#clear'),
    submit: $('#submit'),
    status: $('#status'),
    message: $('#message'),
    file: $('#file'),
    digit: $('#digit'),
    confidence: $('#confidence'),
    bars: [...document.querySelectorAll('#bars [data-digit]')],
    preview: $('#preview'),
    uploadFigure: $('#upload-figure'),
    uploadPreview: $('#upload-preview'),
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
    history: $('#history'),
    historyEmpty: $('#history-empty'),
  };
  const padCtx = el.pad.getContext('2d');

  // ---------------------------------------------------------------- state

  let seqCounter = 0;                   // one counter for the page's life, never reset
  const sentLog = new Map();            // seq -> {type, drawing, t} for RTT and error matching
  let drawing = newDrawing();
  let active = null;                    // {pointerId, stroke} while the pen is down
  let flushTimer = 0;
  let lastFlushAt = -Infinity;
  let shownSeq = -1;                    // highest prediction seq shown
  let shown = null;                     // {prediction, source: 'drawing'|'upload'} on screen
  let showSaliency = false;
  let announcedDigit;                   // undefined until the first announcement
  let penUpSeq = 0;                     // announce the first prediction at or after this seq
  let resyncTimer = 0;
  let resyncDelay = 1000;
  let messageTimer = 0;
  let uploadUrl = null;
  let uploadToken = 0;
  const history = [];
  const conn = { ws: null, backoff: BACKOFF_MIN_MS, timer: 0 };

  // ---------------------------------------------------------------- small helpers

  function randomId(length = 16) {
    const bytes = crypto.getRandomValues(new Uint8Array(length));
    return Array.from(bytes, (b) => ID_ALPHABET[b & 63]).join('');
  }

  /** A new, empty drawing; `canvas` (its coordinate space) is fixed at its first stroke. */
  function newDrawing() {
    return { id: randomId(), strokes: [], canvas: null, brush: 0, submitting: null, prediction: null };
  }

  const round1 = (v) => Math.round(v * 10) / 10;
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const percent = (p, digits = 1) => `${(p * 100).toFixed(digits)}%`;
  const article = (digit) => (digit === 8 ? 'an' : 'a');

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

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function isTyping(target) {
    return target instanceof Element && !!target.closest('input, textarea, select, [contenteditable="true"]');
  }

  function isInteractive(target) {
    return target instanceof Element && !!target.closest('button, a, input, textarea, select, label, [contenteditable="true"]');
  }

  // ---------------------------------------------------------------- the pad: sizing and painting

  /** Match the backing store to CSS size x devicePixelRatio, then repaint. */
  function resizePad() {
    const rect = el.pad.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(rect.width * dpr));
    const height = Math.max(1, Math.round(rect.height * dpr));
    if (el.pad.width !== width || el.pad.height !== height) {
      el.pad.width = width;
      el.pad.height = height;
    }
    redrawPad();
  }

  /** Current CSS size of the pad, rounded to whole pixels (at least 1). */
  function padCssSize() {
    const rect = el.pad.getBoundingClientRect();
    return [Math.max(1, Math.round(rect.width)), Math.max(1, Math.round(rect.height))];
  }

  /** Set up the context so that drawing coordinates map onto the backing store. */
  function prepareContext(ctx, target, space) {
    ctx.setTransform(target.width / space[0], 0, 0, target.height / space[1], 0, 0);
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
  }

  function paintStroke(ctx, points, brush, color) {
    if (!points.length) return;
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = brush;
    if (points.length === 1) {
      ctx.beginPath();
      ctx.arc(points[0][0], points[0][1], brush / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(points[0][0], points[0][1]);
    for (let i = 1; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
    ctx.stroke();
  }

  function redrawPad() {
    padCtx.setTransform(1, 0, 0, 1, 0, 0);
    padCtx.clearRect(0, 0, el.pad.width, el.pad.height);
    if (!drawing.canvas) return;
    prepareContext(padCtx, el.pad, drawing.canvas);
    const ink = cssVar('--pad-ink') || '#000';
    for (const stroke of drawing.strokes) paintStroke(padCtx, stroke.points, drawing.brush, ink);
  }

  /** Paint just the newest segment of a stroke (cheap incremental drawing while the pen moves). */
  function paintTail(stroke) {
    const n = stroke.points.length;
    prepareContext(padCtx, el.pad, drawing.canvas);
    paintStroke(padCtx, stroke.points.slice(Math.max(0, n - 2)), drawing.brush, cssVar('--pad-ink') || '#000');
  }

  /** Pointer position in the drawing's coordinate space (CSS px of the pad when it was started). */
  function pointFrom(event) {
    const rect = el.pad.getBoundingClientRect();
    const [w, h] = drawing.canvas;
    const x = clamp(((event.clientX - rect.left) * w) / rect.width, 0, w);
    const y = clamp(((event.clientY - rect.top) * h) / rect.height, 0, h);
    return [round1(x), round1(y)];
  }

  // ---------------------------------------------------------------- pointer input

  function onPointerDown(event) {
    if (!event.isPrimary || active || drawing.submitting) return;
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    if (drawing.strokes.length >= MAX_STROKES) {
      showMessage('That is as many strokes as one drawing can have — submit or clear it.', 'error');
      return;
    }
    event.preventDefault();
    // Take focus off buttons so that Enter afterwards submits rather than pressing the last button.
    if (document.activeElement instanceof HTMLElement && document.activeElement !== el.pad) document.activeElement.blur();
    el.pad.setPointerCapture(event.pointerId);
    if (!drawing.canvas) {
      drawing.canvas = padCssSize();
      drawing.brush = round1(drawing.canvas[0] * BRUSH_RATIO);
    }
    hideUpload();
    closeFix();
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
    penUpSeq = seqCounter;
  }

  function addPoint(stroke, point) {
    const last = stroke.points[stroke.points.length - 1];
    if (stroke.points.length >= MAX_POINTS) return;
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
  function flushStroke() {
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
  function resendDrawing() {
    drawing.strokes.forEach((stroke, index) => {
      const end = stroke.done ? stroke.points.length : stroke.points.length - 1;
      if (end > 0 || stroke.done) sendStroke(index, stroke, end, 0);
      else stroke.sent = 0;
    });
  }

  /** Server and page disagree (refused message): reset the server's copy and send it all again. */
  function scheduleResync(delay) {
    if (resyncTimer) return;
    resyncTimer = setTimeout(() => {
      resyncTimer = 0;
      if (!isOpen()) return;  // the reconnect re-sends anyway
      send({ type: 'clear', drawing: drawing.id });
      resendDrawing();
    }, delay);
  }

  // ---------------------------------------------------------------- connection

  function socketUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}${WS_PATH}`;
  }

  const isOpen = () => conn.ws !== null && conn.ws.readyState === WebSocket.OPEN;

  function connect() {
    clearTimeout(conn.timer);
    conn.timer = 0;
    setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch {
      onSocketClosed(null);
      return;
    }
    conn.ws = ws;
    ws.onopen = () => {
      conn.backoff = BACKOFF_MIN_MS;
      setStatus('open');
      resendDrawing();
    };
    ws.onmessage = (event) => onSocketMessage(event.data);
    ws.onclose = () => onSocketClosed(ws);
  }

  function onSocketClosed(ws) {
    if (ws && conn.ws !== ws) return;
    conn.ws = null;
    setStatus('closed');
    if (drawing.submitting) endSubmitting('The connection dropped before the drawing was saved — submit again.');
    // exponential back-off with jitter: 0.25 s doubling to 5 s
    const delay = conn.backoff * (0.5 + Math.random() * 0.5);
    conn.backoff = Math.min(conn.backoff * 2, BACKOFF_MAX_MS);
    conn.timer = setTimeout(connect, delay);
  }

  /** Reconnect at once when the browser says the network is back. */
  function reconnectNow() {
    if (conn.ws || !conn.timer) return;
    conn.backoff = BACKOFF_MIN_MS;
    connect();
  }

  function setStatus(state) {
    el.status.dataset.state = state;
    el.status.textContent = STATUS_TEXT[state];
  }

  /** Send one message with the next seq; returns the seq, or 0 when the socket is not open. */
  function send(message) {
    if (!isOpen()) return 0;
    const seq = ++seqCounter;
    try {
      conn.ws.send(JSON.stringify({ ...message, seq }));
    } catch {
      return 0;
    }
    sentLog.set(seq, { type: message.type, drawing: message.drawing, t: performance.now() });
    if (sentLog.size > SENT_LOG_MAX) sentLog.delete(sentLog.keys().next().value);
    return seq;
  }

  function onSocketMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== 'object') return;
    if (message.type === 'prediction') onPrediction(message);
    else if (message.type === 'stored') onStored(message);
    else if (message.type === 'saliency') onSaliency(message);
    else if (message.type === 'error') onServerError(message);
  }

  // ---------------------------------------------------------------- server messages

  function onPrediction(p) {
    if (p.drawing !== drawing.id || typeof p.seq !== 'number' || p.seq < shownSeq) return;
    shownSeq = p.seq;
    resyncDelay = 1000;
    const sent = sentLog.get(p.seq);
    showTimes(sent ? performance.now() - sent.t : null, p.latency_ms);
    drawing.prediction = p;
    showPrediction(p, 'drawing');
    announceDrawing(p);
  }

  /** The heat map follows its prediction in a message of its own (it costs a backward pass). */
  function onSaliency(message) {
    const p = drawing.prediction;
    if (!p || message.drawing !== drawing.id || message.seq !== p.seq) return;
    p.saliency = message.saliency;
    if (shown && shown.prediction === p) drawPreview();
  }

  function onStored(message) {
    if (message.drawing !== drawing.id || !drawing.submitting) return;
    const label = drawing.submitting.label;
    showMessage(`Saved #${message.id}, thank you`, 'ok');
    addDrawingToHistory(label);
    endSubmitting();
    startNewDrawing();
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
    const sent = error.seq == null ? null : sentLog.get(error.seq);
    // A refused submit (or any refusal while one is pending: rate_limited carries seq null).
    if (drawing.submitting && (!sent || sent.type === 'submit')) {
      endSubmitting(submitRefusal(error));
      return;
    }
    showMessage(ERROR_TEXT[error.code] || error.message || 'Something went wrong.', 'error');
    if (sent && sent.drawing !== drawing.id) return;
    // The server's copy of the drawing may now lag behind ours: re-send it, backing off.
    if (['rate_limited', 'bad_stroke', 'unavailable'].includes(error.code) && drawing.strokes.length) {
      scheduleResync(resyncDelay);
      resyncDelay = Math.min(resyncDelay * 2, 8000);
    }
  }

  // ---------------------------------------------------------------- showing results

  function showPrediction(p, source) {
    shown = { prediction: p, source };
    const hasDigit = Number.isInteger(p.digit);
    el.digit.textContent = hasDigit ? String(p.digit) : '–';
    el.confidence.textContent = hasDigit && typeof p.confidence === 'number' ? percent(p.confidence) : '—';
    showBars(Array.isArray(p.probabilities) ? p.probabilities : null, hasDigit ? p.digit : null);
    if (typeof p.model === 'string' && p.model) el.model.textContent = p.model;
    drawPreview();
    updateFeedback();
  }

  function showEmpty() {
    showPrediction({ digit: null, confidence: null, probabilities: null, image: null }, 'drawing');
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

  function showTimes(rttMs, serverMs) {
    if (rttMs != null) el.rtt.textContent = `${Math.round(rttMs)} ms`;
    el.serverTime.textContent = typeof serverMs === 'number' ? `${serverMs.toFixed(1)} ms` : '—';
  }

  /** Paint the 28x28 model input (white ink on black, as the model sees it), plus the heat map. */
  function drawPreview() {
    const p = shown && shown.prediction;
    const image = p ? decode28(p.image) : null;
    const saliency = p ? decode28(p.saliency) : null;
    el.saliencyToggle.hidden = !saliency;
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

  /** Speak only when the pen is up, and only for a new digit or the result of a pen-up. */
  function announceDrawing(p) {
    if (active) return;
    const atPenUp = penUpSeq > 0 && p.seq >= penUpSeq;
    if (!atPenUp && p.digit === announcedDigit) return;
    if (atPenUp) penUpSeq = 0;
    announcedDigit = p.digit;
    announce(Number.isInteger(p.digit)
      ? `Looks like ${article(p.digit)} ${p.digit}, ${Math.round(p.confidence * 100)}% sure`
      : 'The pad is empty');
  }

  function announce(text) {
    el.announce.textContent = text;
  }

  function showMessage(text, kind = 'info', ms = MESSAGE_MS) {
    clearTimeout(messageTimer);
    el.message.textContent = text;
    el.message.dataset.kind = kind;
    messageTimer = setTimeout(() => {
      el.message.textContent = '';
      delete el.message.dataset.kind;
    }, ms);
  }

  // ---------------------------------------------------------------- feedback ("Right?")

  function updateFeedback() {
    const p = shown && shown.prediction;
    const visible = !!p && shown.source === 'drawing' && Number.isInteger(p.digit) && drawing.strokes.length > 0;
    el.feedback.hidden = !visible;
    if (!visible) closeFix();
  }

  function openFix() {
    el.fix.hidden = false;
    el.no.setAttribute('aria-expanded', 'true');
    el.fixButtons[0].focus();
  }

  function closeFix() {
    el.fix.hidden = true;
    el.no.setAttribute('aria-expanded', 'false');
  }

  // ---------------------------------------------------------------- actions

  function undo() {
    if (active || drawing.submitting || !drawing.strokes.length) return;
    drawing.strokes.pop();
    redrawPad();
    send({ type: 'undo', drawing: drawing.id });
    penUpSeq = seqCounter;
    if (!drawing.strokes.length) showEmpty();
  }

  function clearPad() {
    if (active || drawing.submitting || !drawing.strokes.length) return;
    addDrawingToHistory(null);
    drawing.strokes = [];
    redrawPad();
    send({ type: 'clear', drawing: drawing.id });
    penUpSeq = seqCounter;
    showEmpty();
  }

  /** Store the drawing with an optional label (0-9); the `stored` reply starts a new drawing. */
  function submit(label = null) {
    if (active || drawing.submitting) return;
    if (!drawing.strokes.length) {
      showMessage('Draw a digit first.', 'error');
      return;
    }
    flushStroke();
    const seq = send({ type: 'submit', drawing: drawing.id, label });
    if (!seq) {
      showMessage('Offline — the drawing can be submitted once the connection is back.', 'error');
      return;
    }
    const timer = setTimeout(() => endSubmitting('No reply from the server — please submit again.'), SUBMIT_TIMEOUT_MS);
    drawing.submitting = { seq, label, timer };
    setBusy(true);
    showMessage('Saving…', 'info', SUBMIT_TIMEOUT_MS);
  }

  function endSubmitting(errorText) {
    if (!drawing.submitting) return;
    clearTimeout(drawing.submitting.timer);
    drawing.submitting = null;
    setBusy(false);
    if (errorText) showMessage(errorText, 'error');
  }

  function setBusy(busy) {
    for (const button of [el.submit, el.undo, el.clear, el.yes, el.no, ...el.fixButtons]) button.disabled = busy;
    el.padArea.setAttribute('aria-busy', String(busy));
  }

  function startNewDrawing() {
    drawing = newDrawing();
    redrawPad();
    closeFix();
    showEmpty();
  }

  // ---------------------------------------------------------------- uploads (file, drop, paste)

  async function uploadImage(file) {
    if (!file) return;
    const token = ++uploadToken;
    showUpload(file);
    showMessage('Reading the image…', 'info');
    const body = new FormData();
    body.append('image', file, file.name || 'pasted-image.png');
    let response;
    let data = null;
    const started = performance.now();
    try {
      response = await fetch(PREDICT_URL, { method: 'POST', body });
      data = await response.json().catch(() => null);
    } catch {
      if (token === uploadToken) showMessage('Upload failed — server unreachable.', 'error');
      return;
    }
    if (token !== uploadToken) return;  // a newer upload replaced this one
    if (!response.ok || !data || data.type === 'error') {
      showMessage((data && data.message) || `Upload failed (HTTP ${response.status}).`, 'error');
      return;
    }
    clearTimeout(messageTimer);
    el.message.textContent = '';
    showTimes(performance.now() - started, data.latency_ms);
    showPrediction(data, 'upload');
    announce(Number.isInteger(data.digit)
      ? `The image looks like ${article(data.digit)} ${data.digit}, ${Math.round(data.confidence * 100)}% sure`
      : 'No digit found in the image');
    addHistory({ thumb: await uploadThumbnail(), digit: data.digit, note: 'image' });
  }

  function showUpload(file) {
    if (uploadUrl) URL.revokeObjectURL(uploadUrl);
    uploadUrl = URL.createObjectURL(file);
    el.uploadPreview.src = uploadUrl;
    el.uploadPreview.hidden = false;
    el.uploadFigure.hidden = false;
  }

  function hideUpload() {
    el.uploadFigure.hidden = true;
    el.uploadPreview.hidden = true;
  }

  /** First file of a drop or paste, preferring images. */
  function pickFile(files) {
    const list = [...(files || [])];
    return list.find((f) => f.type.startsWith('image/')) || list[0] || null;
  }

  const hasFiles = (event) => !!event.dataTransfer && [...event.dataTransfer.types].includes('Files');

  function setupDropAndPaste() {
    el.padArea.addEventListener('dragenter', (e) => {
      if (hasFiles(e)) { e.preventDefault(); el.padArea.classList.add('is-dragging'); }
    });
    el.padArea.addEventListener('dragover', (e) => {
      if (hasFiles(e)) { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; }
    });
    el.padArea.addEventListener('dragleave', (e) => {
      if (!el.padArea.contains(e.relatedTarget)) el.padArea.classList.remove('is-dragging');
    });
    el.padArea.addEventListener('drop', (e) => {
      e.preventDefault();
      el.padArea.classList.remove('is-dragging');
      uploadImage(pickFile(e.dataTransfer && e.dataTransfer.files));
    });
    // A file dropped elsewhere must not make the browser navigate away from the page.
    window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
    window.addEventListener('drop', (e) => { if (hasFiles(e)) e.preventDefault(); });

    document.addEventListener('paste', (e) => {
      const file = pickFile(e.clipboardData && e.clipboardData.files);
      if (!file) return;
      e.preventDefault();
      uploadImage(file);
    });
    el.file.addEventListener('change', () => {
      uploadImage(el.file.files[0]);
      el.file.value = '';  // picking the same file again fires change again
    });
  }

  // ---------------------------------------------------------------- history

  function addDrawingToHistory(label) {
    const p = drawing.prediction;
    const digit = Number.isInteger(label) ? label : p && Number.isInteger(p.digit) ? p.digit : null;
    const note = Number.isInteger(label)
      ? (p && p.digit === label ? 'confirmed' : 'corrected')
      : drawing.submitting ? 'saved' : 'cleared';
    addHistory({ thumb: drawingThumbnail(), digit, note });
  }

  function addHistory(entry) {
    history.unshift(entry);
    history.length = Math.min(history.length, HISTORY_MAX);
    renderHistory();
  }

  function renderHistory() {
    el.history.replaceChildren(...history.map(historyItem));
    el.historyEmpty.hidden = history.length > 0;
  }

  function historyItem({ thumb, digit, note }) {
    const li = document.createElement('li');
    const img = document.createElement('img');
    const shownDigit = Number.isInteger(digit) ? String(digit) : '–';
    img.src = thumb;
    img.alt = Number.isInteger(digit) ? `Digit ${digit} (${note})` : `Unrecognised (${note})`;
    img.width = 56;
    img.height = 56;
    const digitEl = document.createElement('span');
    digitEl.className = 'h-digit';
    digitEl.textContent = shownDigit;
    digitEl.setAttribute('aria-hidden', 'true');
    const noteEl = document.createElement('span');
    noteEl.textContent = note;
    noteEl.setAttribute('aria-hidden', 'true');
    li.append(img, digitEl, noteEl);
    return li;
  }

  /** Small PNG of the current drawing's strokes. */
  function drawingThumbnail() {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 112;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = cssVar('--pad-bg') || '#fff';
    ctx.fillRect(0, 0, 112, 112);
    if (drawing.canvas) {
      prepareContext(ctx, canvas, drawing.canvas);
      const ink = cssVar('--pad-ink') || '#000';
      for (const stroke of drawing.strokes) paintStroke(ctx, stroke.points, drawing.brush, ink);
    }
    return canvas.toDataURL('image/png');
  }

  /** Small PNG of the uploaded image (falls back to the model's 28x28 view). */
  async function uploadThumbnail() {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 112;
    const ctx = canvas.getContext('2d');
    const img = el.uploadPreview;
    try {
      await img.decode();
      const scale = Math.min(112 / img.naturalWidth, 112 / img.naturalHeight);
      const w = img.naturalWidth * scale;
      const h = img.naturalHeight * scale;
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, 112, 112);
      ctx.drawImage(img, (112 - w) / 2, (112 - h) / 2, w, h);
    } catch {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(el.preview, 0, 0, 112, 112);
    }
    return canvas.toDataURL('image/png');
  }

  // ---------------------------------------------------------------- keyboard and wiring

  function onKeyDown(event) {
    if (event.defaultPrevented || event.isComposing) return;
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && key.toLowerCase() === 'z') {
      if (isTyping(event.target)) return;
      event.preventDefault();
      undo();
    } else if (key === 'Escape') {
      if (!el.fix.hidden && el.fix.contains(event.target)) {
        closeFix();
        el.no.focus();
      } else {
        clearPad();
      }
    } else if (key === 'Enter' && !event.repeat && !event.ctrlKey && !event.metaKey && !event.altKey) {
      if (isInteractive(event.target)) return;  // Enter on a button presses that button
      event.preventDefault();
      submit(null);
    }
  }

  function wire() {
    el.pad.addEventListener('pointerdown', onPointerDown);
    el.pad.addEventListener('pointermove', onPointerMove);
    el.pad.addEventListener('pointerup', onPointerEnd);
    el.pad.addEventListener('pointercancel', onPointerEnd);
    el.pad.addEventListener('lostpointercapture', onPointerEnd);
    el.pad.addEventListener('contextmenu', (e) => e.preventDefault());

    el.undo.addEventListener('click', undo);
    el.clear.addEventListener('click', clearPad);
    el.submit.addEventListener('click', () => submit(null));
    el.yes.addEventListener('click', () => {
      const p = drawing.prediction;
      if (p && Number.isInteger(p.digit)) submit(p.digit);
    });
    el.no.addEventListener('click', () => (el.fix.hidden ? openFix() : closeFix()));
    for (const button of el.fixButtons) {
      button.addEventListener('click', () => submit(Number(button.dataset.label)));
    }
    el.saliencyToggle.addEventListener('click', toggleSaliency);
    document.addEventListener('keydown', onKeyDown);
    setupDropAndPaste();

    new ResizeObserver(resizePad).observe(el.pad);
    window.addEventListener('resize', resizePad);  // zoom changes devicePixelRatio
    matchMedia('(prefers-color-scheme: dark)').addEventListener('change', redrawPad);
    window.addEventListener('online', reconnectNow);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') reconnectNow();
    });
  }

  wire();
  resizePad();
  showEmpty();
  connect();
})();
