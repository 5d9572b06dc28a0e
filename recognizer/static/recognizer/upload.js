// Recognising an image: picked with the file input, dropped on the pad or pasted, posted to the
// upload API; its answer is shown like a drawing's prediction and kept in the history.

import { config } from './config.js';
import { addHistory, imageThumbnail } from './history.js';
import { announce, article, clearMessage, previewCanvas, showMessage, showPrediction, showTimes } from './view.js';

const $ = (selector) => document.querySelector(selector);
const el = { padArea: $('#pad-area'), file: $('#file'), figure: $('#upload-figure'), preview: $('#upload-preview') };

let uploadUrl = null;                 // object URL of the image on show
let uploadToken = 0;                  // the latest upload's: an older answer is dropped

/** A size in bytes as the server words its refusal ("images up to 5 MB": recognizer/views.py). */
function size(bytes) {
  if (bytes >= 2 ** 20) return `${Math.floor(bytes / 2 ** 20)} MB`;
  if (bytes >= 1024) return `${Math.floor(bytes / 1024)} KB`;
  return `${bytes} bytes`;
}

async function uploadImage(file) {
  if (!file) return;
  const token = ++uploadToken;
  showUpload(file);
  if (file.size > config.uploadMaxBytes) {  // what the server would answer, without sending it
    showMessage(`images up to ${size(config.uploadMaxBytes)}`, 'error');
    return;
  }
  showMessage('Reading the image…', 'info');
  const body = new FormData();
  body.append('image', file, file.name || 'pasted-image.png');
  let response;
  let data = null;
  const started = performance.now();
  try {
    response = await fetch(config.predictUrl, { method: 'POST', body });
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
  clearMessage();
  showTimes(performance.now() - started, data.latency_ms);
  showPrediction(data, 'upload');
  announce(Number.isInteger(data.digit)
    ? `The image looks like ${article(data.digit)} ${data.digit}, ${Math.round(data.confidence * 100)}% sure`
    : 'No digit found in the image');
  addHistory({ thumb: await imageThumbnail(el.preview, previewCanvas), digit: data.digit, note: 'image' });
}

function showUpload(file) {
  if (uploadUrl) URL.revokeObjectURL(uploadUrl);
  uploadUrl = URL.createObjectURL(file);
  el.preview.src = uploadUrl;
  el.preview.hidden = false;
  el.figure.hidden = false;
}

/** Hide the uploaded image (drawing again). */
export function hideUpload() {
  el.figure.hidden = true;
  el.preview.hidden = true;
}

/** First file of a drop or paste, preferring images. */
function pickFile(files) {
  const list = [...(files || [])];
  return list.find((f) => f.type.startsWith('image/')) || list[0] || null;
}

const hasFiles = (event) => !!event.dataTransfer && [...event.dataTransfer.types].includes('Files');

/** Take images from the file input, a drop on the pad and a paste anywhere. */
export function wireUploads() {
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
