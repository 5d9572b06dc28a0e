// The page's settings from the server: its URLs and the protocol's limits, rendered into data-
// attributes of <html> by the template (recognizer/templatetags/page.py, from recognizer/protocol.py
// and the URL configuration). The page repeats none of them.

const data = document.documentElement.dataset;

function text(name) {
  const value = data[name];
  if (!value) throw new Error(`the page has no data-${kebab(name)} attribute`);
  return value;
}

function number(name) {
  const value = Number(text(name));
  if (!(value > 0)) throw new Error(`data-${kebab(name)} is not a positive number`);
  return value;
}

const kebab = (name) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export const config = Object.freeze({
  socketPath: text('socketPath'),            // the recognising WebSocket (protocol v1, docs/protocol.md)
  predictUrl: text('predictUrl'),            // image uploads
  maxStrokes: number('maxStrokes'),          // strokes a drawing
  maxStrokePoints: number('maxStrokePoints'), // points a stroke
  maxCanvas: number('maxCanvas'),            // CSS px a side of the drawing's coordinate space
  maxBrush: number('maxBrush'),              // brush diameter, CSS px
  uploadMaxBytes: number('uploadMaxBytes'),  // an uploaded image's size
});
