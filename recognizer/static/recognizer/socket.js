// The recognising WebSocket (protocol v1, docs/protocol.md): one seq counter for the page's life,
// reconnecting with exponential back-off, and re-sending with back-off when the server refused a
// message. What to re-send is the caller's (the pad's drawing): this module only knows messages.

import { config } from './config.js';

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
const RESYNC_MIN_MS = 1000;
const RESYNC_MAX_MS = 8000;
const SENT_LOG_MAX = 512;

let seqCounter = 0;                     // never reset, so seqs increase across reconnects
const sentLog = new Map();              // seq -> {type, drawing, t} for round trips and error matching
const conn = { ws: null, backoff: BACKOFF_MIN_MS, timer: 0 };
let handlers = null;                    // {onStatus(state), onOpen(), onClose(), onMessage(message)}
const resync = { timer: 0, delay: RESYNC_MIN_MS };

function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${config.socketPath}`;
}

export const isOpen = () => conn.ws !== null && conn.ws.readyState === WebSocket.OPEN;

/** The seq of the latest message sent (0 before the first). */
export const lastSeq = () => seqCounter;

/** What was sent with `seq` ({type, drawing, t}), if it is still remembered. */
export const sentMessage = (seq) => (seq == null ? undefined : sentLog.get(seq));

/** Open the socket and keep it open; `h` gets its events. */
export function startSocket(h) {
  handlers = h;
  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') reconnectNow();
  });
  connect();
}

function connect() {
  clearTimeout(conn.timer);
  conn.timer = 0;
  handlers.onStatus('connecting');
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
    handlers.onStatus('open');
    handlers.onOpen();
  };
  ws.onmessage = (event) => onSocketMessage(event.data);
  ws.onclose = () => onSocketClosed(ws);
}

function onSocketClosed(ws) {
  if (ws && conn.ws !== ws) return;
  conn.ws = null;
  handlers.onStatus('closed');
  handlers.onClose();
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

function onSocketMessage(data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return;
  }
  if (message && typeof message === 'object') handlers.onMessage(message);
}

/** Send one message with the next seq; returns the seq, or 0 when the socket is not open. */
export function send(message) {
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

/**
 * The server refused a message, so its copy of the drawing may lag behind the page's: call
 * `resend` (which sends it all again) after a delay that doubles with each refusal, 1 s to 8 s,
 * while the socket is open (a reconnect re-sends anyway). One resend is pending at a time.
 */
export function scheduleResend(resend) {
  if (!resync.timer) {
    resync.timer = setTimeout(() => {
      resync.timer = 0;
      if (isOpen()) resend();
    }, resync.delay);
  }
  resync.delay = Math.min(resync.delay * 2, RESYNC_MAX_MS);
}

/** The server answered: the next refusal waits the shortest delay again. */
export function resetResendDelay() {
  resync.delay = RESYNC_MIN_MS;
}
