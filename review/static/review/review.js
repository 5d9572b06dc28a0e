// Triage page: one stored drawing at a time, labelled by keyboard (review/triage.py serves the
// queue and stores each answer). The page moves on as soon as a key is pressed; the saves go out in
// order behind it, so a fast reviewer never waits for the network.

import { fitInk, paintStrokes } from '../recognizer/strokes.js';

const root = document.querySelector('#triage');
const $ = (selector) => document.querySelector(selector);
const el = {
  progress: $('#progress'), meter: $('#meter-fill'), card: $('#card'), done: $('#done'), doneText: $('#done-text'),
  canvas: $('#drawing'), seen: $('#seen'), image28: $('#image28'), guess: $('#guess'), confidence: $('#confidence'), flag: $('#flag'),
  person: $('#person'), now: $('#now'), id: $('#drawing-id'), admin: $('#admin-link'), model: $('#model'),
  message: $('#message'),
};
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const QUEUE_URL = root.dataset.queueUrl;
const REVIEW_URL = root.dataset.reviewUrl.replace(/0$/, '');  // + drawing id
const ORDER = root.dataset.order;
const PAGE = 50;
const PREFETCH = 10;  // fetch the next page this many drawings before the end

const state = {
  items: [],          // drawings loaded so far, in queue order (reviewed ones stay, to go back to)
  index: 0,
  next: null,         // cursor of the next page, null when the queue is exhausted
  loading: null,      // the page request in flight
  waiting: false,     // moving on waits for that page: keys are ignored meanwhile
  total: 0,           // unreviewed when the page opened (or more, once more were loaded)
  reviewed: new Set(),
  saving: Promise.resolve(),
  pendingSaves: 0,
};

// ---------------------------------------------------------------- the API

async function api(url, options = {}) {
  const response = await fetch(url, { credentials: 'same-origin', ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

function loadPage() {
  if (state.loading) return state.loading;
  const params = new URLSearchParams({ order: ORDER, limit: String(PAGE) });
  if (state.next) params.set('after', state.next);
  state.loading = api(`${QUEUE_URL}?${params}`).then((page) => {
    const known = new Set(state.items.map((item) => item.id));
    state.items.push(...page.items.filter((item) => !known.has(item.id)));
    state.next = page.next;
    if (!state.total) state.total = page.remaining;
    state.total = Math.max(state.total, state.items.length);
  }).finally(() => { state.loading = null; });
  return state.loading;
}

// Saves leave one after another: a drawing relabelled twice ends with the later answer.
function save(item, body) {
  state.pendingSaves += 1;
  root.dataset.saving = String(state.pendingSaves);
  state.saving = state.saving.then(async () => {
    try {
      const answer = await api(REVIEW_URL + item.id, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRFToken': CSRF },
        body: JSON.stringify(body),
      });
      Object.assign(item, answer.drawing);
      item.failed = false;
    } catch (error) {
      item.failed = true;
      state.reviewed.delete(item.id);
      say(`Drawing #${item.id} was not saved (${error.message}): go back (←) and answer it again.`);
    } finally {
      state.pendingSaves -= 1;
      root.dataset.saving = String(state.pendingSaves);
      if (item.failed || current() === item) show();  // a failure changes the progress too
    }
  });
}

// ---------------------------------------------------------------- actions

function current() {
  return state.items[state.index];
}

function answer(body, apply) {
  const item = current();
  if (!item || state.waiting) return;
  apply(item);
  state.reviewed.add(item.id);
  save(item, body);
  move(1);
}

const actions = {
  label(digit) {
    answer({ action: 'label', digit }, (item) => {
      item.review_label = digit;
      item.effective_label = digit;
      item.excluded = false;
    });
  },
  confirm() {
    const item = current();
    if (!item) return;
    if (item.predicted_digit === null) {
      say('No guess to confirm yet (the prediction is pending): type the digit.');
      return;
    }
    actions.label(item.predicted_digit);
  },
  exclude() {
    answer({ action: 'exclude' }, (item) => { item.excluded = true; });
  },
};

async function move(step) {
  const target = state.index + step;
  if (target < 0 || state.waiting) return;
  if (target >= state.items.length - PREFETCH && state.next) {
    const page = loadPage();
    if (target >= state.items.length) {
      // keys pressed while the next page loads must not land on the drawing just answered
      state.waiting = true;
      try {
        await page;
      } catch (error) {
        say(`Could not load more drawings: ${error.message}`);
        return;
      } finally {
        state.waiting = false;
      }
    }
  }
  state.index = Math.min(target, state.items.length);  // one past the end: the "done" view
  show();
}

// ---------------------------------------------------------------- showing

function say(text) {
  el.message.textContent = text;
}

function drawStrokes(item) {
  const canvas = el.canvas;
  const ratio = window.devicePixelRatio || 1;
  const side = canvas.clientWidth || 420;
  canvas.width = Math.round(side * ratio);
  canvas.height = Math.round(side * ratio);
  const ctx = canvas.getContext('2d');
  const style = getComputedStyle(canvas);
  ctx.fillStyle = style.backgroundColor;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  // Fit the ink (not the person's whole canvas) so that small drawings are large enough to read.
  const fit = fitInk(item.strokes, item.brush, canvas.width, canvas.height, 3 * ratio);
  if (!fit) return;
  const [scale, dx, dy] = fit;
  ctx.setTransform(scale, 0, 0, scale, dx, dy);
  paintStrokes(ctx, item.strokes, item.brush, style.color);
}

function labelText(item) {
  if (item.failed) return 'not saved';
  if (item.excluded) return 'excluded from training';
  if (item.effective_label === null) return '—';
  return `${item.effective_label}${item.review_label !== null ? ' (reviewer)' : ' (person)'}`;
}

function show() {
  const total = Math.max(state.total, state.items.length);
  const doneCount = state.reviewed.size;
  el.meter.style.width = total ? `${(100 * doneCount) / total}%` : '100%';
  root.dataset.reviewed = String(doneCount);
  const item = current();
  if (!item) {
    el.card.hidden = true;
    el.done.hidden = false;
    root.dataset.state = 'done';
    delete root.dataset.id;
    el.progress.textContent = `${doneCount} of ${total} reviewed — done`;
    el.doneText.textContent = total
      ? `${doneCount} drawings reviewed in this session. ← goes back to change an answer.`
      : 'No drawing is waiting for review.';
    return;
  }
  el.done.hidden = true;
  el.card.hidden = false;
  root.dataset.state = 'drawing';
  root.dataset.id = String(item.id);
  el.progress.textContent = `${state.index + 1} of ${total} · ${doneCount} reviewed`;
  drawStrokes(item);
  el.seen.hidden = !item.image28;
  if (item.image28) el.image28.src = item.image28;
  el.guess.textContent = item.predicted_digit ?? '…';
  el.confidence.textContent = item.confidence === null ? 'prediction pending' : `${(item.confidence * 100).toFixed(1)}%`;
  el.flag.textContent = item.uncertain ? `flagged uncertain${item.reason ? `: ${item.reason}` : ''}` : '';
  el.person.textContent = item.label ?? '—';
  el.now.textContent = labelText(item);
  el.now.dataset.reviewed = String(state.reviewed.has(item.id));
  el.id.textContent = item.id;
  el.admin.href = item.admin_url;
  el.model.textContent = item.model || '';
}

// ---------------------------------------------------------------- input

document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target instanceof HTMLElement && event.target.closest('a, input, select, textarea')) return;
  if (/^[0-9]$/.test(event.key)) actions.label(Number(event.key));
  else if (event.key === 'Enter') actions.confirm();
  else if (event.key === 'x' || event.key === 'X') actions.exclude();
  else if (event.key === 'ArrowLeft') move(-1);
  else if (event.key === 'ArrowRight') move(1);
  else return;
  event.preventDefault();  // Enter or a digit must not also press a focused button
});

document.querySelectorAll('[data-digit]').forEach((button) => {
  button.addEventListener('click', () => actions.label(Number(button.dataset.digit)));
});
$('#confirm').addEventListener('click', () => actions.confirm());
$('#exclude').addEventListener('click', () => actions.exclude());
$('#prev').addEventListener('click', () => move(-1));
$('#next').addEventListener('click', () => move(1));
window.addEventListener('beforeunload', (event) => {
  if (state.pendingSaves) event.preventDefault();  // answers still on their way
});

loadPage().then(show, (error) => {
  root.dataset.state = 'error';
  el.progress.textContent = 'could not load the queue';
  say(error.message);
});
