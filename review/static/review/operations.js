/* The operations page (review.operations): reads figures.json every poll and turns two readings
   into what an operator looks at, as Prometheus would:
   - rates: Δcounter / Δt between the last two readings (a counter that went down was reset, e.g. a
     web process restarted: its value counts from zero);
   - latency percentiles per phase over the interval: histogram_quantile over the Δ of the buckets;
   - worker utilisation: Δ busy seconds / Δt (a worker seen for the first time: not yet known);
   - errors per code over the last minute (or since the page opened, when that is shorter).
   Every name and label from the server is set as text, never as markup. */
"use strict";

(() => {
  const root = document.getElementById("content-main");
  if (!root || !root.dataset.figuresUrl) return;
  const url = root.dataset.figuresUrl;
  const pollMs = Number(root.dataset.pollMs) || 2000;
  const ERROR_WINDOW_S = 60;
  const PHASES = ["end_to_end", "queue", "preprocess", "inference", "answer"];
  const PHASE_NAMES = { end_to_end: "end to end", queue: "queue", preprocess: "preprocess", inference: "inference", answer: "answer" };
  const QUANTILES = [0.5, 0.95, 0.99];

  const history = []; // readings, oldest first, kept for a little over ERROR_WINDOW_S

  // ------------------------------------------------------------ reading the figures

  const key = (labels) => JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));

  function series(reading, kind, name) {
    return (reading && reading[kind] && reading[kind][name]) || [];
  }

  function byKey(list) {
    const map = new Map();
    for (const s of list) map.set(key(s.labels), s);
    return map;
  }

  /** Growth of a counter from `before` to `now` (0 when missing before: it appeared since). */
  function growth(now, before) {
    if (before === undefined) return now;
    return now >= before ? now - before : now; // went down: reset, counts from zero
  }

  /** [{labels, value, delta}] of a counter family between two readings. */
  function counterDeltas(now, prev, name) {
    const before = byKey(series(prev, "counters", name));
    return series(now, "counters", name).map((s) => {
      const b = before.get(key(s.labels));
      return { labels: s.labels, value: s.value, delta: growth(s.value, b && b.value) };
    });
  }

  function sumBy(list, field) {
    return list.reduce((total, s) => total + s[field], 0);
  }

  /** The histogram's buckets ([[le, cumulative count]]) as grown from `prev` to `now`. */
  function bucketDeltas(now, prev) {
    if (!prev || prev.count > now.count) return now.buckets; // new series, or reset
    const before = new Map(prev.buckets.map(([le, count]) => [le, count]));
    return now.buckets.map(([le, count]) => [le, Math.max(0, count - (before.get(le) || 0))]);
  }

  /** Prometheus' histogram_quantile: linear within the bucket the rank falls in; in +Inf, the
      highest finite bound. NaN when there is nothing to rank. */
  function quantile(q, buckets) {
    if (buckets.length === 0) return NaN;
    const total = buckets[buckets.length - 1][1];
    if (!(total > 0)) return NaN;
    const rank = q * total;
    let i = buckets.findIndex(([, count]) => count >= rank);
    if (i < 0) i = buckets.length - 1;
    const upper = Number.parseFloat(buckets[i][0]);
    if (!Number.isFinite(upper)) return buckets.length > 1 ? Number.parseFloat(buckets[buckets.length - 2][0]) : NaN;
    const lower = i === 0 ? 0 : Number.parseFloat(buckets[i - 1][0]);
    const below = i === 0 ? 0 : buckets[i - 1][1];
    const inBucket = buckets[i][1] - below;
    return inBucket > 0 ? lower + (upper - lower) * (rank - below) / inBucket : upper;
  }

  function gaugeTotal(reading, name) {
    return series(reading, "gauges", name).reduce((total, s) => total + s.value, 0);
  }

  // ------------------------------------------------------------ formatting

  function perSecond(value) {
    if (!Number.isFinite(value)) return "–";
    if (value === 0) return "0";
    if (value < 10) return value.toFixed(2);
    if (value < 100) return value.toFixed(1);
    return Math.round(value).toLocaleString("en-US");
  }

  function seconds(value) {
    if (!Number.isFinite(value)) return "–";
    const ms = value * 1000;
    if (ms < 10) return `${ms.toFixed(1)} ms`;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    return `${value.toFixed(2)} s`;
  }

  function count(value) {
    return Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "–";
  }

  function mebibytes(bytes) {
    return Number.isFinite(bytes) ? `${(bytes / 1048576).toFixed(0)} MiB` : "–";
  }

  function labelText(labels) {
    const values = Object.keys(labels).sort().map((k) => labels[k]);
    return values.length ? values.join(", ") : "all";
  }

  // ------------------------------------------------------------ the DOM

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function fillTable(id, rows, columns, emptyText) {
    const body = document.querySelector(`#${id} tbody`);
    if (!body) return;
    const trs = rows.map((row) => {
      const tr = document.createElement("tr");
      if (row.key !== undefined) tr.dataset.key = row.key;
      for (const part of row.cells) tr.append(part instanceof Node ? part : cell(part, ""));
      return tr;
    });
    if (trs.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "ops-empty";
      const td = cell(emptyText, "");
      td.colSpan = columns;
      tr.append(td);
      trs.push(tr);
    }
    body.replaceChildren(...trs);
  }

  function tile(id, text, bad) {
    const el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    el.parentElement.classList.toggle("ops-bad", Boolean(bad));
  }

  function status(text, state) {
    root.dataset.state = state;
    const el = document.getElementById("ops-status");
    el.textContent = text;
    return el;
  }

  // ------------------------------------------------------------ what is shown

  function renderRates(now, prev, dt) {
    const rows = [];
    const groups = [
      ["digits_predictions_total", "predictions delivered"],
      ["digits_answers_total", "answers from workers"],
    ];
    let predictions = NaN;
    for (const [name, what] of groups) {
      const deltas = counterDeltas(now, prev, name);
      if (name === "digits_predictions_total" && prev) predictions = sumBy(deltas, "delta") / dt;
      for (const s of deltas) {
        rows.push({
          key: `${name}${key(s.labels)}`,
          cells: [what, labelText(s.labels), cell(prev ? perSecond(s.delta / dt) : "–", "num rate"), cell(count(s.value), "num")],
        });
      }
    }
    fillTable("rates", rows, 4, "nothing yet");
    tile("tile-predictions", prev ? perSecond(predictions) : "–");

    const jobs = byKey(counterDeltas(now, prev, "digits_jobs_published_total"));
    const batches = byKey(counterDeltas(now, prev, "digits_batches_published_total"));
    const sizes = byKey(series(now, "histograms", "digits_batch_size"));
    const sizesBefore = byKey(series(prev, "histograms", "digits_batch_size"));
    const tasks = new Map([...jobs.values(), ...batches.values()].map((s) => [key(s.labels), s.labels]));
    const batchRows = [...tasks].sort((a, b) => a[0].localeCompare(b[0])).map(([k, labels]) => {
      const j = jobs.get(k);
      const b = batches.get(k);
      const size = sizes.get(k);
      const sizeBefore = sizesBefore.get(k);
      const grew = size && (!sizeBefore || sizeBefore.count > size.count ? size : {
        count: size.count - sizeBefore.count, sum: size.sum - sizeBefore.sum,
      });
      const mean = grew && grew.count > 0 ? (grew.sum / grew.count).toFixed(1) : "–";
      return {
        key: k,
        cells: [labelText(labels), cell(prev && j ? perSecond(j.delta / dt) : "–", "num"),
          cell(prev && b ? perSecond(b.delta / dt) : "–", "num"), cell(prev ? mean : "–", "num")],
      };
    });
    fillTable("batches", batchRows, 4, "no jobs published yet");
  }

  function renderLatency(now, prev) {
    const hist = byKey(series(now, "histograms", "digits_phase_seconds"));
    const before = byKey(series(prev, "histograms", "digits_phase_seconds"));
    let p95 = NaN;
    const rows = PHASES.map((phase) => {
      const k = key({ phase });
      const h = hist.get(k);
      const buckets = h && prev ? bucketDeltas(h, before.get(k)) : [];
      const jobs = buckets.length ? buckets[buckets.length - 1][1] : NaN;
      const values = QUANTILES.map((q) => quantile(q, buckets));
      if (phase === "end_to_end") p95 = values[1];
      return {
        key: phase,
        cells: [PHASE_NAMES[phase], ...values.map((v, i) => cell(seconds(v), `num p${Math.round(QUANTILES[i] * 100)}`)),
          cell(prev ? count(jobs) : "–", "num")],
      };
    });
    fillTable("latency", rows, 5, "");
    tile("tile-p95", seconds(p95));
  }

  function renderQueues(now) {
    const depth = byKey(series(now, "gauges", "digits_queue_depth"));
    const workers = byKey(series(now, "gauges", "digits_workers"));
    const queues = new Map([...depth.values(), ...workers.values()].map((s) => [key(s.labels), s.labels.queue]));
    const rows = [...queues].sort((a, b) => a[1].localeCompare(b[1])).map(([k, queue]) => {
      const d = depth.get(k);
      const w = workers.get(k);
      return {
        key: queue,
        cells: [queue, cell(d ? count(d.value) : "–", "num depth"),
          cell(w ? count(w.value) : "–", w && w.value === 0 ? "num workers ops-bad" : "num workers")],
      };
    });
    fillTable("queues", rows, 3, "not known");
    const redisUp = series(now, "gauges", "digits_redis_up").some((s) => s.value === 1);
    // digits_broker_up: only when the broker is not Redis (RabbitMQ); down, the depths are unknown
    const brokerUp = !series(now, "gauges", "digits_broker_up").some((s) => s.value === 0);
    const starved = [...workers.values()].some((s) => s.value === 0);
    tile("tile-depth", redisUp && brokerUp ? count(gaugeTotal(now, "digits_queue_depth")) : "?", !redisUp || !brokerUp);
    tile("tile-workers", redisUp ? count(gaugeTotal(now, "digits_workers")) : "?", !redisUp || starved);
    tile("tile-sockets", count(gaugeTotal(now, "digits_open_sockets")));
    if (!redisUp) return "Redis did not answer: queues and workers unknown.";
    if (!brokerUp) return "The broker did not answer: queue depths unknown.";
    return "";
  }

  function renderWorkers(now, prev, dt) {
    const workers = new Map();
    const entry = (name) => {
      if (!workers.has(name)) workers.set(name, { name, queues: "", models: [], rss: NaN, busy: NaN });
      return workers.get(name);
    };
    for (const s of series(now, "gauges", "digits_worker_model")) {
      if (s.value > 0) entry(s.labels.worker).models.push(s.labels.model);
    }
    for (const s of series(now, "gauges", "digits_worker_rss_bytes")) {
      const w = entry(s.labels.worker);
      w.rss = s.value;
      w.queues = s.labels.queue;
    }
    const busyBefore = new Map(series(prev, "counters", "digits_worker_busy_seconds_total").map((s) => [s.labels.worker, s.value]));
    for (const s of series(now, "counters", "digits_worker_busy_seconds_total")) {
      const w = entry(s.labels.worker);
      w.queues = w.queues || s.labels.queue;
      const before = busyBefore.get(s.labels.worker);
      if (prev && before !== undefined && s.value >= before) w.busy = Math.min(1, (s.value - before) / dt);
    }
    const rows = [...workers.values()].sort((a, b) => a.name.localeCompare(b.name)).map((w) => {
      const busy = document.createElement("td");
      busy.className = "ops-busy";
      if (Number.isFinite(w.busy)) {
        const meter = document.createElement("meter");
        meter.min = 0;
        meter.max = 1;
        meter.value = w.busy;
        meter.setAttribute("aria-hidden", "true");
        const percent = document.createElement("span");
        percent.className = "ops-pct";
        percent.textContent = `${Math.round(w.busy * 100)} %`;
        busy.append(meter, percent);
      } else {
        busy.textContent = "–";
      }
      return {
        key: w.name,
        cells: [w.name, w.queues || "–", cell(w.models.join(", ") || "(loading)", "model"), cell(mebibytes(w.rss), "num"), busy],
      };
    });
    fillTable("workers", rows, 5, "no worker alive");
  }

  function renderErrors(now) {
    const since = now.at - ERROR_WINDOW_S;
    const base = history.find((r) => r.at >= since - 0.5) || now;
    const window = now.at - base.at;
    const deltas = counterDeltas(now, base === now ? undefined : base, "digits_errors_total");
    const header = document.getElementById("errors-window");
    if (header) header.textContent = window >= ERROR_WINDOW_S - 1 ? "last minute" : `last ${Math.round(window)} s`;
    const recent = base === now ? 0 : sumBy(deltas, "delta");
    const rows = deltas.filter((s) => s.value > 0).sort((a, b) => b.delta - a.delta || b.value - a.value).map((s) => ({
      key: s.labels.code,
      cells: [s.labels.code, cell(base === now ? "–" : count(s.delta), s.delta > 0 ? "num recent ops-bad" : "num recent"),
        cell(count(s.value), "num")],
    }));
    fillTable("errors", rows, 3, "no errors");
    tile("tile-errors", base === now ? "–" : count(recent), recent > 0);
  }

  function render(now, prev) {
    const dt = prev ? Math.max(now.at - prev.at, 0.001) : NaN;
    renderRates(now, prev, dt);
    renderLatency(now, prev);
    const trouble = renderQueues(now);
    renderWorkers(now, prev, dt);
    renderErrors(now);
    const at = new Date(now.at * 1000).toLocaleTimeString("en-GB");
    const over = prev ? `, rates over the last ${dt.toFixed(1)} s` : ", rates after the next reading";
    const el = status(`Live: read at ${at}${over}.${trouble ? ` ${trouble}` : ""}`, "live");
    el.classList.toggle("ops-redis-down", Boolean(trouble));
  }

  // ------------------------------------------------------------ polling

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
      if (response.status === 403) throw new Error("this login may no longer view the operations page (403)");
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      if (!(response.headers.get("Content-Type") || "").startsWith("application/json")) {
        throw new Error("logged out? (the answer was not the figures)");
      }
      const now = await response.json();
      const prev = history.length ? history[history.length - 1] : undefined;
      history.push(now);
      while (history.length > 2 && history[1].at <= now.at - ERROR_WINDOW_S - 1) history.shift();
      render(now, prev && now.at > prev.at ? prev : undefined);
    } catch (error) {
      status(`Could not read the figures: ${error.message}. Showing the last reading; trying again.`, "error");
    } finally {
      window.setTimeout(poll, pollMs);
    }
  }

  poll();
})();
